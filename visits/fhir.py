"""FHIR R4 mapping of visits: every visit is an `Appointment` (id `visit-<id>`); a
completed one is also an `Encounter` (same id), for `Patient/{id}/$everything`. The
plan activities a visit is for are not carried (CarePlan.activity has no id to point
at), so a sensitive one can never leak through them."""

from __future__ import annotations

import datetime as dt

from careteam.api.fhir import DISCIPLINE_SYSTEM, SYSTEM_BASE, patient_ref, user_ref
from careteam.permissions import PatientAccess

from .models import Visit, VisitStatus, VisitType

VISIT_TYPE_SYSTEM = f"{SYSTEM_BASE}/CodeSystem/visit-type"
# the v3 ActCode an encounter's class takes for each kind of visit
ENCOUNTER_CLASS = {
    VisitType.HOME: ("HH", "home health"),
    VisitType.CLINIC: ("AMB", "ambulatory"),
    VisitType.TELEHEALTH: ("VR", "virtual"),
    VisitType.PHONE: ("VR", "virtual"),
}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _participants(visit: Visit) -> list[dict]:
    people = [{"actor": patient_ref(visit.patient_id), "status": "accepted"}]
    if visit.clinician_id is not None:
        people.append({"actor": user_ref(visit.clinician), "status": "accepted"})
    elif visit.provider_name:
        people.append({"actor": {"display": visit.provider_name}, "status": "accepted"})
    return people


def appointment_resource(visit: Visit) -> dict:
    resource = {
        "resourceType": "Appointment",
        "id": f"visit-{visit.pk}",
        "meta": {"versionId": str(visit.version), "lastUpdated": _instant(visit.updated_at)},
        "status": visit.status,
        "appointmentType": {
            "coding": [
                {
                    "system": VISIT_TYPE_SYSTEM,
                    "code": visit.visit_type,
                    "display": visit.get_visit_type_display(),
                }
            ]
        },
        "start": _instant(visit.start),
        "end": _instant(visit.end),
        "minutesDuration": visit.duration_minutes,
        "created": _instant(visit.created_at),
        "participant": _participants(visit),
    }
    if visit.discipline_id is not None:
        resource["serviceType"] = [
            {
                "coding": [
                    {
                        "system": DISCIPLINE_SYSTEM,
                        "code": visit.discipline.code,
                        "display": visit.discipline.name,
                    }
                ]
            }
        ]
    if visit.status_reason and visit.status in (VisitStatus.CANCELLED, VisitStatus.NOSHOW):
        resource["cancelationReason"] = {"text": visit.status_reason}
    if visit.location:
        resource["comment"] = visit.location
    if visit.care_plan_id is not None:
        resource["basedOn"] = [{"reference": f"CarePlan/{visit.care_plan_id}"}]
    if visit.rebooked_from_id is not None:
        resource["extension"] = [
            {
                "url": f"{SYSTEM_BASE}/StructureDefinition/rebooked-from",
                "valueReference": {"reference": f"Appointment/visit-{visit.rebooked_from_id}"},
            }
        ]
    return resource


def encounter_resource(visit: Visit) -> dict:
    code, display = ENCOUNTER_CLASS.get(visit.visit_type, ("AMB", "ambulatory"))
    resource = {
        "resourceType": "Encounter",
        "id": f"visit-{visit.pk}",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": code, "display": display},
        "subject": patient_ref(visit.patient_id),
        "appointment": [{"reference": f"Appointment/visit-{visit.pk}"}],
        "period": {"start": _instant(visit.start), "end": _instant(visit.end)},
    }
    if visit.clinician_id is not None:
        resource["participant"] = [{"individual": user_ref(visit.clinician)}]
    return resource


def everything_entries(access: PatientAccess, url) -> list[tuple[str, dict]]:
    """The patient's visits for `$everything`: (fullUrl, resource) pairs; `url` makes a
    full URL from a relative one."""
    visits = Visit.objects.filter(patient=access.patient).select_related("clinician", "discipline")
    entries = []
    for visit in visits.order_by("start", "id"):
        entries.append((url(f"Appointment/visit-{visit.pk}"), appointment_resource(visit)))
        if visit.status == VisitStatus.FULFILLED:
            entries.append((url(f"Encounter/visit-{visit.pk}"), encounter_resource(visit)))
    return entries
