"""Logging filters."""

from __future__ import annotations

import logging

from celery import current_task
from pythonjsonlogger import json as jsonlogger
from pythonjsonlogger.core import RESERVED_ATTRS

from . import requestid


class ClientErrorWithoutTraceback(logging.Filter):
    """A 403 or 404 is an answer, not a fault: Django logs it with the exception's
    traceback, which buries real errors in the console. Keep the one-line warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged in (careteam/requestid.py),
    or of the request that enqueued the task it was logged in; "-" outside both. In a
    Celery task the record also names the task (task_name, task_id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = requestid.current() or "-"
        task = current_task
        if task and getattr(task.request, "id", None):
            record.task_name = task.name
            record.task_id = task.request.id
        return True


class JsonFormatter(jsonlogger.JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    the exception when there is one, and the record's extra fields (status_code, task_id,
    ...). The `request` object Django attaches to its request log records is left out:
    its text includes the query string, which may name a patient."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", ["levelname", "name", "message", "request_id"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger", "exc_info": "exception"})
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request", "server_time"])
        super().__init__(*args, **kwargs)
