"""Writes of the patients app: enrolment (with the duplicate check) and the enrolling
clinician's first role on the new team."""

from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from careteam import services as team_services
from careteam.audit import audit
from careteam.concurrency import apply_changes, lock_for_update, save_versioned
from careteam.models import AuditAction, Discipline, TeamMembership, TeamRole, User
from careteam.permissions import PatientAccess

from .models import (
    CONSENT_DOCUMENT_MAX_BYTES,
    CONSENT_DOCUMENT_TYPES,
    DEMOGRAPHIC_FIELDS,
    Acuity,
    Caregiver,
    Consent,
    ConsentDocument,
    ConsentScope,
    ConsentStatus,
    Patient,
    Programme,
    ProgrammeEnrolment,
    ProgrammeExitReason,
    normalise_mrn,
)

CASE_MANAGEMENT = "case-management"


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


class PossibleDuplicates(ValidationError):
    """Enrolment refused: the MRN is taken, or records like this one exist and the caller
    did not say it is none of them. `check` holds what the caller may be shown."""

    def __init__(self, check):
        self.check = check
        if check.mrn_taken:
            super().__init__(
                {"mrn": ValidationError("A patient with this MRN already exists.", code="duplicate_mrn")}
            )
        else:
            ids = ", ".join(str(p.pk) for p in check.visible)
            super().__init__(
                {
                    "not_a_duplicate": ValidationError(
                        f"Possible duplicates: patient {ids}. Check them; confirm that none of them is "
                        "this patient to enrol anyway.",
                        code="possible_duplicate",
                    )
                }
            )


def patient_register(*, by: User, data: dict, not_a_duplicate: bool = False, request=None):
    """Enrol a patient unless it may be a duplicate: the same MRN (always refused; for a
    record the caller cannot see, only the fact is told) or, unless `not_a_duplicate`,
    a visible record with the same birth date and a similar name. The one door for the
    page, the API and FHIR."""
    from .selectors import possible_duplicates

    check = possible_duplicates(
        by,
        mrn=data.get("mrn", ""),
        given_name=data.get("given_name", ""),
        family_name=data.get("family_name", ""),
        birth_date=data.get("birth_date"),
    )
    if check.mrn_taken or (check and not not_a_duplicate):
        raise PossibleDuplicates(check)
    return patient_enrol(by=by, data=data, request=request)


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


def _require_member(access: PatientAccess) -> None:
    """Demographics and caregivers: any current team member; emergency access reads only."""
    if access.read_only or not access.on_team:
        raise PermissionDenied(
            "Only the patient's care team can change the record (emergency access is read-only)."
        )


@transaction.atomic
def patient_update(
    *, access: PatientAccess, by: User, data: dict, expected_version: int | None, request=None
) -> Patient:
    """Change demographics (never the MRN) from the version the caller read; a stale
    version raises StaleVersionError and writes nothing. History via simple_history."""
    _require_member(access)
    patient = lock_for_update(access.patient, expected_version)
    changes = {k: v for k, v in data.items() if k in DEMOGRAPHIC_FIELDS}
    changed = apply_changes(patient, changes)
    if not changed:
        return patient
    patient.full_clean(exclude=["mrn"])
    save_versioned(patient, expected_version=expected_version)
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
def caregiver_add(*, access: PatientAccess, by: User, data: dict, request=None) -> Caregiver:
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


def _locked_caregiver(access: PatientAccess, caregiver: Caregiver, expected_version: int | None) -> Caregiver:
    """The caregiver row locked for an edit by a team member, at the version they saw."""
    _require_member(access)
    if caregiver.patient_id != access.patient.pk:
        raise PermissionDenied("No such caregiver.")
    return lock_for_update(caregiver, expected_version)


@transaction.atomic
def caregiver_update(
    *,
    access: PatientAccess,
    by: User,
    caregiver: Caregiver,
    data: dict,
    expected_version: int | None,
    request=None,
) -> Caregiver:
    caregiver = _locked_caregiver(access, caregiver, expected_version)
    if caregiver.end_date is not None:
        raise ValidationError("This caregiver has ended; add them again instead.")
    changed = apply_changes(caregiver, data)
    if not changed:
        return caregiver
    caregiver.full_clean(exclude=["patient"])
    _one_primary(caregiver)
    save_versioned(caregiver, expected_version=expected_version)
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
    *, access: PatientAccess, by: User, caregiver: Caregiver, expected_version: int | None, request=None
) -> Caregiver:
    """End a caregiver (kept in the history, gone from the chart); no longer primary."""
    caregiver = _locked_caregiver(access, caregiver, expected_version)
    if caregiver.end_date is not None:
        return caregiver
    caregiver.end_date = timezone.localdate()
    caregiver.is_primary = False
    save_versioned(caregiver, expected_version=expected_version)
    caregiver.refresh_from_db()
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=caregiver,
        patient=access.patient,
        request=request,
        detail="caregiver ended",
    )
    for consent in caregiver.consents.filter(revoked_at__isnull=True, status=ConsentStatus.ACTIVE):
        consent_revoke(
            by=by,
            access=access,
            consent=consent,
            reason="The caregiver it names was ended.",
            expected_version=consent.version,
            request=request,
        )
    return caregiver


