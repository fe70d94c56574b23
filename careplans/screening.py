"""Screening: standard instruments as FHIR R4 Questionnaires, answered from the chart,
scored, and turned into proposed needs by the rules kept with each questionnaire.

- The shipped instruments live in `careplans/data/questionnaires/` (the Questionnaire,
  and beside it `<name>.rules.json`: scoring, sensitivity category, rules);
  `questionnaire_import` loads one (shipped or uploaded) as a new version.
- Answers are kept as {linkId: [values]}: a code for choice items, a code or free text
  for open-choice, and the plain value for the other types.
- Completing a screening scores it, proposes needs (one per rule that fires) and, for an
  urgent rule (PHQ-9 item 9), sends an urgent handoff to the case manager.
- Items of a sensitive instrument (PHQ-9) are filed in its sensitivity category, so the
  permissions module hides the response and its proposals as any other sensitive item.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from careteam.audit import audit
from careteam.concurrency import check_version, lock_for_update, save_versioned
from careteam.models import AuditAction, SensitivityCategory, TeamMembership, TeamRole, User
from careteam.permissions import PatientAccess, patient_access, restrict

from . import services as plan_services
from .models import (
    AssignmentStatus,
    CarePlan,
    CarePlanStatus,
    NeedCategory,
    NeedDomain,
    ProposalStatus,
    ProposedNeed,
    Questionnaire,
    QuestionnaireAssignment,
    QuestionnaireResponse,
    QuestionnaireStatus,
    ResponseStatus,
    ScreeningRule,
)

DATA_DIR = Path(__file__).resolve().parent / "data" / "questionnaires"
SHIPPED = ("ahc-hrsn-core", "prapare", "hunger-vital-sign", "phq-2", "phq-9")
ORDINAL_EXT = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
ANSWERED_ITEM_TYPES = {"choice", "open-choice", "integer", "decimal", "string", "text", "date", "boolean"}
MAX_QUESTIONNAIRE_BYTES = 512 * 1024


# ---------------------------------------------------------------------------
# Import (shipped and uploaded questionnaires)
# ---------------------------------------------------------------------------
def validate_questionnaire(resource: Any) -> dict:
    """The Questionnaire checked against the R4B model and the item types the renderer
    supports; raises ValidationError listing the problems."""
    from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
    from pydantic import ValidationError as PydanticError

    if not isinstance(resource, dict) or resource.get("resourceType") != "Questionnaire":
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        found = f"a {str(kind)[:60]}" if kind else "no resourceType"
        raise ValidationError(
            {
                "resource": [
                    f"Send a FHIR R4 Questionnaire (resourceType Questionnaire); the file holds {found}."
                ]
            }
        )
    try:
        FhirQuestionnaire.model_validate(resource)
    except PydanticError as exc:
        raise ValidationError(
            {
                "resource": [
                    f"Not a valid FHIR R4 Questionnaire: {'.'.join(str(p) for p in e['loc']) or 'resource'}: {e['msg']}"
                    for e in exc.errors()[:20]
                ]
            }
        ) from None
    errors = []
    if resource.get("status") not in QuestionnaireStatus.values:
        errors.append(
            f"Questionnaire.status {str(resource.get('status'))[:40]!r}: give draft, active or retired."
        )
    if not resource.get("url") or not resource.get("version"):
        errors.append("A Questionnaire needs url and version (versions are kept side by side).")
    elif len(resource["url"]) > 300 or len(resource["version"]) > 40:
        errors.append("The url may be 300 characters long at most, the version 40.")
    seen: set[str] = set()
    for item in iter_items(resource.get("item") or []):
        kind = item.get("type")
        if kind not in ANSWERED_ITEM_TYPES | {"display", "group"}:
            errors.append(f"Item {item.get('linkId')}: type '{kind}' is not supported.")
        if item["linkId"] in seen:
            errors.append(f"Item {item['linkId']}: linkId used twice.")
        seen.add(item["linkId"])
    if errors:
        raise ValidationError({"resource": errors})
    return resource


def _scoring_shape_ok(scoring: dict) -> bool:
    items, bands = scoring.get("items", []), scoring.get("bands", [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return False
    if not isinstance(bands, list):
        return False
    return all(
        isinstance(band, list)
        and len(band) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) for n in band[:2])
        and isinstance(band[2], str)
        for band in bands
    )


def _rules_problems(rules: Any, link_ids: set[str]) -> list[str]:
    if not isinstance(rules, dict) or not isinstance(rules.get("rules", []), list):
        return ['The rules file is a JSON object: {"scoring": {...}, "sensitivity": "...", "rules": [...]}.']
    scoring = rules.get("scoring") or {}
    if not isinstance(scoring, dict):
        return ["scoring is a JSON object."]
    if not _scoring_shape_ok(scoring):
        return ['scoring: items is a list of linkIds and bands a list of [low, high, "label"].']
    problems = []
    keys: set[str] = set()
    for index, rule in enumerate(rules.get("rules", [])):
        if not isinstance(rule, dict):
            problems.append(f"rules[{index}] is not a JSON object.")
            continue
        key = rule.get("key")
        if not isinstance(key, str) or not key or len(key) > 60 or not key.replace("-", "").isalnum():
            problems.append(f"rules[{index}]: a rule needs a key (letters, digits and dashes).")
        elif key in keys:
            problems.append(f"Rule {key}: key used twice.")
        keys.add(key if isinstance(key, str) else "")
        if not isinstance(rule.get("description"), str) or not rule["description"].strip():
            problems.append(f"Rule {key}: a rule needs a description.")
        if not isinstance(rule.get("conditions", []), list) or any(
            not isinstance(c, dict) or not isinstance(c.get("codes", []), list)
            for c in rule.get("conditions", [])
        ):
            problems.append(f"Rule {key}: conditions are a list of {{link_id, codes}}.")
            continue
        if rule.get("min_score") is not None and (
            not isinstance(rule["min_score"], int) or isinstance(rule["min_score"], bool)
        ):
            problems.append(f"Rule {key}: min_score is a whole number.")
        if rule.get("category") not in NeedCategory.values:
            problems.append(f"Rule {rule.get('key')}: unknown category {rule.get('category')!r}.")
        if rule.get("domain") not in NeedDomain.values:
            problems.append(f"Rule {rule.get('key')}: unknown domain {rule.get('domain')!r}.")
        for cond in rule.get("conditions", []):
            if cond.get("link_id") not in link_ids:
                problems.append(f"Rule {rule.get('key')}: no item {cond.get('link_id')!r}.")
        if not rule.get("conditions") and rule.get("min_score") is None:
            problems.append(f"Rule {rule.get('key')}: give conditions or min_score.")
    for link in (rules.get("scoring") or {}).get("items", []):
        if link not in link_ids:
            problems.append(f"Scoring: no item {link!r}.")
    return problems


@transaction.atomic
def questionnaire_import(
    *, resource: dict, rules: dict | None = None, by: User | None = None, request=None
) -> Questionnaire:
    """Store one version of a Questionnaire with its scoring and rules. A url and version
    already stored is refused: a changed instrument is a new version."""
    validate_questionnaire(resource)
    rules = rules or {}
    link_ids = {i["linkId"] for i in iter_items(resource.get("item") or [])}
    problems = _rules_problems(rules, link_ids)
    sensitivity = None
    if problems and not isinstance(rules, dict):
        raise ValidationError({"rules": problems})
    if isinstance(rules.get("sensitivity"), str) and rules["sensitivity"]:
        sensitivity = SensitivityCategory.objects.filter(code=rules["sensitivity"]).first()
        if sensitivity is None:
            problems.append(f"Unknown sensitivity category {rules['sensitivity']!r}.")
    if problems:
        raise ValidationError({"rules": problems})
    refused = ValidationError(
        {"version": [f"Version {resource['version']} of {resource['url']} is already stored."]}
    )
    if Questionnaire.objects.filter(url=resource["url"], version=resource["version"]).exists():
        raise refused
    codes = [c.get("code") for c in resource.get("code") or [] if c.get("code")]
    try:
        with transaction.atomic():  # two imports of one version at once: one wins
            questionnaire = Questionnaire.objects.create(
                url=resource["url"],
                version=resource["version"],
                name=(resource.get("name") or resource.get("id") or "questionnaire")[:100],
                title=(resource.get("title") or resource.get("name") or "Questionnaire")[:200],
                code=codes[0][:40] if codes else "",
                status=resource["status"],
                resource=resource,
                scoring=rules.get("scoring") or {},
                sensitivity=sensitivity,
            )
    except IntegrityError:
        raise refused from None
    for rule in rules.get("rules", []):
        ScreeningRule.objects.create(
            questionnaire=questionnaire,
            key=rule["key"],
            category=rule["category"],
            domain=rule["domain"],
            description=rule["description"][:300],
            conditions=rule.get("conditions", []),
            min_score=rule.get("min_score"),
            urgent=bool(rule.get("urgent")),
        )
    if by is not None:
        audit(
            user=by,
            action=AuditAction.CREATE,
            obj=questionnaire,
            request=request,
            detail=f"imported {questionnaire}",
        )
    return questionnaire


def questionnaire_export(questionnaire: Questionnaire) -> tuple[dict, dict]:
    """The stored version as (Questionnaire, rules) in the form `questionnaire_import`
    takes back: the resource kept whole, with the row's current status."""
    resource = dict(questionnaire.resource)
    resource["status"] = questionnaire.status
    rules: dict = {}
    if questionnaire.scoring:
        rules["scoring"] = questionnaire.scoring
    if questionnaire.sensitivity_id:
        rules["sensitivity"] = questionnaire.sensitivity.code
    rules["rules"] = [
        {
            "key": rule.key,
            "category": rule.category,
            "domain": rule.domain,
            "description": rule.description,
            **({"conditions": rule.conditions} if rule.conditions else {}),
            **({"min_score": rule.min_score} if rule.min_score is not None else {}),
            **({"urgent": True} if rule.urgent else {}),
        }
        for rule in questionnaire.rules.order_by("id")
    ]
    return resource, rules


