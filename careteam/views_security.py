"""Pages of emergency access and the audit log.

Emergency access and existence. A patient URL answers 404 to anyone not on the team,
whether the patient exists or not, so the 404 page never confirms a record. The emergency
access page is the only place a clinician can learn whether an MRN exists, and only after
stating a clinical reason: the form is validated first (MRN, reason of 10+ characters,
acknowledgement, clinician account), and only then is the MRN looked up. A known MRN opens
read-only access (audited, the case manager notified); an unknown MRN says so, and that
attempt is audited too (outcome denied). Each user may make EMERGENCY_ACCESS_ATTEMPTS_PER_HOUR
attempts an hour, so the page cannot be used to enumerate MRNs.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from patients.models import Patient

from . import keyset, services
from .audit import audit, audit_list, events_for_patient, patient_events_q
from .models import AuditAction, AuditEvent, AuditOutcome, EmergencyAccess, User
from .permissions import access_patient_by_id, patient_access

PAGE_SIZE = 50


def chart_url(patient_id: int) -> str:
    """The patient's chart (the UI's page), or the emergency access page until it exists."""
    try:
        return reverse("patient_chart", kwargs={"patient_id": patient_id})
    except NoReverseMatch:
        return reverse("security:emergency_access")


def patient_by_mrn(mrn: str) -> Patient | None:
    """The patient with this MRN as typed or upper-cased: both use the unique index (a
    case-insensitive match would scan the whole table)."""
    mrn = (mrn or "").strip()
    if not mrn:
        return None
    return Patient.objects.filter(mrn__in={mrn, mrn.upper()}).first()


# ---------------------------------------------------------------------------
# Emergency access
# ---------------------------------------------------------------------------
class EmergencyAccessForm(forms.Form):
    mrn = forms.CharField(label="Patient MRN", max_length=40, strip=True)
    reason = forms.CharField(
        label="Clinical reason",
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=1000,
        strip=True,
        help_text="Why you need this record now. Shown to the patient's case manager.",
    )
    acknowledge = forms.BooleanField(
        label="I understand that this access is read-only, lasts a limited time, is recorded "
        "and is reported to the patient's case manager.",
    )

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"]
        if len(reason) < 10:
            raise ValidationError("State the clinical reason for emergency access (at least 10 characters).")
        return reason

    def clean(self):
        cleaned = super().clean()
        if not self.user.disciplines.exists():
            raise ValidationError("Only clinicians can use emergency access.")
        hour_ago = timezone.now() - dt.timedelta(hours=1)
        recent = AuditEvent.objects.filter(
            user_id=self.user.pk, action=AuditAction.EMERGENCY_ACCESS, at__gte=hour_ago
        ).count()
        if recent >= settings.EMERGENCY_ACCESS_ATTEMPTS_PER_HOUR:
            raise ValidationError(
                "Too many emergency access requests in the last hour. Ask the patient's case "
                "manager to add you to the care team."
            )
        return cleaned


@login_required
def emergency_access(request: HttpRequest) -> HttpResponse:
    """State a reason, get read-only access to one patient's record for a few hours."""
    form = EmergencyAccessForm(request.POST if request.method == "POST" else None, user=request.user)
    if request.method == "POST" and form.is_valid():
        mrn, reason = form.cleaned_data["mrn"], form.cleaned_data["reason"]
        patient = patient_by_mrn(mrn)
        if patient is None:
            audit(
                user=request.user,
                action=AuditAction.EMERGENCY_ACCESS,
                outcome=AuditOutcome.DENIED,
                object_type="patients.patient",
                request=request,
                detail=f"no patient with MRN {mrn[:40]}; reason: {reason}",
            )
            form.add_error("mrn", "No patient record has this MRN. Check the number and try again.")
        elif patient_access(request.user, patient).on_team:
            messages.info(request, "You are on this patient's care team: no emergency access is needed.")
            return redirect(chart_url(patient.pk))
        else:
            try:
                grant = services.emergency_access_open(
                    by=request.user, patient=patient, reason=reason, request=request
                )
            except ValidationError as exc:
                # a refused request counts as an attempt (and towards the hourly cap)
                audit(
                    user=request.user,
                    action=AuditAction.EMERGENCY_ACCESS,
                    outcome=AuditOutcome.DENIED,
                    obj=patient,
                    patient=patient,
                    request=request,
                    detail=f"refused: {' '.join(exc.messages)}; reason: {reason}",
                )
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                messages.warning(
                    request,
                    f"Emergency read-only access to {patient} until "
                    f"{timezone.localtime(grant.expires_at):%H:%M on %d %b %Y}. "
                    "The patient's case manager has been notified.",
                )
                return redirect(chart_url(patient.pk))
    grants = list(
        EmergencyAccess.objects.filter(user=request.user, expires_at__gt=timezone.now())
        .select_related("patient")
        .order_by("expires_at")
    )
    for grant in grants:
        grant.chart_url = chart_url(grant.patient_id)
    return render(
        request,
        "security/emergency_access.html",
        {"form": form, "grants": grants, "hours": settings.EMERGENCY_ACCESS_HOURS},
        status=200,
    )