# ---------------------------------------------------------------------------
# Consent
# ---------------------------------------------------------------------------
def consent_document_check(upload) -> tuple[str, bytes]:
    """The upload's content type, decided by its first bytes (not by its name or the
    browser's word), and its content; ValidationError if it is too big or not PDF/PNG/JPEG."""
    if upload.size > CONSENT_DOCUMENT_MAX_BYTES:
        raise ValidationError(
            {"document": f"The document is larger than {CONSENT_DOCUMENT_MAX_BYTES // (1024 * 1024)} MB."}
        )
    data = upload.read(CONSENT_DOCUMENT_MAX_BYTES + 1)
    if len(data) > CONSENT_DOCUMENT_MAX_BYTES:
        raise ValidationError({"document": "The document is larger than 5 MB."})
    for content_type, magic in CONSENT_DOCUMENT_TYPES.items():
        if data.startswith(magic):
            return content_type, data
    raise ValidationError({"document": "Upload a PDF, PNG or JPEG scan of the form."})


@transaction.atomic
def consent_record(*, access: PatientAccess, by: User, data: dict, document=None, request=None) -> Consent:
    """Record a consent the patient (or their representative) gave, with how it was given
    and, optionally, the scanned form; `awaiting_confirmation` records it as proposed,
    not in force until the patient confirms it in the portal. A consent naming a caregiver must name a current
    caregiver of this patient."""
    _require_member(access)
    patient = access.patient
    fields = dict(data)
    caregiver = fields.pop("caregiver", None)
    awaiting = bool(fields.pop("awaiting_confirmation", False))
    today = timezone.localdate()
    errors: dict[str, str] = {}
    if fields.get("scope") == ConsentScope.CAREGIVER:
        if caregiver is None:
            errors["caregiver"] = "Name the caregiver this consent is for."
        elif caregiver.patient_id != patient.pk or caregiver.end_date is not None:
            errors["caregiver"] = "Choose one of the patient's current caregivers."
    elif caregiver is not None:
        errors["caregiver"] = "Only a consent to share with a named caregiver names a caregiver."
    given = fields.get("date_given") or today
    if given > today:
        errors["date_given"] = "A consent cannot be given in the future."
    expires = fields.get("expires_on")
    if expires is not None and expires < given:
        errors["expires_on"] = "The expiry date is before the date it was given."
    if errors:
        raise ValidationError(errors)
    checked = consent_document_check(document) if document is not None else None
    consent = Consent(
        patient=patient,
        caregiver=caregiver if fields.get("scope") == ConsentScope.CAREGIVER else None,
        recorded_by=by,
        status=ConsentStatus.PROPOSED if awaiting else ConsentStatus.ACTIVE,
        **fields,
    )
    consent.full_clean()
    consent.save()
    if checked is not None:
        content_type, content = checked
        ConsentDocument.objects.create(
            consent=consent,
            name=(getattr(document, "name", "") or "consent")[:200],
            content_type=content_type,
            size=len(content),
            data=content,
            uploaded_by=by,
        )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=consent,
        patient=patient,
        request=request,
        detail=f"consent {consent.scope} ({consent.method})"
        + (", awaiting the patient's confirmation" if awaiting else "")
        + (", with document" if checked else ""),
    )
    return consent


@transaction.atomic
def consent_revoke(
    *,
    access: PatientAccess,
    by: User,
    consent: Consent,
    reason: str,
    expected_version: int | None,
    request=None,
) -> Consent:
    """Revoke a consent from now on: what depends on it stops (no referral is sent
    under a revoked consent; a caregiver it named loses access). Kept in the history."""
    _require_member(access)
    if consent.patient_id != access.patient.pk:
        raise PermissionDenied("No such consent.")
    reason = " ".join((reason or "").split())
    if len(reason) < 3:
        raise ValidationError({"reason": "Say why the consent is revoked (who withdrew it, how)."})
    consent = lock_for_update(consent, expected_version)
    if consent.revoked_at is not None:
        return consent
    consent.status = ConsentStatus.INACTIVE
    consent.revoked_at = timezone.now()
    consent.revoked_by = by
    consent.revoke_reason = reason[:500]
    save_versioned(consent, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=consent,
        patient=access.patient,
        request=request,
        detail=f"consent {consent.scope} revoked",
    )
    return consent