def shipped_resource(name: str) -> tuple[dict, dict]:
    resource = json.loads((DATA_DIR / f"{name}.json").read_text())
    rules = json.loads((DATA_DIR / f"{name}.rules.json").read_text())
    return resource, rules


def ensure_shipped_questionnaires() -> None:
    """Load the shipped instruments that are not stored yet (idempotent)."""
    for name in SHIPPED:
        resource, rules = shipped_resource(name)
        if not Questionnaire.objects.filter(url=resource["url"], version=resource["version"]).exists():
            questionnaire_import(resource=resource, rules=rules)


def current_questionnaires() -> list[Questionnaire]:
    """The newest active version of each instrument."""
    rows = Questionnaire.objects.filter(status=QuestionnaireStatus.ACTIVE).order_by("url", "-id")
    latest: dict[str, Questionnaire] = {}
    for q in rows:
        latest.setdefault(q.url, q)
    return sorted(latest.values(), key=lambda q: q.title)


# ---------------------------------------------------------------------------
# Items, enableWhen, answers
# ---------------------------------------------------------------------------
def iter_items(items: list[dict]):
    for item in items:
        yield item
        yield from iter_items(item.get("item") or [])


def _option_code(option: dict) -> str | None:
    for key in ("valueCoding",):
        if key in option:
            return option[key].get("code")
    for key in ("valueString", "valueInteger", "valueDate"):
        if key in option:
            return str(option[key])
    return None


