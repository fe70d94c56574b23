"""Writes of visits, authorisations and calendar feeds. Each checks the status machine
and the version the caller read, saves with history and writes an audit event; nothing
is half-written (every function is one transaction)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from careplans.models import Activity, CarePlan
from careteam import events
from careteam.audit import audit
from careteam.concurrency import apply_changes, lock_for_update, save_versioned
from careteam.history import history_by
from careteam.models import AuditAction, TeamMembership, User
from careteam.permissions import PatientAccess
from careteam.statemachine import check_initial, check_transition
from patients.services import consent_document_check

from .models import (
    AUTHORISATION_INITIAL_STATUSES,
    AUTHORISATION_TRANSITIONS,
    AUTHORISATION_USABLE,
    REASON_MAX_LENGTH,
    VISIT_INITIAL_STATUSES,
    VISIT_OPEN_STATUSES,
    VISIT_REBOOKABLE,
    VISIT_STATUSES_NEEDING_REASON,
    VISIT_TRANSITIONS,
    Authorisation,
    AuthorisationDocument,
    AuthorisationStatus,
    CalendarFeed,
    Visit,
    VisitStatus,
)

# the code of the error that asks the caller to confirm a double booking (API: 409)
VISIT_CONFLICT = "visit_conflict"


def _full_clean(instance, exclude: list[str]) -> None:
    instance.full_clean(exclude=exclude, validate_constraints=False)


def _reason(status: str, reason: str, needing: frozenset[str], label: str) -> str:
    reason = (reason or "").strip()
    if status in needing and not reason:
        raise ValidationError({"status_reason": f"Say why this is changed to “{label}”."})
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError({"status_reason": f"Keep the reason under {REASON_MAX_LENGTH} characters."})
    return reason


# ---------------------------------------------------------------------------
# Visits
# ---------------------------------------------------------------------------
@dataclass
class Conflict:
    """Another open visit of the same clinician at the same time: only its times are
    told (it may be of a patient the booker cannot see)."""

    start: dt.datetime
    end: dt.datetime

    def __str__(self) -> str:
        start, end = timezone.localtime(self.start), timezone.localtime(self.end)
        return f"{start:%d %b %H:%M}–{end:%H:%M}"


def visit_conflicts(*, clinician_id: int | None, start: dt.datetime, end: dt.datetime, exclude_id=None):
    """Open visits of this clinician overlapping [start, end)."""
    if clinician_id is None:
        return []
    qs = Visit.objects.filter(clinician_id=clinician_id, status__in=VISIT_OPEN_STATUSES).in_window(start, end)
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return [Conflict(s, e) for s, e in qs.order_by("start").values_list("start", "end")[:10]]


def _check_conflicts(visit: Visit, allow_conflicts: bool) -> list[Conflict]:
    conflicts = visit_conflicts(
        clinician_id=visit.clinician_id, start=visit.start, end=visit.end, exclude_id=visit.pk
    )
    if conflicts and not allow_conflicts:
        raise ValidationError(
            {
                "start": "The clinician has another visit at this time ("
                + ", ".join(map(str, conflicts))
                + "). Choose another time, or confirm the double booking."
            },
            code=VISIT_CONFLICT,
        )
    return conflicts


def _check_people(access: PatientAccess, visit: Visit) -> None:
    if visit.clinician_id is None and not visit.provider_name.strip():
        raise ValidationError({"clinician": "Name the team member or the outside provider of the visit."})
    if visit.clinician_id is not None:
        membership = (
            TeamMembership.objects.current()
            .filter(patient=access.patient, user_id=visit.clinician_id)
            .order_by("role", "id")
            .first()
        )
        if membership is None:
            raise ValidationError({"clinician": "The clinician must be on this patient's care team."})
        if visit.discipline_id is None:
            visit.discipline_id = membership.discipline_id


def _check_links(access: PatientAccess, visit: Visit, activities) -> list[Activity]:
    activities = list(activities or [])
    for activity in activities:
        if activity.care_plan.patient_id != access.patient.pk or not access.can_see(activity):
            raise ValidationError({"activities": "Link only activities of this patient's plan."})
    if visit.care_plan is not None and visit.care_plan.patient_id != access.patient.pk:
        raise ValidationError({"care_plan": "That plan belongs to another patient."})
    if visit.care_plan_id is None and activities:
        visit.care_plan_id = activities[0].care_plan_id
    if visit.referral is not None and visit.referral.patient_id != access.patient.pk:
        raise ValidationError({"referral": "That referral belongs to another patient."})
    auth = visit.authorisation
    if auth is not None:
        if auth.patient_id != access.patient.pk:
            raise ValidationError({"authorisation": "That authorisation belongs to another patient."})
        if auth.status not in AUTHORISATION_USABLE:
            raise ValidationError(
                {
                    "authorisation": f"The authorisation is {auth.get_status_display().lower()}: visits draw only on an approved one."
                }
            )
        day = timezone.localtime(visit.start, visit.local_start().tzinfo).date()
        if not auth.covers(day):
            raise ValidationError(
                {
                    "authorisation": f"The authorisation runs from {auth.start_date:%d %b %Y} to "
                    f"{auth.end_date:%d %b %Y}; the visit is on {day:%d %b %Y}."
                }
            )
    return activities


def _check_times(visit: Visit) -> None:
    if visit.start is None or timezone.is_naive(visit.start):
        raise ValidationError({"start": "Give the start as a date and time with its time zone."})
    visit.end = visit.start + dt.timedelta(minutes=int(visit.duration_minutes or 0))


@dataclass
class Booking:
    visit: Visit
    conflicts: list[Conflict] = field(default_factory=list)


@transaction.atomic
def visit_book(
    *,
    access: PatientAccess,
    by: User,
    start: dt.datetime,
    activities=(),
    allow_conflicts: bool = False,
    rebooked_from: Visit | None = None,
    request=None,
    **fields: Any,
) -> Booking:
    """Book a visit. A double booking of the clinician is refused (code `visit_conflict`,
    naming only the other visits' times) unless `allow_conflicts`."""
    access.require_edit()
    visit = Visit(patient=access.patient, created_by=by, start=start, rebooked_from=rebooked_from, **fields)
    check_initial(VISIT_INITIAL_STATUSES, visit.status, what="visit")
    _full_clean(visit, exclude=["patient", "created_by", "end", "activities", "rebooked_from"])
    _check_times(visit)
    _check_people(access, visit)
    linked = _check_links(access, visit, activities)
    conflicts = _check_conflicts(visit, allow_conflicts)
    history_by(visit, by)
    visit.save()
    if linked:
        visit.activities.set(linked)
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=visit,
        patient=access.patient,
        request=request,
        detail=f"rebooking visit {rebooked_from.pk}" if rebooked_from else "",
    )
    return Booking(visit, conflicts)