# ---------------------------------------------------------------------------
# Acuity and programme enrolment (any current team member; history and audit)
# ---------------------------------------------------------------------------
@transaction.atomic
def patient_set_acuity(
    *, access: PatientAccess, by: User, acuity: str, expected_version: int | None, request=None
) -> Patient:
    """Set the patient's acuity (low, medium, high, or "" for not assessed) from the
    version the caller read: a new version of the patient in its history, audited."""
    _require_member(access)
    if acuity not in ("", *Acuity.values):
        raise ValidationError({"acuity": "Choose low, medium or high."})
    patient = lock_for_update(access.patient, expected_version)
    if patient.acuity == acuity:
        return patient
    before = patient.acuity or "not assessed"
    patient.acuity = acuity
    save_versioned(patient, expected_version=expected_version, update_fields=["acuity", "updated_at"])
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=patient,
        patient=patient,
        request=request,
        detail=f"acuity: {before} -> {acuity or 'not assessed'}",
    )
    access.patient = patient
    return patient


@transaction.atomic
def programme_enrol(
    *, access: PatientAccess, by: User, programme: Programme | None, entered_on, reason: str, request=None
) -> ProgrammeEnrolment:
    """Enrol the patient in a programme from a date, for a reason; once per programme
    at a time (the database enforces it too)."""
    _require_member(access)
    reason = " ".join((reason or "").split())
    errors = {}
    if programme is None or not programme.active:
        errors["programme"] = "Choose a programme that is open for enrolment."
    if not reason:
        errors["reason"] = "Say why the patient enters the programme."
    if entered_on is None:
        errors["entered_on"] = "Give the date the patient entered the programme."
    elif entered_on > timezone.localdate():
        errors["entered_on"] = "The entry date cannot be in the future."
    if errors or programme is None:
        raise ValidationError(errors)
    patient = access.patient
    if ProgrammeEnrolment.objects.open().filter(patient=patient, programme=programme).exists():
        raise ValidationError({"programme": f"{patient.full_name} is already enrolled in {programme}."})
    try:
        with transaction.atomic():
            enrolment = ProgrammeEnrolment.objects.create(
                patient=patient,
                programme=programme,
                entered_on=entered_on,
                entry_reason=reason[:300],
                entered_by=by,
            )
    except IntegrityError as exc:
        raise ValidationError({"programme": "The patient is already enrolled in this programme."}) from exc
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=enrolment,
        patient=patient,
        request=request,
        detail=f"enrolled in {programme.code} from {entered_on.isoformat()}",
    )
    return enrolment


@transaction.atomic
def programme_exit(
    *,
    access: PatientAccess,
    by: User,
    enrolment: ProgrammeEnrolment,
    exited_on,
    exit_reason: str,
    note: str = "",
    expected_version: int | None,
    request=None,
) -> ProgrammeEnrolment:
    """End an enrolment on a date with a reason (goals met, moved, declined, died,
    transferred): kept in the patient's programme history."""
    _require_member(access)
    if enrolment.patient_id != access.patient.pk:
        raise ValidationError("That enrolment belongs to another patient.")
    enrolment = lock_for_update(enrolment, expected_version)
    errors = {}
    if enrolment.exited_on is not None:
        raise ValidationError({"exit_reason": "The patient has already left this programme."})
    if exit_reason not in ProgrammeExitReason.values:
        errors["exit_reason"] = "Choose why the patient leaves the programme."
    if exited_on is None:
        errors["exited_on"] = "Give the date the patient left the programme."
    elif exited_on < enrolment.entered_on:
        errors["exited_on"] = "The exit date cannot be before the patient entered the programme."
    elif exited_on > timezone.localdate():
        errors["exited_on"] = "The exit date cannot be in the future."
    if errors:
        raise ValidationError(errors)
    enrolment.exited_on = exited_on
    enrolment.exit_reason = exit_reason
    enrolment.exit_note = " ".join((note or "").split())[:300]
    enrolment.exited_by = by
    save_versioned(enrolment, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=enrolment,
        patient_id=enrolment.patient_id,
        request=request,
        detail=f"left {enrolment.programme.code} on {exited_on.isoformat()}: {exit_reason}",
    )
    return enrolment
