"""The plan history shows every changed field of a version (not the first few) and names
the goals and needs whose links changed; a link to a need the reader may not see is
neither named nor hinted at."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careplans import services as plan_services
from careteam.permissions import access_patient_by_id
from tests import factories as f

pytestmark = pytest.mark.django_db


def history_page(user, plan):
    client = Client()
    client.force_login(user)
    response = client.get(reverse("careplans:plan_history", kwargs={"plan_id": plan.pk}))
    assert response.status_code == 200
    return response.content.decode()


def test_every_changed_field_and_the_links_are_named(world):
    goal = f.GoalFactory(care_plan=world.plan, description="Walk to the mailbox")
    need = f.NeedFactory(care_plan=world.plan, description="No rides to clinic")
    hidden = f.NeedFactory(
        care_plan=world.plan, description="HIDDEN-NEED-TEXT", sensitivity=world.behavioural_health
    )
    act = f.ActivityFactory(
        care_plan=world.plan, title="Arrange rides", owner_discipline=f.discipline("nursing")
    )
    access = access_patient_by_id(world.case_manager, world.patient.pk)
    plan_services.item_update(
        access=access,
        item=act,
        by=world.case_manager,
        changes={
            "title": "Arrange rides to clinic",
            "description": "Tuesdays and Thursdays",
            "status": "in-progress",
            "due_date": timezone.localdate() + dt.timedelta(days=5),
            "assigned_to": world.nurse,
            "owner_discipline": f.discipline("social-work"),
            "goals": [goal],
            "needs": [need, hidden],
        },
        expected_version=act.version,
    )
    html = history_page(world.case_manager, world.plan)
    for label in ("Title", "Description", "Status", "Due date", "Assigned to", "Owner discipline"):
        assert f"<strong>{label}</strong>" in html, label
    assert "Linked goals" in html and "Walk to the mailbox" in html
    assert "Linked needs" in html and "No rides to clinic" in html
    assert "HIDDEN-NEED-TEXT" in html  # the case manager sees sensitive items

    nurse_view = history_page(world.nurse, world.plan)
    assert "No rides to clinic" in nurse_view
    assert "HIDDEN-NEED-TEXT" not in nurse_view


def test_a_change_of_only_a_hidden_link_leaves_no_row_for_who_may_not_see_it(world):
    hidden = f.NeedFactory(
        care_plan=world.plan, description="HIDDEN-NEED-TEXT", sensitivity=world.behavioural_health
    )
    act = f.ActivityFactory(care_plan=world.plan, title="Weekly check-in")
    before = history_page(world.nurse, world.plan).count("Weekly check-in")
    access = access_patient_by_id(world.case_manager, world.patient.pk)
    plan_services.item_update(
        access=access,
        item=act,
        by=world.case_manager,
        changes={"needs": [hidden]},
        expected_version=act.version,
    )
    after = history_page(world.nurse, world.plan)
    assert after.count("Weekly check-in") == before
    assert "HIDDEN-NEED-TEXT" not in after and "Links to goals or needs" not in after
    assert "HIDDEN-NEED-TEXT" in history_page(world.case_manager, world.plan)
