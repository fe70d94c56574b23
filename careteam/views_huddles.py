"""Pages of huddles: a patient's huddles, starting one (the case manager), one huddle with
what changed since the last one, the answers and the viewer's own answer form, closing
it with a summary; and starting a huddle on each of my patients with changes. Thin: look
up through careteam.permissions, call careteam.huddles, render."""

from __future__ import annotations

import datetime as dt
from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from . import huddles as services
from .audit import AuditAction, audit, note_refusal
from .concurrency import StaleVersionError
from .conversations import about_from_key
from .forms import CaseloadHuddleForm, HuddleAnswerForm, HuddleCloseForm, HuddleStartForm
from .models import User
from .permissions import PatientAccess, access_huddle, access_patient_by_id, team_members_who_may_see
from .viewhelpers import add_service_errors, forbidden

PATIENT_LIST_LIMIT = 100


def _user(request: HttpRequest) -> User:
    """The signed-in user (every view here is behind login_required)."""
    return cast(User, request.user)


def _team_access(request: HttpRequest, patient_id) -> PatientAccess:
    """The patient, for its current team only: anyone else (emergency access included)
    gets the same 404 as for a patient that does not exist."""
    access = access_patient_by_id(request.user, patient_id)
    if not access.on_team:
        raise Http404("No such patient.")
    return access


def _default_deadline() -> dt.datetime:
    """Tomorrow at noon, local time: a shift's worth of time to answer."""
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    return timezone.make_aware(dt.datetime.combine(tomorrow, dt.time(12, 0)))


def _about_choices(changes) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for c in changes:
        if c.key and c.key not in seen:
            seen[c.key] = f"{c.kind_label}: {c.label}"
    return list(seen.items())


# ---------------------------------------------------------------------------
# One patient's huddles, and starting one
# ---------------------------------------------------------------------------
@login_required
@require_GET
def patient_huddles(request: HttpRequest, patient_id: int) -> HttpResponse:
    access = _team_access(request, patient_id)
    rows = list(services.huddles_for_patient(access)[:PATIENT_LIST_LIMIT])
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail=f"huddles, {len(rows)} shown",
    )
    return render(
        request, "huddles/patient_list.html", {"patient": access.patient, "access": access, "rows": rows}
    )


