"""Open Referral HSDS 3.0 import and export of the community service catalog.

Storage model: organizations, services, locations, services-at-location and taxonomy terms
are rows with real columns (they are searched, referred to and shown); their HSDS
sub-records (phones, contacts, schedules, languages, service areas, cost options, ...) are
kept whole, as HSDS JSON, in each row's `details`, so an export gives back what was
imported. The columns clinicians search on (`Service.languages`, `is_free`, `service_area`,
`categories`, the location's address) are derived from those sub-records on import, and an
export turns them back into sub-records when an administrator set them by hand.

Formats: the JSON objects of the compiled schemas (`hsds_schema/*.json`: organization,
service, service_at_location) and the tabular CSV package (one file per table, children
pointing at their parents with `<parent>_id` columns). Import validates everything first,
then writes in one transaction: a file with one bad row imports nothing. Ids are the
HSDS ids (UUIDs), so re-importing updates rows instead of duplicating them.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from django.db import transaction
from django.utils.dateparse import parse_date, parse_datetime
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from careteam.validators import link_allowed, validate_link

from .models import (
    CapacityStatus,
    Location,
    Organization,
    Service,
    ServiceAtLocation,
    ServiceStatus,
    Taxonomy,
    TaxonomyTerm,
)

SCHEMA_DIR = Path(__file__).resolve().parent / "hsds_schema"
NAMESPACE = uuid.UUID("6f1c3f0e-4b7a-4d8e-9a51-2c8f3b0e7d10")  # ids of sub-records made on export

# ---------------------------------------------------------------------------
# The HSDS tables: CSV file, nesting key -> table, and the link column a child carries
# ---------------------------------------------------------------------------
CSV_FILES: dict[str, str] = {
    "organization": "organizations.csv",
    "service": "services.csv",
    "location": "locations.csv",
    "service_at_location": "service_at_location.csv",
    "taxonomy_term": "taxonomy_terms.csv",
    "taxonomy": "taxonomies.csv",
    "phone": "phones.csv",
    "contact": "contacts.csv",
    "schedule": "schedules.csv",
    "service_area": "service_areas.csv",
    "language": "languages.csv",
    "funding": "funding.csv",
    "cost_option": "cost_options.csv",
    "program": "programs.csv",
    "required_document": "required_documents.csv",
    "attribute": "attributes.csv",
    "metadata": "metadata.csv",
    "address": "addresses.csv",
    "accessibility": "accessibility.csv",
    "organization_identifier": "organization_identifiers.csv",
    "service_capacity": "service_capacity.csv",
}
CORE_TABLES = ("organization", "service", "location", "service_at_location")
# Files of the package that describe the data set rather than the catalog.
IGNORED_FILES = ("meta_table_descriptions.csv", "datapackage.json")

KEY_TABLE: dict[str, str] = {
    "phones": "phone",
    "contacts": "contact",
    "schedules": "schedule",
    "service_areas": "service_area",
    "service_at_locations": "service_at_location",
    "languages": "language",
    "organization": "organization",
    "funding": "funding",
    "cost_options": "cost_option",
    "program": "program",
    "programs": "program",
    "required_documents": "required_document",
    "attributes": "attribute",
    "metadata": "metadata",
    "taxonomy_term": "taxonomy_term",
    "taxonomy_detail": "taxonomy",
    "location": "location",
    "locations": "location",
    "addresses": "address",
    "accessibility": "accessibility",
    "organization_identifiers": "organization_identifier",
    "services": "service",
    "service": "service",
    "service_capacity": "service_capacity",
}

# Sub-record lists kept in `details`, per owner table: key -> link column in the child row.
CHILD_LISTS: dict[str, dict[str, str]] = {
    "organization": {
        "funding": "organization_id",
        "contacts": "organization_id",
        "phones": "organization_id",
        "programs": "organization_id",
        "organization_identifiers": "organization_id",
    },
    "service": {
        "phones": "service_id",
        "schedules": "service_id",
        "service_areas": "service_id",
        "languages": "service_id",
        "funding": "service_id",
        "cost_options": "service_id",
        "required_documents": "service_id",
        "contacts": "service_id",
        "service_capacity": "service_id",
    },
    "location": {
        "languages": "location_id",
        "addresses": "location_id",
        "contacts": "location_id",
        "accessibility": "location_id",
        "phones": "location_id",
        "schedules": "location_id",
    },
    "service_at_location": {
        "contacts": "service_at_location_id",
        "phones": "service_at_location_id",
        "schedules": "service_at_location_id",
    },
    "contact": {"phones": "contact_id"},
    "phone": {"languages": "phone_id"},
}
# Every object may carry attributes (link_id) and metadata (resource_id).
GENERIC_LISTS = {"attributes": "link_id", "metadata": "resource_id"}


def child_lists(table: str) -> dict[str, str]:
    return {**CHILD_LISTS.get(table, {}), **GENERIC_LISTS}


# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------
@cache
def compiled_schema(table: str) -> dict:
    with open(SCHEMA_DIR / f"{table}.json", encoding="utf-8") as fh:
        return json.load(fh)


@cache
def validator(table: str) -> jsonschema.protocols.Validator:
    """Organization, service and service_at_location use their compiled schemas; any
    other table the sub-schema nested in them (e.g. location from organization)."""
    schema = compiled_schema(table) if table in ("organization", "service", "service_at_location") else None
    if schema is None:
        table_fields()
        schema = _SUBSCHEMAS[table]
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


_SUBSCHEMAS: dict[str, dict] = {}


@cache
def file_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for one of the schema files of `hsds_schema/` (e.g. "taxonomy_term"),
    resolving its relative `$ref`s to the other files there."""

    def retrieve(uri: str) -> Resource:
        with open(SCHEMA_DIR / Path(uri).name, encoding="utf-8") as fh:
            return Resource.from_contents(json.load(fh), default_specification=DRAFT202012)

    schema = compiled_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=Registry(retrieve=retrieve))