RESCHEDULE_FIELDS = (
    "visit_type",
    "clinician",
    "provider_name",
    "discipline",
    "start",
    "duration_minutes",
    "time_zone",
    "location",
    "units",
    "authorisation",
)


@transaction.atomic
def visit_update(
    *,
    access: PatientAccess,
    visit: Visit,
    by: User,
    changes: dict[str, Any],
    expected_version: int | None,
    allow_conflicts: bool = False,
    request=None,
) -> Visit:
    """Change a booked visit's time, place or people (the version the caller read)."""
    access.require_edit()
    unknown = set(changes) - set(RESCHEDULE_FIELDS) - {"activities"}
    if unknown:
        raise ValidationError({name: "This field cannot be changed here." for name in sorted(unknown)})
    fresh = lock_for_update(visit, expected_version)
    if fresh.status not in VISIT_OPEN_STATUSES:
        raise ValidationError(
            {"status": f"A {fresh.get_status_display().lower()} visit is not changed; rebook it instead."},
            code="illegal_transition",
        )
    activities = changes.pop("activities", None)
    changed = apply_changes(fresh, changes)
    if not changed and activities is None:
        return fresh
    _full_clean(fresh, exclude=["patient", "created_by", "end", "activities", "rebooked_from"])
    _check_times(fresh)
    _check_people(access, fresh)
    linked = _check_links(access, fresh, activities if activities is not None else fresh.activities.all())
    if {"start", "duration_minutes", "clinician"} & set(changed):
        _check_conflicts(fresh, allow_conflicts)
    history_by(fresh, by)
    save_versioned(fresh, expected_version=expected_version)
    if activities is not None:
        fresh.activities.set(linked)
    old_auth = visit.authorisation_id
    for auth_id in {a for a in (old_auth, fresh.authorisation_id) if a is not None}:
        if fresh.status == VisitStatus.FULFILLED:
            authorisation_recount(authorisation_id=auth_id)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="changed: " + ", ".join(changed + (["activities"] if activities is not None else [])),
    )
    return fresh


