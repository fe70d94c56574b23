"""FHIR search: the one table of search parameters each resource type supports.

Each `SearchType` names its parameters (with the Q that implements them), its `_sort`
keys and its `_include`s; the search views run it and the CapabilityStatement is written
from it (`capability_resources`), so what the server declares and what it does cannot
drift. A parameter the table does not hold is refused with 400 under
`Prefer: handling=strict`, and otherwise ignored and left out of `Bundle.link[self]`.

Values: a comma list means OR; the same parameter twice means AND (`date=ge2026&date=le2027`).
Tokens take `code`, `system|code`, `|code` and `system|`; dates the prefixes eq, ne, lt,
le, gt, ge at year, month or day precision; strings match the start of a word part,
`:exact` and `:contains` as the specification says.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet
from rest_framework.exceptions import ValidationError

TOKEN_LIMIT = 300
DATE_PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge")
DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")
# result parameters the engine itself answers (the others are refused or ignored)
RESULT_PARAMETERS = ("_count", "_offset", "_summary", "_sort", "_include", "_elements", "_format")
ELEMENT_RE = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")
# elements R4 requires (min 1) of each type served: kept whatever `_elements` asks
MANDATORY_ELEMENTS = {
    "CarePlan": ("status", "intent", "subject"),
    "Goal": ("lifecycleStatus", "description", "subject"),
    "ServiceRequest": ("status", "intent", "subject"),
    "Task": ("status", "intent"),
    "Encounter": ("status", "class"),
    "MedicationStatement": ("status", "medicationCodeableConcept", "medicationReference", "subject"),
    "Questionnaire": ("status",),
    "QuestionnaireResponse": ("status",),
    "PlanDefinition": ("status",),
}
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def subset(resource: dict, elements: list[str]) -> dict:
    """`_elements`: the resource with only the asked top-level elements, its id, meta and
    the elements R4 requires, tagged SUBSETTED (as the spec asks)."""
    kind = resource["resourceType"]
    keep = {"resourceType", "id", *elements, *MANDATORY_ELEMENTS.get(kind, ())}
    out = {key: value for key, value in resource.items() if key in keep}
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def bad_request(message: str) -> ValidationError:
    return ValidationError({"detail": message})


# ---------------------------------------------------------------------------
# Value parsing
# ---------------------------------------------------------------------------
def split_values(raw: str, name: str) -> list[str]:
    """One occurrence of a parameter: its comma-separated values (OR)."""
    if len(raw) > TOKEN_LIMIT or "\x00" in raw:
        raise bad_request(f"Search parameter {name}: give a value of at most {TOKEN_LIMIT} characters.")
    return [v.strip() for v in raw.split(",") if v.strip()]


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system; "": no system
    code: str  # "": any code (of `system`)

    @classmethod
    def parse(cls, value: str) -> Token:
        if "|" not in value:
            return cls(None, value)
        system, _, code = value.partition("|")
        return cls(system, code)

    def matches_system(self, *systems: str) -> bool:
        """Whether a coding of one of `systems` may match (no system given: any)."""
        return self.system is None or self.system in systems


def date_range(value: str, name: str) -> tuple[str, dt.date, dt.date]:
    """(prefix, first day, last day) of a date search value."""
    prefix = value[:2] if value[:2].isalpha() else "eq"
    raw = value[2:] if value[:2].isalpha() else value
    match = DATE_RE.match(raw)
    if prefix not in DATE_PREFIXES or not match:
        raise bad_request(
            f"Search parameter {name}: '{value}' is not a date (YYYY, YYYY-MM or YYYY-MM-DD, "
            f"optionally after one of {', '.join(DATE_PREFIXES)})."
        )
    year, month, day = match.groups()
    try:
        if day:
            first = last = dt.date(int(year), int(month), int(day))
        elif month:
            first = dt.date(int(year), int(month), 1)
            last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        else:
            first, last = dt.date(int(year), 1, 1), dt.date(int(year), 12, 31)
    except ValueError:
        raise bad_request(f"Search parameter {name}: '{value}' is not a valid date.") from None
    return prefix, first, last


def date_q(field_name: str) -> Callable[[str, str], Q]:
    """A date (or dateTime, with `__date`) element compared with the search value."""

    def build(value: str, name: str) -> Q:
        prefix, first, last = date_range(value, name)
        f = field_name
        equal = Q(**{f"{f}__gte": first, f"{f}__lte": last})
        return {
            "eq": equal,
            "ne": Q(**{f"{f}__isnull": False}) & ~equal,
            "lt": Q(**{f"{f}__lt": first}),
            "le": Q(**{f"{f}__lte": last}),
            "gt": Q(**{f"{f}__gt": last}),
            "ge": Q(**{f"{f}__gte": first}),
        }[prefix]

    return build


def period_q(start: str, end: str) -> Callable[[str, str], Q]:
    """A Period (`end` empty: still running) compared with the search value's range."""

    def build(value: str, name: str) -> Q:
        prefix, first, last = date_range(value, name)
        within = Q(**{f"{start}__gte": first, f"{end}__isnull": False, f"{end}__lte": last})
        return {
            "eq": within,
            "ne": ~within,
            "lt": Q(**{f"{start}__lt": first}),
            "le": Q(**{f"{start}__lte": last}),
            "gt": Q(**{f"{end}__isnull": True}) | Q(**{f"{end}__gt": last}),
            "ge": Q(**{f"{end}__isnull": True}) | Q(**{f"{end}__gte": first}),
        }[prefix]

    return build


