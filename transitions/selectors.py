"""Reads of transitions and medications. Everything starts from the patient's access (one
patient) or from the restricted querysets of `careteam.permissions` (lists, dashboard);
related plan items are filtered through the access layer before a template sees them."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, F, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import TruncMonth
from django.utils import timezone, translation
from django.utils.translation import gettext

from careplans.models import ACTIVITY_OPEN_STATUSES, Activity
from careteam.conversations import conversations_for_patient
from careteam.models import Handoff
from careteam.permissions import PatientAccess, restrict, team_patients_for

from .models import (
    READMISSION_DAYS,
    TRANSITION_COUNTED,
    Debrief,
    HospitalPause,
    MedicationLine,
    MedicationSource,
    Reconciliation,
    TimeOfDay,
    Transition,
    TransitionKind,
    TransitionStep,
)


def transitions_for(access: PatientAccess) -> QuerySet:
    return (
        Transition.objects.filter(patient=access.patient)
        .select_related("recorded_by", "readmission_of")
        .annotate(has_debrief=Exists(Debrief.objects.filter(transition=OuterRef("pk"))))
    )


def recent_readmission(access: PatientAccess, *, now: dt.datetime | None = None) -> Transition | None:
    """The patient's readmission of the last READMISSION_DAYS days, if any (the flag)."""
    now = now or timezone.now()
    return (
        Transition.objects.filter(
            patient=access.patient,
            readmission_of__isnull=False,
            status__in=TRANSITION_COUNTED,
            admitted_at__gte=now - dt.timedelta(days=READMISSION_DAYS),
        )
        .order_by("-admitted_at")
        .first()
    )


def readmitted_patients(user, *, now: dt.datetime | None = None) -> QuerySet:
    """Ids of the user's team patients readmitted in the last READMISSION_DAYS days, as a
    subquery-backed queryset (the worklist flags its page rows with it in one query)."""
    now = now or timezone.now()
    return (
        Transition.objects.filter(
            patient__in=team_patients_for(user).values("pk"),
            readmission_of__isnull=False,
            status__in=TRANSITION_COUNTED,
            admitted_at__gte=now - dt.timedelta(days=READMISSION_DAYS),
        )
        .values_list("patient_id", flat=True)
        .distinct()
    )


@dataclass
class StepRow:
    step: TransitionStep
    activity: Activity | None  # None: hidden from this viewer
    handoffs: list = field(default_factory=list)
    conversations: list = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.activity is not None and self.activity.status == "completed"

    @property
    def overdue(self) -> bool:
        return self.activity is not None and self.activity.is_overdue()


def step_rows(access: PatientAccess, transition: Transition) -> list[StepRow]:
    """The checklist with each step's activity (as the viewer may see it) and the handoffs
    and conversations about it (who told whom), as the viewer may see them: a fixed
    number of queries whatever the number of steps."""
    steps = list(
        TransitionStep.objects.filter(transition=transition).select_related(
            "activity", "activity__owner_discipline", "activity__assigned_to"
        )
    )
    handoffs = (
        restrict(
            Handoff.objects.filter(
                activity_id__in=Subquery(
                    TransitionStep.objects.filter(transition=transition).values("activity_id")
                )
            ),
            access.user,
        )
        .select_related("from_user", "to_user", "to_discipline")
        .order_by("created_at")
    )
    by_activity: dict[int | None, list] = {}
    for handoff in handoffs:
        by_activity.setdefault(handoff.activity_id, []).append(handoff)
    talks: dict[int, list] = {}
    step_activities = Subquery(TransitionStep.objects.filter(transition=transition).values("activity_id"))
    for conversation in conversations_for_patient(access).filter(activity_id__in=step_activities):
        talks.setdefault(conversation.activity_id, []).append(conversation)
    rows = []
    for step in steps:
        activity = step.activity if access.can_see(step.activity) else None
        rows.append(
            StepRow(
                step,
                activity,
                by_activity.get(step.activity_id, []) if activity else [],
                talks.get(step.activity_id, []) if activity else [],
            )
        )
    return rows


def pausable_activities(access: PatientAccess, plan) -> list[tuple[Activity, bool]]:
    """The active plan's open activities the viewer may see, each with its "not in
    hospital" mark."""
    if plan is None:
        return []
    qs = (
        Activity.objects.filter(care_plan=plan, status__in=ACTIVITY_OPEN_STATUSES)
        .filter(access.sensitivity_q())
        .annotate(not_in_hospital=Exists(HospitalPause.objects.filter(activity=OuterRef("pk"))))
        .select_related("owner_discipline")
        .order_by("due_date", "pk")
    )
    return [(a, a.not_in_hospital) for a in qs]


