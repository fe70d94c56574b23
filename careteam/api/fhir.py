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
from html import escape
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from careplans.models import (
    Activity,
    CarePlan,
    ExpressedBy,
    Goal,
)
from careteam.models import Discipline, Handoff, TeamMembership
from patients.models import BirthSex, Ethnicity, Patient, Race
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
SERVICE_SYSTEM = f"{SYSTEM_BASE}/sid/service"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
TASK_KIND_SYSTEM = f"{SYSTEM_BASE}/CodeSystem/task-kind"

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


def _meta(obj, profile: str | None = None) -> dict:
    meta = {"lastUpdated": obj.updated_at.isoformat()} if getattr(obj, "updated_at", None) else {}
    if getattr(obj, "version", None):
        meta["versionId"] = str(obj.version)
    if profile:
        meta["profile"] = [profile]
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
            "meta": _meta(patient, US_CORE_PATIENT),
            "extension": us_core_patient_extensions(patient),
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
    data = _drop_empty(
        {
            "resourceType": "Goal",
            "id": str(goal.pk),
            "meta": _meta(goal, US_CORE_GOAL),
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
    return _with_source_goal(goal, data)


def _source(obj) -> tuple[dict, dict]:
    kept = getattr(obj, "fhir", None) or {}
    return kept.get("source") or {}, kept.get("derived") or {}


def _overlay(data: dict, source: dict, element: str, unchanged: bool) -> None:
    """While the columns behind `element` hold what the import derived, answer the
    element as it was sent (or leave it out when it was not sent)."""
    if not unchanged:
        return
    if element in source:
        data[element] = source[element]
    else:
        data.pop(element, None)


def _with_source_goal(goal: Goal, data: dict) -> dict:
    """An imported goal: the elements CareTeam has no column for as sent, and those it
    has while unchanged (careteam/api/fhir_import.py)."""
    source, derived = _source(goal)
    if not derived:
        # when the goal was set (US Core wants a start or a due date)
        data["startDate"] = _date(timezone.localtime(goal.created_at).date()) if goal.created_at else None
        return _order(_drop_empty(data), GOAL_ORDER)

    now = goal_derived(goal)
    for element, key in (
        ("description", "description"),
        ("achievementStatus", "achievement_status"),
        ("priority", "priority"),
        ("expressedBy", "expressed_by"),
        ("target", "target"),
    ):
        if element == "expressedBy" and goal.expressed_by == ExpressedBy.PATIENT:
            continue  # the patient is named as this record's patient, whatever the source said
        _overlay(data, source, element, now[key] == derived.get(key))
    for element in (
        "identifier",
        "category",
        "startDate",
        "startCodeableConcept",
        "statusDate",
        "statusReason",
        "addresses",
        "note",
        "outcomeCode",
        "outcomeReference",
    ):
        if element in source:
            data[element] = source[element]
    if "description" not in data:
        data["description"] = {"text": goal.description}
    return _order(data, GOAL_ORDER)


GOAL_ORDER = (
    "resourceType",
    "id",
    "meta",
    "extension",
    "identifier",
    "lifecycleStatus",
    "achievementStatus",
    "category",
    "priority",
    "description",
    "subject",
    "startDate",
    "startCodeableConcept",
    "target",
    "statusDate",
    "statusReason",
    "expressedBy",
    "addresses",
    "note",
    "outcomeCode",
    "outcomeReference",
)
CAREPLAN_ORDER = (
    "resourceType",
    "id",
    "meta",
    "text",
    "contained",
    "extension",
    "identifier",
    "status",
    "intent",
    "category",
    "title",
    "description",
    "subject",
    "period",
    "created",
    "author",
    "careTeam",
    "addresses",
    "goal",
    "activity",
    "note",
)


def _order(data: dict, order: tuple[str, ...]) -> dict:
    return {k: data[k] for k in sorted(data, key=lambda k: order.index(k) if k in order else len(order))}


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
    source, derived = _source(activity)
    if not derived:
        return {"detail": detail}

    now = activity_derived(activity)
    same = {key: now[key] == derived.get(key) for key in now}
    sent = source.get("detail")
    out = {k: source[k] for k in ("outcomeCodeableConcept", "outcomeReference", "progress") if k in source}
    if sent is None and "reference" in source and all(same.values()):
        return {**out, "reference": source["reference"]}
    sent = sent or {}
    if same["title"]:
        detail.pop("code", None)
        if "code" in sent:
            detail["code"] = sent["code"]
        elif activity.description == "" and same["description"]:
            detail["description"] = activity.title  # it came as the description
    detail.pop("kind", None)
    if "kind" in sent:
        detail["kind"] = sent["kind"]
    if same["status"]:
        detail["status"] = sent.get("status", detail["status"])
    if same["status_reason"] and "statusReason" in sent:
        detail["statusReason"] = sent["statusReason"]
    if same["due"]:
        detail.pop("scheduledPeriod", None)
        for key in ("scheduledTiming", "scheduledPeriod", "scheduledString"):
            if key in sent:
                detail[key] = sent[key]
    if same["assigned"] and "performer" in sent:
        detail["performer"] = sent["performer"]
    for key in (
        "location",
        "reasonCode",
        "reasonReference",
        "instantiatesCanonical",
        "instantiatesUri",
        "productCodeableConcept",
        "productReference",
        "dailyAmount",
        "quantity",
    ):
        if key in sent:
            detail[key] = sent[key]
    return {**out, "detail": detail}


def careplan_resource(plan: CarePlan, goals: Iterable[Goal], activities: Iterable[Activity]) -> dict:
    data = _drop_empty(
        {
            "resourceType": "CarePlan",
            "id": str(plan.pk),
            "meta": _meta(plan, US_CORE_CAREPLAN),
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
    data["category"] = [ASSESS_PLAN]
    source, derived = _source(plan)
    if derived:
        now = plan_derived(plan)
        for element, key in (
            ("title", "title"),
            ("description", "description"),
            ("status", "status"),
            ("period", "period"),
        ):
            _overlay(data, source, element, now[key] == derived.get(key))
        for element in ("identifier", "text", "addresses", "note"):
            if element in source:
                data[element] = source[element]
        _overlay(data, source, "created", True)  # as the source wrote it, or not at all
        sent = source.get("category") or []
        data["category"] = sent if any(_is_assess_plan(c) for c in sent) else [ASSESS_PLAN, *sent]
    if "text" not in data:
        data["text"] = careplan_narrative(plan, data)
    return _order(data, CAREPLAN_ORDER)


def careplan_narrative(plan: CarePlan, data: dict) -> dict:
    """The plan in a few words, for US Core's narrative (what a reader without CareTeam sees)."""
    period = data.get("period") or {}
    lines = [
        f"<p><b>{escape(plan.title)}</b></p>",
        f"<p>Status: {escape(data.get('status', plan.status))}; from {escape(period.get('start', '?'))}"
        + (f" to {escape(period['end'])}" if period.get("end") else "")
        + "</p>",
    ]
    if plan.description:
        lines.append(f"<p>{escape(plan.description)}</p>")
    activities = [a.get("detail", {}).get("code", {}).get("text") or "" for a in data.get("activity", [])]
    if any(activities):
        lines.append("<ul>" + "".join(f"<li>{escape(t)}</li>" for t in activities if t) + "</ul>")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{"".join(lines)}</div>'}


# US Core race, ethnicity and birth sex of the patient record
OMB_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
NULL_FLAVOR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
US_CORE_EXT = "http://hl7.org/fhir/us/core/StructureDefinition"


def _omb(code: str, label: str) -> dict:
    system = NULL_FLAVOR_SYSTEM if code in ("UNK", "ASKU") else OMB_SYSTEM
    return {
        "extension": [
            {"url": "ombCategory", "valueCoding": {"system": system, "code": code, "display": label}},
            {"url": "text", "valueString": label},
        ]
    }


def us_core_patient_extensions(patient: Patient) -> list[dict]:
    out = []
    if getattr(patient, "race", ""):
        out.append({"url": f"{US_CORE_EXT}/us-core-race", **_omb(patient.race, patient.get_race_display())})
    if getattr(patient, "ethnicity", ""):
        out.append(
            {
                "url": f"{US_CORE_EXT}/us-core-ethnicity",
                **_omb(patient.ethnicity, patient.get_ethnicity_display()),
            }
        )
    if getattr(patient, "birth_sex", ""):
        out.append({"url": f"{US_CORE_EXT}/us-core-birthsex", "valueCode": patient.birth_sex})
    return out


CAREPLAN_CATEGORY_SYSTEM = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
ASSESS_PLAN = {"coding": [{"system": CAREPLAN_CATEGORY_SYSTEM, "code": "assess-plan"}]}


def _is_assess_plan(concept: dict) -> bool:
    return any(
        c.get("system") == CAREPLAN_CATEGORY_SYSTEM and c.get("code") == "assess-plan"
        for c in (concept or {}).get("coding") or []
    )


def role_concepts(membership: TeamMembership) -> list[dict]:
    """A member's role: the SNOMED CT occupation of their discipline (US Core's Care Team
    Member Function value set) with the discipline as a separate coding, and the team role."""
    discipline = membership.discipline
    codings = []
    if discipline.code in DISCIPLINE_SNOMED:
        code, display = DISCIPLINE_SNOMED[discipline.code]
        codings.append({"system": SNOMED, "code": code, "display": display})
    codings.append({"system": DISCIPLINE_SYSTEM, "code": discipline.code, "display": discipline.name})
    codings.append(
        {"system": TEAM_ROLE_SYSTEM, "code": membership.role, "display": membership.get_role_display()}
    )
    # one concept: US Core allows a participant one role
    return [{"coding": codings, "text": f"{discipline.name} ({membership.get_role_display()})"}]


def careteam_resource(
    patient: Patient, memberships: Iterable[TeamMembership], *, active: bool = True
) -> dict | None:
    """The patient's team: its current members (or, when it has none, its former ones, as
    an inactive team). A patient with no members at all has no CareTeam (None): US Core
    wants at least one participant."""
    participants = [
        _drop_empty(
            {
                "role": role_concepts(m),
                "member": {"reference": f"Practitioner/{m.user_id}", "display": m.user.display_name},
                "period": _drop_empty({"start": _date(m.start_date), "end": _date(m.end_date)}),
            }
        )
        for m in memberships
    ]
    if not participants:
        return None
    return _drop_empty(
        {
            "resourceType": "CareTeam",
            "id": str(patient.pk),
            "meta": {"profile": [US_CORE_CARETEAM]},
            "status": "active" if active else "inactive",
            "name": f"Care team for {patient.full_name}",
            "subject": patient_ref(patient.pk),
            "participant": participants,
        }
    )


def practitioner_resource(user, disciplines: Iterable[Discipline]) -> dict:
    """A team member as a Practitioner: name, disciplines as qualifications, and only the
    work contact (the account's email and phone)."""
    telecom = []
    if user.phone:
        telecom.append({"system": "phone", "value": user.phone, "use": "work"})
    if user.email:
        telecom.append({"system": "email", "value": user.email, "use": "work"})
    name = _drop_empty(
        {
            "family": user.last_name or user.username,
            "given": [user.first_name] if user.first_name else [],
            "suffix": [user.title] if user.title else [],
            "text": user.display_name,
        }
    )
    qualifications = []
    for discipline in disciplines:
        codings = []
        if discipline.code in DISCIPLINE_SNOMED:
            code, display = DISCIPLINE_SNOMED[discipline.code]
            codings.append({"system": SNOMED, "code": code, "display": display})
        codings.append({"system": DISCIPLINE_SYSTEM, "code": discipline.code, "display": discipline.name})
        qualifications.append({"code": {"coding": codings, "text": discipline.name}})
    return _drop_empty(
        {
            "resourceType": "Practitioner",
            "id": str(user.pk),
            "meta": {"profile": [US_CORE_PRACTITIONER]},
            "identifier": [{"system": USER_SYSTEM, "value": user.username}],
            "active": user.is_active,
            "name": [name],
            "telecom": telecom,
            "qualification": qualifications,
        }
    )


def practitioner_role_resource(membership: TeamMembership) -> dict:
    """One membership of a patient's team: who, in which discipline and role, when."""
    return _drop_empty(
        {
            "resourceType": "PractitionerRole",
            "id": str(membership.pk),
            "meta": {"profile": [US_CORE_PRACTITIONER_ROLE]},
            "active": membership.status == "active",
            "period": _drop_empty({"start": _date(membership.start_date), "end": _date(membership.end_date)}),
            "practitioner": {
                "reference": f"Practitioner/{membership.user_id}",
                "display": membership.user.display_name,
            },
            "code": role_concepts(membership),
        }
    )


US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
US_CORE_PATIENT = f"{US_CORE}/us-core-patient"
US_CORE_CAREPLAN = f"{US_CORE}/us-core-careplan"
US_CORE_CARETEAM = f"{US_CORE}/us-core-careteam"
US_CORE_GOAL = f"{US_CORE}/us-core-goal"
US_CORE_PRACTITIONER = f"{US_CORE}/us-core-practitioner"
US_CORE_PRACTITIONER_ROLE = f"{US_CORE}/us-core-practitionerrole"
SNOMED = "http://snomed.info/sct"
# SNOMED CT occupations for CareTeam's disciplines (Care Team Member Function value set);
# disciplines without a close occupation carry CareTeam's own code only
DISCIPLINE_SNOMED = {
    "physician": ("309343006", "Physician"),
    "nursing": ("106292003", "Professional nurse"),
    "case-management": ("768730001", "Case manager"),
    "social-work": ("106328005", "Social worker"),
    "pharmacy": ("46255001", "Pharmacist"),
    "physical-therapy": ("36682004", "Physiotherapist"),
    "occupational-therapy": ("80546007", "Occupational therapist"),
    "dietetics": ("159033005", "Dietitian"),
}


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
            "code": {"coding": [{"system": SERVICE_SYSTEM, "code": str(service.pk)}], "text": service.name},
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
            "code": {
                "coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}],
                "text": "Fulfill the referral",
            },
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
            "code": {
                "coding": [{"system": TASK_KIND_SYSTEM, "code": "handoff"}],
                "text": f"Handoff ({handoff.get_kind_display()})",
            },
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
    extensions = {e.get("url"): e for e in data.get("extension") or [] if isinstance(e, dict)}

    def omb(name: str) -> str | None:
        ext = extensions.get(f"{US_CORE_EXT}/{name}")
        if ext is None:
            return None
        for part in ext.get("extension") or []:
            if part.get("url") == "ombCategory":
                return (part.get("valueCoding") or {}).get("code") or ""
        return ""

    us_core = {}
    for field_name, value, choices in (
        ("race", omb("us-core-race"), Race),
        ("ethnicity", omb("us-core-ethnicity"), Ethnicity),
        ("birth_sex", (extensions.get(f"{US_CORE_EXT}/us-core-birthsex") or {}).get("valueCode"), BirthSex),
    ):
        if value is None:
            continue
        if value not in choices.values:
            raise ValidationError({field_name: [f"'{value}' is not one of {', '.join(choices.values)}."]})
        us_core[field_name] = value
    return {
        **us_core,
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


# ---------------------------------------------------------------------------
# What an import derived from the sent resource (careteam/api/fhir_import.py keeps it in
# the row's `fhir` field): an element is exported as sent while these are unchanged
# ---------------------------------------------------------------------------
def _iso_or_none(value) -> str | None:
    return value.isoformat() if value else None


def goal_derived(fields_or_goal) -> dict:
    get = (
        (lambda n: fields_or_goal[n])
        if isinstance(fields_or_goal, dict)
        else (lambda n: getattr(fields_or_goal, n))
    )
    return {
        "description": get("description"),
        "achievement_status": get("achievement_status"),
        "priority": get("priority"),
        "expressed_by": get("expressed_by"),
        "target": [get("target_measure"), get("target_value"), _iso_or_none(get("target_due"))],
    }


def plan_derived(fields_or_plan) -> dict:
    get = (
        (lambda n: fields_or_plan[n])
        if isinstance(fields_or_plan, dict)
        else (lambda n: getattr(fields_or_plan, n))
    )
    return {
        "title": get("title"),
        "description": get("description"),
        "status": get("status"),
        "period": [_iso_or_none(get("period_start")), _iso_or_none(get("period_end"))],
    }


def activity_derived(fields_or_activity) -> dict:
    if isinstance(fields_or_activity, dict):
        get = lambda n: fields_or_activity[n]  # noqa: E731 - two readers of one shape
        assigned = None
    else:
        get = lambda n: getattr(fields_or_activity, n)  # noqa: E731
        assigned = fields_or_activity.assigned_to_id
    return {
        "title": get("title"),
        "description": get("description"),
        "status": get("status"),
        "status_reason": get("status_reason"),
        "due": _iso_or_none(get("due_date")),
        "assigned": assigned,
    }
