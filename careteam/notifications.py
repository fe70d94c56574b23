"""Creating, delivering and reading notifications. One row per (recipient, kind, object,
due moment): a second attempt for the same reminder finds the row and does nothing, and
the email goes out at least once per row, again only if the process dies between the mail
server accepting it and the commit of `email_sent_at` (set under a row lock), and always
with the same Message-ID."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import publisher
from .cover import receivers_for
from .models import Notification, NotificationKind, TeamMembership, TeamRole
from .permissions import (
    patient_visible_q,
    sensitivity_visible_q,
    team_members_who_may_see,
    team_members_who_may_see_item,
    team_patients_for,
)
from .prepared import PreparedQuery

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Creating
# ---------------------------------------------------------------------------
# Emails are enqueued in messages of at least EMAIL_CHUNK notification ids, and at most
# EMAIL_MESSAGES messages per batch: a sweep that creates 100,000 reminders publishes 100
# messages of 1,000 ids (each publish costs milliseconds), a small one spreads over workers.
EMAIL_CHUNK = 200
EMAIL_MESSAGES = 100


def notify(
    *,
    recipient,
    kind: str,
    obj,
    patient_id: int | None,
    due_moment: dt.datetime,
    title: str,
    body: str = "",
    url: str = "",
    sensitivity_id: int | None = None,
) -> Notification | None:
    """Create the notification unless it exists, and enqueue its email after commit.
    Returns it if created now, else None. Callers notify only people who can see the
    patient; the email task checks again when it sends."""
    with transaction.atomic():
        notification, created = Notification.objects.get_or_create(
            recipient=recipient,
            kind=kind,
            object_type=obj._meta.label_lower,
            object_id=obj.pk,
            due_moment=due_moment,
            defaults={
                "patient_id": patient_id,
                "title": title[:200],
                "body": body,
                "url": url,
                "sensitivity_id": sensitivity_id,
            },
        )
        if created:
            enqueue_emails([notification.pk])
    return notification if created else None


def auditors() -> QuerySet:
    """Active people who may search the audit log (the security/audit group, by the
    careteam.view_audit_log permission held directly or through a group)."""
    from .models import User

    holds = Q(groups__permissions__codename="view_audit_log") | Q(user_permissions__codename="view_audit_log")
    return User.objects.filter(holds, is_active=True).distinct()


def notify_emergency_access(*, grant) -> int:
    """Emergency access never goes unseen: the patient's case managers are told, else its
    leads, else the auditors (who are off the team: their notification names the patient
    by id only and links to the recent emergency-access report). Returns how many were told."""
    members = (
        TeamMembership.objects.current()
        .filter(patient_id=grant.patient_id, user__is_active=True)
        .exclude(user_id=grant.user_id)
        .select_related("user")
    )
    team = [m.user for m in members if m.role == TeamRole.CASE_MANAGER] or [
        m.user for m in members if m.role == TeamRole.LEAD
    ]
    body = f"Reason given: {grant.reason}. Read-only until {grant.expires_at:%Y-%m-%d %H:%M}."
    for user in {u.pk: u for u in team}.values():
        notify(
            recipient=user,
            kind=NotificationKind.EMERGENCY_ACCESS,
            obj=grant,
            patient_id=grant.patient_id,
            due_moment=grant.started_at,
            title=f"Emergency access to {grant.patient} by {grant.user.display_name}",
            body=body,
        )
    if team:
        return len({u.pk for u in team})
    told = 0
    for user in auditors().exclude(pk=grant.user_id):
        notify(
            recipient=user,
            kind=NotificationKind.EMERGENCY_ACCESS,
            obj=grant,
            patient_id=None,
            due_moment=grant.started_at,
            title=(
                f"Emergency access to patient {grant.patient_id} by {grant.user.display_name}, "
                "who has no case manager or lead to tell"
            ),
            body=f"Read-only until {grant.expires_at:%Y-%m-%d %H:%M}. The reason is in the report.",
            url="/security/emergency-access/recent/",
        )
        told += 1
    if not told:
        logger.warning("emergency access %s on patient %s: nobody to notify", grant.pk, grant.patient_id)
    return told


def _quoted(text: str, limit: int = 60) -> str:
    text = " ".join((text or "").split())
    return f"“{text[: limit - 1]}…”" if len(text) > limit else f"“{text}”"


def handoff_label(handoff) -> str:
    """How a notification names a handoff: its situation, quoted."""
    return f"handoff {_quoted(handoff.situation)}"


def notify_handoff_received(*, handoff) -> int:
    """Tell the receiver (or everyone of the target discipline on the team) about a new
    handoff. Only current team members are addressed, so nobody learns of a patient they
    cannot see."""
    members = TeamMembership.objects.current().filter(patient_id=handoff.patient_id).select_related("user")
    if handoff.to_user_id is not None:
        # to the addressee, or to the colleague covering them today (careteam.cover)
        members = members.filter(user_id=receivers_for([handoff.to_user_id])[handoff.to_user_id])
    else:
        members = members.filter(discipline_id=handoff.to_discipline_id)
    sent = 0
    for user in {m.user for m in members if m.user_id != handoff.from_user_id and m.user.is_active}:
        created = notify(
            recipient=user,
            kind=NotificationKind.HANDOFF_RECEIVED,
            obj=handoff,
            patient_id=handoff.patient_id,
            due_moment=handoff.created_at,
            title=(f"New {handoff_label(handoff)} from {handoff.from_user.display_name} ({handoff.patient})"),
            url=f"/team/handoffs/{handoff.pk}/",
        )
        sent += created is not None
    return sent


HANDOFF_ANSWER_KINDS = {
    "accepted": NotificationKind.HANDOFF_ACCEPTED,
    "rejected": NotificationKind.HANDOFF_REJECTED,
    "completed": NotificationKind.HANDOFF_COMPLETED,
}


def notify_handoff_answered(*, handoff, by, answer: str, at: dt.datetime) -> Notification | None:
    """Close the sender's loop: their handoff was accepted, rejected (with the reason) or
    completed. Only while the sender is still on the patient's team."""
    if handoff.from_user_id == by.pk:
        return None
    if not team_members_who_may_see(handoff.patient_id).filter(pk=handoff.from_user_id).exists():
        return None
    title = f"Handoff {_quoted(handoff.situation)} was {answer} by {by.display_name} ({handoff.patient})"
    if answer == "rejected" and handoff.status_reason:
        title = f"{title}: {handoff.status_reason}"
    return notify(
        recipient=handoff.from_user,
        kind=HANDOFF_ANSWER_KINDS[answer],
        obj=handoff,
        patient_id=handoff.patient_id,
        due_moment=at,
        title=title,
        body=handoff.status_reason if answer == "rejected" else "",
        url=f"/team/handoffs/{handoff.pk}/",
    )