# ---------------------------------------------------------------------------
# Medications
# ---------------------------------------------------------------------------
def source_lines(access: PatientAccess, sources=None) -> QuerySet:
    qs = MedicationLine.objects.filter(patient=access.patient).exclude(source=MedicationSource.RECONCILED)
    if sources:
        qs = qs.filter(source__in=sources)
    return qs.select_related("recorded_by").order_by("source", "name", "pk")


def latest_reconciliation(access: PatientAccess) -> Reconciliation | None:
    return latest_reconciliation_of(access.patient)


def latest_reconciliation_of(patient) -> Reconciliation | None:
    """The patient's current reconciled list (its newest signed version), lines in order.
    Callers have checked access to the patient (a team member's PatientAccess, or the
    portal's PortalAccess)."""
    return (
        Reconciliation.objects.filter(patient=patient)
        .select_related("signed_by")
        .prefetch_related(Prefetch("lines", queryset=MedicationLine.objects.order_by("name", "pk")))
        .order_by("-number")
        .first()
    )


def reconciliations(access: PatientAccess) -> list[Reconciliation]:
    return list(
        Reconciliation.objects.filter(patient=access.patient)
        .select_related("signed_by")
        .prefetch_related(Prefetch("lines", queryset=MedicationLine.objects.order_by("name", "pk")))
        .annotate(n_discrepancies=Count("discrepancies", distinct=True))
        .order_by("-number")
    )


DIFF_FIELDS = ("dose", "route", "timing", "times", "prescriber", "start", "stop")


def reconciliation_diff(older: Reconciliation | None, newer: Reconciliation) -> list[dict]:
    """What the newer reconciled list changed: added, removed and changed medicines (by
    drug), with the fields that differ."""
    before = {line.drug_key: line for line in (older.lines.all() if older else [])}
    after = {line.drug_key: line for line in newer.lines.all()}
    rows: list[dict[str, Any]] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None:
            rows.append({"change": "added", "line": new, "fields": []})
        elif new is None:
            rows.append({"change": "removed", "line": old, "fields": []})
        else:
            changed = [
                (n, getattr(old, n), getattr(new, n))
                for n in DIFF_FIELDS
                if getattr(old, n) != getattr(new, n)
            ]
            if changed:
                rows.append({"change": "changed", "line": new, "fields": changed})
    return rows


def compare_rows(lines: list[MedicationLine], sources: list[str]) -> list[dict]:
    """Source lines side by side: one row per drug, one cell (a list of lines) per source."""
    rows: OrderedDict[str, dict] = OrderedDict()
    for line in sorted(lines, key=lambda x: (x.name.lower(), x.pk)):
        row = rows.setdefault(line.drug_key, {"name": line.name, "cells": {s: [] for s in sources}})
        if line.source in row["cells"]:
            row["cells"][line.source].append(line)
    return [{"name": r["name"], "cells": [r["cells"][s] for s in sources]} for r in rows.values()]


SCHEDULE_ORDER = [
    TimeOfDay.MORNING,
    TimeOfDay.MIDDAY,
    TimeOfDay.EVENING,
    TimeOfDay.BEDTIME,
    TimeOfDay.AS_NEEDED,
]


@dataclass(frozen=True)
class ScheduleLine:
    """What the schedule shows of a reconciled line: the medicine, its dose and its timing
    in plain words; never the prescriber, the RxNorm code or the reconciliation's notes."""

    name: str
    dose: str
    timing: str


@dataclass
class MedicationSchedule:
    """The plain-language schedule of one patient: the chart's print and the portal's."""

    groups: list[tuple[str, list[ScheduleLine]]]
    checked_by: str = ""  # who signed the reconciled list it comes from
    checked_at: dt.datetime | None = None

    @property
    def exists(self) -> bool:
        return self.checked_at is not None


