"""CarePlan import keeps what it accepts: a Synthea-shaped Bundle with several plans (and
the official US Core examples) imports, and `$everything` answers the imported elements
unchanged, compared field by field; importing twice changes nothing; what cannot be kept
is reported as warnings with an expression; what is wrong refuses the whole Bundle."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from rest_framework.test import APIClient

from careplans import services as plan_services
from careplans.models import Activity, CarePlan, Goal, Need
from careteam import services as team_services
from careteam.permissions import access_patient_by_id
from tests import factories as f

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data" / "fhir"
US_CORE = Path("/work/shared/fhir/us-core")
if not US_CORE.exists():  # the examples ship next to the checkout
    US_CORE = Path(__file__).resolve().parents[2] / "shared" / "fhir" / "us-core"


def synthea() -> dict:
    return json.loads((DATA / "synthea_multi_plan.json").read_text())


@pytest.fixture
def patient(world):
    patient = f.PatientFactory(mrn="P-SYN-1", given_name="Lowell", family_name="Hegmann")
    team_services.membership_add(
        patient=patient,
        user=world.case_manager,
        discipline=f.discipline("case-management"),
        role="case-manager",
        start_date=timezone.localdate() - dt.timedelta(days=1),
    )
    return patient


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post(world, patient, bundle, query="", **headers):
    return client_for(world.case_manager).post(
        f"/fhir/Patient/{patient.pk}/CarePlan/$import{query}", bundle, format="json", **headers
    )


def counts():
    return (CarePlan.objects.count(), Goal.objects.count(), Activity.objects.count(), Need.objects.count())


def everything(world, patient) -> dict[str, dict]:
    data = client_for(world.case_manager).get(f"/fhir/Patient/{patient.pk}/$everything").json()
    Bundle.model_validate(data)
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in data["entry"]}


def outcome_of(response) -> dict:
    body = response.json()
    if body["resourceType"] == "OperationOutcome":
        return body
    return body["entry"][-1]["resource"]


# ---------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------
def _sources(bundle, kind):
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_synthea_bundle_round_trips_field_by_field(world, patient):
    bundle = synthea()
    response = post(world, patient, bundle)
    assert response.status_code == 201, response.content
    Bundle.model_validate(response.json())
    exported = everything(world, patient)
    plans = sorted((r for k, r in exported.items() if k.startswith("CarePlan/")), key=lambda r: int(r["id"]))
    sources = _sources(bundle, "CarePlan")
    assert len(plans) == len(sources) == 3
    goal_sources = {e["fullUrl"]: e["resource"] for e in _sources(bundle, "Goal")}
    for entry, plan in zip(sources, plans, strict=True):
        source = entry["resource"]
        for element in ("identifier", "addresses", "created", "period", "status", "intent", "description"):
            assert plan.get(element) == source.get(element), (source["id"], element)
        # the narrative as sent, or (US Core wants one) generated
        if "text" in source:
            assert plan["text"] == source["text"]
        else:
            assert plan["text"]["status"] == "generated"
        # every category sent is kept, and the plan is a US Core assess-plan
        for concept in source["category"]:
            assert concept in plan["category"], source["id"]
        assert any(c["coding"][0]["code"] == "assess-plan" for c in plan["category"])
        assert len(plan.get("activity", [])) == len(source.get("activity", []))
        goal_ids = {}
        contained = {f"#{c['id']}": c for c in source.get("contained", [])}
        for ref, mine in zip(source.get("goal", []), plan.get("goal", []), strict=True):
            sent = contained.get(ref["reference"]) or goal_sources[ref["reference"]]
            goal = exported[mine["reference"]]
            goal_ids[ref["reference"]] = mine["reference"]
            for element in (
                "description",
                "target",
                "startDate",
                "statusDate",
                "category",
                "note",
                "achievementStatus",
                "priority",
                "lifecycleStatus",
            ):
                assert goal.get(element) == sent.get(element), (sent["id"], element)
            if sent.get("expressedBy", {}).get("reference", "").startswith("RelatedPerson/"):
                assert goal["expressedBy"] == sent["expressedBy"]
        for sent, mine in zip(source.get("activity", []), plan.get("activity", []), strict=True):
            if "reference" in sent:
                assert mine == sent
                continue
            for element in (
                "code",
                "kind",
                "status",
                "scheduledTiming",
                "scheduledPeriod",
                "scheduledString",
                "performer",
                "location",
            ):
                assert mine["detail"].get(element) == sent["detail"].get(element), (source["id"], element)
            assert [goal_ids[g["reference"]] for g in sent["detail"].get("goal", [])] == [
                g["reference"] for g in mine["detail"].get("goal", [])
            ]
    # a long text is stored whole, never cut
    unknown = next(p for p in plans if p["status"] == "unknown")
    assert len(unknown["description"]) > 300
    assert CarePlan.objects.get(pk=unknown["id"]).description == sources[2]["resource"]["description"]


def test_importing_twice_changes_nothing(world, patient):
    assert post(world, patient, synthea()).status_code == 201
    before = counts()
    first = everything(world, patient)
    again = post(world, patient, synthea())
    assert again.status_code == 200, again.content
    assert counts() == before
    assert everything(world, patient).keys() == first.keys()
    assert "3 already imported" in outcome_of(again)["issue"][0]["diagnostics"]


def test_the_same_plan_with_other_content_is_a_409_duplicate(world, patient):
    assert post(world, patient, synthea()).status_code == 201
    before = counts()
    changed = synthea()
    plan = next(e["resource"] for e in changed["entry"] if e["resource"].get("id") == "careplan-unknown-0003")
    plan["description"] = "Something else"
    response = post(world, patient, changed)
    assert response.status_code == 409
    issue = response.json()["issue"][0]
    assert issue["code"] == "duplicate" and issue["expression"][0].endswith(".identifier")
    assert counts() == before


def test_what_is_not_kept_is_reported_as_warnings_with_an_expression(world, patient):
    response = post(world, patient, synthea())
    issues = outcome_of(response)["issue"]
    warnings = [i for i in issues if i["severity"] == "warning"]
    assert warnings and all(i.get("expression") for i in warnings)
    expressions = {i["expression"][0] for i in warnings}
    assert "Bundle.entry[1].resource" in expressions  # the Encounter
    assert "Bundle.entry[7].resource.encounter" in expressions
    assert "Bundle.entry[6].resource" in expressions  # the goal no plan references
    assert not Goal.objects.filter(description="Walk 30 minutes five days a week").exists()


def test_unreferenced_goals_join_the_active_plan_when_asked(world, patient):
    response = post(world, patient, synthea(), "?unreferenced-goals=active-plan")
    assert response.status_code == 201
    goal = Goal.objects.get(description="Walk 30 minutes five days a week")
    assert goal.care_plan.status == "active" and goal.care_plan.patient_id == patient.pk
    assert post(world, patient, synthea(), "?unreferenced-goals=active-plan").status_code == 200
    assert Goal.objects.filter(description="Walk 30 minutes five days a week").count() == 1


def test_if_none_exist_answers_the_plan_already_imported(world, patient):
    assert post(world, patient, synthea()).status_code == 201
    before = counts()
    other = synthea()
    for e in other["entry"]:
        if e["resource"]["resourceType"] == "CarePlan":
            e["resource"]["status"] = "draft"
    header = {"HTTP_IF_NONE_EXIST": "identifier=https://synthea.mitre.org/careplan|diabetes-0001"}
    response = post(world, patient, other, **header)
    assert response.status_code == 200 and counts() == before
    assert response.json()["entry"][0]["resource"]["identifier"][0]["value"] == "diabetes-0001"
    assert post(world, patient, other, HTTP_IF_NONE_EXIST="nonsense").status_code == 400


def test_an_edit_in_careteam_wins_over_the_imported_element(world, patient):
    post(world, patient, synthea())
    goal = Goal.objects.get(description="Weight loss (finding)")
    access = access_patient_by_id(world.case_manager, patient.pk)
    plan_services.item_update(
        access=access,
        item=goal,
        by=world.case_manager,
        changes={"description": "Lose 5 kg by summer"},
        expected_version=goal.version,
    )
    exported = everything(world, patient)[f"Goal/{goal.pk}"]
    assert exported["description"] == {"text": "Lose 5 kg by summer"}
    # the elements CareTeam has no column for are still as sent
    assert exported["target"][0]["detailCodeableConcept"]["coding"][0]["code"] == "35425004"


def test_imported_codings_are_searchable(world, patient):
    post(world, patient, synthea())
    client = client_for(world.case_manager)
    data = client.get(f"/fhir/Goal?patient={patient.pk}&description=http://snomed.info/sct|289169006").json()
    assert [e["resource"]["description"]["coding"][0]["code"] for e in data["entry"]] == ["289169006"]
    data = client.get(f"/fhir/CarePlan?patient={patient.pk}&category=53950000").json()
    assert data["total"] == 1 and data["entry"][0]["resource"]["status"] == "completed"
    data = client.get(f"/fhir/CarePlan?patient={patient.pk}&category=assess-plan").json()
    assert data["total"] == 3


# ---------------------------------------------------------------------------
# Refusals: nothing written
# ---------------------------------------------------------------------------
def test_a_goal_reference_not_in_the_bundle_is_refused(world, patient):
    bundle = synthea()
    plan = next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == "careplan-diabetes-0001")
    plan["goal"].append({"reference": "Goal/elsewhere"})
    before = counts()
    response = post(world, patient, bundle)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert (
        issue["expression"] == ["Bundle.entry[7].resource.goal[2]"]
        and "Goal/elsewhere" in issue["diagnostics"]
    )
    assert counts() == before


def test_two_active_plans_are_a_409_business_rule(world, patient):
    bundle = synthea()
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "CarePlan":
            e["resource"]["status"] = "active"
    before = counts()
    response = post(world, patient, bundle)
    assert response.status_code == 409
    issues = response.json()["issue"]
    assert {i["code"] for i in issues} == {"business-rule"}
    assert {i["expression"][0] for i in issues} == {
        "Bundle.entry[8].resource.status",
        "Bundle.entry[9].resource.status",
    }
    assert counts() == before


def test_a_subject_naming_another_patient_is_refused(world, patient):
    bundle = synthea()
    bundle["entry"][8]["resource"]["subject"] = {"reference": f"Patient/{world.other_patient.pk}"}
    before = counts()
    response = post(world, patient, bundle)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[8].resource.subject"]
    assert counts() == before


def test_a_title_too_long_is_refused_clearly_not_cut(world, patient):
    bundle = synthea()
    bundle["entry"][8]["resource"]["title"] = "x" * 250
    response = post(world, patient, bundle)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert "250 characters" in issue["diagnostics"] and "nothing was cut" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[8].resource.title"]


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda b: b["entry"][8]["resource"].update(status="half-done"), "Bundle.entry[8].resource.status"),
        (
            lambda b: b["entry"][7]["resource"]["activity"][0]["detail"].update(status="sort-of"),
            "Bundle.entry[7].resource.activity[0].detail.status",
        ),
        (
            lambda b: b["entry"][4]["resource"].update(description={"coding": [{"system": "http://x"}]}),
            "Bundle.entry[4].resource.description",
        ),
        (
            lambda b: b["entry"][7]["resource"].update(
                modifierExtension=[{"url": "http://x", "valueBoolean": True}]
            ),
            "Bundle.entry[7].resource.modifierExtension",
        ),
        (lambda b: b.update(type="searchset"), "Bundle.type"),
    ],
)
def test_invalid_elements_are_refused_with_their_expression(world, patient, change, expression):
    bundle = synthea()
    change(bundle)
    before = counts()
    response = post(world, patient, bundle)
    assert response.status_code == 400, response.content
    assert expression in [i["expression"][0] for i in response.json()["issue"]]
    assert counts() == before


def test_outsider_import_is_404_and_writes_nothing(world, patient):
    before = counts()
    response = client_for(world.outsider).post(
        f"/fhir/Patient/{patient.pk}/CarePlan/$import", synthea(), format="json"
    )
    assert response.status_code == 404 and counts() == before


# ---------------------------------------------------------------------------
# The official US Core examples
# ---------------------------------------------------------------------------
def test_us_core_examples_import_and_export_unchanged(world, patient):
    plan = json.loads((US_CORE / "careplan-ulcer-example.json").read_text())
    goals = [json.loads((US_CORE / name).read_text()) for name in ("goal-1.json", "goal-sdoh-2.json")]
    for resource in (plan, *goals):
        resource["subject"] = {"reference": f"Patient/{patient.pk}"}
    goals[1]["expressedBy"] = {"reference": f"Patient/{patient.pk}"}
    plan["goal"] = [{"reference": f"Goal/{g['id']}"} for g in goals]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": copy.deepcopy(r)} for r in (plan, *goals)],
    }
    response = post(world, patient, bundle)
    assert response.status_code == 201, response.content
    exported = everything(world, patient)
    mine = next(r for k, r in exported.items() if k.startswith("CarePlan/"))
    for element in ("text", "status", "intent", "period", "created", "addresses"):
        assert mine[element] == plan[element], element
    assert plan["category"][0] in mine["category"]
    for sent, ref in zip(goals, mine["goal"], strict=True):
        goal = exported[ref["reference"]]
        for element in ("description", "target", "lifecycleStatus"):
            assert goal[element] == sent[element], element
        assert "priority" not in goal  # none was sent, none is invented
    assert exported[mine["goal"][0]["reference"]]["expressedBy"] == goals[0]["expressedBy"]
    warnings = [i for i in outcome_of(response)["issue"] if i["severity"] == "warning"]
    assert "Bundle.entry[0].resource.contributor" in {i["expression"][0] for i in warnings}
