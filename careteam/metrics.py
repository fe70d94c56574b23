"""Prometheus metrics: what an operator watches (served at /metrics, careteam/views_ops.py).

- Request latency, measured by `careteam.middleware.RequestMetricsMiddleware`, labelled
  by URL name (`request.resolver_match.view_name`) and method only, never by path or user,
  so the number of series is bounded by the number of URLs.
- `StateCollector` reads the state of the system at scrape time: unsent emails, reminder
  sweep lag and duration, the Celery queue's length and task failures. Two statements at
  most per scrape (one query, one Redis pipeline), each with a short timeout.
- What happens in a worker (a sweep's duration, a task's failure) is written to Redis by
  that worker (`record_sweep`, the `task_failure` receiver), under `careteam:ops:`, so any
  web process reports it for all workers: a Prometheus counter in a worker process would
  live and die with that process and never be scraped.

Gunicorn runs several processes and each keeps its own request metrics: a scrape sees one
of them. With `PROMETHEUS_MULTIPROC_DIR` set (an empty directory, emptied at every start,
as docker-compose.yml does) prometheus-client keeps them in files there and a scrape adds
up every process.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import time

from celery.signals import task_failure
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import health

logger = logging.getLogger(__name__)

SWEEP_KEY = "careteam:ops:sweep"
TASK_FAILURES_KEY = "careteam:ops:task_failures"
# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists of their
# own, named "<queue>\x06\x16<priority>" (priority 0 is the plain list)
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITIES = (3, 6, 9)

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

REQUEST_LATENCY = Histogram(
    "careteam_http_request_duration_seconds",
    "Time to answer a request, by URL name and method.",
    ["view", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REQUESTS = Counter(
    "careteam_http_requests",
    "Requests answered, by URL name and status class (2xx, 3xx, 4xx, 5xx).",
    ["view", "status"],
)


def observe_request(*, view: str, method: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "other"
    REQUEST_LATENCY.labels(view=view, method=method).observe(seconds)
    REQUESTS.labels(view=view, status=f"{status // 100}xx").inc()


# ---------------------------------------------------------------------------
# Written by workers, read at scrape time
# ---------------------------------------------------------------------------
def record_sweep(*, started_at: dt.datetime, duration: float) -> None:
    """Remember the last completed reminder sweep: the moment it swept up to (`started_at`,
    the sweep's `now`) and how long it took. Never raises: metrics must not fail a sweep."""
    try:
        client = health.redis_client()
        try:
            client.hset(
                SWEEP_KEY,
                mapping={
                    "started_at": started_at.timestamp(),
                    "duration": duration,
                    "finished_at": time.time(),
                },
            )
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - Redis down: the sweep's own work is done
        logger.warning("could not record the reminder sweep's metrics: %s: %s", type(exc).__name__, exc)


@task_failure.connect(dispatch_uid="careteam.metrics.count_task_failure")
def count_task_failure(sender=None, **kwargs) -> None:
    """Count a failed task (by name) in Redis, for /metrics of any web process."""
    name = getattr(sender, "name", None) or "unknown"
    try:
        client = health.redis_client()
        try:
            client.hincrby(TASK_FAILURES_KEY, name, 1)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - the failure itself is logged by Celery
        logger.warning("could not count the failure of task %s: %s", name, type(exc).__name__)


# ---------------------------------------------------------------------------
# The scrape-time collector
# ---------------------------------------------------------------------------
def _queue_names() -> list[str]:
    return [settings.CELERY_TASK_DEFAULT_QUEUE]


@functools.cache
def _task_names() -> tuple[str, ...]:
    """Our task names (imported once per process, as a worker does at start)."""
    from celery import current_app as app  # the project's app (config.celery)

    app.loader.import_default_modules()
    return tuple(name for name in app.tasks if not name.startswith("celery."))


class StateCollector:
    """Metrics computed when scraped: one database query and one Redis round trip."""

    def collect(self):
        yield from self._emails()
        yield from self._broker()

    def _emails(self):
        from django.db.models import Count, Min

        from .models import Notification

        now = timezone.now()
        window = dt.timedelta(hours=settings.NOTIFICATION_EMAIL_RETRY_HOURS)
        # as the sweep's re-enqueue sees them (careteam.reminders.emails_requeue): wanted
        # (an active recipient with an address, not skipped by a restore), not sent, not
        # yet given up on
        row = (
            Notification.objects.filter(
                email_sent_at__isnull=True,
                email_skipped_at__isnull=True,
                created_at__gte=now - window,
                recipient__is_active=True,
            )
            .exclude(recipient__email="")
            .aggregate(n=Count("pk"), oldest=Min("created_at"))
        )
        unsent = GaugeMetricFamily(
            "careteam_notification_emails_unsent",
            "Notification emails wanted and not sent yet (created within NOTIFICATION_EMAIL_RETRY_HOURS).",
        )
        unsent.add_metric([], row["n"])
        yield unsent
        oldest = GaugeMetricFamily(
            "careteam_notification_email_oldest_unsent_age_seconds",
            "Age of the oldest unsent notification email (0 when none).",
        )
        oldest.add_metric([], (now - row["oldest"]).total_seconds() if row["oldest"] else 0.0)
        yield oldest

    def _broker(self):
        up = GaugeMetricFamily("careteam_broker_up", "1 when Redis answered this scrape, else 0.")
        queues = _queue_names()
        try:
            client = health.redis_client()
            try:
                pipe = client.pipeline(transaction=False)
                for q in queues:
                    pipe.llen(q)
                    for p in _PRIORITIES:
                        pipe.llen(f"{q}{_PRIORITY_SEPARATOR}{p}")
                pipe.hgetall(SWEEP_KEY)
                pipe.hgetall(TASK_FAILURES_KEY)
                replies = pipe.execute()
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - report the broker down, not a failed scrape
            logger.warning("metrics: Redis did not answer: %s: %s", type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        per_queue = len(_PRIORITIES) + 1
        length = GaugeMetricFamily(
            "careteam_celery_queue_length",
            "Messages waiting in a Celery queue (Redis LLEN).",
            labels=["queue"],
        )
        for i, q in enumerate(queues):
            length.add_metric([q], sum(replies[i * per_queue : (i + 1) * per_queue]))
        yield length

        sweep = {k.decode(): float(v) for k, v in replies[-2].items()}
        if sweep:
            lag = GaugeMetricFamily(
                "careteam_reminder_sweep_lag_seconds",
                "Now minus the moment the last completed reminder sweep swept up to: every due "
                "moment before it has been processed.",
            )
            lag.add_metric([], max(0.0, time.time() - sweep["started_at"]))
            yield lag
            duration = GaugeMetricFamily(
                "careteam_reminder_sweep_duration_seconds", "How long the last completed reminder sweep took."
            )
            duration.add_metric([], sweep["duration"])
            yield duration
            finished = GaugeMetricFamily(
                "careteam_reminder_sweep_last_completed_timestamp_seconds",
                "When the last reminder sweep completed (Unix time).",
            )
            finished.add_metric([], sweep["finished_at"])
            yield finished

        failures = CounterMetricFamily(
            "careteam_celery_task_failures",
            "Celery tasks that failed (raised), by task name, counted by every worker in Redis.",
            labels=["task"],
        )
        counted = {name.decode(): int(n) for name, n in replies[-1].items()}
        # every task of ours starts at 0, so that the first failure is an increase
        for name in sorted(set(counted) | set(_task_names())):
            failures.add_metric([name], counted.get(name, 0))
        yield failures


def render() -> bytes:
    """The exposition: this process's (or, in multiprocess mode, every process's) request
    metrics, then the state read now."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    return generate_latest(registry) + generate_latest(state)
