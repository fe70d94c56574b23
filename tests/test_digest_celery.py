"""The end-of-day digest through two overlapping sweeps and a real `celery worker` on the
Redis broker: one digest row and one email per person and day."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from django.db import connections, transaction
from django.utils import timezone

from careteam import handoffs as handoff_services
from careteam import services as team_services
from careteam.digest import preference_update
from careteam.models import Digest
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from tests import factories as f
from tests.test_reminders_celery import Worker, _wait, main_redis, queue, workers  # noqa: F401 - fixtures

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def _digest_emails(mail_dir: Path) -> list[str]:
    ids = []
    for path in sorted(mail_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            if line.startswith("X-CareTeam-Digest:"):
                ids.append(line.split(":", 1)[1].strip())
    return ids


def _handled() -> bool:
    return not Digest.objects.filter(email_sent_at__isnull=True, email_skipped_at__isnull=True).exists()


def test_two_concurrent_sweeps_send_each_digest_once(world, main_redis, queue, workers, tmp_path):  # noqa: F811
    people = []
    for i in range(12):
        user = f.UserFactory(username=f"digest{i}", disciplines=["nursing"])
        team_services.membership_add(
            patient=world.patient,
            user=user,
            discipline=f.discipline("nursing"),
            start_date=timezone.localdate() - dt.timedelta(days=2),
        )
        people.append(user)
    for user in people:
        handoff_services.handoff_create(
            by=world.lead,
            access=patient_access(world.lead, world.patient),
            to_user=user,
            due_at=timezone.now() + dt.timedelta(days=2),
            situation="Needs a visit",
            background="b",
            assessment="a",
            recommendation="r",
        )
        preference_update(user=user, time_zone="UTC", digest_enabled=True, digest_time=dt.time(0, 0))
    # one more who opted in with nothing to say: a digest row, skipped, no email
    preference_update(user=world.pharmacist, time_zone="UTC", digest_enabled=True, digest_time=dt.time(0, 0))

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    created: list[int] = []

    def sweep() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                created.append(reminders_sweep().created["digest"])
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
    assert sum(created) == 13
    digests = Digest.objects.all()
    assert sorted(digests.values_list("recipient_id", flat=True)) == sorted(
        [u.pk for u in people] + [world.pharmacist.pk]
    )
    workers.append(Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start())
    _wait(_handled, 60, "every digest to be sent or skipped")
    sent = digests.filter(email_sent_at__isnull=False)
    assert sorted(_digest_emails(tmp_path)) == sorted(str(pk) for pk in sent.values_list("pk", flat=True))
    assert sent.count() == 12
    assert digests.get(recipient=world.pharmacist).email_skipped_at is not None
    # a third sweep the same day: nothing new
    with transaction.atomic():
        assert reminders_sweep().created["digest"] == 0
