"""Discharge checklist steps and the debrief through a real Redis broker and a real
`celery worker` (not eager), as tests/test_reminders_celery.py runs the sweep: an
overdue step is reminded once to its owner, and the debrief once to the case manager,
each with one email, however often the sweep runs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from careteam.models import Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.tasks import reminders_sweep as reminders_sweep_task
from tests import test_reminders_celery as rc
from tests.processes import task_result
from transitions import services
from transitions.models import TransitionStep

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]
# the broker, queue and worker fixtures of the reminder tests
main_redis, queue, workers = rc.main_redis, rc.queue, rc.workers


def test_overdue_step_and_debrief_are_each_reminded_once_by_the_worker(
    world, main_redis, queue, workers, tmp_path
):
    for user in (world.pharmacist, world.case_manager, world.nurse):
        user.email = f"{user.username}@example.org"
        user.save()
    discharged = timezone.now() - dt.timedelta(days=9)
    services.transition_record(
        access=patient_access(world.case_manager, world.patient),
        by=world.case_manager,
        kind="discharge",
        occurred_at=discharged,
        admitted_at=discharged - dt.timedelta(days=4),
    )
    Notification.objects.all().delete()
    worker = rc.Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start()
    workers.append(worker)
    for _ in range(3):
        result = reminders_sweep_task.apply_async(queue=queue, ignore_result=False)
        task_result(result.id, main_redis)
    rc._wait(lambda: rc._unsent() == 0, 60, "the emails")
    step = TransitionStep.objects.get(key="medication-reconciliation")
    overdue = Notification.objects.filter(kind=NotificationKind.ACTIVITY_OVERDUE, object_id=step.activity_id)
    assert list(overdue.values_list("recipient_id", flat=True)) == [world.pharmacist.pk]
    debrief = Notification.objects.filter(kind=NotificationKind.DEBRIEF_DUE)
    assert list(debrief.values_list("recipient_id", flat=True)) == [world.case_manager.pk]
    sent = rc._emails(tmp_path)
    assert sent.count(str(overdue.get().pk)) == 1 and sent.count(str(debrief.get().pk)) == 1
    assert len(sent) == len(set(sent)) == Notification.objects.exclude(recipient__email="").count()