def reference_ids(value: str, kind: str = "Patient") -> int | None:
    """The id of `7`, `Patient/7` or `https://.../Patient/7`; None for anything else."""
    tail = value.rsplit("/", 2)
    if len(tail) >= 2 and tail[-2] != kind:
        return None
    raw = tail[-1]
    return int(raw) if raw.isdigit() and len(raw) < 16 else None


def reference_q(field_name: str, kind: str = "Patient") -> Callable[[str, str], Q]:
    def build(value: str, name: str) -> Q:
        pk = reference_ids(value, kind)
        return Q(**{field_name: pk}) if pk is not None else Q(pk__in=[])

    return build


def id_q(field_name: str = "pk", prefix: str = "") -> Callable[[str, str], Q]:
    def build(value: str, name: str) -> Q:
        raw = value.removeprefix(prefix) if prefix else value
        if prefix and not value.startswith(prefix):
            return Q(pk__in=[])
        return Q(**{field_name: int(raw)}) if raw.isdigit() and len(raw) < 16 else Q(pk__in=[])

    return build


def code_q(field_name: str, allowed: Iterable[str] | None = None, mapping: dict | None = None):
    """A `code` element (status and the like): the system part of a token is ignored, as
    FHIR's code type has none; `mapping` turns a FHIR code into the stored values."""

    def build(value: str, name: str) -> Q:
        code = Token.parse(value).code
        if allowed is not None and code not in allowed:
            raise bad_request(f"Search parameter {name}: '{code}' is not one of {', '.join(allowed)}.")
        stored = mapping.get(code, []) if mapping is not None else [code]
        return Q(**{f"{field_name}__in": stored})

    return build


def string_q(*fields: str) -> Callable[[str, str, str], Q]:
    """FHIR string search on any of `fields`: starts with (default), `:exact`, `:contains`."""

    def build(value: str, name: str, modifier: str = "") -> Q:
        lookup = {"": "istartswith", "exact": "exact", "contains": "icontains"}[modifier]
        q = Q()
        for f in fields:
            q |= Q(**{f"{f}__{lookup}": value})
            if lookup == "istartswith":  # the start of any word of the element
                q |= Q(**{f"{f}__icontains": f" {value}"})
        return q

    build.modifiers = ("exact", "contains")  # type: ignore[attr-defined]
    return build


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    type: str  # FHIR search parameter type: reference, token, date, string, uri
    q: Callable[..., Q]
    documentation: str = ""
    definition: str = ""

    @property
    def modifiers(self) -> tuple[str, ...]:
        return getattr(self.q, "modifiers", ())


@dataclass
class SearchType:
    """What one resource type's search accepts and how it is answered.

    `queryset(user)` is already restricted to what the user may see; `render(view, rows)`
    answers (fullUrl, resource) pairs for one page in a fixed number of queries;
    `includes` map an `_include` value to a loader of the referenced resources
    (visible-only); `sorts` map a `_sort` key to an order expression.
    """

    kind: str
    queryset: Callable[[Any], QuerySet]
    render: Callable[[Any, list], list[tuple[str, dict]]]
    params: list[Param]
    sorts: dict[str, str] = field(default_factory=dict)
    includes: dict[str, Callable[[Any, list], list[tuple[str, dict]]]] = field(default_factory=dict)
    default_order: tuple[str, ...] = ("pk",)
    patient_path: str | None = "patient"  # from a row to its patient id (audit), None: not patient data
    requires_one_of: tuple[str, ...] = ()  # patient data: a search must name the patient (or an id)
    interactions: tuple[str, ...] = ("read", "search-type")
    operations: tuple[tuple[str, str], ...] = ()
    profile: str = ""
    supported_profiles: tuple[str, ...] = ()
    conditional_create: bool = False
    # a search over several tables (Task): (id prefix, SearchType of one table) each
    parts: list[tuple[str, SearchType]] = field(default_factory=list)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


