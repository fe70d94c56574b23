"""The living care plan: goals with targets, needs and barriers, activities owned by a
discipline; every change is kept as history (django-simple-history)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from careteam.concurrency import Versioned

# Longest texts accepted (forms, API and services alike): a goal or a need is a sentence
# or a short paragraph, a description a few paragraphs; a pasted document is refused with
# a clear error instead of widening every page that shows it.
STATEMENT_MAX_LENGTH = 2000
TEXT_MAX_LENGTH = 5000
STATUS_REASON_MAX_LENGTH = 300
# a change to one of these statuses says why (kept with the item and shown in history)
STATUSES_NEEDING_REASON = frozenset({"entered-in-error", "cancelled", "revoked"})


def limited_text(max_length: int, **kwargs) -> models.TextField:
    """A TextField whose length is checked in forms, serializers and full_clean()."""
    return models.TextField(max_length=max_length, validators=[MaxLengthValidator(max_length)], **kwargs)


def sensitivity_field(help_text: str = "") -> models.ForeignKey:
    """The category an item is filed in; the permissions module hides it from the
    disciplines the policy does not allow (empty: not sensitive)."""
    return models.ForeignKey(
        "careteam.SensitivityCategory",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=help_text,
    )


def shared_field() -> models.BooleanField:
    return models.BooleanField(
        "Shared with the patient",
        default=True,
        help_text="Shown in the patient portal. A sensitive item is shown only once a clinician "
        "the policy allows shares it explicitly.",
    )


def shared_sensitivity_field() -> models.ForeignKey:
    """The category a sensitive item was in when a clinician the policy allows shared it
    with the patient; filed in another category later, it is no longer shared."""
    return models.ForeignKey(
        "careteam.SensitivityCategory",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )


class SharedWithPatient:
    """Goals, needs and activities: whether the item's own flags show it in the portal
    (the one rule, with the goal-link rule on top, is portal.selectors.shared_q)."""

    @property
    def is_shared_with_patient(self) -> bool:
        return self.shared_with_patient and (
            self.sensitivity_id is None or self.shared_sensitivity_id == self.sensitivity_id
        )


def status_reason_field() -> models.CharField:
    return models.CharField(
        max_length=STATUS_REASON_MAX_LENGTH,
        blank=True,
        help_text="Why the status last changed (required for entered in error and cancelled).",
    )


# ---------------------------------------------------------------------------
# CarePlan (FHIR CarePlan)
# ---------------------------------------------------------------------------
class CarePlanStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    ON_HOLD = "on-hold", "On hold"
    REVOKED = "revoked", "Revoked"
    COMPLETED = "completed", "Completed"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


CAREPLAN_TRANSITIONS = {
    "draft": {"active", "revoked", "entered-in-error"},
    "active": {"on-hold", "completed", "revoked", "entered-in-error"},
    "on-hold": {"active", "completed", "revoked", "entered-in-error"},
    "completed": {"active", "entered-in-error"},
    "revoked": {"entered-in-error"},
    "entered-in-error": set(),
}
# what a new plan may start as (active only when the patient has no other active plan)
CAREPLAN_INITIAL_STATUSES = frozenset({"draft", "active"})


class CarePlanIntent(models.TextChoices):
    PROPOSAL = "proposal", "Proposal"
    PLAN = "plan", "Plan"
    ORDER = "order", "Order"
    OPTION = "option", "Option"


class CarePlan(Versioned):
    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="care_plans")
    title = models.CharField(max_length=200)
    description = limited_text(TEXT_MAX_LENGTH, blank=True)
    status = models.CharField(max_length=20, choices=CarePlanStatus.choices, default=CarePlanStatus.DRAFT)
    status_reason = status_reason_field()
    intent = models.CharField(max_length=10, choices=CarePlanIntent.choices, default=CarePlanIntent.PLAN)
    period_start = models.DateField(default=timezone.localdate)
    period_end = models.DateField(null=True, blank=True)
    review_due = models.DateField(null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    fhir = models.JSONField(
        default=dict,
        blank=True,
        help_text="What a FHIR import brought that has no column: the source elements, the "
        "column values derived from them, the import keys (careteam/api/fhir_import.py)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at", "fhir"])

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(period_end__isnull=True) | Q(period_end__gte=models.F("period_start")),
                name="careplan_period_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(status__in=CarePlanStatus.values), name="careplan_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(intent__in=CarePlanIntent.values), name="careplan_intent_valid"
            ),
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(status="active"),
                name="one_active_careplan_per_patient",
                violation_error_message="This patient already has an active care plan.",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "status"], name="careplan_patient_idx"),
            models.Index(fields=["review_due"], name="careplan_review_idx", condition=Q(status="active")),
        ]

    def __str__(self) -> str:
        return self.title

    def is_review_overdue(self, on: dt.date | None = None) -> bool:
        on = on or timezone.localdate()
        return self.status == CarePlanStatus.ACTIVE and self.review_due is not None and self.review_due <= on


# ---------------------------------------------------------------------------
# Goal (FHIR Goal)
# ---------------------------------------------------------------------------
class ExpressedBy(models.TextChoices):
    PATIENT = "patient", "Patient"
    FAMILY = "family", "Family or caregiver"
    CLINICIAN = "clinician", "Clinician"


class GoalPriority(models.TextChoices):
    HIGH = "high-priority", "High"
    MEDIUM = "medium-priority", "Medium"
    LOW = "low-priority", "Low"


class GoalLifecycle(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    PLANNED = "planned", "Planned"
    ACCEPTED = "accepted", "Accepted"
    ACTIVE = "active", "Active"
    ON_HOLD = "on-hold", "On hold"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"
    REJECTED = "rejected", "Rejected"


GOAL_TRANSITIONS = {
    "proposed": {"planned", "accepted", "active", "rejected", "cancelled", "entered-in-error"},
    "planned": {"accepted", "active", "on-hold", "cancelled", "entered-in-error"},
    "accepted": {"active", "on-hold", "cancelled", "entered-in-error"},
    "active": {"on-hold", "completed", "cancelled", "entered-in-error"},
    "on-hold": {"active", "cancelled", "entered-in-error"},
    "completed": {"active", "entered-in-error"},
    "cancelled": {"entered-in-error"},
    "rejected": {"proposed", "entered-in-error"},
    "entered-in-error": set(),
}
# a new goal starts proposed or one open step on; completing, cancelling or rejecting it
# (and recording its outcome) is a change of the goal, kept in its history
GOAL_INITIAL_STATUSES = frozenset({"proposed", "planned", "accepted", "active"})
GOAL_OUTCOME_ACHIEVEMENTS = frozenset({"achieved", "not-achieved", "not-attainable"})


class GoalAchievement(models.TextChoices):
    IN_PROGRESS = "in-progress", "In progress"
    IMPROVING = "improving", "Improving"
    WORSENING = "worsening", "Worsening"
    NO_CHANGE = "no-change", "No change"
    ACHIEVED = "achieved", "Achieved"
    SUSTAINING = "sustaining", "Sustaining"
    NOT_ACHIEVED = "not-achieved", "Not achieved"
    NO_PROGRESS = "no-progress", "No progress"
    NOT_ATTAINABLE = "not-attainable", "Not attainable"


class Goal(SharedWithPatient, Versioned):
    care_plan = models.ForeignKey(CarePlan, on_delete=models.CASCADE, related_name="goals")
    description = limited_text(STATEMENT_MAX_LENGTH)
    expressed_by = models.CharField(max_length=10, choices=ExpressedBy.choices, default=ExpressedBy.CLINICIAN)
    priority = models.CharField(max_length=20, choices=GoalPriority.choices, default=GoalPriority.MEDIUM)
    owner_discipline = models.ForeignKey(
        "careteam.Discipline", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    target_measure = models.CharField(max_length=200, blank=True, help_text="e.g. HbA1c, walking distance")
    target_value = models.CharField(max_length=100, blank=True, help_text="e.g. < 7.5 %, 200 m")
    target_due = models.DateField(null=True, blank=True)
    lifecycle_status = models.CharField(
        max_length=20, choices=GoalLifecycle.choices, default=GoalLifecycle.PROPOSED
    )
    achievement_status = models.CharField(max_length=20, choices=GoalAchievement.choices, blank=True)
    status_reason = status_reason_field()
    # a goal may be sensitive itself; one that exists only for hidden needs is hidden with
    # them whatever this says (careteam.permissions.goal_links_visible_q)
    sensitivity = sensitivity_field("Set to restrict this goal to the disciplines the policy allows.")
    shared_with_patient = shared_field()
    shared_sensitivity = shared_sensitivity_field()
    fhir = models.JSONField(
        default=dict,
        blank=True,
        help_text="What a FHIR import brought that has no column (careteam/api/fhir_import.py)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at", "fhir"])

    class Meta:
        ordering = ["care_plan_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(lifecycle_status__in=GoalLifecycle.values), name="goal_lifecycle_valid"
            ),
            models.CheckConstraint(condition=~Q(description=""), name="goal_description_required"),
        ]
        indexes = [models.Index(fields=["care_plan", "lifecycle_status"], name="goal_plan_idx")]

    def __str__(self) -> str:
        return self.description[:80]

    @property
    def is_patient_voice(self) -> bool:
        return self.expressed_by in (ExpressedBy.PATIENT, ExpressedBy.FAMILY)


# ---------------------------------------------------------------------------
# Need / barrier (FHIR Condition, health-concern / SDOH category)
# ---------------------------------------------------------------------------
class NeedDomain(models.TextChoices):
    MEDICAL = "medical", "Medical"
    BEHAVIOURAL = "behavioural", "Behavioural"
    SOCIAL = "social", "Social"


class NeedCategory(models.TextChoices):
    CLINICAL = "clinical", "Clinical condition"
    MEDICATION = "medication", "Medication"
    MOBILITY = "mobility", "Mobility and function"
    MENTAL_HEALTH = "mental-health", "Mental health"
    SUBSTANCE_USE = "substance-use", "Substance use"
    TRANSPORTATION = "transportation", "Transportation"
    FOOD = "food", "Food"
    HOUSING = "housing", "Housing"
    FINANCIAL = "financial", "Financial"
    LANGUAGE = "language", "Language"
    CAREGIVER_SUPPORT = "caregiver-support", "Caregiver support"
    SAFETY = "safety", "Safety"
    SOCIAL_ISOLATION = "social-isolation", "Social isolation"
    OTHER = "other", "Other"


class NeedStatus(models.TextChoices):
    """FHIR Condition clinical status."""

    ACTIVE = "active", "Active"
    RECURRENCE = "recurrence", "Recurrence"
    INACTIVE = "inactive", "Inactive"
    RESOLVED = "resolved", "Resolved"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


NEED_TRANSITIONS = {
    "active": {"inactive", "resolved", "entered-in-error"},
    "recurrence": {"inactive", "resolved", "entered-in-error"},
    "inactive": {"active", "recurrence", "resolved", "entered-in-error"},
    "resolved": {"recurrence", "entered-in-error"},
    "entered-in-error": set(),
}
NEED_INITIAL_STATUSES = frozenset({"active"})


class Need(SharedWithPatient, Versioned):
    care_plan = models.ForeignKey(CarePlan, on_delete=models.CASCADE, related_name="needs")
    domain = models.CharField(max_length=15, choices=NeedDomain.choices)
    category = models.CharField(max_length=20, choices=NeedCategory.choices)
    description = limited_text(STATEMENT_MAX_LENGTH)
    is_barrier = models.BooleanField(default=False, help_text="Stands in the way of a goal.")
    status = models.CharField(max_length=20, choices=NeedStatus.choices, default=NeedStatus.ACTIVE)
    status_reason = status_reason_field()
    sensitivity = sensitivity_field("Set to restrict this item to the disciplines the policy allows.")
    shared_with_patient = shared_field()
    shared_sensitivity = shared_sensitivity_field()
    goals = models.ManyToManyField(Goal, blank=True, related_name="needs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["care_plan_id", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=NeedStatus.values), name="need_status_valid"),
            models.CheckConstraint(condition=Q(domain__in=NeedDomain.values), name="need_domain_valid"),
            models.CheckConstraint(condition=~Q(description=""), name="need_description_required"),
        ]
        indexes = [models.Index(fields=["care_plan", "status"], name="need_plan_idx")]

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.description[:60]}"


# ---------------------------------------------------------------------------
# Activity / intervention (FHIR CarePlan.activity.detail)
# ---------------------------------------------------------------------------
class ActivityStatus(models.TextChoices):
    NOT_STARTED = "not-started", "Not started"
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in-progress", "In progress"
    ON_HOLD = "on-hold", "On hold"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    STOPPED = "stopped", "Stopped"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


ACTIVITY_TRANSITIONS = {
    "not-started": {"scheduled", "in-progress", "cancelled", "entered-in-error"},
    "scheduled": {"in-progress", "on-hold", "cancelled", "entered-in-error"},
    "in-progress": {"on-hold", "completed", "stopped", "entered-in-error"},
    "on-hold": {"in-progress", "scheduled", "stopped", "cancelled", "entered-in-error"},
    "completed": {"in-progress", "entered-in-error"},
    "cancelled": {"entered-in-error"},
    "stopped": {"entered-in-error"},
    "entered-in-error": set(),
}
ACTIVITY_OPEN_STATUSES = ("not-started", "scheduled", "in-progress", "on-hold")
ACTIVITY_INITIAL_STATUSES = frozenset({"not-started", "scheduled", "in-progress"})


class Activity(SharedWithPatient, Versioned):
    care_plan = models.ForeignKey(CarePlan, on_delete=models.CASCADE, related_name="activities")
    title = models.CharField(max_length=200)
    description = limited_text(TEXT_MAX_LENGTH, blank=True)
    goals = models.ManyToManyField(Goal, blank=True, related_name="activities")
    needs = models.ManyToManyField(Need, blank=True, related_name="activities")
    owner_discipline = models.ForeignKey("careteam.Discipline", on_delete=models.PROTECT, related_name="+")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="assigned_activities",
        null=True,
        blank=True,
    )
    status = models.CharField(
        max_length=20, choices=ActivityStatus.choices, default=ActivityStatus.NOT_STARTED
    )
    status_reason = status_reason_field()
    due_date = models.DateField(null=True, blank=True)
    sensitivity = sensitivity_field()
    shared_with_patient = shared_field()
    shared_sensitivity = shared_sensitivity_field()
    # the patient or their family does this ("book the appointment"); they mark it done
    # in the portal
    for_patient = models.BooleanField(
        "Done by the patient or family", default=False, help_text="They can mark it done in the portal."
    )
    fhir = models.JSONField(
        default=dict,
        blank=True,
        help_text="What a FHIR import brought that has no column (careteam/api/fhir_import.py)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at", "fhir"], m2m_fields=[goals, needs])

    class Meta:
        ordering = ["care_plan_id", "due_date", "id"]
        verbose_name_plural = "activities"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ActivityStatus.values), name="activity_status_valid"
            ),
            models.CheckConstraint(condition=~Q(title=""), name="activity_title_required"),
        ]
        indexes = [
            models.Index(fields=["care_plan", "status"], name="activity_plan_idx"),
            models.Index(fields=["assigned_to", "status", "due_date"], name="activity_assignee_idx"),
            models.Index(
                fields=["due_date"],
                name="activity_due_open_idx",
                condition=Q(status__in=["not-started", "scheduled", "in-progress", "on-hold"]),
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def is_overdue(self, on: dt.date | None = None) -> bool:
        on = on or timezone.localdate()
        return self.status in ACTIVITY_OPEN_STATUSES and self.due_date is not None and self.due_date < on


# ---------------------------------------------------------------------------
# Notes: comments and proposed changes on the plan or an item
# ---------------------------------------------------------------------------
class NoteKind(models.TextChoices):
    COMMENT = "comment", "Comment"
    PROPOSAL = "proposal", "Proposed change"


class NoteStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"


NOTE_TRANSITIONS = {"open": {"accepted", "declined"}, "accepted": set(), "declined": set()}


class Note(models.Model):
    """A comment, or a proposed change (`changes`: field -> {"from", "to"} as stored
    values) that the item's owner accepts (applied through the normal service) or
    declines with a reason."""

    care_plan = models.ForeignKey(CarePlan, on_delete=models.CASCADE, related_name="notes")
    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    need = models.ForeignKey(Need, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    activity = models.ForeignKey(
        Activity, on_delete=models.CASCADE, null=True, blank=True, related_name="notes"
    )
    kind = models.CharField(max_length=10, choices=NoteKind.choices, default=NoteKind.COMMENT)
    text = limited_text(TEXT_MAX_LENGTH)
    sensitivity = sensitivity_field()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # proposals only
    changes = models.JSONField(default=dict, blank=True)
    # the version of the item the proposal was made against: accepting it after the item
    # changed is refused as a conflict, like any save from an old version
    target_version = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=NoteStatus.choices, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="note_text_required"),
            models.CheckConstraint(
                condition=Q(kind="comment", status="") | Q(kind="proposal", status__in=NoteStatus.values),
                name="note_proposal_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="declined") | ~Q(decision_reason=""),
                name="note_decline_has_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["activity"], name="note_open_activity_idx", condition=Q(status="open")),
            models.Index(fields=["goal"], name="note_open_goal_idx", condition=Q(status="open")),
        ]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def target(self):
        """The goal, need or activity the note is on (None: on the plan itself)."""
        return self.goal or self.need or self.activity


# ---------------------------------------------------------------------------
# Screening instruments (FHIR Questionnaire) and their rules
# ---------------------------------------------------------------------------
class QuestionnaireStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class Questionnaire(models.Model):
    """One version of a screening instrument: the FHIR R4 Questionnaire as shipped or
    imported, kept whole; `code` is its LOINC panel code. Versions are never edited in
    place: an import of a new version adds a row."""

    url = models.CharField(max_length=300)
    version = models.CharField(max_length=40)
    name = models.CharField(max_length=100)
    title = models.CharField(max_length=200)
    code = models.CharField(max_length=40, blank=True, help_text="LOINC code of the panel")
    status = models.CharField(
        max_length=10, choices=QuestionnaireStatus.choices, default=QuestionnaireStatus.ACTIVE
    )
    resource = models.JSONField(help_text="The FHIR R4 Questionnaire")
    scoring = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"items": [linkIds], "bands": [[min, max, label]], "label": "PHQ-9 total"}',
    )
    sensitivity = sensitivity_field("Responses and the needs they propose are filed in this category.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["url", "version"], name="questionnaire_url_version_unique"),
            models.CheckConstraint(
                condition=Q(status__in=QuestionnaireStatus.values), name="questionnaire_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} v{self.version}"


class ScreeningRule(models.Model):
    """A positive-screen rule kept with its questionnaire: when any condition holds (the
    item `link_id` answered with one of its `codes`), or the total score reaches
    `min_score`, propose a need of this category and domain. `urgent` raises a safety
    handoff to the case manager."""

    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.CASCADE, related_name="rules")
    key = models.SlugField(max_length=60)
    category = models.CharField(max_length=20, choices=NeedCategory.choices)
    domain = models.CharField(max_length=15, choices=NeedDomain.choices)
    description = models.CharField(max_length=300)
    conditions = models.JSONField(
        default=list, blank=True, help_text='[{"link_id": "food-1", "codes": [...]}]'
    )
    min_score = models.IntegerField(null=True, blank=True)
    urgent = models.BooleanField(default=False)

    class Meta:
        ordering = ["questionnaire_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["questionnaire", "key"], name="screening_rule_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.questionnaire.name}: {self.key}"


class AnsweredBy(models.TextChoices):
    STAFF = "staff", "Staff"
    PATIENT = "patient", "Patient"
    CAREGIVER = "caregiver", "Caregiver"


class ResponseStatus(models.TextChoices):
    """FHIR QuestionnaireResponse.status."""

    IN_PROGRESS = "in-progress", "In progress"
    COMPLETED = "completed", "Completed"
    AMENDED = "amended", "Amended"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"
    STOPPED = "stopped", "Stopped"


class QuestionnaireResponse(Versioned):
    """One screening of one patient: the answers (linkId -> list of values), who answered
    and when, the score and its band. In progress until completed; resumable."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="screenings")
    care_plan = models.ForeignKey(
        CarePlan, on_delete=models.SET_NULL, null=True, blank=True, related_name="screenings"
    )
    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.PROTECT, related_name="responses")
    status = models.CharField(
        max_length=20, choices=ResponseStatus.choices, default=ResponseStatus.IN_PROGRESS
    )
    answers = models.JSONField(default=dict, blank=True)
    answered_by = models.CharField(max_length=10, choices=AnsweredBy.choices, default=AnsweredBy.STAFF)
    answerer_name = models.CharField(max_length=200, blank=True, help_text="The caregiver's name")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    score = models.IntegerField(null=True, blank=True)
    band = models.CharField(max_length=60, blank=True)
    sensitivity = sensitivity_field()
    started_at = models.DateTimeField(default=timezone.now)
    authored_at = models.DateTimeField(default=timezone.now, help_text="Last saved")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ResponseStatus.values), name="response_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(answered_by__in=AnsweredBy.values), name="response_answered_by_valid"
            ),
        ]
        indexes = [models.Index(fields=["patient", "status"], name="response_patient_idx")]

    def __str__(self) -> str:
        return f"{self.questionnaire.title} for {self.patient_id}"


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    DISMISSED = "dismissed", "Dismissed"


