"""Import of CarePlan Bundles that keeps what it accepts.

A transaction or collection Bundle (Synthea's shape: a Patient, CarePlans, Goals and
anything else) is imported for the patient of the URL: every CarePlan with its Goals
(entries, or contained and referenced as `#id`) and activities (`detail` or `reference`).
What CareTeam has a column for goes to the column; every source element is also kept as
sent in the row's `fhir` JSON (`source`), with the column values derived from it at
import (`derived`). On export (careteam/api/fhir.py) an element whose columns still hold
the derived values is answered from the source, as sent; one changed in CareTeam since
is answered from the columns. So an unchanged import exports what came in, field by
field, and an edit in CareTeam wins.

What cannot be represented is reported as `warning` issues (each with an `expression`)
and left out; what is wrong refuses the whole Bundle (400, or 409 for a business rule:
a second active plan, a plan already imported with different content), before anything
is written. A CarePlan is identified by its identifiers and its fullUrl: importing it
again unchanged writes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from rest_framework.exceptions import APIException

from careplans import services as plan_services
from careplans.models import (
    STATEMENT_MAX_LENGTH,
    TEXT_MAX_LENGTH,
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
    NeedCategory,
    NeedDomain,
)
from careteam.models import Discipline
from careteam.permissions import PatientAccess

from . import fhir

UNKNOWN_PLAN_STATUS = CarePlanStatus.DRAFT  # `unknown` is kept as draft (exported as unknown)
UNKNOWN_ACTIVITY_STATUS = ActivityStatus.NOT_STARTED
# CarePlan elements kept as sent (exported while the plan is unchanged or always)
PLAN_KEPT = (
    "identifier",
    "category",
    "text",
    "addresses",
    "created",
    "note",
    "period",
    "title",
    "description",
    "status",
)
PLAN_IGNORED_OK = ("resourceType", "id", "meta", "subject", "intent", "goal", "activity", "contained")
GOAL_KEPT = (
    "identifier",
    "category",
    "description",
    "priority",
    "startDate",
    "startCodeableConcept",
    "target",
    "statusDate",
    "statusReason",
    "expressedBy",
    "addresses",
    "note",
    "achievementStatus",
    "outcomeCode",
    "outcomeReference",
)
GOAL_IGNORED_OK = ("resourceType", "id", "meta", "subject", "lifecycleStatus", "text")
ACTIVITY_KEPT = ("outcomeCodeableConcept", "outcomeReference", "progress", "reference", "detail")
DETAIL_MODELLED = ("code", "status", "statusReason", "description", "goal", "scheduledPeriod", "extension")
DETAIL_KEPT = (
    "kind",
    "code",
    "instantiatesCanonical",
    "instantiatesUri",
    "reasonCode",
    "reasonReference",
    "status",
    "statusReason",
    "scheduledTiming",
    "scheduledPeriod",
    "scheduledString",
    "location",
    "performer",
    "productCodeableConcept",
    "productReference",
    "dailyAmount",
    "quantity",
)
DUE_FIELDS = ("scheduledPeriod",)
ACTIVITY_TITLE_MAX = Activity._meta.get_field("title").max_length
PLAN_TITLE_MAX = CarePlan._meta.get_field("title").max_length
TARGET_MEASURE_MAX = Goal._meta.get_field("target_measure").max_length
TARGET_VALUE_MAX = Goal._meta.get_field("target_value").max_length


# ---------------------------------------------------------------------------
# Issues
# ---------------------------------------------------------------------------
@dataclass
class Issues:
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    conflict: list[dict] = field(default_factory=list)

    def error(self, expression: str, message: str, code: str = "invalid") -> None:
        self.errors.append(_issue("error", code, expression, message))

    def warn(self, expression: str, message: str, code: str = "not-supported") -> None:
        self.warnings.append(_issue("warning", code, expression, message))

    def business(self, expression: str, message: str, code: str = "business-rule") -> None:
        self.conflict.append(_issue("error", code, expression, message))


def _issue(severity: str, code: str, expression: str, message: str) -> dict:
    return {"severity": severity, "code": code, "diagnostics": message, "expression": [expression]}


class ImportRefused(APIException):
    """The Bundle is refused; `fhir_issues` become the OperationOutcome's issues."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, issues: list[dict], status: int = 400):
        super().__init__("; ".join(i["diagnostics"] for i in issues))
        self.status_code = status
        self.fhir_issues = issues


