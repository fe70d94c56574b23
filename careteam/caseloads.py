# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""Caseloads, cover and bulk reassignment: the team domain of case management.

- Reads: `caseload_summaries` (one row per case manager, aggregated in one SQL
  statement whatever the number of patients) and `caseload_patients` (the patient rows,
  always starting from `careteam.permissions.patients_for(viewer)`).
- Cover: `cover_create`, `cover_cancel`, `covers_sync` (the periodic task's part: teams
  the absent clinician joined after the cover was set up). Who receives work while
  someone is away is `careteam.cover`; this module only keeps the colleague on the teams.
- Reassignment: `caseload_reassign` moves some or all of one case manager's patients to
  another, with a handoff per patient whose SBAR is filled in from the plan, in a fixed
  number of statements (bulk writes, one audit event listing the patient ids).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, overload

from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import (
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import formats, timezone

from .audit import audit
from .concurrency import save_versioned
from .models import (
    HANDOFF_OPEN_STATUSES,
    AuditAction,
    Cover,
    CoverStatus,
    Discipline,
    Handoff,
    HandoffKind,
    MembershipStatus,
    Notification,
    NotificationKind,
    PatientUserObjectPermission,
    TeamMembership,
    TeamRole,
    User,
)
from .permissions import ROLE_PERMISSIONS, VIEW_PATIENT, patients_for
from .prepared import PreparedQuery

SUPERVISE = "careteam.supervise_caseloads"
CASE_MANAGEMENT = "case-management"
ACTIVITY_OPEN = ("not-started", "scheduled", "in-progress", "on-hold")
# a reassignment handoff is due this long after it is sent
REASSIGN_DUE = dt.timedelta(days=2)


def _count(qs: QuerySet) -> Coalesce:
    """A correlated COUNT(*) per outer row (0 when there is none)."""
    counted = qs.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def is_supervisor(user) -> bool:
    return bool(user.is_active and user.has_perm(SUPERVISE))


def case_managers() -> QuerySet:
    """Active clinicians who practise case management: who may hold a caseload."""
    return User.objects.filter(is_active=True, disciplines__code=CASE_MANAGEMENT).order_by(
        "last_name", "first_name", "username"
    )


def _month_start(today: dt.date) -> dt.date:
    return today.replace(day=1)


# ---------------------------------------------------------------------------
# Reads: caseloads
# ---------------------------------------------------------------------------
@dataclass
class CaseloadSummary:
    user_id: int
    patients: int = 0
    load: int = 0
    open_work: int = 0
    overdue: int = 0
    new_this_month: int = 0
    by_acuity: dict[str, int] = field(default_factory=dict)
    user: User | None = None


# One statement for any number of case managers and patients: the current case-manager
# roles, then open and overdue work per patient (activities of the active plan, open
# handoffs) joined in, then summed per case manager. Weights: careteam/patients ACUITY_WEIGHTS.
_SUMMARY_SQL = """
    WITH cm AS (
        SELECT m.user_id, m.patient_id, m.start_date
        FROM careteam_teammembership m
        WHERE m.role = 'case-manager' AND m.status = 'active' AND m.start_date <= %(today)s
          AND (m.end_date IS NULL OR m.end_date >= %(today)s)
          AND (%(all)s OR m.user_id = ANY(%(users)s))
    ), act AS (
        SELECT cp.patient_id, count(*) AS open,
               count(*) FILTER (WHERE a.due_date < %(today)s) AS overdue
        FROM careplans_activity a JOIN careplans_careplan cp ON cp.id = a.care_plan_id
        WHERE cp.status = 'active' AND a.status = ANY(%(activity_open)s)
          AND cp.patient_id IN (SELECT patient_id FROM cm)
        GROUP BY cp.patient_id
    ), hand AS (
        SELECT h.patient_id, count(*) AS open, count(*) FILTER (WHERE h.due_at < %(now)s) AS overdue
        FROM careteam_handoff h
        WHERE h.status = ANY(%(handoff_open)s) AND h.patient_id IN (SELECT patient_id FROM cm)
        GROUP BY h.patient_id
    )
    SELECT cm.user_id, count(*) AS patients,
           sum(CASE p.acuity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END) AS load,
           sum(coalesce(act.open, 0) + coalesce(hand.open, 0)) AS open_work,
           sum(coalesce(act.overdue, 0) + coalesce(hand.overdue, 0)) AS overdue,
           count(*) FILTER (WHERE cm.start_date >= %(month_start)s) AS new_this_month,
           count(*) FILTER (WHERE p.acuity = 'high') AS high,
           count(*) FILTER (WHERE p.acuity = 'medium') AS medium,
           count(*) FILTER (WHERE p.acuity = 'low') AS low,
           count(*) FILTER (WHERE p.acuity = '') AS unset
    FROM cm JOIN patients_patient p ON p.id = cm.patient_id
    LEFT JOIN act ON act.patient_id = cm.patient_id
    LEFT JOIN hand ON hand.patient_id = cm.patient_id
    GROUP BY cm.user_id"""


def caseload_summaries(
    *, user_ids: list[int] | None = None, today: dt.date | None = None, users: list[User] | None = None
) -> list[CaseloadSummary]:
    """Per case manager (all of them, or `user_ids`): patients, acuity-weighted load,
    open and overdue work, new this month. Counts only, no patient named: a supervisor
    sees these for every case manager. A fixed number of queries whatever the number of
    rows (the statement, its JIT setting, the users: not read again when the caller
    gives them as `users`, which must be exactly those of `user_ids`)."""
    now = timezone.now()
    today = today or timezone.localdate(now)
    params = {
        "today": today,
        "now": now,
        "month_start": _month_start(today),
        "all": user_ids is None,
        "users": list(user_ids or []),
        "activity_open": list(ACTIVITY_OPEN),
        "handoff_open": list(HANDOFF_OPEN_STATUSES),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # JIT compiling this join costs more than running it (400 ms at 10,000 patients)
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_SUMMARY_SQL, params)
        rows = cursor.fetchall()
    found = {}
    for uid, patients, load, open_work, overdue, new, high, medium, low, unset in rows:
        found[uid] = CaseloadSummary(
            user_id=uid,
            patients=patients,
            load=int(load or 0),
            open_work=int(open_work or 0),
            overdue=int(overdue or 0),
            new_this_month=new,
            by_acuity={"high": high, "medium": medium, "low": low, "none": unset},
        )
    wanted = set(found) if user_ids is None else set(user_ids)
    if users is not None and {u.pk for u in users} == wanted:
        people = sorted(users, key=lambda u: (u.last_name, u.first_name, u.username))
    else:
        people = list(User.objects.filter(pk__in=wanted).order_by("last_name", "first_name", "username"))
    out = []
    for u in people:
        summary = found.get(u.pk) or CaseloadSummary(user_id=u.pk)
        summary.user = u
        out.append(summary)
    return out


def _caseload_queryset(viewer, case_manager_id: int, today: dt.date | None = None) -> QuerySet:
    """`caseload_patients` without the enrolments."""
    from django.apps import apps

    from .permissions import sensitivity_visible_q

    now = timezone.now()
    today = today or timezone.localdate(now)
    Activity = apps.get_model("careplans", "Activity")  # noqa: N806
    viewer = getattr(viewer, "_wrapped", viewer)
    role = TeamMembership.objects.current(today).filter(
        patient_id=OuterRef("pk"), user_id=case_manager_id, role=TeamRole.CASE_MANAGER
    )
    activities = Activity.objects.filter(
        care_plan__patient_id=OuterRef("pk"), care_plan__status="active", status__in=ACTIVITY_OPEN
    ).filter(sensitivity_visible_q(viewer, "care_plan__patient_id"))
    handoffs = Handoff.objects.filter(patient_id=OuterRef("pk"), status__in=HANDOFF_OPEN_STATUSES)
    return (
        patients_for(viewer)
        .filter(Exists(role))
        .annotate(
            since=Subquery(role.order_by("start_date").values("start_date")[:1]),
            open_activities=_count(activities),
            overdue_activities=_count(activities.filter(due_date__lt=today)),
            open_handoffs=_count(handoffs),
            overdue_handoffs=_count(handoffs.filter(due_at__lt=now)),
        )
        .order_by("family_name", "given_name", "id")
    )


def _open_enrolments() -> Prefetch:
    from django.apps import apps

    Enrolment = apps.get_model("patients", "ProgrammeEnrolment")  # noqa: N806
    return Prefetch(
        "enrolments", queryset=Enrolment.objects.open().select_related("programme"), to_attr="open_enrolments"
    )


def caseload_patients(viewer, *, case_manager: User, today: dt.date | None = None) -> QuerySet:
    """The patients `case_manager` is the current case manager of, as far as `viewer`
    may see them (patients_for first: a supervisor sees rows only of their own teams'
    patients), each with acuity, open and overdue work the viewer may see, and the date
    the case manager took them on. A fixed number of queries (with the enrolments prefetch)."""
    return _caseload_queryset(viewer, case_manager.pk, today).prefetch_related(_open_enrolments())


CASELOAD_COUNTS = ("since", "open_activities", "overdue_activities", "open_handoffs", "overdue_handoffs")


# what the page shows of a patient (plain columns: no converter between the database
# and the model); the others are deferred, as with .only()
CASELOAD_COLUMNS = ("id", "mrn", "given_name", "family_name", "acuity")

# The caseload page's rule (patients_for, the role, counts filtered by the sensitivity
# policy) took Django ~20 ms per page to build and compile: its SQL is built once per
# process and run with the viewer, the case manager and the clock bound. Its rows carry
# the patient's columns the page shows, so the page makes its Patient objects from them.
CASELOAD_ROWS = PreparedQuery(
    lambda viewer, case_manager: _caseload_queryset(viewer, case_manager).values_list(
        *CASELOAD_COLUMNS, *CASELOAD_COUNTS
    ),
    ints=("case_manager",),
)


class CaseloadRows:
    """`caseload_patients` as a Paginator pages it: its length and a slice, each one
    prepared query (and the slice's open enrolments, one more)."""

    def __init__(self, viewer, *, case_manager: User):
        self.viewer = getattr(viewer, "_wrapped", viewer)
        self.case_manager_id = case_manager.pk

    def __len__(self) -> int:
        return CASELOAD_ROWS.count(self.viewer, case_manager=self.case_manager_id)

    def __iter__(self) -> Iterator[Any]:
        return iter(self[0:None])

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, int):
            found = self[index : index + 1]
            if not found:
                raise IndexError(index)
            return found[0]
        return self._page(index)

    def _page(self, page: slice) -> list[Any]:
        from django.apps import apps
        from django.db.models import prefetch_related_objects

        start, stop = page.start or 0, page.stop
        if stop is not None and stop <= start:
            return []
        rows = CASELOAD_ROWS.fetch(
            self.viewer,
            case_manager=self.case_manager_id,
            limit=None if stop is None else stop - start,
            offset=start,
        )
        Patient = apps.get_model("patients", "Patient")  # noqa: N806
        acuity_labels = {k: str(v) for k, v in Patient._meta.get_field("acuity").flatchoices}
        n = len(CASELOAD_COLUMNS)
        patients = []
        for row in rows:
            patient = Patient.from_db("default", CASELOAD_COLUMNS, row[:n])
            counts = dict(zip(CASELOAD_COUNTS, row[n:], strict=True))
            vars(patient).update(
                counts,
                # what the row shows, made once here rather than by tags and filters per row
                chart_url=reverse("patient_chart", kwargs={"patient_id": patient.pk}),
                acuity_label=acuity_labels.get(patient.acuity, patient.acuity),
                open_work=counts["open_activities"] + counts["open_handoffs"],
                overdue_work=counts["overdue_activities"] + counts["overdue_handoffs"],
                since_label=formats.date_format(counts["since"]) if counts["since"] else "",
            )
            patients.append(patient)
        prefetch_related_objects(patients, _open_enrolments())
        return patients