# ---------------------------------------------------------------------------
# Audit: one patient's access log (case manager and lead), and the full search (auditors)
# ---------------------------------------------------------------------------
MAX_PAGE = 10**9


def _page(queryset, request: HttpRequest) -> tuple[list, int, bool]:
    """One page without COUNT(*): the audit table grows without bound, so fetch one row
    more than a page to know whether there is a next one (a single query)."""
    try:
        number = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        number = 1
    # an offset past PostgreSQL's bigint is refused by the database: such a page is empty
    number = min(number, MAX_PAGE)
    offset = (number - 1) * PAGE_SIZE
    rows = list(queryset[offset : offset + PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], number, len(rows) > PAGE_SIZE


BAD_CURSOR = "This page link is altered or out of date: start again from the newest events."


def _keyset_page(queryset, request: HttpRequest, *, salt: str, few_rows: bool = False) -> keyset.Page | None:
    """One keyset page of audit events, newest first (None for a cursor this list did not
    make): a page deep in the trail costs what the first one does."""
    try:
        return keyset.paginate(
            queryset,
            request.GET.get(keyset.PARAM),
            fields=("at", "id"),
            size=PAGE_SIZE,
            salt=salt,
            query=request.GET,
            few_rows=few_rows,
        )
    except keyset.BadCursor:
        return None


@login_required
def patient_access_log(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Who opened this patient's record and when: for the case manager and the lead."""
    access = access_patient_by_id(request.user, patient_id)
    if not access.can_view_access_log:
        raise Http404("No such patient.")
    patient = access.patient
    pager = _keyset_page(
        events_for_patient(patient.pk), request, salt=f"access-log.{patient.pk}", few_rows=True
    )
    grants = list(EmergencyAccess.objects.filter(patient=patient).select_related("user")[:20])
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=patient,
        patient=patient,
        object_type="careteam.auditevent",
        request=request,
        detail="access log",
    )
    return render(
        request,
        "security/patient_access_log.html",
        {
            "patient": patient,
            "events": pager.rows if pager else [],
            "grants": grants,
            "now": timezone.now(),
            "pager": pager,
            "has_next": bool(pager and pager.has_next),
            "cursor_error": None if pager else BAD_CURSOR,
            "chart_url": chart_url(patient.pk),
        },
        status=200 if pager else 400,
    )


RECENT_DAYS = (7, 30, 90)


def emergency_access_recent(*, days: int):
    """Grants of the last `days` days, newest first, each with the number of earlier
    grants of the same user on the same patient in the 30 days before it (renewals)."""
    since = timezone.now() - dt.timedelta(days=days)
    earlier = (
        EmergencyAccess.objects.filter(
            user=OuterRef("user"),
            patient=OuterRef("patient"),
            started_at__lt=OuterRef("started_at"),
            started_at__gte=OuterRef("started_at") - dt.timedelta(days=30),
        )
        .order_by()
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        EmergencyAccess.objects.filter(started_at__gte=since)
        .select_related("user")
        .annotate(earlier=Subquery(earlier))
        .order_by("-started_at", "-pk")
    )


@login_required
def emergency_access_report(request: HttpRequest) -> HttpResponse:
    """Recent emergency access across all patients, for auditors (careteam.view_audit_log).
    Patients are named by id only: the auditor is not on their teams."""
    if not (request.user.is_active and request.user.has_perm("careteam.view_audit_log")):
        raise Http404("No such page.")
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    if days not in RECENT_DAYS:
        days = 30
    grants, number, has_next = _page(emergency_access_recent(days=days), request)
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        object_type=EmergencyAccess._meta.label_lower,
        request=request,
        detail=f"recent emergency access, {days} days",
    )
    return render(
        request,
        "security/emergency_access_report.html",
        {
            "grants": grants,
            "days": days,
            "choices": RECENT_DAYS,
            "now": timezone.now(),
            "page": number,
            "has_next": has_next,
            "query": f"days={days}",
        },
    )


