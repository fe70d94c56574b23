"""A stopped or hung Redis never blocks a save: a page save and an API save answer in
under 2 s with their data saved, and every email goes out, once, after Redis returns.
Real processes: a private redis-server (stopped, or SIGSTOPped so it accepts connections
and never answers) and a real `celery worker`."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from careteam import publisher
from careteam.models import Handoff, Notification, NotificationKind
from careteam.reminders import reminders_sweep
from tests import factories as f
from tests.test_reminders_celery import Worker, _broker, _emails, _free_port, _port_open, _wait, workers  # noqa: F401

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        cmd = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _port_open(self.port), 10, "redis-server")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _sbar(**extra) -> dict:
    data = {
        "situation": "Discharged home today",
        "background": "CHF admission",
        "assessment": "Stable",
        "recommendation": "Home visit within 48 hours",
        "due_at": (timezone.localtime() + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M"),
        "priority": "urgent",
        "kind": "transition",
    }
    data.update(extra)
    return data


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_saves_answer_fast_while_redis_is_down_and_emails_follow(
    fault,
    world,
    client,
    workers,  # noqa: F811 - the imported fixture
    tmp_path,
    settings,
):
    redis = PrivateRedis().start()
    queue = f"test-faults-{fault}"
    try:
        with _broker(redis.url, queue):
            if fault == "stopped":
                redis.stop()
            else:
                os.kill(redis.proc.pid, signal.SIGSTOP)

            # a page save: a handoff to the nurse, through the form
            client.force_login(world.lead)
            url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
            started = time.monotonic()
            response = client.post(url, _sbar(to_user=world.nurse.pk))
            page_seconds = time.monotonic() - started
            assert response.status_code == 302, response.content
            assert page_seconds < 2, page_seconds

            # an API save: a handoff to the pharmacist
            api = APIClient()
            api.force_authenticate(world.nurse)
            started = time.monotonic()
            response = api.post(
                "/api/v1/handoffs/",
                f.handoff_payload(patient=world.patient, to_user=world.pharmacist),
                format="json",
            )
            api_seconds = time.monotonic() - started
            assert response.status_code == 201, response.content
            assert api_seconds < 2, api_seconds

            # both saved, with their notifications, not yet emailed
            assert Handoff.objects.count() == 2
            received = Notification.objects.filter(kind=NotificationKind.HANDOFF_RECEIVED)
            assert sorted(received.values_list("recipient_id", flat=True)) == sorted(
                [world.nurse.pk, world.pharmacist.pk]
            )
            assert not received.filter(email_sent_at__isnull=False).exists()

            # Redis comes back; the publisher has given up (or gets through), the sweep
            # re-enqueues what is unsent, a real worker sends each email once
            if fault == "stopped":
                redis.start()
            else:
                os.kill(redis.proc.pid, signal.SIGCONT)
            assert publisher.flush(60)
            workers.append(Worker(broker=redis.url, queue=queue, mail_dir=tmp_path).start())
            settings.NOTIFICATION_EMAIL_GRACE_SECONDS = 0
            with transaction.atomic():
                reminders_sweep()
            _wait(lambda: not received.filter(email_sent_at__isnull=True).exists(), 60, "the emails")
            assert sorted(_emails(tmp_path)) == sorted(
                str(pk) for pk in received.values_list("pk", flat=True)
            )
    finally:
        redis.stop()