# ---------------------------------------------------------------------------
# Object permissions in bulk (the grants a role gives, careteam.permissions.ROLE_PERMISSIONS)
# ---------------------------------------------------------------------------
def _permission_ids(codenames) -> dict[str, int]:
    return dict(
        Permission.objects.filter(
            codename__in=list(codenames), content_type__app_label="patients"
        ).values_list("codename", "pk")
    )


def _grant_bulk(user_id: int, patient_ids, codenames) -> None:
    """Grant these patient permissions to one user on many patients (one INSERT)."""
    perms = _permission_ids(codenames)
    PatientUserObjectPermission.objects.bulk_create(
        [
            PatientUserObjectPermission(user_id=user_id, permission_id=perm, content_object_id=pid)
            for pid in patient_ids
            for perm in perms.values()
        ],
        ignore_conflicts=True,
    )


def _revoke_unsupported(user_id: int, patient_ids) -> None:
    """Remove the user's grants on these patients that no current role of theirs gives
    any more (two DELETEs; careteam.services.patient_permissions_sync, in bulk)."""
    current = TeamMembership.objects.current().filter(user_id=user_id, patient_id=OuterRef("content_object"))
    managing = current.filter(role__in=(TeamRole.CASE_MANAGER, TeamRole.LEAD))
    manage_perms = ROLE_PERMISSIONS[TeamRole.CASE_MANAGER] - ROLE_PERMISSIONS[TeamRole.MEMBER]
    base = PatientUserObjectPermission.objects.filter(
        user_id=user_id,
        content_object_id__in=list(patient_ids),
        permission__content_type__app_label="patients",
    )
    base.filter(permission__codename__in=manage_perms).filter(~Exists(managing)).delete()
    base.filter(permission__codename=VIEW_PATIENT).filter(~Exists(current)).delete()


