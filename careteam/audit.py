"""Append-only audit trail of every read and change of patient data, and of denials.

- `audit(...)` writes one event. Pass `request=` from views: the event then carries the
  source IP and path, and the request is marked as audited so the automatic audit in
  `careteam.middleware.PatientAuditMiddleware` does not write a second row.
- `audit_request(request, ...)` is what that middleware calls for patient URLs (URL kwargs
  named as in `PATIENT_URL_KWARGS`): a 403/404 answer is recorded as a denial, a 200 GET
  that no view audited is recorded as a read. Other views therefore get denial (and read)
  auditing for free.
- `audit_list(request, list_name=..., patient_ids=..., query=...)` writes ONE event per
  list read with the ids of the patients shown; `events_for_patient(id)` finds a
  patient's events, list reads that showed them included.
- A change refused with 409, 412 or 428 is an `edit-refused` denial (the middleware calls
  `audit_refused_edit`; `note_refusal` lets the code that refuses say why).
- The database refuses UPDATE and DELETE on the table (trigger, migration careteam/0003).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from . import requestid
from .models import AuditAction, AuditEvent, AuditOutcome

# URL keyword -> (model label, lookup from that model to the patient id). The most
# specific keyword present names the object of the event.
PATIENT_URL_KWARGS: dict[str, tuple[str, str]] = {
    "patient_id": ("patients.Patient", "pk"),
    "plan_id": ("careplans.CarePlan", "patient_id"),
    "goal_id": ("careplans.Goal", "care_plan__patient_id"),
    "need_id": ("careplans.Need", "care_plan__patient_id"),
    "activity_id": ("careplans.Activity", "care_plan__patient_id"),
    "note_id": ("careplans.Note", "care_plan__patient_id"),
    "screening_id": ("careplans.QuestionnaireResponse", "patient_id"),
    "membership_id": ("careteam.TeamMembership", "patient_id"),
    "handoff_id": ("careteam.Handoff", "patient_id"),
    "referral_id": ("referrals.Referral", "patient_id"),
    "consent_id": ("patients.Consent", "patient_id"),
    # care transitions (the transitions app's pages name a transition by its id)
    "transition_id": ("transitions.Transition", "patient_id"),
    "visit_id": ("visits.Visit", "patient_id"),
    "authorisation_id": ("visits.Authorisation", "patient_id"),
    "conversation_id": ("careteam.Conversation", "patient_id"),
    "message_id": ("careteam.Message", "conversation__patient_id"),
    "huddle_id": ("careteam.Huddle", "patient_id"),
}
# most specific first
_SPECIFICITY = (
    "huddle_id",
    "message_id",
    "conversation_id",
    "visit_id",
    "authorisation_id",
    "screening_id",
    "note_id",
    "activity_id",
    "need_id",
    "goal_id",
    "referral_id",
    "handoff_id",
    "consent_id",
    "membership_id",
    "transition_id",
    "plan_id",
    "patient_id",
)
_MARK = "_careteam_audited"


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address as django-axes sees it (same proxy-count setting), so the
    audit trail and the lockouts agree on who connected."""
    if request is None:
        return None
    request = getattr(request, "_request", request)  # DRF Request wraps Django's
    try:
        from axes.helpers import get_client_ip_address

        ip = get_client_ip_address(request)
    except Exception:  # noqa: BLE001 - never fail an audit write for a header
        ip = None
    return ip or request.META.get("REMOTE_ADDR") or None


def _mark(request, outcome: str) -> None:
    if request is None:
        return
    request = getattr(request, "_request", request)
    marks = getattr(request, _MARK, None)
    if marks is None:
        marks = set()
        setattr(request, _MARK, marks)
    marks.add(outcome)


def audited_outcomes(request) -> set[str]:
    """Outcomes already audited during this request ("allowed", "denied")."""
    request = getattr(request, "_request", request)
    return set(getattr(request, _MARK, ()) or ())


