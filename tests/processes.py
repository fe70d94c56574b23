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