# ---------------------------------------------------------------------------
# Cover
# ---------------------------------------------------------------------------
def _cover_teams(absent: User, start: dt.date, end: dt.date) -> QuerySet:
    """Patient ids of the teams the absent clinician is on at some day of the period."""
    return (
        TeamMembership.objects.filter(user_id=absent.pk, status=MembershipStatus.ACTIVE, start_date__lte=end)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=start))
        .values("patient_id")
    )


def _cover_add_memberships(cover: Cover, today: dt.date) -> list[int]:
    """Put the colleague on every team of the absent clinician that they are not on in
    that discipline, for the cover's dates; grant today's. Returns the patient ids added."""
    teams = set(
        _cover_teams(cover.absent, cover.start_date, cover.end_date).values_list("patient_id", flat=True)
    )
    # on the team in that discipline already, or once by this cover (a colleague who left
    # such a team is not put back every quarter of an hour)
    already = (
        TeamMembership.objects.filter(patient_id__in=teams)
        .filter(
            Q(user_id=cover.colleague_id, discipline_id=cover.discipline_id, status=MembershipStatus.ACTIVE)
            | Q(cover=cover)
        )
        .values_list("patient_id", flat=True)
    )
    patient_ids = sorted(teams - set(already))
    if not patient_ids:
        return []
    TeamMembership.objects.bulk_create(
        [
            TeamMembership(
                patient_id=pid,
                user_id=cover.colleague_id,
                discipline_id=cover.discipline_id,
                role=TeamRole.MEMBER,
                start_date=cover.start_date,
                end_date=cover.end_date,
                cover=cover,
            )
            for pid in patient_ids
        ],
        ignore_conflicts=True,  # a membership added meanwhile by someone else wins
    )
    if cover.start_date <= today:
        _grant_bulk(cover.colleague_id, patient_ids, ROLE_PERMISSIONS[TeamRole.MEMBER])
    return patient_ids