class ProposedNeed(models.Model):
    """A need a positive screening proposes; the clinician accepts it into the plan (a
    Need through the care-plan services) or dismisses it with a reason."""

    response = models.ForeignKey(QuestionnaireResponse, on_delete=models.CASCADE, related_name="proposals")
    rule = models.ForeignKey(ScreeningRule, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=20, choices=NeedCategory.choices)
    domain = models.CharField(max_length=15, choices=NeedDomain.choices)
    description = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED)
    reason = models.CharField(max_length=300, blank=True)
    need = models.OneToOneField(
        Need, on_delete=models.SET_NULL, null=True, blank=True, related_name="proposal"
    )
    sensitivity = sensitivity_field()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["response_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["response", "rule"], name="one_proposal_per_rule"),
            models.CheckConstraint(
                condition=Q(status__in=ProposalStatus.values), name="proposal_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.description


class AssignmentStatus(models.TextChoices):
    """FHIR Task.status, the part a task for the patient goes through."""

    REQUESTED = "requested", "Waiting for the patient"
    COMPLETED = "completed", "Answered"
    CANCELLED = "cancelled", "Cancelled"


class QuestionnaireAssignment(models.Model):
    """A questionnaire the team asks the patient to answer in the portal: a task for the
    patient (HL7 SDOH Clinical Care, SDOHCC-TaskForPatient "complete questionnaire"),
    requested until answered (the response linked) or cancelled. Filed in the
    questionnaire's sensitivity category, as its response is."""

    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.CASCADE, related_name="questionnaire_assignments"
    )
    care_plan = models.ForeignKey(
        CarePlan, on_delete=models.SET_NULL, null=True, blank=True, related_name="questionnaire_assignments"
    )
    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(
        max_length=10, choices=AssignmentStatus.choices, default=AssignmentStatus.REQUESTED
    )
    sensitivity = sensitivity_field()
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_at = models.DateTimeField(default=timezone.now)
    response = models.OneToOneField(
        QuestionnaireResponse,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assignment",
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-assigned_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=AssignmentStatus.values), name="assignment_status_valid"
            ),
            # one open request per instrument: asking twice would have it answered twice
            models.UniqueConstraint(
                fields=["patient", "questionnaire"],
                condition=Q(status="requested"),
                name="one_open_assignment_per_questionnaire",
            ),
            models.CheckConstraint(
                condition=~Q(status="completed") | Q(response__isnull=False),
                name="assignment_completed_has_response",
            ),
        ]
        indexes = [models.Index(fields=["patient", "status"], name="assignment_patient_idx")]

    def __str__(self) -> str:
        return f"{self.questionnaire.title} for {self.patient_id} ({self.status})"


