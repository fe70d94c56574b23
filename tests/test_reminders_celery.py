"""Reminders through a real Redis broker and real `celery worker` processes (not eager):
exactly one reminder and one email per (recipient, kind, object, due moment) whatever
happens: overlapping sweeps, a worker killed with SIGKILL mid-task, a Redis restart."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import connections, transaction
from django.utils import timezone

from careteam import handoffs as handoff_services
from careteam import publisher
from careteam.models import Handoff, Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from careteam.tasks import reminders_sweep as reminders_sweep_task
from config.celery import app
from tests.processes import task_result, worker_database_url

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """A `celery -A config worker` subprocess on its own queue, against the test database,
    writing emails to files (one file per sent message) in `mail_dir`."""

    def __init__(
        self, *, broker: str, queue: str, mail_dir: Path, extra_env: dict | None = None, pool: str = "solo"
    ):
        self.env = dict(os.environ)
        self.env.update(
            DEBUG="true",
            DATABASE_URL=worker_database_url(),
            REDIS_URL=broker,
            EMAIL_URL=f"filemail:///{mail_dir}",  # absolute path: four slashes in all
            CONN_MAX_AGE="0",
            CELERY_TASK_DEFAULT_QUEUE=queue,
            CELERY_RESULT_BACKEND=broker,  # only to read the sweep task's result
        )
        self.env.update(extra_env or {})
        self.queue = queue
        self.pool = pool
        self.proc: subprocess.Popen | None = None
        # the worker's own output, next to the emails, for a failing run to be read
        self.log = (mail_dir.parent / f"worker-{uuid.uuid4().hex[:6]}.log").open("w")

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue, "-c", "1",
             "-P", self.pool, "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@contextlib.contextmanager
def _broker(url: str, queue: str):
    """Point this process's Celery publisher at `url` and `queue` for the test."""
    old_url, old_queue = app.conf.broker_url, app.conf.task_default_queue
    app.conf.broker_url, app.conf.task_default_queue = url, queue
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.task_default_queue = old_url, old_queue
        app._pool = None
        app.amqp._producer_pool = None


@pytest.fixture
def queue():
    return f"test-reminders-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def main_redis(settings, queue):
    """The machine's Redis at our own db number, our own queue name."""
    url = settings.REDIS_URL
    with _broker(url, queue):
        yield url


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def _emails(mail_dir: Path) -> list[str]:
    """Notification ids of every email written by the file backend."""
    ids = []
    for path in sorted(mail_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            if line.startswith("X-CareTeam-Notification:"):
                ids.append(line.split(":", 1)[1].strip())
    return ids


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _unsent() -> int:
    return Notification.objects.filter(email_sent_at__isnull=True).exclude(recipient__email="").count()


def _due_handoffs(world, n: int) -> list[Handoff]:
    """`n` handoffs to the nurse, created an hour ago and never acknowledged."""
    made = []
    for i in range(n):
        h = handoff_services.handoff_create(
            by=world.lead,
            access=patient_access(world.lead, world.patient),
            to_user=world.nurse,
            due_at=timezone.now() + dt.timedelta(days=1),
            situation=f"Situation {i}",
            background="Background",
            assessment="Assessment",
            recommendation="Recommendation",
        )
        made.append(h)
    Handoff.objects.filter(pk__in=[h.pk for h in made]).update(
        created_at=timezone.now() - dt.timedelta(hours=1)
    )
    # the "new handoff" notices are not what these tests count
    Notification.objects.filter(kind=NotificationKind.HANDOFF_RECEIVED).delete()
    return made


def _mid_task() -> bool:
    """A notification row locked by a worker: it is inside the send, before the commit."""
    with transaction.atomic():
        free = set(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(email_sent_at__isnull=True)
            .values_list("pk", flat=True)
        )
        unsent = set(Notification.objects.filter(email_sent_at__isnull=True).values_list("pk", flat=True))
    return bool(unsent - free)


def _sweep_committed() -> None:
    """Run one sweep as the beat would: its own transaction, emails enqueued on commit."""
    with transaction.atomic():
        reminders_sweep()


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------
def test_handoff_past_threshold_gets_exactly_one_reminder_and_one_email(
    world, main_redis, queue, workers, tmp_path
):
    worker = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start()
    workers.append(worker)
    (h,) = _due_handoffs(world, 1)
    # the sweep runs on the worker, as beat would schedule it; twice, as a late beat might
    for _ in range(2):
        result = reminders_sweep_task.apply_async(queue=queue, ignore_result=False)
        task_result(result.id, main_redis)
    _wait(lambda: _unsent() == 0, 30, "the email")
    reminders = Notification.objects.filter(kind=NotificationKind.HANDOFF_UNACKNOWLEDGED)
    assert [(n.recipient_id, n.object_id) for n in reminders] == [(world.nurse.pk, h.pk)]
    assert _emails(tmp_path) == [str(reminders[0].pk)]


def test_two_concurrent_sweeps_produce_each_reminder_once(world, main_redis, queue, workers, tmp_path):
    handoffs = _due_handoffs(world, 30)
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
    reminders = Notification.objects.filter(kind=NotificationKind.HANDOFF_UNACKNOWLEDGED)
    assert sorted(reminders.values_list("object_id", flat=True)) == sorted(h.pk for h in handoffs)
    workers.append(Worker(broker=main_redis, queue=queue, mail_dir=tmp_path).start())
    _wait(lambda: _unsent() == 0, 60, "the emails")
    assert sorted(_emails(tmp_path)) == sorted(str(pk) for pk in reminders.values_list("pk", flat=True))


def test_worker_killed_mid_task_and_restarted_delivers_each_email_exactly_once(
    world, main_redis, queue, workers, tmp_path
):
    slow = {"CARETEAM_EMAIL_TEST_DELAY": "1.5", "CELERY_VISIBILITY_TIMEOUT": "3"}
    _due_handoffs(world, 3)
    _sweep_committed()
    ids = set(Notification.objects.values_list("pk", flat=True))
    assert len(ids) == 3
    first = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path, extra_env=slow).start()
    workers.append(first)

    _wait(_mid_task, 30, "the worker to be mid-task")
    first.kill()
    # Redis hands a dead consumer's message out again once it is older than the visibility
    # timeout, and a worker scans for such messages as it starts (then rarely): restart
    # after that, as a supervisor restarting a crashed worker would.
    time.sleep(int(slow["CELERY_VISIBILITY_TIMEOUT"]) + 1)
    second = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path, extra_env=slow).start()
    workers.append(second)
    _wait(lambda: _unsent() == 0, 60, "every email after the restart")
    emailed = _emails(tmp_path)
    assert sorted(emailed) == sorted(str(pk) for pk in ids)  # each exactly once