def cover_problems(
    *, by: User, absent: User, colleague: User | None, discipline: Discipline | None, start_date, end_date
) -> dict[str, str]:
    """What is wrong with this cover, as {field: message} (empty when it may be saved)."""
    today = timezone.localdate()
    errors: dict[str, str] = {}
    if by.pk != absent.pk and not is_supervisor(by):
        raise PermissionDenied("You can arrange cover for yourself; a supervisor can arrange it for others.")
    if start_date and end_date and end_date < start_date:
        errors["end_date"] = "The last day of cover cannot be before its first day."
    elif end_date and end_date < today:
        errors["end_date"] = "Cover cannot end in the past."
    if discipline is None:
        errors["discipline"] = "Choose the discipline the colleague covers."
    elif not absent.disciplines.filter(pk=discipline.pk).exists():
        errors["discipline"] = f"{absent.display_name} does not practise {discipline}."
    if colleague is None:
        errors["colleague"] = "Name the colleague who covers."
    elif colleague.pk == absent.pk:
        errors["colleague"] = "The colleague who covers must be someone else."
    elif not colleague.is_active:
        errors["colleague"] = "This account is deactivated."
    elif discipline is not None and not colleague.disciplines.filter(pk=discipline.pk).exists():
        errors["colleague"] = (
            f"Choose a colleague of the same discipline: {colleague.display_name} does not practise {discipline}."
        )
    if errors or not (start_date and end_date):
        return errors
    overlapping = Cover.objects.filter(
        status=CoverStatus.ACTIVE, start_date__lte=end_date, end_date__gte=start_date
    )
    if overlapping.filter(absent=absent).exists():
        errors["start_date"] = (
            "These dates overlap another cover period for the same person; cancel that one first."
        )
    elif overlapping.filter(absent=colleague).exists():
        errors["colleague"] = f"{colleague.display_name} is away themselves during these dates."
    elif overlapping.filter(colleague=absent).exists():
        errors["start_date"] = f"{absent.display_name} is covering a colleague during these dates."
    return errors


