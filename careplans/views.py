"""Pages of the living care plan: the editor (inline htmx editing of goals, needs and
activities), status changes along legal transitions, comments and proposals, and the
history with diffs. Thin: every write goes through `careplans.services`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careteam import conversations as conversation_services
from careteam import keyset
from careteam.audit import AuditAction, audit, note_refusal
from careteam.concurrency import STALE_PAGE_MESSAGE, VERSION_REQUIRED, StaleVersionError
from careteam.permissions import EMERGENCY_ACCESS_READ_ONLY, PatientAccess, access_item, patient_access
from careteam.printing import pdf_response
from careteam.viewhelpers import add_service_errors, forbidden

from . import selectors, services
from .forms import (
    ActivityForm,
    CarePlanForm,
    DecisionForm,
    GoalCreateForm,
    GoalForm,
    NeedForm,
    NoteForm,
    ProposalForm,
    StatusForm,
)
from .models import Activity, CarePlan, Goal, Need, Note


@dataclass(frozen=True)
class Kind:
    """How the editor handles one kind of plan item."""

    name: str
    model: type
    edit_form: type
    create_form: type
    create: object  # the service function
    select_related: tuple[str, ...]


KINDS = {
    "goal": Kind("goal", Goal, GoalForm, GoalCreateForm, services.goal_create, ("owner_discipline",)),
    "need": Kind("need", Need, NeedForm, NeedForm, services.need_create, ("sensitivity",)),
    "activity": Kind(
        "activity",
        Activity,
        ActivityForm,
        ActivityForm,
        services.activity_create,
        ("owner_discipline", "assigned_to", "sensitivity"),
    ),
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _plan(request: HttpRequest, plan_id: int) -> tuple[CarePlan, PatientAccess]:
    return access_item(
        request.user, CarePlan.objects.select_related("patient"), plan_id, patient_path="patient"
    )


def _item(request: HttpRequest, kind: Kind, pk: int):
    qs = kind.model.objects.select_related("care_plan__patient", *kind.select_related)
    item, access = access_item(request.user, qs, pk, patient_path="care_plan__patient")
    return item, access


def _render_item(request, item, access, *, status: int = 200, error: str = "", message: str = ""):
    selectors.decorate(access, item)
    context = {
        "item": item,
        "plan": item.care_plan,
        "access": access,
        "error": error,
        "message": message,
    }
    template = f"careplans/_{item.kind}.html"
    if not request.htmx:
        context["partial"] = template
        context.update(_item_notes_context(access, item))
        template = "careplans/item_page.html"
    return render(request, template, context, status=status)


def _item_notes_context(access: PatientAccess, item) -> dict:
    """The notes section of an item's own page: its comments and proposals."""
    notes = selectors.decorate_notes(access, list(selectors.notes_for_item(access, item)[:30]))
    kind = type(item).__name__.lower()
    return {
        "item_conversations": list(
            conversation_services.conversations_for_patient(access).filter(**{kind: item})[:20]
        ),
        "item_about_key": conversation_services.about_key(item),
        "item_from_messages": conversation_services.work_source_messages(access, activity=item)
        if kind == "activity"
        else [],
        "item_notes": notes,
        "note_target": item,
        "note_target_kind": type(item).__name__.lower(),
        "note_form": NoteForm(prefix="note"),
    }


def _editor_context(
    access: PatientAccess, plan: CarePlan, forms: dict | None = None, open_form: str | None = None
) -> dict:
    """The editor's context. The "add" forms are rendered only when one is open (`open_form`,
    or given with its errors in `forms`): the others are fetched when their section is
    opened, which keeps building ~90 widgets off every load of the plan."""
    forms = forms or {}
    editor = selectors.editor_for(access, plan)
    context = {"editor": editor, "plan": plan, "patient": plan.patient, "access": access}
    for name, kind in KINDS.items():
        if name in forms:
            context[f"new_{name}_form"] = forms[name]
        elif name == open_form:
            context[f"new_{name}_form"] = kind.create_form(access=access, plan=plan, prefix=f"new-{name}")
    if open_form:
        context["open_form"] = open_form
    context["note_form"] = NoteForm(prefix="note")
    return context


