"""Reads behind the pages that compose several domains: the worklist, the patient chart
and My work. Every query starts from the permission-restricted querysets in
`careteam.permissions`; counts are SQL subqueries so the number of queries does not grow
with the rows shown."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db.models import (
    BooleanField,
    Case,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from careplans.models import ACTIVITY_OPEN_STATUSES, Activity, CarePlan, Note
from careplans.selectors import my_activities
from careteam.cover import work_for_q
from careteam.models import HANDOFF_OPEN_STATUSES, Handoff, HandoffStatus, TeamMembership, TeamRole
from careteam.permissions import (
    PatientAccess,
    restrict,
    sensitivity_visible_q,
    team_patients_for,
    visible_notes,
)
from careteam.prepared import PreparedQuery
from patients.models import Consent, Patient, ProgrammeEnrolment
from referrals.models import REFERRAL_OPEN_STATUSES, Referral, ReferralStatus

NO_PLAN = "none"


def _count(qs: QuerySet) -> Coalesce:
    """A correlated COUNT(*) per outer patient row (0 when there is none)."""
    counted = qs.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def handoffs_waiting_for(user) -> QuerySet:
    """Handoffs sent to the user, or to the queue of a discipline they hold on that
    patient's team, still waiting to be accepted."""
    own_disciplines = TeamMembership.objects.current().filter(
        user_id=user.pk, patient_id=OuterRef("patient_id")
    )
    return Handoff.objects.filter(status=HandoffStatus.REQUESTED).filter(
        work_for_q("to_user_id", user)
        | Q(to_user__isnull=True, to_discipline_id__in=Subquery(own_disciplines.values("discipline_id")))
    )


def activities_due_for(user, *, on=None) -> QuerySet:
    """Open activities assigned to the user that are due today or overdue."""
    on = on or timezone.localdate()
    # sensitivity_visible_q reads type(user): hand it the real User, not request's lazy proxy
    user = getattr(user, "_wrapped", user) if user.pk else user
    return Activity.objects.filter(
        work_for_q("assigned_to_id", user), status__in=ACTIVITY_OPEN_STATUSES, due_date__lte=on
    ).filter(sensitivity_visible_q(user, "care_plan__patient_id"))


def referrals_awaiting_for(user) -> QuerySet:
    """Referrals the user sent that the service has not answered yet."""
    return Referral.objects.filter(referred_by_id=user.pk, status=ReferralStatus.REQUESTED)


def team_overdue(user) -> tuple[QuerySet, QuerySet]:
    """The team's overdue work the user may see (activities past their due date, open
    handoffs past their due time), whoever owns it; correlate with OuterRef("pk")."""
    user = getattr(user, "_wrapped", user) if user.pk else user
    activities = Activity.objects.filter(
        care_plan__patient_id=OuterRef("pk"),
        status__in=ACTIVITY_OPEN_STATUSES,
        due_date__lt=timezone.localdate(),
    ).filter(sensitivity_visible_q(user, "care_plan__patient_id"))
    handoffs = Handoff.objects.filter(
        patient_id=OuterRef("pk"), status__in=HANDOFF_OPEN_STATUSES, due_at__lt=timezone.now()
    )
    return activities, handoffs