def _option_label(option: dict) -> str:
    if "valueCoding" in option:
        return option["valueCoding"].get("display") or option["valueCoding"].get("code")
    return str(next((v for k, v in option.items() if k.startswith("value")), ""))


def _ordinal(option: dict) -> float | None:
    for ext in option.get("extension") or []:
        if ext.get("url") == ORDINAL_EXT:
            return ext.get("valueDecimal")
    return None


def _compare(values: list, operator: str, expected) -> bool:
    if operator == "exists":
        return bool(values) == bool(expected)
    for v in values:
        try:
            if operator == "=" and v == expected:
                return True
            if operator == "!=" and v != expected:
                return True
            if operator == ">" and v > expected:
                return True
            if operator == "<" and v < expected:
                return True
            if operator == ">=" and v >= expected:
                return True
            if operator == "<=" and v <= expected:
                return True
        except TypeError:
            continue
    return False


def _expected(condition: dict):
    for key, value in condition.items():
        if key == "answerCoding":
            return value.get("code")
        if key.startswith("answer"):
            return value
    return None


def is_enabled(item: dict, answers: dict) -> bool:
    """FHIR enableWhen: all (default) or any of the conditions on earlier answers."""
    conditions = item.get("enableWhen") or []
    if not conditions:
        return True
    results = [_compare(answers.get(c["question"], []), c["operator"], _expected(c)) for c in conditions]
    return any(results) if item.get("enableBehavior") == "any" else all(results)


@dataclass
class Field:
    """One item of the form as the template renders it."""

    item: dict
    depth: int
    values: list = field(default_factory=list)
    error: str = ""
    enabled: bool = True

    @property
    def link_id(self) -> str:
        return self.item["linkId"]

    @property
    def type(self) -> str:
        return self.item.get("type", "string")

    @property
    def text(self) -> str:
        return self.item.get("text", "")

    @property
    def required(self) -> bool:
        return bool(self.item.get("required"))

    @property
    def repeats(self) -> bool:
        return bool(self.item.get("repeats"))

    @property
    def read_only(self) -> bool:
        return bool(self.item.get("readOnly"))

    @property
    def name(self) -> str:
        return f"q-{self.link_id}"

    @property
    def options(self) -> list[tuple[str, str, bool]]:
        codes = {str(v) for v in self.values}
        return [
            (_option_code(o), _option_label(o), _option_code(o) in codes)
            for o in self.item.get("answerOption") or []
        ]

    @property
    def other_text(self) -> str:
        known = {c for c, _, _ in self.options}
        return next((str(v) for v in self.values if str(v) not in known), "")

    @property
    def value(self) -> str:
        if not self.values:
            return ""
        v = self.values[0]
        return "true" if v is True else "false" if v is False else str(v)

    @property
    def condition_text(self) -> str:
        if not self.item.get("enableWhen"):
            return ""
        return "Asked only when an earlier answer calls for it."


