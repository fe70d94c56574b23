"""Writes of the portal: what the patient and family do there, and what staff do for it
(the invitation, sharing an item). Every write is audited with the patient; the case
manager is notified of what asks for the team's answer."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode
from django.utils.translation import gettext as _

from careplans import screening
from careplans.models import (
    STATEMENT_MAX_LENGTH,
    Activity,
    ActivityStatus,
    ExpressedBy,
    Goal,
    GoalAchievement,
    GoalLifecycle,
    GoalPriority,
)
from careteam.audit import audit
from careteam.concurrency import lock_for_update, save_versioned
from careteam.models import (
    MESSAGE_MAX_LENGTH,
    AccountKind,
    AuditAction,
    Conversation,
    Message,
    NotificationKind,
    TeamMembership,
    TeamRole,
    User,
)
from careteam.notifications import notify
from patients.models import (
    Caregiver,
    CaregiverAccess,
    Consent,
    ConsentMethod,
    ConsentScope,
    ConsentStatus,
    Patient,
)

from . import selectors
from .access import ACT, MANAGE_CAREGIVERS, MESSAGE, PortalAccess

WHAT_MATTERS_MAX_LENGTH = 1000
# the progress a patient may mark on their goal
PORTAL_ACHIEVEMENTS = (
    GoalAchievement.IN_PROGRESS,
    GoalAchievement.IMPROVING,
    GoalAchievement.NO_CHANGE,
    GoalAchievement.WORSENING,
    GoalAchievement.ACHIEVED,
)
PATIENT_THREAD_SUBJECT = "Messages with the patient and family"


# ---------------------------------------------------------------------------
# Whom the team side hears from
# ---------------------------------------------------------------------------
def case_managers(patient_id: int):
    """Active case managers on the patient's team today (the plan lead when there is none)."""
    current = TeamMembership.objects.current().filter(patient_id=patient_id, user__is_active=True)
    ids = list(current.filter(role=TeamRole.CASE_MANAGER).values_list("user_id", flat=True))
    if not ids:
        ids = list(current.filter(role=TeamRole.LEAD).values_list("user_id", flat=True))
    return User.objects.filter(pk__in=ids)


def _notify_team(
    *,
    patient: Patient,
    kind: str,
    obj,
    title: str,
    url: str,
    at: dt.datetime,
    sensitivity_id: int | None = None,
) -> int:
    sent = 0
    for recipient in case_managers(patient.pk):
        if notify(
            recipient=recipient,
            kind=kind,
            obj=obj,
            patient_id=patient.pk,
            due_moment=at,
            title=f"{title} ({patient.family_name}, {patient.given_name})",
            url=url,
            sensitivity_id=sensitivity_id,
        ):
            sent += 1
    return sent


def _who(access: PortalAccess) -> str:
    caregiver = access.caregiver  # None for the patient (PortalAccess.is_patient)
    return "the patient" if caregiver is None else f"caregiver {caregiver.name}"


def _chart_url(patient: Patient) -> str:
    return reverse("patient_chart", kwargs={"patient_id": patient.pk})


# ---------------------------------------------------------------------------
# What the patient and family do
# ---------------------------------------------------------------------------
@transaction.atomic
def what_matters_add(*, access: PortalAccess, by: User, text: str, request=None) -> Patient:
    """Add the patient's own words to "what matters to me" (kept as written, after what
    is there; a new version of the patient in its history)."""
    access.require(ACT)
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("Write what matters to you.")})
    if len(text) > WHAT_MATTERS_MAX_LENGTH:
        raise ValidationError(
            {"text": _("Keep it to %(n)d characters or fewer.") % {"n": WHAT_MATTERS_MAX_LENGTH}}
        )
    patient = lock_for_update(access.patient, None)
    patient.preferences = f"{patient.preferences}\n\n{text}".strip() if patient.preferences else text
    save_versioned(patient, expected_version=None, update_fields=["preferences", "updated_at"])
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=patient,
        patient=patient,
        request=request,
        detail=f"portal: what matters added by {_who(access)}",
    )
    access.patient = patient
    return patient


