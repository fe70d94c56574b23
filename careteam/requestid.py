"""One id per request, carried into every log line, the audit trail and the tasks the
request enqueues, so an operator can follow one click from the access log to the worker.

- `careteam.middleware.RequestIdMiddleware` takes a client's or proxy's `X-Request-ID`
  when it is a plain token (`SAFE_ID`: letters, digits and dashes, 8 to 64), else makes a
  new one (uuid4 hex), answers it in `X-Request-ID` and holds it in `REQUEST_ID` (a
  contextvar) until the response is closed.
- `careteam.logfilters.RequestIdFilter` stamps every log record with it.
- `careteam.audit.audit` stores it on each event (`AuditEvent.request_id`).
- A task published while it is set carries it in the message headers (`before_task_publish`);
  the worker sets it around the task (`task_prerun`/`task_postrun`), so the task's log
  lines carry the id of the request that caused them. Publishing on the background
  publisher thread keeps it too (`careteam.publisher.submit` runs each job in the
  submitter's context).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import request_finished
from django.dispatch import receiver

HEADER = "X-Request-ID"
TASK_HEADER = "careteam_request_id"
SAFE_ID = re.compile(r"[A-Za-z0-9-]{8,64}")

REQUEST_ID: ContextVar[str | None] = ContextVar("careteam_request_id", default=None)
_task_tokens: dict[str, Token] = {}


def current() -> str | None:
    return REQUEST_ID.get()


def from_header(value: str | None) -> str:
    """The incoming id if it is safe to log and echo, else a new one."""
    if value and SAFE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


@receiver(request_finished, dispatch_uid="careteam.requestid.finished")
def clear_after_request(**kwargs) -> None:
    """The response is closed: nothing logged from here on belongs to that request."""
    REQUEST_ID.set(None)


@before_task_publish.connect(dispatch_uid="careteam.requestid.publish")
def add_to_task_headers(sender=None, headers=None, **kwargs) -> None:
    request_id = current()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


@task_prerun.connect(dispatch_uid="careteam.requestid.prerun")
def set_for_task(task_id=None, task=None, **kwargs) -> None:
    # a task run eagerly inside a request keeps the request's id (no headers then)
    request_id = getattr(task.request, TASK_HEADER, None) if task is not None else None
    if request_id and SAFE_ID.fullmatch(str(request_id)) and task_id:
        _task_tokens[task_id] = REQUEST_ID.set(str(request_id))


@task_postrun.connect(dispatch_uid="careteam.requestid.postrun")
def reset_after_task(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        REQUEST_ID.reset(token)
