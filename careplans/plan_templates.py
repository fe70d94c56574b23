"""Plan templates: named sets of goals, needs and activities with relative due dates,
merged into a patient's one living plan (never a second plan).

- Shipped templates live in `careplans/data/templates/`; `template_import` stores a new
  version from CareTeam's own JSON or from a FHIR PlanDefinition (+ contained
  ActivityDefinitions); `plandefinition_resource` exports one.
- `template_preview` says what applying would add and what the plan already has;
  `template_apply` adds the missing items through the care-plan services. A
  `TemplateItem` row per (plan, template, item key) under a unique constraint makes it
  idempotent, also for two applies at the same moment: each item is claimed by an
  INSERT ... ON CONFLICT DO NOTHING before it is created, and only the claimant creates
  it. Item keys stay the same across versions, so a newer version adds only the
  difference.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from careteam.audit import audit
from careteam.models import AuditAction, Discipline, TeamMembership, User
from careteam.permissions import PatientAccess

from . import services as plan_services
from .models import CarePlan, GoalPriority, NeedCategory, NeedDomain, PlanTemplate, TemplateItem

DATA_DIR = Path(__file__).resolve().parent / "data" / "templates"
SHIPPED = ("heart-failure-discharge", "type-2-diabetes", "fall-risk-home", "post-knee-replacement")
BASE = "https://careteam.example.org/fhir"
KIND_EXT = f"{BASE}/StructureDefinition/template-item-kind"
OWNER_EXT = f"{BASE}/StructureDefinition/owner-discipline"
NEED_CATEGORY_SYSTEM = f"{BASE}/CodeSystem/need-category"
NEED_DOMAIN_SYSTEM = f"{BASE}/CodeSystem/need-domain"
GOAL_PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-priority"
DISCIPLINE_SYSTEM = f"{BASE}/CodeSystem/discipline"
KINDS = ("goals", "needs", "activities")


# ---------------------------------------------------------------------------
# Content checks and import
# ---------------------------------------------------------------------------
def validate_content(content: Any) -> dict:
    """CareTeam's template content: keys unique per kind, codes known, links resolvable."""
    if not isinstance(content, dict):
        raise ValidationError({"content": ["A template is a JSON object with goals, needs and activities."]})
    errors: list[str] = []
    disciplines = set(Discipline.objects.values_list("code", flat=True))
    keys: dict[str, set[str]] = {}
    for kind in KINDS:
        items = content.get(kind) or []
        if not isinstance(items, list):
            errors.append(f"{kind} must be a list.")
            continue
        keys[kind] = set()
        for index, item in enumerate(items):
            where = f"{kind}[{index}]"
            if not isinstance(item, dict) or not str(item.get("key") or "").strip():
                errors.append(f"{where}: each item needs a key.")
                continue
            if item["key"] in keys[kind]:
                errors.append(f"{where}: key {item['key']!r} used twice.")
            keys[kind].add(item["key"])
            text = item.get("title") if kind == "activities" else item.get("description")
            if not str(text or "").strip():
                errors.append(f"{where}: {'title' if kind == 'activities' else 'description'} is required.")
            due = item.get("due_days")
            if due is not None and (
                not isinstance(due, int) or isinstance(due, bool) or not 0 <= due <= 3650
            ):
                errors.append(f"{where}: due_days is a whole number of days from 0 to 3650.")
            owner = item.get("owner") or ""
            if owner and owner not in disciplines:
                errors.append(f"{where}: unknown discipline {owner!r}.")
            if kind == "activities" and not owner:
                errors.append(f"{where}: an activity needs an owner discipline.")
            if kind == "needs":
                if item.get("category") not in NeedCategory.values:
                    errors.append(f"{where}: unknown category {item.get('category')!r}.")
                if item.get("domain") not in NeedDomain.values:
                    errors.append(f"{where}: unknown domain {item.get('domain')!r}.")
            if kind == "goals" and item.get("priority", GoalPriority.MEDIUM) not in GoalPriority.values:
                errors.append(f"{where}: unknown priority {item.get('priority')!r}.")
    for kind in ("needs", "activities"):
        for item in content.get(kind) or []:
            if not isinstance(item, dict):
                continue
            for goal in item.get("goals") or []:
                if goal not in keys.get("goals", set()):
                    errors.append(f"{kind} {item.get('key')}: no goal {goal!r}.")
            for need in item.get("needs") or [] if kind == "activities" else []:
                if need not in keys.get("needs", set()):
                    errors.append(f"{kind} {item.get('key')}: no need {need!r}.")
    if errors:
        raise ValidationError({"content": errors})
    return {kind: content.get(kind) or [] for kind in KINDS}