def schedule(
    reconciliation: Reconciliation | None, *, on: dt.date | None = None
) -> list[tuple[str, list[ScheduleLine]]]:
    """The reconciled list by time of day (label, lines), for the patient and family; a
    line without a time of day goes under "Other times" (its timing in plain words).
    Only active lines not stopped before `on` (today)."""
    if reconciliation is None:
        return []
    on = on or timezone.localdate()
    groups: dict[str, list[ScheduleLine]] = {t.value: [] for t in SCHEDULE_ORDER}
    other = []
    for line in reconciliation.lines.all():
        if line.status != "active" or (line.stop and line.stop < on):
            continue
        row = ScheduleLine(name=line.name, dose=line.dose, timing=line.timing)
        if not line.times:
            other.append(row)
        for t in line.times:
            groups.setdefault(t, []).append(row)
    out = [(str(TimeOfDay(t).label), groups[t.value]) for t in SCHEDULE_ORDER if groups.get(t.value)]
    if other:
        out.append((gettext("Other times"), other))
    return out


def medication_schedule(patient, *, language: str, on: dt.date | None = None) -> MedicationSchedule:
    """The patient's schedule from their current reconciled list, the fixed words (times
    of day) in `language`. Two queries whatever the number of lines."""
    reconciliation = latest_reconciliation_of(patient)
    with translation.override(language):
        groups = schedule(reconciliation, on=on)
    if reconciliation is None:
        return MedicationSchedule(groups=groups)
    return MedicationSchedule(
        groups=groups,
        checked_by=reconciliation.signed_by.display_name,
        checked_at=reconciliation.signed_at,
    )


# ---------------------------------------------------------------------------
# Dashboard (the user's own team patients only: never anyone else's)
# ---------------------------------------------------------------------------
@dataclass
class PeriodRow:
    month: dt.date
    discharges: int = 0
    readmitted: int = 0
    follow_up_hours: list = field(default_factory=list)
    all_on_time: int = 0

    @property
    def readmission_rate(self) -> float | None:
        return self.readmitted / self.discharges if self.discharges else None

    @property
    def median_follow_up_hours(self) -> float | None:
        return statistics.median(self.follow_up_hours) if self.follow_up_hours else None

    @property
    def on_time_share(self) -> float | None:
        return self.all_on_time / self.discharges if self.discharges else None


def _completed_at(activity_ref: str) -> Subquery:
    """When the activity was first saved as completed (its history)."""
    hist = Activity.history.model
    return Subquery(
        hist.objects.filter(id=OuterRef(activity_ref), status="completed")
        .order_by()
        .values("id")
        .annotate(at=Min("history_date"))
        .values("at")[:1]
    )


def dashboard(user, *, days: int = 90, now: dt.datetime | None = None) -> tuple[list[PeriodRow], PeriodRow]:
    """Per month of the period and in total: discharges, readmissions within 30 days,
    the time from discharge to the follow-up call, and the share of discharges whose every
    checklist step was done by its due time. One query."""
    now = now or timezone.now()
    start = now - dt.timedelta(days=days)
    readmitted = Transition.objects.filter(readmission_of=OuterRef("pk"), status__in=TRANSITION_COUNTED)
    steps = TransitionStep.objects.filter(transition=OuterRef("pk"))
    late_or_open = steps.annotate(done_at=_completed_at("activity_id")).filter(
        Q(done_at__isnull=True) | Q(done_at__date__gt=F("activity__due_date"))
    )
    follow_up = (
        steps.filter(key="follow-up-call")
        .annotate(done_at=_completed_at("activity_id"))
        .values("done_at")[:1]
    )
    rows = (
        Transition.objects.filter(
            patient__in=team_patients_for(user).values("pk"),
            kind=TransitionKind.DISCHARGE,
            status__in=TRANSITION_COUNTED,
            occurred_at__gte=start,
            occurred_at__lte=now,
        )
        .annotate(
            month=TruncMonth("occurred_at"),
            was_readmitted=Exists(readmitted),
            has_steps=Exists(steps),
            any_late=Exists(late_or_open),
            follow_up_at=Subquery(follow_up),
        )
        .values("month", "occurred_at", "was_readmitted", "has_steps", "any_late", "follow_up_at")
        .order_by("occurred_at")
    )
    months: OrderedDict[dt.date, PeriodRow] = OrderedDict()
    total = PeriodRow(month=timezone.localdate(start))
    for row in rows:
        month = row["month"].date() if hasattr(row["month"], "date") else row["month"]
        bucket = months.setdefault(month, PeriodRow(month=month))
        for target in (bucket, total):
            target.discharges += 1
            target.readmitted += int(row["was_readmitted"])
            target.all_on_time += int(row["has_steps"] and not row["any_late"])
            if row["follow_up_at"]:
                target.follow_up_hours.append(
                    (row["follow_up_at"] - row["occurred_at"]).total_seconds() / 3600
                )
    return list(months.values()), total