def _text(value: Any, limit: int) -> str:
    """A value as the audit trail stores it: text, at most `limit` characters, with NUL
    (which PostgreSQL text refuses) written visibly, so a hostile URL is still recorded
    as what it was and never stops the request it describes."""
    return ("" if value is None else str(value)).replace("\x00", "\\x00")[:limit]


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
    patient_ids: Iterable[int | None] = (),
) -> AuditEvent:
    """Write one audit event. `obj` names the object; `patient` the patient it belongs to;
    `patient_ids` the other patients whose data it showed (a list read)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = obj.pk if object_id is None else object_id
    if patient is not None:
        patient_id = patient.pk
    authenticated = getattr(user, "is_authenticated", False)
    django_request = getattr(request, "_request", request)
    event = AuditEvent.objects.create(
        user_id=user.pk if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        outcome=outcome,
        object_type=_text(object_type, 60),
        object_id=_text(object_id, 64),
        patient_id=patient_id,
        source_ip=client_ip(django_request),
        path=_text(django_request.get_full_path() if django_request is not None else "", 300),
        detail=_text(detail, 500),
        patient_ids=sorted({int(pid) for pid in patient_ids if pid is not None}),
        request_id=requestid.current() or "",
    )
    _mark(django_request, outcome)
    return event


def audit_list(
    request,
    *,
    list_name: str,
    patient_ids: Iterable[int | None] = (),
    patient_id: int | None = None,
    query: Mapping[str, Any] | None = None,
    detail: str = "",
    action: str = AuditAction.VIEW,
) -> AuditEvent:
    """Audit one read of a list of patient data as ONE event (one INSERT, whatever the
    length of the page): object_type `list_name`, the filter and search terms the user
    gave (`query`, stored as typed: it is what they asked for), `patient_id` when the list
    is of one patient, and the ids of the patients the page showed in `patient_ids`, so
    the read appears in each of those patients' access logs (`events_for_patient`)."""
    django_request = getattr(request, "_request", request)
    terms = " ".join(f"{k}={v}" for k, v in (query or {}).items() if v not in (None, "", [], ()))
    text = "; ".join(part for part in (detail, terms) if part)
    return audit(
        user=django_request.user,
        action=action,
        object_type=list_name,
        object_id="",
        patient_id=patient_id,
        patient_ids=patient_ids,
        request=request,
        detail=text,
    )


def patient_events_q(patient_id: int | QuerySet) -> Q:
    """Events about this patient (or the patients of a queryset of patient ids): those
    naming them and the list reads that showed them. PostgreSQL answers it with a
    BitmapOr of the patient index and the GIN index on patient_ids."""
    if isinstance(patient_id, int):
        return Q(patient_id=patient_id) | Q(patient_ids__contains=[patient_id])
    return Q(patient_id__in=patient_id) | Q(patient_ids__overlap=ArraySubquery(patient_id))


def events_for_patient(patient_id: int | QuerySet) -> QuerySet[AuditEvent]:
    """A patient's access log: see `patient_events_q`."""
    return AuditEvent.objects.filter(patient_events_q(patient_id))


# ---------------------------------------------------------------------------
# Automatic auditing of patient URLs (used by the middleware)
# ---------------------------------------------------------------------------
def patient_url_target(kwargs: dict[str, Any]) -> tuple[str, str, int | None] | None:
    """(object type, object id, patient id or None) named by a patient URL's kwargs, or
    None if the URL names no patient data. The patient id is looked up (one query) and is
    None when the object does not exist."""
    name = next((k for k in _SPECIFICITY if k in kwargs), None)
    if name is None:
        return None
    label, patient_path = PATIENT_URL_KWARGS[name]
    model = apps.get_model(label)
    raw = kwargs[name]
    try:
        pk = int(raw)
    except (TypeError, ValueError):
        return model._meta.label_lower, str(raw)[:64], None
    if not -(2**63) < pk < 2**63:  # no such row; PostgreSQL would refuse the number
        return model._meta.label_lower, str(raw)[:64], None
    patient_id = model._default_manager.filter(pk=pk).values_list(patient_path, flat=True).first()
    if name != "patient_id" and "patient_id" in kwargs and patient_id is None:
        # the item is missing; the patient named in the URL still identifies the record
        return _patient_only(model, pk, kwargs["patient_id"])
    return model._meta.label_lower, str(pk), patient_id


def _patient_only(model, pk, raw_patient_id) -> tuple[str, str, int | None]:
    from patients.models import Patient

    try:
        pid = int(raw_patient_id)
    except (TypeError, ValueError):
        return model._meta.label_lower, str(pk), None
    if not 0 < pid < 2**63:
        return model._meta.label_lower, str(pk), None
    exists = Patient.objects.filter(pk=pid).exists()
    return model._meta.label_lower, str(pk), pid if exists else None


