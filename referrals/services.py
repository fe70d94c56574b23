"""Writes of closed-loop referrals: create, send (consent required, service active),
status changes along the Gravity SDOH Task machine, close with an outcome, reopen."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from careplans import services as plan_services
from careplans.models import Need, NeedStatus
from careteam import events
from careteam.audit import audit
from careteam.concurrency import lock_for_update, save_versioned
from careteam.models import AuditAction, User
from careteam.permissions import PatientAccess
from careteam.statemachine import check_transition
from patients.models import Consent, ConsentScope, Patient

from .models import (
    HELP_RECEIVED_OUTCOMES,
    REFERRAL_CLOSED_STATUSES,
    REFERRAL_DUPLICATE_STATUSES,
    REFERRAL_TRANSITIONS,
    CapacityStatus,
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
    # a service whose organisation has partner staff answers for itself
    referral.tracked_by_referrer = not service.organization.partner_staff.filter(active=True).exists()
    referral.sent_at = timezone.now()
    referral.closed_at = None
    referral.outcome = ""
    if note:
        referral.status_reason = note
    save_versioned(referral, expected_version=None)
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
    if status == ReferralStatus.REQUESTED and referral.sent_at is None:
        # Sending for the first time (a draft, or a cancelled draft reopened): the
        # consent and service checks of sending apply.
        return referral_send(access=access, referral=referral, by=by, note=note, request=request)
    referral, _event = referral_transition(
        referral=referral, by=by, status=status, note=note, outcome=outcome, access=access, request=request
    )
    return referral


def referral_transition(
    *,
    referral: Referral,
    by: User,
    status: str,
    note: str = "",
    outcome: str = "",
    access: PatientAccess | None = None,
    request=None,
) -> tuple[Referral, ReferralEvent]:
    """The status change itself, on a referral already locked and checked against the
    machine (by `referral_set_status` for the team, by referrals.partners for the
    receiving service): times, outcome, the log, the need and its plan note, the audit.
    `access` is the team member's; a partner acts without one."""
    check_transition(REFERRAL_TRANSITIONS, referral.status, status)
    never_sent = referral.sent_at is None
    closing = status in REFERRAL_CLOSED_STATUSES and status != "entered-in-error"
    reopening = referral.status in REFERRAL_CLOSED_STATUSES
    # A draft cancelled before it went out closes no loop: no outcome is asked for.
    if closing and not outcome and not never_sent:
        raise ValidationError({"outcome": "Record the outcome to close the referral."})
    if reopening and not note.strip():
        raise ValidationError({"note": "Say why the referral is reopened."})
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
    save_versioned(referral, expected_version=None)
    event = ReferralEvent.objects.create(
        referral=referral, from_status=from_status, to_status=referral.status, by=by, note=note
    )
    if status == ReferralStatus.ACCEPTED and from_status != ReferralStatus.ACCEPTED:
        events.emit("referral.accepted", obj=referral, by=by, access=access)
    if closing and referral.outcome and referral.need_id is not None:
        _update_need_from_outcome(referral=referral, need_id=referral.need_id, by=by, request=request)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=referral,
        patient_id=referral.patient_id,
        request=request,
        detail=status,
    )
    return referral, event


