"""Refused edits (409, 412, 428 from the API and the page forms) and API token sign-ins
leave an audit event that names the object and the patient by id only."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from careplans.models import Goal
from careteam.models import AuditEvent
from tests import factories as f
from tests.test_api import client_for, patch
from tests.test_ui_views import HX, _activity_post

pytestmark = pytest.mark.django_db


def _refused():
    return AuditEvent.objects.filter(action="edit-refused")


def _no_patient_data(event: AuditEvent, world, *texts: str) -> None:
    """Ids only: no name, MRN or field value in what the event records."""
    recorded = " ".join([event.detail, event.object_type, event.object_id, event.path])
    for text in (world.patient.given_name, world.patient.family_name, world.patient.mrn, *texts):
        assert text not in recorded, (text, recorded)


def test_api_edit_on_a_stale_version_is_audited_as_refused_with_the_versions(world):
    goal = f.GoalFactory(care_plan=world.plan, description="Original")
    client = client_for(world.case_manager)
    assert patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "First"}, 1).status_code == 200
    assert patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "Walk daily"}, 1).status_code == 412
    event = _refused().get()
    assert (event.user_id, event.outcome, event.patient_id) == (
        world.case_manager.pk,
        "denied",
        world.patient.pk,
    )
    assert (event.object_type, event.object_id) == ("careplans.goal", str(goal.pk))
    assert "HTTP 412 PATCH" in event.detail and "stale version: sent 1, current 2" in event.detail
    _no_patient_data(event, world, "Walk daily", "First")
    assert Goal.objects.get(pk=goal.pk).description == "First"


def test_api_edit_without_if_match_is_audited_as_refused(world):
    goal = f.GoalFactory(care_plan=world.plan)
    response = patch(
        client_for(world.case_manager), f"/api/v1/goals/{goal.pk}/", {"description": "x y"}, None
    )
    assert response.status_code == 428
    event = _refused().get()
    assert (event.object_id, event.patient_id) == (str(goal.pk), world.patient.pk)
    assert "HTTP 428 PATCH" in event.detail and "no If-Match" in event.detail


def test_api_illegal_transition_is_audited_as_refused_with_its_code(world):
    response = patch(
        client_for(world.case_manager), f"/api/v1/care-plans/{world.plan.pk}/", {"status": "draft"}, 1
    )
    assert response.status_code == 409
    event = _refused().get()
    assert (event.object_type, event.object_id) == ("careplans.careplan", str(world.plan.pk))
    assert event.patient_id == world.patient.pk
    assert "conflict: illegal_transition" in event.detail
    _no_patient_data(event, world, world.plan.title)


def test_page_form_saved_over_a_newer_change_is_audited_as_refused(client, world):
    act = f.ActivityFactory(care_plan=world.plan, title="Home visit")
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    client.force_login(world.case_manager)
    assert client.post(url, _activity_post(act, 1, title="Home visit on Monday"), **HX).status_code == 200
    client.force_login(world.nurse)
    assert client.post(url, _activity_post(act, 1, title="Interpreter"), **HX).status_code == 409
    event = _refused().get()
    assert (event.user_id, event.outcome, event.patient_id) == (world.nurse.pk, "denied", world.patient.pk)
    assert (event.object_type, event.object_id) == ("careplans.activity", str(act.pk))
    assert event.detail == "HTTP 409 POST careplans:activity_edit: stale version: sent 1, current 2"
    _no_patient_data(event, world, "Home visit", "Interpreter")


def test_page_step_the_handoff_cannot_take_is_audited_as_refused(client, world):
    from tests.test_handoff_views import _handoff, _login

    handoff = _handoff(world, to_user=world.nurse)
    _login(client, world.nurse)
    url = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    assert (
        client.post(url, {"action": "complete", "expected_version": handoff.version}).status_code == 409
    )  # not accepted yet
    event = _refused().get()
    assert (event.object_type, event.object_id) == ("careteam.handoff", str(handoff.pk))
    assert event.patient_id == world.patient.pk
    _no_patient_data(event, world, handoff.situation)


def test_accepted_edits_and_refused_reads_leave_no_refusal_event(world):
    goal = f.GoalFactory(care_plan=world.plan)
    client = client_for(world.case_manager)
    assert patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "Fine"}, 1).status_code == 200
    assert client_for(world.outsider).get(f"/api/v1/goals/{goal.pk}/").status_code == 404
    assert not _refused().exists()


def test_api_token_sign_in_is_audited_without_patient(world):
    world.nurse.set_password("correct-horse-battery-staple")
    world.nurse.save()
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": world.nurse.username, "password": "correct-horse-battery-staple"},
        format="json",
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(user=world.nurse, action="login")
    assert (event.outcome, event.patient_id, event.detail) == ("allowed", None, "API token issued")
    assert event.path == "/api/v1/auth/token/"
    failed = APIClient().post(
        "/api/v1/auth/token/", {"username": world.nurse.username, "password": "wrong"}, format="json"
    )
    assert failed.status_code == 400
    assert AuditEvent.objects.filter(action="login", outcome="denied").count() == 1