def form_fields(questionnaire: Questionnaire, answers: dict, errors: dict | None = None) -> list[Field]:
    errors = errors or {}
    out: list[Field] = []

    def walk(items, depth):
        for item in items:
            f = Field(item=item, depth=depth, values=list(answers.get(item["linkId"], [])))
            f.error = errors.get(item["linkId"], "")
            f.enabled = is_enabled(item, answers)
            out.append(f)
            walk(item.get("item") or [], depth + 1)

    walk(questionnaire.resource.get("item") or [], 0)
    return out


def parse_answers(questionnaire: Questionnaire, data, *, complete: bool) -> tuple[dict, dict]:
    """Answers from a form post (`q-<linkId>` fields, `q-<linkId>-other` for open-choice
    free text): (answers, errors). Disabled items lose their answers; required items are
    checked only when completing."""
    answers: dict[str, list] = {}
    errors: dict[str, str] = {}
    items = list(iter_items(questionnaire.resource.get("item") or []))
    for item in items:
        kind, link = item.get("type"), item["linkId"]
        if kind not in ANSWERED_ITEM_TYPES or item.get("readOnly"):
            continue
        name = f"q-{link}"
        raw = [v.strip() for v in (data.getlist(name) if hasattr(data, "getlist") else data.get(name, []))]
        raw = [v for v in raw if v]
        values: list = []
        try:
            if kind in ("choice", "open-choice"):
                allowed = {_option_code(o) for o in item.get("answerOption") or []}
                for v in raw:
                    if v not in allowed:
                        raise ValueError("Choose one of the answers offered.")
                    values.append(v)
                other = (data.get(f"{name}-other") or "").strip() if kind == "open-choice" else ""
                if other:
                    values.append(other[:500])
                if len(values) > 1 and not item.get("repeats"):
                    raise ValueError("Choose one answer.")
            elif kind == "integer":
                values = [int(v) for v in raw]
                if any(abs(v) > 10**9 for v in values):
                    raise ValueError("Enter a smaller number.")
            elif kind == "decimal":
                values = [str(decimal.Decimal(v)) for v in raw]
                if any(not decimal.Decimal(v).is_finite() for v in values):
                    raise ValueError("Enter a number.")
            elif kind == "date":
                values = [dt.date.fromisoformat(v).isoformat() for v in raw]
            elif kind == "boolean":
                if any(v not in ("true", "false") for v in raw):
                    raise ValueError("Answer yes or no.")
                values = [v == "true" for v in raw]
            else:
                values = [v[:2000] for v in raw]
        except (ValueError, ArithmeticError, decimal.InvalidOperation) as exc:
            message = str(exc) if str(exc).startswith(("Choose", "Enter", "Answer")) else ""
            errors[link] = message or {
                "integer": "Enter a whole number.",
                "decimal": "Enter a number.",
                "date": "Enter a date (YYYY-MM-DD).",
            }.get(kind, "Enter a valid answer.")
            continue
        if any("\x00" in str(v) for v in values):
            errors[link] = "Text may not contain NUL characters."
            continue
        if values:
            answers[link] = values
    # enableWhen: answers to disabled items are dropped, in document order
    for item in items:
        if not is_enabled(item, answers):
            answers.pop(item["linkId"], None)
    if complete:
        for item in items:
            if (
                item.get("required")
                and item.get("type") in ANSWERED_ITEM_TYPES
                and not item.get("readOnly")
                and is_enabled(item, answers)
                and item["linkId"] not in answers
                and item["linkId"] not in errors
            ):
                errors[item["linkId"]] = "This question needs an answer."
    return answers, errors


