"""Writes of care transitions and medications. Steps, needs and follow-up actions are
plan items written through the care-plan services (history, audit and the owner rules
come with them); everything else is saved here, audited, all or nothing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from careplans import services as plan_services
from careplans.models import ACTIVITY_OPEN_STATUSES, Activity, CarePlan, Need
from careteam.audit import audit
from careteam.concurrency import StaleVersionError, lock_for_update, save_versioned
from careteam.history import history_by
from careteam.models import AuditAction, Discipline, NotificationKind, TeamMembership, TeamRole, User
from careteam.notifications import notify
from careteam.permissions import PatientAccess, ReadOnlyAccess, patient_access, team_members_who_may_see
from patients.models import Patient

from .models import (
    KEPT_DECISIONS,
    READMISSION_DAYS,
    SOURCE_LISTS,
    TRANSITION_COUNTED,
    ChecklistStepDefault,
    Debrief,
    Decision,
    Discrepancy,
    DiscrepancyKind,
    EncounterStatus,
    HospitalPause,
    MedicationLine,
    MedicationSource,
    PausedActivity,
    Reconciliation,
    ReconciliationMark,
    ReconciliationPolicy,
    Transition,
    TransitionKind,
    TransitionSource,
    TransitionStep,
)

# ---------------------------------------------------------------------------
# Defaults (data: the admin edits them; these only fill an empty table)
# ---------------------------------------------------------------------------
DEFAULT_STEPS: list[dict[str, Any]] = [
    dict(
        key="discharge-summary",
        title="Discharge summary received",
        disciplines=["case-management"],
        due_hours=0,
        communicates="The hospital sends the discharge summary to the case manager, who shares it with the team.",
        match_words=["discharge summary"],
    ),
    dict(
        key="medication-reconciliation",
        title="Medication reconciliation",
        disciplines=["pharmacy"],
        due_hours=24,
        communicates="The pharmacist tells the team, the patient and the family what changed in the medicines.",
        match_words=["reconcil"],
    ),
    dict(
        key="follow-up-call",
        title="Follow-up call to the patient",
        disciplines=["case-management", "nursing"],
        due_hours=48,
        communicates="The case manager (or nurse) calls the patient and family and tells the team what they heard.",
        match_words=["follow-up call", "follow up call", "phone call"],
    ),
    dict(
        key="follow-up-appointment",
        title="Follow-up appointment booked within 7 days",
        disciplines=["case-management", "nursing"],
        due_hours=24 * 7,
        communicates="The case manager tells the patient, the family and the physician when the appointment is.",
        match_words=["follow-up appointment", "follow up appointment"],
    ),
    dict(
        key="home-safety",
        title="Home safety and equipment",
        disciplines=["physical-therapy", "occupational-therapy"],
        due_hours=72,
        communicates="The therapist tells the case manager and the family what equipment is needed and when it arrives.",
        match_words=["home safety", "equipment", "rail", "walker"],
    ),
    dict(
        key="caregiver-teaching",
        title="Caregiver teaching",
        disciplines=["nursing", "home-health"],
        due_hours=48,
        communicates="The nurse teaches the caregiver and tells the team what was taught.",
        match_words=["caregiver teaching", "teach"],
    ),
    dict(
        key="transport",
        title="Transport to the first appointment",
        disciplines=["social-work", "case-management"],
        due_hours=24 * 5,
        communicates="The social worker tells the patient and family how they get to the first appointment.",
        match_words=["transport", "ride"],
    ),
]


def ensure_defaults() -> None:
    """The default checklist steps and reconciliation policy on a fresh installation.
    Idempotent; once rows exist the administrator's edits are never overwritten."""
    if not ChecklistStepDefault.objects.exists():
        for position, step in enumerate(DEFAULT_STEPS):
            ChecklistStepDefault.objects.get_or_create(
                key=step["key"],
                defaults={**{k: v for k, v in step.items() if k != "key"}, "position": position},
            )
    policy, created = ReconciliationPolicy.objects.get_or_create(pk=1)
    if created:
        policy.allowed_disciplines.set(Discipline.objects.filter(code="pharmacy"))


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _coordinator_access(access: PatientAccess) -> PatientAccess:
    """Whose authority files the team's checklist, needs and follow-up actions for every
    discipline: the patient's case manager, else the plan lead, else the caller (whose own
    owner rules then apply)."""
    if access.can_edit_any:
        return access
    for role in (TeamRole.CASE_MANAGER, TeamRole.LEAD):
        membership = (
            TeamMembership.objects.current()
            .filter(patient=access.patient, role=role, user__is_active=True)
            .select_related("user")
            .first()
        )
        if membership is not None:
            coordinator = patient_access(membership.user, access.patient)
            if coordinator.can_edit_any:
                return coordinator
    return access


