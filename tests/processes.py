"""Helpers for tests that start real processes (Celery workers) on the test database."""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection


def worker_database_url() -> str:
    """DATABASE_URL of the database this test runs on, for a worker process.

    A host that is a directory (the embedded server's unix socket) is written the way
    django-environ reads a socket: percent-encoded as the first path segment."""
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    if host.startswith("/"):
        return f"postgres://{user}{password}@:{port}/{quote(host, safe='')}/{db['NAME']}"
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def task_result(task_id: str, backend_url: str, timeout: float = 60.0):
    """The result of a task run by a worker started with CELERY_RESULT_BACKEND=backend_url
    (the app itself keeps no result backend), sent with `ignore_result=False`."""
    import time

    from celery.backends.redis import RedisBackend
    from celery.states import READY_STATES

    from config.celery import app

    backend = RedisBackend(app=app, url=backend_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = backend.get_task_meta(task_id)
        if meta["status"] in READY_STATES:
            if meta["status"] != "SUCCESS":
                raise AssertionError(f"task {task_id} {meta['status']}: {meta['result']!r}")
            return meta["result"]
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for task {task_id}")
