"""An API create naming a row the caller may not see (a plan, patient, goal, need or
activity of another team, or a hidden sensitive need) answers 400 as for a missing id,
writes nothing, and is audited as one denial naming that row's patient."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from careplans.models import Activity, CarePlan, Goal, Need
from careteam.models import AuditEvent, Handoff, TeamMembership
from referrals.models import Referral
from tests import factories as f

pytestmark = pytest.mark.django_db


def _hidden(world) -> dict:
    service = f.ServiceFactory()
    return {
        "plan": world.other_plan.pk,
        "patient": world.other_patient.pk,
        "goal": f.GoalFactory(care_plan=world.other_plan).pk,
        "need": f.NeedFactory(care_plan=world.other_plan).pk,
        "activity": f.ActivityFactory(care_plan=world.other_plan).pk,
        "service": service.pk,
    }


def _bodies(world, ids: dict) -> dict:
    return {
        "goal": ("/api/v1/goals/", Goal, {"care_plan": ids["plan"], "description": "Walk daily"}),
        "need": (
            "/api/v1/needs/",
            Need,
            {
                "care_plan": ids["plan"],
                "domain": "social",
                "category": "transportation",
                "description": "Rides",
            },
        ),
        "activity": (
            "/api/v1/activities/",
            Activity,
            {"care_plan": ids["plan"], "title": "Call", "owner_discipline": "nursing"},
        ),
        "activity-linking-a-hidden-goal": (
            "/api/v1/activities/",
            Activity,
            {
                "care_plan": world.plan.pk,
                "title": "Call",
                "owner_discipline": "nursing",
                "goals": [ids["goal"]],
            },
        ),
        "activity-linking-a-hidden-need": (
            "/api/v1/activities/",
            Activity,
            {
                "care_plan": world.plan.pk,
                "title": "Call",
                "owner_discipline": "nursing",
                "needs": [ids["need"]],
            },
        ),
        "care-plan": ("/api/v1/care-plans/", CarePlan, {"patient": ids["patient"], "title": "Plan"}),
        "handoff": (
            "/api/v1/handoffs/",
            Handoff,
            f.handoff_payload(patient=world.other_patient, to_user=world.other_team_nurse),
        ),
        "handoff-on-a-hidden-activity": (
            "/api/v1/handoffs/",
            Handoff,
            {
                **f.handoff_payload(patient=world.patient, to_user=world.pharmacist),
                "activity": ids["activity"],
            },
        ),
        "referral": (
            "/api/v1/referrals/",
            Referral,
            {"care_plan": ids["plan"], "service": ids["service"], "reason": "Rides", "send": False},
        ),
        "referral-from-a-hidden-need": (
            "/api/v1/referrals/",
            Referral,
            {
                "care_plan": world.plan.pk,
                "service": ids["service"],
                "reason": "Rides",
                "send": False,
                "need": ids["need"],
            },
        ),
        "team-membership": (
            "/api/v1/team-memberships/",
            TeamMembership,
            {"patient": ids["patient"], "user": world.nurse.pk, "discipline": "nursing"},
        ),
    }


CASES = [
    "goal",
    "need",
    "activity",
    "activity-linking-a-hidden-goal",
    "activity-linking-a-hidden-need",
    "care-plan",
    "handoff",
    "handoff-on-a-hidden-activity",
    "referral",
    "referral-from-a-hidden-need",
    "team-membership",
]


@pytest.mark.parametrize("case", CASES)
def test_a_create_naming_a_hidden_row_is_refused_and_audited_with_its_patient(world, case):
    url, model, body = _bodies(world, _hidden(world))[case]
    client = APIClient()
    client.force_authenticate(world.case_manager)
    rows, before = (
        model.objects.count(),
        AuditEvent.objects.order_by("-id").values_list("id", flat=True).first(),
    )
    response = client.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert model.objects.count() == rows
    denials = list(AuditEvent.objects.filter(id__gt=before or 0, outcome="denied"))
    assert [(d.patient_id, d.username, d.action) for d in denials] == [
        (world.other_patient.pk, world.case_manager.username, "update")
    ]
    assert "not visible" in denials[0].detail


def test_a_create_naming_a_missing_row_answers_the_same_and_is_audited_without_a_patient(world):
    client = APIClient()
    client.force_authenticate(world.case_manager)
    hidden = client.post(
        "/api/v1/goals/", {"care_plan": world.other_plan.pk, "description": "x"}, format="json"
    )
    missing = client.post("/api/v1/goals/", {"care_plan": 987654321, "description": "x"}, format="json")
    assert (hidden.status_code, missing.status_code) == (400, 400)
    assert hidden.json()["care_plan"] == [
        m.replace("987654321", str(world.other_plan.pk)) for m in missing.json()["care_plan"]
    ]
    row = AuditEvent.objects.filter(outcome="denied").latest("id")
    assert (row.patient_id, row.object_type, row.object_id) == (None, "careplans.careplan", "987654321")


def test_a_create_on_a_visible_plan_writes_no_denial(world):
    client = APIClient()
    client.force_authenticate(world.case_manager)
    response = client.post(
        "/api/v1/goals/", {"care_plan": world.plan.pk, "description": "Walk"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert not AuditEvent.objects.filter(outcome="denied").exists()
