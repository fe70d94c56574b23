"""What the patient and family see: the one place for the "shared with patient" rule.

Every portal page, the portal PDF, the API's portal answers and FHIR $everything for a
portal account read through here, and the chart's "preview as patient" shows exactly
this. The rule:
- goals, needs and activities whose `shared_with_patient` flag is set (goals and
  activities start shared; needs too, and a sensitive one is never shown unless shared
  explicitly);
- a sensitive item (one filed in a SensitivityCategory) only when a clinician the policy
  allows shared it explicitly while it was in that very category
  (`shared_sensitivity == sensitivity`): re-filed later, it is hidden again;
- a goal that exists only for needs the patient does not see (all its needs hidden, no
  shown activity working towards it) is hidden with them, as for staff;
- referrals only when made for the plan in general or for a shown need;
- never internal notes, team conversations, handoffs or the audit trail; of the
  patient's own thread with the team only their own messages and replies marked
  "to patient".
Queries do not grow with the plan's size (tests/test_query_budgets.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Case, F, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from careplans.models import (
    Activity,
    AssignmentStatus,
    CarePlan,
    CarePlanStatus,
    ExpressedBy,
    Goal,
    GoalPriority,
    Need,
    QuestionnaireAssignment,
)
from careteam.models import AccountKind, Conversation, Message, TeamMembership
from careteam.permissions import goal_links_visible_q
from patients.models import Consent, ConsentStatus
from referrals.models import Referral, ServiceAtLocation

from .access import PortalAccess

PORTAL_GOAL_STATUSES = ("proposed", "planned", "accepted", "active", "on-hold", "completed")
# goals whose progress the patient may mark
PROGRESS_GOAL_STATUSES = ("accepted", "active", "on-hold")
PORTAL_ACTIVITY_OPEN = ("not-started", "scheduled", "in-progress", "on-hold")
PORTAL_ACTIVITY_STATUSES = (*PORTAL_ACTIVITY_OPEN, "completed")
PORTAL_NEED_STATUSES = ("active", "recurrence")
PORTAL_REFERRAL_STATUSES = ("requested", "accepted", "in-progress", "on-hold", "completed")
# recently done: shown under "done" for this many days
RECENT_DAYS = 30
PORTAL_PLAN_STATUSES = (CarePlanStatus.ACTIVE, CarePlanStatus.ON_HOLD)


def shared_q(prefix: str = "") -> Q:
    """Goals, needs or activities shown to the patient (see the module docstring)."""
    p = prefix
    return Q(**{f"{p}shared_with_patient": True}) & (
        Q(**{f"{p}sensitivity__isnull": True}) | Q(**{f"{p}shared_sensitivity": F(f"{p}sensitivity")})
    )


def shared_goal_q() -> Q:
    return shared_q() & goal_links_visible_q(shared_q())


def shared_goals(plan_ids) -> QuerySet:
    return Goal.objects.filter(care_plan_id__in=plan_ids).filter(shared_goal_q())


def shared_needs(plan_ids) -> QuerySet:
    return Need.objects.filter(care_plan_id__in=plan_ids).filter(shared_q())


def shared_activities(plan_ids) -> QuerySet:
    return Activity.objects.filter(care_plan_id__in=plan_ids).filter(shared_q())


def portal_plan_of(patient) -> CarePlan | None:
    """The plan the patient sees: the active one (or the one on hold)."""
    return (
        CarePlan.objects.filter(patient_id=patient.pk, status__in=PORTAL_PLAN_STATUSES)
        .order_by("status", "-period_start", "-id")
        .first()
    )


def portal_goal(access: PortalAccess, goal_id) -> Goal | None:
    """One goal the patient sees on their plan (None: hidden or missing alike)."""
    plan = portal_plan_of(access.patient)
    if plan is None:
        return None
    return shared_goals([plan.pk]).filter(pk=goal_id, lifecycle_status__in=PORTAL_GOAL_STATUSES).first()


def portal_activity(access: PortalAccess, activity_id) -> Activity | None:
    plan = portal_plan_of(access.patient)
    if plan is None:
        return None
    return shared_activities([plan.pk]).filter(pk=activity_id, status__in=PORTAL_ACTIVITY_STATUSES).first()


@dataclass
class PortalPlan:
    patient: object
    plan: CarePlan | None
    goals: list = field(default_factory=list)
    next_activities: list = field(default_factory=list)
    done_activities: list = field(default_factory=list)
    needs: list = field(default_factory=list)
    referrals: list = field(default_factory=list)
    team: list = field(default_factory=list)
    questions: list = field(default_factory=list)
    today: dt.date | None = None


def _goal_order():
    voice = Case(
        When(expressed_by__in=[ExpressedBy.PATIENT, ExpressedBy.FAMILY], then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    rank = Case(
        When(priority=GoalPriority.HIGH, then=Value(0)),
        When(priority=GoalPriority.MEDIUM, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return voice, rank


def portal_plan(access: PortalAccess) -> PortalPlan:
    """The plain-language plan: the patient's and family's goals first with progress,
    what's next (open activities by date, who does them), referrals with the service's
    contact, the team with roles. A fixed number of queries."""
    patient = access.patient
    today = timezone.localdate()
    plan = portal_plan_of(patient)
    out = PortalPlan(patient=patient, plan=plan, today=today)
    out.team = list(
        TeamMembership.objects.current()
        .filter(patient_id=patient.pk)
        .select_related("user", "discipline")
        .order_by("role", "discipline__name", "user__last_name", "id")
    )
    out.questions = list(
        portal_assignments(access)
        .filter(
            Q(status=AssignmentStatus.REQUESTED)
            | Q(
                status=AssignmentStatus.COMPLETED,
                completed_at__date__gte=today - dt.timedelta(days=RECENT_DAYS),
            )
        )
        .order_by("-status", "assigned_at", "id")
    )
    if plan is None:
        return out
    voice, rank = _goal_order()
    out.goals = list(
        shared_goals([plan.pk])
        .filter(lifecycle_status__in=PORTAL_GOAL_STATUSES)
        .annotate(_voice=voice, _rank=rank)
        .order_by("_voice", "_rank", "target_due", "id")
    )
    activities = (
        shared_activities([plan.pk])
        .filter(status__in=PORTAL_ACTIVITY_STATUSES)
        .select_related("owner_discipline", "assigned_to")
        .order_by(F("due_date").asc(nulls_last=True), "id")
    )
    recent = today - dt.timedelta(days=RECENT_DAYS)
    for activity in activities:
        if activity.status in PORTAL_ACTIVITY_OPEN:
            out.next_activities.append(activity)
        elif activity.updated_at.date() >= recent:
            out.done_activities.append(activity)
    out.needs = list(
        shared_needs([plan.pk]).filter(status__in=PORTAL_NEED_STATUSES).order_by("-is_barrier", "id")
    )
    out.referrals = list(
        Referral.objects.filter(patient_id=patient.pk, care_plan_id=plan.pk)
        .filter(status__in=PORTAL_REFERRAL_STATUSES)
        .filter(Q(need__isnull=True) | Q(need__in=shared_needs([plan.pk]).values("pk")))
        .select_related("service__organization")
        .prefetch_related(
            Prefetch(
                "service__service_at_locations",
                queryset=ServiceAtLocation.objects.select_related("location").order_by("id"),
            )
        )
        .order_by("-created_at", "-id")
    )
    return out


# ---------------------------------------------------------------------------
# Questions from the team (questionnaires asked of the patient)
# ---------------------------------------------------------------------------
def portal_assignments(access: PortalAccess) -> QuerySet:
    """The questionnaires the team asked this patient to answer. One filed in a
    sensitivity category (the PHQ-9) is shown to the patient's own account only: not to
    caregivers, and not in the staff preview (whose viewer the policy may not allow)."""
    rows = QuestionnaireAssignment.objects.filter(
        patient_id=access.patient.pk,
        status__in=(AssignmentStatus.REQUESTED, AssignmentStatus.COMPLETED),
    ).select_related("questionnaire")
    if not (access.is_patient and access.user is not None):
        rows = rows.filter(sensitivity__isnull=True)
    return rows


def portal_assignment(access: PortalAccess, assignment_id) -> QuestionnaireAssignment | None:
    """One question the patient sees (None: hidden, cancelled or missing alike)."""
    try:
        pk = int(assignment_id)
    except (TypeError, ValueError):
        return None
    return portal_assignments(access).filter(pk=pk).first()


# ---------------------------------------------------------------------------
# Consents recorded for the patient
# ---------------------------------------------------------------------------
def portal_consents(access: PortalAccess) -> list:
    """Every consent recorded for the patient, newest first (expired and revoked ones
    too: the patient may see what they agreed to and when it ended)."""
    return list(
        Consent.objects.filter(patient_id=access.patient.pk)
        .exclude(status__in=(ConsentStatus.ENTERED_IN_ERROR, ConsentStatus.DRAFT))
        .select_related("caregiver", "recorded_by")
        .order_by("-date_given", "-id")
    )


def portal_consent(access: PortalAccess, consent_id) -> Consent | None:
    try:
        pk = int(consent_id)
    except (TypeError, ValueError):
        return None
    return (
        Consent.objects.filter(patient_id=access.patient.pk, pk=pk)
        .exclude(status__in=(ConsentStatus.ENTERED_IN_ERROR, ConsentStatus.DRAFT))
        .select_related("caregiver")
        .first()
    )


# ---------------------------------------------------------------------------
# The patient's thread with the team
# ---------------------------------------------------------------------------
def patient_conversation(patient) -> Conversation | None:
    return Conversation.objects.filter(patient_id=patient.pk, with_patient=True).first()


def portal_messages_q() -> Q:
    """Messages of the patient's thread the portal shows: those the patient or family
    wrote, and the team's replies marked "to patient"; never a retracted one."""
    return Q(retracted_at__isnull=True) & (
        Q(author__kind__in=[AccountKind.PATIENT, AccountKind.CAREGIVER]) | Q(to_patient=True)
    )


def portal_messages(patient, *, limit: int = 200) -> list:
    conversation = patient_conversation(patient)
    if conversation is None:
        return []
    rows = (
        Message.objects.filter(conversation=conversation)
        .filter(portal_messages_q())
        .select_related("author")
        .order_by("-created_at", "-id")[:limit]
    )
    return list(reversed(rows))
