"""FHIR searches page (`_count` capped at FHIR_SEARCH_MAX_COUNT, Bundle links next and
previous), `$import` refuses oversize Bundles with an OperationOutcome and writes nothing,
and every FHIR read or denial of patient data is audited with its patient."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from careplans.models import CarePlan, Goal
from careteam.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _goals(world, n):
    return [f.GoalFactory(care_plan=world.plan, description=f"Goal {i}") for i in range(n)]


def test_count_is_capped_and_links_page_through_every_result(world, settings):
    settings.FHIR_SEARCH_MAX_COUNT = 3
    goals = _goals(world, 7)
    client = client_for(world.nurse)
    url = f"/fhir/Goal?patient={world.patient.pk}&_count=1000"
    seen = []
    pages = 0
    while url:
        data = client.get(url).json()
        assert data["resourceType"] == "Bundle" and data["total"] == 7
        assert len(data.get("entry", [])) <= 3
        seen += [e["resource"]["id"] for e in data.get("entry", [])]
        links = {link["relation"]: link["url"] for link in data["link"]}
        if pages:
            assert "previous" in links
        url = links.get("next")
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(str(g.pk) for g in goals)


def test_a_smaller_count_and_an_offset_page(world):
    _goals(world, 5)
    data = client_for(world.nurse).get(f"/fhir/Goal?patient={world.patient.pk}&_count=2&_offset=4").json()
    assert len(data["entry"]) == 1 and data["total"] == 5
    links = {link["relation"]: link["url"] for link in data["link"]}
    assert "next" not in links and "_offset=2" in links["previous"]


@pytest.mark.parametrize(
    "params", ["_count=-1", "_count=abc", "_offset=-5", "_offset=99999999999999", "_count=1e9"]
)
def test_invalid_paging_answers_400_as_operation_outcome(world, params):
    response = client_for(world.nurse).get(f"/fhir/Goal?patient={world.patient.pk}&{params}")
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"


def test_patient_search_pages_and_audits_each_patient_shown(world):
    client = client_for(world.nurse)
    before = AuditEvent.objects.count()
    data = client.get("/fhir/Patient?name=Team&_count=5").json()
    assert data["total"] == 1 and data["entry"][0]["resource"]["id"] == str(world.patient.pk)
    rows = list(AuditEvent.objects.order_by("id")[before:])
    # one event for the list, naming every patient it showed
    assert [(r.object_type, r.patient_id, r.patient_ids) for r in rows] == [
        ("fhir.Patient", None, [world.patient.pk])
    ]
    assert "name=Team" in rows[0].detail


def _bundle(world, goals: int) -> dict:
    entries = [
        {
            "fullUrl": "urn:uuid:plan",
            "resource": {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "title": "Imported",
                "subject": {"reference": f"Patient/{world.patient.pk}"},
            },
        }
    ]
    for i in range(goals):
        entries.append(
            {
                "fullUrl": f"urn:uuid:goal-{i}",
                "resource": {
                    "resourceType": "Goal",
                    "lifecycleStatus": "proposed",
                    "description": {"text": f"Goal {i}"},
                    "subject": {"reference": f"Patient/{world.patient.pk}"},
                },
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


@pytest.mark.parametrize("url", ["/fhir/CarePlan", "/fhir/Patient/{pid}/CarePlan/$import"])
def test_an_oversize_import_answers_413_and_writes_nothing(world, settings, url):
    settings.FHIR_IMPORT_MAX_ENTRIES = 5
    plans, goals = CarePlan.objects.count(), Goal.objects.count()
    response = client_for(world.case_manager).post(
        url.format(pid=world.patient.pk), _bundle(world, 5), format="json"
    )
    assert response.status_code == 413
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and "at most 5" in body["issue"][0]["diagnostics"]
    assert (CarePlan.objects.count(), Goal.objects.count()) == (plans, goals)


def test_search_on_a_patient_is_audited_with_the_patient(world):
    before = AuditEvent.objects.count()
    for kind in ("CarePlan", "Goal", "CareTeam", "ServiceRequest", "Task"):
        assert client_for(world.nurse).get(f"/fhir/{kind}?patient={world.patient.pk}").status_code == 200
    rows = list(AuditEvent.objects.order_by("id")[before:])
    assert len(rows) == 5 and {r.patient_id for r in rows} == {world.patient.pk}


def test_search_on_a_hidden_patient_is_audited_as_a_denial_of_that_patient(world):
    response = client_for(world.outsider).get(f"/fhir/Goal?patient={world.patient.pk}")
    assert response.status_code == 200 and response.json()["total"] == 0
    row = AuditEvent.objects.latest("id")
    assert (row.outcome, row.patient_id, row.username) == ("denied", world.patient.pk, "outsider1")


def test_hidden_tasks_are_audited_as_denials_with_their_patient(world):
    handoff = f.HandoffFactory(
        patient=world.patient, care_plan=world.plan, from_user=world.nurse, to_user=world.pharmacist
    )
    referral = f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)
    client = client_for(world.outsider)
    for task in (f"handoff-{handoff.pk}", f"referral-{referral.pk}"):
        assert client.get(f"/fhir/Task/{task}").status_code == 404
        row = AuditEvent.objects.latest("id")
        assert (row.outcome, row.patient_id) == ("denied", world.patient.pk), task
    assert client.get("/fhir/Task/handoff-999999999999999999999").status_code == 404


def test_import_for_a_hidden_subject_is_audited_as_a_denial(world):
    plans = CarePlan.objects.count()
    response = client_for(world.outsider).post("/fhir/CarePlan", _bundle(world, 1), format="json")
    assert response.status_code == 404 and CarePlan.objects.count() == plans
    row = AuditEvent.objects.latest("id")
    assert (row.outcome, row.patient_id, row.action) == ("denied", world.patient.pk, "update")