@login_required
@require_http_methods(["GET", "POST"])
def huddle_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The case manager starts a huddle on the patient."""
    access = _team_access(request, patient_id)
    if not access.is_case_manager:
        return forbidden(request, "Only the patient's case manager can start a huddle.")
    team = team_members_who_may_see(access.patient.pk).exclude(pk=request.user.pk).order_by("last_name", "id")
    status = 200
    if request.method == "POST":
        form = HuddleStartForm(request.POST, team=team)
        if form.is_valid():
            d = form.cleaned_data
            try:
                huddle = services.huddle_start(
                    access=access,
                    by=_user(request),
                    deadline=d["deadline"],
                    format=d["format"],
                    invitees=[u.pk for u in d["invitees"]] or None,
                    request=request,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Huddle started; the invited members were told.")
                return redirect(services.huddle_url(huddle))
        status = 422
    else:
        form = HuddleStartForm(team=team, initial={"deadline": timezone.localtime(_default_deadline())})
    last = services.previous_huddle(access.patient.pk)
    context = {"patient": access.patient, "access": access, "form": form, "last": last}
    return render(request, "huddles/new.html", context, status=status)


# ---------------------------------------------------------------------------
# One huddle
# ---------------------------------------------------------------------------
def _detail_context(access: PatientAccess, huddle, *, answer_form=None, close_form=None) -> dict:
    changes = services.huddle_changes(access, huddle)
    invitations = services.invitation_rows(access, huddle)
    mine = next((i for i in invitations if i.user_id == access.user.pk), None)
    can_answer = huddle.is_open and mine is not None and not mine.answered
    if can_answer and answer_form is None:
        answer_form = HuddleAnswerForm(labels=huddle.labels(), about_choices=_about_choices(changes))
    can_close = huddle.is_open and access.is_case_manager
    if can_close and close_form is None:
        close_form = HuddleCloseForm(initial={"expected_version": huddle.version})
    return {
        "patient": access.patient,
        "access": access,
        "huddle": huddle,
        "labels": huddle.labels(),
        "changes": changes,
        "invitations": invitations,
        "answered": sum(1 for i in invitations if i.answered),
        "mine": mine,
        "answer_form": answer_form if can_answer else None,
        "close_form": close_form if can_close else None,
        "past_deadline": huddle.is_past_deadline(),
    }


@login_required
@require_GET
def huddle_detail(request: HttpRequest, patient_id: int, huddle_id: int) -> HttpResponse:
    huddle, access = access_huddle(request.user, huddle_id, patient_id=patient_id)
    services.huddle_read(access=access, by=_user(request), huddle=huddle, request=request)
    return render(request, "huddles/detail.html", _detail_context(access, huddle))


@login_required
@require_http_methods(["GET", "POST"])
def huddle_answer(request: HttpRequest, patient_id: int, huddle_id: int) -> HttpResponse:
    """An invited member posts their update (GET shows the huddle with the form)."""
    huddle, access = access_huddle(request.user, huddle_id, patient_id=patient_id)
    mine = services.my_invitation(huddle, request.user)
    if mine is None:
        return forbidden(request, "You were not invited to this huddle; post in its conversation instead.")
    if request.method == "GET":
        return redirect(services.huddle_url(huddle) + "#answer")
    changes = services.huddle_changes(access, huddle)
    form = HuddleAnswerForm(request.POST, labels=huddle.labels(), about_choices=_about_choices(changes))
    status = 422
    if form.is_valid():
        d = form.cleaned_data
        try:
            about = about_from_key(access, d["about"])
            services.huddle_answer(
                access=access,
                by=_user(request),
                huddle=huddle,
                answer={name: d[name] for name in ("news", "concerns", "will_do", "needs_from")},
                about=about,
                request=request,
            )
        except ValidationError as exc:
            if getattr(exc, "code", None) in (services.HUDDLE_CLOSED, services.ALREADY_ANSWERED):
                note_refusal(request, f"conflict: {exc.code}")
                messages.error(request, " ".join(exc.messages))
                status = 409
            add_service_errors(form, exc)
        except PermissionDenied as exc:
            return forbidden(request, str(exc))
        else:
            if request.htmx:  # the updates and the form, in place
                context = {**_detail_context(access, huddle), "posted": True}
                return render(request, "huddles/_answers.html", context)
            messages.success(request, "Update posted in the huddle's conversation.")
            return redirect(services.huddle_url(huddle))
    context = _detail_context(access, huddle, answer_form=form)
    if status == 409:
        context["answer_error"] = " ".join(str(e) for e in form.non_field_errors())
    template = "huddles/_answers.html" if request.htmx else "huddles/detail.html"
    return render(request, template, context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def huddle_close(request: HttpRequest, patient_id: int, huddle_id: int) -> HttpResponse:
    """The case manager closes the huddle with a summary."""
    huddle, access = access_huddle(request.user, huddle_id, patient_id=patient_id)
    if not access.is_case_manager:
        return forbidden(request, "Only the patient's case manager can close a huddle.")
    if request.method == "GET":
        return redirect(services.huddle_url(huddle) + "#close")
    form = HuddleCloseForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            services.huddle_close(
                access=access,
                by=_user(request),
                huddle=huddle,
                summary=form.cleaned_data["summary"],
                expected_version=form.cleaned_data["expected_version"],
                request=request,
            )
        except ValidationError as exc:
            if getattr(exc, "code", None) == services.HUDDLE_CLOSED:
                note_refusal(request, f"conflict: {exc.code}")
                status = 409
            add_service_errors(form, exc)
        except StaleVersionError as exc:
            note_refusal(request, exc.audit_reason)
            form.add_error(None, "Someone changed this huddle since you opened it; reload and try again.")
            status = 409
        else:
            messages.success(request, "Huddle closed; the summary is on the chart.")
            return redirect(services.huddle_url(huddle))
    elif form.version_refused:
        status = form.invalid_status
    huddle.refresh_from_db()
    return render(
        request, "huddles/detail.html", _detail_context(access, huddle, close_form=form), status=status
    )


# ---------------------------------------------------------------------------
# My patients
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def caseload_huddles(request: HttpRequest) -> HttpResponse:
    """A huddle on each of my patients (as their case manager) with changes since their
    last huddle and none open."""
    started = None
    status = 200
    if request.method == "POST":
        form = CaseloadHuddleForm(request.POST)
        if form.is_valid():
            try:
                started = services.huddles_start_for_caseload(
                    by=_user(request),
                    deadline=form.cleaned_data["deadline"],
                    format=form.cleaned_data["format"],
                    request=request,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
                status = 422
        else:
            status = 422
    else:
        form = CaseloadHuddleForm(initial={"deadline": timezone.localtime(_default_deadline())})
    due = services.patients_due_a_huddle(_user(request)).count()
    context = {"form": form, "started": started, "due": due}
    return render(request, "huddles/caseload.html", context, status=status)
