"""US Core 6.1: every CarePlan, CareTeam and Goal the server emits meets its profile's
required elements and fixed slices (tests/us_core.py reads the StructureDefinitions'
differentials), leaves out no must-support element it has data for, and names team
members as Practitioners the server serves, to the same callers only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from django.utils import timezone
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from rest_framework.test import APIClient

from careteam import services as team_services
from careteam.models import EmergencyAccess, TeamMembership
from tests import factories as f
from tests import us_core

pytestmark = pytest.mark.django_db
PROFILES = {
    "CarePlan": us_core.load("us-core-careplan"),
    "CareTeam": us_core.load("us-core-careteam"),
    "Goal": us_core.load("us-core-goal"),
}
DATA = Path(__file__).parent / "data" / "fhir"


def get(user, url):
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(url)
    return response.status_code, response.json()


@pytest.fixture
def record(world):
    f.GoalFactory(
        care_plan=world.plan, target_measure="HbA1c", target_value="< 7 %", target_due=dt.date(2027, 1, 1)
    )
    f.GoalFactory(care_plan=world.plan)
    f.ActivityFactory(care_plan=world.plan, title="Teach insulin technique")
    imported = f.PatientFactory(mrn="P-SYN-2")
    team_services.membership_add(
        patient=imported,
        user=world.case_manager,
        discipline=f.discipline("case-management"),
        role="case-manager",
        start_date=timezone.localdate() - dt.timedelta(days=1),
    )
    client = APIClient()
    client.force_authenticate(world.case_manager)
    bundle = json.loads((DATA / "synthea_multi_plan.json").read_text())
    assert (
        client.post(f"/fhir/Patient/{imported.pk}/CarePlan/$import", bundle, format="json").status_code == 201
    )
    return imported


def test_emitted_careplans_careteams_and_goals_meet_us_core(world, record):
    checked = {"CarePlan": 0, "CareTeam": 0, "Goal": 0}
    for patient in (world.patient, record):
        _, data = get(world.case_manager, f"/fhir/Patient/{patient.pk}/$everything")
        for entry in data["entry"]:
            resource = entry["resource"]
            kind = resource["resourceType"]
            if kind not in PROFILES:
                continue
            report = us_core.check(resource, PROFILES[kind])
            assert report.errors == [], (kind, resource["id"], report.errors)
            missing = set(report.missing_must_support)
            if kind == "Goal":
                # a goal has a start or a due date (an imported one: when its source gave one);
                # a target only when one was set
                dated = "startDate" in resource or any("dueDate" in t for t in resource.get("target", []))
                imported = patient == record
                assert dated or imported, resource
                assert missing <= {"Goal.start[x]", "Goal.target", "Goal.target.due[x]"}, missing
            else:
                assert missing == set(), (kind, missing)
            checked[kind] += 1
    assert checked["CarePlan"] == 4 and checked["CareTeam"] == 2 and checked["Goal"] == 5


def test_the_checker_catches_what_a_profile_requires(world):
    careteam = json.loads((us_core.SHARED.parent / "careteam-example.json").read_text())
    careteam["meta"]["profile"] = [PROFILES["CareTeam"]["url"]]
    assert us_core.check(careteam, PROFILES["CareTeam"]).errors == []
    # the 9.0 example has no assess-plan category: US Core 6.1 requires one
    plan = json.loads((us_core.SHARED.parent / "careplan-ulcer-example.json").read_text())
    plan["meta"]["profile"] = [PROFILES["CarePlan"]["url"]]
    errors = us_core.check(plan, PROFILES["CarePlan"]).errors
    assert errors == ["CarePlan.category:AssessPlan: at least 1 required, 0 present"]
    del careteam["participant"]
    assert us_core.check(careteam, PROFILES["CareTeam"]).errors


def test_careteam_members_are_practitioners_the_server_serves_to_the_same_callers(world):
    _, team = get(world.nurse, f"/fhir/CareTeam/{world.patient.pk}")
    refs = [p["member"]["reference"] for p in team["participant"]]
    assert refs and all(r.startswith("Practitioner/") for r in refs)
    for ref in refs:
        status, practitioner = get(world.nurse, f"/fhir/{ref}")
        assert status == 200, ref
        Practitioner.model_validate(practitioner)
        assert {t["use"] for t in practitioner.get("telecom", [])} <= {"work"}
        # another team's nurse and an outsider see none of them
        assert get(world.other_team_nurse, f"/fhir/{ref}")[0] == 404
        assert get(world.outsider, f"/fhir/{ref}")[0] == 404
    roles = {c["code"] for p in team["participant"] for r in p["role"] for c in r["coding"]}
    assert {"106292003", "nursing", "case-manager", "309343006"} <= roles
    _, found = get(world.outsider, f"/fhir/Practitioner?_id={world.nurse.pk}")
    assert found["total"] == 0
    _, found = get(world.nurse, f"/fhir/Practitioner?name={world.pharmacist.last_name}")
    assert [e["resource"]["id"] for e in found["entry"]] == [str(world.pharmacist.pk)]
    _, mine = get(world.other_team_nurse, "/fhir/Practitioner?identifier=nurse2")
    assert mine["total"] == 1


def test_practitioner_roles_read_and_search(world):
    membership = TeamMembership.objects.get(patient=world.patient, user=world.pharmacist)
    status, role = get(world.nurse, f"/fhir/PractitionerRole/{membership.pk}")
    assert status == 200 and role["practitioner"]["reference"] == f"Practitioner/{world.pharmacist.pk}"
    PractitionerRole.model_validate(role)
    assert get(world.outsider, f"/fhir/PractitionerRole/{membership.pk}")[0] == 404
    _, found = get(world.nurse, f"/fhir/PractitionerRole?practitioner=Practitioner/{world.pharmacist.pk}")
    assert [e["resource"]["id"] for e in found["entry"]] == [str(membership.pk)]
    _, found = get(world.nurse, "/fhir/PractitionerRole?role=46255001&_include=PractitionerRole:practitioner")
    assert {e["resource"]["resourceType"] for e in found["entry"]} == {"PractitionerRole", "Practitioner"}


def test_a_team_without_current_members_is_inactive_with_its_former_members(world):
    patient = f.PatientFactory(mrn="P-FORMER-1")
    membership = team_services.membership_add(
        patient=patient,
        user=world.other_team_nurse,
        discipline=f.discipline("nursing"),
        start_date=timezone.localdate() - dt.timedelta(days=30),
    )
    team_services.membership_end(membership=membership)
    lonely = f.PatientFactory(mrn="P-NOBODY-1")
    for p in (patient, lonely):
        EmergencyAccess.objects.create(
            user=world.outsider,
            patient=p,
            reason="Emergency",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    status, team = get(world.outsider, f"/fhir/CareTeam/{patient.pk}")
    assert status == 200 and team["status"] == "inactive"
    assert [p["member"]["reference"] for p in team["participant"]] == [
        f"Practitioner/{world.other_team_nurse.pk}"
    ]
    assert "end" in team["participant"][0]["period"]
    assert get(world.outsider, f"/fhir/Practitioner/{world.other_team_nurse.pk}")[0] == 200
    # a patient whose team never had a member has no CareTeam at all
    assert get(world.outsider, f"/fhir/CareTeam/{lonely.pk}")[0] == 404
    _, everything = get(world.outsider, f"/fhir/Patient/{lonely.pk}/$everything")
    assert "CareTeam" not in {e["resource"]["resourceType"] for e in everything["entry"]}
    _, found = get(world.outsider, f"/fhir/CareTeam?patient={lonely.pk}")
    assert found["total"] == 0


def test_patient_carries_race_ethnicity_and_birth_sex_when_known(world):
    _, plain = get(world.nurse, f"/fhir/Patient/{world.patient.pk}")
    assert "extension" not in plain
    world.patient.race, world.patient.ethnicity, world.patient.birth_sex = "2106-3", "2186-5", "F"
    world.patient.save()
    _, patient = get(world.nurse, f"/fhir/Patient/{world.patient.pk}")
    assert patient["meta"]["profile"] == ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]
    by_url = {e["url"].rsplit("/", 1)[-1]: e for e in patient["extension"]}
    assert by_url["us-core-race"]["extension"][0]["valueCoding"]["code"] == "2106-3"
    assert by_url["us-core-ethnicity"]["extension"][1]["valueString"] == "Not Hispanic or Latino"
    assert by_url["us-core-birthsex"]["valueCode"] == "F"