@transaction.atomic
def goal_propose(*, access: PortalAccess, by: User, description: str, request=None) -> Goal:
    """A goal in the patient's (or family's) own words: a proposed goal on the plan,
    expressed by them, for the case manager to accept (the plan editor's usual
    proposed -> accepted step). The case manager is notified."""
    access.require(ACT)
    description = " ".join((description or "").split())
    if not description:
        raise ValidationError({"description": _("Write the goal in your own words.")})
    if len(description) > STATEMENT_MAX_LENGTH:
        raise ValidationError(
            {"description": _("Keep it to %(n)d characters or fewer.") % {"n": STATEMENT_MAX_LENGTH}}
        )
    plan = selectors.portal_plan_of(access.patient)
    if plan is None:
        raise ValidationError({"description": _("Your team has not started your plan yet.")})
    goal = Goal(
        care_plan=plan,
        description=description,
        expressed_by=ExpressedBy.PATIENT if access.is_patient else ExpressedBy.FAMILY,
        priority=GoalPriority.MEDIUM,
        lifecycle_status=GoalLifecycle.PROPOSED,
        created_by=by,
        shared_with_patient=True,
    )
    goal.full_clean(exclude=["care_plan", "created_by", "owner_discipline", "sensitivity"])
    goal.save()
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=goal,
        patient=access.patient,
        request=request,
        detail=f"portal: goal proposed by {_who(access)}",
    )
    _notify_team(
        patient=access.patient,
        kind=NotificationKind.PORTAL_GOAL_PROPOSED,
        obj=goal,
        title=f"Goal proposed by {_who(access)}: “{description[:60]}”",
        url=reverse("careplans:goal_detail", kwargs={"goal_id": goal.pk}),
        at=goal.created_at,
    )
    return goal


@transaction.atomic
def goal_progress(
    *, access: PortalAccess, by: User, goal_id, achievement: str, expected_version: int | None, request=None
) -> Goal:
    """The patient marks how their goal is going (the goal's achievement status)."""
    access.require(ACT)
    goal = selectors.portal_goal(access, goal_id)
    if goal is None:
        raise PermissionDenied(_("No such goal."))
    if goal.lifecycle_status not in selectors.PROGRESS_GOAL_STATUSES:
        raise ValidationError({"achievement": _("The team has not taken this goal on yet.")})
    if achievement not in PORTAL_ACHIEVEMENTS:
        raise ValidationError({"achievement": _("Choose how it is going.")})
    goal = lock_for_update(goal, expected_version)
    if goal.achievement_status == achievement:
        return goal
    goal.achievement_status = achievement
    save_versioned(
        goal, expected_version=expected_version, update_fields=["achievement_status", "updated_at"]
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=goal,
        patient=access.patient,
        request=request,
        detail=f"portal: progress {achievement} marked by {_who(access)}",
    )
    return goal


@transaction.atomic
def activity_done(
    *, access: PortalAccess, by: User, activity_id, expected_version: int | None, request=None
) -> Activity:
    """The patient or family marks an activity that is theirs to do as done ("I booked
    the appointment")."""
    access.require(ACT)
    activity = selectors.portal_activity(access, activity_id)
    if activity is None or not activity.for_patient:
        raise PermissionDenied(_("No such activity."))
    activity = lock_for_update(activity, expected_version)
    if activity.status == ActivityStatus.COMPLETED:
        return activity
    if activity.status not in selectors.PORTAL_ACTIVITY_OPEN:
        raise ValidationError({"activity": _("This activity is closed.")})
    activity.status = ActivityStatus.COMPLETED
    activity.status_reason = f"Marked done in the portal by {_who(access)}"[:300]
    save_versioned(
        activity, expected_version=expected_version, update_fields=["status", "status_reason", "updated_at"]
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=activity,
        patient=access.patient,
        request=request,
        detail=f"portal: activity done, marked by {_who(access)}",
    )
    return activity


def patient_conversation_get_or_create(*, patient: Patient, by: User) -> Conversation:
    """The patient's one thread with the team (the unique key keeps it one)."""
    conversation = selectors.patient_conversation(patient)
    if conversation is not None:
        return conversation
    conversation, _created = Conversation.objects.get_or_create(
        patient=patient,
        with_patient=True,
        defaults={"subject": PATIENT_THREAD_SUBJECT, "started_by": by},
    )
    return conversation


