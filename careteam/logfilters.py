"""Logging filters."""

from __future__ import annotations

import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """A 403 or 404 is an answer, not a fault: Django logs it with the exception's
    traceback, which buries real errors in the console. Keep the one-line warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
