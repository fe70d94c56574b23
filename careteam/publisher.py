"""Publishing Celery messages off the request's critical path.

A save commits its rows (the Notification row is the outbox: `email_sent_at` is NULL
until the email went out), then hands the message to this module's in-process queue,
which costs microseconds. A daemon thread per process publishes it with short broker
socket timeouts and a bounded retry. When Redis is stopped, hung or unreachable, the
thread logs the failure and drops the message; the reminder sweep re-enqueues every email
still unsent after NOTIFICATION_EMAIL_GRACE_SECONDS. A request therefore never waits on
the broker, whatever state it is in.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from celery import current_app

logger = logging.getLogger(__name__)

# Publishing retries twice (a stale pooled connection after a Redis restart), then gives
# up: with the broker socket timeouts of settings.py one message costs at most a few
# seconds of the publisher thread.
PUBLISH = {
    "retry": True,
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
}


def send_task(name: str, args: list) -> None:
    """Publish one message for the task registered as `name` (careteam/tasks.py). Tasks
    are named, not imported, so the modules the tasks call never import the tasks back."""
    current_app.signature(name, args=args).apply_async(**PUBLISH)


# Messages waiting in one process; beyond this a message is dropped (and logged): the sweep
# finds its notification unsent and enqueues it again.
MAX_PENDING = 10_000

_lock = threading.Lock()
_queue: queue.Queue | None = None
_pid: int | None = None


def _worker(q: queue.Queue) -> None:
    while True:
        job, what = q.get()
        try:
            job()
        except Exception:  # noqa: BLE001 - any broker error: log and let the sweep retry
            logger.warning("could not enqueue %s; the reminder sweep will retry", what, exc_info=True)
        finally:
            q.task_done()


def _ensure() -> queue.Queue:
    """This process's queue and thread (started again after a fork: gunicorn, prefork)."""
    global _queue, _pid
    with _lock:
        if _queue is None or _pid != os.getpid():
            _queue = queue.Queue(maxsize=MAX_PENDING)
            _pid = os.getpid()
            threading.Thread(target=_worker, args=(_queue,), name="careteam-publisher", daemon=True).start()
        return _queue


def submit(job: Callable[[], None], what: str) -> None:
    """Run `job` (a publish) on the publisher thread; never blocks the caller. The job runs
    in the caller's context, so the message carries the request's id (careteam/requestid.py)."""
    context = contextvars.copy_context()
    try:
        _ensure().put_nowait((lambda: context.run(job), what))
    except queue.Full:
        logger.warning("publisher queue full, not enqueuing %s; the reminder sweep will retry", what)


def flush(timeout: float = 30.0) -> bool:
    """Wait until every submitted message was published or given up (tests, shutdown)."""
    q = _ensure()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if q.unfinished_tasks == 0:
            return True
        time.sleep(0.02)
    return False
