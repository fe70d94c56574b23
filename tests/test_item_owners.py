"""Who may give a new goal or activity to whom. The case manager and the plan lead give
items to any discipline and assign them to anyone on the team; other members only to a
discipline they hold on the team, assigned to nobody, themselves or a colleague of that
discipline on the team. One rule in the permissions module, applied by the services for
the pages, the API and FHIR alike."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from careplans import services as plan_services
from careplans.models import Activity, Goal
from careteam import services as team_services
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db


def _activity(world, who, *, owner="nursing", assignee=None):
    access = patient_access(who, world.patient)
    return plan_services.activity_create(
        access=access,
        plan=world.plan,
        by=who,
        title="Check the inhaler technique",
        owner_discipline=f.discipline(owner),
        assigned_to=assignee,
    )


def _second_nurse(world):
    nurse = f.UserFactory(username="nurse3", disciplines=["nursing"])
    team_services.membership_add(
        patient=world.patient,
        user=nurse,
        discipline=f.discipline("nursing"),
        start_date=timezone.localdate() - dt.timedelta(days=1),
    )
    return nurse


def test_a_member_cannot_create_an_activity_owned_by_another_discipline(world):
    with pytest.raises(ValidationError) as refused:
        _activity(world, world.nurse, owner="pharmacy")
    assert "owner_discipline" in refused.value.message_dict
    assert not Activity.objects.exists()


def test_a_member_cannot_create_a_goal_owned_by_another_discipline(world):
    access = patient_access(world.nurse, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.goal_create(
            access=access,
            plan=world.plan,
            by=world.nurse,
            description="Inhaler used well",
            owner_discipline=f.discipline("pharmacy"),
        )
    assert "owner_discipline" in refused.value.message_dict
    # owned by their own discipline, or by none (the patient's goal), is fine
    for owner in (f.discipline("nursing"), None):
        plan_services.goal_create(
            access=access, plan=world.plan, by=world.nurse, description="Walks", owner_discipline=owner
        )
    assert Goal.objects.filter(care_plan=world.plan).count() == 2


def test_a_member_assigns_their_own_discipline_to_themselves_or_a_colleague_of_it(world):
    colleague = _second_nurse(world)
    assert _activity(world, world.nurse).assigned_to is None
    assert _activity(world, world.nurse, assignee=world.nurse).assigned_to == world.nurse
    assert _activity(world, world.nurse, assignee=colleague).assigned_to == colleague
    with pytest.raises(ValidationError) as refused:
        _activity(world, world.nurse, assignee=world.pharmacist)
    assert "assigned_to" in refused.value.message_dict


@pytest.mark.parametrize("who", ["case_manager", "lead"])
def test_the_case_manager_and_lead_create_for_any_discipline_and_anyone(world, who):
    user = getattr(world, who)
    activity = _activity(world, user, owner="pharmacy", assignee=world.pharmacist)
    assert (activity.owner_discipline.code, activity.assigned_to) == ("pharmacy", world.pharmacist)


def test_a_member_cannot_reassign_an_activity_to_another_discipline_member(world):
    activity = _activity(world, world.nurse, assignee=world.nurse)
    access = patient_access(world.nurse, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.item_update(
            access=access,
            item=activity,
            by=world.nurse,
            changes={"assigned_to": world.pharmacist},
            expected_version=activity.version,
        )
    assert "assigned_to" in refused.value.message_dict
    activity.refresh_from_db()
    assert activity.assigned_to == world.nurse


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"owner_discipline": "pharmacy"}, "owner_discipline"),
        ({"owner_discipline": "nursing", "assigned_to": "pharmacist"}, "assigned_to"),
    ],
)
def test_the_api_answers_400_for_an_activity_the_member_may_not_give(world, body, field):
    if body.get("assigned_to") == "pharmacist":
        body = {**body, "assigned_to": world.pharmacist.pk}
    response = _api(world.nurse).post(
        "/api/v1/activities/", {"care_plan": world.plan.pk, "title": "Check", **body}, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Activity.objects.exists()


def test_the_api_answers_400_for_a_goal_of_another_discipline(world):
    response = _api(world.nurse).post(
        "/api/v1/goals/",
        {"care_plan": world.plan.pk, "description": "x", "owner_discipline": "pharmacy"},
        format="json",
    )
    assert response.status_code == 400 and "owner_discipline" in response.json()


def test_the_page_refuses_an_activity_for_another_discipline(world, client):
    client.force_login(world.nurse)
    response = client.post(
        f"/plans/{world.plan.pk}/activities/new/",
        {
            "new-activity-title": "Check",
            "new-activity-owner_discipline": f.discipline("pharmacy").pk,
        },
    )
    assert response.status_code in (400, 403, 422)
    assert not Activity.objects.exists()


def test_a_fhir_import_by_a_member_cannot_give_activities_to_another_discipline(world):
    ref = {"reference": f"Patient/{world.patient.pk}"}
    owner = "https://careteam.example.org/fhir/StructureDefinition/owner-discipline"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:plan",
                "resource": {
                    "resourceType": "CarePlan",
                    "status": "draft",
                    "intent": "plan",
                    "title": "Imported",
                    "subject": ref,
                    "activity": [
                        {
                            "detail": {
                                "status": "not-started",
                                "code": {"text": "Review the regimen"},
                                "extension": [{"url": owner, "valueCode": "pharmacy"}],
                            }
                        }
                    ],
                },
            }
        ],
    }
    response = _api(world.nurse).post(
        f"/fhir/Patient/{world.patient.pk}/CarePlan/$import", bundle, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert not world.patient.care_plans.filter(title="Imported").exists()