@transaction.atomic
def cover_create(
    *,
    by: User,
    absent: User,
    colleague: User | None,
    discipline: Discipline | None,
    start_date: dt.date,
    end_date: dt.date,
    note: str = "",
    request=None,
) -> Cover:
    """Name a colleague of the same discipline to receive an absent clinician's work for
    the dates, and put them on the absent clinician's teams as a time-limited member
    (audited with the patient ids). Nothing is written when any rule fails."""
    # one cover decision per person at a time: two tabs cannot both pass the overlap check
    list(User.objects.select_for_update().filter(pk=absent.pk))
    errors = cover_problems(
        by=by,
        absent=absent,
        colleague=colleague,
        discipline=discipline,
        start_date=start_date,
        end_date=end_date,
    )
    if errors:
        raise ValidationError(errors)
    cover = Cover.objects.create(
        absent=absent,
        colleague=colleague,
        discipline=discipline,
        start_date=start_date,
        end_date=end_date,
        note=" ".join((note or "").split())[:300],
        created_by=by,
    )
    patient_ids = _cover_add_memberships(cover, timezone.localdate())
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=cover,
        request=request,
        patient_ids=patient_ids,
        detail=(
            f"{colleague.get_username()} covers {absent.get_username()} ({discipline.code}) "
            f"{start_date.isoformat()}..{end_date.isoformat()}: added to {len(patient_ids)} teams"
        ),
    )
    return cover


