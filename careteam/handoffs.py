"""Handoffs between team members and discipline queues (SBAR note, FHIR Task statuses):
create, accept (first acceptance of a queue handoff wins), reject with a reason, start,
complete, cancel; and the reads the inbox and the case manager's view need."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from .audit import audit
from .concurrency import check_version, save_versioned
from .cover import receiver_for, work_for_q
from .models import (
    HANDOFF_OPEN_STATUSES,
    HANDOFF_TRANSITIONS,
    AuditAction,
    Discipline,
    Handoff,
    HandoffStatus,
    TeamMembership,
    TeamRole,
    User,
)
from .notifications import handoff_notifications_mark_read, notify_handoff_answered, notify_handoff_received
from .permissions import PatientAccess, restrict, team_patients_for
from .statemachine import check_transition

# ---------------------------------------------------------------------------
# Handoffs (SBAR, FHIR Task statuses)
# ---------------------------------------------------------------------------
SBAR_FIELDS = ("situation", "background", "assessment", "recommendation")
# what each button on the handoff page did, for the confirmation message
ACTION_DONE = {
    "accept": "accepted",
    "reject": "rejected",
    "start": "started",
    "complete": "completed",
    "cancel": "cancelled",
}


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
    access: PatientAccess,
    by: User,
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
    """Hand work on `access.patient` to a team member or a discipline's queue (SBAR)."""
    patient = access.patient
    handoff = Handoff(
        patient=patient,
        care_plan=care_plan,
        activity=activity,
        kind=kind,
        from_user=by,
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
    audit(user=by, action=AuditAction.CREATE, obj=handoff, patient=patient, request=request)
    notify_handoff_received(handoff=handoff)
    return handoff


def _handoff_receiver_ok(handoff: Handoff, user: User) -> bool:
    """The addressee, or while they are away the colleague covering them; for a queue,
    anyone of that discipline on the team (cover members included)."""
    if handoff.to_user_id is not None:
        return user.pk in (handoff.to_user_id, receiver_for(handoff.to_user_id))
    return (
        TeamMembership.objects.current()
        .filter(patient_id=handoff.patient_id, user=user, discipline_id=handoff.to_discipline_id)
        .exists()
    )


def _handoff_locked(access: PatientAccess, handoff: Handoff, *related: str) -> Handoff:
    """The handoff re-read under a row lock, from the patient `access` is about (another
    patient's handoff is missing here, as it is to every read)."""
    return (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("from_user", "patient", *related)
        .get(pk=handoff.pk, patient_id=access.patient.pk)
    )


@transaction.atomic
def handoff_accept(
    *, access: PatientAccess, by: User, handoff: Handoff, expected_version: int | None = None, request=None
) -> Handoff:
    """Acknowledge a handoff. For a discipline queue the first acceptance wins; a later
    one gets 'already accepted by X' (before its version is compared, so it says who)."""
    handoff = _handoff_locked(access, handoff, "accepted_by")
    if handoff.status != HandoffStatus.REQUESTED and handoff.accepted_by_id is not None:
        who = "you" if handoff.accepted_by_id == by.pk else handoff.accepted_by.display_name
        raise ValidationError(
            {"status": f"This handoff was already accepted by {who}."}, code="already_accepted"
        )
    if not _handoff_receiver_ok(handoff, by):
        raise ValidationError("This handoff is not addressed to you or your discipline on this team.")
    check_version(handoff, expected_version)
    check_transition(HANDOFF_TRANSITIONS, handoff.status, HandoffStatus.ACCEPTED)
    now = timezone.now()
    handoff.status = HandoffStatus.ACCEPTED
    handoff.accepted_by = by
    if handoff.to_user_id is None:
        handoff.to_user = by
    handoff.acknowledged_at = now
    save_versioned(handoff, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=handoff,
        patient_id=handoff.patient_id,
        request=request,
        detail="accepted",
    )
    # a queue handoff taken by one colleague waits for nobody else
    handoff_notifications_mark_read(handoff=handoff)
    notify_handoff_answered(handoff=handoff, by=by, answer="accepted", at=now)
    return handoff


@transaction.atomic
def handoff_reject(
    *,
    access: PatientAccess,
    by: User,
    handoff: Handoff,
    reason: str,
    expected_version: int | None = None,
    request=None,
) -> Handoff:
    handoff = _handoff_locked(access, handoff)
    if not (reason or "").strip():
        raise ValidationError({"status_reason": "Give a reason for rejecting the handoff."})
    if not _handoff_receiver_ok(handoff, by):
        raise ValidationError("This handoff is not addressed to you or your discipline on this team.")
    check_version(handoff, expected_version)
    check_transition(HANDOFF_TRANSITIONS, handoff.status, HandoffStatus.REJECTED)
    handoff.status = HandoffStatus.REJECTED
    handoff.status_reason = reason.strip()
    handoff.acknowledged_at = timezone.now()
    save_versioned(handoff, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=handoff,
        patient_id=handoff.patient_id,
        request=request,
        detail="rejected",
    )
    handoff_notifications_mark_read(handoff=handoff)
    notify_handoff_answered(handoff=handoff, by=by, answer="rejected", at=handoff.acknowledged_at)
    return handoff


@transaction.atomic
def handoff_set_status(
    *,
    access: PatientAccess,
    by: User,
    handoff: Handoff,
    status: str,
    reason: str = "",
    expected_version: int | None = None,
    request=None,
) -> Handoff:
    """Start, complete or cancel. The receiver works it; the sender (or case manager) cancels."""
    handoff = _handoff_locked(access, handoff)
    if status == HandoffStatus.ACCEPTED:
        return handoff_accept(
            access=access, by=by, handoff=handoff, expected_version=expected_version, request=request
        )
    if status == HandoffStatus.REJECTED:
        return handoff_reject(
            access=access,
            by=by,
            handoff=handoff,
            reason=reason,
            expected_version=expected_version,
            request=request,
        )
    check_version(handoff, expected_version)
    check_transition(HANDOFF_TRANSITIONS, handoff.status, status)
    if status == HandoffStatus.CANCELLED:
        is_cm = (
            TeamMembership.objects.current()
            .filter(patient_id=handoff.patient_id, user=by, role=TeamRole.CASE_MANAGER)
            .exists()
        )
        if by.pk != handoff.from_user_id and not is_cm:
            raise ValidationError("Only the sender or the case manager can cancel a handoff.")
    elif by.pk not in (handoff.to_user_id, handoff.accepted_by_id):
        raise ValidationError("Only the person who accepted the handoff can work on it.")
    handoff.status = status
    handoff.status_reason = reason.strip() if reason else handoff.status_reason
    if status == HandoffStatus.COMPLETED:
        handoff.completed_at = timezone.now()
    save_versioned(handoff, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=handoff,
        patient_id=handoff.patient_id,
        request=request,
        detail=status,
    )
    if status == HandoffStatus.COMPLETED:
        handoff_notifications_mark_read(handoff=handoff, user=by)
        notify_handoff_answered(handoff=handoff, by=by, answer="completed", at=handoff.completed_at)
    elif status == HandoffStatus.CANCELLED:
        handoff_notifications_mark_read(handoff=handoff)
    return handoff


# ---------------------------------------------------------------------------
# Reads: every list starts from the permission-restricted queryset
# ---------------------------------------------------------------------------
def handoffs_visible(user) -> QuerySet:
    """Handoffs of patients the user may see."""
    return restrict(Handoff.objects.all(), user).select_related(
        "patient", "from_user", "to_user", "to_discipline", "accepted_by"
    )


def inbox_q(user) -> Q:
    """Waiting for the user's acknowledgement: requested, addressed to them (or to
    someone they cover today, careteam.cover) or to a discipline queue they hold on that
    patient's current team (not their own sends to a colleague)."""
    my_queue = TeamMembership.objects.current().filter(
        user_id=user.pk, patient_id=OuterRef("patient_id"), discipline_id=OuterRef("to_discipline_id")
    )
    return (
        Q(status=HandoffStatus.REQUESTED)
        & (
            work_for_q("to_user_id", user)
            | Q(to_user__isnull=True, to_discipline__isnull=False) & Exists(my_queue)
        )
        & ~Q(from_user_id=user.pk, to_user_id__isnull=False)
    )


def accepted_q(user) -> Q:
    """Accepted by the user and not completed yet."""
    return Q(accepted_by_id=user.pk, status__in=(HandoffStatus.ACCEPTED, HandoffStatus.IN_PROGRESS))


def sent_unanswered_q(user) -> Q:
    """Sent by the user and not answered yet."""
    return Q(from_user_id=user.pk, status=HandoffStatus.REQUESTED)


def handoff_inbox(user) -> QuerySet:
    """Handoffs waiting for the user's acknowledgement (`inbox_q`)."""
    return handoffs_visible(user).filter(inbox_q(user)).order_by("due_at", "id")


def handoffs_sent_by(user) -> QuerySet:
    """Handoffs the user sent, of patients they may still see: open ones first (by due
    time), then the answered ones, newest first."""
    return (
        handoffs_visible(user)
        .filter(from_user_id=user.pk)
        .annotate(
            closed=Case(When(status__in=HANDOFF_OPEN_STATUSES, then=Value(0)), default=Value(1)),
        )
        .order_by("closed", Case(When(closed=0, then="due_at")), "-updated_at", "-id")
    )


def handoffs_accepted_by(user) -> QuerySet:
    """Handoffs the user accepted and has not completed yet (`accepted_q`)."""
    return handoffs_visible(user).filter(accepted_q(user)).order_by("due_at", "id")


def handoffs_open_for_case_manager(user) -> QuerySet:
    """All open handoffs of the patients the user is the current case manager of."""
    as_cm = TeamMembership.objects.current().filter(
        user_id=user.pk, patient_id=OuterRef("patient_id"), role=TeamRole.CASE_MANAGER
    )
    return (
        handoffs_visible(user)
        .filter(status__in=HANDOFF_OPEN_STATUSES)
        .filter(Exists(as_cm))
        .order_by("created_at", "id")
    )


def my_handoffs_to_do(user) -> QuerySet:
    """Open handoffs of my patients that wait for me: to accept (sent to me or my
    discipline's queue) or accepted by me and not completed; only what I may see. What My
    work lists; the end-of-day digest counts them."""
    return (
        restrict(Handoff.objects.all(), user)
        .filter(inbox_q(user) | accepted_q(user))
        .filter(patient__in=team_patients_for(user))
    )


def handoff_actions(*, handoff: Handoff, user: User) -> list[str]:
    """The transitions this user may take on this handoff now (the buttons to show)."""
    if handoff.status not in HANDOFF_OPEN_STATUSES:
        return []
    actions: list[str] = []
    if handoff.status == HandoffStatus.REQUESTED and _handoff_receiver_ok(handoff, user):
        actions += ["accept", "reject"]
    if user.pk in (handoff.to_user_id, handoff.accepted_by_id) and handoff.status != HandoffStatus.REQUESTED:
        if handoff.status == HandoffStatus.ACCEPTED:
            actions.append("start")
        actions.append("complete")
    is_cm = (
        TeamMembership.objects.current()
        .filter(patient_id=handoff.patient_id, user_id=user.pk, role=TeamRole.CASE_MANAGER)
        .exists()
    )
    if user.pk == handoff.from_user_id or is_cm:
        actions.append("cancel")
    return actions
