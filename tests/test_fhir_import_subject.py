"""A CarePlan Bundle imported for one patient names only that patient: a CarePlan or
Goal whose subject is another patient answers 400 with an OperationOutcome, and nothing
is written."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from careplans.models import CarePlan, Goal
from tests import factories as f

pytestmark = pytest.mark.django_db


def _bundle(plan_subject: str | None, goal_subject: str | None) -> dict:
    plan = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "plan",
        "title": "Imported",
        "goal": [{"reference": "urn:uuid:goal"}],
    }
    if plan_subject:
        plan["subject"] = {"reference": plan_subject}
    goal = {"resourceType": "Goal", "lifecycleStatus": "proposed", "description": {"text": "Walk daily"}}
    if goal_subject:
        goal["subject"] = {"reference": goal_subject}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:plan", "resource": plan},
            {"fullUrl": "urn:uuid:goal", "resource": goal},
        ],
    }


def _post(world, url: str, body: dict):
    client = APIClient()
    client.force_authenticate(world.case_manager)
    return client.post(url.format(pid=world.patient.pk), body, format="json")


@pytest.mark.parametrize(
    ("url", "plan_subject", "goal_subject", "wrong"),
    [
        ("/fhir/Patient/{pid}/CarePlan/$import", "other", "mine", "CarePlan"),
        ("/fhir/Patient/{pid}/CarePlan/$import", "mine", "other", "Goal"),
        ("/fhir/Patient/{pid}/CarePlan/$import", "missing", "mine", "CarePlan"),
        ("/fhir/CarePlan", "mine", "other", "Goal"),
    ],
)
def test_an_import_naming_another_patient_is_refused_and_writes_nothing(
    world, url, plan_subject, goal_subject, wrong
):
    refs = {
        "mine": f"Patient/{world.patient.pk}",
        "other": f"Patient/{world.other_patient.pk}",
        "missing": "Patient/987654321",
        None: None,
    }
    counts = (CarePlan.objects.count(), Goal.objects.count())
    response = _post(world, url, _bundle(refs[plan_subject], refs[goal_subject]))
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    text = " ".join(issue.get("diagnostics", "") for issue in body["issue"])
    assert f"{wrong}.subject must be Patient/{world.patient.pk}" in text
    # nothing about the other record: its name or MRN never appears
    assert world.other_patient.mrn not in response.content.decode()
    assert (CarePlan.objects.count(), Goal.objects.count()) == counts


def test_an_import_naming_its_own_patient_is_created(world):
    ref = f"Patient/{world.patient.pk}"
    response = _post(world, "/fhir/Patient/{pid}/CarePlan/$import", _bundle(ref, ref))
    assert response.status_code == 201, response.content
    plan = CarePlan.objects.get(pk=response.json()["entry"][0]["resource"]["id"])
    assert plan.patient_id == world.patient.pk and plan.goals.count() == 1


def test_a_goal_subject_on_a_hidden_patient_through_the_plain_endpoint_is_refused(world):
    f.GoalFactory(care_plan=world.other_plan)
    response = _post(
        world, "/fhir/CarePlan", _bundle(f"Patient/{world.patient.pk}", f"Patient/{world.other_patient.pk}")
    )
    assert response.status_code == 400
    assert not CarePlan.objects.filter(patient=world.patient, title="Imported").exists()
