"""FHIR R4 mapping: CareTeam's records as FHIR resources (plain dicts, JSON-ready), and
the import of a CarePlan Bundle through the care-plan services.

Ids: Patient, CarePlan, Goal and ServiceRequest use the row id; CareTeam uses the patient
id (one care team per patient); Task ids say what they are: `handoff-<id>` for a handoff
and `referral-<id>` for the Gravity-style task that tracks a referral.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from careplans import services as plan_services
from careplans.models import (
    Activity,
    ActivityStatus,
    CarePlan,
    CarePlanIntent,
    CarePlanStatus,
    ExpressedBy,
    Goal,
    GoalAchievement,
    GoalLifecycle,
    GoalPriority,
)
from careteam.models import Discipline, Handoff, TeamMembership
from careteam.permissions import PatientAccess
from patients.models import Patient
from referrals.models import Referral

FHIR_JSON = "application/fhir+json"
SYSTEM_BASE = "https://careteam.example.org/fhir"
MRN_SYSTEM = f"{SYSTEM_BASE}/sid/mrn"
USER_SYSTEM = f"{SYSTEM_BASE}/sid/user"
DISCIPLINE_SYSTEM = f"{SYSTEM_BASE}/CodeSystem/discipline"
TEAM_ROLE_SYSTEM = f"{SYSTEM_BASE}/CodeSystem/team-role"
OWNER_DISCIPLINE_EXT = f"{SYSTEM_BASE}/StructureDefinition/owner-discipline"
GOAL_PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-priority"
GOAL_ACHIEVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-achievement"
LANGUAGE_SYSTEM = "urn:ietf:bcp:47"

# referral (Gravity SDOH Task codes) -> ServiceRequest.status
SERVICE_REQUEST_STATUS = {
    "draft": "draft",
    "requested": "active",
    "accepted": "active",
    "in-progress": "active",
    "on-hold": "on-hold",
    "rejected": "revoked",
    "cancelled": "revoked",
    "failed": "revoked",
    "completed": "completed",
    "entered-in-error": "entered-in-error",
}


def _drop_empty(data: dict[str, Any]) -> dict[str, Any]:
    """FHIR forbids empty strings, lists and objects: leave absent what has no value."""
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}


def _date(value) -> str | None:
    return value.isoformat() if value else None


def _meta(obj) -> dict:
    meta = {"lastUpdated": obj.updated_at.isoformat()} if getattr(obj, "updated_at", None) else {}
    if getattr(obj, "version", None):
        meta["versionId"] = str(obj.version)
    return meta


def patient_ref(patient_id: int, display: str = "") -> dict:
    return _drop_empty({"reference": f"Patient/{patient_id}", "display": display})


def user_ref(user) -> dict | None:
    if user is None:
        return None
    return {"identifier": {"system": USER_SYSTEM, "value": user.username}, "display": user.display_name}


def discipline_extension(discipline: Discipline | None) -> list[dict]:
    if discipline is None:
        return []
    return [{"url": OWNER_DISCIPLINE_EXT, "valueCode": discipline.code}]


# ---------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------
def patient_resource(patient: Patient) -> dict:
    name = [{"use": "official", "family": patient.family_name, "given": [patient.given_name]}]
    if patient.preferred_name:
        name.append({"use": "usual", "given": [patient.preferred_name]})
    telecom = []
    if patient.phone:
        telecom.append({"system": "phone", "value": patient.phone})
    if patient.email:
        telecom.append({"system": "email", "value": patient.email})
    address = _drop_empty(
        {
            "line": [patient.address_line] if patient.address_line else [],
            "city": patient.city,
            "state": patient.state,
            "postalCode": patient.postal_code,
        }
    )
    return _drop_empty(
        {
            "resourceType": "Patient",
            "id": str(patient.pk),
            "meta": _meta(patient),
            "identifier": [{"system": MRN_SYSTEM, "value": patient.mrn}],
            "active": patient.status == "active",
            "name": name,
            "telecom": telecom,
            "gender": patient.gender,
            "birthDate": _date(patient.birth_date),
            "deceasedBoolean": True if patient.status == "deceased" else None,
            "address": [address] if address else [],
            "communication": [
                {
                    "language": {
                        "coding": [{"system": LANGUAGE_SYSTEM, "code": patient.preferred_language}],
                        "text": patient.preferred_language,
                    },
                    "preferred": True,
                }
            ]
            if patient.preferred_language
            else [],
        }
    )


def goal_resource(goal: Goal, patient_id: int) -> dict:
    expressed = None
    if goal.expressed_by == ExpressedBy.PATIENT:
        expressed = patient_ref(patient_id)
    elif goal.expressed_by == ExpressedBy.FAMILY:
        expressed = {"display": ExpressedBy.FAMILY.label}
    target = _drop_empty(
        {
            "measure": {"text": goal.target_measure} if goal.target_measure else None,
            "detailString": goal.target_value,
            "dueDate": _date(goal.target_due),
        }
    )
    return _drop_empty(
        {
            "resourceType": "Goal",
            "id": str(goal.pk),
            "meta": _meta(goal),
            "extension": discipline_extension(goal.owner_discipline),
            "lifecycleStatus": goal.lifecycle_status,
            "achievementStatus": {
                "coding": [
                    {
                        "system": GOAL_ACHIEVEMENT_SYSTEM,
                        "code": goal.achievement_status,
                        "display": goal.get_achievement_status_display(),
                    }
                ]
            }
            if goal.achievement_status
            else None,
            "priority": {
                "coding": [
                    {
                        "system": GOAL_PRIORITY_SYSTEM,
                        "code": goal.priority,
                        "display": goal.get_priority_display(),
                    }
                ]
            },
            "description": {"text": goal.description},
            "subject": patient_ref(patient_id),
            "expressedBy": expressed,
            "target": [target] if target else [],
        }
    )


def activity_component(activity: Activity) -> dict:
    detail = _drop_empty(
        {
            "extension": discipline_extension(activity.owner_discipline),
            "kind": "Task",
            "code": {"text": activity.title},
            "goal": [{"reference": f"Goal/{g.pk}"} for g in activity.goals.all()],
            "status": activity.status,
            "statusReason": {"text": activity.status_reason} if activity.status_reason else None,
            "scheduledPeriod": {"end": _date(activity.due_date)} if activity.due_date else None,
            "performer": [user_ref(activity.assigned_to)] if activity.assigned_to_id else [],
            "description": activity.description,
        }
    )
    return {"detail": detail}


def careplan_resource(plan: CarePlan, goals: Iterable[Goal], activities: Iterable[Activity]) -> dict:
    return _drop_empty(
        {
            "resourceType": "CarePlan",
            "id": str(plan.pk),
            "meta": _meta(plan),
            "status": plan.status,
            "intent": plan.intent,
            "title": plan.title,
            "description": plan.description,
            "subject": patient_ref(plan.patient_id),
            "period": _drop_empty({"start": _date(plan.period_start), "end": _date(plan.period_end)}),
            "created": plan.created_at.isoformat() if plan.created_at else None,
            "author": user_ref(plan.author) if plan.author_id else None,
            "careTeam": [{"reference": f"CareTeam/{plan.patient_id}"}],
            "goal": [{"reference": f"Goal/{g.pk}"} for g in goals],
            "activity": [activity_component(a) for a in activities],
        }
    )


def careteam_resource(patient: Patient, memberships: Iterable[TeamMembership]) -> dict:
    participants = []
    for m in memberships:
        participants.append(
            {
                "role": [
                    {
                        "coding": [
                            {
                                "system": DISCIPLINE_SYSTEM,
                                "code": m.discipline.code,
                                "display": m.discipline.name,
                            },
                            {"system": TEAM_ROLE_SYSTEM, "code": m.role, "display": m.get_role_display()},
                        ],
                        "text": f"{m.discipline.name} ({m.get_role_display()})",
                    }
                ],
                "member": user_ref(m.user),
                "period": _drop_empty({"start": _date(m.start_date), "end": _date(m.end_date)}),
            }
        )
    return _drop_empty(
        {
            "resourceType": "CareTeam",
            "id": str(patient.pk),
            "status": "active" if participants else "inactive",
            "name": f"Care team for {patient.full_name}",
            "subject": patient_ref(patient.pk),
            "participant": participants,
        }
    )


def service_request_resource(referral: Referral) -> dict:
    service = referral.service
    return _drop_empty(
        {
            "resourceType": "ServiceRequest",
            "id": str(referral.pk),
            "meta": _meta(referral),
            "status": SERVICE_REQUEST_STATUS.get(referral.status, "unknown"),
            "intent": "order",
            "priority": referral.priority,
            "basedOn": [{"reference": f"CarePlan/{referral.care_plan_id}"}],
            "code": {"text": service.name},
            "subject": patient_ref(referral.patient_id),
            "authoredOn": (referral.sent_at or referral.created_at).isoformat(),
            "requester": user_ref(referral.referred_by),
            "performer": [{"display": f"{service.name} ({service.organization.name})"}],
            "reasonCode": [{"text": referral.reason}],
        }
    )


def referral_task_resource(referral: Referral) -> dict:
    outputs = []
    if referral.outcome:
        outputs.append({"type": {"text": "outcome"}, "valueString": referral.get_outcome_display()})
    return _drop_empty(
        {
            "resourceType": "Task",
            "id": f"referral-{referral.pk}",
            "meta": _meta(referral),
            "status": referral.status,
            "statusReason": {"text": referral.status_reason} if referral.status_reason else None,
            "intent": "order",
            "priority": referral.priority,
            "code": {"text": "Fulfill the referral"},
            "focus": {"reference": f"ServiceRequest/{referral.pk}"},
            "for": patient_ref(referral.patient_id),
            "authoredOn": referral.created_at.isoformat(),
            "lastModified": referral.updated_at.isoformat() if referral.updated_at else None,
            "requester": user_ref(referral.referred_by),
            "owner": {"display": referral.service.organization.name},
            "output": outputs,
        }
    )


def handoff_task_resource(handoff: Handoff) -> dict:
    owner = user_ref(handoff.to_user) if handoff.to_user_id else None
    if owner is None and handoff.to_discipline_id:
        owner = {"display": f"{handoff.to_discipline.name} queue"}
    notes = [
        {"text": f"{label}: {getattr(handoff, name)}"}
        for label, name in (
            ("Situation", "situation"),
            ("Background", "background"),
            ("Assessment", "assessment"),
            ("Recommendation", "recommendation"),
        )
    ]
    return _drop_empty(
        {
            "resourceType": "Task",
            "id": f"handoff-{handoff.pk}",
            "meta": _meta(handoff),
            "basedOn": [{"reference": f"CarePlan/{handoff.care_plan_id}"}] if handoff.care_plan_id else [],
            "status": handoff.status,
            "statusReason": {"text": handoff.status_reason} if handoff.status_reason else None,
            "intent": "order",
            "priority": handoff.priority,
            "code": {"text": f"Handoff ({handoff.get_kind_display()})"},
            "description": handoff.situation,
            "for": patient_ref(handoff.patient_id),
            "authoredOn": handoff.created_at.isoformat(),
            "lastModified": handoff.updated_at.isoformat() if handoff.updated_at else None,
            "requester": user_ref(handoff.from_user),
            "owner": owner,
            "restriction": {"period": {"end": handoff.due_at.isoformat()}},
            "note": notes,
        }
    )


def bundle(entries: list[tuple[str, dict]], *, kind: str = "searchset") -> dict:
    """A Bundle of (fullUrl, resource) pairs."""
    data: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if kind == "searchset":
        data["total"] = len(entries)
    data["entry"] = [
        {
            "fullUrl": url,
            "resource": resource,
            **({"search": {"mode": "match"}} if kind == "searchset" else {}),
        }
        for url, resource in entries
    ]
    if not data["entry"]:
        del data["entry"]
    return data


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


# ---------------------------------------------------------------------------
# Import of a CarePlan Bundle
# ---------------------------------------------------------------------------
def _coding_code(concept, system: str | None = None) -> str | None:
    if concept is None:
        return None
    for coding in concept.coding or []:
        if system is None or coding.system == system:
            return coding.code
    return None


def _ext_code(element, url: str) -> str | None:
    for ext in getattr(element, "extension", None) or []:
        if ext.url == url:
            return ext.valueCode
    return None


def _as_date(value) -> dt.date | None:
    """FHIR date/dateTime (parsed or not) -> date."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _choice(value, choices, field: str, errors: dict) -> Any:
    if value is not None and value not in choices.values:
        errors.setdefault(field, []).append(f"'{value}' is not one of: {', '.join(choices.values)}.")
    return value


