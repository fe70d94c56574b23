"""Health of this process and of what it depends on, for load balancers, orchestrators and
the metrics collector (careteam/metrics.py).

- `/healthz` (liveness) touches nothing: the process answers.
- `/readyz` (readiness) runs `readiness()`: the database answers, no migration is left
  to apply, the broker answers. Each check is bounded in time and reports only "ok" or
  a one-word failure; the reason (which may name hosts) goes to the log, never the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# Every Redis call made for health and metrics gives up after this long (connect and
# read each), with no retry: a stopped or hung broker costs a probe at most a second.
BROKER_TIMEOUT = 0.5
# An empty migration plan is remembered this long per process: computing it loads the
# whole migration graph (tens of milliseconds), and probes come every few seconds.
MIGRATIONS_CACHE_SECONDS = 60.0

OK = "ok"
_migrations_ok_until = 0.0


def redis_client(url: str | None = None) -> redis.Redis:
    """A client of the broker (or `url`) that fails fast: short timeouts and no retry."""
    return redis.Redis.from_url(
        url or settings.CELERY_BROKER_URL,
        socket_timeout=BROKER_TIMEOUT,
        socket_connect_timeout=BROKER_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )


def check_database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return OK


def check_migrations() -> str:
    """Ok when every migration of the running code is applied, else "pending"."""
    global _migrations_ok_until
    if time.monotonic() < _migrations_ok_until:
        return OK
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        return "pending"
    _migrations_ok_until = time.monotonic() + MIGRATIONS_CACHE_SECONDS
    return OK


def check_broker() -> str:
    client = redis_client()
    try:
        client.ping()
    finally:
        client.close()
    return OK


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
}


def readiness() -> tuple[bool, dict[str, str]]:
    """(ready, {check: "ok" | "pending" | "error"}). Migrations are not checked while the
    database is down ("unknown")."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and results.get("database") != OK:
            results[name] = "unknown"
            continue
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure is "not ready", logged
            logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = "error"
    return all(v == OK for v in results.values()), results


def reset_migrations_cache() -> None:
    """Forget a remembered "migrations applied" (tests)."""
    global _migrations_ok_until
    _migrations_ok_until = 0.0