@transaction.atomic
def visit_set_status(
    *,
    access: PatientAccess,
    visit: Visit,
    by: User,
    status: str,
    reason: str = "",
    expected_version: int | None,
    request=None,
) -> Visit:
    """Arrived, completed, missed (no-show) or cancelled, by whom and (missed,
    cancelled) why. Completing a visit that draws on an authorisation counts its units."""
    access.require_edit()
    fresh = lock_for_update(visit, expected_version)
    check_transition(VISIT_TRANSITIONS, fresh.status, status)
    if fresh.status == status:
        return fresh
    label = dict(VisitStatus.choices).get(status, status)
    fresh.status_reason = _reason(status, reason, VISIT_STATUSES_NEEDING_REASON, label)
    from_status, fresh.status = fresh.status, status
    fresh.status_by, fresh.status_at = by, timezone.now()
    history_by(fresh, by)
    save_versioned(fresh, expected_version=expected_version)
    if fresh.authorisation_id and VisitStatus.FULFILLED in (from_status, status):
        authorisation_recount(authorisation_id=fresh.authorisation_id, by=by)
    audit(
        user=by, action=AuditAction.UPDATE, obj=fresh, patient=access.patient, request=request, detail=status
    )
    if status == VisitStatus.NOSHOW:
        events.emit("visit.missed", obj=fresh, by=by, access=access)
    return fresh


@transaction.atomic
def visit_rebook(
    *,
    access: PatientAccess,
    visit: Visit,
    by: User,
    start: dt.datetime,
    expected_version: int | None,
    reason: str = "",
    duration_minutes: int | None = None,
    allow_conflicts: bool = False,
    request=None,
) -> Booking:
    """Book the visit again at another time. A booked visit is cancelled ("Rebooked"); the
    new one points back to it, so the chain of a visit moved twice stays readable."""
    access.require_edit()
    fresh = lock_for_update(visit, expected_version)
    if fresh.status not in VISIT_REBOOKABLE:
        raise ValidationError(
            {"status": f"A {fresh.get_status_display().lower()} visit cannot be rebooked."},
            code="illegal_transition",
        )
    if Visit.objects.filter(rebooked_from=fresh).exists():
        raise ValidationError({"status": "This visit was rebooked already."}, code="already_decided")
    if fresh.status == VisitStatus.BOOKED:
        fresh.status, fresh.status_by, fresh.status_at = VisitStatus.CANCELLED, by, timezone.now()
        fresh.status_reason = ("Rebooked. " + (reason or "").strip()).strip()[:REASON_MAX_LENGTH]
        history_by(fresh, by)
        save_versioned(fresh, expected_version=expected_version)
    authorisation = fresh.authorisation
    if authorisation is not None and authorisation.status not in AUTHORISATION_USABLE:
        authorisation = None
    booking = visit_book(
        access=access,
        by=by,
        start=start,
        activities=list(fresh.activities.all()),
        allow_conflicts=allow_conflicts,
        rebooked_from=fresh,
        request=request,
        care_plan=fresh.care_plan,
        referral=fresh.referral,
        authorisation=authorisation,
        visit_type=fresh.visit_type,
        clinician=fresh.clinician,
        provider_name=fresh.provider_name,
        discipline=fresh.discipline,
        duration_minutes=duration_minutes or fresh.duration_minutes,
        time_zone=fresh.time_zone,
        location=fresh.location,
        units=fresh.units,
    )
    return booking