def _version_refused(slug: str, version: int, newest: int) -> ValidationError:
    stored = version == newest or PlanTemplate.objects.filter(slug=slug, version=version).exists()
    problem = "is already stored" if stored else f"is older than the stored v{newest}"
    return ValidationError(
        {
            "version": [
                f"Version {version} of template {slug} {problem}: give the import a version newer than v{newest}."
            ]
        }
    )


@transaction.atomic
def template_import(*, data: dict, by: User | None = None, request=None) -> PlanTemplate:
    """Store a template version from CareTeam JSON ({slug, title, goals, ...}) or from a
    FHIR PlanDefinition. A version must be newer than the stored ones."""
    if not isinstance(data, dict):
        raise ValidationError({"template": ["Send a JSON object."]})
    kind = data.get("resourceType")
    if kind == "PlanDefinition":
        data = parse_plandefinition(data)
    elif kind == "Bundle":
        data = parse_plandefinition(*_bundle_parts(data))
    elif kind is not None:
        raise ValidationError(
            {
                "template": [
                    f"A {str(kind)[:60]} is not a template: send a FHIR R4 PlanDefinition, or a Bundle "
                    "holding one PlanDefinition and its ActivityDefinitions."
                ]
            }
        )
    slug = str(data.get("slug") or "").strip()
    title = str(data.get("title") or "").strip()
    version = data.get("version") or 1
    errors = {}
    if not slug or len(slug) > 80 or not slug.replace("-", "").isalnum():
        errors["slug"] = ["A template needs a slug (letters, digits and dashes)."]
    if not title:
        errors["title"] = ["A template needs a title."]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        errors["version"] = ["The version is a whole number from 1."]
    if errors:
        raise ValidationError(errors)
    content = validate_content(data)
    latest = PlanTemplate.objects.filter(slug=slug).order_by("-version").first()
    if latest is not None and version <= latest.version:
        raise _version_refused(slug, version, latest.version)
    try:
        with transaction.atomic():  # two imports of one version at once: one wins
            template = PlanTemplate.objects.create(
                slug=slug,
                version=version,
                title=title[:200],
                description=str(data.get("description") or ""),
                status=data.get("status")
                if data.get("status") in ("draft", "active", "retired")
                else "active",
                content=content,
            )
    except IntegrityError:
        raise _version_refused(slug, version, version) from None
    if by is not None:
        audit(
            user=by, action=AuditAction.CREATE, obj=template, request=request, detail=f"imported {template}"
        )
    return template


def ensure_shipped_templates() -> None:
    for slug in SHIPPED:
        data = json.loads((DATA_DIR / f"{slug}.json").read_text())
        if not PlanTemplate.objects.filter(slug=data["slug"], version=data["version"]).exists():
            template_import(data=data)


def current_templates() -> list[PlanTemplate]:
    latest: dict[str, PlanTemplate] = {}
    for t in PlanTemplate.objects.filter(status="active").order_by("slug", "-version"):
        latest.setdefault(t.slug, t)
    return sorted(latest.values(), key=lambda t: t.title)


def as_data(template: PlanTemplate) -> dict:
    """The template in CareTeam's import format (what re-import compares against)."""
    return {
        "slug": template.slug,
        "version": template.version,
        "title": template.title,
        "description": template.description,
        **{kind: template.content.get(kind, []) for kind in KINDS},
    }