def parse_patient(data: dict) -> dict:
    """Demographics (and the MRN, "" when none is sent) from a FHIR R4 Patient, validated
    against the R4B model first. Raises ValidationError listing the problems."""
    from fhir.resources.R4B.patient import Patient as FHIRPatient
    from pydantic import ValidationError as PydanticError

    if not isinstance(data, dict) or data.get("resourceType") != "Patient":
        raise ValidationError({"resourceType": ["Send a Patient resource."]})
    if "\\u0000" in json.dumps(data):
        raise ValidationError({"Patient": ["Text may not contain NUL characters."]})
    try:
        resource = FHIRPatient.model_validate(data)
    except PydanticError as exc:
        raise ValidationError(
            {"Patient": [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:20]]}
        ) from None
    errors: dict[str, list[str]] = {}
    mrns = [i.value for i in resource.identifier or [] if i.system == MRN_SYSTEM and i.value]
    if len(mrns) > 1:
        errors.setdefault("identifier", []).append("Send at most one MRN identifier.")
    names = resource.name or []
    official = next((n for n in names if n.use in (None, "official")), None)
    usual = next((n for n in names if n.use == "usual"), None)
    if official is None or not official.family or not official.given:
        errors.setdefault("name", []).append("An official name with family and given names is required.")
    if resource.birthDate is None:
        errors.setdefault("birthDate", []).append("birthDate is required.")
    if errors:
        raise ValidationError(errors)
    telecom = {t.system: t.value for t in reversed(resource.telecom or []) if t.value}
    address = (resource.address or [None])[0]
    language = ""
    for communication in resource.communication or []:
        codings = communication.language.coding or []
        code = next((c.code for c in codings if c.system in (None, LANGUAGE_SYSTEM) and c.code), "")
        if code and (communication.preferred or not language):
            language = code
    return {
        "mrn": mrns[0] if mrns else "",
        "given_name": " ".join(official.given),
        "family_name": official.family,
        "preferred_name": " ".join(usual.given or []) if usual is not None and usual.given else "",
        "birth_date": resource.birthDate,
        "gender": resource.gender or "unknown",
        "preferred_language": language or "en",
        "phone": telecom.get("phone", ""),
        "email": telecom.get("email", ""),
        "address_line": " ".join(address.line or []) if address is not None else "",
        "city": (address.city or "") if address is not None else "",
        "state": (address.state or "") if address is not None else "",
        "postal_code": (address.postalCode or "") if address is not None else "",
    }