def _active_plan(patient: Patient) -> CarePlan | None:
    return CarePlan.objects.filter(patient=patient, status="active").first()


def _owner_for(patient: Patient, codes: list[str]) -> tuple[Discipline, User | None]:
    """The first of `codes` someone on the team practises (else the first code), and its
    one member when there is exactly one (else its queue)."""
    members = list(
        TeamMembership.objects.current().filter(patient=patient).select_related("user", "discipline")
    )
    disciplines = {d.code: d for d in Discipline.objects.filter(code__in=codes)}
    for code in codes:
        of_discipline = {m.user_id: m.user for m in members if m.discipline.code == code}
        if of_discipline and code in disciplines:
            users = list(of_discipline.values())
            return disciplines[code], users[0] if len(users) == 1 else None
    for code in codes:
        if code in disciplines:
            return disciplines[code], None
    raise ValidationError(f"No discipline {codes} is known.")


def _due_date(moment: dt.datetime) -> dt.date:
    return timezone.localdate(moment)


# ---------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------
@dataclass
class TransitionResult:
    transition: Transition
    created: bool
    steps_added: int = 0
    steps_linked: int = 0
    paused: int = 0
    resumed: int = 0


def _check_moments(kind: str, occurred_at: dt.datetime | None, admitted_at) -> dt.datetime:
    """The moment it happened, checked (given; a discharge after its admission; nothing
    but an admission in the future)."""
    if occurred_at is None:
        raise ValidationError({"occurred_at": "Say when it happened."})
    if kind == TransitionKind.DISCHARGE and admitted_at is not None and occurred_at < admitted_at:
        raise ValidationError({"occurred_at": "The discharge cannot be before the admission."})
    if occurred_at > timezone.now() + dt.timedelta(days=1) and kind != TransitionKind.ADMISSION:
        raise ValidationError({"occurred_at": "A discharge or transfer is recorded once it has happened."})
    return occurred_at


def _previous_discharge(patient_id: int, before: dt.datetime, exclude_pk: int | None) -> Transition | None:
    """The discharge a stay starting at `before` readmits: the latest counted one in the
    READMISSION_DAYS before it."""
    qs = Transition.objects.filter(
        patient_id=patient_id,
        kind=TransitionKind.DISCHARGE,
        status__in=TRANSITION_COUNTED,
        occurred_at__lt=before,
        occurred_at__gte=before - dt.timedelta(days=READMISSION_DAYS),
    )
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    return qs.order_by("-occurred_at").first()