# ---------------------------------------------------------------------------
# Plan templates (FHIR PlanDefinition + ActivityDefinition)
# ---------------------------------------------------------------------------
class PlanTemplate(Versioned):
    """One version of a plan template: goals, needs and activities with relative due
    dates, as `content` = {"goals": [...], "needs": [...], "activities": [...]}; every
    item carries a `key` that stays the same across versions, so a newer version adds
    only the items the plan does not have yet."""

    slug = models.SlugField(max_length=80)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=QuestionnaireStatus.choices, default=QuestionnaireStatus.ACTIVE
    )
    content = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "-version"]
        permissions = [("manage_clinical_content", "Can manage plan templates and screening instruments")]
        constraints = [
            models.UniqueConstraint(fields=["slug", "version"], name="plan_template_slug_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.title} v{self.version}"


class TemplateItem(models.Model):
    """What a template put into a plan: one row per (plan, template, item key). The unique
    key makes applying idempotent and concurrent applies add each item once."""

    care_plan = models.ForeignKey(CarePlan, on_delete=models.CASCADE, related_name="template_items")
    template_slug = models.SlugField(max_length=80)
    template_version = models.PositiveIntegerField()
    item_key = models.CharField(max_length=80)
    kind = models.CharField(max_length=10)  # goal, need, activity
    goal = models.ForeignKey(Goal, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    need = models.ForeignKey(Need, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    activity = models.ForeignKey(Activity, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    applied_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    applied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["care_plan_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["care_plan", "template_slug", "kind", "item_key"], name="one_template_item_per_plan"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template_slug} v{self.template_version} {self.kind} {self.item_key}"