# ---------------------------------------------------------------------------
# FHIR PlanDefinition (+ ActivityDefinition)
# ---------------------------------------------------------------------------
def _days(n: int | None) -> dict | None:
    if n is None:
        return None
    return {"value": n, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}


def _drop(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


def plandefinition_resource(template: PlanTemplate) -> dict:
    content = template.content
    goals = []
    for g in content.get("goals", []):
        target = _drop(
            {
                "measure": {"text": g.get("target_measure")} if g.get("target_measure") else None,
                "detailCodeableConcept": {"text": g["target_value"]} if g.get("target_value") else None,
                "due": _days(g.get("due_days")),
            }
        )
        goals.append(
            _drop(
                {
                    "id": g["key"],
                    "extension": [{"url": OWNER_EXT, "valueCode": g["owner"]}] if g.get("owner") else [],
                    "description": {"text": g["description"]},
                    "priority": {
                        "coding": [
                            {"system": GOAL_PRIORITY_SYSTEM, "code": g.get("priority") or "medium-priority"}
                        ]
                    },
                    "target": [target] if target else [],
                }
            )
        )
    actions, contained = [], []
    for n in content.get("needs", []):
        actions.append(
            _drop(
                {
                    "id": f"need-{n['key']}",
                    "extension": [{"url": KIND_EXT, "valueCode": "need"}],
                    "title": n["description"],
                    "code": [
                        {"coding": [{"system": NEED_CATEGORY_SYSTEM, "code": n["category"]}]},
                        {"coding": [{"system": NEED_DOMAIN_SYSTEM, "code": n["domain"]}]},
                    ],
                    "goalId": n.get("goals") or [],
                }
            )
        )
    for a in content.get("activities", []):
        ad_id = f"ad-{a['key']}"
        contained.append(
            _drop(
                {
                    "resourceType": "ActivityDefinition",
                    "id": ad_id,
                    "extension": [{"url": OWNER_EXT, "valueCode": a["owner"]}],
                    "status": "active",
                    "title": a["title"],
                    "description": a.get("description") or None,
                    "kind": "Task",
                    "timingDuration": _days(a.get("due_days")),
                    "participant": [
                        {
                            "type": "practitioner",
                            "role": {"coding": [{"system": DISCIPLINE_SYSTEM, "code": a["owner"]}]},
                        }
                    ],
                }
            )
        )
        actions.append(
            _drop(
                {
                    "id": f"activity-{a['key']}",
                    "extension": [{"url": KIND_EXT, "valueCode": "activity"}],
                    "title": a["title"],
                    "goalId": a.get("goals") or [],
                    "relatedAction": [
                        {"actionId": f"need-{k}", "relationship": "after-start"} for k in a.get("needs") or []
                    ],
                    "definitionCanonical": f"#{ad_id}",
                }
            )
        )
    return _drop(
        {
            "resourceType": "PlanDefinition",
            "id": str(template.pk),
            "meta": {"versionId": str(template.version), "lastUpdated": template.created_at.isoformat()},
            "contained": contained,
            "url": f"{BASE}/PlanDefinition/{template.slug}",
            "version": str(template.version),
            "name": template.slug.replace("-", "_"),
            "title": template.title,
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                        "code": "order-set",
                    }
                ]
            },
            "status": template.status,
            "description": template.description,
            "goal": goals,
            "action": actions,
        }
    )


def _ext(element: dict, url: str) -> str | None:
    return next((e.get("valueCode") for e in element.get("extension") or [] if e.get("url") == url), None)


def _code(concepts: list, system: str) -> str | None:
    for concept in concepts or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == system:
                return coding.get("code")
    return None


def _fhir_check(model, resource: dict, label: str) -> None:
    """Validate against the R4B model (R4's structure; unknown elements, e.g. from R5,
    are refused) and name the failing elements."""
    from pydantic import ValidationError as PydanticError

    try:
        model.model_validate(resource)
    except PydanticError as exc:
        raise ValidationError(
            {
                label: [
                    f"Not a valid FHIR R4 {label}: {'.'.join(str(p) for p in e['loc']) or 'resource'}: {e['msg']}"
                    for e in exc.errors()[:20]
                ]
            }
        ) from None