@transaction.atomic
def transition_record(
    *,
    access: PatientAccess,
    by: User,
    kind: str,
    occurred_at: dt.datetime | None,
    admitted_at: dt.datetime | None = None,
    status: str | None = None,
    from_location: str = "",
    to_location: str = "",
    reason: str = "",
    disposition: str = "",
    encounter_class: str = "IMP",
    source: str = TransitionSource.TEAM,
    identifier_system: str = "",
    identifier: str = "",
    request=None,
) -> TransitionResult:
    """Record an admission, discharge or transfer. The same encounter (identifier) sent
    again updates its one row; a discharge entered by the team closes the open admission
    of the patient if there is one. An admission of a patient with an active plan pauses
    the activities marked "not in hospital" and tells the team; a discharge resumes them
    and starts its checklist (once: one step per key)."""
    access.require_edit()
    if kind not in TransitionKind.values:
        raise ValidationError({"kind": "Choose admission, discharge or transfer."})
    if source not in TransitionSource.values:
        raise ValidationError({"source": "Unknown source."})
    if status is None:
        status = EncounterStatus.IN_PROGRESS if kind == TransitionKind.ADMISSION else EncounterStatus.FINISHED
    if status not in EncounterStatus.values:
        raise ValidationError({"status": "Unknown encounter status."})
    if kind == TransitionKind.ADMISSION and admitted_at is None:
        admitted_at = occurred_at
    _check_moments(kind, occurred_at, admitted_at)
    patient = access.patient
    existing = None
    identifier = (identifier or "").strip()
    if identifier:
        existing = (
            Transition.objects.select_for_update()
            .filter(identifier_system=identifier_system, identifier=identifier)
            .first()
        )
        if existing is not None and existing.patient_id != patient.pk:
            raise ValidationError(
                {"identifier": "This encounter identifier is recorded for another patient."}
            )
    elif kind == TransitionKind.DISCHARGE and source == TransitionSource.TEAM:
        existing = (
            Transition.objects.select_for_update()
            .filter(patient=patient, kind=TransitionKind.ADMISSION, status=EncounterStatus.IN_PROGRESS)
            .filter(Q(admitted_at__isnull=True) | Q(admitted_at__lte=occurred_at))
            .order_by("-occurred_at")
            .first()
        )
    was_admission = existing is not None and existing.kind == TransitionKind.ADMISSION
    transition = existing or Transition(patient=patient, recorded_by=by, source=source)
    if (
        existing is not None
        and existing.kind == TransitionKind.DISCHARGE
        and kind == TransitionKind.ADMISSION
    ):
        raise ValidationError(
            {"kind": "This encounter was discharged already; an admission cannot follow it."}
        )
    if existing is not None and admitted_at is None:
        admitted_at = existing.admitted_at
    occurred_at = _check_moments(kind, occurred_at, admitted_at)
    transition.kind = kind
    transition.status = status
    transition.encounter_class = (encounter_class or "IMP")[:20]
    transition.admitted_at = admitted_at
    transition.discharged_at = occurred_at if kind == TransitionKind.DISCHARGE else None
    transition.occurred_at = occurred_at
    transition.from_location = (from_location or (existing.from_location if existing else ""))[:200]
    transition.to_location = (to_location or (existing.to_location if existing else ""))[:200]
    transition.reason = (reason or (existing.reason if existing else ""))[:300]
    transition.disposition = (disposition or "")[:40]
    transition.identifier_system = identifier_system[:200]
    transition.identifier = identifier[:200]
    if kind in (TransitionKind.ADMISSION, TransitionKind.DISCHARGE) and admitted_at is not None:
        transition.readmission_of = _previous_discharge(patient.pk, admitted_at, transition.pk)
    history_by(transition, by)
    try:
        with transaction.atomic():
            if existing is not None:  # an update of the encounter: its version counts up
                save_versioned(transition, expected_version=None)
            else:
                transition.save()
    except IntegrityError as exc:
        raise ValidationError(
            {"identifier": "This encounter was recorded at the same moment; send it again."}
        ) from exc
    audit(
        user=by,
        action=AuditAction.UPDATE if existing else AuditAction.CREATE,
        obj=transition,
        patient=patient,
        request=request,
        detail=f"{transition.kind} ({transition.source})",
    )
    result = TransitionResult(transition=transition, created=existing is None)
    if kind == TransitionKind.ADMISSION and status == EncounterStatus.IN_PROGRESS:
        result.paused = _admission_effects(access, by, transition, request)
    if kind == TransitionKind.DISCHARGE and status == EncounterStatus.FINISHED:
        result.resumed = _resume_paused(access, by, patient, request)
        result.steps_added, result.steps_linked = checklist_start(
            access=access, by=by, transition=transition, request=request
        )
    elif was_admission and kind != TransitionKind.ADMISSION:
        result.resumed = _resume_paused(access, by, patient, request)
    return result


