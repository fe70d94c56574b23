"""A goal can be marked sensitive itself (besides being hidden with the hidden needs it
exists for): then it follows the sensitivity policy everywhere, as needs and activities
do: editor, item page, history, API, FHIR and $everything."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from careplans import services as plan_services
from careteam.models import SensitivityCategory
from careteam.permissions import access_patient_by_id
from tests import factories as f

pytestmark = pytest.mark.django_db
TEXT = "GOAL-SENSITIVE-OWN-TEXT"


@pytest.fixture
def sensitive_goal(world):
    access = access_patient_by_id(world.case_manager, world.patient.pk)
    return plan_services.goal_create(
        access=access,
        plan=world.plan,
        by=world.case_manager,
        description=TEXT,
        sensitivity=SensitivityCategory.objects.get(code="domestic-violence"),
    )


def test_a_goal_marked_sensitive_is_hidden_from_excluded_disciplines(world, sensitive_goal):
    goal = sensitive_goal
    nurse_pages = Client()
    nurse_pages.force_login(world.nurse)  # nursing may not see domestic violence
    assert nurse_pages.get(reverse("careplans:goal_detail", kwargs={"goal_id": goal.pk})).status_code == 404
    for url in (
        reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk}),
        reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}),
        reverse("careplans:plan_print", kwargs={"plan_id": world.plan.pk}),
    ):
        response = nurse_pages.get(url)
        assert response.status_code == 200 and TEXT not in response.content.decode(), url
    api = APIClient()
    api.force_authenticate(world.nurse)
    assert TEXT not in api.get("/api/v1/goals/").content.decode()
    assert api.get(f"/api/v1/goals/{goal.pk}/").status_code == 404
    assert TEXT not in api.get(f"/fhir/Goal?patient={world.patient.pk}").content.decode()
    assert TEXT not in api.get(f"/fhir/Patient/{world.patient.pk}/$everything").content.decode()

    # the case manager sees it, labelled
    cm = APIClient()
    cm.force_authenticate(world.case_manager)
    row = cm.get(f"/api/v1/goals/{goal.pk}/").json()
    assert row["sensitivity"] == "domestic-violence"
    assert TEXT in cm.get(f"/fhir/Patient/{world.patient.pk}/$everything").content.decode()


def test_only_a_category_the_author_may_see_can_be_given(world):
    api = APIClient()
    api.force_authenticate(world.nurse)
    response = api.post(
        "/api/v1/goals/",
        {"care_plan": world.plan.pk, "description": "x goal", "sensitivity": "domestic-violence"},
        format="json",
    )
    assert response.status_code in (400, 403)
    assert not world.plan.goals.filter(description="x goal").exists()
    allowed = api.post(
        "/api/v1/goals/",
        {
            "care_plan": world.plan.pk,
            "description": "Talk about intimacy",
            "sensitivity": "sexual-reproductive-health",
        },
        format="json",
    )
    assert allowed.status_code == 201, allowed.content
    assert allowed.json()["sensitivity"] == "sexual-reproductive-health"
    pharmacist = APIClient()
    pharmacist.force_authenticate(world.pharmacist)
    assert "Talk about intimacy" not in pharmacist.get("/api/v1/goals/").content.decode()


def test_the_goal_form_offers_the_categories_the_editor_may_see(world):
    client = Client()
    client.force_login(world.nurse)
    form = client.get(
        reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk}), headers={"HX-Request": "true"}
    ).content.decode()
    assert "Sexual and reproductive health" in form and "Domestic violence" not in form
    f.GoalFactory(care_plan=world.plan)
