"""Append-only audit trail of every read and change of patient data, and of denials."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .models import AuditAction, AuditEvent, AuditOutcome


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # Behind a TLS proxy the proxy's address is what Django sees; django-axes' ipware
    # settings decide how many proxies to trust for lockouts. Here REMOTE_ADDR is enough.
    return request.META.get("REMOTE_ADDR") or None


def audit(
    *,
    user: Any,
    action: str,
    obj: Any = None,
    patient: Any = None,
    patient_id: int | None = None,
    outcome: str = AuditOutcome.ALLOWED,
    request: HttpRequest | None = None,
    detail: str = "",
    object_type: str | None = None,
    object_id: Any = None,
) -> AuditEvent:
    """Write one audit event. `obj` names the object; `patient` the patient it belongs to."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = obj.pk if object_id is None else object_id
    if patient is not None:
        patient_id = patient.pk
    authenticated = getattr(user, "is_authenticated", False)
    return AuditEvent.objects.create(
        user_id=user.pk if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        outcome=outcome,
        object_type=object_type or "",
        object_id="" if object_id is None else str(object_id),
        patient_id=patient_id,
        source_ip=client_ip(request),
        path=(request.get_full_path()[:300] if request is not None else ""),
        detail=detail[:500],
    )


__all__ = ["audit", "AuditAction", "AuditOutcome"]