def _admission_effects(access: PatientAccess, by: User, transition: Transition, request) -> int:
    """Tell the team (once per admission and member) and hold the activities marked as
    impossible in hospital."""
    plan = _active_plan(access.patient)
    if plan is None:
        return 0
    where = f" to {transition.to_location}" if transition.to_location else ""
    for member in team_members_who_may_see(access.patient.pk).exclude(pk=by.pk):
        notify(
            recipient=member,
            kind=NotificationKind.TRANSITION_ADMITTED,
            obj=transition,
            patient_id=access.patient.pk,
            due_moment=transition.admitted_at or transition.occurred_at,
            title=f"Admitted{where} ({access.patient.family_name}, {access.patient.given_name})",
            url=f"/transitions/{transition.pk}/",
        )
    coordinator = _coordinator_access(access)
    paused = 0
    activities = Activity.objects.filter(
        care_plan=plan,
        status__in=("not-started", "scheduled", "in-progress"),
        pk__in=HospitalPause.objects.values("activity_id"),
    ).order_by("pk")
    for activity in activities:
        row, created = PausedActivity.objects.get_or_create(
            transition=transition, activity=activity, defaults={"previous_status": activity.status}
        )
        if not created:
            continue
        current = activity
        if current.status == "not-started":
            current = plan_services.item_update(
                access=coordinator,
                item=current,
                by=by,
                changes={"status": "scheduled"},
                expected_version=None,
                request=request,
                change_reason="Patient admitted to hospital",
            )
        plan_services.item_update(
            access=coordinator,
            item=current,
            by=by,
            changes={"status": "on-hold", "status_reason": "Patient in hospital"},
            expected_version=None,
            request=request,
            change_reason="Patient admitted to hospital",
        )
        paused += 1
    return paused


def _resume_paused(access: PatientAccess, by: User, patient: Patient, request) -> int:
    """Back to what they were (an activity that was not started comes back scheduled),
    unless someone changed them while the patient was in hospital."""
    coordinator = _coordinator_access(access)
    resumed = 0
    rows = (
        PausedActivity.objects.select_for_update()
        .filter(transition__patient=patient, resumed_at__isnull=True)
        .select_related("activity")
    )
    for row in rows:
        activity = row.activity
        if activity.status == "on-hold":
            back = "scheduled" if row.previous_status == "not-started" else row.previous_status
            plan_services.item_update(
                access=coordinator,
                item=activity,
                by=by,
                changes={"status": back, "status_reason": ""},
                expected_version=None,
                request=request,
                change_reason="Patient discharged from hospital",
            )
            resumed += 1
        row.resumed_at = timezone.now()
        row.save(update_fields=["resumed_at"])
    return resumed


def checklist_start(
    *, access: PatientAccess, by: User, transition: Transition, request=None
) -> tuple[int, int]:
    """The discharge's checklist on the active plan: one step per active default (a
    unique key per transition), each linked to an open activity that covers it or a new
    activity owned by its discipline, due relative to the discharge. Returns (added,
    linked). Running it again adds nothing."""
    ensure_defaults()
    plan = _active_plan(transition.patient)
    if plan is None:
        return 0, 0
    coordinator = _coordinator_access(access)
    existing = set(TransitionStep.objects.filter(transition=transition).values_list("key", flat=True))
    taken = set(
        TransitionStep.objects.filter(transition__patient=transition.patient).values_list(
            "activity_id", flat=True
        )
    )
    open_activities = list(
        Activity.objects.filter(care_plan=plan, status__in=ACTIVITY_OPEN_STATUSES, sensitivity__isnull=True)
        .exclude(
            pk__in=TransitionStep.objects.filter(transition__patient=transition.patient).values("activity_id")
        )
        .order_by("pk")
    )
    added = linked = 0
    for position, step in enumerate(ChecklistStepDefault.objects.filter(active=True)):
        if step.key in existing:
            continue
        due_at = transition.occurred_at + dt.timedelta(hours=step.due_hours)
        cover = next(
            (
                a
                for a in open_activities
                if a.pk not in taken and any(w.lower() in a.title.lower() for w in step.match_words if w)
            ),
            None,
        )
        is_linked = cover is not None
        if cover is None:
            discipline, assignee = _owner_for(transition.patient, step.disciplines)
            try:
                cover = plan_services.activity_create(
                    access=coordinator,
                    plan=plan,
                    by=by,
                    request=request,
                    title=step.title[:200],
                    description=f"Discharge checklist ({transition.occurred_at:%d %b %Y}). {step.communicates}".strip(),
                    owner_discipline=discipline,
                    assigned_to=assignee,
                    due_date=_due_date(due_at),
                )
            except ValidationError:
                # no case manager or lead to file another discipline's step, and the
                # caller may not: the step waits for the next time the discharge is
                # recorded or sent (the other steps are kept)
                continue
            cover.history.filter(history_type="+").update(history_change_reason="Discharge checklist")
            added += 1
        else:
            linked += 1
        taken.add(cover.pk)
        TransitionStep.objects.create(
            transition=transition,
            key=step.key,
            title=step.title,
            activity=cover,
            linked_existing=is_linked,
            due_at=due_at,
            communicates=step.communicates,
            position=position,
        )
    return added, linked


