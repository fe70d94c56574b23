"""A new plan, goal, need or activity starts at a status the status machine can start
from: later statuses (a goal completed and achieved, a plan completed) are reached by
changing the item once it exists, so its history shows how. The same rule answers the
pages, the API (400 naming the field) and FHIR $import (400 OperationOutcome, nothing
written), because it lives in the services."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from careplans import services as plan_services
from careplans.models import (
    ACTIVITY_INITIAL_STATUSES,
    ACTIVITY_TRANSITIONS,
    CAREPLAN_INITIAL_STATUSES,
    CAREPLAN_TRANSITIONS,
    GOAL_INITIAL_STATUSES,
    GOAL_TRANSITIONS,
    NEED_INITIAL_STATUSES,
    NEED_TRANSITIONS,
    Activity,
    CarePlan,
    Goal,
    Need,
)
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db


def _late(transitions, initial):
    return sorted(set(transitions) - set(initial))


# ---------------------------------------------------------------------------
# The services
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("status", _late(CAREPLAN_TRANSITIONS, CAREPLAN_INITIAL_STATUSES))
def test_a_plan_cannot_be_created_past_its_start(world, status):
    access = patient_access(world.case_manager, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.careplan_create(access=access, by=world.case_manager, title="Late", status=status)
    assert "status" in refused.value.message_dict
    assert not CarePlan.objects.filter(title="Late").exists()


@pytest.mark.parametrize("status", _late(GOAL_TRANSITIONS, GOAL_INITIAL_STATUSES))
def test_a_goal_cannot_be_created_past_its_start(world, status):
    access = patient_access(world.case_manager, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.goal_create(
            access=access, plan=world.plan, by=world.case_manager, description="Late", lifecycle_status=status
        )
    assert "lifecycle_status" in refused.value.message_dict


@pytest.mark.parametrize("achievement", ["achieved", "not-achieved", "not-attainable"])
def test_a_goal_cannot_be_created_with_its_outcome(world, achievement):
    access = patient_access(world.case_manager, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.goal_create(
            access=access,
            plan=world.plan,
            by=world.case_manager,
            description="Late",
            lifecycle_status="active",
            achievement_status=achievement,
        )
    assert "achievement_status" in refused.value.message_dict


@pytest.mark.parametrize("status", _late(NEED_TRANSITIONS, NEED_INITIAL_STATUSES))
def test_a_need_cannot_be_created_past_its_start(world, status):
    access = patient_access(world.case_manager, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.need_create(
            access=access,
            plan=world.plan,
            by=world.case_manager,
            domain="social",
            category="transportation",
            description="Late",
            status=status,
        )
    assert "status" in refused.value.message_dict


@pytest.mark.parametrize("status", _late(ACTIVITY_TRANSITIONS, ACTIVITY_INITIAL_STATUSES))
def test_an_activity_cannot_be_created_past_its_start(world, status):
    access = patient_access(world.case_manager, world.patient)
    with pytest.raises(ValidationError) as refused:
        plan_services.activity_create(
            access=access,
            plan=world.plan,
            by=world.case_manager,
            title="Late",
            owner_discipline=f.discipline("nursing"),
            status=status,
        )
    assert "status" in refused.value.message_dict


def test_every_initial_status_can_be_created_and_then_moved_on(world):
    access = patient_access(world.case_manager, world.patient)
    for status in GOAL_INITIAL_STATUSES:
        plan_services.goal_create(
            access=access, plan=world.plan, by=world.case_manager, description=status, lifecycle_status=status
        )
    goal = Goal.objects.get(care_plan=world.plan, description="active")
    done = plan_services.item_update(
        access=access,
        item=goal,
        by=world.case_manager,
        changes={"lifecycle_status": "completed", "achievement_status": "achieved"},
        expected_version=goal.version,
    )
    assert (done.lifecycle_status, done.achievement_status) == ("completed", "achieved")


# ---------------------------------------------------------------------------
# The API: 400 naming the field, nothing written
# ---------------------------------------------------------------------------
def _api_cases(world):
    return {
        "goal-completed": (
            "/api/v1/goals/",
            Goal,
            {"care_plan": world.plan.pk, "description": "x", "lifecycle_status": "completed"},
            "lifecycle_status",
        ),
        "goal-achieved": (
            "/api/v1/goals/",
            Goal,
            {
                "care_plan": world.plan.pk,
                "description": "x",
                "lifecycle_status": "active",
                "achievement_status": "achieved",
            },
            "achievement_status",
        ),
        "plan-completed": (
            "/api/v1/care-plans/",
            CarePlan,
            {"patient": world.patient.pk, "title": "x", "status": "completed"},
            "status",
        ),
        "need-resolved": (
            "/api/v1/needs/",
            Need,
            {
                "care_plan": world.plan.pk,
                "domain": "social",
                "category": "transportation",
                "description": "x",
                "status": "resolved",
            },
            "status",
        ),
        "activity-completed": (
            "/api/v1/activities/",
            Activity,
            {"care_plan": world.plan.pk, "title": "x", "owner_discipline": "nursing", "status": "completed"},
            "status",
        ),
    }


@pytest.mark.parametrize(
    "case", ["goal-completed", "goal-achieved", "plan-completed", "need-resolved", "activity-completed"]
)
def test_the_api_answers_400_for_a_create_past_the_start(world, case):
    url, model, body, field = _api_cases(world)[case]
    client = APIClient()
    client.force_authenticate(world.case_manager)
    before = model.objects.count()
    response = client.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json() and "A new" in str(response.json()[field])
    assert model.objects.count() == before


# ---------------------------------------------------------------------------
# Pages and FHIR
# ---------------------------------------------------------------------------
def test_the_goal_page_offers_and_accepts_only_starting_statuses(world, client):
    client.force_login(world.case_manager)
    url = f"/plans/{world.plan.pk}/goals/new/"
    response = client.post(
        url,
        {
            "new-goal-description": "Walk daily",
            "new-goal-expressed_by": "patient",
            "new-goal-priority": "medium-priority",
            "new-goal-lifecycle_status": "completed",
        },
    )
    assert response.status_code in (400, 422)
    assert not Goal.objects.filter(description="Walk daily").exists()


def test_the_plan_form_refuses_a_completed_plan(world, client):
    client.force_login(world.case_manager)
    before = CarePlan.objects.count()
    response = client.post(
        f"/patients/{world.patient.pk}/plans/new/", {"title": "Done", "status": "completed"}
    )
    assert response.status_code == 422
    assert CarePlan.objects.count() == before


@pytest.mark.parametrize(
    ("plan_status", "goal_status"), [("completed", "proposed"), ("draft", "completed"), ("revoked", "active")]
)
def test_a_fhir_import_keeps_the_statuses_another_system_recorded(world, plan_status, goal_status):
    """$import records what another system already holds (a Synthea history has completed
    plans and achieved goals), so the statuses arrive as sent; the rule that a new plan or
    goal starts at the beginning holds for what is created here (forms, REST, FHIR create)."""
    ref = {"reference": f"Patient/{world.patient.pk}"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:plan",
                "resource": {
                    "resourceType": "CarePlan",
                    "status": plan_status,
                    "intent": "plan",
                    "title": "Imported",
                    "subject": ref,
                    "goal": [{"reference": "urn:uuid:goal"}],
                },
            },
            {
                "fullUrl": "urn:uuid:goal",
                "resource": {
                    "resourceType": "Goal",
                    "lifecycleStatus": goal_status,
                    "description": {"text": "Walk daily"},
                    "subject": ref,
                },
            },
        ],
    }
    client = APIClient()
    client.force_authenticate(world.case_manager)
    response = client.post(f"/fhir/Patient/{world.patient.pk}/CarePlan/$import", bundle, format="json")
    assert response.status_code == 201, response.content
    plan = CarePlan.objects.get(patient=world.patient, title="Imported")
    assert plan.status == plan_status
    assert Goal.objects.get(care_plan=plan, description="Walk daily").lifecycle_status == goal_status