# ---------------------------------------------------------------------------
# Scores and rules
# ---------------------------------------------------------------------------
def score(questionnaire: Questionnaire, answers: dict) -> tuple[int | None, str]:
    """The total of the scored items' ordinal values and its band; None while any
    scored item is unanswered."""
    scoring = questionnaire.scoring or {}
    links = scoring.get("items") or []
    if not links:
        return None, ""
    options = {i["linkId"]: i.get("answerOption") or [] for i in iter_items(questionnaire.resource["item"])}
    total = 0.0
    for link in links:
        chosen = answers.get(link)
        if not chosen:
            return None, ""
        option = next((o for o in options.get(link, []) if _option_code(o) == chosen[0]), None)
        weight = _ordinal(option) if option else None
        if weight is None:
            return None, ""
        total += weight
    value = int(total)
    band = next((label for low, high, label in scoring.get("bands", []) if low <= value <= high), "")
    return value, band


def fired_rules(questionnaire: Questionnaire, answers: dict, total: int | None) -> list[ScreeningRule]:
    fired = []
    for rule in questionnaire.rules.all():
        hit = any(
            set(map(str, answers.get(c["link_id"], []))) & set(c.get("codes", [])) for c in rule.conditions
        )
        if rule.min_score is not None and total is not None and total >= rule.min_score:
            hit = True
        if hit:
            fired.append(rule)
    return fired


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------
def screenings_for(access: PatientAccess) -> QuerySet:
    """The patient's screenings the caller may see (sensitive instruments filtered)."""
    return (
        QuestionnaireResponse.objects.filter(patient=access.patient)
        .filter(access.sensitivity_q())
        .select_related("questionnaire", "author")
        .order_by("-started_at", "-id")
    )


def screenings_visible(user) -> QuerySet:
    """Every screening `user` may see, across patients (FHIR search, measures)."""
    return restrict(QuestionnaireResponse.objects.all(), user, patient_path="patient")


def proposals_for(access: PatientAccess, response: QuestionnaireResponse) -> list[ProposedNeed]:
    return list(
        ProposedNeed.objects.filter(response=response)
        .filter(access.sensitivity_q())
        .select_related("need")
        .order_by("id")
    )


def suggested_services(patient, categories, limit: int = 3) -> dict[str, list]:
    """Catalog services for proposed needs, per category: in the patient's language and
    area; relaxed (area, then language) when nothing matches. One query for them all."""
    from referrals.selectors import services_suggested

    return services_suggested(
        categories, language=patient.preferred_language or "", area=patient.city or "", limit=limit
    )


# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------
def _active_plan(patient) -> CarePlan | None:
    return CarePlan.objects.filter(patient=patient, status=CarePlanStatus.ACTIVE).first() or (
        CarePlan.objects.filter(patient=patient).exclude(status__in=["revoked", "entered-in-error"]).first()
    )


@transaction.atomic
def screening_start(
    *,
    access: PatientAccess,
    by: User,
    questionnaire: Questionnaire,
    answered_by: str = "staff",
    answerer_name: str = "",
    request=None,
) -> QuestionnaireResponse:
    access.require_edit()
    if questionnaire.status != QuestionnaireStatus.ACTIVE:
        raise ValidationError({"questionnaire": "This questionnaire is not in use."})
    if not access.can_see_sensitivity(questionnaire.sensitivity_id):
        raise ValidationError(
            {"questionnaire": "This instrument is restricted to disciplines you do not belong to."}
        )
    if answered_by not in ("staff", "patient", "caregiver"):
        raise ValidationError({"answered_by": "Say who answers: staff, patient or caregiver."})
    response = QuestionnaireResponse.objects.create(
        patient=access.patient,
        care_plan=_active_plan(access.patient),
        questionnaire=questionnaire,
        answered_by=answered_by,
        answerer_name=answerer_name.strip()[:200],
        author=by,
        sensitivity=questionnaire.sensitivity,
    )
    audit(user=by, action=AuditAction.CREATE, obj=response, patient=access.patient, request=request)
    return response


@dataclass
class SaveResult:
    response: QuestionnaireResponse
    errors: dict
    proposals: list = field(default_factory=list)
    handoff: Any = None
    urgent: bool = False
    assignment: Any = None


@transaction.atomic
def screening_save(
    *,
    access: PatientAccess,
    by: User,
    response: QuestionnaireResponse,
    data,
    complete: bool,
    expected_version: int | None = None,
    request=None,
) -> SaveResult:
    """Save the answers. Partial saves keep what is valid; completing checks every required
    item and, with none missing, scores, proposes needs and raises the safety handoff.
    A save from a page of an older version (`expected_version`) is refused."""
    access.require_edit()
    response = lock_for_update(response, expected_version)
    if response.status != ResponseStatus.IN_PROGRESS:
        raise ValidationError({"status": "This screening is already completed."})
    answers, errors = parse_answers(response.questionnaire, data, complete=complete)
    response.answers = answers
    response.authored_at = timezone.now()
    result = SaveResult(response=response, errors=errors)
    if complete and errors:
        # nothing half-written: a refused completion keeps the last saved answers
        raise ValidationError(errors)
    if complete:
        total, band = score(response.questionnaire, answers)
        response.score, response.band = total, band
        response.status = ResponseStatus.COMPLETED
        response.completed_at = response.authored_at
    save_versioned(response, expected_version=expected_version)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=response,
        patient=access.patient,
        request=request,
        detail="completed" if complete else "answers saved",
    )
    if complete:
        _propose(result, handoff_from=by, request=request)
    return result


