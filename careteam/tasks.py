"""Celery tasks of the care-team app: thin wrappers that take ids and may run twice."""

import time

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone

from . import metrics


class DatabaseTask(Task):
    """A task that retries, with exponential backoff and jitter, when PostgreSQL cannot be
    reached or drops the connection mid-task (a restart, a failover, a terminated backend):
    such a task is never failed for good on the first error. Every task here may run twice,
    so a retry is safe."""

    autoretry_for = (OperationalError, InterfaceError)
    retry_backoff = True
    retry_backoff_max = 60
    retry_jitter = True
    # with backoff capped at 60 s, ten retries span several minutes of outage; after that
    # an unsent email is still enqueued again by the sweep (NOTIFICATION_EMAIL_RETRY_HOURS)
    max_retries = 10

    def retry(self, *args, **kwargs):
        # Drop the broken connection now, so nothing after the error in this process (the
        # next task, a signal handler) is handed a dead socket; a healthy one is kept.
        close_old_connections()
        return super().retry(*args, **kwargs)


class PeriodicDatabaseTask(DatabaseTask):
    """A scheduled task retries a few times only: its next scheduled run catches up anyway,
    and an outage must not pile up a backlog of retries behind the schedule."""

    max_retries = 3


@shared_task(name="careteam.ping")
def ping(token: str) -> dict:
    """Health ping: proves a worker is consuming the broker and can reach the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    return {"pong": token, "db": one == 1}


@shared_task(name="careteam.memberships_sync", base=PeriodicDatabaseTask)
def memberships_sync() -> int:
    """Grant and revoke object permissions as memberships start and end (cover
    memberships included), after adding the colleague covering someone to the teams
    the absent clinician joined since the cover was arranged."""
    from .caseloads import covers_sync
    from .services import memberships_sync as sync

    return covers_sync() + sync()


@shared_task(name="careteam.audit_partitions_ensure", base=PeriodicDatabaseTask)
def audit_partitions_ensure() -> list[str]:
    """The audit trail's partitions of this month and the next AUDIT_PARTITIONS_AHEAD
    (idempotent; several runs or beats make each once)."""
    from .audit_partitions import partitions_ensure

    return partitions_ensure()


@shared_task(name="careteam.reminders_sweep", base=PeriodicDatabaseTask)
def reminders_sweep() -> dict:
    """Every minute (beat): create due reminders once each and enqueue their emails."""
    from .reminders import reminders_sweep as sweep

    now, started = timezone.now(), time.monotonic()
    result = sweep(now=now)
    metrics.record_sweep(started_at=now, duration=time.monotonic() - started)
    return {"created": result.created, "requeued": result.requeued}


@shared_task(name="careteam.send_notification_email", base=DatabaseTask)
def send_notification_email(notification_id: int) -> bool:
    """Email one notification; a no-op if it was sent already."""
    from .notifications import notification_email_send

    return notification_email_send(notification_id=notification_id)


@shared_task(name="careteam.send_notification_emails", base=DatabaseTask)
def send_notification_emails(notification_ids: list[int]) -> int:
    """Email a batch of notifications, each in its own transaction; a redelivered or
    retried batch skips those already sent."""
    from .notifications import notification_email_send

    return sum(notification_email_send(notification_id=i) for i in notification_ids)


@shared_task(name="careteam.send_digest_emails", base=DatabaseTask)
def send_digest_emails(digest_ids: list[int]) -> int:
    """Count and email a batch of end-of-day digests, each in its own transaction; a
    redelivered or retried batch skips those already handled."""
    from .digest import digest_email_send

    return sum(digest_email_send(digest_id=i) for i in digest_ids)