# ---------------------------------------------------------------------------
# Comments and proposals on plan items
# ---------------------------------------------------------------------------
def notify_note_added(*, note, item, label: str, owner_ids, mentioned_ids, url: str) -> int:
    """Tell the item's owners (a comment or a proposed change) and the people mentioned
    in the note, never its author, and only those on the patient's team who may see the
    item (its sensitivity, a goal hidden with its needs). Someone both mentioned and an
    owner gets the mention only. Returns how many were told."""
    patient = note.care_plan.patient
    # whoever is away is told through the colleague covering them (careteam.cover)
    routed = receivers_for({*owner_ids, *mentioned_ids})
    owner_ids = {routed[i] for i in owner_ids}
    mentioned_ids = {routed[i] for i in mentioned_ids}
    wanted = (set(owner_ids) | set(mentioned_ids)) - {note.author_id}
    if not wanted:
        return 0
    audience = team_members_who_may_see_item(patient.pk, item).filter(pk__in=wanted)
    author = note.author.display_name
    what = "Comment on" if note.kind == "comment" else "Change proposed to"
    told = 0
    for user in audience:
        if user.pk in mentioned_ids:
            kind = NotificationKind.NOTE_MENTION
            title = f"{author} mentioned you on {label} ({patient})"
        else:
            kind = NotificationKind.NOTE_COMMENT if note.kind == "comment" else NotificationKind.NOTE_PROPOSAL
            title = f"{what} {label} by {author} ({patient})"
        created = notify(
            recipient=user,
            kind=kind,
            obj=note,
            patient_id=patient.pk,
            due_moment=note.created_at,
            title=title,
            body=note.text,
            url=url,
            sensitivity_id=note.sensitivity_id,
        )
        told += created is not None
    return told


