"""FHIR R4: every resource the server emits validates against the R4B models of
fhir.resources; the same permissions and audit as the rest of CareTeam (hidden items are
absent, outsiders get 404 as OperationOutcome); a CarePlan Bundle round-trips."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careplan import CarePlan as FhirCarePlan
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.goal import Goal as FhirGoal
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from rest_framework.test import APIClient

from careplans.models import Activity, CarePlan, Goal
from careteam import services as team_services
from careteam.models import AuditEvent, EmergencyAccess, User
from patients.models import Patient
from tests import factories as f

pytestmark = pytest.mark.django_db

MODELS = {
    "Patient": FhirPatient,
    "CarePlan": FhirCarePlan,
    "CareTeam": CareTeam,
    "Goal": FhirGoal,
    "ServiceRequest": ServiceRequest,
    "Task": Task,
    "Bundle": Bundle,
    "OperationOutcome": OperationOutcome,
    "CapabilityStatement": CapabilityStatement,
    "Encounter": Encounter,
    "MedicationStatement": MedicationStatement,
    # visits (visits/fhir.py)
    "Appointment": Appointment,
    "Communication": Communication,
}


def fhir_get(user, url):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    response = client.get(url)
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    data = response.json()
    MODELS[data["resourceType"]].model_validate(data)  # every emitted resource validates
    if data["resourceType"] == "Bundle":
        for entry in data.get("entry", []):
            MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
    return response.status_code, data


@pytest.fixture
def chart(world):
    """A plan with goals, activities (one sensitive), a handoff and a referral."""
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    walk = f.GoalFactory(
        care_plan=world.plan,
        description="Walks to the shop",
        lifecycle_status="active",
        achievement_status="improving",
        expressed_by="patient",
        owner_discipline=f.discipline("physical-therapy"),
        target_measure="walking distance",
        target_value="400 m",
        target_due=timezone.localdate() + dt.timedelta(days=60),
    )
    sugar = f.GoalFactory(care_plan=world.plan, description="HbA1c below 7.5 %", lifecycle_status="proposed")
    teach = f.ActivityFactory(
        care_plan=world.plan,
        title="Teach insulin technique",
        status="in-progress",
        assigned_to=world.nurse,
        due_date=timezone.localdate() + dt.timedelta(days=7),
    )
    teach.goals.set([sugar])
    counselling = f.ActivityFactory(
        care_plan=world.plan,
        title="Counselling for low mood",
        owner_discipline=f.discipline("behavioural-health"),
        sensitivity=world.behavioural_health,
    )
    handoff = f.HandoffFactory(
        patient=world.patient, care_plan=world.plan, from_user=world.nurse, to_user=world.pharmacist
    )
    referral = f.ReferralFactory(
        patient=world.patient, care_plan=world.plan, referred_by=world.case_manager, reason="No car"
    )
    return {
        "goals": [walk, sugar],
        "teach": teach,
        "counselling": counselling,
        "handoff": handoff,
        "referral": referral,
    }


def test_metadata_is_public_and_a_valid_capability_statement(world):
    status, data = fhir_get(None, "/fhir/metadata")
    assert status == 200 and data["fhirVersion"] == "4.0.1"
    kinds = {r["type"] for r in data["rest"][0]["resource"]}
    assert kinds == {
        "Patient",
        "CarePlan",
        "CareTeam",
        "Goal",
        "ServiceRequest",
        "Task",
        "Questionnaire",
        "QuestionnaireResponse",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Encounter",
        "MedicationStatement",
    }


def test_every_resource_type_reads_and_validates(world, chart):
    nurse = world.nurse
    pid = world.patient.pk
    status, patient = fhir_get(nurse, f"/fhir/Patient/{pid}")
    assert status == 200 and patient["identifier"][0]["value"] == "P-TEAM-1"
    status, plan = fhir_get(nurse, f"/fhir/CarePlan/{world.plan.pk}")
    assert status == 200 and plan["subject"]["reference"] == f"Patient/{pid}"
    assert {g["reference"] for g in plan["goal"]} == {f"Goal/{g.pk}" for g in chart["goals"]}
    status, goal = fhir_get(nurse, f"/fhir/Goal/{chart['goals'][0].pk}")
    assert (
        goal["lifecycleStatus"] == "active" and goal["achievementStatus"]["coding"][0]["code"] == "improving"
    )
    status, request = fhir_get(nurse, f"/fhir/ServiceRequest/{chart['referral'].pk}")
    assert status == 200 and request["status"] == "draft" and request["intent"] == "order"
    status, task = fhir_get(nurse, f"/fhir/Task/handoff-{chart['handoff'].pk}")
    assert status == 200 and task["status"] == "requested" and len(task["note"]) == 4
    status, task = fhir_get(nurse, f"/fhir/Task/referral-{chart['referral'].pk}")
    assert task["focus"]["reference"] == f"ServiceRequest/{chart['referral'].pk}"


def test_care_team_lists_the_current_members_only(world):
    ended = f.UserFactory(username="former1", disciplines=["dietetics"])
    membership = team_services.membership_add(
        patient=world.patient,
        user=ended,
        discipline=f.discipline("dietetics"),
        start_date=timezone.localdate() - dt.timedelta(days=10),
    )
    team_services.membership_end(membership=membership)
    status, team = fhir_get(world.nurse, f"/fhir/CareTeam/{world.patient.pk}")
    assert status == 200 and team["id"] == str(world.patient.pk)
    members = {p["member"]["reference"] for p in team["participant"]}
    expected = User.objects.filter(username__in=["cm", "lead", "nurse1", "pharm1", "bh1"])
    assert members == {f"Practitioner/{u.pk}" for u in expected}


def test_sensitive_activity_is_absent_for_disciplines_the_policy_excludes(world, chart):
    _, plan = fhir_get(world.pharmacist, f"/fhir/CarePlan/{world.plan.pk}")
    titles = {a["detail"]["code"]["text"] for a in plan["activity"]}
    assert titles == {"Teach insulin technique"}
    _, everything = fhir_get(world.pharmacist, f"/fhir/Patient/{world.patient.pk}/$everything")
    assert "Counselling for low mood" not in str(everything)
    _, plan = fhir_get(world.behavioural, f"/fhir/CarePlan/{world.plan.pk}")
    assert "Counselling for low mood" in {a["detail"]["code"]["text"] for a in plan["activity"]}


def test_outsider_gets_404_operation_outcome_and_empty_searches(world, chart):
    for url in (
        f"/fhir/Patient/{world.patient.pk}",
        f"/fhir/CarePlan/{world.plan.pk}",
        f"/fhir/CareTeam/{world.patient.pk}",
        f"/fhir/Goal/{chart['goals'][0].pk}",
        f"/fhir/ServiceRequest/{chart['referral'].pk}",
        f"/fhir/Task/handoff-{chart['handoff'].pk}",
        f"/fhir/Task/referral-{chart['referral'].pk}",
        f"/fhir/Patient/{world.patient.pk}/$everything",
        "/fhir/Task/nonsense-1",
    ):
        status, data = fhir_get(world.outsider, url)
        assert status == 404, url
        assert data["resourceType"] == "OperationOutcome" and data["issue"][0]["code"] == "not-found"
    for kind in ("CarePlan", "CareTeam", "Goal", "ServiceRequest", "Task"):
        status, data = fhir_get(world.outsider, f"/fhir/{kind}?patient={world.patient.pk}")
        assert status == 200 and data["type"] == "searchset" and data["total"] == 0


def test_search_by_patient_returns_searchset_bundles(world, chart):
    pid = world.patient.pk
    expected = {"CarePlan": 1, "CareTeam": 1, "Goal": 2, "ServiceRequest": 1, "Task": 2}
    for kind, count in expected.items():
        status, data = fhir_get(world.nurse, f"/fhir/{kind}?patient=Patient/{pid}")
        assert status == 200 and data["total"] == count, kind
        assert all(e["search"]["mode"] == "match" for e in data["entry"])
    status, data = fhir_get(world.nurse, "/fhir/Goal")
    assert status == 400 and data["resourceType"] == "OperationOutcome"


def test_everything_bundle_holds_the_whole_visible_record_and_is_audited(world, chart):
    status, data = fhir_get(world.case_manager, f"/fhir/Patient/{world.patient.pk}/$everything")
    assert status == 200
    kinds = [e["resource"]["resourceType"] for e in data["entry"]]
    assert kinds.count("Patient") == 1 and kinds.count("CareTeam") == 1 and kinds.count("CarePlan") == 1
    assert kinds.count("Goal") == 2 and kinds.count("ServiceRequest") == 1 and kinds.count("Task") == 2
    assert AuditEvent.objects.filter(
        user=world.case_manager, action="export", patient_id=world.patient.pk
    ).exists()


def test_fhir_reads_are_audited(world, chart):
    fhir_get(world.nurse, f"/fhir/Goal/{chart['goals'][0].pk}")
    event = AuditEvent.objects.filter(user=world.nurse, object_type="careplans.goal").latest("id")
    assert event.action == "view" and event.patient_id == world.patient.pk


def test_everything_query_count_does_not_grow_with_the_record(world, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def add(n):
        for _ in range(n):
            goal = f.GoalFactory(care_plan=world.plan)
            f.ActivityFactory(care_plan=world.plan).goals.set([goal])
            f.HandoffFactory(patient=world.patient, from_user=world.nurse, to_user=world.pharmacist)
            f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)

    client = APIClient()
    client.force_authenticate(world.case_manager)
    add(2)
    with CaptureQueriesContext(connection) as few:
        client.get(f"/fhir/Patient/{world.patient.pk}/$everything")
    add(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(f"/fhir/Patient/{world.patient.pk}/$everything").status_code == 200


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------
def _export(user, plan_id, *, for_patient=None) -> dict:
    """A transaction-free collection Bundle of the plan and its goals, as a partner would
    send; `for_patient` re-targets it (every subject names that patient)."""
    _, plan = fhir_get(user, f"/fhir/CarePlan/{plan_id}")
    _, goals = fhir_get(user, f"/fhir/Goal?patient={plan['subject']['reference']}")
    if for_patient is not None:
        for resource in [plan, *(e["resource"] for e in goals.get("entry", []))]:
            resource["subject"] = {"reference": f"Patient/{for_patient.pk}"}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"http://example.org/fhir/CarePlan/{plan['id']}", "resource": plan}]
        + [
            {"fullUrl": f"http://example.org/fhir/Goal/{e['resource']['id']}", "resource": e["resource"]}
            for e in goals.get("entry", [])
        ],
    }


@pytest.fixture
def new_patient(world):
    patient = f.PatientFactory(mrn="P-NEW-1")
    team_services.membership_add(
        patient=patient,
        user=world.case_manager,
        discipline=f.discipline("case-management"),
        role="case-manager",
        start_date=timezone.localdate() - dt.timedelta(days=1),
    )
    return patient


def test_round_trip_keeps_goals_activities_links_and_statuses(world, chart, new_patient):
    bundle = _export(world.case_manager, world.plan.pk, for_patient=new_patient)
    client = APIClient()
    client.force_authenticate(world.case_manager)
    response = client.post(f"/fhir/Patient/{new_patient.pk}/CarePlan/$import", bundle, format="json")
    assert response.status_code == 201, response.content
    answer = response.json()
    Bundle.model_validate(answer)
    FhirCarePlan.model_validate(answer["entry"][0]["resource"])
    assert answer["entry"][-1]["resource"]["resourceType"] == "OperationOutcome"
    plan = CarePlan.objects.get(patient=new_patient)
    assert response["Location"].endswith(f"/fhir/CarePlan/{plan.pk}")
    assert (plan.status, plan.intent, plan.title) == ("active", "plan", world.plan.title)
    goals = {g.description: g for g in Goal.objects.filter(care_plan=plan)}
    assert set(goals) == {"Walks to the shop", "HbA1c below 7.5 %"}
    walk = goals["Walks to the shop"]
    assert (walk.lifecycle_status, walk.achievement_status, walk.expressed_by) == (
        "active",
        "improving",
        "patient",
    )
    assert (walk.target_measure, walk.target_value, walk.owner_discipline.code) == (
        "walking distance",
        "400 m",
        "physical-therapy",
    )
    assert goals["HbA1c below 7.5 %"].lifecycle_status == "proposed"
    activities = {a.title: a for a in Activity.objects.filter(care_plan=plan)}
    # the case manager sees the sensitive activity too, so it travels with the plan
    assert set(activities) == {"Teach insulin technique", "Counselling for low mood"}
    teach = activities["Teach insulin technique"]
    assert teach.status == "in-progress" and teach.due_date == chart["teach"].due_date
    assert [g.description for g in teach.goals.all()] == ["HbA1c below 7.5 %"]
    assert activities["Counselling for low mood"].owner_discipline.code == "behavioural-health"


def test_import_through_post_carePlan_uses_the_subject(world, chart, new_patient):
    bundle = _export(world.case_manager, world.plan.pk, for_patient=new_patient)
    bundle["entry"][0]["resource"]["status"] = "draft"
    client = APIClient()
    client.force_authenticate(world.case_manager)
    response = client.post("/fhir/CarePlan", bundle, format="json")
    assert response.status_code == 201, response.content
    assert CarePlan.objects.get(patient=new_patient).status == "draft"


def test_invalid_bundle_answers_400_operation_outcome_and_writes_nothing(world, chart, new_patient):
    bundle = _export(world.case_manager, world.plan.pk)
    bundle["entry"][0]["resource"]["activity"][0]["detail"]["status"] = "half-done"
    client = APIClient()
    client.force_authenticate(world.case_manager)
    before = (CarePlan.objects.count(), Goal.objects.count(), Activity.objects.count())
    response = client.post(f"/fhir/Patient/{new_patient.pk}/CarePlan/$import", bundle, format="json")
    assert response.status_code == 400
    outcome = response.json()
    OperationOutcome.model_validate(outcome)
    assert any("half-done" in issue["diagnostics"] for issue in outcome["issue"])
    broken = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "CarePlan"}}],
    }
    response = client.post(f"/fhir/Patient/{new_patient.pk}/CarePlan/$import", broken, format="json")
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    assert (CarePlan.objects.count(), Goal.objects.count(), Activity.objects.count()) == before


def test_import_that_fails_half_way_leaves_nothing_behind(world, chart):
    """The target patient already has an active plan: refused, and no goal is left over."""
    bundle = _export(world.case_manager, world.plan.pk)
    client = APIClient()
    client.force_authenticate(world.case_manager)
    before = (CarePlan.objects.count(), Goal.objects.count(), Activity.objects.count())
    response = client.post(f"/fhir/Patient/{world.patient.pk}/CarePlan/$import", bundle, format="json")
    assert response.status_code == 409
    issue = response.json()["issue"][0]
    assert "already has an active care plan" in issue["diagnostics"] and issue["code"] == "business-rule"
    assert issue["expression"] == ["Bundle.entry[0].resource.status"]
    assert (CarePlan.objects.count(), Goal.objects.count(), Activity.objects.count()) == before


def test_import_is_refused_to_outsiders_and_emergency_readers(world, chart):
    bundle = _export(world.case_manager, world.plan.pk)
    outsider = APIClient()
    outsider.force_authenticate(world.outsider)
    url = f"/fhir/Patient/{world.other_patient.pk}/CarePlan/$import"
    assert outsider.post(url, bundle, format="json").status_code == 404
    EmergencyAccess.objects.create(
        user=world.outsider,
        patient=world.other_patient,
        reason="Emergency department visit",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    response = outsider.post(url, bundle, format="json")
    assert response.status_code == 403 and response.json()["issue"][0]["code"] == "forbidden"


# ---------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------
def test_fhir_output_for_the_demo_data_validates(reference_data):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115 - silence the summary
    physician = User.objects.get(username="physician")
    casemanager = User.objects.get(username="casemanager")
    checked = 0
    for patient in Patient.objects.all():
        for user in (physician, casemanager):
            status, data = fhir_get(user, f"/fhir/Patient/{patient.pk}/$everything")
            if status == 200:
                checked += len(data["entry"])
    assert checked > 20


def test_unauthenticated_fhir_read_answers_401_operation_outcome(world):
    status, data = fhir_get(None, f"/fhir/Patient/{world.patient.pk}")
    assert status == 401 and data["issue"][0]["code"] == "login"


def test_import_refuses_nul_characters_with_400(world, new_patient):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "CarePlan",
                    "status": "draft",
                    "intent": "plan",
                    "title": "Bad\u0000title",
                    "subject": {"reference": f"Patient/{new_patient.pk}"},
                }
            }
        ],
    }
    client = APIClient()
    client.force_authenticate(world.case_manager)
    response = client.post(f"/fhir/Patient/{new_patient.pk}/CarePlan/$import", bundle, format="json")
    assert response.status_code == 400
    assert not CarePlan.objects.filter(patient=new_patient).exists()


def test_patient_search_by_mrn_finds_only_visible_patients(world):
    _, data = fhir_get(
        world.nurse, "/fhir/Patient?identifier=https://careteam.example.org/fhir/sid/mrn|P-TEAM-1"
    )
    assert data["total"] == 1 and data["entry"][0]["resource"]["id"] == str(world.patient.pk)
    _, data = fhir_get(world.nurse, "/fhir/Patient?identifier=P-OTHER-1")
    assert data["total"] == 0
    _, data = fhir_get(world.outsider, "/fhir/Patient?name=Alice")
    assert data["total"] == 0
    _, data = fhir_get(world.nurse, "/fhir/Patient?name=Alice")
    assert data["total"] == 1
    status, data = fhir_get(world.nurse, "/fhir/Patient")
    assert status == 400 and data["resourceType"] == "OperationOutcome"


def test_referral_made_from_a_sensitive_need_is_hidden_from_other_disciplines(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    need = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    referral = f.ReferralFactory(
        patient=world.patient, care_plan=world.plan, need=need, referred_by=world.case_manager
    )
    for url in (f"/fhir/ServiceRequest/{referral.pk}", f"/fhir/Task/referral-{referral.pk}"):
        assert fhir_get(world.pharmacist, url)[0] == 404
        assert fhir_get(world.behavioural, url)[0] == 200
    _, everything = fhir_get(world.pharmacist, f"/fhir/Patient/{world.patient.pk}/$everything")
    assert "ServiceRequest" not in {e["resource"]["resourceType"] for e in everything["entry"]}
    _, found = fhir_get(world.pharmacist, f"/fhir/ServiceRequest?patient={world.patient.pk}")
    assert found["total"] == 0
    api = APIClient()
    api.force_authenticate(world.pharmacist)
    assert api.get("/api/v1/referrals/").json()["count"] == 0
    assert api.get(f"/api/v1/referrals/{referral.pk}/").status_code == 404