def worklist(user, *, search: str = "", plan_status: str = "", waiting: bool = False) -> QuerySet:
    """The user's own patients (team members only; emergency access never lists), each
    annotated with the active plan and what is waiting for the user."""
    active_plan = CarePlan.objects.filter(patient_id=OuterRef("pk")).exclude(
        status__in=["entered-in-error", "revoked"]
    )
    # the active plan first, then the newest other plan
    best_plan = active_plan.order_by(
        Case(When(status="active", then=Value(0)), default=Value(1), output_field=IntegerField()),
        "-period_start",
        "-id",
    )
    my_role = TeamMembership.objects.current().filter(user_id=user.pk, patient_id=OuterRef("pk"))
    qs = (
        team_patients_for(user)
        .search(search)
        .annotate(
            plan_id=Subquery(best_plan.values("pk")[:1]),
            plan_title=Subquery(best_plan.values("title")[:1]),
            plan_status=Subquery(best_plan.values("status")[:1]),
            plan_review_due=Subquery(best_plan.values("review_due")[:1]),
            my_role=Subquery(my_role.order_by("role").values("role")[:1]),
            handoffs_waiting=_count(handoffs_waiting_for(user).filter(patient_id=OuterRef("pk"))),
            activities_due=_count(activities_due_for(user).filter(care_plan__patient_id=OuterRef("pk"))),
            referrals_awaiting=_count(referrals_awaiting_for(user).filter(patient_id=OuterRef("pk"))),
        )
    )
    # the case manager and the lead see the whole team's overdue work, not only their own
    manages = my_role.filter(role__in=(TeamRole.CASE_MANAGER, TeamRole.LEAD))
    overdue_activities, overdue_handoffs = team_overdue(user)
    qs = qs.annotate(
        team_overdue=Case(
            When(Exists(manages), then=_count(overdue_activities) + _count(overdue_handoffs)),
            default=Value(None),
            output_field=IntegerField(),
        )
    )
    if plan_status == NO_PLAN:
        qs = qs.filter(plan_id__isnull=True)
    elif plan_status:
        qs = qs.filter(plan_status=plan_status)
    if waiting:
        qs = qs.filter(Q(handoffs_waiting__gt=0) | Q(activities_due__gt=0) | Q(referrals_awaiting__gt=0))
    return qs.order_by("family_name", "given_name", "id")


# ---------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------
@dataclass
class Chart:
    patient: Patient
    access: PatientAccess
    caregivers: list = field(default_factory=list)
    consents: list = field(default_factory=list)
    team: list = field(default_factory=list)
    plans: list = field(default_factory=list)
    active_plan: CarePlan | None = None
    plan_counts: dict[str, Any] = field(default_factory=dict)
    handoffs: list = field(default_factory=list)
    referrals: list = field(default_factory=list)
    enrolments: list = field(default_factory=list)


def chart_for(access: PatientAccess) -> Chart:
    """Everything the chart page shows, in a fixed number of queries."""
    patient, user = access.patient, access.user
    chart = Chart(patient=patient, access=access)
    chart.caregivers = list(patient.caregivers.filter(end_date__isnull=True))
    chart.consents = list(Consent.objects.in_force().filter(patient=patient))
    chart.enrolments = list(
        ProgrammeEnrolment.objects.open().filter(patient=patient).select_related("programme")
    )
    chart.team = list(
        TeamMembership.objects.current()
        .filter(patient=patient)
        .select_related("user", "discipline")
        .order_by("role", "discipline__name", "user__last_name")
    )
    chart.plans = list(
        restrict(CarePlan.objects.filter(patient=patient), user).order_by("-period_start", "-id")
    )
    chart.active_plan = next((p for p in chart.plans if p.status == "active"), None) or next(
        (p for p in chart.plans if p.status not in ("entered-in-error", "revoked")), None
    )
    if chart.active_plan is not None:
        plan = chart.active_plan
        chart.plan_counts = {
            "goals": plan.goals.filter(access.goal_q())
            .exclude(lifecycle_status__in=["entered-in-error", "cancelled", "rejected"])
            .count(),
            "needs": plan.needs.filter(access.sensitivity_q())
            .filter(status__in=["active", "recurrence"])
            .count(),
            "activities": plan.activities.filter(access.sensitivity_q())
            .filter(status__in=ACTIVITY_OPEN_STATUSES)
            .count(),
        }
    chart.handoffs = list(
        restrict(Handoff.objects.filter(patient=patient, status__in=HANDOFF_OPEN_STATUSES), user)
        .select_related("from_user", "to_user", "to_discipline")
        .order_by("due_at")
    )
    chart.referrals = list(
        restrict(Referral.objects.filter(patient=patient, status__in=REFERRAL_OPEN_STATUSES), user)
        .select_related("service", "service__organization", "referred_by")
        .order_by("-created_at")
    )
    return chart