@transaction.atomic
def cover_cancel(*, by: User, cover: Cover, request=None) -> Cover:
    """Stop a cover now: work goes back to the absent clinician at once and the
    colleague's cover memberships end (those not started yet never start)."""
    cover = Cover.objects.select_for_update().get(pk=cover.pk)
    if by.pk not in (cover.absent_id, cover.created_by_id) and not is_supervisor(by):
        raise PermissionDenied(
            "Only the person covered, whoever arranged it or a supervisor can cancel cover."
        )
    if cover.status != CoverStatus.ACTIVE:
        raise ValidationError("This cover was already cancelled.")
    today = timezone.localdate()
    cover.status = CoverStatus.CANCELLED
    cover.cancelled_at = timezone.now()
    save_versioned(cover, expected_version=None, update_fields=["status", "cancelled_at"])
    mine = TeamMembership.objects.filter(cover=cover, status=MembershipStatus.ACTIVE)
    patient_ids = list(mine.values_list("patient_id", flat=True))
    yesterday = today - dt.timedelta(days=1)
    # started before today: ends yesterday; the rest ends on its first day, inactive
    mine.filter(start_date__lte=yesterday).update(
        status=MembershipStatus.INACTIVE, end_date=yesterday, updated_at=timezone.now()
    )
    mine.filter(start_date__gt=yesterday).update(
        status=MembershipStatus.INACTIVE, end_date=F("start_date"), updated_at=timezone.now()
    )
    _revoke_unsupported(cover.colleague_id, patient_ids)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=cover,
        request=request,
        patient_ids=patient_ids,
        detail=f"cover cancelled: {len(patient_ids)} cover memberships ended",
    )
    return cover


def covers_sync(*, today: dt.date | None = None) -> int:
    """The periodic part (with careteam.services.memberships_sync, which grants the
    memberships whose start arrived and ends those whose end passed): a team the absent
    clinician joined during a cover gets the colleague too. Idempotent."""
    today = today or timezone.localdate()
    added = 0
    for cover in Cover.objects.filter(status=CoverStatus.ACTIVE, end_date__gte=today).select_related(
        "absent"
    ):
        with transaction.atomic():
            ids = _cover_add_memberships(cover, today)
            if ids:
                audit(
                    user=None,
                    action=AuditAction.CREATE,
                    obj=cover,
                    patient_ids=ids,
                    detail=f"cover sync: added to {len(ids)} teams joined since",
                )
        added += len(ids)
    return added


def covers_for(user) -> dict[str, list[Cover]]:
    """The cover periods of `user` (as the absent clinician and as the colleague), current
    and coming first."""
    today = timezone.localdate()
    qs = Cover.objects.filter(status=CoverStatus.ACTIVE, end_date__gte=today).select_related(
        "absent", "colleague", "discipline"
    )
    return {
        "mine": list(qs.filter(absent=user).order_by("start_date")),
        "covering": list(qs.filter(colleague=user).order_by("start_date")),
    }


# ---------------------------------------------------------------------------
# Bulk reassignment
# ---------------------------------------------------------------------------
@dataclass
class Reassignment:
    from_user: User
    to_user: User
    patient_ids: list[int]
    handoff_ids: list[int] = field(default_factory=list)


def _caseload_patient_ids(case_manager: User, today: dt.date) -> list[int]:
    return sorted(
        TeamMembership.objects.current(today)
        .filter(user_id=case_manager.pk, role=TeamRole.CASE_MANAGER)
        .values_list("patient_id", flat=True)
    )


def reassign_check(
    *, by: User, from_user: User, to_user: User | None, patient_ids: list[int] | None
) -> list[int]:
    """The patient ids that would move (all of `from_user`'s caseload when `patient_ids`
    is None); ValidationError naming the field when the move cannot happen."""
    if by.pk != from_user.pk and not is_supervisor(by):
        raise PermissionDenied("You can reassign your own caseload; a supervisor can reassign anyone's.")
    if to_user is None:
        raise ValidationError({"to_user": "Choose the case manager who takes the patients over."})
    if to_user.pk == from_user.pk:
        raise ValidationError({"to_user": "Choose another case manager: these patients are already theirs."})
    if not to_user.is_active or not to_user.disciplines.filter(code=CASE_MANAGEMENT).exists():
        raise ValidationError(
            {"to_user": f"{to_user.display_name} does not practise case management: choose a case manager."}
        )
    caseload = _caseload_patient_ids(from_user, timezone.localdate())
    if patient_ids is None:
        chosen = caseload
    else:
        chosen = sorted({int(p) for p in patient_ids})
        if not set(chosen) <= set(caseload):
            raise ValidationError(
                {"patients": "Some of the chosen patients are not on this caseload any more."}
            )
    if not chosen:
        raise ValidationError({"patients": "Choose at least one patient to move."})
    return chosen