class AuditSearchForm(forms.Form):
    user = forms.CharField(label="User", required=False, max_length=150, help_text="Username")
    patient = forms.CharField(label="Patient", required=False, max_length=40, help_text="Patient id or MRN")
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    action = forms.ChoiceField(label="Action", required=False, choices=[("", "Any"), *AuditAction.choices])
    outcome = forms.ChoiceField(label="Outcome", required=False, choices=[("", "Any"), *AuditOutcome.choices])

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", "The end date cannot be before the start date.")
        return cleaned


def audit_search(params: dict, *, tz=None) -> tuple[object, str]:
    """The filtered audit queryset for validated search parameters, and a one-line
    description of the search (stored with the auditor's own audit event)."""
    qs = AuditEvent.objects.all()
    parts = []
    if params.get("user"):
        # by id when the account exists (indexed with the time); by the stored name otherwise
        uid = User.objects.filter(username__iexact=params["user"]).values_list("pk", flat=True).first()
        qs = qs.filter(user_id=uid) if uid is not None else qs.filter(username__iexact=params["user"])
        parts.append(f"user={params['user']}")
    if params.get("patient"):
        term = params["patient"]
        if term.isdigit():
            pid = int(term)
        else:
            found = patient_by_mrn(term)
            pid = found.pk if found is not None else -1
        qs = qs.filter(patient_events_q(pid))
        parts.append(f"patient={term}")
    tz = tz or timezone.get_current_timezone()
    if params.get("date_from"):
        start = dt.datetime.combine(params["date_from"], dt.time.min, tzinfo=tz)
        qs = qs.filter(at__gte=start)
        parts.append(f"from={params['date_from']}")
    if params.get("date_to"):
        end = dt.datetime.combine(params["date_to"] + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
        qs = qs.filter(at__lt=end)
        parts.append(f"to={params['date_to']}")
    for name in ("action", "outcome"):
        if params.get(name):
            qs = qs.filter(**{name: params[name]})
            parts.append(f"{name}={params[name]}")
    return qs, " ".join(parts)


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    """Search the whole audit trail by user, patient and date (careteam.view_audit_log)."""
    if not (request.user.is_active and request.user.has_perm("careteam.view_audit_log")):
        raise PermissionDenied("Searching the audit log needs the 'Can search the audit log' permission.")
    form = AuditSearchForm(request.GET or None)
    pager, error = None, None
    if not form.is_bound or form.is_valid():
        params = form.cleaned_data if form.is_bound else {}
        qs, description = audit_search(params)
        pager = _keyset_page(qs, request, salt="audit-search", few_rows=bool(params.get("patient")))
        if pager is None:
            error = BAD_CURSOR
        else:
            audit_list(
                request,
                list_name="careteam.auditevent",
                patient_ids=[e.patient_id for e in pager.rows],
                detail=f"audit search {description}".strip(),
            )
    return render(
        request,
        "security/audit_log.html",
        {
            "form": form,
            "events": pager.rows if pager else [],
            "pager": pager,
            "has_next": bool(pager and pager.has_next),
            "cursor_error": error,
        },
        status=400 if error else 200,
    )
