"""Gunicorn's own lines (its error log and the access log) in the application's format:
with LOG_FORMAT=json they are JSON objects like every other line, the access line with
its fields (method, path without the query string, status, bytes, duration, request id).

    gunicorn --logger-class config.gunicorn_logging.Logger --access-logfile - ...

With LOG_FORMAT=text gunicorn logs as it always does (its `--access-logformat`).
"""

from __future__ import annotations

from gunicorn import glogging

from careteam.logfilters import JsonFormatter, RequestIdFilter


def _json() -> bool:
    from django.conf import settings

    return settings.LOG_FORMAT == "json"


class Logger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        self.json = _json()
        if self.json:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    if getattr(handler, "_gunicorn", False):
                        handler.setFormatter(JsonFormatter())
                        handler.addFilter(RequestIdFilter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        if not self.json:
            super().access(resp, req, environ, request_time)
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = dict((k.lower(), v) for k, v in (resp.headers or []))
        method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
        self.access_log.info(
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "remote_addr": environ.get("REMOTE_ADDR", "-"),
                "method": method,
                "path": path,
                "status": int(status),
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 1),
                "request_id": headers.get("x-request-id", "-"),
            },
        )