@cache
def table_fields() -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
    """Scalar properties (name -> JSON type) and required names of every HSDS table,
    read from the compiled schemas so the CSV columns follow the standard's order."""
    out: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {}

    def walk(schema: dict, table: str) -> None:
        if table in out:
            return
        _SUBSCHEMAS[table] = schema
        props = schema.get("properties", {})
        scalars = {
            k: ("uuid" if v.get("format") == "uuid" else v.get("type", "string"))
            for k, v in props.items()
            if v.get("type") not in ("array", "object")
        }
        out[table] = (scalars, tuple(schema.get("required", ())))
        for key, sub in props.items():
            if key not in KEY_TABLE:
                continue
            item = sub.get("items", sub) if sub.get("type") == "array" else sub
            walk(item, KEY_TABLE[key])

    for table in ("service", "organization", "service_at_location"):
        walk(compiled_schema(table), table)
    walk(SERVICE_CAPACITY_SCHEMA, "service_capacity")
    return out


# HSDS 3.1's service_capacity (openreferral/specification#221), which 3.0 lacks: CareTeam
# serves and imports it (service_capacity_json), and the CSV package has its table.
SERVICE_CAPACITY_SCHEMA: dict = {
    "type": "object",
    # 3.1 also requires unit_id, available and updated; a status without a count has none
    "required": ["id", "service_id"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "service_id": {"type": "string", "format": "uuid"},
        "unit_id": {"type": "string", "format": "uuid"},
        "available": {"type": "number"},
        "maximum": {"type": "number"},
        "description": {"type": "string"},
        "updated": {"type": "string", "format": "date-time"},
        "unit": {"type": "object"},
    },
}


def csv_columns(table: str) -> list[str]:
    return list(table_fields()[table][0])


# ---------------------------------------------------------------------------
# Errors and results
# ---------------------------------------------------------------------------
@dataclass
class Problem:
    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


class HsdsImportError(Exception):
    """The file did not validate; nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems[:50]))


@dataclass
class ImportResult:
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    warnings: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        for table in (
            "organization",
            "service",
            "location",
            "service_at_location",
            "taxonomy",
            "taxonomy_term",
        ):
            c, u = self.created.get(table, 0), self.updated.get(table, 0)
            if c or u:
                parts.append(f"{table}: {c} created, {u} updated")
        return "; ".join(parts) or "nothing to import"


# ---------------------------------------------------------------------------
# Import: read and validate (no writes)
# ---------------------------------------------------------------------------
@dataclass
class _Item:
    """One object to import, with where it came from (for error messages)."""

    table: str
    obj: dict
    file: str
    line: int | None
    parent_org: str | None = None  # services nested in an organization
    parent_service: str | None = None  # service_at_locations nested in a service


def _json_items(text: str) -> list[tuple[Any, int]]:
    """Top-level objects of a JSON document with the line each starts on: a single
    object, an array, or an HSDS API page (`contents`)."""
    decoder = json.JSONDecoder()
    stripped = text.lstrip()
    offset = len(text) - len(stripped)
    if not stripped.startswith("["):
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get("contents"), list):
            return [(v, 0) for v in value["contents"]]
        return [(value, 1 + text.count("\n", 0, offset))]
    items, pos = [], offset + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        value, end = decoder.raw_decode(text, pos)
        items.append((value, 1 + text.count("\n", 0, pos)))
        pos = end
    return items


TERM_MARKS = ("taxonomy_detail", "term_uri", "parent_id", "taxonomy_id")
LOCATION_MARKS = ("location_type", "addresses", "latitude", "longitude", "transportation", "accessibility")


def guess_table(obj: dict) -> str:
    """The HSDS table an object belongs to, from its own keys: organization, service,
    service_at_location, taxonomy_term, taxonomy or location."""
    if any(k in obj for k in LOCATION_MARKS) and "status" not in obj:
        return "location"
    if any(k in obj for k in TERM_MARKS) or ("code" in obj and "taxonomy" in obj):
        return "taxonomy_term"
    if "version" in obj and not any(k in obj for k in ("status", "website", "email", "services")):
        return "taxonomy"
    if "status" in obj or "service_at_locations" in obj or "organization" in obj or "organization_id" in obj:
        return "service"
    if "location" in obj or "location_id" in obj or "service_id" in obj or "service" in obj:
        return "service_at_location"
    return "organization"


def _table_from_filename(name: str) -> str | None:
    """organizations.json, services.json, service_at_locations.json (as export_hsds writes),
    and the official examples' names (taxonomy.json, taxonomy_term_list.json, location.json)."""
    stem = name.lower()
    for prefix, table in (
        ("service_at_location", "service_at_location"),
        ("service", "service"),
        ("organization", "organization"),
        ("taxonomy_term", "taxonomy_term"),
        ("taxonomies", "taxonomy"),
        ("taxonomy", "taxonomy"),
        ("location", "location"),
    ):
        if stem.startswith(prefix):
            return table
    return None


