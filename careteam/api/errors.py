"""One translation from domain exceptions to HTTP answers, shared by the REST API and FHIR.

Services raise Django's ValidationError (bad input, or an illegal status transition),
ReadOnlyAccess / PermissionDenied (visible but not writable), StaleVersionError (someone
saved after the caller read) and Http404 (missing or not visible: the same answer).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from careteam.audit import note_refusal
from careteam.concurrency import StaleVersionError

# ValidationError codes that mean "the request is well formed but conflicts with the
# object's current state": answered 409, not 400.
CONFLICT_CODES = {
    "illegal_transition",
    "already_accepted",
    "already_decided",
    "duplicate_mrn",
    "possible_duplicate",
    # conversations: a message past its edit window, or already retracted
    "edit_window_closed",
    "already_retracted",
    # a double booking of a clinician not confirmed (visits/services.py)
    "visit_conflict",
    # huddles: answering a closed one or twice, starting a second one (careteam/huddles.py)
    "huddle_closed",
    "already_answered",
    "huddle_already_open",
}


class PreconditionRequired(exceptions.APIException):
    status_code = 428
    default_detail = 'This change needs an If-Match header with the ETag you read (e.g. If-Match: W/"3").'
    default_code = "precondition_required"


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The object was changed by someone else since you read it; read it again."
    default_code = "precondition_failed"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the object's current state."
    default_code = "conflict"


def _codes(exc: DjangoValidationError) -> set[str]:
    codes = set()
    if len(exc.args) > 1 and exc.args[1]:
        codes.add(exc.args[1])
    for error in getattr(exc, "error_list", []) or []:
        if getattr(error, "code", None):
            codes.add(error.code)
    for errors in getattr(exc, "error_dict", {}).values():
        codes.update(e.code for e in errors if getattr(e, "code", None))
    return codes


def validation_payload(exc: DjangoValidationError) -> dict[str, Any]:
    """Field errors as {"field": ["message"]}; errors about the whole request as
    {"detail": "message"}."""
    if hasattr(exc, "error_dict"):
        payload: dict[str, Any] = {}
        for name, messages in exc.message_dict.items():
            key = "detail" if name == "__all__" else name
            payload[key] = " ".join(messages) if key == "detail" else list(messages)
        return payload
    return {"detail": " ".join(exc.messages)}


def translate(exc: Exception) -> Exception:
    """Map a domain exception to the DRF exception carrying the right status."""
    if isinstance(exc, StaleVersionError):
        error = PreconditionFailed(str(exc))
        error.current_version = exc.current.version  # type: ignore[attr-defined]
        return error
    if isinstance(exc, DjangoValidationError):
        payload = validation_payload(exc)
        if _codes(exc) & CONFLICT_CODES:
            error = Conflict()
            error.detail = payload  # type: ignore[assignment]
            return error
        return exceptions.ValidationError(payload)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, Http404):
        return exceptions.NotFound("Not found.")
    if isinstance(exc, IntegrityError):
        # A database constraint refused the change (the services check first; this is the
        # backstop): the transaction was rolled back, so nothing was written.
        return Conflict(f"The change conflicts with the record's current state: {_constraint(exc)}.")
    return exc


def _constraint(exc: IntegrityError) -> str:
    diag = getattr(getattr(exc, "__cause__", None), "diag", None)
    return getattr(diag, "constraint_name", None) or "a database rule"


def refusal_reason(exc: Exception) -> str | None:
    """Why a change is refused (409/412/428), for the audit trail: codes, constraint
    names and version numbers only, never a message that could quote the record."""
    if isinstance(exc, StaleVersionError):
        return exc.audit_reason
    if isinstance(exc, PreconditionRequired):
        return "no If-Match"
    if isinstance(exc, PreconditionFailed):
        return "If-Match names no version"
    if isinstance(exc, DjangoValidationError) and _codes(exc) & CONFLICT_CODES:
        return "conflict: " + ", ".join(sorted(_codes(exc) & CONFLICT_CODES))
    if isinstance(exc, IntegrityError):
        return f"database rule {_constraint(exc)}"
    return None


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    reason = refusal_reason(exc)
    exc = translate(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    if reason and request is not None:
        # the middleware writes the edit-refused event (careteam.audit.audit_refused_edit)
        note_refusal(request, reason)
    if isinstance(exc, PreconditionFailed) and hasattr(exc, "current_version"):
        response.data = {"detail": response.data["detail"], "current_version": exc.current_version}
        response["ETag"] = f'W/"{exc.current_version}"'
    if isinstance(response.data, list):
        response.data = {"detail": " ".join(str(m) for m in response.data)}
    return response
