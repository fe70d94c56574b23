"""Patients enrolled and changed by other systems: the REST API (POST, PATCH with
If-Match) and FHIR (POST with If-None-Exist, PUT with If-Match) go through the same
enrolment rules as the page: a taken MRN is refused without revealing the record, the
caller joins the team, every write is audited, and bad bodies write nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from careteam.api.fhir import MRN_SYSTEM
from careteam.models import AuditEvent, TeamMembership
from patients.models import Patient

pytestmark = pytest.mark.django_db
FHIR = "application/fhir+json"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def body(**extra) -> dict:
    return {
        "given_name": "Maria",
        "family_name": "Lopez",
        "birth_date": "1951-04-02",
        "gender": "female",
        "preferred_language": "es",
        **extra,
    }


def fhir_patient(mrn: str | None = "EHR-5501", **extra) -> dict:
    resource = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Lopez", "given": ["Maria"]}],
        "birthDate": "1951-04-02",
        "gender": "female",
        "telecom": [{"system": "phone", "value": "555-0101"}],
        "address": [{"line": ["12 Elm St"], "city": "Springfield", "postalCode": "01101"}],
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}, "preferred": True}
        ],
    }
    if mrn:
        resource["identifier"] = [{"system": MRN_SYSTEM, "value": mrn}]
    resource.update(extra)
    return resource


# ---------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------
def test_api_enrols_a_patient_and_the_caller_joins_the_team(world):
    response = client_for(world.case_manager).post("/api/v1/patients/", body(mrn="mrn 77"), format="json")
    assert response.status_code == 201, response.content
    patient = Patient.objects.get(mrn="MRN77")
    assert response["Location"].endswith(f"/api/v1/patients/{patient.pk}/")
    assert response["ETag"] == 'W/"1"'
    assert TeamMembership.objects.get(patient=patient).role == "case-manager"
    assert AuditEvent.objects.filter(action="create", patient_id=patient.pk).exists()


def test_api_generates_an_mrn_when_none_is_sent(world):
    response = client_for(world.nurse).post("/api/v1/patients/", body(), format="json")
    assert response.status_code == 201
    assert response.json()["mrn"].startswith("CT-")


def test_api_refuses_a_taken_mrn_without_revealing_the_record(world):
    response = client_for(world.nurse).post(
        "/api/v1/patients/", body(mrn=world.other_patient.mrn), format="json"
    )
    assert response.status_code == 409
    text = response.content.decode()
    assert "MRN already exists" in text
    assert world.other_patient.family_name not in text and str(world.other_patient.pk) not in text
    assert Patient.objects.count() == 2


def test_api_asks_before_enrolling_a_look_alike(world):
    client = client_for(world.nurse)
    twin = body(given_name=world.patient.given_name, family_name=world.patient.family_name)
    twin["birth_date"] = world.patient.birth_date.isoformat()
    refused = client.post("/api/v1/patients/", twin, format="json")
    assert refused.status_code == 409
    assert f"patient {world.patient.pk}" in refused.json()["not_a_duplicate"][0]
    assert Patient.objects.count() == 2
    # a look-alike the caller cannot see is not mentioned at all
    hidden = body(given_name=world.other_patient.given_name, family_name=world.other_patient.family_name)
    hidden["birth_date"] = world.other_patient.birth_date.isoformat()
    assert client.post("/api/v1/patients/", hidden, format="json").status_code == 201
    assert (
        client.post("/api/v1/patients/", {**twin, "not_a_duplicate": True}, format="json").status_code == 201
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"birth_date": "2999-01-01"},
        {"birth_date": "yesterday"},
        {"gender": "robot"},
        {"given_name": ""},
        {"given_name": "x" * 500},
        {"email": "not-an-email"},
    ],
)
def test_api_bad_bodies_write_nothing(world, bad):
    response = client_for(world.nurse).post("/api/v1/patients/", body(**bad), format="json")
    assert response.status_code == 400, response.content
    assert (
        Patient.objects.count() == 2
        and not TeamMembership.objects.filter(patient__family_name="Lopez").exists()
    )


def test_api_patch_needs_if_match_and_refuses_a_stale_version(world):
    client = client_for(world.nurse)
    url = f"/api/v1/patients/{world.patient.pk}/"
    assert client.patch(url, {"phone": "555-0199"}, format="json").status_code == 428
    assert client.patch(url, {"phone": "555-0199"}, format="json", HTTP_IF_MATCH='W/"9"').status_code == 412
    ok = client.patch(url, {"phone": "555-0199", "mrn": "CHANGED"}, format="json", HTTP_IF_MATCH='W/"1"')
    assert ok.status_code == 200, ok.content
    world.patient.refresh_from_db()
    assert (world.patient.phone, world.patient.version, world.patient.mrn) == ("555-0199", 2, "P-TEAM-1")
    assert ok["ETag"] == 'W/"2"'


def test_api_patch_off_the_team_is_missing(world):
    response = client_for(world.outsider).patch(
        f"/api/v1/patients/{world.patient.pk}/", {"phone": "1"}, format="json", HTTP_IF_MATCH='W/"1"'
    )
    assert response.status_code == 404
    world.patient.refresh_from_db()
    assert world.patient.phone != "1"


def test_accounts_without_a_discipline_cannot_enrol(world):
    response = client_for(world.admin).post("/api/v1/patients/", body(), format="json")
    assert response.status_code == 403
    assert Patient.objects.count() == 2


# ---------------------------------------------------------------------------
# FHIR
# ---------------------------------------------------------------------------
def fhir_post(client, resource, **headers):
    import json

    return client.generic("POST", "/fhir/Patient", json.dumps(resource), content_type=FHIR, headers=headers)


def test_fhir_create_then_the_same_patient_again_is_not_duplicated(world):
    client = client_for(world.case_manager)
    condition = {"If-None-Exist": f"identifier={MRN_SYSTEM}|EHR-5501"}
    first = fhir_post(client, fhir_patient(), **condition)
    assert first.status_code == 201, first.content
    patient = Patient.objects.get(mrn="EHR-5501")
    assert (patient.city, patient.phone, patient.preferred_language) == ("Springfield", "555-0101", "es")
    assert first["Location"].endswith(f"/fhir/Patient/{patient.pk}")
    again = fhir_post(client, fhir_patient(), **condition)
    assert again.status_code == 200
    assert again.json()["id"] == str(patient.pk)
    assert Patient.objects.filter(mrn="EHR-5501").count() == 1


def test_fhir_conditional_create_of_a_hidden_record_reveals_nothing(world):
    response = fhir_post(
        client_for(world.nurse),
        fhir_patient(mrn=world.other_patient.mrn),
        **{"If-None-Exist": f"identifier={world.other_patient.mrn}"},
    )
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert world.other_patient.family_name not in response.content.decode()
    assert AuditEvent.objects.filter(outcome="denied", patient_id=world.other_patient.pk).exists()


def test_fhir_create_without_condition_refuses_a_taken_mrn(world):
    response = fhir_post(client_for(world.nurse), fhir_patient(mrn=world.patient.mrn))
    assert response.status_code == 409
    assert Patient.objects.count() == 2


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation"},
        fhir_patient(name=[]),
        fhir_patient(birthDate="not-a-date"),
        fhir_patient(gender="robot"),
        fhir_patient(identifier=[{"system": MRN_SYSTEM, "value": "A"}, {"system": MRN_SYSTEM, "value": "B"}]),
    ],
)
def test_fhir_bad_resources_are_400_and_write_nothing(world, resource):
    response = fhir_post(client_for(world.nurse), resource)
    assert response.status_code == 400, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert Patient.objects.count() == 2


def test_fhir_if_none_exist_must_agree_with_the_identifier(world):
    response = fhir_post(
        client_for(world.nurse), fhir_patient(mrn="A-1"), **{"If-None-Exist": "identifier=B-2"}
    )
    assert response.status_code == 400
    assert (
        fhir_post(client_for(world.nurse), fhir_patient(), **{"If-None-Exist": "name=x"}).status_code == 400
    )


def test_fhir_put_updates_with_if_match_and_keeps_the_mrn(world):
    import json

    client = client_for(world.nurse)
    url = f"/fhir/Patient/{world.patient.pk}"
    resource = fhir_patient(mrn=world.patient.mrn, id=str(world.patient.pk))
    put = lambda r, **h: client.generic("PUT", url, json.dumps(r), content_type=FHIR, headers=h)  # noqa: E731
    assert put(resource).status_code == 428
    assert put(resource, **{"If-Match": 'W/"7"'}).status_code == 412
    assert (
        put(fhir_patient(mrn="OTHER", id=str(world.patient.pk)), **{"If-Match": 'W/"1"'}).status_code == 400
    )
    ok = put(resource, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.content
    world.patient.refresh_from_db()
    assert (world.patient.family_name, world.patient.version, world.patient.mrn) == ("Lopez", 2, "P-TEAM-1")
    assert ok["ETag"] == 'W/"2"'
    outsider = client_for(world.outsider).generic(
        "PUT", url, json.dumps(resource), content_type=FHIR, headers={"If-Match": 'W/"2"'}
    )
    assert outsider.status_code == 404
