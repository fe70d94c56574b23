"""Care transitions (FHIR Encounter) with their checklist on the living plan, the debrief
after a discharge, and the patient's medication lists with their reconciliation (FHIR
MedicationStatement). Versioned rows keep history with django-simple-history, as the plan
items do."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from careplans.models import TEXT_MAX_LENGTH, limited_text
from careteam.concurrency import Versioned

READMISSION_DAYS = 30
# the debrief is due this many days after a discharge and prompted until the last day
# (transitions/reminder_rules.py reminds the case manager)
DEBRIEF_FROM_DAYS, DEBRIEF_UNTIL_DAYS = 7, 30


# ---------------------------------------------------------------------------
# Transitions (FHIR Encounter)
# ---------------------------------------------------------------------------
class TransitionKind(models.TextChoices):
    ADMISSION = "admission", "Admission"
    DISCHARGE = "discharge", "Discharge"
    TRANSFER = "transfer", "Transfer"


class EncounterStatus(models.TextChoices):
    """FHIR R4 Encounter.status (the ones a transition takes)."""

    PLANNED = "planned", "Planned"
    IN_PROGRESS = "in-progress", "In hospital"
    FINISHED = "finished", "Finished"
    CANCELLED = "cancelled", "Cancelled"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


ENCOUNTER_TRANSITIONS = {
    "planned": {"in-progress", "finished", "cancelled", "entered-in-error"},
    "in-progress": {"finished", "cancelled", "entered-in-error"},
    "finished": {"entered-in-error"},
    "cancelled": {"entered-in-error"},
    "entered-in-error": set(),
}
# a transition that counts (readmissions, the dashboard)
TRANSITION_COUNTED = ("planned", "in-progress", "finished")


class TransitionSource(models.TextChoices):
    TEAM = "team", "Entered by the team"
    FHIR = "fhir", "Received from another system (FHIR)"


class Transition(Versioned):
    """An admission, discharge or transfer of one patient. An encounter received twice
    (same identifier) is one row, updated: admitted, then the same row discharged."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="transitions")
    kind = models.CharField(max_length=20, choices=TransitionKind.choices)
    status = models.CharField(
        max_length=20, choices=EncounterStatus.choices, default=EncounterStatus.FINISHED
    )
    encounter_class = models.CharField(
        max_length=20, default="IMP", help_text="HL7 v3 ActCode: IMP inpatient, EMER, ACUTE, SS, AMB, HH"
    )
    from_location = models.CharField(max_length=200, blank=True)
    to_location = models.CharField(max_length=200, blank=True)
    admitted_at = models.DateTimeField(null=True, blank=True, help_text="Encounter.period.start")
    discharged_at = models.DateTimeField(null=True, blank=True, help_text="Encounter.period.end")
    # the moment of this transition: the discharge of a discharge, else the admission or
    # transfer (kept as a column for the readmission and dashboard queries)
    occurred_at = models.DateTimeField()
    reason = models.CharField(max_length=300, blank=True)
    disposition = models.CharField(
        max_length=40, blank=True, help_text="Encounter.hospitalization.dischargeDisposition code"
    )
    source = models.CharField(max_length=10, choices=TransitionSource.choices, default=TransitionSource.TEAM)
    identifier_system = models.CharField(max_length=200, blank=True)
    identifier = models.CharField(max_length=200, blank=True)
    readmission_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="readmissions"
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=TransitionKind.values), name="transition_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=EncounterStatus.values), name="transition_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(admitted_at__isnull=True)
                | Q(discharged_at__isnull=True)
                | Q(discharged_at__gte=models.F("admitted_at")),
                name="transition_discharge_after_admission",
            ),
            models.UniqueConstraint(
                fields=["identifier_system", "identifier"],
                condition=~Q(identifier=""),
                name="one_transition_per_encounter",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "kind", "occurred_at"], name="transition_patient_idx"),
            models.Index(fields=["kind", "occurred_at"], name="transition_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.occurred_at:%Y-%m-%d}"

    @property
    def is_discharge(self) -> bool:
        return self.kind == TransitionKind.DISCHARGE

    def debrief_window(self) -> tuple[dt.datetime, dt.datetime] | None:
        if not self.is_discharge:
            return None
        return (
            self.occurred_at + dt.timedelta(days=DEBRIEF_FROM_DAYS),
            self.occurred_at + dt.timedelta(days=DEBRIEF_UNTIL_DAYS),
        )

    def debrief_due(self, now: dt.datetime | None = None) -> bool:
        window = self.debrief_window()
        now = now or timezone.now()
        return window is not None and window[0] <= now <= window[1]


# ---------------------------------------------------------------------------
# The discharge checklist: defaults (data, editable in the admin) and the steps
# ---------------------------------------------------------------------------
class ChecklistStepDefault(models.Model):
    """One step every discharge starts: owned by a discipline (the first of `disciplines`
    on the patient's team), due `due_hours` after the discharge. An open activity of the
    plan whose title holds one of `match_words` already covers it and is linked instead."""

    key = models.SlugField(max_length=60, unique=True)
    title = models.CharField(max_length=200)
    disciplines = ArrayField(
        models.SlugField(max_length=40), help_text="Discipline codes in order of preference"
    )
    due_hours = models.PositiveIntegerField(help_text="Hours after the discharge (0: the day of discharge)")
    communicates = models.CharField(max_length=300, blank=True, help_text="Who tells whom what")
    match_words = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.title


class TransitionStep(models.Model):
    """A checklist step of one discharge: an activity on the living plan (created for it,
    or an open one that already covered it)."""

    transition = models.ForeignKey(Transition, on_delete=models.CASCADE, related_name="steps")
    key = models.SlugField(max_length=60)
    title = models.CharField(max_length=200)
    activity = models.ForeignKey("careplans.Activity", on_delete=models.PROTECT, related_name="+")
    linked_existing = models.BooleanField(default=False)
    due_at = models.DateTimeField()
    communicates = models.CharField(max_length=300, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["transition_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["transition", "key"], name="one_step_per_key"),
            models.UniqueConstraint(fields=["transition", "activity"], name="one_step_per_activity"),
        ]

    def __str__(self) -> str:
        return self.title


class HospitalPause(models.Model):
    """An activity marked as one that cannot happen while the patient is in hospital: an
    admission puts it on hold, the discharge resumes it."""

    activity = models.OneToOneField("careplans.Activity", on_delete=models.CASCADE, related_name="+")
    marked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    marked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Not in hospital: {self.activity_id}"


class PausedActivity(models.Model):
    """An activity an admission put on hold, and the status it goes back to."""

    transition = models.ForeignKey(Transition, on_delete=models.CASCADE, related_name="paused")
    activity = models.ForeignKey("careplans.Activity", on_delete=models.CASCADE, related_name="+")
    previous_status = models.CharField(max_length=20)
    paused_at = models.DateTimeField(default=timezone.now)
    resumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transition", "activity"], name="one_pause_per_admission")
        ]

    def __str__(self) -> str:
        return f"Activity {self.activity_id} on hold for transition {self.transition_id}"


class Debrief(models.Model):
    """The team's short look back 7-30 days after a discharge."""

    transition = models.OneToOneField(Transition, on_delete=models.CASCADE, related_name="debrief")
    went_well = limited_text(TEXT_MAX_LENGTH)
    tighten = limited_text(TEXT_MAX_LENGTH, blank=True)
    actions = models.ManyToManyField("careplans.Activity", blank=True, related_name="+")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"Debrief of {self.transition}"


# ---------------------------------------------------------------------------
# Medications (FHIR MedicationStatement) and reconciliation
# ---------------------------------------------------------------------------
class MedicationSource(models.TextChoices):
    DISCHARGE = "discharge", "Discharge list"
    HOME = "home", "Home"
    PHARMACY = "pharmacy", "Pharmacy"
    PATIENT = "patient-reported", "Patient-reported"
    RECONCILED = "reconciled", "Reconciled list"


SOURCE_LISTS = [c for c in MedicationSource.values if c != MedicationSource.RECONCILED]


class MedicationStatus(models.TextChoices):
    """FHIR R4 MedicationStatement.status (the ones a list line takes)."""

    ACTIVE = "active", "Active"
    STOPPED = "stopped", "Stopped"
    ENTERED_IN_ERROR = "entered-in-error", "Entered in error"


class TimeOfDay(models.TextChoices):
    MORNING = "morning", _("Morning")
    MIDDAY = "midday", _("Midday")
    EVENING = "evening", _("Evening")
    BEDTIME = "bedtime", _("Bedtime")
    AS_NEEDED = "as-needed", _("When needed")


class MedicationLine(Versioned):
    """One medicine on one list (a source list, or the reconciled list). Not an order:
    what the patient takes, as written on that list."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="medications")
    source = models.CharField(max_length=20, choices=MedicationSource.choices)
    name = models.CharField(max_length=200)
    rxnorm = models.CharField(max_length=20, blank=True, help_text="RxNorm code (optional)")
    dose = models.CharField(max_length=100, blank=True, help_text="e.g. 500 mg")
    route = models.CharField(max_length=60, blank=True, help_text="e.g. by mouth")
    timing = models.CharField(max_length=200, blank=True, help_text="In plain words: with breakfast")
    times = ArrayField(models.CharField(max_length=12, choices=TimeOfDay.choices), default=list, blank=True)
    prescriber = models.CharField(max_length=200, blank=True)
    start = models.DateField(null=True, blank=True)
    stop = models.DateField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=MedicationStatus.choices, default=MedicationStatus.ACTIVE
    )
    reconciliation = models.ForeignKey(
        "Reconciliation", on_delete=models.CASCADE, null=True, blank=True, related_name="lines"
    )
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["patient_id", "source", "name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=MedicationSource.values), name="medication_source_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=MedicationStatus.values), name="medication_status_valid"
            ),
            models.CheckConstraint(condition=~Q(name=""), name="medication_name_required"),
            models.CheckConstraint(
                condition=Q(start__isnull=True) | Q(stop__isnull=True) | Q(stop__gte=models.F("start")),
                name="medication_stop_after_start",
            ),
            models.CheckConstraint(
                condition=Q(source="reconciled", reconciliation__isnull=False)
                | (~Q(source="reconciled") & Q(reconciliation__isnull=True)),
                name="medication_reconciled_has_reconciliation",
            ),
        ]
        indexes = [models.Index(fields=["patient", "source", "status"], name="medication_patient_idx")]

    def __str__(self) -> str:
        return " ".join(p for p in (self.name, self.dose) if p)

    @property
    def drug_key(self) -> str:
        """The same drug on two lines: its RxNorm code, else its name's first word."""
        if self.rxnorm:
            return f"rxnorm:{self.rxnorm.strip()}"
        words = self.name.lower().split()
        return f"name:{words[0] if words else ''}"


class Decision(models.TextChoices):
    CONTINUE = "continue", "Continue"
    CHANGED = "changed", "Changed"
    STOPPED = "stopped", "Stopped"
    NEW = "new", "New"
    UNCLEAR = "unclear", "Unclear"


# decisions whose line goes on the reconciled list
KEPT_DECISIONS = frozenset({"continue", "changed", "new"})


class Reconciliation(models.Model):
    """One reconciliation: two or more source lists compared side by side, every line
    marked, the result signed. Each signed reconciliation is the next version of the
    patient's reconciled list."""

    patient = models.ForeignKey("patients.Patient", on_delete=models.CASCADE, related_name="reconciliations")
    transition = models.ForeignKey(
        Transition, on_delete=models.SET_NULL, null=True, blank=True, related_name="reconciliations"
    )
    sources = ArrayField(models.CharField(max_length=20))
    number = models.PositiveIntegerField(help_text="Version of the patient's reconciled list")
    signed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField(default=timezone.now)
    note = limited_text(TEXT_MAX_LENGTH, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["patient_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "number"], name="one_reconciliation_number"),
        ]

    def __str__(self) -> str:
        return f"Reconciled list v{self.number}"


class ReconciliationMark(models.Model):
    reconciliation = models.ForeignKey(Reconciliation, on_delete=models.CASCADE, related_name="marks")
    line = models.ForeignKey(MedicationLine, on_delete=models.PROTECT, related_name="marks")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["reconciliation_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reconciliation", "line"], name="one_mark_per_line"),
            models.CheckConstraint(condition=Q(decision__in=Decision.values), name="mark_decision_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.line_id}: {self.decision}"


class DiscrepancyKind(models.TextChoices):
    DUPLICATE = "duplicate", "Duplicate drug"
    STOPPED_AT_HOME = "stopped-at-home", "Stopped drug still on the home list"
    UNCLEAR = "unclear", "Unclear line"


class Discrepancy(models.Model):
    """What a reconciliation found, as a need on the plan with a pharmacy activity to
    resolve it; one per (patient, kind, drug) while its need is open."""

    reconciliation = models.ForeignKey(Reconciliation, on_delete=models.CASCADE, related_name="discrepancies")
    kind = models.CharField(max_length=20, choices=DiscrepancyKind.choices)
    drug_key = models.CharField(max_length=220)
    need = models.ForeignKey("careplans.Need", on_delete=models.PROTECT, related_name="+")
    activity = models.ForeignKey(
        "careplans.Activity", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reconciliation", "kind", "drug_key"], name="one_discrepancy_per_drug"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.drug_key}"


class ReconciliationPolicy(models.Model):
    """Who may reconcile and sign a medication list: pharmacists, and the disciplines an
    administrator adds here (one row)."""

    allowed_disciplines = models.ManyToManyField("careteam.Discipline", blank=True, related_name="+")

    class Meta:
        verbose_name_plural = "reconciliation policy"

    def __str__(self) -> str:
        return "Who may reconcile medications"