def _schema_problems(table: str, obj: dict, file: str, line: int | None) -> list[Problem]:
    problems = []
    for error in sorted(validator(table).iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        problems.append(Problem(file, line, f"{table}{path}: {error.message}"))
        if len(problems) >= 20:
            break
    return problems


JSON_TABLES = ("organization", "service", "service_at_location", "taxonomy_term", "taxonomy")
LOCATION_REFUSED = (
    "a file of locations cannot be imported on its own: an HSDS location belongs to an "
    "organization or a service at a location. Import organizations.json (locations nested "
    "in their organization), service_at_locations.json or the CSV package instead."
)


def read_json(path: Path, table: str | None = None) -> tuple[list[_Item], list[Problem], list[Problem]]:
    """The objects of a JSON file, validated (problems), and the properties the schemas
    do not know (warnings, as the CSV import warns of unknown columns)."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
        raw = _json_items(text)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(name, None, f"cannot read the file: {exc}")], []
    except json.JSONDecodeError as exc:
        return [], [Problem(name, exc.lineno, f"not valid JSON: {exc.msg}")], []
    items, problems, warnings = [], [], []
    table = table or _table_from_filename(name)
    for obj, line in raw:
        if not isinstance(obj, dict):
            problems.append(Problem(name, line, "expected an HSDS object"))
            continue
        kind = table or guess_table(obj)
        if kind == "location":
            return [], [Problem(name, line, LOCATION_REFUSED)], []
        if kind not in JSON_TABLES:
            problems.append(Problem(name, line, f"{kind} objects cannot be imported"))
            continue
        found = _schema_problems(kind, obj, name, line)
        problems += found
        if not found:
            items.append(_Item(kind, obj, name, line))
            unknown = unknown_properties(kind, obj)
            if unknown:
                warnings.append(Problem(name, line, f"unknown fields ignored: {', '.join(sorted(unknown))}"))
    return items, problems, warnings


def unknown_properties(table: str, obj: dict, path: str = "") -> list[str]:
    """Properties of `obj` (and of its sub-records) that the HSDS schema of `table` does
    not define, as table.property paths (service.phones[0].fax)."""
    table_fields()
    top = ("organization", "service", "service_at_location")
    schema = compiled_schema(table) if table in top else _SUBSCHEMAS.get(table, {})
    known = set(schema.get("properties", {})) | set(EXTENSIONS.get(table, ()))
    path = path or table
    out = []
    for key, value in obj.items():
        if key not in known:
            out.append(f"{path}.{key}")
            continue
        child = KEY_TABLE.get(key)
        if child is None or child not in _SUBSCHEMAS or key in EXTENSIONS.get(table, ()):
            continue
        if isinstance(value, dict):
            out += unknown_properties(child, value, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out += unknown_properties(child, item, f"{path}.{key}[{i}]")
    return out


# Required columns a blank cell cannot satisfy (other required texts may be empty).
MUST_HAVE_VALUE = ("id", "name", "status", "number", "location_type")


def complete(table: str, obj: dict) -> dict:
    """Give a record made on export the (empty) texts its schema requires."""
    scalars, required = table_fields()[table]
    for column in required:
        if column not in obj and scalars.get(column) == "string":
            obj[column] = ""
    return obj


def _convert(value: str, json_type: str) -> Any:
    if json_type in ("number", "integer"):
        number = float(value)
        return int(number) if number.is_integer() else number
    if json_type == "boolean":
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(value)
    return value


def read_csv_package(folder: Path) -> tuple[list[_Item], list[Problem], list[Problem]]:
    """Read the tabular package; check every row (ids, types, required columns, links
    that must resolve) and assemble the nested HSDS objects."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    fields = table_fields()
    rows: dict[str, OrderedDict[str, dict]] = {t: OrderedDict() for t in CSV_FILES}
    lines: dict[tuple[str, str], int] = {}
    if not (folder / CSV_FILES["service"]).exists() and not (folder / CSV_FILES["organization"]).exists():
        return [], [Problem(folder.name, None, "no organizations.csv or services.csv in this folder")], []
    known = set(CSV_FILES.values()) | set(IGNORED_FILES)
    for extra in sorted(p.name for p in folder.glob("*.csv") if p.name not in known):
        warnings.append(Problem(extra, None, "not an HSDS table; ignored"))
    for table, filename in CSV_FILES.items():
        path = folder / filename
        if not path.exists():
            continue
        scalars, required = fields[table]
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                header = reader.fieldnames or []
                unknown = [f"{table}.{c}" for c in header if c not in scalars]
                if "id" not in header:
                    problems.append(Problem(filename, 1, "no id column"))
                    continue
                if unknown:
                    warnings.append(Problem(filename, 1, f"unknown fields ignored: {', '.join(unknown)}"))
                line = 1
                for raw in reader:
                    start = line + 1
                    line = reader.line_num
                    obj, row_problems = {}, []
                    for column, value in raw.items():
                        if column not in scalars or value is None or value == "":
                            continue
                        try:
                            obj[column] = _convert(csv_cell_restore(value), scalars[column])
                        except ValueError:
                            row_problems.append(f"{column} must be a {scalars[column]}, not {value!r}")
                    for column in required:
                        if column in obj:
                            continue
                        if column in MUST_HAVE_VALUE or scalars.get(column) not in ("string", None):
                            row_problems.append(f"{column} is required")
                        else:
                            obj[column] = ""  # a blank cell is the empty string the schema requires
                    for column, value in obj.items():
                        if scalars.get(column) == "uuid" and not _is_uuid(value):
                            row_problems.append(f"{column} {value!r} is not a UUID")
                    if table == "service" and obj.get("status") not in (None, *ServiceStatus.values):
                        row_problems.append(
                            f"status {obj['status']!r} is not one of {', '.join(ServiceStatus.values)}"
                        )
                    if obj.get("id") in rows[table]:
                        row_problems.append(f"id {obj['id']} appears twice")
                    problems += [Problem(filename, start, r) for r in row_problems]
                    if not row_problems:
                        rows[table][obj["id"]] = obj
                        lines[(table, obj["id"])] = start
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            problems.append(Problem(filename, None, f"cannot read the file: {exc}"))
    if problems:
        return [], problems, warnings

    # links that must resolve (in the package or already in the catalog)
    def exists(table: str, pk: str) -> bool:
        if pk in rows[table]:
            return True
        model = {"organization": Organization, "service": Service, "location": Location}[table]
        return model.objects.filter(pk=pk).exists()

    for sid, svc in rows["service"].items():
        if not svc.get("organization_id") or not exists("organization", svc["organization_id"]):
            problems.append(
                Problem(
                    CSV_FILES["service"],
                    lines[("service", sid)],
                    f"organization_id {svc.get('organization_id', '(empty)')} matches no organization",
                )
            )
    for sal_id, sal in rows["service_at_location"].items():
        for link, table in (("service_id", "service"), ("location_id", "location")):
            if not sal.get(link) or not exists(table, sal[link]):
                problems.append(
                    Problem(
                        CSV_FILES["service_at_location"],
                        lines[("service_at_location", sal_id)],
                        f"{link} {sal.get(link, '(empty)')} matches no {table}",
                    )
                )
    if problems:
        return [], problems, warnings

    nested = _nest(rows, warnings, lines)
    items = []
    for table in ("organization", "location", "service", "service_at_location"):
        for pk, obj in nested[table].items():
            line = lines[(table, pk)]
            schema_table = table
            found = _schema_problems(schema_table, obj, CSV_FILES[table], line)
            problems += found
            items.append(_Item(table, obj, CSV_FILES[table], line))
    taxonomies = [
        _Item("taxonomy", obj, CSV_FILES["taxonomy"], lines[("taxonomy", pk)])
        for pk, obj in rows["taxonomy"].items()
    ]
    terms = [
        _Item("taxonomy_term", obj, CSV_FILES["taxonomy_term"], lines[("taxonomy_term", pk)])
        for pk, obj in nested["taxonomy_term"].items()
    ]
    return taxonomies + terms + items, problems, warnings


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _nest(rows: dict[str, OrderedDict[str, dict]], warnings: list[Problem], lines) -> dict[str, dict]:
    """Turn the flat tables back into nested HSDS objects (children under each parent
    their link columns name); links to nothing are reported and dropped."""
    by_link: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    owners_used: set[tuple[str, str]] = set()
    for table, table_rows in rows.items():
        for obj in table_rows.values():
            for column, value in obj.items():
                if column.endswith("_id") or column in ("link_id", "resource_id"):
                    by_link[(table, column, value)].append(obj)

    def build(table: str, obj: dict, depth: int = 0) -> dict:
        out = {k: v for k, v in obj.items() if not _is_link(table, k)}
        if depth > 6:
            return out
        for key, link in child_lists(table).items():
            child_table = KEY_TABLE[key]
            children = by_link.get((child_table, link, obj["id"]), [])
            if children:
                out[key] = [build(child_table, c, depth + 1) for c in children]
                owners_used.update((child_table, c["id"]) for c in children)
        if table == "service" and obj.get("program_id") in rows["program"]:
            out["program"] = build("program", rows["program"][obj["program_id"]], depth + 1)
        if table == "attribute" and obj.get("taxonomy_term_id") in rows["taxonomy_term"]:
            out["taxonomy_term"] = build(
                "taxonomy_term", rows["taxonomy_term"][obj["taxonomy_term_id"]], depth + 1
            )
        if table == "taxonomy_term" and obj.get("taxonomy_id") in rows["taxonomy"]:
            out["taxonomy_detail"] = dict(rows["taxonomy"][obj["taxonomy_id"]])
        return out

    nested: dict[str, dict] = {}
    for table in (*CORE_TABLES, "taxonomy_term"):
        nested[table] = OrderedDict((pk, build(table, obj)) for pk, obj in rows[table].items())
    for table in CSV_FILES:
        if table in CORE_TABLES or table in ("taxonomy_term", "taxonomy", "program"):
            continue
        for pk, _obj in rows[table].items():
            if (table, pk) not in owners_used:
                warnings.append(
                    Problem(
                        CSV_FILES[table], None, f"{table} {pk} belongs to nothing in the catalog; skipped"
                    )
                )
    return nested


def _is_link(table: str, column: str) -> bool:
    """Link columns are implied by nesting (kept on core rows, where they are columns)."""
    if table in ("service", "location", "service_at_location", "taxonomy_term", "organization"):
        return False
    if table == "attribute":
        return column == "link_id"
    return column.endswith("_id") or column == "resource_id"


# ---------------------------------------------------------------------------
# Import: write
# ---------------------------------------------------------------------------
def import_path(path: str | Path, *, table: str | None = None) -> ImportResult:
    """Import a JSON file (organizations, services or services-at-location) or a folder
    holding the CSV package. Raises HsdsImportError, having written nothing, if any row
    is invalid."""
    path = Path(path)
    warnings: list[Problem] = []
    if path.is_dir():
        items, problems, warnings = read_csv_package(path)
    elif path.suffix.lower() == ".json":
        items, problems, warnings = read_json(path, table)
    elif path.suffix.lower() == ".csv":
        items, problems, warnings = read_csv_package(path.parent)
    else:
        raise HsdsImportError(
            [Problem(path.name, None, "expected a .json file or a folder with the CSV package")]
        )
    if problems:
        raise HsdsImportError(problems)
    return import_items(items, warnings=warnings)


def import_json_text(text: str, *, filename: str = "upload.json", table: str | None = None) -> ImportResult:
    """Import an uploaded JSON document (the admin's import form)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(filename).name or "upload.json")
        path.write_text(text, encoding="utf-8")
        return import_path(path, table=table)


@transaction.atomic
def import_items(items: Iterable[_Item], *, warnings: list[Problem] | None = None) -> ImportResult:
    result = ImportResult(warnings=list(warnings or []))
    writer = _Writer(result)
    for item in items:
        writer.write(item)
    writer.check_links()
    if writer.problems:
        transaction.set_rollback(True)
        raise HsdsImportError(writer.problems)
    return result


ORG_FIELDS = [
    "name",
    "alternate_name",
    "description",
    "email",
    "website",
    "tax_status",
    "tax_id",
    "year_incorporated",
    "legal_status",
    "logo",
    "uri",
    "parent_organization_id",
]
SERVICE_FIELDS = [
    "name",
    "alternate_name",
    "description",
    "url",
    "email",
    "status",
    "interpretation_services",
    "application_process",
    "fees_description",
    "wait_time",
    "fees",
    "accreditations",
    "eligibility_description",
    "minimum_age",
    "maximum_age",
    "assured_date",
    "assurer_email",
    "licenses",
    "alert",
    "last_modified",
    "program_id",
]
LOCATION_FIELDS = [
    "location_type",
    "url",
    "name",
    "alternate_name",
    "description",
    "transportation",
    "latitude",
    "longitude",
    "external_identifier",
    "external_identifier_type",
]
TERM_FIELDS = ["code", "name", "description", "taxonomy", "language", "term_uri"]
TAXONOMY_FIELDS = ["name", "description", "uri", "version"]


class _Writer:
    def __init__(self, result: ImportResult):
        self.result = result
        self.problems: list[Problem] = []
        self.pending_links: list[tuple[_Item, str, str]] = []

    def count(self, table: str, created: bool) -> None:
        (self.result.created if created else self.result.updated)[table] += 1

    def write(self, item: _Item) -> None:
        handler = getattr(self, f"_{item.table}")
        handler(item.obj, item)

    def check_links(self) -> None:
        pass

    def _fail(self, item: _Item, reason: str) -> None:
        self.problems.append(Problem(item.file, item.line, reason))

    # -- columns -----------------------------------------------------------------
    def _columns(self, model, obj: dict, names: Iterable[str], item: _Item) -> dict:
        values = {}
        for name in names:
            value = obj.get(name)
            model_field = model._meta.get_field(name)
            if value is None:
                values[name] = (
                    None if model_field.null else ("" if _is_text(model_field) else model_field.default)
                )
                continue
            if _is_text(model_field):
                value = str(value)
                if model_field.max_length and len(value) > model_field.max_length:
                    self._fail(item, f"{name} is longer than {model_field.max_length} characters")
                if validate_link in model_field.validators and not link_allowed(value):
                    self._fail(item, f"{name} {value[:80]!r} is not an http(s), mailto or tel link")
                    value = ""
            elif model_field.get_internal_type() in ("PositiveSmallIntegerField", "PositiveIntegerField"):
                if not isinstance(value, int | float) or value < 0 or int(value) != value or value > 32767:
                    self._fail(item, f"{name} must be a whole number from 0, not {value!r}")
                    value = None
                else:
                    value = int(value)
            elif model_field.get_internal_type() == "DecimalField":
                value = decimal.Decimal(str(value)).quantize(decimal.Decimal("0.000001"))
                if abs(value) >= 1000:
                    self._fail(item, f"{name} {obj.get(name)} is out of range")
                    value = None
            elif model_field.get_internal_type() == "DateTimeField":
                parsed = parse_datetime(str(value))
                if parsed is None:
                    self._fail(item, f"{name} {value!r} is not a date-time")
                value = parsed
            elif model_field.get_internal_type() == "UUIDField" and not _is_uuid(value):
                self._fail(item, f"{name} {value!r} is not a UUID")
                value = None
            values[name] = value
        return values

    def _pk(self, obj: dict, item: _Item) -> str | None:
        if not _is_uuid(obj.get("id")):
            self._fail(item, f"id {obj.get('id')!r} is not a UUID")
            return None
        return str(obj["id"])

    # -- tables ------------------------------------------------------------------
    def _taxonomy(self, obj: dict, item: _Item) -> Taxonomy | None:
        pk = self._pk(obj, item)
        if pk is None:
            return None
        values = self._columns(Taxonomy, obj, TAXONOMY_FIELDS, item)
        values["details"] = {k: obj[k] for k in ("metadata",) if k in obj}
        taxonomy, created = Taxonomy.objects.update_or_create(pk=pk, defaults=values)
        self.count("taxonomy", created)
        return taxonomy

    def _taxonomy_term(self, obj: dict, item: _Item) -> TaxonomyTerm | None:
        pk = self._pk(obj, item)
        if pk is None:
            return None
        if isinstance(obj.get("taxonomy_detail"), dict):
            self._taxonomy(obj["taxonomy_detail"], item)
        values = self._columns(TaxonomyTerm, obj, TERM_FIELDS, item)
        values["taxonomy"] = values["taxonomy"] or ""
        taxonomy_id = obj.get("taxonomy_id") or (obj.get("taxonomy_detail") or {}).get("id")
        values["taxonomy_id_ref"] = taxonomy_id if _is_uuid(taxonomy_id) else None
        parent_id = obj.get("parent_id")
        values["parent_id"] = None
        if parent_id and parent_id != pk:
            if TaxonomyTerm.objects.filter(pk=parent_id).exists():
                values["parent_id"] = parent_id
            else:
                self.result.warnings.append(
                    Problem(
                        item.file,
                        item.line,
                        f"taxonomy term {pk}: parent_id {parent_id} matches no term; left empty",
                    )
                )
        values["details"] = {k: obj[k] for k in ("taxonomy_detail", "metadata") if k in obj}
        if values["code"]:
            clash = TaxonomyTerm.objects.filter(code=values["code"]).exclude(pk=pk).first()
            if clash is not None:
                self._fail(item, f"taxonomy term code {values['code']!r} is already used by term {clash.pk}")
                return None
        term, created = TaxonomyTerm.objects.update_or_create(pk=pk, defaults=values)
        self.count("taxonomy_term", created)
        return term

    def _organization(self, obj: dict, item: _Item) -> Organization | None:
        pk = self._pk(obj, item)
        if pk is None:
            return None
        values = self._columns(Organization, obj, ORG_FIELDS, item)
        values["details"] = _details(obj, "organization")
        values["phone"] = _first_phone(obj)
        org, created = Organization.objects.update_or_create(pk=pk, defaults=values)
        self.count("organization", created)
        for location in obj.get("locations", []):
            self._location(location, item, organization_id=pk)
        for service in obj.get("services", []):
            self._service(service, item, organization_id=pk)
        return org

    def _location(self, obj: dict, item: _Item, organization_id: str | None = None) -> Location | None:
        pk = self._pk(obj, item)
        if pk is None:
            return None
        values = self._columns(Location, obj, LOCATION_FIELDS, item)
        org_id = organization_id or obj.get("organization_id")
        if org_id and not Organization.objects.filter(pk=org_id).exists():
            self.result.warnings.append(
                Problem(
                    item.file,
                    item.line,
                    f"location {pk}: organization_id {org_id} matches no organization; left empty",
                )
            )
            org_id = None
        if org_id:
            values["organization_id"] = org_id  # a location nested in a service keeps its organization
        values["details"] = _details(obj, "location")
        address = next(iter(obj.get("addresses") or []), {})
        for name in ("address_1", "city", "state_province", "postal_code"):
            values[name] = str(address.get(name, ""))[: Location._meta.get_field(name).max_length]
        country = str(address.get("country", "") or "US")
        values["country"] = country[:2].upper()
        location, created = Location.objects.update_or_create(pk=pk, defaults=values)
        self.count("location", created)
        return location

    def _service(self, obj: dict, item: _Item, organization_id: str | None = None) -> Service | None:
        pk = self._pk(obj, item)
        if pk is None:
            return None
        org_obj = obj.get("organization")
        if isinstance(org_obj, dict):
            self._organization(org_obj, item)
        org_id = organization_id or (org_obj or {}).get("id") or obj.get("organization_id")
        if not org_id or not Organization.objects.filter(pk=org_id).exists():
            self._fail(
                item, f"service {pk}: organization {org_id or '(none)'} is not in the file or the catalog"
            )
            return None
        values = self._columns(Service, obj, SERVICE_FIELDS, item)
        values["organization_id"] = org_id
        if obj.get("program") and not values.get("program_id"):
            values["program_id"] = obj["program"].get("id")
        low, high = values["minimum_age"], values["maximum_age"]
        if low is not None and high is not None and high < low:
            self._fail(item, f"service {pk}: maximum_age is below minimum_age")
            return None
        values["details"] = _details(obj, "service")
        values.update(_derived_service_columns(obj))
        values.update(capacity_columns(obj.get("service_capacity")))
        service, created = Service.objects.update_or_create(pk=pk, defaults=values)
        self.count("service", created)
        terms = []
        for attribute in obj.get("attributes", []):
            term_obj = attribute.get("taxonomy_term")
            term = None
            if isinstance(term_obj, dict):
                term = self._taxonomy_term(term_obj, item)
            elif attribute.get("taxonomy_term_id"):
                term = TaxonomyTerm.objects.filter(pk=attribute["taxonomy_term_id"]).first()
            if term is not None:
                terms.append(term)
        service.categories.set(terms)
        for sal in obj.get("service_at_locations", []):
            self._service_at_location(sal, item, service_id=pk)
        return service

    def _service_at_location(
        self, obj: dict, item: _Item, service_id: str | None = None
    ) -> ServiceAtLocation | None:
        pk = self._pk(obj, item)
        if pk is None:
            return None
        if isinstance(obj.get("service"), dict) and service_id is None:
            self._service(obj["service"], item)
        service_id = service_id or (obj.get("service") or {}).get("id") or obj.get("service_id")
        location_obj = obj.get("location")
        if isinstance(location_obj, dict):
            self._location(location_obj, item)
        location_id = (location_obj or {}).get("id") or obj.get("location_id")
        if not service_id or not Service.objects.filter(pk=service_id).exists():
            self._fail(
                item,
                f"service_at_location {pk}: service {service_id or '(none)'} is not in the file or the catalog",
            )
            return None
        if not location_id or not Location.objects.filter(pk=location_id).exists():
            self._fail(
                item,
                f"service_at_location {pk}: location {location_id or '(none)'} is not in the file or the catalog",
            )
            return None
        clash = (
            ServiceAtLocation.objects.filter(service_id=service_id, location_id=location_id)
            .exclude(pk=pk)
            .first()
        )
        if clash is not None:
            self._fail(
                item, f"service_at_location {pk}: service and location are already linked as {clash.pk}"
            )
            return None
        sal, created = ServiceAtLocation.objects.update_or_create(
            pk=pk,
            defaults={
                "service_id": service_id,
                "location_id": location_id,
                "description": str(obj.get("description", "")),
                "details": _details(obj, "service_at_location"),
            },
        )
        self.count("service_at_location", created)
        return sal


def _is_text(model_field) -> bool:
    return model_field.get_internal_type() in (
        "CharField",
        "TextField",
        "EmailField",
        "URLField",
        "SlugField",
    )


def _details(obj: dict, table: str) -> dict:
    keys = list(child_lists(table))
    if table == "service":
        keys.append("program")
        keys.remove("service_capacity")  # kept in the capacity columns
    return {k: obj[k] for k in keys if k in obj}


def _first_phone(obj: dict) -> str:
    for phone in obj.get("phones") or []:
        if phone.get("number"):
            return str(phone["number"])[:40]
    return ""


def _derived_service_columns(obj: dict) -> dict:
    """The search columns, from the HSDS sub-records."""
    languages = []
    for language in obj.get("languages") or []:
        code = str(language.get("code") or language.get("name") or "").strip().lower()[:20]
        if code and code not in languages:
            languages.append(code)
    costs = obj.get("cost_options") or []
    fees = f"{obj.get('fees_description', '')} {obj.get('fees', '')}".lower()
    is_free = any(c.get("amount") == 0 for c in costs) or (
        "free" in fees.split() or fees.strip().startswith("free")
    )
    areas = [
        " ".join(str(a.get(k, "")) for k in ("name", "description") if a.get(k))
        for a in obj.get("service_areas") or []
    ]
    assured = parse_date(str(obj.get("assured_date", ""))[:10]) if obj.get("assured_date") else None
    return {
        "languages": sorted(languages),
        "is_free": is_free,
        "service_area": "\n".join(a for a in areas if a),
        "phone": _first_phone(obj),
        "last_verified": assured,
    }


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def _synth_id(*parts: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def _clean(values: dict) -> dict:
    """HSDS leaves out what is unknown: drop empty values."""
    out = {}
    for k, v in values.items():
        if v is None or v == "" or v == []:
            continue
        if isinstance(v, decimal.Decimal):
            v = float(v)
        elif isinstance(v, uuid.UUID):
            v = str(v)
        elif isinstance(v, (dt.datetime, dt.date)):
            v = v.isoformat()
        out[k] = v
    return out


def _sorted(value: Any) -> Any:
    """Lists of sub-records in id order, at every depth, so exports compare equal."""
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted(v) for v in value]
        if all(isinstance(v, dict) and "id" in v for v in items):
            items.sort(key=lambda v: str(v["id"]))
        return items
    return value


def term_json(term: TaxonomyTerm) -> dict:
    out = _clean(
        {
            "id": term.pk,
            "code": term.code,
            "name": term.name,
            "taxonomy": term.taxonomy,
            "language": term.language,
            "taxonomy_id": term.taxonomy_id_ref,
            "term_uri": term.term_uri,
            "parent_id": term.parent_id,
        }
    )
    out["description"] = term.description
    out.update(term.details or {})
    return out


def organization_json(org: Organization, locations: Iterable[Location] = ()) -> dict:
    out = _clean({"id": org.pk, **{f: getattr(org, f) for f in ORG_FIELDS}})
    out["description"] = org.description
    details = dict(org.details or {})
    if org.phone and not details.get("phones"):
        details["phones"] = [{"id": _synth_id(org.pk, "phone"), "number": org.phone}]
    out.update(details)
    locs = [location_json(loc) for loc in locations]
    if locs:
        out["locations"] = locs
    return _sorted(out)


def location_json(location: Location) -> dict:
    out = _clean({"id": location.pk, "organization_id": location.organization_id})
    out.update(_clean({f: getattr(location, f) for f in LOCATION_FIELDS}))
    out["location_type"] = location.location_type
    details = dict(location.details or {})
    if location.address_1 and not details.get("addresses"):
        details["addresses"] = [
            complete(
                "address",
                _clean(
                    {
                        "id": _synth_id(location.pk, "address"),
                        "address_1": location.address_1,
                        "city": location.city,
                        "state_province": location.state_province,
                        "postal_code": location.postal_code,
                        "country": location.country,
                        "address_type": "physical",
                    }
                ),
            )
        ]
    out.update(details)
    return out


def service_at_location_json(sal: ServiceAtLocation, *, with_location: bool = True) -> dict:
    out = _clean(
        {
            "id": sal.pk,
            "service_id": sal.service_id,
            "location_id": sal.location_id,
            "description": sal.description,
        }
    )
    out.update(sal.details or {})
    if with_location:
        out["location"] = location_json(sal.location)
    return _sorted(out)


def service_json(service: Service, *, with_locations: bool = True, with_organization: bool = False) -> dict:
    """One HSDS service object; the search columns become sub-records when an
    administrator set them without one. One mapping for the export, the API and
    (inverted) the import."""
    out = _clean({"id": service.pk, "organization_id": service.organization_id})
    columns = {f: getattr(service, f) for f in SERVICE_FIELDS}
    if not columns["assured_date"] and service.last_verified:
        columns["assured_date"] = service.last_verified.isoformat()
    out.update(_clean(columns))
    out["status"] = service.status
    details = dict(service.details or {})
    # languages column -> language sub-records
    langs = [lang for lang in details.get("languages", []) if _lang_code(lang) in service.languages]
    have = {_lang_code(lang) for lang in langs}
    langs += [
        {"id": _synth_id(service.pk, "language", code), "code": code}
        for code in service.languages
        if code not in have
    ]
    details["languages"] = langs
    # is_free -> a free cost option
    derived = _derived_service_columns({**out, **details})
    if service.is_free and not derived["is_free"]:
        details["cost_options"] = [
            *details.get("cost_options", []),
            {"id": _synth_id(service.pk, "cost"), "option": "Free", "amount": 0},
        ]
    if service.service_area and service.service_area != derived["service_area"]:
        details["service_areas"] = [
            {
                "id": _synth_id(service.pk, "area"),
                "name": service.service_area.splitlines()[0][:250],
                "description": service.service_area,
            }
        ]
    if service.hours_description and not details.get("schedules"):
        # hours typed in (or published from a proposed change) as a schedule's description
        details["schedules"] = [
            {"id": _synth_id(service.pk, "hours"), "description": service.hours_description}
        ]
    if service.phone and not details.get("phones"):
        details["phones"] = [{"id": _synth_id(service.pk, "phone"), "number": service.phone}]
    # categories -> attributes
    categories = {str(t.pk): t for t in service.categories.all()}
    attributes = [
        a
        for a in details.get("attributes", [])
        if str(a.get("taxonomy_term_id") or (a.get("taxonomy_term") or {}).get("id") or "") in categories
        or not (a.get("taxonomy_term_id") or a.get("taxonomy_term"))
    ]
    linked = {str(a.get("taxonomy_term_id") or (a.get("taxonomy_term") or {}).get("id")) for a in attributes}
    attributes += [
        {
            "id": _synth_id(service.pk, "category", pk),
            "link_entity": "service",
            "link_type": "category",
            "taxonomy_term_id": pk,
        }
        for pk in categories
        if pk not in linked
    ]
    for attribute in attributes:
        term_id = str(
            attribute.get("taxonomy_term_id") or (attribute.get("taxonomy_term") or {}).get("id") or ""
        )
        if term_id in categories:
            attribute["taxonomy_term_id"] = term_id
            attribute["taxonomy_term"] = term_json(categories[term_id])
    details["attributes"] = attributes
    out.update({k: v for k, v in details.items() if v not in ([], None)})
    capacity = service_capacity_json(service)
    if capacity:
        out["service_capacity"] = capacity
    if with_locations:
        sals = [service_at_location_json(sal) for sal in service.service_at_locations.all()]
        if sals:
            out["service_at_locations"] = sals
    if with_organization:
        out["organization"] = organization_json(service.organization)
    return _sorted(out)


CAPACITY_UNIT = {"id": str(uuid.uuid5(NAMESPACE, "unit/places")), "name": "places", "scheme": "careteam"}


def service_capacity_json(service: Service) -> list[dict]:
    """The capacity as HSDS 3.1 `service_capacity` (one record; HSDS 3.0 has no such
    table and its schemas allow the extra property). 3.1 counts places; CareTeam keeps a
    status, carried as the record's description ("full", or "waitlist: about 3 weeks")."""
    if not service.capacity_status:
        return []
    available = service.capacity_available
    if available is None and service.capacity_status == CapacityStatus.FULL:
        available = 0
    description = service.capacity_status + (f": {service.capacity_note}" if service.capacity_note else "")
    return [
        _clean(
            {
                "id": _synth_id(service.pk, "capacity"),
                "service_id": service.pk,
                "unit_id": CAPACITY_UNIT["id"],
                "unit": dict(CAPACITY_UNIT),
                "available": available,
                "maximum": service.capacity_maximum,
                "description": description,
                "updated": service.capacity_updated_at,
            }
        )
    ]


def capacity_columns(records: list[dict] | None) -> dict:
    """The capacity columns from `service_capacity` records (the inverse of
    service_capacity_json); no record leaves the capacity unknown."""
    record = next(iter(records or []), None)
    if not isinstance(record, dict):
        return {
            "capacity_status": "",
            "capacity_note": "",
            "capacity_available": None,
            "capacity_maximum": None,
            "capacity_updated_at": None,
        }
    status, _, note = str(record.get("description") or "").partition(":")
    status = status.strip().lower()
    available = record.get("available")
    if status not in CapacityStatus.values:
        status = CapacityStatus.FULL if available == 0 else CapacityStatus.AVAILABLE
    count = lambda v: int(v) if isinstance(v, int | float) and 0 <= v < 2**31 else None  # noqa: E731
    return {
        "capacity_status": status,
        "capacity_note": note.strip()[:250],
        "capacity_available": count(available),
        "capacity_maximum": count(record.get("maximum")),
        "capacity_updated_at": parse_datetime(str(record.get("updated") or "")),
    }


def taxonomy_json(taxonomy: Taxonomy) -> dict:
    out = _clean({"id": taxonomy.pk, "name": taxonomy.name, "uri": taxonomy.uri, "version": taxonomy.version})
    out["description"] = taxonomy.description
    out.update(taxonomy.details or {})
    return out


def one_to_one(table: str, obj: dict) -> dict:
    """The object's own fields only (the HSDS API's list shape: no sub-record arrays)."""
    scalars = table_fields()[table][0]
    return {k: v for k, v in obj.items() if k in scalars or k in EXTENSIONS.get(table, ())}


# Properties CareTeam adds to HSDS 3.0 objects (HSDS 3.1 names), known to the import.
EXTENSIONS: dict[str, tuple[str, ...]] = {"service": ("service_capacity",)}


def _lang_code(language: dict) -> str:
    return str(language.get("code") or language.get("name") or "").strip().lower()[:20]


def catalog_querysets(services=None):
    services = (
        (services if services is not None else Service.objects.all())
        .select_related("organization")
        .prefetch_related("categories", "service_at_locations__location")
        .order_by("id")
    )
    service_ids = services.values("pk")
    org_ids = services.values("organization_id")
    organizations = Organization.objects.filter(pk__in=org_ids).prefetch_related("locations").order_by("id")
    sals = (
        ServiceAtLocation.objects.filter(service_id__in=service_ids).select_related("location").order_by("id")
    )
    return organizations, services, sals


def export_json(services=None) -> dict[str, list[dict]]:
    """The HSDS JSON documents (arrays), for all services or a chosen queryset, with the
    catalog's taxonomies and terms (the CSV package has the same tables)."""
    organizations, services, sals = catalog_querysets(services)
    return {
        "taxonomies.json": [taxonomy_json(t) for t in Taxonomy.objects.order_by("id")],
        "taxonomy_terms.json": [term_json(t) for t in TaxonomyTerm.objects.order_by("id")],
        "organizations.json": [
            organization_json(o, sorted(o.locations.all(), key=lambda loc: str(loc.pk)))
            for o in organizations
        ],
        "services.json": [service_json(s) for s in services],
        "service_at_locations.json": [service_at_location_json(sal) for sal in sals],
    }


def flatten(documents: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The CSV package's tables from the JSON documents: every nested sub-record becomes
    a row with its parent's link column; a record reachable from several parents
    (the same phone under a service and its location) is one row with every link."""
    tables: dict[str, OrderedDict[str, dict]] = {t: OrderedDict() for t in CSV_FILES}

    def add(table: str, obj: dict, links: dict) -> None:
        scalars = table_fields()[table][0]
        row = tables[table].setdefault(str(obj["id"]), {})
        for key, value in obj.items():
            if key in scalars and value not in (None, ""):
                row.setdefault(key, value)
        for key, value in links.items():
            if value:
                row[key] = value
        for key, link in child_lists(table).items():
            for child in obj.get(key) or []:
                add(KEY_TABLE[key], child, {link: obj["id"]})
        if table == "service" and isinstance(obj.get("program"), dict):
            program = obj["program"]
            add("program", program, {"organization_id": obj.get("organization_id")})
        if table == "attribute" and isinstance(obj.get("taxonomy_term"), dict):
            add("taxonomy_term", obj["taxonomy_term"], {})
        if table == "taxonomy_term" and isinstance(obj.get("taxonomy_detail"), dict):
            add("taxonomy", obj["taxonomy_detail"], {})
            row["taxonomy_id"] = obj["taxonomy_detail"]["id"]
        if table == "organization":
            for location in obj.get("locations") or []:
                add("location", location, {"organization_id": obj["id"]})
        if table == "service":
            for sal in obj.get("service_at_locations") or []:
                add("service_at_location", sal, {"service_id": obj["id"]})
        if table == "service_at_location" and isinstance(obj.get("location"), dict):
            add("location", obj["location"], {})
            row["location_id"] = obj["location"]["id"]

    for org in documents.get("organizations.json", []):
        add("organization", org, {})
    for service in documents.get("services.json", []):
        add("service", service, {})
    for taxonomy in documents.get("taxonomies.json", []):
        add("taxonomy", taxonomy, {})
    for term in documents.get("taxonomy_terms.json", []):
        add("taxonomy_term", term, {})
    return {t: list(rows.values()) for t, rows in tables.items()}


def write_export(folder: str | Path, services=None) -> dict[str, int]:
    """Write organizations.json, services.json, service_at_locations.json and the CSV
    package into `folder`; return how many objects each JSON document holds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    documents = export_json(services)
    for name, objects in documents.items():
        (folder / name).write_text(json.dumps(objects, indent=2, ensure_ascii=False), encoding="utf-8")
    for table, rows in flatten(documents).items():
        (folder / CSV_FILES[table]).write_text(rows_to_csv(table, rows), encoding="utf-8")
    (folder / "datapackage.json").write_text(json.dumps(datapackage(), indent=2), encoding="utf-8")
    return {name: len(objects) for name, objects in documents.items()}


CSV_TYPES = {
    "uuid": "string",
    "string": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
}


def datapackage() -> dict:
    """The package's descriptor (Frictionless tabular data package), as HSDS ships it."""
    return {
        "name": "hsds-catalog",
        "profile": "tabular-data-package",
        "resources": [
            {
                "name": table,
                "path": filename,
                "profile": "tabular-data-resource",
                "schema": {
                    "fields": [
                        {"name": column, "type": CSV_TYPES.get(kind, "string")}
                        | ({"format": "uuid"} if kind == "uuid" else {})
                        for column, kind in table_fields()[table][0].items()
                    ],
                    "primaryKey": "id",
                },
            }
            for table, filename in CSV_FILES.items()
        ],
    }


# A text cell starting with one of these is a formula to a spreadsheet (CSV injection):
# exported with a leading apostrophe, which the import takes off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_cell_restore(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


def rows_to_csv(table: str, rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(table), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def export_zip(services=None) -> bytes:
    """The export as one zip (the admin's download)."""
    import tempfile
    import zipfile

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        write_export(tmp, services)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(tmp).iterdir()):
                archive.write(path, f"hsds/{path.name}")
    return buffer.getvalue()
