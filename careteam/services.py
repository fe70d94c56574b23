"""Writes of the care-team app: memberships (and the object permissions they grant),
break-the-glass access, and handoffs. Every function validates, then writes atomically."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from .audit import audit
from .concurrency import lock_for_update
from .models import (
    HANDOFF_TRANSITIONS,
    MEMBERSHIP_TRANSITIONS,
    AuditAction,
    BreakGlassAccess,
    Discipline,
    Handoff,
    HandoffStatus,
    MembershipStatus,
    PatientUserObjectPermission,
    TeamMembership,
    TeamRole,
    User,
)
from .permissions import ROLE_PERMISSIONS, VIEW_PATIENT
from .statemachine import check_transition


# ---------------------------------------------------------------------------
# Memberships and object permissions
# ---------------------------------------------------------------------------
def patient_permissions_sync(*, user: User, patient) -> set[str]:
    """Make the user's guardian permissions on the patient match their current
    memberships (grant what a current role gives, revoke the rest). Idempotent."""
    wanted: set[str] = set()
    for m in TeamMembership.objects.current().filter(user=user, patient=patient):
        wanted |= ROLE_PERMISSIONS[m.role]
    every = set().union(*ROLE_PERMISSIONS.values())
    have = set(
        PatientUserObjectPermission.objects.filter(user=user, content_object=patient).values_list(
            "permission__codename", flat=True
        )
    )
    for codename in wanted - have:
        assign_perm(f"patients.{codename}", user, patient)
    for codename in (have & every) - wanted:
        remove_perm(f"patients.{codename}", user, patient)
    return wanted


def _membership_clean(membership: TeamMembership) -> None:
    if membership.end_date and membership.end_date < membership.start_date:
        raise ValidationError({"end_date": "The end date cannot be before the start date."})
    if not membership.user.is_active:
        raise ValidationError({"user": "This account is deactivated."})
    if membership.role == TeamRole.CASE_MANAGER and membership.status == MembershipStatus.ACTIVE:
        clash = TeamMembership.objects.filter(
            patient=membership.patient, role=TeamRole.CASE_MANAGER, status=MembershipStatus.ACTIVE
        ).exclude(pk=membership.pk)
        if clash.exists():
            raise ValidationError(
                {"role": "This patient already has an active case manager; end that role first."}
            )


@transaction.atomic
def membership_add(
    *,
    patient,
    user: User,
    discipline: Discipline,
    role: str = TeamRole.MEMBER,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    status: str = MembershipStatus.ACTIVE,
    by: User | None = None,
) -> TeamMembership:
    """Put a person on a patient's care team and grant the permissions the role gives."""
    membership = TeamMembership(
        patient=patient,
        user=user,
        discipline=discipline,
        role=role,
        status=status,
        start_date=start_date or timezone.localdate(),
        end_date=end_date,
    )
    _membership_clean(membership)
    try:
        with transaction.atomic():
            membership.save()
    except IntegrityError as exc:
        raise ValidationError(
            "This person already holds an active role in this discipline on this team, "
            "or the patient already has an active case manager."
        ) from exc
    patient_permissions_sync(user=user, patient=patient)
    if by is not None:
        audit(
            user=by,
            action=AuditAction.CREATE,
            obj=membership,
            patient=patient,
            detail=f"{user.username} added as {role} ({discipline.code})",
        )
    return membership


@transaction.atomic
def membership_end(
    *,
    membership: TeamMembership,
    end_date: dt.date | None = None,
    by: User | None = None,
    expected_version: int | None = None,
) -> TeamMembership:
    """End a role today (or at a date): the permissions lapse when it ends."""
    membership = lock_for_update(membership, expected_version)
    end = end_date or timezone.localdate()
    if end < membership.start_date:
        raise ValidationError({"end_date": "The end date cannot be before the start date."})
    membership.end_date = end
    if end <= timezone.localdate():
        check_transition(MEMBERSHIP_TRANSITIONS, membership.status, MembershipStatus.INACTIVE)
        membership.status = MembershipStatus.INACTIVE
    membership.version += 1
    membership.save(update_fields=["end_date", "status", "version", "updated_at"])
    patient_permissions_sync(user=membership.user, patient=membership.patient)
    if by is not None:
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=membership,
            patient=membership.patient,
            detail=f"role ended {end.isoformat()}",
        )
    return membership


@transaction.atomic
def membership_set_status(
    *, membership: TeamMembership, status: str, by: User | None = None, expected_version: int | None = None
) -> TeamMembership:
    membership = lock_for_update(membership, expected_version)
    check_transition(MEMBERSHIP_TRANSITIONS, membership.status, status)
    membership.status = status
    _membership_clean(membership)
    membership.version += 1
    try:
        with transaction.atomic():
            membership.save(update_fields=["status", "version", "updated_at"])
    except IntegrityError as exc:
        raise ValidationError({"status": "This patient already has an active case manager."}) from exc
    patient_permissions_sync(user=membership.user, patient=membership.patient)
    if by is not None:
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=membership,
            patient=membership.patient,
            detail=f"status {status}",
        )
    return membership