def _propose(result: SaveResult, *, handoff_from: User | None, request=None) -> None:
    """A completed screening's consequences, whoever answered it: one proposed need per
    rule that fires (filed in the response's sensitivity category), and for an urgent
    rule the safety handoff to the case manager."""
    response = result.response
    fired = fired_rules(response.questionnaire, response.answers, response.score)
    result.proposals = ProposedNeed.objects.bulk_create(
        [
            ProposedNeed(
                response=response,
                rule=rule,
                category=rule.category,
                domain=rule.domain,
                description=rule.description,
                sensitivity=response.sensitivity,
            )
            for rule in fired
        ]
    )
    result.urgent = any(rule.urgent for rule in fired)
    if result.urgent and handoff_from is not None:
        result.handoff = _safety_handoff(by=handoff_from, response=response, request=request)


def _safety_handoff(*, by: User, response: QuestionnaireResponse, request=None):
    """An urgent handoff to the case manager. Its text names no instrument and no answer:
    handoffs are seen by the whole team, the screening itself only by those allowed."""
    from careteam.handoffs import handoff_create

    current = TeamMembership.objects.current().filter(patient_id=response.patient_id)
    cm = current.filter(role=TeamRole.CASE_MANAGER).select_related("user").first()
    if cm is None or cm.user_id == by.pk or not current.filter(user_id=by.pk).exists():
        return None
    return handoff_create(
        by=by,
        access=patient_access(by, response.patient),
        to_user=cm.user,
        due_at=timezone.now() + dt.timedelta(hours=4),
        priority="urgent",
        care_plan=response.care_plan,
        situation="A screening answer today needs a same-day safety follow-up.",
        background=f"Screening #{response.pk} completed {timezone.localtime(response.completed_at):%Y-%m-%d %H:%M}; "
        "its details are in the restricted screening record.",
        assessment="Possible risk of self-harm reported by the patient.",
        recommendation="Open the screening, contact the patient today and arrange a safety assessment.",
        request=request,
    )


def _accept(*, access: PatientAccess, by: User, proposal: ProposedNeed, plan: CarePlan, request=None) -> None:
    need = plan_services.need_create(
        access=access,
        plan=plan,
        by=by,
        domain=proposal.domain,
        category=proposal.category,
        description=f"{proposal.description} (screening: {proposal.response.questionnaire.title})",
        sensitivity=proposal.sensitivity,
        request=request,
    )
    proposal.status = ProposalStatus.ACCEPTED
    proposal.need = need
    proposal.decided_by = by
    proposal.decided_at = timezone.now()
    proposal.save(update_fields=["status", "need", "decided_by", "decided_at"])


def _plan_for(access: PatientAccess, response: QuestionnaireResponse) -> CarePlan:
    plan = response.care_plan or _active_plan(access.patient)
    if plan is None:
        raise ValidationError({"care_plan": "Start a care plan first: accepted needs go into the plan."})
    return plan


def _locked_proposals():
    """Proposals locked for a decision (only their own rows), with what accepting reads."""
    return ProposedNeed.objects.select_for_update(of=("self",)).select_related(
        "response__questionnaire", "response__care_plan"
    )


@transaction.atomic
def proposal_accept(*, access: PatientAccess, by: User, proposal: ProposedNeed, request=None) -> ProposedNeed:
    """Create the need in the plan through the care-plan services (history, audit)."""
    access.require_edit()
    proposal = _locked_proposals().get(pk=proposal.pk)
    if proposal.status != ProposalStatus.PROPOSED:
        raise ValidationError(
            {"status": f"This proposal was already {proposal.get_status_display().lower()}."}
        )
    _accept(
        access=access, by=by, proposal=proposal, plan=_plan_for(access, proposal.response), request=request
    )
    return proposal