# ---------------------------------------------------------------------------
# My work: what needs me across my patients, sorted by due time
# ---------------------------------------------------------------------------
WORK_LIMIT = 200
WORK_KINDS = {
    "activity": "Activities due",
    "handoff-to-accept": "Handoffs to accept",
    "handoff-accepted": "Handoffs I accepted",
    "handoff-sent": "Handoffs I sent, unanswered",
    "referral": "Referrals awaiting a reply",
    "review": "Plan reviews due",
    "proposal": "Proposals on my items",
}


class WorkPatient(NamedTuple):
    pk: int
    family_name: str
    given_name: str


@dataclass
class WorkRow:
    kind: str
    patient: WorkPatient
    what: str
    due: Any  # date or datetime
    owner: str
    url: str
    action: str  # the one-click action's label
    post_action: str = ""  # a handoff button's action value, posted to `url`
    version: int | None = None  # the version of the handoff the button answers
    patient_url: str = ""

    @property
    def sort_key(self):
        due = self.due
        if due is None:  # waiting for an answer, not due: after what is
            return dt.datetime.max.replace(tzinfo=dt.UTC)
        if isinstance(due, dt.date) and not isinstance(due, dt.datetime):
            due = timezone.make_aware(dt.datetime.combine(due, dt.time.min))
        return due


def _url_maker(name: str, kwarg: str):
    """reverse() once for a URL with one integer id, then fill in each row's id: a
    hundred rows cost one resolver walk, not a hundred."""
    from django.urls import reverse

    sentinel = 2147483647
    head, tail = reverse(name, kwargs={kwarg: sentinel}).split(str(sentinel))
    return lambda pk: f"{head}{int(pk)}{tail}"


def _person(row, path: str) -> str:
    """`User.display_name` from the columns `_person_fields(path)` selected."""
    first, last, username = (getattr(row, name) or "" for name in _person_fields(path))
    return f"{first} {last}".strip() or username


def _patient(row, path: str) -> WorkPatient:
    return WorkPatient(*(getattr(row, name) for name in _patient_fields(path)))


def _person_fields(path: str) -> tuple[str, str, str]:
    return (f"{path}__first_name", f"{path}__last_name", f"{path}__username")


def _patient_fields(path: str) -> tuple[str, str, str]:
    return (f"{path}_id", f"{path}__family_name", f"{path}__given_name")


# Each kind of work is one restricted query, built once per process (careteam.prepared):
# the permission rules cost Django more to build than PostgreSQL to run.
def _activities_work(user, until):
    return (
        my_activities(user)
        .filter(due_date__lte=until)
        .order_by("due_date", "id")
        .values_list(
            "pk",
            "title",
            "due_date",
            *_patient_fields("care_plan__patient"),
            "assigned_to_id",
            *_person_fields("assigned_to"),
            "owner_discipline__name",
        )[:WORK_LIMIT]
    )


ACTIVITIES_WORK = PreparedQuery(_activities_work, dates=("until",))

# the three kinds of handoff work, in one query, each row flagged with its kinds
HANDOFF_WORK = {
    "handoff-to-accept": ("Handoff to accept", "Accept", "accept"),
    "handoff-accepted": ("Handoff I accepted", "Complete", "complete"),
    "handoff-sent": ("Handoff I sent, not answered", "Open", ""),
}


