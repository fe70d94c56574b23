"""Writes of closed-loop referrals: create, send (consent required, service active),
status changes along the Gravity SDOH Task machine, close with an outcome, reopen."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from careteam.audit import audit
from careteam.concurrency import lock_for_update
from careteam.models import AuditAction, User
from careteam.permissions import PatientAccess
from careteam.statemachine import check_transition
from patients.models import Consent, ConsentScope, Patient

from .models import (
    REFERRAL_CLOSED_STATUSES,
    REFERRAL_DUPLICATE_STATUSES,
    REFERRAL_TRANSITIONS,
    Referral,
    ReferralEvent,
    ReferralStatus,
    Service,
    ServiceStatus,
)


def _log(referral: Referral, *, by: User, from_status: str, note: str = "") -> None:
    ReferralEvent.objects.create(
        referral=referral, from_status=from_status, to_status=referral.status, by=by, note=note
    )


def open_duplicate(*, patient, service, need, exclude=None) -> Referral | None:
    """An open referral (a draft or not yet closed) of this patient to this service for
    the same need (or, without a need, for no particular need)."""
    qs = Referral.objects.filter(
        patient=patient, service=service, need=need, status__in=REFERRAL_DUPLICATE_STATUSES
    )
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return qs.select_related("referred_by").order_by("-created_at").first()


def duplicate_message(referral: Referral) -> str:
    when = referral.sent_at or referral.created_at
    return (
        f"An open referral to this service for the same need already exists (referral #{referral.pk}, "
        f"{referral.get_status_display().lower()}, by {referral.referred_by.display_name}, "
        f"{timezone.localtime(when):%-d %b %Y}). Update that one instead of sending another."
    )


def referral_consent(*, patient) -> Consent | None:
    """The patient's consent in force to share information with community services."""
    return patient.consents.in_force().filter(scope=ConsentScope.REFERRAL).order_by("-date_given").first()


@transaction.atomic
def referral_create(
    *,
    access: PatientAccess,
    by: User,
    plan,
    service: Service,
    reason: str,
    need=None,
    priority: str = "routine",
    send: bool = True,
    request=None,
) -> Referral:
    """Create a referral from a plan (optionally from one need) and send it at once unless
    `send` is False (a draft)."""
    access.require_edit()
    errors: dict[str, str] = {}
    if not (reason or "").strip():
        errors["reason"] = "Give the reason for the referral."
    if plan.patient_id != access.patient.pk:
        errors["care_plan"] = "That care plan belongs to another patient."
    if need is not None and need.care_plan_id != plan.pk:
        errors["need"] = "That need belongs to another care plan."
    if priority not in ("routine", "urgent", "asap"):
        errors["priority"] = "Priority is routine, urgent or asap."
    if errors:
        raise ValidationError(errors)
    # one open referral per service and need: the patient's row is the lock, so a second
    # Save (Back and Save again, a double click, another tab) waits here and is refused
    Patient.objects.select_for_update().filter(pk=access.patient.pk).first()
    duplicate = open_duplicate(patient=access.patient, service=service, need=need)
    if duplicate is not None:
        raise ValidationError({"service": duplicate_message(duplicate)})
    referral = Referral.objects.create(
        patient=access.patient,
        care_plan=plan,
        need=need,
        service=service,
        reason=reason.strip(),
        priority=priority,
        referred_by=by,
    )
    _log(referral, by=by, from_status="")
    audit(user=by, action=AuditAction.CREATE, obj=referral, patient=access.patient, request=request)
    if send:
        referral = referral_send(access=access, referral=referral, by=by, request=request)
    return referral