@transaction.atomic
def proposals_accept_all(
    *, access: PatientAccess, by: User, response: QuestionnaireResponse, request=None
) -> list[ProposedNeed]:
    """Accept every open proposal of the screening the caller may see, all or nothing;
    one a colleague decided meanwhile is left as they decided it."""
    access.require_edit()
    proposals = list(
        _locked_proposals()
        .filter(response=response, status=ProposalStatus.PROPOSED)
        .filter(access.sensitivity_q())
        .order_by("id")
    )
    if not proposals:
        raise ValidationError({"status": "No proposed need is waiting for a decision."})
    plan = _plan_for(access, proposals[0].response)
    for proposal in proposals:
        _accept(access=access, by=by, proposal=proposal, plan=plan, request=request)
    return proposals


@transaction.atomic
def proposal_dismiss(
    *, access: PatientAccess, by: User, proposal: ProposedNeed, reason: str, request=None
) -> ProposedNeed:
    access.require_edit()
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why this need is dismissed."})
    proposal = ProposedNeed.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != ProposalStatus.PROPOSED:
        raise ValidationError(
            {"status": f"This proposal was already {proposal.get_status_display().lower()}."}
        )
    proposal.status = ProposalStatus.DISMISSED
    proposal.reason = reason[:300]
    proposal.decided_by = by
    proposal.decided_at = timezone.now()
    proposal.save()
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=proposal,
        patient=access.patient,
        request=request,
        detail="dismissed",
    )
    return proposal


# ---------------------------------------------------------------------------
# Questionnaires the team asks the patient to answer (in the portal)
# ---------------------------------------------------------------------------
class AlreadyAnswered(ValidationError):
    """A second answer to a task already answered (or cancelled): nothing is written."""


def assignments_for(access: PatientAccess) -> QuerySet:
    """The patient's questionnaire tasks the caller may see (sensitive ones filtered)."""
    return (
        QuestionnaireAssignment.objects.filter(patient=access.patient)
        .filter(access.sensitivity_q())
        .select_related("questionnaire", "assigned_by", "response")
        .order_by("-assigned_at", "-id")
    )


@transaction.atomic
def assignment_create(
    *, access: PatientAccess, by: User, questionnaire: Questionnaire, request=None
) -> QuestionnaireAssignment:
    """Ask the patient to answer a questionnaire in the portal: a task for the patient,
    requested until they answer it. Any team member who may screen may ask (emergency
    access is read-only; a sensitive instrument only those whose discipline may see it);
    one open request per instrument."""
    access.require_edit()
    if questionnaire.status != QuestionnaireStatus.ACTIVE:
        raise ValidationError({"questionnaire": "This questionnaire is not in use."})
    if not access.can_see_sensitivity(questionnaire.sensitivity_id):
        raise ValidationError(
            {"questionnaire": "This instrument is restricted to disciplines you do not belong to."}
        )
    waiting = ValidationError(
        {"questionnaire": "The patient has already been asked to answer this questionnaire."}
    )
    open_ = QuestionnaireAssignment.objects.filter(
        patient=access.patient, questionnaire=questionnaire, status=AssignmentStatus.REQUESTED
    )
    if open_.exists():
        raise waiting
    try:
        with transaction.atomic():  # two askers at once: the unique key keeps one
            assignment = QuestionnaireAssignment.objects.create(
                patient=access.patient,
                care_plan=_active_plan(access.patient),
                questionnaire=questionnaire,
                sensitivity=questionnaire.sensitivity,
                assigned_by=by,
            )
    except IntegrityError:
        raise waiting from None
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=assignment,
        patient=access.patient,
        request=request,
        detail="questionnaire asked of the patient in the portal",
    )
    return assignment


@transaction.atomic
def assignment_cancel(
    *,
    access: PatientAccess,
    by: User,
    assignment: QuestionnaireAssignment,
    expected_version: int | None,
    request=None,
) -> QuestionnaireAssignment:
    """Withdraw a request the patient has not answered yet."""
    access.require_edit()
    if assignment.patient_id != access.patient.pk or not access.can_see_sensitivity(
        assignment.sensitivity_id
    ):
        raise PermissionDenied("No such questionnaire request.")
    assignment = lock_for_update(assignment, expected_version)
    if assignment.status != AssignmentStatus.REQUESTED:
        raise ValidationError(
            {"status": f"This request is already {assignment.get_status_display().lower()}."}
        )
    assignment.status = AssignmentStatus.CANCELLED
    assignment.cancelled_at = timezone.now()
    assignment.cancelled_by = by
    save_versioned(
        assignment,
        expected_version=expected_version,
        update_fields=["status", "cancelled_at", "cancelled_by"],
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=assignment,
        patient=access.patient,
        request=request,
        detail="questionnaire request cancelled",
    )
    return assignment


