"""FHIR R4 mapping of transitions (Encounter) and medication list lines
(MedicationStatement), the parsing of a received Encounter, and the entries
`Patient/$everything` adds for them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_date, parse_datetime

from careteam.api.fhir import SYSTEM_BASE, _drop_empty, patient_ref
from careteam.permissions import PatientAccess

from .models import EncounterStatus, MedicationLine, MedicationSource, Transition, TransitionKind

ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISPOSITION_SYSTEM = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TRANSITION_KIND_SYSTEM = f"{SYSTEM_BASE}/CodeSystem/transition-kind"
MEDICATION_SOURCE_SYSTEM = f"{SYSTEM_BASE}/CodeSystem/medication-source"
ENCOUNTER_CLASSES = {
    "IMP": "inpatient encounter",
    "EMER": "emergency",
    "ACUTE": "inpatient acute",
    "SS": "short stay",
    "AMB": "ambulatory",
    "HH": "home health",
    "OBSENC": "observation encounter",
}


def _instant(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def encounter_resource(transition: Transition) -> dict:
    hospitalization = _drop_empty(
        {
            "origin": {"display": transition.from_location} if transition.from_location else None,
            "destination": {"display": transition.to_location} if transition.to_location else None,
            "dischargeDisposition": {
                "coding": [{"system": DISPOSITION_SYSTEM, "code": transition.disposition}]
            }
            if transition.disposition
            else None,
        }
    )
    identifier = []
    if transition.identifier:
        identifier.append(
            _drop_empty({"system": transition.identifier_system, "value": transition.identifier})
        )
    start = transition.admitted_at or (None if transition.is_discharge else transition.occurred_at)
    period = _drop_empty({"start": _instant(start), "end": _instant(transition.discharged_at)})
    return _drop_empty(
        {
            "resourceType": "Encounter",
            "id": str(transition.pk),
            "meta": {"versionId": str(transition.version), "lastUpdated": transition.updated_at.isoformat()},
            "identifier": identifier,
            "status": transition.status,
            "class": {
                "system": ACT_CODE_SYSTEM,
                "code": transition.encounter_class,
                "display": ENCOUNTER_CLASSES.get(transition.encounter_class, ""),
            },
            "type": [
                {
                    "coding": [
                        {
                            "system": TRANSITION_KIND_SYSTEM,
                            "code": transition.kind,
                            "display": transition.get_kind_display(),
                        }
                    ]
                }
            ],
            "subject": patient_ref(transition.patient_id),
            "period": period,
            "reasonCode": [{"text": transition.reason}] if transition.reason else [],
            "hospitalization": hospitalization,
        }
    )


MEDICATION_STATUS = {"active": "active", "stopped": "stopped", "entered-in-error": "entered-in-error"}


def medication_statement_resource(line: MedicationLine) -> dict:
    coding = [{"system": RXNORM_SYSTEM, "code": line.rxnorm}] if line.rxnorm else []
    dosage_text = " ".join(p for p in (line.dose, line.route, line.timing) if p)
    return _drop_empty(
        {
            "resourceType": "MedicationStatement",
            "id": str(line.pk),
            "meta": {"versionId": str(line.version), "lastUpdated": line.updated_at.isoformat()},
            "status": MEDICATION_STATUS[line.status],
            "category": {
                "coding": [
                    {
                        "system": MEDICATION_SOURCE_SYSTEM,
                        "code": line.source,
                        "display": MedicationSource(line.source).label,
                    }
                ]
            },
            "medicationCodeableConcept": _drop_empty({"coding": coding, "text": line.name}),
            "subject": patient_ref(line.patient_id),
            "effectivePeriod": _drop_empty(
                {
                    "start": line.start.isoformat() if line.start else None,
                    "end": line.stop.isoformat() if line.stop else None,
                }
            ),
            "dateAsserted": line.created_at.isoformat(),
            "informationSource": {"display": line.prescriber} if line.prescriber else None,
            "dosage": [
                _drop_empty(
                    {
                        "text": dosage_text,
                        "patientInstruction": line.timing,
                        "route": {"text": line.route} if line.route else None,
                    }
                )
            ]
            if dosage_text
            else [],
        }
    )


# ---------------------------------------------------------------------------
# A received Encounter
# ---------------------------------------------------------------------------
def _moment(raw: Any, field: str, errors: dict) -> dt.datetime | None:
    if raw in (None, ""):
        return None
    value = parse_datetime(raw) if isinstance(raw, str) else None
    if value is None and isinstance(raw, str) and parse_date(raw):
        value = dt.datetime.combine(parse_date(raw), dt.time(12, 0), tzinfo=dt.UTC)
    if value is None:
        errors[field] = "Not a FHIR dateTime."
        return None
    if value.tzinfo is None:
        errors[field] = "A dateTime with a time needs a time zone."
        return None
    return value


def parse_encounter(data: Any) -> dict:
    """The fields of `services.transition_record` from a FHIR R4 Encounter, validated
    first with fhir.resources (ValidationError: a 400 OperationOutcome, nothing written).
    finished (or a period end) is a discharge, in-progress an admission."""
    from fhir.resources.R4B.encounter import Encounter as FhirEncounter
    from pydantic import ValidationError as PydanticError

    if not isinstance(data, dict) or data.get("resourceType") != "Encounter":
        raise ValidationError({"resourceType": "Send one Encounter resource."})
    try:
        FhirEncounter.model_validate(data)
    except (PydanticError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[:3]
        raise ValidationError({"Encounter": "Not a valid R4 Encounter: " + " ".join(first)}) from None
    errors: dict[str, str] = {}
    subject = ((data.get("subject") or {}).get("reference") or "").strip()
    if not subject.startswith("Patient/") or not subject.removeprefix("Patient/").isdigit():
        errors["subject"] = "Encounter.subject must reference the Patient (Patient/<id>)."
    status = data.get("status")
    if status not in (
        EncounterStatus.IN_PROGRESS,
        EncounterStatus.FINISHED,
        EncounterStatus.CANCELLED,
        EncounterStatus.ENTERED_IN_ERROR,
        EncounterStatus.PLANNED,
    ):
        errors["status"] = (
            "Encounter.status must be planned, in-progress, finished, cancelled or entered-in-error."
        )
    klass = data.get("class") or {}
    code = (klass.get("code") or "").strip()
    if not code:
        errors["class"] = "Encounter.class needs a code (v3 ActCode, e.g. IMP)."
    period = data.get("period") or {}
    start = _moment(period.get("start"), "period.start", errors)
    end = _moment(period.get("end"), "period.end", errors)
    if start and end and end < start:
        errors["period"] = "The discharge (period.end) cannot be before the admission (period.start)."
    identifiers = [i for i in data.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    hospitalization = data.get("hospitalization") or {}
    disposition = ""
    for coding in (hospitalization.get("dischargeDisposition") or {}).get("coding") or []:
        disposition = coding.get("code") or disposition
    discharged = status == EncounterStatus.FINISHED or (
        end is not None and status != EncounterStatus.IN_PROGRESS
    )
    if discharged and end is None:
        errors["period.end"] = "A finished Encounter (a discharge) needs period.end."
    if not discharged and start is None:
        errors["period.start"] = "An Encounter in progress (an admission) needs period.start."
    if errors:
        raise ValidationError(errors)
    reason = " ".join(
        (r.get("text") or next((c.get("display", "") for c in r.get("coding") or []), ""))
        for r in data.get("reasonCode") or []
        if isinstance(r, dict)
    ).strip()
    return {
        "patient_id": int(subject.removeprefix("Patient/")),
        "kind": TransitionKind.DISCHARGE if discharged else TransitionKind.ADMISSION,
        "status": status,
        "occurred_at": end if discharged else start,
        "admitted_at": start,
        "encounter_class": code,
        "from_location": ((hospitalization.get("origin") or {}).get("display") or "")[:200],
        "to_location": ((hospitalization.get("destination") or {}).get("display") or "")[:200],
        "reason": reason[:300],
        "disposition": disposition,
        "identifier_system": (identifiers[0].get("system") or "") if identifiers else "",
        "identifier": identifiers[0]["value"] if identifiers else "",
    }


# ---------------------------------------------------------------------------
# Patient/$everything
# ---------------------------------------------------------------------------
def everything_entries(access: PatientAccess, url: Callable[[str], str]) -> list[tuple[str, dict]]:
    """The patient's Encounters and MedicationStatements (two queries)."""
    entries = [
        (url(f"Encounter/{t.pk}"), encounter_resource(t))
        for t in Transition.objects.filter(patient=access.patient).order_by("occurred_at", "pk")
    ]
    entries += [
        (url(f"MedicationStatement/{m.pk}"), medication_statement_resource(m))
        for m in MedicationLine.objects.filter(patient=access.patient).order_by("pk")
    ]
    return entries
