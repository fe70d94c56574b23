"""Writes of the patients app: enrolment (with the duplicate check) and the enrolling
clinician's first role on the new team."""

from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from careteam import services as team_services
from careteam.audit import audit
from careteam.models import AuditAction, Discipline, TeamMembership, TeamRole, User

from .models import Patient

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