REGISTRY: dict[str, SearchType] = {}


def register(search: SearchType) -> SearchType:
    REGISTRY[search.kind] = search
    return search


def capability_resources() -> list[dict]:
    """CapabilityStatement.rest.resource, written from the table."""
    out = []
    for search in REGISTRY.values():
        data: dict[str, Any] = {"type": search.kind}
        if search.profile:
            data["profile"] = search.profile
        if search.supported_profiles or search.profile:
            data["supportedProfile"] = list(search.supported_profiles or (search.profile,))
        data["interaction"] = [{"code": code} for code in search.interactions]
        if "create" in search.interactions:
            data["conditionalCreate"] = search.conditional_create
        if search.includes:
            data["searchInclude"] = sorted(search.includes)
        data["searchParam"] = [
            {
                "name": p.name,
                **({"definition": p.definition} if p.definition else {}),
                "type": p.type,
                **({"documentation": p.documentation} if p.documentation else {}),
            }
            for p in search.params
        ]
        if search.operations:
            data["operation"] = [{"name": name, "definition": url} for name, url in search.operations]
        out.append(data)
    return out


# ---------------------------------------------------------------------------
# Running a search
# ---------------------------------------------------------------------------
@dataclass
class Parsed:
    """The accepted parts of a search request, in the order given (for `link[self]`)."""

    q: Q
    accepted: list[tuple[str, str]]
    ignored: list[str]
    order: list[str]
    includes: list[str]
    summary_count: bool
    patient_ids: list[int]
    elements: list[str] = field(default_factory=list)


def parse(search: SearchType, query_params, *, strict: bool) -> Parsed:
    """Turn the query string into one Q (AND of parameters, OR inside a comma list),
    the sort and includes; unsupported parameters and values are refused when `strict`,
    otherwise dropped."""
    q = Q()
    accepted: list[tuple[str, str]] = []
    ignored: list[str] = []
    order: list[str] = []
    includes: list[str] = []
    summary_count = False
    patient_ids: list[int] = []
    elements: list[str] = []
    named = set()

    def refuse(what: str) -> None:
        if strict:
            raise bad_request(f"{what} is not supported by this server for {search.kind}.")
        ignored.append(what)

    for key in query_params:
        for raw in query_params.getlist(key):
            name, _, modifier = key.partition(":")
            if name in ("_count", "_offset", "_format"):
                continue  # paging and format are answered by the view
            if name == "_summary":
                if raw == "count" and not modifier:
                    summary_count = True
                    accepted.append((key, raw))
                else:
                    refuse(f"_summary={raw}")
                continue
            if name == "_sort":
                keys = []
                for part in split_values(raw, "_sort"):
                    descending = part.startswith("-")
                    column = search.sorts.get(part.lstrip("-"))
                    if column is None or modifier:
                        refuse(f"_sort={part}")
                        continue
                    keys.append(part)
                    order.append(("-" if descending else "") + column)
                if keys:
                    accepted.append(("_sort", ",".join(keys)))
                continue
            if name == "_elements":
                asked = split_values(raw, "_elements")
                good = [e for e in asked if ELEMENT_RE.match(e)]
                for bad in (e for e in asked if not ELEMENT_RE.match(e)):
                    refuse(f"_elements={bad[:64]}")
                if good and not modifier:
                    elements.extend(good)
                    accepted.append(("_elements", ",".join(good)))
                continue
            if name == "_include":
                if modifier or raw not in search.includes:
                    refuse(f"_include={raw}")
                else:
                    includes.append(raw)
                    accepted.append(("_include", raw))
                continue
            param = search.param(name)
            if param is None or (modifier and modifier not in param.modifiers):
                refuse(f"Search parameter {key}")
                continue
            values = split_values(raw, key)
            if not values:
                continue
            either = Q(pk__in=[])
            for value in values:
                either |= param.q(value, name, modifier) if modifier else param.q(value, name)
                if param.type == "reference" and name in ("patient", "subject"):
                    pid = reference_ids(value)
                    if pid is not None:
                        patient_ids.append(pid)
            q &= either
            named.add(name)
            accepted.append((key, raw))
    if search.requires_one_of and not named & set(search.requires_one_of):
        raise bad_request(
            f"Search {search.kind} by {' or '.join(search.requires_one_of)} (e.g. ?patient=<id>)."
        )
    return Parsed(q, accepted, ignored, order, includes, summary_count, patient_ids, elements)