def memberships_sync(*, today: dt.date | None = None) -> int:
    """Daily sweep: grant permissions for memberships whose start date arrived, revoke
    them for those whose end date passed (marking them inactive). Returns rows touched."""
    today = today or timezone.localdate()
    touched = 0
    expired = TeamMembership.objects.filter(status=MembershipStatus.ACTIVE, end_date__lt=today)
    for membership in expired.select_related("user", "patient").iterator(chunk_size=500):
        with transaction.atomic():
            TeamMembership.objects.filter(pk=membership.pk, status=MembershipStatus.ACTIVE).update(
                status=MembershipStatus.INACTIVE, updated_at=timezone.now()
            )
            patient_permissions_sync(user=membership.user, patient=membership.patient)
        touched += 1
    # current memberships without a view grant (start date just arrived, or a repair)
    granted = PatientUserObjectPermission.objects.filter(
        user=OuterRef("user"), content_object=OuterRef("patient"), permission__codename=VIEW_PATIENT
    )
    missing = TeamMembership.objects.current(today).filter(~Exists(granted))
    for membership in missing.select_related("user", "patient").iterator(chunk_size=500):
        with transaction.atomic():
            patient_permissions_sync(user=membership.user, patient=membership.patient)
        touched += 1
    # grants left behind with no current membership (e.g. status changed outside services)
    current = TeamMembership.objects.current(today).filter(
        user=OuterRef("user"), patient=OuterRef("content_object")
    )
    orphans = PatientUserObjectPermission.objects.filter(permission__codename=VIEW_PATIENT).filter(
        ~Exists(current)
    )
    for perm in orphans.select_related("user", "content_object").iterator(chunk_size=500):
        with transaction.atomic():
            patient_permissions_sync(user=perm.user, patient=perm.content_object)
        touched += 1
    return touched


# ---------------------------------------------------------------------------
# Break the glass
# ---------------------------------------------------------------------------
@transaction.atomic
def break_glass_open(*, user: User, patient, reason: str, request=None) -> BreakGlassAccess:
    """Emergency read-only access for a clinician not on the team; audited and flagged
    to the patient's case manager."""
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise ValidationError(
            {"reason": "State the clinical reason for emergency access (at least 10 characters)."}
        )
    if not user.disciplines.exists():
        raise ValidationError("Only clinicians can use emergency access.")
    now = timezone.now()
    grant = BreakGlassAccess.objects.create(
        user=user,
        patient=patient,
        reason=reason,
        started_at=now,
        expires_at=now + timedelta(hours=settings.BREAK_GLASS_HOURS),
    )
    audit(
        user=user, action=AuditAction.BREAK_GLASS, obj=grant, patient=patient, request=request, detail=reason
    )
    from .notifications import notify_break_glass

    notify_break_glass(grant=grant)
    return grant


# ---------------------------------------------------------------------------
# Handoffs (SBAR, FHIR Task statuses)
# ---------------------------------------------------------------------------
SBAR_FIELDS = ("situation", "background", "assessment", "recommendation")


def _handoff_validate(h: Handoff) -> None:
    errors: dict[str, str] = {}
    for name in SBAR_FIELDS:
        if not (getattr(h, name) or "").strip():
            errors[name] = f"{name.capitalize()} is required in an SBAR handoff."
    if h.to_user_id is None and h.to_discipline_id is None:
        errors["to_user"] = "Hand off to a team member or to a discipline's queue."
    if h.to_user_id is not None and h.to_user_id == h.from_user_id:
        errors["to_user"] = "You cannot hand off to yourself."
    if h.due_at is None:
        errors["due_at"] = "A due time is required."
    if h.care_plan_id is not None and h.care_plan.patient_id != h.patient_id:
        errors["care_plan"] = "That care plan belongs to another patient."
    if h.activity_id is not None and h.activity.care_plan.patient_id != h.patient_id:
        errors["activity"] = "That activity belongs to another patient."
    if errors:
        raise ValidationError(errors)
    on_team = TeamMembership.objects.current().filter(patient_id=h.patient_id)
    if not on_team.filter(user_id=h.from_user_id).exists():
        raise ValidationError("Only a member of the patient's care team can hand off work.")
    if h.to_user_id is not None and not on_team.filter(user_id=h.to_user_id).exists():
        raise ValidationError({"to_user": "The receiver is not on this patient's care team."})
    if (
        h.to_discipline_id is not None
        and h.to_user_id is None
        and not on_team.filter(discipline_id=h.to_discipline_id).exists()
    ):
        raise ValidationError({"to_discipline": "No one of that discipline is on this patient's care team."})