# ---------------------------------------------------------------------------
# The editor
# ---------------------------------------------------------------------------
@login_required
@require_GET
def plan_editor(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan, access = _plan(request, plan_id)
    audit(user=request.user, action=AuditAction.VIEW, obj=plan, patient=access.patient, request=request)
    return render(request, "careplans/editor.html", _editor_context(access, plan))


def _create(request: HttpRequest, plan_id: int, kind: Kind) -> HttpResponse:
    plan, access = _plan(request, plan_id)
    if request.method == "GET":
        if request.htmx:
            # the editor opened this section: just the form's fields
            if not access.can_contribute():
                return forbidden(request, "You cannot change this plan.")
            form = kind.create_form(access=access, plan=plan, prefix=f"new-{kind.name}")
            return render(request, "careplans/_add_fields.html", {"form": form})
        # without JavaScript: the editor with this kind's add form open
        return render(request, "careplans/editor.html", _editor_context(access, plan, open_form=kind.name))
    if not access.can_contribute():
        return forbidden(
            request, EMERGENCY_ACCESS_READ_ONLY if access.emergency_access else "You cannot change this plan."
        )
    form = kind.create_form(request.POST, access=access, plan=plan, prefix=f"new-{kind.name}")
    if form.is_valid():
        data = form.changes()
        links = {name: data.pop(name) for name in ("goals", "needs") if name in data}
        try:
            kind.create(access=access, plan=plan, by=request.user, request=request, **data, **links)
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PermissionDenied as exc:
            return forbidden(request, str(exc))
        else:
            if not request.htmx:
                return redirect("careplans:plan_editor", plan_id=plan.pk)
            context = _editor_context(access, plan)
            context["flash"] = f"{kind.model._meta.verbose_name.capitalize()} added."
            return render(request, "careplans/_plan_body.html", context)
    context = _editor_context(access, plan, {kind.name: form}, open_form=kind.name)
    template = "careplans/_plan_body.html" if request.htmx else "careplans/editor.html"
    return render(request, template, context, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def goal_create(request: HttpRequest, plan_id: int) -> HttpResponse:
    return _create(request, plan_id, KINDS["goal"])


@login_required
@require_http_methods(["GET", "POST"])
def need_create(request: HttpRequest, plan_id: int) -> HttpResponse:
    return _create(request, plan_id, KINDS["need"])


@login_required
@require_http_methods(["GET", "POST"])
def activity_create(request: HttpRequest, plan_id: int) -> HttpResponse:
    return _create(request, plan_id, KINDS["activity"])


# ---------------------------------------------------------------------------
# One item: show, edit inline, change status
# ---------------------------------------------------------------------------
def _detail(request: HttpRequest, kind: Kind, pk: int) -> HttpResponse:
    item, access = _item(request, kind, pk)
    return _render_item(request, item, access)


def _form_response(request, item, access, form, *, status: int = 200, conflict=None):
    context = {"item": item, "plan": item.care_plan, "access": access, "form": form, "conflict": conflict}
    selectors.decorate(access, item)
    template = "careplans/_conflict.html" if conflict else "careplans/_item_form.html"
    if not request.htmx:
        context["partial"] = template
        template = "careplans/item_page.html"
    return render(request, template, context, status=status)


def _edit(request: HttpRequest, kind: Kind, pk: int) -> HttpResponse:
    item, access = _item(request, kind, pk)
    if not access.can_edit_item(item):
        try:
            access.require_edit(item)
        except PermissionDenied as exc:
            # members of another discipline may read it and comment or propose instead
            status = 200 if request.method == "GET" and access.on_team else 403
            return _render_item(request, item, access, status=status, error=str(exc))
    prefix = f"{kind.name}-{item.pk}"
    if request.method == "GET":
        form = kind.edit_form(instance=item, access=access, plan=item.care_plan, prefix=prefix)
        return _form_response(request, item, access, form)
    form = kind.edit_form(request.POST, instance=item, access=access, plan=item.care_plan, prefix=prefix)
    if not form.is_valid():
        return _form_response(request, item, access, form, status=form.invalid_status)
    try:
        saved = services.item_update(
            access=access,
            item=item,
            by=request.user,
            changes=_link_changes(item, access, form.changes()),
            expected_version=form.cleaned_data["expected_version"],
            request=request,
        )
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        return _conflict(request, kind, item, access, form, exc.current)
    except PermissionDenied as exc:
        return _render_item(request, item, access, status=403, error=str(exc))
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _form_response(request, item, access, form, status=422)
    saved = _item(request, kind, saved.pk)[0]
    if not request.htmx:
        return redirect(
            reverse("careplans:plan_editor", kwargs={"plan_id": item.care_plan_id})
            + f"#{kind.name}-{item.pk}"
        )
    return _render_item(request, saved, access, message="Saved.")


def _link_changes(item, access: PatientAccess, changes: dict) -> dict:
    """Leave out link lists that did not change, so a save touches only what the user
    changed (the form always sends them). Links the user cannot see are kept by
    item_update."""
    for name in ("goals", "needs"):
        if name not in changes:
            continue
        wanted = {obj.pk for obj in changes[name]} | {
            obj.pk for obj in services.hidden_links(item, access, name)
        }
        if wanted == set(getattr(item, name).values_list("pk", flat=True)):
            del changes[name]
    return changes


def _conflict(request, kind: Kind, item, access, form, current) -> HttpResponse:
    """Someone saved the item after this user opened it: show theirs next to yours, and a
    form holding the user's values against the new version, so they merge and save again.
    Nothing is written."""
    theirs = kind.edit_form(instance=current, access=access, plan=item.care_plan, prefix="theirs")
    data = request.POST.copy()
    data[form.add_prefix("expected_version")] = str(current.version)
    merge = kind.edit_form(data, instance=current, access=access, plan=item.care_plan, prefix=form.prefix)
    merge.is_valid()
    conflict = {**_conflict_rows(form, theirs, current), "theirs": current}
    return _form_response(request, current, access, merge, status=409, conflict=conflict)


def _conflict_rows(form, theirs, current) -> dict:
    """The fields the user changed, theirs beside the saved value (both as the user reads
    them, from forms the permissions module filled), and who saved that version when."""
    rows = []
    for name in form.changes():
        field = form.fields[name]
        mine, other = _display(field, form.cleaned_data.get(name)), _display(field, theirs.initial.get(name))
        rows.append({"label": field.label, "mine": mine, "theirs": other, "differs": mine != other})
    saved = current.history.select_related("history_user").order_by("-history_date", "-history_id").first()
    return {
        "rows": rows,
        "version": current.version,
        "saved_by": saved.history_user.display_name if saved and saved.history_user else "",
        "saved_at": saved.history_date if saved else None,
    }


def _display(field, value) -> str:
    """A value as the user reads it (choice labels, names, dates), for the conflict view."""
    if value in (None, "", [], ()):
        return "—"
    if hasattr(value, "all") and not isinstance(value, list):
        value = list(value.all()) if hasattr(value, "model") else value
    if isinstance(value, list | tuple):
        # only what the viewer may see: the saved version may link a need hidden from them
        queryset = getattr(field, "queryset", None)
        if queryset is not None:
            allowed = set(
                queryset.filter(pk__in=[v.pk for v in value if hasattr(v, "pk")]).values_list("pk", flat=True)
            )
            value = [v for v in value if not hasattr(v, "pk") or v.pk in allowed]
        items = []
        for v in value:
            items.append(str(getattr(v, "description", None) or v) if hasattr(v, "pk") else _choice(field, v))
        return ", ".join(sorted(items)) or "—"
    if hasattr(value, "pk"):
        return getattr(value, "display_name", None) or str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and hasattr(field, "queryset"):
        obj = field.queryset.filter(pk=value).first()
        return (getattr(obj, "display_name", None) or str(obj)) if obj else "—"
    return _choice(field, value)


def _choice(field, value) -> str:
    choices = dict(getattr(field, "choices", []) or [])
    if value in choices:
        return str(choices[value])
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _status(request: HttpRequest, kind: Kind, pk: int) -> HttpResponse:
    item, access = _item(request, kind, pk)
    if request.method == "GET":
        return _render_item(request, item, access)
    if not access.can_edit_item(item):
        try:
            access.require_edit(item)
        except PermissionDenied as exc:
            return _render_item(request, item, access, status=403, error=str(exc))
    form = StatusForm(request.POST)
    if not form.is_valid():
        if form.version_refused:
            return _render_item(request, item, access, status=VERSION_REQUIRED, error=STALE_PAGE_MESSAGE)
        return _render_item(request, item, access, status=422, error="Choose a status.")
    field_name = selectors.STATUS_FIELDS[kind.model][0]
    changes = {field_name: form.cleaned_data["status"]}
    if form.cleaned_data["status_reason"]:
        changes["status_reason"] = form.cleaned_data["status_reason"]
    try:
        saved = services.item_update(
            access=access,
            item=item,
            by=request.user,
            changes=changes,
            expected_version=form.cleaned_data["expected_version"],
            request=request,
        )
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        fresh = _item(request, kind, exc.current.pk)[0]
        return _render_item(
            request,
            fresh,
            access,
            status=409,
            error="Someone else changed this item after you opened it; its current state is shown. "
            "Choose the status again if it still applies.",
        )
    except PermissionDenied as exc:
        return _render_item(request, item, access, status=403, error=str(exc))
    except ValidationError as exc:
        return _render_item(request, item, access, status=422, error=" ".join(exc.messages))
    saved = _item(request, kind, saved.pk)[0]
    if not request.htmx:
        return redirect("careplans:plan_editor", plan_id=item.care_plan_id)
    return _render_item(
        request,
        saved,
        access,
        message=f"Status changed to {saved.get_status_display() if kind.model is not Goal else saved.get_lifecycle_status_display()}.",
    )


def _make_views(kind_name: str):
    kind = KINDS[kind_name]

    @login_required
    @require_GET
    def detail(request, **kwargs):
        return _detail(request, kind, kwargs[f"{kind_name}_id"])

    @login_required
    @require_http_methods(["GET", "POST"])
    def edit(request, **kwargs):
        return _edit(request, kind, kwargs[f"{kind_name}_id"])

    @login_required
    @require_http_methods(["GET", "POST"])
    def status(request, **kwargs):
        return _status(request, kind, kwargs[f"{kind_name}_id"])

    @login_required
    @require_http_methods(["GET", "POST"])
    def propose(request, **kwargs):
        return _propose(request, kind, kwargs[f"{kind_name}_id"])

    return detail, edit, status, propose


goal_detail, goal_edit, goal_status, goal_propose = _make_views("goal")
need_detail, need_edit, need_status, need_propose = _make_views("need")
activity_detail, activity_edit, activity_status, activity_propose = _make_views("activity")


# ---------------------------------------------------------------------------
# The plan's own details and status
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def plan_edit(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan, access = _plan(request, plan_id)
    context = {"plan": plan, "patient": plan.patient, "access": access}
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    if request.method == "GET" and "cancel" in request.GET:
        return _plan_response(request, "careplans/_plan_head.html", context)
    form = CarePlanForm(request.POST or None, instance=plan, access=access, plan=plan, prefix="plan")
    context["form"] = form
    if request.method == "GET":
        return _plan_response(request, "careplans/_plan_form.html", context)
    if not form.is_valid():
        return _plan_response(request, "careplans/_plan_form.html", context, status=form.invalid_status)
    try:
        saved = services.item_update(
            access=access,
            item=plan,
            by=request.user,
            changes=form.changes(),
            expected_version=form.cleaned_data["expected_version"],
            request=request,
        )
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        current = exc.current
        theirs = CarePlanForm(instance=current, access=access, plan=current, prefix="theirs")
        data = request.POST.copy()
        data[form.add_prefix("expected_version")] = str(current.version)
        merge = CarePlanForm(data, instance=current, access=access, plan=current, prefix="plan")
        merge.is_valid()
        context.update(form=merge, conflict=_conflict_rows(form, theirs, current))
        return _plan_response(request, "careplans/_plan_form.html", context, status=409)
    except PermissionDenied as exc:
        context["error"] = str(exc)
        return _plan_response(request, "careplans/_plan_form.html", context, status=403)
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _plan_response(request, "careplans/_plan_form.html", context, status=422)
    if not request.htmx:
        return redirect("careplans:plan_editor", plan_id=plan.pk)
    context.update(plan=saved, message="Plan saved.")
    return _plan_response(request, "careplans/_plan_head.html", context)


def _plan_response(request, template: str, context: dict, status: int = 200) -> HttpResponse:
    if not request.htmx:
        context["partial"] = template
        template = "careplans/item_page.html"
    return render(request, template, context, status=status)


# ---------------------------------------------------------------------------
# Comments and proposed changes (any team member, on any visible item)
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def note_create(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan, access = _plan(request, plan_id)
    if request.method == "GET":
        return render(request, "careplans/editor.html", _editor_context(access, plan))
    if not access.can_contribute():
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    form = NoteForm(request.POST, prefix="note")
    target = None
    status = 200
    if form.is_valid():
        for name, kind in KINDS.items():
            target_id = form.cleaned_data.get(name)
            if target_id:
                qs = kind.model.objects.filter(care_plan=plan)
                target, _ = access_item(request.user, qs, target_id, patient_path="care_plan__patient")
        try:
            services.note_add(
                access=access,
                plan=plan,
                by=request.user,
                text=form.cleaned_data["text"],
                kind=form.cleaned_data["kind"],
                target=target,
                request=request,
            )
        except PermissionDenied as exc:
            return forbidden(request, str(exc))
        except ValidationError as exc:
            add_service_errors(form, exc)
            status = 422
        else:
            form = NoteForm(prefix="note")
    else:
        status = 422
    if not request.htmx:
        if status == 200:
            return redirect(reverse("careplans:plan_editor", kwargs={"plan_id": plan.pk}) + "#notes")
        context = _editor_context(access, plan)
        context["note_form"] = form
        return render(request, "careplans/editor.html", context, status=status)
    if target is not None and request.POST.get("note-scope") == "item":
        context = {**_item_notes_context(access, target), "note_form": form}
        notes = context.pop("item_notes")
    else:
        context = {}
        notes = selectors.decorate_notes(access, list(selectors.notes_for(access, plan)[:30]))
    context.update(notes=notes, plan=plan, note_form=form, access=access)
    return render(request, "careplans/_notes.html", context, status=status)


def _note(request: HttpRequest, note_id: int) -> tuple[Note, PatientAccess]:
    """A note the user may see (its own category and its target's), or 404."""
    qs = Note.objects.select_related("care_plan__patient", "author", "goal", "need", "activity")
    try:
        note = qs.get(pk=note_id)
    except Note.DoesNotExist:
        raise Http404("Not found.") from None
    access = patient_access(request.user, note.care_plan.patient)
    if not access.can_see_note(note):
        raise Http404("Not found.")
    return note, access


@login_required
@require_POST
def note_accept(request: HttpRequest, note_id: int) -> HttpResponse:
    """Accept a proposal: its changes are saved to the item from the version proposed on."""
    return _decide(request, note_id, accept=True)


@login_required
@require_POST
def note_decline(request: HttpRequest, note_id: int) -> HttpResponse:
    """Decline a proposal with a reason."""
    return _decide(request, note_id, accept=False)


def _decide(request: HttpRequest, note_id: int, *, accept: bool) -> HttpResponse:
    note, access = _note(request, note_id)
    form = DecisionForm(request.POST)
    form.is_valid()
    on_item = form.cleaned_data.get("next") == "item" and note.target is not None
    error, status = "", 200
    try:
        if accept:
            services.note_accept(access=access, note=note, by=request.user, request=request)
        else:
            services.note_decline(
                access=access,
                note=note,
                by=request.user,
                reason=form.cleaned_data.get("reason", ""),
                request=request,
            )
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        error, status = (
            f"The {exc.current._meta.verbose_name} was changed after this proposal was made "
            f"(version {exc.expected} then, {exc.current.version} now), so nothing was changed. "
            "Look at it as it is now; the proposal stays open to decline or to propose again.",
            409,
        )
    except PermissionDenied as exc:
        error, status = str(exc), 403
    except ValidationError as exc:
        error, status = " ".join(exc.messages), 422
    message = "" if error else ("Proposal accepted." if accept else "Proposal declined.")
    anchor = f"#note-{note.pk}"
    if status == 200 and not request.htmx:
        url = (
            selectors.item_url(note.target, note.care_plan)
            if on_item
            else reverse("careplans:plan_editor", kwargs={"plan_id": note.care_plan_id})
        )
        return redirect(url + anchor)
    if on_item:
        kind = KINDS[type(note.target).__name__.lower()]
        item = _item(request, kind, note.target.pk)[0]
        selectors.decorate(access, item)
        context = {"item": item, "plan": item.care_plan, "access": access, "message": message}
        context.update(_item_notes_context(access, item))
        context.update(partial=f"careplans/_{kind.name}.html", decision_note=note.pk, decision_error=error)
        return render(request, "careplans/item_page.html", context, status=status)
    plan = note.care_plan
    context = _editor_context(access, plan)
    context.update(flash=message, decision_note=note.pk, decision_error=error)
    template = "careplans/_plan_body.html" if request.htmx else "careplans/editor.html"
    return render(request, template, context, status=status)


def _propose(request: HttpRequest, kind: Kind, pk: int) -> HttpResponse:
    """Propose changes to an item (any team member, typically one who may not edit it):
    the owner accepts or declines them."""
    item, access = _item(request, kind, pk)
    if not access.can_contribute():
        return _render_item(request, item, access, status=403, error=EMERGENCY_ACCESS_READ_ONLY)
    prefix = f"propose-{kind.name}-{item.pk}"
    fields = services.PROPOSABLE_FIELDS[kind.model]
    form = ProposalForm(request.POST or None, item=item, access=access, fields=fields, prefix=prefix)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                note = services.note_add(
                    access=access,
                    plan=item.care_plan,
                    by=request.user,
                    text=form.cleaned_data["text"],
                    kind="proposal",
                    target=item,
                    changes=form.changes(),
                    target_version=form.cleaned_data["expected_version"],
                    request=request,
                )
            except PermissionDenied as exc:
                return _render_item(request, item, access, status=403, error=str(exc))
            except ValidationError as exc:
                add_service_errors(form, exc)
                status = 422
            else:
                if not request.htmx:
                    return redirect(selectors.item_url(item, item.care_plan) + f"#note-{note.pk}")
                return _render_item(request, item, access, message="Proposal sent to the item's owner.")
        else:
            status = form.invalid_status
    selectors.decorate(access, item)
    context = {"item": item, "plan": item.care_plan, "access": access, "form": form}
    template = "careplans/_proposal_form.html"
    if not request.htmx:
        context["partial"] = template
        template = "careplans/item_page.html"
    return render(request, template, context, status=status)


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------
def _moment(token: str | None) -> dt.datetime | None:
    if not token:
        return None
    try:
        return dt.datetime.fromtimestamp(int(token) / 1_000_000, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


HISTORY_PAGE_SIZE = 50


@login_required
@require_GET
def plan_history(request: HttpRequest, plan_id: int) -> HttpResponse:
    """Every change (who, when, what), a diff between any two versions, and the plan as
    it stood at a date."""
    plan, access = _plan(request, plan_id)
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=plan,
        patient=access.patient,
        request=request,
        detail="history",
    )
    errors = []
    try:
        pager = selectors.plan_history_page(
            access, plan, request.GET.get(keyset.PARAM), size=HISTORY_PAGE_SIZE, query=request.GET
        )
    except keyset.BadCursor:
        errors.append("This page link is altered or out of date: start again from the newest changes.")
        pager = keyset.Page(rows=[])
    context = {
        "plan": plan,
        "patient": plan.patient,
        "access": access,
        "changes": pager.rows,
        "pager": pager,
    }
    start, end = request.GET.get("from"), request.GET.get("to")
    if start or end:
        a, b = _moment(start), _moment(end)
        if a is None or b is None:
            errors.append("Choose two versions to compare.")
        else:
            a, b = min(a, b), max(a, b)
            context["compare"] = {
                "from": a,
                "to": b,
                "diff": selectors.snapshot_diff(
                    selectors.plan_snapshot(access, plan, a), selectors.plan_snapshot(access, plan, b)
                ),
            }
    as_of = request.GET.get("at")
    if as_of:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError:
            errors.append("Enter the date as YYYY-MM-DD.")
        else:
            end_of_day = timezone.make_aware(dt.datetime.combine(day, dt.time.max))
            context["as_of"] = {
                "date": day,
                "items": selectors.snapshot_items(selectors.plan_snapshot(access, plan, end_of_day)),
            }
    context["errors"] = errors
    return render(request, "careplans/history.html", context, status=400 if errors else 200)


# ---------------------------------------------------------------------------
# Print view and PDF
# ---------------------------------------------------------------------------
AUDIENCES = {"team": "For the care team", "family": "For the patient and family"}


def _printed(request: HttpRequest, plan_id: int, *, as_pdf: bool):
    plan, access = _plan(request, plan_id)
    audience = request.GET.get("version", "team")
    if audience not in AUDIENCES:
        return (
            plan,
            access,
            None,
            render(
                request,
                "careplans/forbidden.html",
                {"message": "Choose the team version or the family version."},
                status=400,
            ),
        )
    include_sensitive = request.GET.get("sensitive") == "1"
    printed = selectors.printed_plan(access, plan, audience=audience, include_sensitive=include_sensitive)
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=plan,
        patient=access.patient,
        request=request,
        detail=f"{'pdf' if as_pdf else 'print'} {audience}{' with sensitive items' if include_sensitive else ''}",
    )
    context = {
        "printed": printed,
        "plan": plan,
        "patient": plan.patient,
        "access": access,
        "audience_label": AUDIENCES[audience],
        "printed_at": timezone.now(),
        "as_pdf": as_pdf,
    }
    return plan, access, context, None


@login_required
@require_GET
def plan_print(request: HttpRequest, plan_id: int) -> HttpResponse:
    """The plan to print: no buttons or forms, goals first, who does what by when, contacts."""
    _, _, context, error = _printed(request, plan_id, as_pdf=False)
    if error is not None:
        return error
    return render(request, "careplans/print.html", context)


@login_required
@require_GET
def plan_pdf(request: HttpRequest, plan_id: int) -> HttpResponse:
    """The same page as a PDF (WeasyPrint)."""
    plan, _, context, error = _printed(request, plan_id, as_pdf=True)
    if error is not None:
        return error
    html = render(request, "careplans/print.html", context).content.decode()
    return pdf_response(html, filename=f"care-plan-{plan.pk}-{context['printed'].audience}.pdf")