@transaction.atomic
def assignment_answer(
    *,
    assignment: QuestionnaireAssignment,
    by: User,
    answered_by: str,
    answerer_name: str = "",
    data,
    expected_version: int | None,
    request=None,
) -> SaveResult:
    """The patient's (or family's) answers to a questionnaire the team asked for, from
    the portal (the caller checked the portal account may act for the patient). The
    answers go through the screening's own parsing, scoring and rules, so the needs they
    propose reach the team as proposals exactly as a screening entered by staff does;
    an urgent rule raises the safety handoff from the clinician who asked. Answered
    once: a second answer is refused (`AlreadyAnswered`) and writes nothing."""
    if answered_by not in ("patient", "caregiver"):
        raise ValidationError({"answered_by": "Say who answers: patient or caregiver."})
    assignment = QuestionnaireAssignment.objects.select_for_update().get(pk=assignment.pk)
    if assignment.status != AssignmentStatus.REQUESTED:
        raise AlreadyAnswered(
            "This questionnaire was already answered."
            if assignment.status == AssignmentStatus.COMPLETED
            else "Your team no longer needs this questionnaire."
        )
    check_version(assignment, expected_version)
    questionnaire = assignment.questionnaire
    if questionnaire.status != QuestionnaireStatus.ACTIVE:
        raise ValidationError({"questionnaire": "This questionnaire is not in use any more."})
    answers, errors = parse_answers(questionnaire, data, complete=True)
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    total, band = score(questionnaire, answers)
    response = QuestionnaireResponse.objects.create(
        patient_id=assignment.patient_id,
        care_plan=assignment.care_plan or _active_plan(assignment.patient),
        questionnaire=questionnaire,
        status=ResponseStatus.COMPLETED,
        answers=answers,
        answered_by=answered_by,
        answerer_name=answerer_name.strip()[:200],
        author=by,
        score=total,
        band=band,
        sensitivity=assignment.sensitivity,
        started_at=now,
        authored_at=now,
        completed_at=now,
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=response,
        patient=assignment.patient,
        request=request,
        detail=f"answered in the portal by the {answered_by}",
    )
    result = SaveResult(response=response, errors={}, assignment=assignment)
    _propose(result, handoff_from=assignment.assigned_by, request=request)
    assignment.status = AssignmentStatus.COMPLETED
    assignment.response = response
    assignment.completed_at = now
    save_versioned(
        assignment, expected_version=expected_version, update_fields=["status", "response", "completed_at"]
    )
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=assignment,
        patient=assignment.patient,
        request=request,
        detail="questionnaire answered in the portal",
    )
    return result


# ---------------------------------------------------------------------------
# FHIR QuestionnaireResponse
# ---------------------------------------------------------------------------
def _answer_value(item: dict, value) -> dict:
    kind = item.get("type")
    if kind in ("choice", "open-choice"):
        for option in item.get("answerOption") or []:
            if _option_code(option) == str(value):
                return {k: v for k, v in option.items() if k.startswith("value")}
        return {"valueString": str(value)}
    if kind == "integer":
        return {"valueInteger": int(value)}
    if kind == "decimal":
        return {"valueDecimal": float(value)}
    if kind == "date":
        return {"valueDate": value}
    if kind == "boolean":
        return {"valueBoolean": bool(value)}
    return {"valueString": str(value)}


def response_resource(response: QuestionnaireResponse) -> dict:
    q = response.questionnaire
    scoring = q.scoring or {}

    def items(source):
        out = []
        for item in source:
            link = item["linkId"]
            if item.get("type") == "group":
                children = items(item.get("item") or [])
                if children:
                    out.append({"linkId": link, "text": item.get("text", ""), "item": children})
                continue
            values = response.answers.get(link)
            if link == scoring.get("total_link_id") and response.score is not None:
                values = [response.score]
            if not values:
                continue
            out.append(
                {
                    "linkId": link,
                    "text": item.get("text", ""),
                    "answer": [_answer_value(item, v) for v in values],
                }
            )
        return out

    source = "Patient" if response.answered_by == "patient" else None
    data = {
        "resourceType": "QuestionnaireResponse",
        "id": str(response.pk),
        "meta": {"versionId": str(response.version), "lastUpdated": response.authored_at.isoformat()},
        "questionnaire": f"{q.url}|{q.version}",
        "status": response.status,
        "subject": {"reference": f"Patient/{response.patient_id}"},
        "authored": response.authored_at.isoformat(),
        "author": {"display": response.author.display_name},
        "item": items(q.resource.get("item") or []),
    }
    if source:
        data["source"] = {"reference": f"Patient/{response.patient_id}"}
    elif response.answered_by == "caregiver":
        data["source"] = {"display": response.answerer_name or "Caregiver"}
    if not data["item"]:
        del data["item"]
    return data