@transaction.atomic
def step_done(
    *, access: PatientAccess, by: User, activity: Activity, expected_version: int | None, request=None
) -> Activity:
    """Mark a step (any activity) done: through in progress to completed, one save each,
    from the version the page showed."""
    access.require_edit(activity)
    if expected_version is None:
        raise StaleVersionError(activity, None)
    fresh = lock_for_update(activity, expected_version)
    if fresh.status == "completed":
        return fresh
    if fresh.status not in ("not-started", "scheduled", "in-progress", "on-hold"):
        raise ValidationError(
            {"status": f"A {fresh.get_status_display().lower()} activity cannot be marked done."}
        )
    if fresh.status != "in-progress":
        fresh = plan_services.item_update(
            access=access,
            item=fresh,
            by=by,
            changes={"status": "in-progress"},
            expected_version=fresh.version,
            request=request,
        )
    return plan_services.item_update(
        access=access,
        item=fresh,
        by=by,
        changes={"status": "completed"},
        expected_version=fresh.version,
        request=request,
    )


@transaction.atomic
def hospital_pauses_set(*, access: PatientAccess, by: User, activities: list[Activity], request=None) -> int:
    """Which of the plan's open activities cannot happen in hospital (the others are
    unmarked). Only activities the caller may edit change."""
    access.require_edit()
    plan = _active_plan(access.patient)
    if plan is None:
        raise ValidationError("The patient has no active care plan.")
    chosen = {a.pk for a in activities}
    if any(a.care_plan_id != plan.pk for a in activities):
        raise ValidationError({"activities": "Choose activities of the active plan."})
    editable = [a for a in Activity.objects.filter(care_plan=plan) if access.can_edit_item(a)]
    changed = 0
    for activity in editable:
        if activity.pk in chosen:
            _, created = HospitalPause.objects.get_or_create(activity=activity, defaults={"marked_by": by})
            changed += created
        else:
            changed += HospitalPause.objects.filter(activity=activity).delete()[0]
    if changed:
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=plan,
            patient=access.patient,
            request=request,
            detail=f"activities not in hospital: {changed} changed",
        )
    return changed


@transaction.atomic
def debrief_record(
    *,
    access: PatientAccess,
    by: User,
    transition: Transition,
    went_well: str,
    tighten: str = "",
    actions: list[dict] | None = None,
    request=None,
) -> Debrief:
    """The team's debrief of a discharge, once; each follow-up action becomes an activity
    on the active plan (owned by the discipline named, due in 7 days)."""
    access.require_edit()
    if transition.patient_id != access.patient.pk:
        raise ValidationError("That transition belongs to another patient.")
    if not transition.is_discharge:
        raise ValidationError("A debrief follows a discharge.")
    Transition.objects.select_for_update().filter(pk=transition.pk).first()
    if Debrief.objects.filter(transition=transition).exists():
        raise ValidationError("The debrief of this discharge is recorded already.")
    went_well = (went_well or "").strip()
    if not went_well:
        raise ValidationError({"went_well": "Say what went well."})
    debrief = Debrief(
        transition=transition, went_well=went_well, tighten=(tighten or "").strip(), recorded_by=by
    )
    debrief.full_clean(exclude=["transition", "recorded_by"])
    history_by(debrief, by)
    debrief.save()
    created = []
    if actions:
        plan = _active_plan(access.patient)
        if plan is None:
            raise ValidationError(
                {"actions": "Follow-up actions go on an active care plan; the patient has none."}
            )
        coordinator = _coordinator_access(access)
        due = timezone.localdate() + dt.timedelta(days=7)
        for action in actions:
            discipline, assignee = _owner_for(access.patient, [action["discipline"]])
            created.append(
                plan_services.activity_create(
                    access=coordinator,
                    plan=plan,
                    by=by,
                    request=request,
                    title=action["title"][:200],
                    description=f"Follow-up action from the debrief of the discharge on {transition.occurred_at:%d %b %Y}.",
                    owner_discipline=discipline,
                    assigned_to=assignee,
                    due_date=due,
                )
            )
        debrief.actions.set(created)
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=debrief,
        patient=access.patient,
        request=request,
        detail=f"debrief, {len(created)} follow-up actions",
    )
    return debrief