def visit_chain(visit: Visit) -> list[Visit]:
    """The visits this one was rebooked from and to, oldest first (one query per hop:
    chains are short)."""
    before: list[Visit] = []
    node = visit
    while node.rebooked_from_id is not None and len(before) < 20:
        node = Visit.objects.get(pk=node.rebooked_from_id)
        before.append(node)
    after: list[Visit] = []
    last = visit
    while len(after) < 20:
        following = Visit.objects.filter(rebooked_from=last).first()
        if following is None:
            break
        after.append(following)
        last = following
    return [*reversed(before), visit, *after]


# ---------------------------------------------------------------------------
# Authorisations
# ---------------------------------------------------------------------------
def _check_authorisation(auth: Authorisation) -> None:
    if auth.units_authorised is None or int(auth.units_authorised) < 1:
        raise ValidationError({"units_authorised": "Authorise at least one unit or visit."})
    if auth.start_date and auth.end_date and auth.end_date < auth.start_date:
        raise ValidationError({"end_date": "The authorisation cannot end before it starts."})
    if auth.care_plan is not None and auth.care_plan.patient_id != auth.patient_id:
        raise ValidationError({"care_plan": "That plan belongs to another patient."})


@transaction.atomic
def authorisation_create(*, access: PatientAccess, by: User, request=None, **fields: Any) -> Authorisation:
    """Record a request for (or an approval already given of) a service authorisation.
    One recorded approved fires the hand-on rules, as an approval later does."""
    access.require_edit()
    if fields.get("units_authorised") is not None and int(fields["units_authorised"]) < 1:
        raise ValidationError({"units_authorised": "Authorise at least one unit or visit."})
    auth = Authorisation(patient=access.patient, created_by=by, **fields)
    check_initial(AUTHORISATION_INITIAL_STATUSES, auth.status, what="authorisation")
    _full_clean(auth, exclude=["patient", "created_by", "decided_by"])
    _check_authorisation(auth)
    if auth.status == AuthorisationStatus.APPROVED:
        auth.decided_at, auth.decided_by = timezone.now(), by
    history_by(auth, by)
    auth.save()
    audit(user=by, action=AuditAction.CREATE, obj=auth, patient=access.patient, request=request)
    if auth.status == AuthorisationStatus.APPROVED:
        events.emit("authorisation.approved", obj=auth, by=by, access=access)
    return auth


AUTHORISATION_EDITABLE = (
    "payer",
    "service",
    "discipline",
    "provider_name",
    "unit_kind",
    "units_authorised",
    "start_date",
    "end_date",
    "reference_number",
    "care_plan",
)


@transaction.atomic
def authorisation_update(
    *,
    access: PatientAccess,
    authorisation: Authorisation,
    by: User,
    changes: dict[str, Any],
    expected_version: int | None,
    request=None,
) -> Authorisation:
    """Change what is authorised (more units, a later end): the status follows the
    units left."""
    access.require_edit()
    unknown = set(changes) - set(AUTHORISATION_EDITABLE)
    if unknown:
        raise ValidationError({name: "This field cannot be changed here." for name in sorted(unknown)})
    fresh = lock_for_update(authorisation, expected_version)
    if "units_authorised" in changes and (
        changes["units_authorised"] is None or int(changes["units_authorised"]) < 1
    ):
        raise ValidationError({"units_authorised": "Authorise at least one unit or visit."})
    changed = apply_changes(fresh, changes)
    if not changed:
        return fresh
    _full_clean(fresh, exclude=["patient", "created_by", "decided_by"])
    _check_authorisation(fresh)
    history_by(fresh, by)
    save_versioned(fresh, expected_version=expected_version)
    if "units_authorised" in changed:
        authorisation_recount(authorisation_id=fresh.pk, by=by)
        fresh.refresh_from_db()
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="changed: " + ", ".join(changed),
    )
    return fresh