def _handoffs_work(kinds: tuple[str, ...]):
    def build(user):
        from careteam import handoffs as handoff_selectors

        rules = {
            "handoff-to-accept": handoff_selectors.inbox_q,
            "handoff-accepted": handoff_selectors.accepted_q,
            "handoff-sent": handoff_selectors.sent_unanswered_q,
        }
        either = Q()
        for k in kinds:
            either |= rules[k](user)
        flags = {f"is_{i}": ExpressionWrapper(rules[k](user), BooleanField()) for i, k in enumerate(kinds)}
        return (
            restrict(Handoff.objects.all(), user)
            .filter(either)
            .annotate(**flags)
            .order_by("due_at", "id")
            .values_list(
                "pk",
                "situation",
                "due_at",
                "version",
                *_patient_fields("patient"),
                "to_user_id",
                *_person_fields("to_user"),
                "to_discipline__name",
                *flags,
            )[: WORK_LIMIT * len(kinds)]
        )

    return PreparedQuery(build)


_HANDOFF_QUERIES: dict[tuple[str, ...], PreparedQuery] = {}


def _referrals_work(user):
    return (
        restrict(referrals_awaiting_for(user), user)
        .order_by("sent_at", "id")
        .values_list(
            "pk",
            "service__name",
            "service__expected_response_days",
            "sent_at",
            "created_at",
            *_patient_fields("patient"),
            *_person_fields("referred_by"),
        )[:WORK_LIMIT]
    )


REFERRALS_WORK = PreparedQuery(_referrals_work)


def _reviews_work(user, until):
    leads = TeamMembership.objects.current().filter(
        user_id=user.pk, patient_id=OuterRef("patient_id"), role__in=["case-manager", "lead"]
    )
    return (
        restrict(CarePlan.objects.filter(status="active", review_due__lte=until), user)
        .filter(Exists(leads))
        .order_by("review_due", "id")
        .values_list("pk", "title", "review_due", *_patient_fields("patient"))[:WORK_LIMIT]
    )


REVIEWS_WORK = PreparedQuery(_reviews_work, dates=("until",))


def my_work(user, *, kind: str = "", overdue_only: bool = False, horizon_days: int = 7) -> list[WorkRow]:
    """Everything assigned to the user or their discipline's queue on their patients'
    teams, due within `horizon_days` or overdue: one query per kind of work, whatever
    the number of rows; each restricted by careteam.permissions."""
    now = timezone.now()
    until = timezone.localdate(now) + dt.timedelta(days=horizon_days)
    rows: list[WorkRow] = []
    wanted = lambda k: not kind or kind == k  # noqa: E731
    me = getattr(user, "display_name", "")
    if wanted("activity"):
        url = _url_maker("careplans:activity_detail", "activity_id")
        for a in ACTIVITIES_WORK.fetch(user, now=now, until=until):
            patient = _patient(a, "care_plan__patient")
            owner = _person(a, "assigned_to") if a.assigned_to_id else f"{a.owner_discipline__name} queue"
            rows.append(
                WorkRow("activity", patient, f"Activity: {a.title}", a.due_date, owner, url(a.pk), "Open")
            )

    handoff_kinds = tuple(k for k in HANDOFF_WORK if wanted(k))
    if handoff_kinds:
        url = _url_maker("team:handoff_detail", "handoff_id")
        query = _HANDOFF_QUERIES.get(handoff_kinds)
        if query is None:
            query = _HANDOFF_QUERIES.setdefault(handoff_kinds, _handoffs_work(handoff_kinds))
        per_kind: dict[str, int] = {}
        for h in query.fetch(user, now=now):
            patient = _patient(h, "patient")
            owner = _person(h, "to_user") if h.to_user_id else f"{h.to_discipline__name} queue"
            for i, k in enumerate(handoff_kinds):
                if not getattr(h, f"is_{i}") or per_kind.get(k, 0) >= WORK_LIMIT:
                    continue
                per_kind[k] = per_kind.get(k, 0) + 1
                label, action, post = HANDOFF_WORK[k]
                rows.append(
                    WorkRow(
                        k,
                        patient,
                        f"{label}: {h.situation[:80]}",
                        h.due_at,
                        owner,
                        url(h.pk),
                        action,
                        post,
                        h.version,
                    )
                )
    if wanted("referral"):
        url = _url_maker("referrals:detail", "referral_id")
        for r in REFERRALS_WORK.fetch(user, now=now):
            due = (r.sent_at or r.created_at) + dt.timedelta(days=r.service__expected_response_days or 0)
            rows.append(
                WorkRow(
                    "referral",
                    _patient(r, "patient"),
                    f"Referral to {r.service__name} awaiting a reply",
                    due,
                    _person(r, "referred_by"),
                    url(r.pk),
                    "Open",
                )
            )
    if wanted("review"):
        url = _url_maker("careplans:plan_editor", "plan_id")
        for p in REVIEWS_WORK.fetch(user, now=now, until=until):
            rows.append(
                WorkRow(
                    "review",
                    _patient(p, "patient"),
                    f"Review of care plan '{p.title}'",
                    p.review_due,
                    me,
                    url(p.pk),
                    "Review plan",
                )
            )
    if wanted("proposal"):
        rows.extend(_proposal_rows(user, now=now))
    if overdue_only:
        from careteam.templatetags.overdue import overdue_text

        rows = [r for r in rows if overdue_text(r.due, now).startswith("Overdue")]
    rows.sort(key=lambda r: r.sort_key)
    chart_url = _url_maker("patient_chart", "patient_id")
    for row in rows:
        row.patient_url = chart_url(row.patient.pk)
    return rows


