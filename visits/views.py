"""Pages of visits and authorisations. Thin: look up through careteam.permissions, call
a service or selector, render."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careteam import keyset
from careteam.audit import AuditAction, audit, audit_list, note_refusal
from careteam.concurrency import StaleVersionError
from careteam.permissions import access_item, audited_patient_view
from careteam.viewhelpers import add_service_errors

from . import ical, selectors, services
from .forms import (
    AuthorisationDocumentForm,
    AuthorisationForm,
    AuthorisationStatusForm,
    VisitForm,
    VisitRebookForm,
    VisitStatusForm,
)
from .models import (
    AUTHORISATION_TRANSITIONS,
    VISIT_REBOOKABLE,
    VISIT_TRANSITIONS,
    Authorisation,
    AuthorisationDocument,
    Visit,
)


def _day(request: HttpRequest) -> dt.date:
    try:
        return dt.date.fromisoformat(request.GET.get("week", "")[:10])
    except ValueError:
        return timezone.localdate()


def _stale(request, form, exc: StaleVersionError) -> int:
    note_refusal(request, exc.audit_reason)
    form.add_error(None, "This visit was changed by someone else since you opened it; reload and try again.")
    return 409


# ---------------------------------------------------------------------------
# Calendars
# ---------------------------------------------------------------------------
def _calendar_page(request: HttpRequest, calendar, *, title: str, list_name: str, team: bool) -> HttpResponse:
    patient_ids = {v.patient_id for d in calendar.days for v in d.visits}
    audit_list(
        request,
        list_name=list_name,
        patient_ids=sorted(patient_ids),
        query={"week": calendar.monday.isoformat()},
        detail=f"{calendar.count} visits",
    )
    return render(
        request,
        "visits/week.html",
        {"calendar": calendar, "title": title, "team": team, "today": timezone.localdate()},
    )


@login_required
@require_GET
def my_week(request: HttpRequest) -> HttpResponse:
    """My visits this week across my patients; home visits of each day in travel order."""
    calendar = selectors.my_week(request.user, _day(request))
    return _calendar_page(request, calendar, title="My week", list_name="visits.my_week", team=False)


def _team_week_filters(request: HttpRequest) -> tuple[dt.date, int | None, str]:
    """The day shown (`day`, else the `week` date as before, else today) and the
    clinician filter; a malformed `day` or `clinician` is a 400, not a guess."""
    error = ""
    day = _day(request)
    if "day" in request.GET:
        try:
            day = dt.date.fromisoformat(request.GET["day"])
        except ValueError:
            error = "Choose a day as YYYY-MM-DD."
    clinician_id = None
    raw = request.GET.get("clinician", "")
    if raw:
        try:
            clinician_id = int(raw)
            if clinician_id <= 0 or clinician_id > 2**63 - 1:
                raise ValueError
        except ValueError:
            clinician_id, error = None, "Choose a clinician from the list."
    return day, clinician_id, error


@login_required
@require_GET
def team_week(request: HttpRequest) -> HttpResponse:
    """The visits of the patients I am case manager of: the week's count per day and one
    day's visits (of everyone, or of one clinician), 50 a page."""
    day, clinician_id, error = _team_week_filters(request)
    team = None
    if not error:
        try:
            team = selectors.team_day(
                request.user,
                day,
                clinician_id=clinician_id,
                cursor=request.GET.get(keyset.PARAM),
                query=request.GET,
            )
        except keyset.BadCursor:
            error = "That page link is out of date or was altered."
    if team is None:
        context = {"error": error, "today": timezone.localdate()}
        return render(request, "visits/team_week.html", context, status=400)
    audit_list(
        request,
        list_name="visits.team_week",
        patient_ids=sorted({v.patient_id for v in team.visits}),
        query={"day": team.day.isoformat(), "clinician": clinician_id or ""},
        detail=f"{len(team.visits)} of {team.day_count} visits on {team.day.isoformat()}",
    )
    return render(
        request,
        "visits/team_week.html",
        {"team": team, "today": timezone.localdate(), "title": "The team's week"},
    )


