"""A small US Core checker over a StructureDefinition's differential (no network): the
elements a profile requires (`min`), the slices it fixes by pattern, the resource types
its references may name, and which must-support elements a resource leaves out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SHARED = Path("/work/shared/fhir/us-core/6.1.0")
NARRATIVE_STATUS = {"generated", "additional"}  # us-core-narrative-status


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    missing_must_support: list[str] = field(default_factory=list)


def load(name: str) -> dict:
    return json.loads((SHARED / f"StructureDefinition-{name}.json").read_text())


def _values(nodes: list, step: str) -> list:
    """The values of one path step below each of `nodes` (choice elements `x[x]` match
    any `xType` key; lists are flattened)."""
    out = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        if step.endswith("[x]"):
            stem = step[:-3]
            keys = [k for k in node if k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper()]
        else:
            keys = [step] if step in node else []
        for key in keys:
            value = node[key]
            out.extend(value if isinstance(value, list) else [value])
    return out


def _matches(value, pattern) -> bool:
    """FHIR pattern matching: every element of the pattern is in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_matches(v, p) for v in value) for p in pattern)
    return value == pattern


def check(resource: dict, profile: dict) -> Report:
    report = Report()
    kind = profile["type"]
    if resource.get("resourceType") != kind:
        report.errors.append(f"resourceType is not {kind}")
        return report
    if profile["url"] not in (resource.get("meta") or {}).get("profile", []):
        report.errors.append(f"meta.profile does not name {profile['url']}")
    for element in profile["differential"]["element"]:
        path = element["path"].split(".")[1:]
        if not path:
            continue
        parents = [resource]
        for step in path[:-1]:
            parents = _values(parents, step)
        where = element["id"]
        for parent in parents:
            values = _values([parent], path[-1])
            pattern = next((v for k, v in element.items() if k.startswith("pattern")), None)
            if element.get("sliceName") and pattern is not None:
                values = [v for v in values if _matches(v, pattern)]
            if len(values) < int(element.get("min", 0)):
                report.errors.append(f"{where}: at least {element['min']} required, {len(values)} present")
            if element.get("max") not in (None, "*") and len(values) > int(element["max"]):
                report.errors.append(f"{where}: at most {element['max']} allowed")
            targets = [p for t in element.get("type", []) for p in t.get("targetProfile", [])]
            kinds = {_kind_of(p) for p in targets}
            for value in values:
                ref = value.get("reference", "") if isinstance(value, dict) else ""
                if targets and ref and ref.split("/")[0] not in kinds:
                    report.errors.append(f"{where}: {ref} is none of {sorted(kinds)}")
            if element["path"].endswith("text.status"):
                report.errors.extend(
                    f"{where}: '{v}' is not generated/additional" for v in values if v not in NARRATIVE_STATUS
                )
        if element.get("mustSupport") and not any(_values([p], path[-1]) for p in parents):
            report.missing_must_support.append(where)
    return report


def _kind_of(profile_url: str) -> str:
    names = {
        "us-core-patient": "Patient",
        "us-core-practitioner": "Practitioner",
        "us-core-practitionerrole": "PractitionerRole",
        "us-core-organization": "Organization",
        "us-core-careteam": "CareTeam",
        "us-core-relatedperson": "RelatedPerson",
    }
    return names.get(profile_url.rsplit("/", 1)[-1], profile_url.rsplit("/", 1)[-1])