def audit_request(request: HttpRequest, *, status_code: int) -> AuditEvent | None:
    """Audit one answered request to a patient URL, unless a view already did:
    403/404 -> a denial; 200 to GET/HEAD -> a read. Returns the event written, if any."""
    match = getattr(request, "resolver_match", None)
    if match is None or "admin" in (match.namespaces or []):
        return None
    done = audited_outcomes(request)
    if status_code in (403, 404):
        if AuditOutcome.DENIED in done:
            return None
        outcome, action = AuditOutcome.DENIED, _action_for(request.method)
    elif status_code == 200 and request.method in ("GET", "HEAD"):
        if done:
            return None
        outcome, action = AuditOutcome.ALLOWED, AuditAction.VIEW
    else:
        return None
    target = patient_url_target(match.kwargs)
    if target is None:
        return None
    object_type, object_id, patient_id = target
    return audit(
        user=request.user,
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id,
        request=request,
        detail=f"HTTP {status_code} {request.method} {match.view_name}"[:500],
    )


def audit_denied(request, *, url_kwargs: dict[str, Any], detail: str = "") -> AuditEvent | None:
    """Record a denial (404/403) of the patient data that `url_kwargs` names, as the
    middleware would for a URL carrying those kwargs (e.g. {"handoff_id": 7} for
    /fhir/Task/handoff-7, {"patient_id": 12} for a hidden CarePlan.subject). The patient
    id is stored when the object exists, so the denial shows in that patient's log."""
    if AuditOutcome.DENIED in audited_outcomes(request):
        return None
    target = patient_url_target(url_kwargs)
    if target is None:
        return None
    object_type, object_id, patient_id = target
    django_request = getattr(request, "_request", request)
    return audit(
        user=django_request.user,
        action=_action_for(django_request.method),
        outcome=AuditOutcome.DENIED,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id,
        request=request,
        detail=(detail or f"HTTP 404 {django_request.method}")[:500],
    )


# Answers that refuse a change without writing it, and what each means.
REFUSED_EDIT_STATUSES = {
    409: "conflicts with the record's current state",
    412: "made on an older version",
    428: "sent without the version it was made on",
}
_REFUSAL = "_careteam_refusal"


def note_refusal(request, reason: str) -> None:
    """Say why this request's change is being refused, for its `edit-refused` event. Only
    codes and version numbers: never field values or messages, which may name the patient."""
    setattr(getattr(request, "_request", request), _REFUSAL, reason[:300])


def audit_refused_edit(request: HttpRequest, *, status_code: int) -> AuditEvent | None:
    """Audit one change refused with 409, 412 or 428 (page forms, the API, FHIR alike):
    the object and its patient when the URL names them, the reason, no patient data."""
    user = getattr(request, "user", None)
    match = getattr(request, "resolver_match", None)
    if user is None or not user.is_authenticated or match is None or "admin" in (match.namespaces or []):
        return None
    target = patient_url_target(match.kwargs) or ("", "", None)
    object_type, object_id, patient_id = target
    reason = getattr(request, _REFUSAL, None) or REFUSED_EDIT_STATUSES[status_code]
    return audit(
        user=user,
        action=AuditAction.EDIT_REFUSED,
        outcome=AuditOutcome.DENIED,
        object_type=object_type or match.view_name,
        object_id=object_id,
        patient_id=patient_id,
        request=request,
        detail=f"HTTP {status_code} {request.method} {match.view_name}: {reason}",
    )


def _action_for(method: str) -> str:
    if method in ("GET", "HEAD", "OPTIONS"):
        return AuditAction.VIEW
    if method == "DELETE":
        return AuditAction.DELETE
    return AuditAction.UPDATE


__all__ = [
    "audit",
    "audit_denied",
    "audit_list",
    "audit_refused_edit",
    "audit_request",
    "audited_outcomes",
    "client_ip",
    "events_for_patient",
    "patient_events_q",
    "note_refusal",
    "patient_url_target",
    "AuditAction",
    "AuditOutcome",
    "PATIENT_URL_KWARGS",
]