@transaction.atomic
def message_send(*, access: PortalAccess, by: User, text: str, request=None) -> Message:
    """ "Ask the team": the message arrives in the patient's thread with the team, shown
    there as from the patient or the caregiver; the case manager is notified, and
    reminded once if nobody replies "to patient" in time (portal/reminder_rules.py)."""
    access.require(MESSAGE)
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("Write your message.")})
    if len(text) > MESSAGE_MAX_LENGTH:
        raise ValidationError(
            {"text": _("Keep it to %(n)d characters or fewer.") % {"n": MESSAGE_MAX_LENGTH}}
        )
    conversation = patient_conversation_get_or_create(patient=access.patient, by=by)
    now = timezone.now()
    message = Message.objects.create(conversation=conversation, author=by, text=text, created_at=now)
    Conversation.objects.filter(pk=conversation.pk).update(
        last_message=message, last_message_at=now, messages_changed_at=now
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=message,
        patient=access.patient,
        request=request,
        detail=f"portal: message from {_who(access)}",
    )
    _notify_team(
        patient=access.patient,
        kind=NotificationKind.PORTAL_MESSAGE,
        obj=message,
        title=f"Message from {_who(access)}",
        url=reverse(
            "conversations:detail",
            kwargs={"patient_id": access.patient.pk, "conversation_id": conversation.pk},
        ),
        at=now,
    )
    return message


@transaction.atomic
def caregiver_access_grant(
    *, access: PortalAccess, by: User, caregiver_id, level: str, request=None
) -> Consent:
    """The patient gives one of their caregivers access in the portal: a consent of scope
    "caregiver" naming them, given in the portal. The case manager is notified."""
    access.require(MANAGE_CAREGIVERS)
    today = timezone.localdate()
    caregiver = (
        Caregiver.objects.filter(patient_id=access.patient.pk, pk=_int(caregiver_id))
        .exclude(end_date__lt=today)
        .first()
    )
    errors = {}
    if caregiver is None:
        errors["caregiver"] = _("Choose one of your caregivers.")
    if level not in CaregiverAccess.values:
        errors["level"] = _("Choose what they may do.")
    if errors or caregiver is None:
        raise ValidationError(errors)
    consent = Consent.objects.create(
        patient=access.patient,
        scope=ConsentScope.CAREGIVER,
        status=ConsentStatus.ACTIVE,
        date_given=today,
        given_by=access.patient.full_name,
        recorded_by=by,
        method=ConsentMethod.PORTAL,
        caregiver=caregiver,
        caregiver_access=level,
        note="Given by the patient in the portal",
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=consent,
        patient=access.patient,
        request=request,
        detail=f"portal: caregiver access ({level}) given to {caregiver.name}",
    )
    _notify_team(
        patient=access.patient,
        kind=NotificationKind.PORTAL_CAREGIVER_ACCESS,
        obj=consent,
        title=f"The patient gave {caregiver.name} access to the portal",
        url=reverse("patient_consents", kwargs={"patient_id": access.patient.pk}),
        at=consent.created_at,
    )
    return consent


@transaction.atomic
def caregiver_access_revoke(
    *, access: PortalAccess, by: User, consent_id, expected_version: int | None, request=None
) -> Consent:
    """The patient ends a caregiver's access: the consent naming them is revoked now, so
    the caregiver's next request finds nothing. The case manager is notified."""
    access.require(MANAGE_CAREGIVERS)
    consent = Consent.objects.filter(
        patient_id=access.patient.pk, pk=_int(consent_id), scope=ConsentScope.CAREGIVER
    ).first()
    if consent is None:
        raise PermissionDenied(_("No such consent."))
    consent = lock_for_update(consent, expected_version)
    if consent.revoked_at is not None:
        return consent
    consent.status = ConsentStatus.INACTIVE
    consent.revoked_at = timezone.now()
    consent.revoked_by = by
    consent.revoke_reason = "Revoked by the patient in the portal"
    save_versioned(consent, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=consent,
        patient=access.patient,
        request=request,
        detail="portal: caregiver access revoked by the patient",
    )
    name = consent.caregiver.name if consent.caregiver is not None else "a caregiver"
    _notify_team(
        patient=access.patient,
        kind=NotificationKind.PORTAL_CAREGIVER_ACCESS,
        obj=consent,
        title=f"The patient ended {name}'s access to the portal",
        url=reverse("patient_consents", kwargs={"patient_id": access.patient.pk}),
        at=consent.revoked_at,
    )
    return consent