@transaction.atomic
def referral_send(
    *, access: PatientAccess, referral: Referral, by: User, note: str = "", request=None
) -> Referral:
    """Send a draft (or a draft cancelled before it went out, reopened with a note)."""
    access.require_edit()
    referral = lock_for_update(referral, None)
    service = referral.service
    if service.status != ServiceStatus.ACTIVE:
        raise ValidationError(
            {
                "service": f"{service.name} is {service.get_status_display().lower()}: it cannot take referrals."
            }
        )
    consent = referral_consent(patient=access.patient)
    if consent is None:
        raise ValidationError(
            {"consent": "Record the patient's consent to share information with community services first."}
        )
    check_transition(REFERRAL_TRANSITIONS, referral.status, ReferralStatus.REQUESTED)
    from_status = referral.status
    referral.status = ReferralStatus.REQUESTED
    referral.consent = consent
    referral.sent_at = timezone.now()
    referral.closed_at = None
    referral.outcome = ""
    if note:
        referral.status_reason = note
    referral.version += 1
    referral.save()
    _log(referral, by=by, from_status=from_status, note=note)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=referral,
        patient=access.patient,
        request=request,
        detail="sent",
    )
    return referral


@transaction.atomic
def referral_set_status(
    *,
    access: PatientAccess,
    referral: Referral,
    by: User,
    status: str,
    note: str = "",
    outcome: str = "",
    expected_version: int | None = None,
    request=None,
) -> Referral:
    """Record the service's answer or progress (on its behalf when it is not on CareTeam),
    or close the loop with an outcome, which updates the need in the plan."""
    access.require_edit()
    referral = lock_for_update(referral, expected_version)
    check_transition(REFERRAL_TRANSITIONS, referral.status, status)
    never_sent = referral.sent_at is None
    closing = status in REFERRAL_CLOSED_STATUSES and status != "entered-in-error"
    reopening = referral.status in REFERRAL_CLOSED_STATUSES
    # A draft cancelled before it went out closes no loop: no outcome is asked for.
    if closing and not outcome and not never_sent:
        raise ValidationError({"outcome": "Record the outcome to close the referral."})
    if reopening and not note.strip():
        raise ValidationError({"note": "Say why the referral is reopened."})
    if status == ReferralStatus.REQUESTED and never_sent:
        # Sending for the first time (a draft, or a cancelled draft reopened): the
        # consent and service checks of sending apply.
        return referral_send(access=access, referral=referral, by=by, note=note, request=request)
    now = timezone.now()
    from_status = referral.status
    referral.status = status
    if note:
        referral.status_reason = note
    if status in ("accepted", "rejected") and referral.responded_at is None:
        referral.responded_at = now
    if status == "accepted" and referral.accepted_at is None:
        referral.accepted_at = now
    if closing:
        referral.closed_at = now
        referral.outcome = outcome
        referral.outcome_note = note
    if reopening:
        referral.closed_at = None
        referral.outcome = ""
    referral.version += 1
    referral.save()
    _log(referral, by=by, from_status=from_status, note=note)
    if closing and referral.outcome and referral.need_id is not None:
        _update_need_from_outcome(access=access, referral=referral, by=by)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=referral,
        patient=access.patient,
        request=request,
        detail=status,
    )
    return referral


def _update_need_from_outcome(*, access: PatientAccess, referral: Referral, by: User) -> None:
    """Closing the loop: help received resolves the need; otherwise the need stays open
    and a note on it says what happened, so the team looks for another service."""
    from careplans.models import Need, NeedStatus, Note

    need = Need.objects.select_for_update().get(pk=referral.need_id)
    if referral.outcome == "got-help" and need.status in ("active", "recurrence", "inactive"):
        need.status = NeedStatus.RESOLVED
        need.version += 1
        need._history_user = by
        need.save()
    Note.objects.create(
        care_plan_id=need.care_plan_id,
        need=need,
        author=by,
        sensitivity_id=need.sensitivity_id,
        text=f"Referral to {referral.service.name} closed: {referral.get_outcome_display()}."
        + (f" {referral.outcome_note}" if referral.outcome_note else ""),
    )