# ---------------------------------------------------------------------------
# One patient's visits
# ---------------------------------------------------------------------------
@audited_patient_view
@require_http_methods(["GET", "POST"])
def patient_visits(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The patient's visits, newest first, and the form to book one."""
    access = request.patient_access
    data = request.POST if request.method == "POST" else None
    form = VisitForm(data, access=access)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            fields = dict(form.cleaned_data)
            activities = fields.pop("activities", [])
            try:
                booking = services.visit_book(
                    access=access, by=request.user, activities=activities, request=request, **fields
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Visit booked.")
                return redirect("visits:visit_detail", visit_id=booking.visit.pk)
        status = 422
    visits = list(selectors.patient_visits(access)[:200])
    return render(
        request,
        "visits/patient_visits.html",
        {"patient": access.patient, "access": access, "visits": visits, "form": form},
        status=status,
    )


def _visit(request: HttpRequest, visit_id: int):
    return access_item(
        request.user,
        Visit.objects.select_related("patient", "clinician", "discipline", "authorisation", "status_by"),
        visit_id,
        patient_path="patient",
    )


def _visit_page(request, visit, access, *, status_form=None, rebook_form=None, status=200) -> HttpResponse:
    activities = (
        selectors.with_visible_activities(Visit.objects.filter(pk=visit.pk), request.user)
        .get()
        .activities.all()
    )
    next_statuses = sorted(VISIT_TRANSITIONS.get(visit.status, ()))
    return render(
        request,
        "visits/visit_detail.html",
        {
            "visit": visit,
            "patient": access.patient,
            "access": access,
            "activities": list(activities),
            "chain": services.visit_chain(visit),
            "next_statuses": [(s, dict(visit._meta.get_field("status").choices)[s]) for s in next_statuses],
            "status_form": status_form or VisitStatusForm(initial={"expected_version": visit.version}),
            "rebook_form": rebook_form
            or VisitRebookForm(initial={"expected_version": visit.version, "time_zone": visit.time_zone}),
            "can_rebook": visit.status in VISIT_REBOOKABLE
            and not Visit.objects.filter(rebooked_from=visit).exists(),
        },
        status=status,
    )


@login_required
@require_GET
def visit_detail(request: HttpRequest, visit_id: int) -> HttpResponse:
    visit, access = _visit(request, visit_id)
    audit(user=request.user, action=AuditAction.VIEW, obj=visit, patient=access.patient, request=request)
    return _visit_page(request, visit, access)


@login_required
@require_POST
def visit_status(request: HttpRequest, visit_id: int) -> HttpResponse:
    visit, access = _visit(request, visit_id)
    access.require_edit()
    form = VisitStatusForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            services.visit_set_status(
                access=access,
                visit=visit,
                by=request.user,
                status=form.cleaned_data["status"],
                reason=form.cleaned_data["status_reason"],
                expected_version=form.cleaned_data["expected_version"],
                request=request,
            )
        except StaleVersionError as exc:
            status = _stale(request, form, exc)
        except ValidationError as exc:
            add_service_errors(form, exc)
            status = 409 if "illegal_transition" in {e.code for e in exc.error_list} else 422
        else:
            messages.success(request, "Visit updated.")
            return redirect("visits:visit_detail", visit_id=visit.pk)
    elif form.version_refused:
        status = form.invalid_status
    return _visit_page(request, visit, access, status_form=form, status=status)


@login_required
@require_POST
def visit_rebook(request: HttpRequest, visit_id: int) -> HttpResponse:
    visit, access = _visit(request, visit_id)
    access.require_edit()
    form = VisitRebookForm(request.POST)
    status = 422
    if form.is_valid():
        data = form.cleaned_data
        try:
            booking = services.visit_rebook(
                access=access,
                visit=visit,
                by=request.user,
                start=data["start"],
                reason=data["reason"],
                allow_conflicts=data["allow_conflicts"],
                expected_version=data["expected_version"],
                request=request,
            )
        except StaleVersionError as exc:
            status = _stale(request, form, exc)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Visit rebooked.")
            return redirect("visits:visit_detail", visit_id=booking.visit.pk)
    elif form.version_refused:
        status = form.invalid_status
    return _visit_page(request, visit, access, rebook_form=form, status=status)


# ---------------------------------------------------------------------------
# Authorisations
# ---------------------------------------------------------------------------
@audited_patient_view
@require_http_methods(["GET", "POST"])
def patient_authorisations(request: HttpRequest, patient_id: int) -> HttpResponse:
    access = request.patient_access
    form = AuthorisationForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                auth = services.authorisation_create(
                    access=access,
                    by=request.user,
                    request=request,
                    care_plan=services.careplan_for(access.patient.pk),
                    **form.cleaned_data,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Authorisation recorded.")
                return redirect("visits:authorisation_detail", authorisation_id=auth.pk)
        status = 422
    return render(
        request,
        "visits/authorisations.html",
        {
            "patient": access.patient,
            "access": access,
            "authorisations": list(selectors.patient_authorisations(access)[:200]),
            "form": form,
        },
        status=status,
    )


def _authorisation(request: HttpRequest, authorisation_id: int):
    return access_item(
        request.user,
        Authorisation.objects.select_related("patient", "discipline", "decided_by"),
        authorisation_id,
        patient_path="patient",
    )


def _authorisation_page(request, auth, access, *, status_form=None, document_form=None, status=200):
    return render(
        request,
        "visits/authorisation_detail.html",
        {
            "authorisation": auth,
            "patient": access.patient,
            "access": access,
            "documents": list(auth.documents.defer("data")),
            "visits": list(auth.visits.select_related("clinician").order_by("start", "id")[:200]),
            "next_statuses": [
                (s, dict(auth._meta.get_field("status").choices)[s])
                for s in sorted(AUTHORISATION_TRANSITIONS.get(auth.status, ()))
                if s != "exhausted"
            ],
            "status_form": status_form or AuthorisationStatusForm(initial={"expected_version": auth.version}),
            "document_form": document_form or AuthorisationDocumentForm(),
        },
        status=status,
    )


@login_required
@require_GET
def authorisation_detail(request: HttpRequest, authorisation_id: int) -> HttpResponse:
    auth, access = _authorisation(request, authorisation_id)
    audit(user=request.user, action=AuditAction.VIEW, obj=auth, patient=access.patient, request=request)
    return _authorisation_page(request, auth, access)


@login_required
@require_POST
def authorisation_status(request: HttpRequest, authorisation_id: int) -> HttpResponse:
    auth, access = _authorisation(request, authorisation_id)
    access.require_edit()
    form = AuthorisationStatusForm(request.POST)
    status = 422
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.authorisation_set_status(
                access=access,
                authorisation=auth,
                by=request.user,
                status=data["status"],
                reason=data["reason"],
                reference_number=data["reference_number"],
                expected_version=data["expected_version"],
                request=request,
            )
        except StaleVersionError as exc:
            status = _stale(request, form, exc)
        except ValidationError as exc:
            add_service_errors(form, exc)
            status = 409 if "illegal_transition" in {e.code for e in exc.error_list} else 422
        else:
            messages.success(request, "Authorisation updated.")
            return redirect("visits:authorisation_detail", authorisation_id=auth.pk)
    elif form.version_refused:
        status = form.invalid_status
    return _authorisation_page(request, auth, access, status_form=form, status=status)


@login_required
@require_POST
def authorisation_document_add(request: HttpRequest, authorisation_id: int) -> HttpResponse:
    auth, access = _authorisation(request, authorisation_id)
    access.require_edit()
    form = AuthorisationDocumentForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.authorisation_document_add(
                access=access,
                authorisation=auth,
                by=request.user,
                upload=form.cleaned_data["document"],
                request=request,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Document added.")
            return redirect("visits:authorisation_detail", authorisation_id=auth.pk)
    return _authorisation_page(request, auth, access, document_form=form, status=422)


@login_required
@require_GET
def authorisation_document(request: HttpRequest, authorisation_id: int) -> HttpResponse:
    """A document of the authorisation (`?document=<id>`, else the newest), as an
    attachment, audited as an export."""
    auth, access = _authorisation(request, authorisation_id)
    raw = request.GET.get("document", "")
    documents = AuthorisationDocument.objects.filter(authorisation=auth).order_by("-uploaded_at", "-id")
    if raw:
        documents = documents.filter(pk=int(raw)) if raw.isdigit() and len(raw) < 16 else documents.none()
    document = documents.first()
    if document is None:
        raise Http404("No such document.")
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=auth,
        patient=access.patient,
        request=request,
        detail=f"authorisation document {document.pk}",
    )
    response = HttpResponse(bytes(document.data), content_type=document.content_type)
    response["Content-Disposition"] = f'attachment; filename="authorisation-{auth.pk}-{document.pk}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------------------
# Calendar feed
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def calendar_feed(request: HttpRequest) -> HttpResponse:
    """Issue (or replace) and revoke my secret calendar address."""
    new_url = None
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            services.calendar_feed_revoke(by=request.user, request=request)
            messages.success(request, "The calendar address is revoked: calendars using it get nothing more.")
            return redirect("visits:calendar_feed")
        token = services.calendar_feed_issue(by=request.user, request=request)
        new_url = request.build_absolute_uri(
            reverse("visits:calendar_feed_ics", kwargs={"feed_token": token})
        )
    live = request.user.calendar_feeds.filter(revoked_at__isnull=True).first()
    return render(request, "visits/calendar_feed.html", {"feed": live, "new_url": new_url})


@require_GET
def calendar_feed_ics(request: HttpRequest, feed_token: str) -> HttpResponse:
    """The clinician's visits as iCalendar: times, the kind of visit and a link (behind
    the sign-in) only; never a patient's name or address. A revoked secret answers 404."""
    user = services.calendar_feed_user(feed_token)
    if user is None:
        raise Http404("No such calendar.")
    rows = selectors.feed_visits(user)
    audit(
        user=user,
        action=AuditAction.EXPORT,
        object_type="visits.calendarfeed",
        object_id=user.pk,
        request=request,
        detail=f"calendar feed, {len(rows)} visits",
        patient_ids=selectors.feed_patient_ids(user, [r[0] for r in rows]),
    )
    body = ical.calendar(rows, site=request.build_absolute_uri("/").rstrip("/"))
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# ---------------------------------------------------------------------------
# Scheduling accuracy
# ---------------------------------------------------------------------------
@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Booked vs kept vs missed visits and the wait to a first visit, over my patients."""
    try:
        days = max(7, min(int(request.GET.get("days", "90")[:4]), 730))
    except ValueError:
        days = 90
    period = request.GET.get("period", "month")
    report = selectors.scheduling_accuracy(
        request.user, since=timezone.localdate() - dt.timedelta(days=days), period=period
    )
    audit_list(
        request,
        list_name="visits.dashboard",
        patient_ids=[],
        query={"days": days, "period": period},
        detail="scheduling accuracy",
    )
    return render(request, "visits/dashboard.html", {"report": report, "days": days})