def _update_need_from_outcome(*, referral: Referral, need_id: int, by: User, request=None) -> None:
    """Closing the loop: help received resolves the need; otherwise the need stays open
    and a note on it says what happened, so the team looks for another service. Both go
    through the care-plan services (the need's machine, version and history)."""
    need = Need.objects.get(pk=need_id)
    if referral.outcome in HELP_RECEIVED_OUTCOMES and need.status in ("active", "recurrence", "inactive"):
        need = plan_services.need_transition(
            need=need,
            by=by,
            status=NeedStatus.RESOLVED,
            reason=f"Referral to {referral.service.name}: {referral.get_outcome_display()}",
            request=request,
        )
    plan_services.need_note_record(
        need=need,
        by=by,
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


# ---------------------------------------------------------------------------
# Catalog: capacity and proposed listing edits
# ---------------------------------------------------------------------------
def is_catalog_admin(user) -> bool:
    return bool(
        user is not None
        and user.is_active
        and (user.is_superuser or user.has_perm("careteam.manage_catalog"))
    )


# Who besides catalog administrators may set a service's capacity at once: checks
# `(user, service) -> bool` that other modules add (partner staff of the service's
# organization), so this module never imports them.
CAPACITY_EDITORS: list = []


def may_set_capacity(user, service: Service) -> bool:
    return is_catalog_admin(user) or any(check(user, service) for check in CAPACITY_EDITORS)


@transaction.atomic
def service_capacity_set(
    *,
    by: User,
    service: Service,
    status: str,
    note: str = "",
    available: int | None = None,
    maximum: int | None = None,
    request=None,
) -> Service:
    """Set whether a service takes new clients now. Capacity goes stale in days, so it
    publishes at once (no review) for catalog administrators and the editors in
    CAPACITY_EDITORS; anyone else proposes it through listing_change_propose."""
    if not may_set_capacity(by, service):
        raise PermissionDenied("Only catalog administrators or the service's own staff set its capacity.")
    errors = _capacity_errors(status=status, note=note, available=available, maximum=maximum)
    if errors:
        raise ValidationError(errors)
    service = Service.objects.select_for_update().get(pk=service.pk)
    now = timezone.now()
    service.capacity_status = status
    service.capacity_note = (note or "").strip()
    service.capacity_available = available
    service.capacity_maximum = maximum
    service.capacity_updated_at = now
    service.last_modified = now
    service.save(
        update_fields=[
            "capacity_status",
            "capacity_note",
            "capacity_available",
            "capacity_maximum",
            "capacity_updated_at",
            "last_modified",
            "updated_at",
        ]
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        object_type="referrals.service",
        object_id=service.pk,
        request=request,
        detail=f"capacity {status or 'unknown'}",
    )
    return service


def _capacity_errors(*, status, note, available, maximum) -> dict[str, str]:
    errors = {}
    if status not in ("", *CapacityStatus.values):
        errors["capacity_status"] = (
            f"Capacity is one of {', '.join(CapacityStatus.values)} (or empty: not known)."
        )
    if note and len(note) > 250:
        errors["capacity_note"] = "The note is at most 250 characters."
    for name, value in (("capacity_available", available), ("capacity_maximum", maximum)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31
        ):
            errors[name] = "A number of places from 0."
    if isinstance(available, int) and isinstance(maximum, int) and available > maximum:
        errors["capacity_available"] = "More places free than the maximum."
    return errors


# Fields a proposed edit may change, per listing (the rest comes from HSDS imports).
SERVICE_EDITABLE = (
    "phone",
    "email",
    "url",
    "description",
    "hours_description",
    "application_process",
    "eligibility_description",
    "minimum_age",
    "maximum_age",
    "service_area",
    "wait_time",
    "fees_description",
    "alert",
    "capacity_status",
    "capacity_note",
    "capacity_available",
    "capacity_maximum",
)
ORGANIZATION_EDITABLE = ("phone", "email", "website", "description")
CAPACITY_FIELDS = ("capacity_status", "capacity_note", "capacity_available", "capacity_maximum")


def _editable(listing) -> tuple[str, ...]:
    return SERVICE_EDITABLE if isinstance(listing, Service) else ORGANIZATION_EDITABLE


def _clean_changes(listing, changes) -> dict:
    """The proposed values, checked by the listing's own fields (lengths, links, emails,
    choices, numbers); only those that differ from the listing now."""
    if not isinstance(changes, dict) or not changes:
        raise ValidationError({"changes": "Propose at least one change."})
    editable = _editable(listing)
    unknown = sorted(str(k) for k in changes if k not in editable)
    if unknown:
        raise ValidationError({"changes": f"These fields cannot be proposed: {', '.join(unknown)}."})
    cleaned, errors = {}, {}
    for name, value in changes.items():
        model_field = listing._meta.get_field(name)
        if value in (None, "") and model_field.null:
            value = None
        elif value is None:
            value = ""
        try:
            value = model_field.clean(value, listing)
        except ValidationError as exc:
            errors[name] = " ".join(exc.messages)
            continue
        if value != getattr(listing, name):
            cleaned[name] = value
    if isinstance(listing, Service):
        low = cleaned.get("minimum_age", listing.minimum_age)
        high = cleaned.get("maximum_age", listing.maximum_age)
        if low is not None and high is not None and high < low:
            errors["maximum_age"] = "The maximum age is below the minimum age."
    if errors:
        raise ValidationError(errors)
    if not cleaned:
        raise ValidationError({"changes": "Nothing would change: the listing already says this."})
    return cleaned


@transaction.atomic
def listing_change_propose(
    *,
    by: User,
    service: Service | None = None,
    organization=None,
    changes: dict,
    note: str = "",
    request=None,
):
    """Propose edits to a service's or an organization's listing (anyone signed in: a
    partner's staff, a clinician who called the number). Nothing is published until a
    catalog administrator reviews it (listing_change_publish)."""
    from .models import ListingChange

    if (service is None) == (organization is None):
        raise ValueError("Propose a change to one service or one organization.")
    listing = service if service is not None else organization
    cleaned = _clean_changes(listing, changes)
    change = ListingChange.objects.create(
        service=service,
        organization=organization,
        changes=_jsonable(cleaned),
        previous=_jsonable({k: getattr(listing, k) for k in cleaned}),
        note=(note or "").strip(),
        proposed_by=by,
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        object_type="referrals.listingchange",
        object_id=change.pk,
        request=request,
        detail=f"proposed {', '.join(sorted(cleaned))}",
    )
    return change


def _jsonable(values: dict) -> dict:
    return {k: (v if v is None or isinstance(v, int | str) else str(v)) for k, v in values.items()}


def _review(by: User, change, target: str):
    from .models import LISTING_CHANGE_TRANSITIONS, ListingChange

    if not is_catalog_admin(by):
        raise PermissionDenied("Only catalog administrators review listing changes.")
    change = ListingChange.objects.select_for_update().get(pk=change.pk)
    if change.status != "pending":
        raise ValidationError({"status": f"This change was already {change.status}."}, code="already_decided")
    check_transition(LISTING_CHANGE_TRANSITIONS, change.status, target)
    return change


@transaction.atomic
def listing_change_publish(*, by: User, change, note: str = "", request=None):
    """Apply a proposed change to its listing: the listing's last_modified is now, and
    the review assures it (assured_date today, by the reviewer)."""
    change = _review(by, change, "published")
    model = Service if change.service_id else type(change.organization)
    listing = model.objects.select_for_update().get(pk=change.service_id or change.organization_id)
    try:
        cleaned = _clean_changes(listing, change.changes)
    except ValidationError as exc:
        if set(getattr(exc, "error_dict", {})) != {"changes"}:
            raise
        cleaned = {}  # the listing already says it all: publishing only assures it
    now = timezone.now()
    for name, value in cleaned.items():
        setattr(listing, name, value)
    if "phone" in cleaned:
        _set_first_phone(listing, cleaned["phone"])
    if isinstance(listing, Service):
        if set(cleaned) & set(CAPACITY_FIELDS):
            listing.capacity_updated_at = now
        listing.last_modified = now
        listing.last_verified = timezone.localdate()
        listing.assured_date = timezone.localdate().isoformat()
        listing.assurer_email = by.email or ""
    listing.save()
    change.status = "published"
    change.reviewed_by = by
    change.reviewed_at = now
    change.review_note = (note or "").strip()
    change.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    audit(
        user=by,
        action=AuditAction.UPDATE,
        object_type="referrals.listingchange",
        object_id=change.pk,
        request=request,
        detail=f"published {', '.join(sorted(cleaned)) or 'nothing new'}",
    )
    return change


def _set_first_phone(listing, number: str) -> None:
    """The HSDS phones kept in `details` are what the export serves: the first one
    takes the new number (or goes, when the number is removed)."""
    details = dict(listing.details or {})
    phones = [dict(p) for p in details.get("phones") or []]
    if not phones:
        return
    if number:
        phones[0]["number"] = number
    else:
        phones = phones[1:]
    details["phones"] = phones
    listing.details = details


@transaction.atomic
def listing_change_reject(*, by: User, change, note: str = "", request=None):
    """Refuse a proposed change: the listing stays as it is."""
    change = _review(by, change, "rejected")
    change.status = "rejected"
    change.reviewed_by = by
    change.reviewed_at = timezone.now()
    change.review_note = (note or "").strip()
    change.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    audit(
        user=by,
        action=AuditAction.UPDATE,
        object_type="referrals.listingchange",
        object_id=change.pk,
        request=request,
        detail="rejected",
    )
    return change


@transaction.atomic
def service_assure(*, by: User, service: Service, request=None) -> Service:
    """A catalog administrator checked the listing and it is right as it is."""
    if not is_catalog_admin(by):
        raise PermissionDenied("Only catalog administrators assure listings.")
    today = timezone.localdate()
    Service.objects.filter(pk=service.pk).update(
        last_verified=today,
        assured_date=today.isoformat(),
        assurer_email=by.email or "",
        updated_at=timezone.now(),
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        object_type="referrals.service",
        object_id=service.pk,
        request=request,
        detail="assured",
    )
    service.refresh_from_db()
    return service