def notify_proposal_decided(*, note, item, label: str, url: str) -> Notification | None:
    """Close the proposer's loop: their proposal was accepted or declined (with the
    reason), while they are still on the team and may see the item. The owners' own
    "change proposed" notifications are marked read: nothing waits for them any more."""
    patient = note.care_plan.patient
    # the owners' "change proposed" notifications asked them to act: read once decided
    Notification.objects.filter(
        object_type=note._meta.label_lower,
        object_id=note.pk,
        kind=NotificationKind.NOTE_PROPOSAL,
        read_at__isnull=True,
    ).update(read_at=note.decided_at)
    if note.author_id == note.decided_by_id:
        return None
    if not team_members_who_may_see_item(patient.pk, item).filter(pk=note.author_id).exists():
        return None
    title = f"Your proposal on {label} was {note.status} by {note.decided_by.display_name} ({patient})"
    if note.status == "declined":
        title = f"{title}: {note.decision_reason}"
    return notify(
        recipient=note.author,
        kind=NotificationKind.PROPOSAL_DECIDED,
        obj=note,
        patient_id=patient.pk,
        due_moment=note.decided_at,
        title=title,
        body=note.decision_reason,
        url=url,
        sensitivity_id=note.sensitivity_id,
    )


# notifications that ask the receiver to act on a handoff: read once it is answered
HANDOFF_WAITING_KINDS = (
    NotificationKind.HANDOFF_RECEIVED,
    NotificationKind.HANDOFF_UNACKNOWLEDGED,
    NotificationKind.HANDOFF_DUE_SOON,
    NotificationKind.HANDOFF_OVERDUE_RECEIVER,
)


def handoff_notifications_mark_read(*, handoff, user=None) -> int:
    """The handoff was acted on: its "new handoff" reminders are read (the actor's, or
    without a user everyone's: a queue handoff one colleague accepted waits for no one)."""
    qs = Notification.objects.filter(
        object_type=handoff._meta.label_lower,
        object_id=handoff.pk,
        kind__in=HANDOFF_WAITING_KINDS,
        read_at__isnull=True,
    )
    if user is not None:
        qs = qs.filter(recipient_id=user.pk)
    return qs.update(read_at=timezone.now())


# ---------------------------------------------------------------------------
# Conversations
# ---------------------------------------------------------------------------
def notify_conversation_mention(*, message, recipients, sensitivity_id: int | None, url: str) -> int:
    """Tell each person mentioned in a message (by name or through their discipline's
    queue). The caller passes exactly those mentioned who may see the conversation
    (`careteam.permissions.conversation_audience`), never the author. Returns how many
    were told now (a repeat of the same message's mention is one row)."""
    conversation = message.conversation
    patient = conversation.patient
    author = message.author.display_name
    told = 0
    for user in recipients:
        created = notify(
            recipient=user,
            kind=NotificationKind.CONVERSATION_MENTION,
            obj=message,
            patient_id=patient.pk,
            due_moment=message.created_at,
            title=f"{author} mentioned you in {_quoted(conversation.subject)} ({patient})",
            body=message.text,
            url=url,
            sensitivity_id=sensitivity_id,
        )
        told += created is not None
    return told


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
def notifications_for(user) -> QuerySet:
    """The user's own notifications, hiding any about a patient they can no longer see
    and any naming an item of a sensitivity they may no longer see."""
    user = getattr(user, "_wrapped", user)
    return (
        Notification.objects.filter(recipient_id=user.pk)
        .filter(Q(patient__isnull=True) | patient_visible_q(user, "patient"))
        .filter(Q(sensitivity__isnull=True) | sensitivity_visible_q(user, "patient", "sensitivity"))
    )


UNREAD = PreparedQuery(lambda user: notifications_for(user).filter(read_at__isnull=True).values_list("pk"))


def unread_count(user) -> int:
    """The number in the nav's Inbox link (on every page: its SQL is built once)."""
    return UNREAD.count(user)


def notification_open(*, user, notification_id) -> Notification:
    """One of the user's notifications, marked read (Notification.DoesNotExist if it is
    not theirs or no longer visible to them)."""
    n = notifications_for(user).get(pk=int(notification_id))
    if n.read_at is None:
        n.read_at = timezone.now()
        Notification.objects.filter(pk=n.pk, read_at__isnull=True).update(read_at=n.read_at)
    return n


def notification_mark_read(*, user, notification_id: int | None = None) -> int:
    """Mark one (or, without an id, all) of the user's notifications read. Returns rows changed."""
    qs = Notification.objects.filter(recipient_id=user.pk, read_at__isnull=True)
    if notification_id is not None:
        qs = qs.filter(pk=notification_id)
    return qs.update(read_at=timezone.now())


# ---------------------------------------------------------------------------
# Email delivery (called by the Celery task; idempotent)
# ---------------------------------------------------------------------------
def _test_delay() -> float:
    """Seconds to pause before sending; only the worker-kill integration test sets it."""
    return float(os.environ.get("CARETEAM_EMAIL_TEST_DELAY", "0") or 0)