def referral_close(
    *,
    access: PatientAccess,
    referral: Referral,
    by: User,
    status: str,
    outcome: str,
    note: str = "",
    expected_version: int | None = None,
    request=None,
) -> Referral:
    """Close the loop: a closed status with its outcome, which updates the need."""
    if status not in REFERRAL_CLOSED_STATUSES or status == ReferralStatus.ENTERED_IN_ERROR:
        raise ValidationError({"status": "Close as completed, rejected, cancelled or failed."})
    return referral_set_status(
        access=access,
        referral=referral,
        by=by,
        status=status,
        outcome=outcome,
        note=note,
        expected_version=expected_version,
        request=request,
    )


@transaction.atomic
def referral_reopen(
    *,
    access: PatientAccess,
    referral: Referral,
    by: User,
    note: str,
    status: str = ReferralStatus.REQUESTED,
    expected_version: int | None = None,
    request=None,
) -> Referral:
    """Reopen a closed referral; the note saying why is required and kept in the log."""
    if referral.status not in REFERRAL_CLOSED_STATUSES:
        raise ValidationError({"status": "Only a closed referral can be reopened."})
    Patient.objects.select_for_update().filter(pk=access.patient.pk).first()
    duplicate = open_duplicate(
        patient=access.patient, service=referral.service, need=referral.need, exclude=referral
    )
    if duplicate is not None:
        raise ValidationError({"status": duplicate_message(duplicate)})
    return referral_set_status(
        access=access,
        referral=referral,
        by=by,
        status=status,
        note=note,
        expected_version=expected_version,
        request=request,
    )


# ---------------------------------------------------------------------------
# Catalog import from an upload (the admin's form)
# ---------------------------------------------------------------------------
def _unzip_csv_package(archive, folder, name: str) -> None:
    """The CSV files of an uploaded zip, copied in chunks and counted as they expand (the
    sizes a zip declares may lie): more than HSDS_IMPORT_MAX_FILES members or
    HSDS_IMPORT_MAX_BYTES uncompressed is refused before it fills the disk."""
    from pathlib import Path

    from . import hsds

    members = archive.infolist()
    if len(members) > settings.HSDS_IMPORT_MAX_FILES:
        raise hsds.HsdsImportError(
            [hsds.Problem(name, None, f"more than {settings.HSDS_IMPORT_MAX_FILES} files in the zip")]
        )
    budget = settings.HSDS_IMPORT_MAX_BYTES
    too_big = hsds.HsdsImportError(
        [hsds.Problem(name, None, f"expands to more than {budget // 1_000_000} MB; split the catalog")]
    )
    for member in members:
        base = Path(member.filename).name  # never a path outside the folder
        if not base.lower().endswith(".csv") or member.is_dir():
            continue
        if member.file_size > budget:
            raise too_big
        with archive.open(member) as source, open(folder / base, "wb") as target:
            while chunk := source.read(64 * 1024):
                budget -= len(chunk)
                if budget < 0:
                    raise too_big
                target.write(chunk)


def catalog_import_upload(*, upload, kind: str | None = None, by: User, request=None):
    """Import an uploaded HSDS JSON file or a zip of the CSV package. Nothing is written
    unless every row validates (raises referrals.hsds.HsdsImportError)."""
    import tempfile
    import zipfile
    from pathlib import Path

    from . import hsds

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name = Path(upload.name).name
        if (upload.size or 0) > settings.HSDS_IMPORT_MAX_BYTES:
            raise hsds.HsdsImportError(
                [hsds.Problem(name, None, f"larger than {settings.HSDS_IMPORT_MAX_BYTES // 1_000_000} MB")]
            )
        if name.lower().endswith(".zip"):
            try:
                archive = zipfile.ZipFile(upload)
            except zipfile.BadZipFile:
                raise hsds.HsdsImportError([hsds.Problem(name, None, "not a zip file")]) from None
            with archive:
                _unzip_csv_package(archive, folder, name)
            result = hsds.import_path(folder)
        else:
            path = folder / name
            with open(path, "wb") as fh:
                for chunk in upload.chunks():
                    fh.write(chunk)
            result = hsds.import_path(path, table=kind or None)
    audit(
        user=by,
        action=AuditAction.CREATE,
        object_type="referrals.catalog",
        request=request,
        detail=result.summary(),
    )
    return result