def _bundle_parts(bundle: dict) -> tuple[dict, list[dict]]:
    """A Bundle holding exactly one PlanDefinition and the ActivityDefinitions it refers
    to by canonical url."""
    from fhir.resources.R4B.bundle import Bundle

    _fhir_check(Bundle, bundle, "Bundle")
    resources = [e.get("resource") or {} for e in bundle.get("entry") or []]
    plans = [r for r in resources if r.get("resourceType") == "PlanDefinition"]
    if len(plans) != 1:
        raise ValidationError(
            {"Bundle": [f"The Bundle holds {len(plans)} PlanDefinitions: send exactly one."]}
        )
    others = sorted({r.get("resourceType") for r in resources} - {"PlanDefinition", "ActivityDefinition"})
    if others:
        raise ValidationError(
            {
                "Bundle": [
                    f"The Bundle may hold only a PlanDefinition and ActivityDefinitions, not {', '.join(map(str, others))}."
                ]
            }
        )
    return plans[0], [r for r in resources if r.get("resourceType") == "ActivityDefinition"]


def _definition(action: dict, contained: dict, referenced: dict) -> dict:
    """The ActivityDefinition an activity action points to: `#id` (contained) or a
    canonical url (`url` or `url|version`) of one sent beside the PlanDefinition."""
    ref = action.get("definitionCanonical") or ""
    if ref.startswith("#") and ref[1:] in contained:
        return contained[ref[1:]]
    if ref in referenced:
        return referenced[ref]
    if ref.partition("|")[0] in referenced:
        return referenced[ref.partition("|")[0]]
    where = action.get("id") or action.get("title") or "an activity"
    if not ref:
        problem = f"Action {where}: an activity needs definitionCanonical (its ActivityDefinition)."
    else:
        problem = (
            f"Action {where}: ActivityDefinition {ref[:200]} is neither contained in the "
            "PlanDefinition nor sent with it."
        )
    raise ValidationError({"PlanDefinition": [problem]})


def _owner_code(ad: dict) -> str:
    """The owner discipline: our extension, else a participant role in our discipline
    code system."""
    return _ext(ad, OWNER_EXT) or (
        _code([p.get("role") or {} for p in ad.get("participant") or []], DISCIPLINE_SYSTEM) or ""
    )