@transaction.atomic
def authorisation_set_status(
    *,
    access: PatientAccess,
    authorisation: Authorisation,
    by: User,
    status: str,
    reason: str = "",
    reference_number: str | None = None,
    expected_version: int | None,
    request=None,
) -> Authorisation:
    """Record the payer's answer (approved, denied), an appeal (requested again) or the
    end (expired). Exhausted follows from the units used, not from this call. Approving
    fires the hand-on rules."""
    access.require_edit()
    fresh = lock_for_update(authorisation, expected_version)
    if status == AuthorisationStatus.EXHAUSTED and fresh.status != status:
        raise ValidationError(
            {"status": "An authorisation is exhausted when its units are used by completed visits."},
            code="illegal_transition",
        )
    check_transition(AUTHORISATION_TRANSITIONS, fresh.status, status)
    if fresh.status == status:
        return fresh
    label = dict(AuthorisationStatus.choices).get(status, status)
    fresh.status_reason = _reason(status, reason, frozenset({"denied"}), label)
    if reference_number is not None and reference_number.strip():
        fresh.reference_number = reference_number.strip()[:100]
    if status in (AuthorisationStatus.APPROVED, AuthorisationStatus.DENIED):
        fresh.decided_at, fresh.decided_by = timezone.now(), by
    if status == AuthorisationStatus.REQUESTED:
        fresh.requested_at, fresh.decided_at, fresh.decided_by = timezone.now(), None, None
    from_status, fresh.status = fresh.status, status
    history_by(fresh, by)
    save_versioned(fresh, expected_version=expected_version)
    audit(
        user=by, action=AuditAction.UPDATE, obj=fresh, patient=access.patient, request=request, detail=status
    )
    if status == AuthorisationStatus.APPROVED and from_status == AuthorisationStatus.REQUESTED:
        events.emit("authorisation.approved", obj=fresh, by=by, access=access)
    if status == AuthorisationStatus.APPROVED:
        authorisation_recount(authorisation_id=fresh.pk, by=by)
        fresh.refresh_from_db()
    return fresh


def authorisation_recount(*, authorisation_id: int, by: User | None = None) -> Authorisation:
    """Units used = the units of the completed visits drawing on the authorisation,
    counted under the authorisation's row lock (two visits completed at once both
    count). Using the last unit makes an approved authorisation exhausted (the sweep
    then warns the case manager once); more units make it approved again."""
    with transaction.atomic():
        auth = Authorisation.objects.select_for_update().get(pk=authorisation_id)
        used = (
            Visit.objects.filter(authorisation_id=auth.pk, status=VisitStatus.FULFILLED).aggregate(
                n=Sum("units")
            )["n"]
            or 0
        )
        fields = []
        if used != auth.units_used:
            auth.units_used = used
            fields.append("units_used")
        if auth.status == AuthorisationStatus.APPROVED and used >= auth.units_authorised:
            auth.status, auth.exhausted_at = AuthorisationStatus.EXHAUSTED, timezone.now()
            fields += ["status", "exhausted_at"]
        elif auth.status == AuthorisationStatus.EXHAUSTED and used < auth.units_authorised:
            auth.status, auth.exhausted_at = AuthorisationStatus.APPROVED, None
            fields += ["status", "exhausted_at"]
        if fields:
            history_by(auth, by)
            save_versioned(auth, expected_version=None)
        return auth


# at most this many authorisations are expired per sweep (the rest the next minute)
EXPIRE_BATCH = 500
EXPIRING_STATUSES = (AuthorisationStatus.APPROVED, AuthorisationStatus.EXHAUSTED)