# ---------------------------------------------------------------------------
# Reading values
# ---------------------------------------------------------------------------
def _text(concept: dict | None) -> str:
    """The words of a CodeableConcept: its text, else its first coding's display or code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return concept["text"].strip()
    for coding in concept.get("coding") or []:
        if coding.get("display") or coding.get("code"):
            return (coding.get("display") or coding.get("code")).strip()
    return ""


def _code(concept: dict | None, system: str) -> str:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("system") == system and coding.get("code"):
            return coding["code"]
    return ""


def _date(value) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10]) if len(str(value)) >= 10 else None
    except ValueError:
        return None


def _quantity(q: dict | None) -> str:
    if not isinstance(q, dict):
        return ""
    parts = [q.get("comparator", ""), str(q.get("value", "")) if q.get("value") is not None else ""]
    unit = q.get("unit") or q.get("code") or ""
    return " ".join(p for p in [*parts, unit] if p).strip()


def target_value_text(target: dict) -> str:
    """detail[x] as words, for the goal's one-line target (the source is kept whole)."""
    if "detailString" in target:
        return str(target["detailString"])
    if "detailQuantity" in target:
        return _quantity(target["detailQuantity"])
    if "detailRange" in target:
        r = target["detailRange"]
        low, high = _quantity(r.get("low")), _quantity(r.get("high"))
        return f"{low} to {high}".strip() if low and high else (f">= {low}" if low else f"<= {high}")
    if "detailCodeableConcept" in target:
        return _text(target["detailCodeableConcept"])
    for key in ("detailInteger", "detailBoolean"):
        if key in target:
            return str(target[key]).lower()
    if "detailRatio" in target:
        r = target["detailRatio"]
        return f"{_quantity(r.get('numerator'))} / {_quantity(r.get('denominator'))}"
    return ""