@transaction.atomic
def handoff_create(
    *,
    from_user: User,
    patient,
    due_at: dt.datetime,
    situation: str,
    background: str,
    assessment: str,
    recommendation: str,
    to_user: User | None = None,
    to_discipline: Discipline | None = None,
    priority: str = "routine",
    care_plan=None,
    activity=None,
    kind: str = "patient",
    request=None,
) -> Handoff:
    handoff = Handoff(
        patient=patient,
        care_plan=care_plan,
        activity=activity,
        kind=kind,
        from_user=from_user,
        to_user=to_user,
        to_discipline=to_discipline,
        situation=situation.strip(),
        background=background.strip(),
        assessment=assessment.strip(),
        recommendation=recommendation.strip(),
        priority=priority,
        due_at=due_at,
    )
    _handoff_validate(handoff)
    handoff.save()
    audit(user=from_user, action=AuditAction.CREATE, obj=handoff, patient=patient, request=request)
    return handoff


def _handoff_receiver_ok(handoff: Handoff, user: User) -> bool:
    if handoff.to_user_id is not None:
        return handoff.to_user_id == user.pk
    return (
        TeamMembership.objects.current()
        .filter(patient_id=handoff.patient_id, user=user, discipline_id=handoff.to_discipline_id)
        .exists()
    )


@transaction.atomic
def handoff_accept(*, handoff: Handoff, user: User, request=None) -> Handoff:
    """Acknowledge a handoff. For a discipline queue the first acceptance wins; a later
    one gets 'already accepted by X'."""
    handoff = Handoff.objects.select_for_update(of=("self",)).select_related("accepted_by").get(pk=handoff.pk)
    if handoff.status != HandoffStatus.REQUESTED and handoff.accepted_by_id is not None:
        who = "you" if handoff.accepted_by_id == user.pk else handoff.accepted_by.display_name
        raise ValidationError(
            {"status": f"This handoff was already accepted by {who}."}, code="already_accepted"
        )
    if not _handoff_receiver_ok(handoff, user):
        raise ValidationError("This handoff is not addressed to you or your discipline on this team.")
    check_transition(HANDOFF_TRANSITIONS, handoff.status, HandoffStatus.ACCEPTED)
    now = timezone.now()
    handoff.status = HandoffStatus.ACCEPTED
    handoff.accepted_by = user
    if handoff.to_user_id is None:
        handoff.to_user = user
    handoff.acknowledged_at = now
    handoff.version += 1
    handoff.save()
    audit(
        user=user,
        action=AuditAction.UPDATE,
        obj=handoff,
        patient_id=handoff.patient_id,
        request=request,
        detail="accepted",
    )
    return handoff


@transaction.atomic
def handoff_reject(*, handoff: Handoff, user: User, reason: str, request=None) -> Handoff:
    handoff = Handoff.objects.select_for_update().get(pk=handoff.pk)
    if not (reason or "").strip():
        raise ValidationError({"status_reason": "Give a reason for rejecting the handoff."})
    if not _handoff_receiver_ok(handoff, user):
        raise ValidationError("This handoff is not addressed to you or your discipline on this team.")
    check_transition(HANDOFF_TRANSITIONS, handoff.status, HandoffStatus.REJECTED)
    handoff.status = HandoffStatus.REJECTED
    handoff.status_reason = reason.strip()
    handoff.acknowledged_at = timezone.now()
    handoff.version += 1
    handoff.save()
    audit(
        user=user,
        action=AuditAction.UPDATE,
        obj=handoff,
        patient_id=handoff.patient_id,
        request=request,
        detail="rejected",
    )
    return handoff


@transaction.atomic
def handoff_set_status(
    *, handoff: Handoff, user: User, status: str, reason: str = "", request=None
) -> Handoff:
    """Start, complete or cancel. The receiver works it; the sender (or case manager) cancels."""
    handoff = Handoff.objects.select_for_update().get(pk=handoff.pk)
    if status == HandoffStatus.ACCEPTED:
        return handoff_accept(handoff=handoff, user=user, request=request)
    if status == HandoffStatus.REJECTED:
        return handoff_reject(handoff=handoff, user=user, reason=reason, request=request)
    check_transition(HANDOFF_TRANSITIONS, handoff.status, status)
    if status == HandoffStatus.CANCELLED:
        is_cm = (
            TeamMembership.objects.current()
            .filter(patient_id=handoff.patient_id, user=user, role=TeamRole.CASE_MANAGER)
            .exists()
        )
        if user.pk != handoff.from_user_id and not is_cm:
            raise ValidationError("Only the sender or the case manager can cancel a handoff.")
    elif user.pk not in (handoff.to_user_id, handoff.accepted_by_id):
        raise ValidationError("Only the person who accepted the handoff can work on it.")
    handoff.status = status
    handoff.status_reason = reason.strip() if reason else handoff.status_reason
    if status == HandoffStatus.COMPLETED:
        handoff.completed_at = timezone.now()
    handoff.version += 1
    handoff.save()
    audit(
        user=user,
        action=AuditAction.UPDATE,
        obj=handoff,
        patient_id=handoff.patient_id,
        request=request,
        detail=status,
    )
    return handoff
