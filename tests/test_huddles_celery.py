"""The huddle reminder through the real sweep, a Redis broker and real `celery worker`
processes: each invited member who has not answered is reminded once, and emailed once,
when the worker is killed mid-send and when two sweeps run at once."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone

from careteam import huddles
from careteam import services as team_services
from careteam.models import Huddle, Notification, NotificationKind
from careteam.permissions import patient_access
from tests import factories as f
from tests.test_reminders_celery import (  # noqa: F401 - fixtures
    Worker,
    _emails,
    _mid_task,
    _sweep_committed,
    _unsent,
    _wait,
    main_redis,
    queue,
    workers,
)

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

DUE = NotificationKind.HUDDLE_ANSWER_DUE


def _due_huddle(world, extra_members: int = 0) -> Huddle:
    """An open huddle started two hours ago whose deadline is half an hour away: its
    reminder is due. The nurse has answered; everyone else invited has not."""
    start = timezone.localdate() - dt.timedelta(days=3)
    for i in range(extra_members):
        user = f.UserFactory(username=f"huddlemember{i}", disciplines=["nursing"])
        team_services.membership_add(
            patient=world.patient, user=user, discipline=f.discipline("nursing"), start_date=start
        )
    huddle = huddles.huddle_start(
        access=patient_access(world.case_manager, world.patient),
        by=world.case_manager,
        deadline=timezone.now() + dt.timedelta(hours=3),
    )
    huddles.huddle_answer(
        access=patient_access(world.nurse, world.patient),
        by=world.nurse,
        huddle=huddle,
        answer={"news": "Walked to the shop"},
    )
    now = timezone.now()
    Huddle.objects.filter(pk=huddle.pk).update(
        started_at=now - dt.timedelta(hours=2), deadline=now + dt.timedelta(minutes=30)
    )
    # the invitation notices are not what these tests count
    Notification.objects.exclude(kind=DUE).delete()
    huddle.refresh_from_db()
    return huddle


def _unanswered(huddle) -> set[int]:
    return set(huddle.invitations.filter(answered_at__isnull=True).values_list("user_id", flat=True))


def test_huddle_reminder_is_emailed_once_when_the_worker_is_killed_mid_send(
    world,
    main_redis,  # noqa: F811 - fixture
    queue,  # noqa: F811 - fixture
    workers,  # noqa: F811 - fixture
    tmp_path,
):
    slow = {"CARETEAM_EMAIL_TEST_DELAY": "1.5", "CELERY_VISIBILITY_TIMEOUT": "3"}
    huddle = _due_huddle(world)
    _sweep_committed()
    reminders = Notification.objects.filter(kind=DUE)
    assert set(reminders.values_list("recipient_id", flat=True)) == _unanswered(huddle)
    assert world.nurse.pk not in set(reminders.values_list("recipient_id", flat=True))
    ids = set(reminders.values_list("pk", flat=True))
    assert len(ids) == 3  # lead, pharmacist, behavioural health

    first = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path, extra_env=slow).start()
    workers.append(first)
    _wait(_mid_task, 30, "the worker to be mid-send")
    first.kill()
    # the dead consumer's message is handed out again once older than the visibility timeout
    time.sleep(int(slow["CELERY_VISIBILITY_TIMEOUT"]) + 1)
    second = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path, extra_env=slow).start()
    workers.append(second)
    _wait(lambda: _unsent() == 0, 60, "every reminder email after the restart")
    assert sorted(_emails(tmp_path)) == sorted(str(pk) for pk in ids)  # each exactly once
    # later sweeps (a late beat, the next minute) remind nobody again
    _sweep_committed()
    _sweep_committed()
    assert set(Notification.objects.filter(kind=DUE).values_list("pk", flat=True)) == ids


def test_two_sweeps_at_once_remind_each_missing_answer_once(world, main_redis, queue, workers, tmp_path):  # noqa: F811
    huddle = _due_huddle(world, extra_members=10)
    expected = _unanswered(huddle)
    assert len(expected) == 13
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            _sweep_committed()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    reminders = Notification.objects.filter(kind=DUE)
    assert sorted(reminders.values_list("recipient_id", flat=True)) == sorted(expected)
    workers.append(Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start())
    _wait(lambda: _unsent() == 0, 60, "the reminder emails")
    assert sorted(_emails(tmp_path)) == sorted(str(pk) for pk in reminders.values_list("pk", flat=True))