def notification_message_id(notification: Notification) -> str:
    """The email's Message-ID, derived from the notification alone: every send of the same
    notification carries the same one, so a mail client shows a repeat once."""
    epoch = int(notification.due_moment.timestamp())
    return f"<notification-{notification.pk}.{epoch}@{settings.EMAIL_MESSAGE_ID_DOMAIN}>"


def notification_email_send(*, notification_id: int) -> bool:
    """Send the notification's email unless it was sent already. At least once: the row is
    locked and `email_sent_at` written (uncommitted) before the SMTP send, so a redelivered
    or duplicate task waits and then finds it set, a failed send rolls the mark back, and
    only the COMMIT lies between the server accepting the message and the record of it. A
    process that dies in that window sends it again, with the same Message-ID.
    The email names no patient and carries no clinical text: it says what kind of thing
    there is to read and links to it (SITE_URL), behind the sign-in."""
    handled = Q(email_sent_at__isnull=False) | Q(email_skipped_at__isnull=False)
    if Notification.objects.filter(handled, pk=notification_id).exists():
        return False
    with transaction.atomic():
        n = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("recipient")
            .filter(pk=notification_id)
            .first()
        )
        if n is None or n.email_handled:
            return False
        user = n.recipient
        if not user.is_active or not user.email:
            return False
        if n.patient_id is not None and not team_patients_for(user).filter(pk=n.patient_id).exists():
            logger.info("notification %s not emailed: recipient no longer on the patient's team", n.pk)
            return False
        if delay := _test_delay():
            time.sleep(delay)
        link = f"{settings.SITE_URL}/team/notifications/{n.pk}/"
        if user.kind == "partner":
            # partners keep to their own pages: the link opens the referral there
            link = f"{settings.SITE_URL}{n.url or '/partner/'}"
        message = EmailMessage(
            subject=f"CareTeam: {n.get_kind_display()}",
            body=(
                f"You have a new notification in CareTeam: {n.get_kind_display()}.\n"
                f"Sign in to read it: {link}\n"
            ),
            to=[user.email],
            headers={"Message-ID": notification_message_id(n), "X-CareTeam-Notification": str(n.pk)},
        )
        # marked before the send, under the row lock: should the send raise, the
        # transaction rolls the mark back and the task (or the sweep) sends it again
        n.email_sent_at = timezone.now()
        n.save(update_fields=["email_sent_at"])
        message.send()
    return True


# ---------------------------------------------------------------------------
# Referrals answered by the receiving service (referrals/partners.py)
# ---------------------------------------------------------------------------
def notify_referral_referrer(
    *, referral, obj, kind: str, title: str, body: str = "", sensitivity_id: int | None = None
) -> Notification | None:
    """Tell the referrer what the service did with their referral (`obj`: the logged
    event or the message, so each change is one notification), while they are still on
    the patient's team and may see the need it was made from."""
    if (
        not team_members_who_may_see(referral.patient_id, sensitivity_id)
        .filter(pk=referral.referred_by_id)
        .exists()
    ):
        return None
    return notify(
        recipient=referral.referred_by,
        kind=kind,
        obj=obj,
        patient_id=referral.patient_id,
        due_moment=getattr(obj, "at", None) or obj.created_at,
        title=title,
        body=body,
        url=f"/referrals/{referral.pk}/",
        sensitivity_id=sensitivity_id,
    )


def notify_partner_staff(*, recipients, obj, kind: str, title: str, url: str) -> int:
    """Tell an organisation's partner staff (a message from the referrer). Partner
    notifications name no patient record (patient empty): partners never see the chart."""
    told = 0
    for user in recipients:
        created = notify(
            recipient=user,
            kind=kind,
            obj=obj,
            patient_id=None,
            due_moment=getattr(obj, "at", None) or obj.created_at,
            title=title,
            url=url,
        )
        told += created is not None
    return told


def enqueue_emails(ids: list[int]) -> None:
    """After commit, enqueue email delivery for these notifications (one task for one
    notification, chunked tasks for a batch) on the background publisher: the caller never
    waits on the broker. A broker failure is logged, never raised: the save has succeeded,
    the notification row stays unsent, and the sweep re-enqueues it after the grace period."""
    ids = list(ids)

    def publish() -> None:
        if len(ids) == 1:
            publisher.send_task("careteam.send_notification_email", [ids[0]])
        else:
            chunk = max(EMAIL_CHUNK, -(-len(ids) // EMAIL_MESSAGES))
            for start in range(0, len(ids), chunk):
                publisher.send_task("careteam.send_notification_emails", [ids[start : start + chunk]])

    transaction.on_commit(lambda: publisher.submit(publish, f"{len(ids)} notification email(s)"))
