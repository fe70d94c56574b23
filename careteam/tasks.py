"""Celery tasks of the care-team app: thin wrappers that take ids and may run twice."""

from celery import shared_task
from django.db import connection


@shared_task(name="careteam.ping")
def ping(token: str) -> dict:
    """Health ping: proves a worker is consuming the broker and can reach the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    return {"pong": token, "db": one == 1}


@shared_task(name="careteam.memberships_sync")
def memberships_sync() -> int:
    """Grant and revoke object permissions as memberships start and end."""
    from .services import memberships_sync as sync

    return sync()


@shared_task(name="careteam.reminders_sweep")
def reminders_sweep() -> dict:
    """Every minute (beat): create due reminders once each and enqueue their emails."""
    from .reminders import reminders_sweep as sweep

    result = sweep()
    return {"created": result.created, "requeued": result.requeued}


@shared_task(name="careteam.send_notification_email")
def send_notification_email(notification_id: int) -> bool:
    """Email one notification; a no-op if it was sent already."""
    from .notifications import notification_email_send

    return notification_email_send(notification_id=notification_id)


@shared_task(name="careteam.send_notification_emails")
def send_notification_emails(notification_ids: list[int]) -> int:
    """Email a batch of notifications, each in its own transaction; a redelivered batch
    skips those already sent."""
    from .notifications import notification_email_send

    return sum(notification_email_send(notification_id=i) for i in notification_ids)