@transaction.atomic
def questionnaire_answer(
    *, access: PortalAccess, by: User, assignment_id, data, expected_version: int | None, request=None
) -> screening.SaveResult:
    """The patient (or a caregiver acting for them) answers a questionnaire the team
    asked for. The screening service parses, scores and proposes needs exactly as for a
    screening entered by staff; the case manager is notified once (the answer is
    refused a second time, and the notification's key holds it to one)."""
    access.require(ACT)
    assignment = selectors.portal_assignment(access, assignment_id)
    if assignment is None:
        raise PermissionDenied(_("No such questionnaire."))
    result = screening.assignment_answer(
        assignment=assignment,
        by=by,
        answered_by=access.sender_kind,
        answerer_name=access.caregiver.name if access.caregiver is not None else "",
        data=data,
        expected_version=expected_version,
        request=request,
    )
    response = result.response
    sensitive = response.sensitivity_id is not None
    # a sensitive instrument is not named: the title is the part every reader sees
    what = "A questionnaire" if sensitive else response.questionnaire.title
    proposed = len(result.proposals)
    title = f"{what} answered by {_who(access)}: {proposed} need{'s' if proposed != 1 else ''} proposed"
    if result.urgent:
        title = f"Same-day safety follow-up: {title}"
    _notify_team(
        patient=access.patient,
        kind=NotificationKind.PORTAL_QUESTIONNAIRE_ANSWERED,
        obj=result.assignment,
        title=title,
        url=reverse("careplans:screening_detail", kwargs={"screening_id": response.pk}),
        at=response.completed_at or timezone.now(),
        sensitivity_id=response.sensitivity_id,
    )
    return result


@transaction.atomic
def consent_confirm(
    *, access: PortalAccess, by: User, consent_id, expected_version: int | None, request=None
) -> Consent:
    """The patient (or a caregiver acting for them) confirms a consent the team recorded
    as awaiting their confirmation: it is in force from now on. A consent naming a
    caregiver is the patient's own to confirm. The case manager is notified."""
    access.require(ACT)
    consent = selectors.portal_consent(access, consent_id)
    if consent is None:
        raise PermissionDenied(_("No such consent."))
    if consent.scope == ConsentScope.CAREGIVER:
        access.require(MANAGE_CAREGIVERS)
    consent = lock_for_update(consent, expected_version)
    if consent.status != ConsentStatus.PROPOSED or consent.revoked_at is not None:
        raise ValidationError({"consent": _("This consent is not waiting for your confirmation.")})
    today = timezone.localdate()
    if consent.expires_on is not None and consent.expires_on < today:
        raise ValidationError({"consent": _("This consent has already ended; ask your team about it.")})
    consent.status = ConsentStatus.ACTIVE
    consent.note = f"{consent.note}\n" if consent.note else ""
    consent.note += f"Confirmed in the portal by {_who(access)} on {today.isoformat()}"
    save_versioned(consent, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=consent,
        patient=access.patient,
        request=request,
        detail=f"portal: consent {consent.scope} confirmed by {_who(access)}",
    )
    _notify_team(
        patient=access.patient,
        kind=NotificationKind.PORTAL_CONSENT_CONFIRMED,
        obj=consent,
        title=f"Consent confirmed by {_who(access)}: {consent.get_scope_display()}",
        url=reverse("patient_consents", kwargs={"patient_id": access.patient.pk}),
        at=timezone.now(),
    )
    return consent


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------------------
# Invitations: a one-time link to set a password (72 hours, single use)
# ---------------------------------------------------------------------------
class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """Django's password-reset tokens with their own salt and lifetime
    (PORTAL_INVITATION_HOURS): the token hashes the password and the last sign-in, so it
    stops working once the password is set (single use)."""

    key_salt = "careteam.portal.InvitationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        return f"{super()._make_hash_value(user, timestamp)}{user.is_active}{user.kind}"

    def check_token(self, user, token):
        if not (user and token):
            return False
        try:
            ts_b36, _hash = token.split("-")
            ts = base36_to_int(ts_b36)
        except ValueError:
            return False
        for secret in [self.secret, *self.secret_fallbacks]:
            if constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token):
                break
        else:
            return False
        return (self._num_seconds(self._now()) - ts) <= settings.PORTAL_INVITATION_HOURS * 3600


invitation_tokens = InvitationTokenGenerator()