def _sbar_for(patient_ids: list[int], today: dt.date) -> dict[int, dict[str, str]]:
    """Background, assessment and recommendation per patient from their active plan, in
    four queries for any number of patients. Only what every team member may read goes
    in (counts, the plan title, items with no sensitive category): a handoff is visible
    to the whole team."""
    from django.apps import apps

    CarePlan = apps.get_model("careplans", "CarePlan")  # noqa: N806
    Activity = apps.get_model("careplans", "Activity")  # noqa: N806
    Patient = apps.get_model("patients", "Patient")  # noqa: N806
    Enrolment = apps.get_model("patients", "ProgrammeEnrolment")  # noqa: N806
    plans = {}
    for plan in (
        CarePlan.objects.filter(patient_id__in=patient_ids, status="active")
        .annotate(
            open_needs=Count(
                "needs",
                filter=Q(needs__status__in=["active", "recurrence"], needs__sensitivity__isnull=True),
                distinct=True,
            ),
        )
        .order_by("patient_id", "-period_start", "-id")
    ):
        plans.setdefault(plan.patient_id, plan)
    next_up: dict[int, list] = defaultdict(list)
    for a in (
        Activity.objects.filter(
            care_plan__patient_id__in=patient_ids,
            care_plan__status="active",
            status__in=ACTIVITY_OPEN,
            sensitivity__isnull=True,
        )
        .order_by("care_plan__patient_id", "due_date", "id")
        .values("care_plan__patient_id", "title", "due_date")
    ):
        next_up[a["care_plan__patient_id"]].append(a)
    acuity = dict(Patient.objects.filter(pk__in=patient_ids).values_list("pk", "acuity"))
    programmes: dict[int, list[str]] = defaultdict(list)
    for pid, name in (
        Enrolment.objects.open()
        .filter(patient_id__in=patient_ids)
        .values_list("patient_id", "programme__name")
    ):
        programmes[pid].append(name)
    out = {}
    for pid in patient_ids:
        plan = plans.get(pid)
        acts = next_up.get(pid, [])
        overdue = sum(1 for a in acts if a["due_date"] and a["due_date"] < today)
        if plan is None:
            background = "No active care plan."
        else:
            review = f", review due {plan.review_due:%-d %b %Y}" if plan.review_due else ""
            background = (
                f"Care plan “{plan.title}” (active{review}): {plan.open_needs} open needs, "
                f"{len(acts)} open activities ({overdue} overdue)."
            )
        level = {"high": "High", "medium": "Medium", "low": "Low"}.get(acuity.get(pid, ""), "Not assessed")
        assessment = f"Acuity: {level}."
        if programmes.get(pid):
            assessment += " Programmes: " + ", ".join(sorted(programmes[pid])) + "."
        upcoming = "; ".join(
            f"{a['title'][:80]} (due {a['due_date']:%-d %b %Y})" if a["due_date"] else a["title"][:80]
            for a in acts[:3]
        )
        recommendation = "Review the care plan and introduce yourself to the patient and family."
        if upcoming:
            recommendation += f" Next activities: {upcoming}."
        out[pid] = {"background": background, "assessment": assessment, "recommendation": recommendation}
    return out