# ---------------------------------------------------------------------------
# Medications
# ---------------------------------------------------------------------------
MEDICATION_FIELDS = ("name", "rxnorm", "dose", "route", "timing", "times", "prescriber", "start", "stop")


@transaction.atomic
def medication_add(
    *, access: PatientAccess, by: User, source: str, request=None, **fields: Any
) -> MedicationLine:
    """A line on one of the patient's source lists (the reconciled list is only written by
    a signed reconciliation)."""
    access.require_edit()
    if source not in SOURCE_LISTS:
        raise ValidationError(
            {"source": "Unknown source: choose discharge list, home, pharmacy or patient-reported."}
        )
    unknown = set(fields) - set(MEDICATION_FIELDS)
    if unknown:
        raise ValidationError({name: "This field cannot be set here." for name in sorted(unknown)})
    fields["name"] = (fields.get("name") or "").strip()
    line = MedicationLine(patient=access.patient, source=source, recorded_by=by, **fields)
    line.full_clean(exclude=["patient", "recorded_by", "reconciliation"], validate_constraints=False)
    if line.stop and line.start and line.stop < line.start:
        raise ValidationError({"stop": "A medicine cannot stop before it starts."})
    history_by(line, by)
    line.save()
    audit(user=by, action=AuditAction.CREATE, obj=line, patient=access.patient, request=request)
    return line


def may_reconcile(access: PatientAccess) -> bool:
    """A team member holding pharmacy or a discipline the reconciliation policy allows."""
    if not access.on_team:
        return False
    ensure_defaults()
    allowed = set(ReconciliationPolicy.objects.get(pk=1).allowed_disciplines.values_list("code", flat=True))
    allowed.add("pharmacy")
    return any(m.discipline.code in allowed for m in access.memberships)


@dataclass
class ReconcileResult:
    reconciliation: Reconciliation
    needs: list[Need]


@transaction.atomic
def reconciliation_sign(
    *,
    access: PatientAccess,
    by: User,
    sources: list[str],
    marks: dict[int, tuple[str, str]],
    transition: Transition | None = None,
    note: str = "",
    request=None,
) -> ReconcileResult:
    """Compare two or more source lists, every line marked continue, changed, stopped,
    new or unclear, and sign the result: the next version of the reconciled list (the kept
    lines). Discrepancies become needs on the active plan with a pharmacy activity each,
    once per (kind, drug) while such a need is open: a drug kept twice, a stopped drug on
    the home list that nothing replaces, an unclear line."""
    access.require_edit()
    if not may_reconcile(access):
        raise ReadOnlyAccess(
            "Only a pharmacist (or a discipline the reconciliation policy allows) can reconcile medications."
        )
    sources = list(dict.fromkeys(sources))
    if any(s not in SOURCE_LISTS for s in sources):
        raise ValidationError({"sources": "Unknown source list."})
    if len(sources) < 2:
        raise ValidationError({"sources": "Compare at least two lists."})
    if transition is not None and transition.patient_id != access.patient.pk:
        raise ValidationError({"transition": "That transition belongs to another patient."})
    Patient.objects.select_for_update().filter(pk=access.patient.pk).first()  # one number at a time
    lines = list(
        MedicationLine.objects.filter(patient=access.patient, source__in=sources, status="active").order_by(
            "pk"
        )
    )
    if not lines:
        raise ValidationError({"sources": "These lists have no lines to reconcile."})
    by_id = {line.pk: line for line in lines}
    stray = set(marks) - set(by_id)
    if stray:
        raise ValidationError({"marks": "Marks for lines that are not on the lists compared."})
    missing = [line for line in lines if line.pk not in marks]
    if missing:
        raise ValidationError({"marks": "Mark every line: " + ", ".join(str(m) for m in missing) + "."})
    bad = [pk for pk, (decision, _) in marks.items() if decision not in Decision.values]
    if bad:
        raise ValidationError({"marks": "Mark each line continue, changed, stopped, new or unclear."})
    number = (Reconciliation.objects.filter(patient=access.patient).aggregate(n=Max("number"))["n"] or 0) + 1
    rec = Reconciliation(
        patient=access.patient,
        transition=transition,
        sources=sources,
        number=number,
        signed_by=by,
        note=(note or "").strip(),
    )
    rec.full_clean(exclude=["patient", "transition", "signed_by"], validate_constraints=False)
    history_by(rec, by)
    rec.save()
    kept: dict[str, list[MedicationLine]] = {}
    for line in lines:
        decision, why = marks[line.pk]
        ReconciliationMark.objects.create(
            reconciliation=rec, line=line, decision=decision, note=(why or "")[:300]
        )
        if decision in KEPT_DECISIONS:
            copy = MedicationLine(
                patient=access.patient,
                source=MedicationSource.RECONCILED,
                reconciliation=rec,
                recorded_by=by,
                **{name: getattr(line, name) for name in MEDICATION_FIELDS},
            )
            history_by(copy, by)
            copy.save()
            kept.setdefault(line.drug_key, []).append(copy)
    found: list[tuple[str, str, str]] = []  # kind, drug key, description
    for key, copies in kept.items():
        if len(copies) > 1:
            found.append(
                (
                    DiscrepancyKind.DUPLICATE,
                    key,
                    f"Duplicate drug on the reconciled list: {', '.join(map(str, copies))}",
                )
            )
    stopped_keys = {by_id[pk].drug_key for pk, (d, _) in marks.items() if d == Decision.STOPPED}
    home_keys = {line.drug_key: line for line in lines if line.source == MedicationSource.HOME}
    for key in sorted(stopped_keys):
        if key in home_keys and key not in kept:
            found.append(
                (
                    DiscrepancyKind.STOPPED_AT_HOME,
                    key,
                    f"Stopped drug still on the home list: {home_keys[key]}",
                )
            )
    for line in lines:
        if marks[line.pk][0] == Decision.UNCLEAR:
            found.append(
                (
                    DiscrepancyKind.UNCLEAR,
                    f"{line.drug_key}#{line.pk}",
                    f"Unclear medication line ({line.get_source_display()}): {line}",
                )
            )
    needs = _discrepancy_needs(access, by, rec, found, request)
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=rec,
        patient=access.patient,
        request=request,
        detail=f"reconciled list v{number} signed, {sum(len(c) for c in kept.values())} lines, {len(needs)} needs",
    )
    _complete_reconciliation_step(access, by, transition, request)
    return ReconcileResult(reconciliation=rec, needs=needs)