def _proposal_candidates(user):
    """Open proposals by others on items I own (the people a proposal notifies: an
    activity assigned to me or unassigned in my discipline, a goal of my discipline or
    with no owner that I filed, a need I filed) on my current teams: a superset, which
    `visible_notes` then narrows."""
    mine = Subquery(
        TeamMembership.objects.current()
        .filter(user_id=user.pk, patient_id=OuterRef("care_plan__patient_id"))
        .values("discipline_id")
    )
    owned = (
        Q(activity__assigned_to_id=user.pk)
        | Q(
            activity__isnull=False, activity__assigned_to__isnull=True, activity__owner_discipline_id__in=mine
        )
        | Q(goal__owner_discipline_id__in=mine)
        | Q(goal__isnull=False, goal__owner_discipline__isnull=True, goal__created_by_id=user.pk)
        | Q(need__created_by_id=user.pk)
    )
    my_patients = TeamMembership.objects.current().filter(user_id=user.pk).values("patient_id")
    return (
        Note.objects.filter(kind="proposal", status="open", care_plan__patient_id__in=my_patients)
        .filter(owned)
        .exclude(author_id=user.pk)
        .order_by("created_at", "id")
        .values_list("pk")[:WORK_LIMIT]
    )


PROPOSAL_CANDIDATES = PreparedQuery(_proposal_candidates)


def _proposal_rows(user, *, now: dt.datetime) -> list[WorkRow]:
    """Open proposals by others on items I own, shown by the item's own due date. Open
    proposals are rare: a plain probe over my memberships first, the full visibility
    rules (visible_notes, as the notes list filters them) only for the few it finds."""
    from django.urls import reverse

    candidate_ids = [pk for (pk,) in PROPOSAL_CANDIDATES.fetch(user, now=now)]
    if not candidate_ids:
        return []
    notes = (
        visible_notes(user, Note.objects.filter(pk__in=candidate_ids))
        .select_related("care_plan__patient", "author", "goal", "need", "activity")
        .order_by("created_at", "id")[:WORK_LIMIT]
    )
    rows = []
    for n in notes:
        target = n.target
        kind = type(target).__name__.lower()
        text = target.title if kind == "activity" else target.description
        patient = n.care_plan.patient
        rows.append(
            WorkRow(
                "proposal",
                WorkPatient(patient.pk, patient.family_name, patient.given_name),
                f"Proposal by {n.author.display_name} on {kind} '{text[:60]}'",
                getattr(target, "due_date", None) or getattr(target, "target_due", None),
                user.display_name,
                reverse(f"careplans:{kind}_detail", kwargs={f"{kind}_id": target.pk}) + f"#note-{n.pk}",
                "Answer",
            )
        )
    return rows