@transaction.atomic
def caseload_reassign(
    *, by: User, from_user: User, to_user: User | None, patient_ids: list[int] | None = None, request=None
) -> Reassignment:
    """Move patients from one case manager to another: end the old case-manager roles
    today, give the new one the role (or change their existing case-management role),
    send one handoff per patient from the old to the new case manager with an SBAR
    filled in from the plan, notify, and audit once with every patient id. All or
    nothing; a fixed number of statements for any number of patients."""
    # serialise reassignments of one caseload (two supervisors at once)
    list(User.objects.select_for_update().filter(pk=from_user.pk))
    chosen = reassign_check(by=by, from_user=from_user, to_user=to_user, patient_ids=patient_ids)
    now = timezone.now()
    today = timezone.localdate(now)
    discipline = Discipline.objects.get(code=CASE_MANAGEMENT)
    old = TeamMembership.objects.current(today).filter(
        user_id=from_user.pk, role=TeamRole.CASE_MANAGER, patient_id__in=chosen
    )
    old.update(status=MembershipStatus.INACTIVE, end_date=today, version=F("version") + 1, updated_at=now)
    # the new case manager may be on some of these teams already in case management
    existing = TeamMembership.objects.filter(
        user_id=to_user.pk, discipline=discipline, status=MembershipStatus.ACTIVE, patient_id__in=chosen
    )
    existing_ids = set(existing.values_list("patient_id", flat=True))
    existing.update(role=TeamRole.CASE_MANAGER, end_date=None, version=F("version") + 1, updated_at=now)
    TeamMembership.objects.bulk_create(
        [
            TeamMembership(
                patient_id=pid,
                user=to_user,
                discipline=discipline,
                role=TeamRole.CASE_MANAGER,
                start_date=today,
            )
            for pid in chosen
            if pid not in existing_ids
        ]
    )
    _grant_bulk(to_user.pk, chosen, ROLE_PERMISSIONS[TeamRole.CASE_MANAGER])
    _revoke_unsupported(from_user.pk, chosen)
    sbar = _sbar_for(chosen, today)
    situation = (
        f"Caseload reassignment: {to_user.display_name} takes over as case manager from "
        f"{from_user.display_name} ({today:%-d %b %Y})."
    )
    handoffs = Handoff.objects.bulk_create(
        [
            Handoff(
                patient_id=pid,
                kind=HandoffKind.PATIENT,
                from_user=from_user,
                to_user=to_user,
                situation=situation,
                background=sbar[pid]["background"],
                assessment=sbar[pid]["assessment"],
                recommendation=sbar[pid]["recommendation"],
                due_at=now + REASSIGN_DUE,
                created_at=now,
            )
            for pid in chosen
        ]
    )
    _notify_received_bulk(handoffs, from_user=from_user, to_user=to_user)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        object_type="caseload-reassignment",
        object_id=from_user.pk,
        request=request,
        patient_ids=chosen,
        detail=(
            f"{len(chosen)} patients moved from {from_user.get_username()} to {to_user.get_username()}; "
            f"handoffs {handoffs[0].pk}..{handoffs[-1].pk}"
        ),
    )
    return Reassignment(
        from_user=from_user, to_user=to_user, patient_ids=chosen, handoff_ids=[h.pk for h in handoffs]
    )


def _notify_received_bulk(handoffs: list[Handoff], *, from_user: User, to_user: User) -> None:
    """The "new handoff" notification of careteam.notifications.notify_handoff_received,
    for many new handoffs at once (routed to whoever covers the receiver; one INSERT)."""
    from .cover import receiver_for
    from .notifications import enqueue_emails, handoff_label

    if not handoffs or not to_user.is_active:
        return
    recipient = receiver_for(to_user.pk)
    from django.apps import apps

    names = dict(
        (pk, f"{family}, {given} ({mrn})")
        for pk, family, given, mrn in apps.get_model("patients", "Patient")
        .objects.filter(pk__in=[h.patient_id for h in handoffs])
        .values_list("pk", "family_name", "given_name", "mrn")
    )
    created = Notification.objects.bulk_create(
        [
            Notification(
                recipient_id=recipient,
                kind=NotificationKind.HANDOFF_RECEIVED,
                patient_id=h.patient_id,
                object_type="careteam.handoff",
                object_id=h.pk,
                due_moment=h.created_at,
                title=f"New {handoff_label(h)} from {from_user.display_name} ({names[h.patient_id]})"[:200],
                url=f"/team/handoffs/{h.pk}/",
            )
            for h in handoffs
        ]
    )
    enqueue_emails([n.pk for n in created])