def authorisations_expire(*, now: dt.datetime | None = None, limit: int = EXPIRE_BATCH) -> int:
    """Authorisations still approved (or used up) after their end date become expired: a
    step of the reminder sweep (registered in VisitsConfig.ready). Idempotent: rows are
    claimed with FOR UPDATE SKIP LOCKED and re-checked by status, so two sweeps at once
    or one run twice expire each authorisation once, with one version in its history
    (no person: the sweep) and one audit event; the case manager's warning is the sweep's
    rule `authorisation-expired`, keyed on `expired_at`. The end date is the last day
    covered, so an authorisation expires on the day after it."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    with transaction.atomic():
        due = list(
            Authorisation.objects.select_for_update(skip_locked=True)
            .filter(status__in=EXPIRING_STATUSES, end_date__lt=today)
            .order_by("end_date", "pk")[:limit]
        )
        for auth in due:
            from_status = auth.status
            check_transition(AUTHORISATION_TRANSITIONS, from_status, AuthorisationStatus.EXPIRED)
            auth.status, auth.expired_at = AuthorisationStatus.EXPIRED, now
            auth.status_reason = f"End date {auth.end_date:%-d %b %Y} passed"
            history_by(auth, None, reason="expired by the reminder sweep: end date passed")
            save_versioned(auth, expected_version=None)
            audit(
                user=None,
                action=AuditAction.UPDATE,
                obj=auth,
                patient_id=auth.patient_id,
                detail=f"expired (was {from_status}): end date {auth.end_date.isoformat()} passed",
            )
    return len(due)


@transaction.atomic
def authorisation_document_add(
    *, access: PatientAccess, authorisation: Authorisation, by: User, upload, request=None
) -> AuthorisationDocument:
    """Keep the payer's letter with the authorisation (PDF, PNG or JPEG, at most 5 MB)."""
    access.require_edit()
    if authorisation.patient_id != access.patient.pk:
        raise ValidationError("That authorisation belongs to another patient.")
    if upload is None:
        raise ValidationError({"document": "Choose the file to upload."})
    try:
        content_type, data = consent_document_check(upload)
    except ValidationError as exc:
        messages = exc.message_dict.get("document", exc.messages)
        raise ValidationError(
            {"document": [m.replace("of the form", "of the letter") for m in messages]}
        ) from None
    document = AuthorisationDocument.objects.create(
        authorisation=authorisation,
        name=(getattr(upload, "name", "") or "document")[:200],
        content_type=content_type,
        size=len(data),
        data=data,
        uploaded_by=by,
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=authorisation,
        patient=access.patient,
        request=request,
        detail=f"document {document.pk} added",
    )
    return document


# ---------------------------------------------------------------------------
# Calendar feeds
# ---------------------------------------------------------------------------
def feed_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@transaction.atomic
def calendar_feed_issue(*, by: User, request=None) -> str:
    """A new secret feed address for the user's own visits; the previous one stops
    working. Returns the secret (shown once; only its digest is kept)."""
    calendar_feed_revoke(by=by, request=request)
    token = secrets.token_urlsafe(32)
    CalendarFeed.objects.create(user=by, token_digest=feed_digest(token))
    audit(
        user=by,
        action=AuditAction.CREATE,
        object_type="visits.calendarfeed",
        object_id=by.pk,
        request=request,
        detail="calendar feed issued",
    )
    return token


@transaction.atomic
def calendar_feed_revoke(*, by: User, request=None) -> int:
    n = CalendarFeed.objects.filter(user=by, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if n:
        audit(
            user=by,
            action=AuditAction.UPDATE,
            object_type="visits.calendarfeed",
            object_id=by.pk,
            request=request,
            detail="calendar feed revoked",
        )
    return n


def calendar_feed_user(token: str) -> User | None:
    """The active user a live feed secret belongs to, else None."""
    if not token or len(token) > 100:
        return None
    feed = (
        CalendarFeed.objects.select_related("user")
        .filter(token_digest=feed_digest(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if feed is None:
        return None
    CalendarFeed.objects.filter(pk=feed.pk).update(last_used_at=timezone.now())
    return feed.user


def careplan_for(patient_id: int) -> CarePlan | None:
    """The plan hand-on work goes on: the active plan, else the newest open one."""
    plans = CarePlan.objects.filter(patient_id=patient_id, status__in=("active", "draft", "on-hold"))
    return plans.filter(status="active").first() or plans.order_by("-id").first()