def parse_plandefinition(resource: dict, activity_definitions: list[dict] | None = None) -> dict:
    """A PlanDefinition (validated as R4B) back into CareTeam's template format; its
    activities come from contained ActivityDefinitions or from `activity_definitions`
    (validated too) referred to by canonical url."""
    from fhir.resources.R4B.activitydefinition import ActivityDefinition
    from fhir.resources.R4B.plandefinition import PlanDefinition

    _fhir_check(PlanDefinition, resource, "PlanDefinition")
    if resource.get("status") not in ("draft", "active", "retired"):
        raise ValidationError(
            {
                "PlanDefinition": [
                    f"PlanDefinition.status {str(resource.get('status'))[:40]!r}: give draft, active or retired."
                ]
            }
        )
    referenced: dict[str, dict] = {}
    for ad in activity_definitions or []:
        _fhir_check(ActivityDefinition, ad, "ActivityDefinition")
        if ad.get("url"):
            referenced[ad["url"]] = ad
            if ad.get("version"):
                referenced[f"{ad['url']}|{ad['version']}"] = ad
    url = resource.get("url") or ""
    slug = url.rsplit("/", 1)[-1] if url else (resource.get("name") or "").replace("_", "-")
    try:
        version = int(resource.get("version") or 1)
    except ValueError:
        raise ValidationError({"version": ["PlanDefinition.version must be a whole number."]}) from None
    contained = {
        r.get("id"): r
        for r in resource.get("contained") or []
        if r.get("resourceType") == "ActivityDefinition"
    }
    goals = []
    for g in resource.get("goal") or []:
        target = (g.get("target") or [{}])[0]
        goals.append(
            {
                "key": g.get("id") or "",
                "description": (g.get("description") or {}).get("text", ""),
                "target_measure": (target.get("measure") or {}).get("text", ""),
                "target_value": (target.get("detailCodeableConcept") or {}).get("text", ""),
                "due_days": (target.get("due") or {}).get("value"),
                "priority": _code([g.get("priority") or {}], GOAL_PRIORITY_SYSTEM) or "medium-priority",
                "owner": _ext(g, OWNER_EXT) or "",
            }
        )
    needs, activities = [], []
    for action in resource.get("action") or []:
        kind = _ext(action, KIND_EXT)
        action_id = action.get("id") or ""
        if kind == "need":
            needs.append(
                {
                    "key": action_id.removeprefix("need-"),
                    "category": _code(action.get("code"), NEED_CATEGORY_SYSTEM),
                    "domain": _code(action.get("code"), NEED_DOMAIN_SYSTEM),
                    "description": action.get("title", ""),
                    "goals": action.get("goalId") or [],
                }
            )
        elif kind == "activity":
            ad = _definition(action, contained, referenced)
            due = ad.get("timingDuration") or {}
            activities.append(
                {
                    "key": action_id.removeprefix("activity-"),
                    "title": ad.get("title") or action.get("title", ""),
                    "owner": _owner_code(ad),
                    "due_days": due.get("value"),
                    "goals": action.get("goalId") or [],
                    "needs": [r["actionId"].removeprefix("need-") for r in action.get("relatedAction") or []],
                    "description": ad.get("description", ""),
                }
            )
    for d in (*goals, *activities):
        if isinstance(d.get("due_days"), float) and d["due_days"].is_integer():
            d["due_days"] = int(d["due_days"])
    return {
        "slug": slug,
        "version": version,
        "title": resource.get("title") or "",
        "description": resource.get("description") or "",
        "status": resource.get("status"),
        "goals": goals,
        "needs": needs,
        "activities": activities,
    }


# ---------------------------------------------------------------------------
# Preview and apply
# ---------------------------------------------------------------------------
@dataclass
class Preview:
    template: PlanTemplate
    plan: CarePlan
    add: dict = field(default_factory=dict)  # kind -> [item]
    present: dict = field(default_factory=dict)  # kind -> [(item, from version)]
    today: dt.date = field(default_factory=timezone.localdate)

    @property
    def adds_nothing(self) -> bool:
        return not any(self.add.values())

    def due(self, item) -> dt.date | None:
        return self.today + dt.timedelta(days=item["due_days"]) if item.get("due_days") is not None else None


KIND_SINGULAR = {"goals": "goal", "needs": "need", "activities": "activity"}


def template_preview(*, plan: CarePlan, template: PlanTemplate) -> Preview:
    """What applying `template` would add to `plan`, and what the plan already has from it
    (from this or an earlier version)."""
    have = {
        (row.kind, row.item_key): row.template_version
        for row in TemplateItem.objects.filter(care_plan=plan, template_slug=template.slug)
    }
    preview = Preview(template=template, plan=plan)
    for kind in KINDS:
        preview.add[kind], preview.present[kind] = [], []
        for item in template.content.get(kind, []):
            version = have.get((KIND_SINGULAR[kind], item["key"]))
            if version is None:
                preview.add[kind].append(item)
            else:
                preview.present[kind].append((item, version))
    return preview


def _owner(patient, discipline: Discipline, memberships: list[TeamMembership]):
    """The team member of that discipline when there is exactly one; else the queue."""
    of_discipline = {m.user_id: m.user for m in memberships if m.discipline_id == discipline.pk}
    return next(iter(of_discipline.values())) if len(of_discipline) == 1 else None


def _claim(plan: CarePlan, template: PlanTemplate, kind: str, key: str, by: User) -> bool:
    """Take the (plan, template, kind, key) slot; False when another apply holds it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {TemplateItem._meta.db_table}
                (care_plan_id, template_slug, template_version, item_key, kind, applied_by_id, applied_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (care_plan_id, template_slug, kind, item_key) DO NOTHING RETURNING id""",  # noqa: S608 - the table name is the model's
            [plan.pk, template.slug, template.version, key, kind, by.pk, timezone.now()],
        )
        return cursor.fetchone() is not None


