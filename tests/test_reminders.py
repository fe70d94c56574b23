"""The reminder sweep: what is due becomes exactly one notification per (recipient, kind,
object, due moment), only for people who can see the patient, in a fixed number of queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from careteam import handoffs as handoff_services
from careteam import services as team_services
from careteam.models import Handoff, Notification, NotificationKind
from careteam.notifications import notification_email_send, notifications_for
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _thresholds(settings):
    settings.HANDOFF_ACK_REMINDER_MINUTES = 30
    settings.HANDOFF_DUE_SOON_MINUTES = 60
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _handoff(world, *, to_user=None, to_discipline=None, age_minutes=45, due_in_minutes=600, status=None):
    h = handoff_services.handoff_create(
        by=world.lead,
        access=patient_access(world.lead, world.patient),
        to_user=to_user,
        to_discipline=to_discipline,
        due_at=timezone.now() + dt.timedelta(minutes=due_in_minutes),
        situation="Discharged today",
        background="CHF, new diuretic",
        assessment="Stable",
        recommendation="Visit within 48h",
    )
    Handoff.objects.filter(pk=h.pk).update(created_at=timezone.now() - dt.timedelta(minutes=age_minutes))
    h.refresh_from_db()
    return h


def _reminders(kind=None):
    qs = Notification.objects.exclude(kind=NotificationKind.HANDOFF_RECEIVED)
    return qs.filter(kind=kind) if kind else qs


def test_unacknowledged_handoff_past_threshold_gets_exactly_one_reminder(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=45)
    first = reminders_sweep()
    second = reminders_sweep()
    rows = list(_reminders(NotificationKind.HANDOFF_UNACKNOWLEDGED))
    assert [(n.recipient_id, n.object_id) for n in rows] == [(world.nurse.pk, h.pk)]
    assert rows[0].due_moment == h.created_at + dt.timedelta(minutes=30)
    assert first.created[NotificationKind.HANDOFF_UNACKNOWLEDGED] == 1
    assert second.total == 0


def test_handoff_younger_than_threshold_gets_no_reminder(world):
    _handoff(world, to_user=world.nurse, age_minutes=10)
    reminders_sweep()
    assert not _reminders().exists()


def test_accepted_handoff_gets_no_acknowledgement_reminder(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=45)
    handoff_services.handoff_accept(access=patient_access(world.nurse, h.patient), handoff=h, by=world.nurse)
    reminders_sweep()
    assert not _reminders(NotificationKind.HANDOFF_UNACKNOWLEDGED).exists()


def test_discipline_queue_reminder_reaches_every_member_of_that_discipline_on_the_team_only(world):
    second_nurse = f.UserFactory(username="nurse3", disciplines=["nursing"])
    team_services.membership_add(
        patient=world.patient,
        user=second_nurse,
        discipline=f.discipline("nursing"),
        start_date=timezone.localdate() - dt.timedelta(days=3),
    )
    _handoff(world, to_discipline=f.discipline("nursing"), age_minutes=45)
    reminders_sweep()
    recipients = set(
        _reminders(NotificationKind.HANDOFF_UNACKNOWLEDGED).values_list("recipient_id", flat=True)
    )
    assert recipients == {world.nurse.pk, second_nurse.pk}
    assert world.outsider.pk not in recipients and world.other_team_nurse.pk not in recipients


def test_receiver_who_left_the_team_is_not_reminded_about_the_patient(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=45)
    membership = world.nurse.memberships.get(patient=world.patient)
    team_services.membership_end(membership=membership)
    reminders_sweep()
    assert not _reminders().filter(recipient=world.nurse).exists()
    assert h.pk  # the handoff itself is untouched


def test_due_soon_reminder_before_the_due_time_and_escalation_to_case_manager_when_overdue(world):
    soon = _handoff(world, to_user=world.nurse, age_minutes=5, due_in_minutes=30)
    late = _handoff(world, to_user=world.pharmacist, age_minutes=5, due_in_minutes=-10)
    reminders_sweep()
    due_soon = _reminders(NotificationKind.HANDOFF_DUE_SOON).get()
    assert (due_soon.recipient_id, due_soon.object_id) == (world.nurse.pk, soon.pk)
    assert due_soon.due_moment == soon.due_at - dt.timedelta(minutes=60)
    escalation = _reminders(NotificationKind.HANDOFF_OVERDUE_ESCALATION).get()
    assert (escalation.recipient_id, escalation.object_id) == (world.case_manager.pk, late.pk)
    assert escalation.due_moment == late.due_at


def test_sweep_that_was_down_for_an_hour_catches_up_each_reminder_once(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=120, due_in_minutes=-60)
    reminders_sweep()
    reminders_sweep()
    kinds = sorted(_reminders().filter(object_id=h.pk).values_list("kind", flat=True))
    # acknowledgement reminder, escalation and the sender's notice; the "due soon" the gap
    # spanned comes to the receiver as "overdue" instead
    assert kinds == sorted(
        [
            NotificationKind.HANDOFF_UNACKNOWLEDGED,
            NotificationKind.HANDOFF_OVERDUE_RECEIVER,
            NotificationKind.HANDOFF_OVERDUE_ESCALATION,
            NotificationKind.HANDOFF_SENT_OVERDUE,
        ]
    )


def test_gap_spanning_the_due_time_still_tells_the_receiver_once(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=5, due_in_minutes=-10)
    reminders_sweep()
    reminders_sweep()
    overdue = list(_reminders(NotificationKind.HANDOFF_OVERDUE_RECEIVER))
    assert [(n.recipient_id, n.object_id, n.due_moment) for n in overdue] == [
        (world.nurse.pk, h.pk, h.due_at)
    ]
    assert overdue[0].title == "Handoff “Discharged today” is overdue (Team, Alice)"
    escalation = _reminders(NotificationKind.HANDOFF_OVERDUE_ESCALATION).get()
    assert (escalation.recipient_id, escalation.object_id) == (world.case_manager.pk, h.pk)
    assert not _reminders(NotificationKind.HANDOFF_DUE_SOON).exists()


def test_receiver_told_due_soon_is_not_told_again_when_it_is_overdue(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=5, due_in_minutes=30)
    reminders_sweep()
    assert _reminders(NotificationKind.HANDOFF_DUE_SOON).get().recipient_id == world.nurse.pk
    reminders_sweep(now=h.due_at + dt.timedelta(minutes=5))
    assert not _reminders(NotificationKind.HANDOFF_OVERDUE_RECEIVER).exists()
    assert _reminders(NotificationKind.HANDOFF_OVERDUE_ESCALATION).get().recipient_id == world.case_manager.pk


def test_overdue_queue_handoff_tells_every_member_of_the_discipline_once(world):
    second_nurse = f.UserFactory(username="nurse3", disciplines=["nursing"])
    team_services.membership_add(
        patient=world.patient,
        user=second_nurse,
        discipline=f.discipline("nursing"),
        start_date=timezone.localdate() - dt.timedelta(days=3),
    )
    _handoff(world, to_discipline=f.discipline("nursing"), age_minutes=5, due_in_minutes=-10)
    reminders_sweep()
    reminders_sweep()
    recipients = _reminders(NotificationKind.HANDOFF_OVERDUE_RECEIVER).values_list("recipient_id", flat=True)
    assert sorted(recipients) == sorted([world.nurse.pk, second_nurse.pk])


def test_answering_a_handoff_marks_its_overdue_reminder_read(world):
    h = _handoff(world, to_user=world.nurse, age_minutes=5, due_in_minutes=-10)
    reminders_sweep()
    handoff_services.handoff_accept(access=patient_access(world.nurse, h.patient), handoff=h, by=world.nurse)
    assert _reminders(NotificationKind.HANDOFF_OVERDUE_RECEIVER).get().read_at is not None


def test_overdue_activity_reminds_its_assignee_and_unassigned_reminds_the_owning_discipline(world):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    assigned = f.ActivityFactory(
        care_plan=world.plan,
        assigned_to=world.pharmacist,
        due_date=yesterday,
        owner_discipline=f.discipline("pharmacy"),
    )
    unassigned = f.ActivityFactory(care_plan=world.plan, due_date=yesterday)
    f.ActivityFactory(care_plan=world.plan, due_date=timezone.localdate())  # due today: not yet
    reminders_sweep()
    got = set(_reminders(NotificationKind.ACTIVITY_OVERDUE).values_list("recipient_id", "object_id"))
    assert got == {(world.pharmacist.pk, assigned.pk), (world.nurse.pk, unassigned.pk)}


@pytest.mark.django_db(transaction=True)
def test_next_sweep_neither_locks_nor_repeats_what_was_already_reminded(world):
    """The steady-state sweep skips overdue objects already reminded for their due moment
    before locking them, so a clinician saving such an activity while the sweep runs is
    not queued behind it; a new due date is a new due moment and a new reminder."""
    from careplans.models import Activity

    def row_locker() -> int:
        # a row lock leaves the locker's transaction id in the row version's xmax (each sweep
        # commits here, so a later UPDATE writes a version with none)
        with connection.cursor() as cursor:
            cursor.execute("SELECT xmax::text::bigint FROM careplans_activity WHERE id = %s", [activity.pk])
            return cursor.fetchone()[0]

    yesterday = timezone.localdate() - dt.timedelta(days=1)
    activity = f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse, due_date=yesterday)
    assert reminders_sweep().created[NotificationKind.ACTIVITY_OVERDUE] == 1
    assert row_locker() != 0  # the first sweep claimed it
    Activity.objects.filter(pk=activity.pk).update(title=activity.title)  # a fresh row version
    assert row_locker() == 0
    assert reminders_sweep().total == 0
    assert row_locker() == 0  # the next sweep did not touch it
    activity.due_date = yesterday - dt.timedelta(days=1)
    activity.save()
    assert reminders_sweep().created[NotificationKind.ACTIVITY_OVERDUE] == 1
    assert _reminders(NotificationKind.ACTIVITY_OVERDUE).count() == 2


def test_sensitive_activity_reminder_never_goes_to_a_discipline_the_policy_excludes(world):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    f.ActivityFactory(
        care_plan=world.plan,
        assigned_to=world.nurse,
        due_date=yesterday,
        sensitivity=world.behavioural_health,
    )
    reminders_sweep()
    assert not _reminders().filter(recipient=world.nurse).exists()


def test_plan_review_date_reminds_the_case_manager(world):
    world.plan.review_due = timezone.localdate()
    world.plan.save()
    reminders_sweep()
    n = _reminders(NotificationKind.PLAN_REVIEW_DUE).get()
    assert (n.recipient_id, n.object_id) == (world.case_manager.pk, world.plan.pk)


def test_referral_without_response_in_expected_days_reminds_the_referrer(world):
    service = f.ServiceFactory(expected_response_days=3)
    consent = f.ConsentFactory(patient=world.patient)
    late = f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        service=service,
        referred_by=world.nurse,
        status="requested",
        consent=consent,
        sent_at=timezone.now() - dt.timedelta(days=4),
    )
    f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        service=service,
        referred_by=world.nurse,
        status="requested",
        consent=consent,
        sent_at=timezone.now() - dt.timedelta(days=1),
    )
    reminders_sweep()
    n = _reminders(NotificationKind.REFERRAL_NO_RESPONSE).get()
    assert (n.recipient_id, n.object_id) == (world.nurse.pk, late.pk)
    assert n.due_moment == late.sent_at + dt.timedelta(days=3)


def test_sweep_query_count_does_not_grow_with_the_number_due(world):
    _handoff(world, to_user=world.nurse, age_minutes=45)
    with CaptureQueriesContext(connection) as one:
        reminders_sweep()
    for _ in range(25):
        _handoff(world, to_user=world.nurse, age_minutes=45, due_in_minutes=-5)
    with CaptureQueriesContext(connection) as many:
        result = reminders_sweep()
    # 25 acknowledgement reminders, 25 overdue to the receiver, 25 escalations, 25 to the sender
    assert result.total == 100
    assert len(many) == len(one)


def test_email_is_sent_once_and_records_when(world):
    _handoff(world, to_user=world.nurse, age_minutes=45)
    reminders_sweep()
    n = _reminders().get()
    assert notification_email_send(notification_id=n.pk) is True
    assert notification_email_send(notification_id=n.pk) is False
    n.refresh_from_db()
    assert n.email_sent_at is not None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [world.nurse.email]
    message = mail.outbox[0].subject + mail.outbox[0].body
    assert "Alice" not in message and "P-TEAM-1" not in message  # no patient in email


def test_email_message_id_is_the_same_for_every_send_of_one_notification(world, settings):
    settings.EMAIL_MESSAGE_ID_DOMAIN = "careteam.example.org"
    _handoff(world, to_user=world.nurse, age_minutes=45)
    reminders_sweep()
    n = _reminders().get()
    assert notification_email_send(notification_id=n.pk) is True
    # a worker that died after the mail server accepted it, before the commit: sent again
    Notification.objects.filter(pk=n.pk).update(email_sent_at=None)
    assert notification_email_send(notification_id=n.pk) is True
    first, second = (m.message()["Message-ID"] for m in mail.outbox)
    assert first == second == f"<notification-{n.pk}.{int(n.due_moment.timestamp())}@careteam.example.org>"


def test_email_that_fails_to_send_stays_unsent_for_the_next_attempt(world, settings):
    settings.EMAIL_BACKEND = "tests.test_reminders.RefusingBackend"
    _handoff(world, to_user=world.nurse, age_minutes=45)
    reminders_sweep()
    n = _reminders().get()
    with pytest.raises(ConnectionRefusedError):
        notification_email_send(notification_id=n.pk)
    n.refresh_from_db()
    assert n.email_sent_at is None


class RefusingBackend(BaseEmailBackend):
    """A mail server that refuses every connection."""

    def send_messages(self, email_messages):
        raise ConnectionRefusedError("mail server down")


def test_email_is_not_sent_to_someone_who_lost_access_since_the_reminder(world):
    _handoff(world, to_user=world.nurse, age_minutes=45)
    reminders_sweep()
    n = _reminders().get()
    team_services.membership_end(membership=world.nurse.memberships.get(patient=world.patient))
    assert notification_email_send(notification_id=n.pk) is False
    assert mail.outbox == []
    assert not notifications_for(world.nurse).filter(pk=n.pk).exists()


def test_web_save_succeeds_and_logs_when_the_broker_is_down(
    client, world, caplog, django_capture_on_commit_callbacks
):
    from config.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    app._pool = None
    app.amqp._producer_pool = None
    client.force_login(world.lead)
    due = (timezone.localtime() + dt.timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")
    data = {
        "to_user": world.nurse.pk,
        "situation": "s",
        "background": "b",
        "assessment": "a",
        "recommendation": "r",
        "due_at": due,
        "priority": "routine",
        "kind": "patient",
    }
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk}), data
            )
        from careteam import publisher

        assert publisher.flush(30)  # the publish runs on the background thread
    finally:
        app.conf.broker_url = old
        app._pool = None
        app.amqp._producer_pool = None
    assert response.status_code == 302
    assert Handoff.objects.filter(to_user=world.nurse).exists()
    n = Notification.objects.get(kind=NotificationKind.HANDOFF_RECEIVED)
    assert n.email_sent_at is None  # the sweep re-enqueues it after the grace period
    assert "could not enqueue 1 notification email" in caplog.text


def test_requeue_takes_only_unsent_emails_past_the_grace_period(
    world, settings, django_capture_on_commit_callbacks
):
    from careteam.reminders import emails_requeue

    settings.NOTIFICATION_EMAIL_GRACE_SECONDS = 300
    for _ in range(3):
        _handoff(world, to_user=world.nurse, age_minutes=45)
    reminders_sweep()
    old, sent, fresh = _reminders().order_by("pk")
    Notification.objects.filter(pk__in=[old.pk, sent.pk]).update(
        created_at=timezone.now() - dt.timedelta(minutes=10)
    )
    Notification.objects.filter(pk=sent.pk).update(email_sent_at=timezone.now())
    Notification.objects.filter(kind=NotificationKind.HANDOFF_RECEIVED).update(email_sent_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert emails_requeue() == 1
    assert len(callbacks) == 1  # one publish, after commit


def test_beat_runs_exactly_one_sweep_every_minute(settings):
    sweeps = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "careteam.reminders_sweep"]
    assert [e["schedule"] for e in sweeps] == [60]


def test_tasks_that_touch_the_database_retry_a_lost_connection_with_backoff():
    from django.db import InterfaceError, OperationalError

    from careteam import tasks

    for task in (tasks.send_notification_email, tasks.send_notification_emails):
        assert set(task.autoretry_for) == {OperationalError, InterfaceError}
        assert (task.retry_backoff, task.retry_backoff_max, task.retry_jitter, task.max_retries) == (
            True,
            60,
            True,
            10,
        )
    for task in (tasks.reminders_sweep, tasks.memberships_sync):
        assert set(task.autoretry_for) == {OperationalError, InterfaceError}
        assert task.max_retries == 3  # the next scheduled run catches up anyway
