"""Reads on hot standbys (DATABASE_REPLICA_URLS), writes and everything else on the primary.

A request may read from a replica only when all of these hold:
- it is a safe request (GET, HEAD, OPTIONS) of a signed-in person who has not written in
  the last READ_YOUR_WRITES_SECONDS (a signed cookie, `ct_wrote`, set on every unsafe
  request: no server state, so any web process may answer the next request);
- a replica answers and replays within REPLICA_MAX_LAG_SECONDS of the primary (checked
  at most every REPLICA_CHECK_SECONDS per process; a replica that fails is skipped for
  REPLICA_DOWN_SECONDS);
- the code is not inside a transaction on the primary (a read that follows a write in the
  same request sees it).
Celery tasks, the reminder sweep, the admin and management commands never set the flag,
so they read and write the primary only.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core import signing
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

PRIMARY = "default"
WROTE_COOKIE = "ct_wrote"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_replica_reads: contextvars.ContextVar[bool] = contextvars.ContextVar("replica_reads", default=False)


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith("replica_")]


@contextmanager
def replica_reads() -> Iterator[None]:
    """Within this block, reads may go to a healthy replica."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


class _Health:
    """Per process: when each replica was last checked, its lag, and until when it is
    considered down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checked: dict[str, float] = {}
        self.lag: dict[str, float] = {}
        self.down_until: dict[str, float] = {}

    def reset(self) -> None:
        with self.lock:
            self.checked.clear()
            self.lag.clear()
            self.down_until.clear()


HEALTH = _Health()

LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
END
"""


def replica_lag(alias: str) -> float:
    """Seconds the replica's replay is behind (0 when it has replayed all it received)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(LAG_SQL)
        return float(cursor.fetchone()[0])


def healthy(alias: str, *, now: float | None = None) -> bool:
    now = time.monotonic() if now is None else now
    if HEALTH.down_until.get(alias, 0) > now:
        return False
    if now - HEALTH.checked.get(alias, -1e9) >= settings.REPLICA_CHECK_SECONDS:
        try:
            lag = replica_lag(alias)
        except DatabaseError as exc:
            logger.warning("replica %s unavailable, reading from the primary: %s", alias, exc)
            mark_down(alias, now=now)
            return False
        with HEALTH.lock:
            HEALTH.checked[alias] = now
            HEALTH.lag[alias] = lag
        if lag > settings.REPLICA_MAX_LAG_SECONDS:
            logger.warning("replica %s lags %.1f s, reading from the primary", alias, lag)
    return HEALTH.lag.get(alias, 0) <= settings.REPLICA_MAX_LAG_SECONDS


def mark_down(alias: str, *, now: float | None = None) -> None:
    now = time.monotonic() if now is None else now
    with HEALTH.lock:
        HEALTH.down_until[alias] = now + settings.REPLICA_DOWN_SECONDS
        HEALTH.checked.pop(alias, None)
    with contextlib.suppress(DatabaseError):  # closing a broken connection
        connections[alias].close()


def read_alias(aliases: list[str] | None = None, *, primary: str = PRIMARY) -> str:
    """Where a read goes now: a healthy replica when replica reads are on and the primary
    connection is not inside a transaction, otherwise the primary."""
    if not _replica_reads.get() or connections[primary].in_atomic_block:
        return primary
    for alias in aliases if aliases is not None else replica_aliases():
        if healthy(alias):
            return alias
    return primary


class ReplicaRouter:
    """settings.DATABASE_ROUTERS: reads as `read_alias` decides; writes, relations and
    migrations on the primary (replicas are copies of it)."""

    def db_for_read(self, model, **hints):
        return read_alias()

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == PRIMARY


def wrote_recently(request) -> bool:
    raw = request.COOKIES.get(WROTE_COOKIE)
    if not raw:
        return False
    try:
        signing.loads(raw, salt=WROTE_COOKIE, max_age=settings.READ_YOUR_WRITES_SECONDS)
    except signing.BadSignature:
        return False
    return True


class ReplicaReadsMiddleware:
    """Turns replica reads on for a safe request of someone who has not just written, and
    marks an unsafe request's sender as having written (read-your-writes). Costs nothing
    when no replica is configured."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = bool(replica_aliases())

    def __call__(self, request):
        if not self.enabled:
            return self.get_response(request)
        if request.method in SAFE_METHODS and not wrote_recently(request):
            with replica_reads():
                return self.get_response(request)
        response = self.get_response(request)
        response.set_cookie(
            WROTE_COOKIE,
            signing.dumps(int(time.time()), salt=WROTE_COOKIE),
            max_age=settings.READ_YOUR_WRITES_SECONDS,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
        return response