def _discrepancy_needs(access, by, rec, found, request) -> list[Need]:
    if not found:
        return []
    plan = _active_plan(access.patient)
    if plan is None:
        raise ValidationError("Discrepancies go on an active care plan as needs; the patient has none.")
    coordinator = _coordinator_access(access)
    discipline, assignee = _owner_for(access.patient, ["pharmacy"])
    needs = []
    for kind, key, description in found:
        already = Discrepancy.objects.filter(
            reconciliation__patient=access.patient,
            kind=kind,
            drug_key=key,
            need__status__in=("active", "recurrence"),
        ).exists()
        if already:
            continue
        need = plan_services.need_create(
            access=coordinator,
            plan=plan,
            by=by,
            request=request,
            domain="medical",
            category="medication",
            description=description[:2000],
        )
        try:
            activity = plan_services.activity_create(
                access=coordinator,
                plan=plan,
                by=by,
                request=request,
                needs=[need],
                title=f"Resolve: {description}"[:200],
                owner_discipline=discipline,
                assigned_to=assignee,
                due_date=timezone.localdate() + dt.timedelta(days=1),
            )
        except ValidationError:
            activity = None  # nobody here may file a pharmacy activity: the need stands alone
        Discrepancy.objects.create(reconciliation=rec, kind=kind, drug_key=key, need=need, activity=activity)
        needs.append(need)
    return needs


def _complete_reconciliation_step(access, by, transition, request) -> None:
    """The signed reconciliation is the discharge's reconciliation step done."""
    steps = TransitionStep.objects.filter(key="medication-reconciliation", transition__patient=access.patient)
    steps = (
        steps.filter(transition=transition)
        if transition is not None
        else steps.filter(activity__status__in=ACTIVITY_OPEN_STATUSES)
    )
    for step in steps.select_related("activity"):
        activity = step.activity
        if activity.status in ACTIVITY_OPEN_STATUSES and access.can_edit_item(activity):
            step_done(
                access=access, by=by, activity=activity, expected_version=activity.version, request=request
            )