def invitation_url(user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    path = reverse("portal:welcome", kwargs={"uidb64": uid, "token": invitation_tokens.make_token(user)})
    return settings.SITE_URL.rstrip("/") + path


def _username_for(email: str) -> str:
    base = email.split("@")[0][:100] or "portal"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


@transaction.atomic
def portal_invite(*, access, by: User, email: str, caregiver=None, request=None) -> tuple[User, str]:
    """Invite the patient (or one of their caregivers) to the portal: an account of the
    right kind linked to the record, and an email with a one-time link to set a password.
    Only the case manager or the plan lead invites. Inviting again sends a new link
    (an account whose password is set keeps it: the link then signs nobody in)."""
    access.require_manage_team()
    email = (email or "").strip()
    if not email or "@" not in email or len(email) > 254:
        raise ValidationError({"email": "Enter the email address to send the invitation to."})
    patient = access.patient
    if caregiver is not None:
        if caregiver.patient_id != patient.pk:
            raise PermissionDenied("No such caregiver.")
        account = caregiver.account
        kind = AccountKind.CAREGIVER
    else:
        account = patient.account
        kind = AccountKind.PATIENT
    if account is None:
        taken = User.objects.filter(email__iexact=email, kind=kind)
        account = taken.first() if kind == AccountKind.CAREGIVER else None
        if account is None:
            if User.objects.filter(email__iexact=email).exclude(kind=kind).exists() or (
                kind == AccountKind.PATIENT and taken.exists()
            ):
                raise ValidationError({"email": "Another account uses this email address."})
            account = User(username=_username_for(email), email=email, kind=kind)
            if caregiver is None:
                account.first_name, account.last_name = patient.given_name, patient.family_name
            else:
                account.first_name = caregiver.name[:150]
            account.set_unusable_password()
            account.save()
        if caregiver is not None:
            Caregiver.objects.filter(pk=caregiver.pk).update(account=account)
        else:
            Patient.objects.filter(pk=patient.pk).update(account=account)
    elif account.email.lower() != email.lower():
        User.objects.filter(pk=account.pk).update(email=email)
        account.email = email
    url = invitation_url(account)
    who = patient.full_name if caregiver is None else f"{caregiver.name}, for {patient.full_name}"
    send_mail(
        subject="Your CareTeam plan: set your password",
        message=(
            f"Hello {account.first_name or who},\n\n"
            f"Your care team invites you to see {'your' if caregiver is None else 'the'} care plan "
            f"online ({who}). Open this link to set your password; it works once, for "
            f"{settings.PORTAL_INVITATION_HOURS} hours:\n\n{url}\n\n"
            f"Your username is: {account.username}\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[email],
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=account,
        patient=patient,
        request=request,
        detail=f"portal invitation sent to the {'patient' if caregiver is None else 'caregiver'}",
    )
    return account, url


@transaction.atomic
def invitation_accept(*, user: User, password: str, request=None) -> User:
    """Set the invited account's password (the token was checked by the caller); the
    token stops working with it."""
    user.set_password(password)
    user.save(update_fields=["password"])
    patient = Patient.objects.filter(account_id=user.pk).first()
    if patient is None:
        link = Caregiver.objects.filter(account_id=user.pk).order_by("id").first()
        patient = link.patient if link else None
    audit(
        user=user,
        action=AuditAction.UPDATE,
        obj=user,
        patient=patient,
        request=request,
        detail="portal invitation accepted: password set",
    )
    return user


# ---------------------------------------------------------------------------
# Staff: sharing one item with the patient
# ---------------------------------------------------------------------------
@transaction.atomic
def item_share(*, access, by: User, item, shared: bool, expected_version: int | None, request=None):
    """Show (or stop showing) a goal, need or activity in the portal. A sensitive item is
    shared only by someone the policy lets see its category (and edit the item), and
    only in that category: re-filed elsewhere later, it is hidden again."""
    access.require_edit(item)
    item = lock_for_update(item, expected_version)
    if shared and item.sensitivity_id is not None and not access.can_see_sensitivity(item.sensitivity_id):
        raise PermissionDenied("Only a clinician the policy allows can share a sensitive item.")
    item.shared_with_patient = shared
    item.shared_sensitivity_id = item.sensitivity_id if shared else None
    save_versioned(
        item,
        expected_version=expected_version,
        update_fields=["shared_with_patient", "shared_sensitivity", "updated_at"],
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=item,
        patient=access.patient,
        request=request,
        detail="shared with the patient" if shared else "no longer shared with the patient",
    )
    return item