def test_pool_process_killed_mid_task_is_redelivered_at_once_and_emails_once(
    world, main_redis, queue, workers, tmp_path
):
    """acks_late + task_reject_on_worker_lost: the parent sees its child die and puts the
    message back on the queue, no visibility timeout needed."""
    _due_handoffs(world, 2)
    _sweep_committed()
    ids = set(Notification.objects.values_list("pk", flat=True))
    worker = Worker(
        broker=main_redis,
        queue=queue,
        mail_dir=tmp_path,
        extra_env={"CARETEAM_EMAIL_TEST_DELAY": "1.5"},
        pool="prefork",
    ).start()
    workers.append(worker)
    _wait(_mid_task, 30, "the pool process to be mid-task")
    children = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True).stdout
    for pid in children.split():
        os.kill(int(pid), signal.SIGKILL)
    _wait(lambda: _unsent() == 0, 60, "every email after the pool process died")
    assert sorted(_emails(tmp_path)) == sorted(str(pk) for pk in ids)


def _terminate_other_backends() -> int:
    """Cut every other connection to the test database (the worker's), as a PostgreSQL
    restart or failover would."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_worker_whose_database_connection_is_cut_mid_send_retries_and_emails_each_once(
    world, main_redis, queue, workers, tmp_path
):
    # CONN_MAX_AGE as in production: the worker keeps its connection between tasks
    slow = {"CARETEAM_EMAIL_TEST_DELAY": "1", "CONN_MAX_AGE": "60"}
    _due_handoffs(world, 3)
    _sweep_committed()
    ids = set(Notification.objects.values_list("pk", flat=True))
    assert len(ids) == 3
    worker = Worker(broker=main_redis, queue=queue, mail_dir=tmp_path, extra_env=slow).start()
    workers.append(worker)
    _wait(_mid_task, 30, "the worker to be mid-send")
    assert _terminate_other_backends() >= 1
    _wait(lambda: _unsent() == 0, 30, "every email after the retry")
    assert sorted(_emails(tmp_path)) == sorted(str(pk) for pk in ids)  # each exactly once
    worker.stop()
    log = Path(worker.log.name).read_text()
    assert "raised unexpected" not in log, log  # retried, never failed for good


def test_redis_restart_loses_nothing(world, queue, workers, tmp_path, settings, caplog):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--daemonize", "no"]

    def start_redis() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _port_open(port), 10, "redis-server")
        return proc

    redis_proc = start_redis()
    try:
        with _broker(url, queue):
            # 1. reminders created and enqueued, no worker yet: the messages sit in Redis
            _due_handoffs(world, 5)
            _sweep_committed()
            assert Notification.objects.count() == 5
            # 2. Redis restarts without persistence: every queued message is gone
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
            # 3. while it is down, web saves still succeed (the enqueue failure is logged)
            _due_handoffs(world, 2)
            _sweep_committed()
            assert Notification.objects.count() == 7
            assert publisher.flush(60)
            assert "could not enqueue" in caplog.text
            redis_proc = start_redis()
            workers.append(Worker(broker=url, queue=queue, mail_dir=tmp_path).start())
            # 4. the next sweep re-enqueues every email still unsent after the grace period
            settings.NOTIFICATION_EMAIL_GRACE_SECONDS = 0
            _sweep_committed()
            _wait(lambda: _unsent() == 0, 60, "the re-enqueued emails")
            ids = sorted(str(pk) for pk in Notification.objects.values_list("pk", flat=True))
            assert sorted(_emails(tmp_path)) == ids
            assert Notification.objects.filter(kind=NotificationKind.HANDOFF_UNACKNOWLEDGED).count() == 7
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