def parse_careplan_bundle(data: dict) -> dict:
    """Validate a FHIR R4 Bundle holding one CarePlan (with its Goals) against the R4B
    models and CareTeam's code sets; return what the import needs. Raises ValidationError
    listing every problem, before anything is written."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError as PydanticError

    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise ValidationError({"resourceType": ["Send a Bundle holding one CarePlan and its Goals."]})
    if "\\u0000" in json.dumps(data):
        raise ValidationError({"Bundle": ["Text may not contain NUL characters."]})
    try:
        parsed = Bundle.model_validate(data)
    except PydanticError as exc:
        raise ValidationError(
            {"Bundle": [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:20]]}
        ) from None
    plans, goals = [], {}
    for entry in parsed.entry or []:
        resource = entry.resource
        if resource is None:
            continue
        kind = resource.get_resource_type()
        if kind == "CarePlan":
            plans.append(resource)
        elif kind == "Goal":
            keys = {entry.fullUrl} if entry.fullUrl else set()
            if resource.id:
                keys.add(f"Goal/{resource.id}")
            goals[frozenset(keys)] = resource
    errors: dict[str, list[str]] = {}
    if len(plans) != 1:
        raise ValidationError({"CarePlan": ["The Bundle must hold exactly one CarePlan."]})
    plan = plans[0]
    disciplines = {d.code: d for d in Discipline.objects.all()}

    def discipline_of(element, field):
        code = _ext_code(element, OWNER_DISCIPLINE_EXT)
        if code is not None and code not in disciplines:
            errors.setdefault(field, []).append(f"Unknown discipline '{code}'.")
        return disciplines.get(code) if code else None

    by_key: dict[str, int] = {}
    goal_specs = []
    for index, (keys, goal) in enumerate(goals.items()):
        field = f"Goal[{index}]"
        text = (goal.description.text or "").strip() if goal.description else ""
        if not text:
            errors.setdefault(field, []).append("A goal needs description.text.")
        expressed = ExpressedBy.CLINICIAN
        if goal.expressedBy is not None:
            if (goal.expressedBy.reference or "").startswith("Patient/"):
                expressed = ExpressedBy.PATIENT
            elif goal.expressedBy.display == ExpressedBy.FAMILY.label:
                expressed = ExpressedBy.FAMILY
        target = (goal.target or [None])[0]
        spec = {
            "description": text,
            "lifecycle_status": _choice(goal.lifecycleStatus, GoalLifecycle, field, errors),
            "achievement_status": _choice(
                _coding_code(goal.achievementStatus, GOAL_ACHIEVEMENT_SYSTEM) or "",
                GoalAchievement,
                field,
                errors,
            )
            if _coding_code(goal.achievementStatus, GOAL_ACHIEVEMENT_SYSTEM)
            else "",
            "priority": _choice(
                _coding_code(goal.priority, GOAL_PRIORITY_SYSTEM) or GoalPriority.MEDIUM,
                GoalPriority,
                field,
                errors,
            ),
            "expressed_by": expressed,
            "owner_discipline": discipline_of(goal, field),
            "target_measure": (target.measure.text or "")[:200] if target and target.measure else "",
            "target_value": (target.detailString or "")[:100] if target else "",
            "target_due": _as_date(target.dueDate) if target else None,
        }
        for key in keys:
            by_key[key] = index
        goal_specs.append(spec)

    def goal_index(reference, field) -> int | None:
        ref = reference.reference or ""
        if ref in by_key:
            return by_key[ref]
        errors.setdefault(field, []).append(f"Goal reference '{ref}' is not in the Bundle.")
        return None

    activity_specs = []
    for index, activity in enumerate(plan.activity or []):
        field = f"CarePlan.activity[{index}]"
        detail = activity.detail
        if detail is None:
            errors.setdefault(field, []).append("Only activities with a detail can be imported.")
            continue
        title = ((detail.code.text if detail.code else None) or detail.description or "").strip()
        if not title:
            errors.setdefault(field, []).append("An activity needs detail.code.text or detail.description.")
        due = _as_date(detail.scheduledPeriod.end) if detail.scheduledPeriod else None
        activity_specs.append(
            {
                "title": title[:200],
                "description": (detail.description or "") if detail.code and detail.code.text else "",
                "status": _choice(detail.status, ActivityStatus, field, errors),
                "status_reason": ((detail.statusReason.text or "") if detail.statusReason else "")[:300],
                "due_date": due,
                "owner_discipline": discipline_of(detail, field),
                "goals": [i for i in (goal_index(r, field) for r in detail.goal or []) if i is not None],
            }
        )
    plan_spec = {
        "title": (plan.title or "Imported care plan")[:200],
        "description": plan.description or "",
        "status": _choice(plan.status, CarePlanStatus, "CarePlan", errors),
        "intent": _choice(plan.intent, CarePlanIntent, "CarePlan", errors),
        "period_start": _as_date(plan.period.start) if plan.period else None,
        "period_end": _as_date(plan.period.end) if plan.period else None,
        "subject": plan.subject.reference if plan.subject else None,
    }
    if errors:
        raise ValidationError(errors)
    # every patient the Bundle names (CarePlan.subject, Goal.subject): the import checks
    # them against the patient it writes to
    subjects = [
        (kind, resource.subject.reference or "")
        for kind, resource in [("CarePlan", plan), *(("Goal", g) for g in goals.values())]
        if resource.subject is not None
    ]
    return {"plan": plan_spec, "goals": goal_specs, "activities": activity_specs, "subjects": subjects}


def check_import_subjects(parsed: dict, patient_id: int) -> None:
    """A Bundle imported for one patient names only that patient: a CarePlan or Goal
    whose subject is another patient is refused (nothing is written)."""
    expected = f"Patient/{patient_id}"
    wrong = sorted({kind for kind, reference in parsed.get("subjects", ()) if reference != expected})
    if wrong:
        raise ValidationError(
            {
                "subject": [
                    f"{kind}.subject must be {expected}, the patient this Bundle is imported for."
                    for kind in wrong
                ]
            }
        )


@transaction.atomic
def careplan_import(*, access: PatientAccess, by, parsed: dict, request=None) -> CarePlan:
    """Create the plan, its goals and activities through the services: all or nothing."""
    access.require_edit()
    spec = dict(parsed["plan"])
    spec.pop("subject", None)
    plan = plan_services.careplan_create(access=access, by=by, request=request, **spec)
    goals = [
        plan_services.goal_create(access=access, plan=plan, by=by, request=request, **goal)
        for goal in parsed["goals"]
    ]
    default_discipline = access.memberships[0].discipline if access.memberships else None
    for activity in parsed["activities"]:
        fields = dict(activity)
        linked = [goals[i] for i in fields.pop("goals")]
        fields["owner_discipline"] = fields["owner_discipline"] or default_discipline
        plan_services.activity_create(
            access=access, plan=plan, by=by, goals=linked, request=request, **fields
        )
    return plan
