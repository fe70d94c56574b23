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