def content_hash(resources: list[dict]) -> str:
    return hashlib.sha256(json.dumps(resources, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------------------
# Parsing the Bundle
# ---------------------------------------------------------------------------
@dataclass
class PlanSpec:
    index: int
    expression: str
    fields: dict[str, Any]
    fhir: dict[str, Any]
    goals: list[int]  # indexes into ImportSpec.goals
    activities: list[dict]
    keys: list[str]
    needs: list[dict]


@dataclass
class ImportSpec:
    plans: list[PlanSpec]
    goals: list[dict]  # {"expression", "fields", "fhir", "keys"}
    loose_goals: list[int]  # goals no plan references
    issues: Issues
    patient_fullurls: set[str]


def parse_bundle(data: Any, *, patient_id: int) -> ImportSpec:
    """Validate and read a Bundle for Patient/`patient_id`; raise ImportRefused with
    every error (nothing is written), or answer what to import and the warnings."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError as PydanticError

    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise ImportRefused(
            [_issue("error", "invalid", "Bundle", "Send a Bundle (transaction or collection).")]
        )
    if "\\u0000" in json.dumps(data):
        raise ImportRefused([_issue("error", "invalid", "Bundle", "Text may not contain NUL characters.")])
    if data.get("type") not in ("transaction", "collection", "batch"):
        raise ImportRefused(
            [_issue("error", "invalid", "Bundle.type", "Send a transaction or collection Bundle.")]
        )
    try:
        Bundle.model_validate(data)
    except PydanticError as exc:
        raise ImportRefused(
            [
                _issue(
                    "error",
                    "structure",
                    "Bundle." + ".".join(str(p) for p in e["loc"] if not str(p).startswith("function")),
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}",
                )
                for e in exc.errors()[:20]
            ]
        ) from None
    issues = Issues()
    entries = data.get("entry") or []
    patient_urls = {f"Patient/{patient_id}"}
    for i, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            # the Bundle's own Patient stands for the URL's patient by its urn:uuid only
            # (a relative Patient/<id> would name one of this server's patients)
            if (entry.get("fullUrl") or "").startswith("urn:"):
                patient_urls.add(entry["fullUrl"])
            issues.warn(
                f"Bundle.entry[{i}].resource",
                f"The Patient is not imported: the Bundle is imported for Patient/{patient_id}.",
                code="informational",
            )
    disciplines = {d.code: d for d in Discipline.objects.all()}
    goals: list[dict] = []
    goal_keys: dict[str, int] = {}
    plans_raw = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType")
        expr = f"Bundle.entry[{i}].resource"
        if kind == "Goal":
            index = len(goals)
            goals.append(_goal(resource, expr, issues, disciplines, patient_urls))
            for key in _keys(entry.get("fullUrl"), "Goal", resource.get("id")):
                goal_keys[key] = index
        elif kind == "CarePlan":
            plans_raw.append((i, entry, resource))
        elif kind != "Patient":
            issues.warn(expr, f"{kind} resources are not imported.")
    referenced: set[int] = set()
    plans = []
    for i, entry, resource in plans_raw:
        expr = f"Bundle.entry[{i}].resource"
        contained: dict[str, int] = {}
        for c, item in enumerate(resource.get("contained") or []):
            if item.get("resourceType") == "Goal" and item.get("id"):
                contained[f"#{item['id']}"] = len(goals)
                goals.append(_goal(item, f"{expr}.contained[{c}]", issues, disciplines, patient_urls))
            else:
                issues.warn(
                    f"{expr}.contained[{c}]", f"Contained {item.get('resourceType')} is not imported."
                )

        def goal_ref(ref: dict, where: str, contained=contained) -> int | None:
            target = (ref or {}).get("reference") or ""
            if target in contained:
                return contained[target]
            if target in goal_keys:
                return goal_keys[target]
            issues.error(where, f"Goal reference '{target}' is not in the Bundle.")
            return None

        plan = _plan(resource, expr, entry.get("fullUrl"), issues, disciplines, patient_urls, goal_ref)
        for g in plan.goals:
            if g in referenced:
                issues.warn(expr, "A Goal referenced by another CarePlan is imported with the first only.")
        plan.goals = [g for g in dict.fromkeys(plan.goals) if g not in referenced]
        referenced |= set(plan.goals)
        plan.index = i
        plans.append(plan)
    if not plans and not goals:
        issues.error("Bundle.entry", "The Bundle holds no CarePlan or Goal to import.")
    active = [p for p in plans if p.fields["status"] == CarePlanStatus.ACTIVE]
    for extra in active[1:]:
        issues.business(
            f"{extra.expression}.status",
            "A patient has one active care plan: this Bundle holds more than one.",
        )
    if issues.errors:
        raise ImportRefused(issues.errors)
    if issues.conflict:
        raise ImportRefused(issues.conflict, status=409)
    loose = [g for g in range(len(goals)) if g not in referenced]
    # the hash of each plan covers its goals as sent
    for plan in plans:
        plan.fhir["hash"] = content_hash(
            [plan.fhir["source"], *(goals[g]["fhir"]["source"] for g in plan.goals)]
        )
    return ImportSpec(plans, goals, loose, issues, patient_urls)


def _keys(full_url: str | None, kind: str, rid: str | None) -> list[str]:
    keys = []
    if full_url:
        keys.append(full_url)
    if rid:
        keys.append(f"{kind}/{rid}")
    return keys


def _check_subject(
    resource: dict, expr: str, issues: Issues, patient_urls: set[str], element="subject"
) -> None:
    ref = (resource.get(element) or {}).get("reference")
    if ref is not None and ref not in patient_urls:
        own = next(u for u in sorted(patient_urls) if u.startswith("Patient/") and u[8:].isdigit())
        issues.error(
            f"{expr}.{element}",
            f"{resource.get('resourceType')}.{element} must be {own}, the patient this Bundle is imported for.",
        )


def _long(issues: Issues, expr: str, text: str, limit: int, what: str) -> None:
    if len(text) > limit:
        issues.error(
            expr, f"{what} is {len(text)} characters; CareTeam stores at most {limit} (nothing was cut)."
        )


def _discipline(element: dict, expr: str, issues: Issues, disciplines) -> Discipline | None:
    for ext in element.get("extension") or []:
        if ext.get("url") == fhir.OWNER_DISCIPLINE_EXT:
            code = ext.get("valueCode")
            if code not in disciplines:
                issues.error(f"{expr}.extension", f"Unknown discipline '{code}'.")
                return None
            return disciplines[code]
        issues.warn(f"{expr}.extension", f"Extension {ext.get('url')} is not kept.")
    return None


def _modifiers(resource: dict, expr: str, issues: Issues) -> None:
    if resource.get("modifierExtension"):
        issues.error(
            f"{expr}.modifierExtension",
            "Modifier extensions cannot be imported (their meaning would be lost).",
        )
    if resource.get("doNotPerform") is True:
        issues.error(f"{expr}.doNotPerform", "An activity not to perform cannot be imported.")


def _goal(resource: dict, expr: str, issues: Issues, disciplines, patient_urls) -> dict:
    _check_subject(resource, expr, issues, patient_urls)
    _modifiers(resource, expr, issues)
    description = _text(resource.get("description"))
    if not description:
        issues.error(f"{expr}.description", "A goal needs a description (text or a coding).")
    _long(issues, f"{expr}.description", description, STATEMENT_MAX_LENGTH, "Goal.description")
    lifecycle = resource.get("lifecycleStatus")
    if lifecycle not in GoalLifecycle.values:
        issues.error(
            f"{expr}.lifecycleStatus", f"'{lifecycle}' is not one of {', '.join(GoalLifecycle.values)}."
        )
    achievement = _code(resource.get("achievementStatus"), fhir.GOAL_ACHIEVEMENT_SYSTEM)
    if achievement and achievement not in GoalAchievement.values:
        issues.error(f"{expr}.achievementStatus", f"'{achievement}' is not a goal achievement code.")
    priority = _code(resource.get("priority"), fhir.GOAL_PRIORITY_SYSTEM) or GoalPriority.MEDIUM
    if priority not in GoalPriority.values:
        issues.error(f"{expr}.priority", f"'{priority}' is not one of {', '.join(GoalPriority.values)}.")
    expressed = ExpressedBy.CLINICIAN
    by = resource.get("expressedBy") or {}
    if (by.get("reference") or "") in patient_urls or (by.get("reference") or "").startswith("Patient/"):
        # the patient themself: exported as this patient (never another record's id)
        expressed = ExpressedBy.PATIENT
    elif by.get("display") == ExpressedBy.FAMILY.label or (by.get("reference") or "").startswith(
        "RelatedPerson/"
    ):
        expressed = ExpressedBy.FAMILY
    targets = resource.get("target") or []
    first = targets[0] if targets else {}
    fields = {
        "description": description,
        "lifecycle_status": lifecycle,
        "achievement_status": achievement,
        "priority": priority,
        "expressed_by": expressed,
        "owner_discipline": _discipline(resource, expr, issues, disciplines),
        "target_measure": _text(first.get("measure"))[:TARGET_MEASURE_MAX],
        "target_value": target_value_text(first)[:TARGET_VALUE_MAX],
        "target_due": _date(first.get("dueDate")),
    }
    for key in resource:
        if (
            key not in GOAL_KEPT
            and key not in GOAL_IGNORED_OK
            and key not in ("extension", "modifierExtension")
        ):
            issues.warn(f"{expr}.{key}", f"Goal.{key} is not kept.")
    source = {k: resource[k] for k in GOAL_KEPT if k in resource}
    if expressed == ExpressedBy.PATIENT:
        source.pop("expressedBy", None)
    return {
        "expression": expr,
        "fields": fields,
        "fhir": {"source": source, "derived": fhir.goal_derived(fields)},
    }


def _plan(resource, expr, full_url, issues, disciplines, patient_urls, goal_ref) -> PlanSpec:
    _check_subject(resource, expr, issues, patient_urls)
    _modifiers(resource, expr, issues)
    status = resource.get("status")
    if status == "unknown":
        stored_status = UNKNOWN_PLAN_STATUS
    elif status in CarePlanStatus.values:
        stored_status = status
    else:
        issues.error(f"{expr}.status", f"'{status}' is not a CarePlan status.")
        stored_status = CarePlanStatus.DRAFT
    intent = resource.get("intent")
    if intent not in CarePlanIntent.values:
        issues.error(f"{expr}.intent", f"'{intent}' is not one of {', '.join(CarePlanIntent.values)}.")
    title = (resource.get("title") or "").strip()
    if not title:
        named = [c for c in resource.get("category") or [] if _code(c, fs_category()) != "assess-plan"]
        title = _text(named[0]) if named else "Imported care plan"
    _long(issues, f"{expr}.title", title, PLAN_TITLE_MAX, "CarePlan.title")
    description = resource.get("description") or ""
    _long(issues, f"{expr}.description", description, TEXT_MAX_LENGTH, "CarePlan.description")
    period = resource.get("period") or {}
    start, end = _date(period.get("start")), _date(period.get("end"))
    if period.get("start") and start is None:
        issues.warn(f"{expr}.period.start", "A period start with only a year or month is kept as sent.")
    fields = {
        "title": title,
        "description": description,
        "status": stored_status,
        "intent": intent,
        "period_start": start,
        "period_end": end,
    }
    goal_indexes = []
    for j, ref in enumerate(resource.get("goal") or []):
        index = goal_ref(ref, f"{expr}.goal[{j}]")
        if index is not None:
            goal_indexes.append(index)
    activities = []
    for k, activity in enumerate(resource.get("activity") or []):
        spec = _activity(activity, f"{expr}.activity[{k}]", issues, disciplines, goal_ref)
        if spec is not None:
            activities.append(spec)
    needs = []
    for a, concern in enumerate(resource.get("addresses") or []):
        words = (concern.get("display") or "").strip()  # a bare urn:uuid says nothing to a reader
        if words:
            needs.append(
                {"description": words[:STATEMENT_MAX_LENGTH], "expression": f"{expr}.addresses[{a}]"}
            )
    for key in resource:
        if (
            key not in PLAN_KEPT
            and key not in PLAN_IGNORED_OK
            and key not in ("extension", "modifierExtension")
        ):
            issues.warn(f"{expr}.{key}", f"CarePlan.{key} is not kept.")
    for ext in resource.get("extension") or []:
        issues.warn(f"{expr}.extension", f"Extension {ext.get('url')} is not kept.")
    keys = [
        f"identifier:{i.get('system', '')}|{i.get('value', '')}"
        for i in resource.get("identifier") or []
        if i.get("value")
    ]
    if full_url and not full_url.startswith("CarePlan/"):
        keys.append(f"url:{full_url}")
    source = {k: resource[k] for k in PLAN_KEPT if k in resource}
    return PlanSpec(
        index=0,
        expression=expr,
        fields=fields,
        fhir={"source": source, "derived": fhir.plan_derived(fields), "keys": keys},
        goals=goal_indexes,
        activities=activities,
        keys=keys,
        needs=needs,
    )


def fs_category() -> str:
    return "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"


def _activity(activity: dict, expr: str, issues: Issues, disciplines, goal_ref) -> dict | None:
    _modifiers(activity, expr, issues)
    detail = activity.get("detail")
    reference = activity.get("reference")
    goals: list[int] = []
    discipline = None
    if detail is not None:
        _modifiers(detail, f"{expr}.detail", issues)
        code = detail.get("code")
        title = _text(code) or (detail.get("description") or "").strip()
        if not title:
            issues.error(
                f"{expr}.detail", "An activity needs detail.code (text or a coding) or detail.description."
            )
        status = detail.get("status")
        if status == "unknown":
            stored = UNKNOWN_ACTIVITY_STATUS
        elif status in ActivityStatus.values:
            stored = status
        else:
            issues.error(
                f"{expr}.detail.status",
                f"'{status}' is not one of {', '.join(ActivityStatus.values)}, unknown.",
            )
            stored = UNKNOWN_ACTIVITY_STATUS
        description = (detail.get("description") or "") if _text(code) else ""
        due = _date((detail.get("scheduledPeriod") or {}).get("end"))
        for j, ref in enumerate(detail.get("goal") or []):
            index = goal_ref(ref, f"{expr}.detail.goal[{j}]")
            if index is not None:
                goals.append(index)
        discipline = _discipline(detail, f"{expr}.detail", issues, disciplines)
        status_reason = _text(detail.get("statusReason"))
        for key in detail:
            if (
                key not in DETAIL_KEPT
                and key not in DETAIL_MODELLED
                and key not in ("modifierExtension", "doNotPerform")
            ):
                issues.warn(f"{expr}.detail.{key}", f"CarePlan.activity.detail.{key} is not kept.")
    elif reference is not None:
        title = (reference.get("display") or reference.get("reference") or "").strip()
        if not title:
            issues.error(f"{expr}.reference", "An activity reference needs a reference or display.")
        stored, description, due, status_reason = UNKNOWN_ACTIVITY_STATUS, "", None, ""
    else:
        issues.warn(expr, "An activity with neither detail nor reference is not imported.")
        return None
    _long(issues, f"{expr}.detail.code", title, ACTIVITY_TITLE_MAX, "The activity's title (detail.code)")
    _long(issues, f"{expr}.detail.description", description, TEXT_MAX_LENGTH, "The activity's description")
    _long(issues, f"{expr}.detail.statusReason", status_reason, 300, "The activity's status reason")
    fields = {
        "title": title,
        "description": description,
        "status": stored,
        "status_reason": status_reason,
        "due_date": due,
        "owner_discipline": discipline,
    }
    source = {k: activity[k] for k in ACTIVITY_KEPT if k in activity}
    if detail is not None:
        source["detail"] = {k: detail[k] for k in DETAIL_KEPT if k in detail}
    return {
        "fields": fields,
        "goals": goals,
        "fhir": {"source": source, "derived": fhir.activity_derived(fields)},
    }


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
@dataclass
class ImportResult:
    created: list[CarePlan]
    unchanged: list[CarePlan]
    goals_attached: int
    issues: Issues


def _derived_from_row(row, derive) -> None:
    """Record the column values as saved (defaults included: a plan sent without a period
    starts today) as what the import derived, so an untouched row exports its source."""
    row.fhir = {**row.fhir, "derived": derive(row)}
    type(row).objects.filter(pk=row.pk).update(fhir=row.fhir)


def existing_plan(patient_id: int, keys: list[str]) -> CarePlan | None:
    if not keys:
        return None
    from django.db.models import Q

    q = Q(pk__in=[])
    for key in keys:
        q |= Q(fhir__keys__contains=[key])
    return CarePlan.objects.filter(patient_id=patient_id).filter(q).order_by("id").first()


@transaction.atomic
def careplans_import(
    *, access: PatientAccess, by, spec: ImportSpec, attach_loose_goals: bool = False, request=None
) -> ImportResult:
    """Create every plan of `spec` not imported before (same keys, same content: left
    as it is; same keys, other content: 409), with its goals, activities and needs, all
    or nothing, through the care-plan services."""
    access.require_edit()
    issues = spec.issues
    created, unchanged = [], []
    pid = access.patient.pk
    todo = []
    for plan in spec.plans:
        before = existing_plan(pid, plan.keys)
        if before is None:
            todo.append(plan)
        elif before.fhir.get("hash") == plan.fhir["hash"]:
            unchanged.append(before)
        else:
            issues.business(
                f"{plan.expression}.identifier",
                f"CarePlan/{before.pk} was imported from the same source plan with other content; "
                "change it there, or send it with a new identifier.",
                code="duplicate",
            )
    if issues.conflict:
        raise ImportRefused(issues.conflict, status=409)
    existing_active = CarePlan.objects.filter(patient_id=pid, status=CarePlanStatus.ACTIVE).first()
    for plan in todo:
        if plan.fields["status"] == CarePlanStatus.ACTIVE and existing_active is not None:
            issues.business(
                f"{plan.expression}.status",
                f"The patient already has an active care plan (CarePlan/{existing_active.pk}); "
                "complete or revoke it first, or import this plan with another status.",
            )
    if issues.conflict:
        raise ImportRefused(issues.conflict, status=409)
    default_discipline = access.memberships[0].discipline if access.memberships else None
    for plan in todo:
        fields = dict(plan.fields)
        row = plan_services.careplan_create(
            access=access, by=by, request=request, fhir=plan.fhir, imported=True, **fields
        )
        _derived_from_row(row, fhir.plan_derived)
        goals = {}
        for g in plan.goals:
            goal = spec.goals[g]
            goals[g] = plan_services.goal_create(
                access=access,
                plan=row,
                by=by,
                request=request,
                imported=True,
                fhir=goal["fhir"],
                **goal["fields"],
            )
            _derived_from_row(goals[g], fhir.goal_derived)
        for activity in plan.activities:
            fields = dict(activity["fields"])
            fields["owner_discipline"] = fields["owner_discipline"] or default_discipline
            linked = [goals[i] for i in activity["goals"] if i in goals]
            missing = [i for i in activity["goals"] if i not in goals]
            if missing:
                issues.warn(
                    plan.expression, "An activity's goal belongs to another CarePlan: the link is not kept."
                )
            made = plan_services.activity_create(
                access=access,
                plan=row,
                by=by,
                goals=linked,
                request=request,
                imported=True,
                fhir=activity["fhir"],
                **fields,
            )
            _derived_from_row(made, fhir.activity_derived)
        for need in plan.needs:
            plan_services.need_create(
                access=access,
                plan=row,
                by=by,
                request=request,
                domain=NeedDomain.MEDICAL,
                category=NeedCategory.CLINICAL,
                description=need["description"],
            )
        created.append(row)
    attached = 0
    if spec.loose_goals:
        target = CarePlan.objects.filter(patient_id=pid, status=CarePlanStatus.ACTIVE).first()
        for g in spec.loose_goals:
            goal = spec.goals[g]
            if not attach_loose_goals or target is None:
                issues.warn(
                    goal["expression"],
                    "A Goal no CarePlan references is not imported; send ?unreferenced-goals=active-plan "
                    "to add such goals to the patient's active plan."
                    if target is not None or not attach_loose_goals
                    else "A Goal no CarePlan references is not imported: the patient has no active plan.",
                )
                continue
            same = Goal.objects.filter(care_plan=target, fhir__source=goal["fhir"]["source"]).exists()
            if not same:
                plan_services.goal_create(
                    access=access,
                    plan=target,
                    by=by,
                    request=request,
                    imported=True,
                    fhir=goal["fhir"],
                    **goal["fields"],
                )
                attached += 1
    return ImportResult(created, unchanged, attached, issues)
