"""Cover through a real Redis broker and a real `celery worker`: while a clinician is
away the sweep the worker runs reminds (and emails) the colleague covering them; after
the dates the periodic membership task ends the colleague's cover memberships and the
reminders go back to the clinician."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from careteam import caseloads
from careteam import handoffs as handoff_services
from careteam.models import Cover, Handoff, Notification, NotificationKind, TeamMembership
from careteam.permissions import patient_access
from careteam.tasks import memberships_sync as memberships_sync_task
from careteam.tasks import reminders_sweep as reminders_sweep_task
from tests import factories as f
from tests.processes import task_result
from tests.test_reminders_celery import Worker, _broker, _emails, _wait

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker(settings):
    """(Redis URL, queue): the machine's Redis at our db number, a queue of our own."""
    name = f"test-cover-{uuid.uuid4().hex[:8]}"
    with _broker(settings.REDIS_URL, name):
        yield settings.REDIS_URL, name


@pytest.fixture
def worker(broker, tmp_path):
    url, name = broker
    started = Worker(broker=url, queue=name, mail_dir=tmp_path).start()
    yield started
    started.stop()


def _old_handoff(world, situation: str) -> Handoff:
    h = handoff_services.handoff_create(
        by=world.lead,
        access=patient_access(world.lead, world.patient),
        to_user=world.nurse,
        due_at=timezone.now() + dt.timedelta(days=1),
        situation=situation,
        background="B",
        assessment="A",
        recommendation="R",
    )
    Handoff.objects.filter(pk=h.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    return h


def _run(task, broker):
    url, name = broker
    return task_result(task.apply_async(queue=name, ignore_result=False).id, url)


def test_cover_routes_the_workers_reminders_to_the_colleague_and_back_after(world, broker, worker, tmp_path):
    colleague = f.UserFactory(username="nurse9", disciplines=["nursing"])
    today = timezone.localdate()
    cover = caseloads.cover_create(
        by=world.nurse,
        absent=world.nurse,
        colleague=colleague,
        discipline=f.discipline("nursing"),
        start_date=today,
        end_date=today + dt.timedelta(days=3),
    )
    during = _old_handoff(world, "During the cover")
    _run(reminders_sweep_task, broker)
    reminders = Notification.objects.filter(kind=NotificationKind.HANDOFF_UNACKNOWLEDGED)
    assert [(n.recipient_id, n.object_id) for n in reminders] == [(colleague.pk, during.pk)]
    _wait(lambda: str(reminders[0].pk) in _emails(tmp_path), 30, "the colleague's email")

    # the dates pass (moved into the past): the periodic task ends the cover memberships
    Cover.objects.filter(pk=cover.pk).update(
        start_date=today - dt.timedelta(days=5), end_date=today - dt.timedelta(days=1)
    )
    TeamMembership.objects.filter(cover=cover).update(
        start_date=today - dt.timedelta(days=5), end_date=today - dt.timedelta(days=1)
    )
    _run(memberships_sync_task, broker)
    assert not TeamMembership.objects.current().filter(user=colleague).exists()
    assert set(TeamMembership.objects.filter(cover=cover).values_list("status", flat=True)) == {"inactive"}
    after = _old_handoff(world, "After the cover")
    _run(reminders_sweep_task, broker)
    back = Notification.objects.filter(kind=NotificationKind.HANDOFF_UNACKNOWLEDGED, object_id=after.pk)
    assert [n.recipient_id for n in back] == [world.nurse.pk]
    _wait(lambda: str(back[0].pk) in _emails(tmp_path), 30, "the nurse's email")
