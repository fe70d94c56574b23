"""Writes of the patients app: enrolment (with the duplicate check) and the enrolling
clinician's first role on the new team."""

from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from careteam import services as team_services
from careteam.audit import audit
from careteam.concurrency import apply_changes, lock_for_update
from careteam.models import AuditAction, Discipline, TeamMembership, TeamRole, User

from .models import DEMOGRAPHIC_FIELDS, Caregiver, Patient

CASE_MANAGEMENT = "case-management"


def normalise_mrn(mrn: str) -> str:
    return "".join((mrn or "").split()).upper()


def _generated_mrn() -> str:
    return f"CT-{secrets.token_hex(4).upper()}"


def enrolment_role(user: User) -> tuple[Discipline, str]:
    """The enrolling clinician's role: case manager if they practise case management,
    otherwise plan lead in their first discipline (a new team has nobody else)."""
    disciplines = list(user.disciplines.order_by("name"))
    if not disciplines:
        raise PermissionDenied("Only clinicians can enrol patients.")
    for d in disciplines:
        if d.code == CASE_MANAGEMENT:
            return d, TeamRole.CASE_MANAGER
    return disciplines[0], TeamRole.LEAD


@transaction.atomic
def patient_enrol(*, by: User, data: dict, request=None) -> tuple[Patient, TeamMembership]:
    """Create the patient and put the enrolling clinician on the team, in one transaction
    (a refused MRN or role leaves nothing behind)."""
    discipline, role = enrolment_role(by)
    fields = dict(data)
    mrn = normalise_mrn(fields.pop("mrn", ""))
    generated = not mrn
    for _attempt in range(5):
        candidate = _generated_mrn() if generated else mrn
        if Patient.objects.filter(mrn__iexact=candidate).exists():
            if generated:
                continue
            raise ValidationError({"mrn": "A patient with this MRN already exists."})
        patient = Patient(mrn=candidate, **fields)
        patient.full_clean(exclude=["mrn"])
        try:
            with transaction.atomic():
                patient.save()
        except IntegrityError as exc:  # a concurrent enrolment took the MRN
            if generated:
                continue
            raise ValidationError({"mrn": "A patient with this MRN already exists."}) from exc
        break
    else:
        raise ValidationError({"mrn": "Could not generate a free MRN; enter one."})
    membership = team_services.membership_add(
        patient=patient, user=by, discipline=discipline, role=role, by=by
    )
    audit(
        user=by, action=AuditAction.CREATE, obj=patient, patient=patient, request=request, detail="enrolled"
    )
    return patient, membership


def _require_member(access) -> None:
    """Demographics and caregivers: any current team member; emergency access reads only."""
    if access.read_only or not access.on_team:
        raise PermissionDenied(
            "Only the patient's care team can change the record (emergency access is read-only)."
        )


@transaction.atomic
def patient_update(*, by: User, access, data: dict, expected_version: int | None, request=None) -> Patient:
    """Change demographics (never the MRN) from the version the caller read; a stale
    version raises StaleVersionError and writes nothing. History via simple_history."""
    _require_member(access)
    patient = lock_for_update(access.patient, expected_version)
    changes = {k: v for k, v in data.items() if k in DEMOGRAPHIC_FIELDS}
    changed = apply_changes(patient, changes)
    if not changed:
        return patient
    patient.full_clean(exclude=["mrn"])
    patient.version += 1
    patient.save()
    patient.refresh_from_db()
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=patient,
        patient=patient,
        request=request,
        detail="demographics: " + ", ".join(sorted(changed)),
    )
    access.patient = patient
    return patient


def _one_primary(caregiver: Caregiver) -> None:
    if caregiver.is_primary:
        Caregiver.objects.filter(patient_id=caregiver.patient_id, is_primary=True).exclude(
            pk=caregiver.pk
        ).update(is_primary=False)


@transaction.atomic
def caregiver_add(*, by: User, access, data: dict, request=None) -> Caregiver:
    _require_member(access)
    caregiver = Caregiver(patient=access.patient, **data)
    caregiver.full_clean(exclude=["patient"])
    if caregiver.is_primary:
        Caregiver.objects.filter(patient=access.patient, is_primary=True).update(is_primary=False)
    caregiver.save()
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=caregiver,
        patient=access.patient,
        request=request,
        detail="caregiver added",
    )
    return caregiver


def _locked_caregiver(access, caregiver: Caregiver, expected_version: int | None) -> Caregiver:
    """The caregiver row locked for an edit by a team member, at the version they saw."""
    _require_member(access)
    if caregiver.patient_id != access.patient.pk:
        raise PermissionDenied("No such caregiver.")
    return lock_for_update(caregiver, expected_version)


@transaction.atomic
def caregiver_update(
    *, by: User, access, caregiver: Caregiver, data: dict, expected_version: int | None, request=None
) -> Caregiver:
    caregiver = _locked_caregiver(access, caregiver, expected_version)
    if caregiver.end_date is not None:
        raise ValidationError("This caregiver has ended; add them again instead.")
    changed = apply_changes(caregiver, data)
    if not changed:
        return caregiver
    caregiver.full_clean(exclude=["patient"])
    _one_primary(caregiver)
    caregiver.version += 1
    caregiver.save()
    caregiver.refresh_from_db()
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=caregiver,
        patient=access.patient,
        request=request,
        detail="caregiver: " + ", ".join(sorted(changed)),
    )
    return caregiver


@transaction.atomic
def caregiver_end(
    *, by: User, access, caregiver: Caregiver, expected_version: int | None, request=None
) -> Caregiver:
    """End a caregiver (kept in the history, gone from the chart); no longer primary."""
    caregiver = _locked_caregiver(access, caregiver, expected_version)
    if caregiver.end_date is not None:
        return caregiver
    caregiver.end_date = timezone.localdate()
    caregiver.is_primary = False
    caregiver.version += 1
    caregiver.save()
    caregiver.refresh_from_db()
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=caregiver,
        patient=access.patient,
        request=request,
        detail="caregiver ended",
    )
    return caregiver
