"""Pages of caseloads, cover and bulk reassignment. Thin: parse, call
careteam.caseloads, render. Patient rows always come from the viewer's own visible
patients; a supervisor sees other case managers' counts, never the names of patients
they are not on the team of."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from . import caseloads
from .audit import audit_list
from .forms import CoverForm, ReassignForm, UsernameField
from .models import Cover, CoverStatus, User
from .permissions import patients_for
from .viewhelpers import add_service_errors, forbidden

# a caseload page: the heaviest caseloads (200 and more) page, the counts above stay whole
CASELOAD_PAGE_SIZE = 50
MAX_ROWS = 500  # a caseload is 50-99 patients; more than this is a data problem


def _id(raw) -> int | None:
    text = str(raw or "").strip()
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _case_manager_for(request: HttpRequest, raw) -> User:
    """The case manager whose caseload the viewer asks for: their own, or anyone's for a
    supervisor; 404 otherwise (hidden and missing alike)."""
    user = request.user
    if raw in (None, ""):
        return user
    pk = _id(raw)
    if pk is None:
        raise Http404("No such caseload.")
    if pk == user.pk:
        return user
    if not caseloads.is_supervisor(user):
        raise Http404("No such caseload.")
    target = caseloads.case_managers().filter(pk=pk).first()
    if target is None:
        raise Http404("No such caseload.")
    return target


# ---------------------------------------------------------------------------
# Caseload
# ---------------------------------------------------------------------------
@login_required
@require_GET
def caseload(request: HttpRequest) -> HttpResponse:
    """My caseload (the patients I am case manager of), or, for a supervisor, every case
    manager's counts and one case manager's patients as far as the supervisor may see them."""
    target = _case_manager_for(request, request.GET.get("case_manager"))
    supervisor = caseloads.is_supervisor(request.user)
    summary = caseloads.caseload_summaries(user_ids=[target.pk], users=[target])[0]
    paginator = Paginator(caseloads.CaseloadRows(request.user, case_manager=target), CASELOAD_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    patients = list(page.object_list)
    hidden = max(summary.patients - page.paginator.count, 0)
    query = {"case_manager": target.pk if target.pk != request.user.pk else ""}
    audit_list(request, list_name="caseload", patient_ids=[p.pk for p in patients], query=query)
    return render(
        request,
        "caseload/caseload.html",
        {
            "target": target,
            "own": target.pk == request.user.pk,
            "summary": summary,
            "patients": patients,
            "page": page,
            "query": urlencode({"case_manager": query["case_manager"]}) if query["case_manager"] else "",
            "hidden": hidden,
            "supervisor": supervisor,
            "summaries": caseloads.caseload_summaries() if supervisor else [],
        },
    )


# ---------------------------------------------------------------------------
# Bulk reassignment
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def caseload_reassign(request: HttpRequest) -> HttpResponse:
    """Choose whose patients move, to whom, and which; a confirmation page lists them
    (by name only those the viewer may see); confirming moves them all at once."""
    user = request.user
    supervisor = caseloads.is_supervisor(user)
    data = request.POST if request.method == "POST" else request.GET
    source = _case_manager_for(request, data.get("from_user"))
    visible = list(
        caseloads.caseload_patients(user, case_manager=source).only("pk", "family_name", "given_name", "mrn")[
            :MAX_ROWS
        ]
    )
    cms = caseloads.case_managers() if supervisor else User.objects.filter(pk=user.pk)
    form = ReassignForm(
        request.POST if request.method == "POST" else None,
        case_managers=cms,
        patient_choices=[(p.pk, str(p)) for p in visible],
        initial={"from_user": source.pk, "scope": "all"},
    )
    context = {
        "form": form,
        "source": source,
        "visible": visible,
        "supervisor": supervisor,
        "case_managers": caseloads.case_managers().exclude(pk=source.pk),
    }
    if request.method == "GET":
        audit_list(request, list_name="caseload-reassign", patient_ids=[p.pk for p in visible])
        return render(request, "caseload/reassign.html", context)
    if not form.is_valid():
        return render(request, "caseload/reassign.html", context, status=422)
    chosen = None if form.cleaned_data["scope"] == "all" else form.cleaned_data["patients"]
    to_user = form.cleaned_data["to_user"]
    try:
        if request.POST.get("step") != "confirm":
            ids = caseloads.reassign_check(by=user, from_user=source, to_user=to_user, patient_ids=chosen)
            shown = list(patients_for(user).filter(pk__in=ids).order_by("family_name", "given_name", "id"))
            audit_list(request, list_name="caseload-reassign-confirm", patient_ids=[p.pk for p in shown])
            context.update(
                {
                    "to_user": to_user,
                    "moving": shown,
                    "hidden_moving": len(ids) - len(shown),
                    "chosen": chosen,
                }
            )
            return render(request, "caseload/reassign_confirm.html", context)
        done = caseloads.caseload_reassign(
            by=user, from_user=source, to_user=to_user, patient_ids=chosen, request=request
        )
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except ValidationError as exc:
        add_service_errors(form, exc)
        return render(request, "caseload/reassign.html", context, status=422)
    messages.success(
        request,
        f"{len(done.patient_ids)} patients moved to {to_user.display_name}, "
        f"each with a handoff to acknowledge.",
    )
    url = "/team/caseloads/" + (f"?case_manager={source.pk}" if source.pk != user.pk else "")
    return redirect(url)


# ---------------------------------------------------------------------------
# Cover
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def cover(request: HttpRequest) -> HttpResponse:
    """Arrange cover while I am away (a supervisor may arrange it for someone else: the
    `absent` username), see who covers me and whom I cover, cancel a cover."""
    user = request.user
    supervisor = caseloads.is_supervisor(user)
    absent = user
    absent_error = ""
    if request.method == "POST" and supervisor and request.POST.get("absent"):
        try:
            absent = UsernameField().clean(request.POST.get("absent"))
        except ValidationError as exc:
            absent_error = " ".join(exc.messages)
    form = CoverForm(request.POST if request.method == "POST" else None, absent=absent)
    status = 200
    if request.method == "POST" and request.POST.get("action") == "cancel":
        return _cover_cancel(request)
    if request.method == "POST":
        status = 422
        if absent_error:
            form.add_error(None, f"Person away: {absent_error}")
        elif form.is_valid():
            try:
                made = caseloads.cover_create(by=user, absent=absent, request=request, **form.cleaned_data)
            except PermissionDenied as exc:
                return forbidden(request, str(exc))
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"{made.colleague.display_name} covers {made.absent.display_name} from "
                    f"{made.start_date:%-d %b %Y} to {made.end_date:%-d %b %Y}.",
                )
                return redirect("team:cover")
    return render(
        request,
        "caseload/cover.html",
        {"form": form, "covers": caseloads.covers_for(user), "supervisor": supervisor},
        status=status,
    )


def _cover_cancel(request: HttpRequest) -> HttpResponse:
    pk = _id(request.POST.get("cover"))
    found = Cover.objects.filter(pk=pk, status=CoverStatus.ACTIVE).first() if pk else None
    user = request.user
    if found is None or (
        user.pk not in (found.absent_id, found.colleague_id, found.created_by_id)
        and not caseloads.is_supervisor(user)
    ):
        raise Http404("No such cover.")
    try:
        caseloads.cover_cancel(by=user, cover=found, request=request)
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("team:cover")
    messages.success(request, "Cover cancelled: work goes back to the person it was for.")
    return redirect("team:cover")