@dataclass
class ApplyResult:
    added: dict = field(default_factory=dict)  # kind -> [created objects]

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.added.values())


@transaction.atomic
def template_apply(
    *, access: PatientAccess, plan: CarePlan, template: PlanTemplate, by: User, request=None
) -> ApplyResult:
    """Merge the template's missing items into the plan (case manager or plan lead, who
    may file items for every discipline). Due dates count from today."""
    if plan.patient_id != access.patient.pk:
        raise ValidationError("That plan belongs to another patient.")
    access.require_edit()
    if not access.can_edit_any:
        from careteam.permissions import ReadOnlyAccess

        raise ReadOnlyAccess("Only the case manager or the plan lead can apply a template.")
    if plan.status in ("revoked", "completed", "entered-in-error"):
        raise ValidationError({"care_plan": "Templates merge into an open plan (draft, active or on hold)."})
    today = timezone.localdate()
    memberships = list(TeamMembership.objects.current().filter(patient=access.patient).select_related("user"))
    disciplines = {d.code: d for d in Discipline.objects.all()}
    stamp = f"from template {template.title} v{template.version}"
    result = ApplyResult(added={kind: [] for kind in KINDS})
    by_key: dict[str, dict] = {"goals": {}, "needs": {}}
    for row in TemplateItem.objects.filter(care_plan=plan, template_slug=template.slug).select_related(
        "goal", "need"
    ):
        if row.goal_id:
            by_key["goals"][row.item_key] = row.goal
        if row.need_id:
            by_key["needs"][row.item_key] = row.need

    def due(item):
        return today + dt.timedelta(days=item["due_days"]) if item.get("due_days") is not None else None

    def claimed(kind: str, item) -> bool:
        return _claim(plan, template, KIND_SINGULAR[kind], item["key"], by)

    def record(kind: str, item, obj) -> None:
        TemplateItem.objects.filter(
            care_plan=plan, template_slug=template.slug, kind=KIND_SINGULAR[kind], item_key=item["key"]
        ).update(**{KIND_SINGULAR[kind]: obj})
        obj.history.filter(history_type="+").update(history_change_reason=stamp)
        result.added[kind].append(obj)

    for item in template.content.get("goals", []):
        if not claimed("goals", item):
            continue
        goal = plan_services.goal_create(
            access=access,
            plan=plan,
            by=by,
            request=request,
            description=item["description"],
            target_measure=item.get("target_measure", "")[:200],
            target_value=item.get("target_value", "")[:100],
            target_due=due(item),
            priority=item.get("priority") or "medium-priority",
            owner_discipline=disciplines.get(item.get("owner") or ""),
            lifecycle_status="proposed",
        )
        by_key["goals"][item["key"]] = goal
        record("goals", item, goal)
    for item in template.content.get("needs", []):
        if not claimed("needs", item):
            continue
        need = plan_services.need_create(
            access=access,
            plan=plan,
            by=by,
            request=request,
            goals=[by_key["goals"][k] for k in item.get("goals") or [] if by_key["goals"].get(k)],
            domain=item["domain"],
            category=item["category"],
            description=item["description"],
        )
        by_key["needs"][item["key"]] = need
        record("needs", item, need)
    for item in template.content.get("activities", []):
        if not claimed("activities", item):
            continue
        discipline = disciplines[item["owner"]]
        activity = plan_services.activity_create(
            access=access,
            plan=plan,
            by=by,
            request=request,
            goals=[by_key["goals"][k] for k in item.get("goals") or [] if by_key["goals"].get(k)],
            needs=[by_key["needs"][k] for k in item.get("needs") or [] if by_key["needs"].get(k)],
            title=item["title"][:200],
            description=item.get("description", ""),
            owner_discipline=discipline,
            assigned_to=_owner(access.patient, discipline, memberships),
            due_date=due(item),
        )
        record("activities", item, activity)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=plan,
        patient=access.patient,
        request=request,
        detail=f"{stamp}: {result.count} items added",
    )
    return result
