"""Issue 12: related objects shown on another item's page follow the same visibility rule
as that object's own page (careteam.permissions.PatientAccess.can_see / visible).

The scenario is the demo's: a social worker on the team, a behavioural-health need they
get 404 on, and an activity of theirs linked to it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careteam import services as team_services
from tests import factories as f

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
HIDDEN_MARK = "HIDDEN-BH-Q3"
HIDDEN_NEED = f"{HIDDEN_MARK} low mood since the move"
VISIBLE_NEED = "VISIBLE-TRANSPORT"


@pytest.fixture
def linked(world):
    social = f.UserFactory(username="sw1", disciplines=["social-work"])
    team_services.membership_add(
        patient=world.patient,
        user=social,
        discipline=f.discipline("social-work"),
        role="member",
        start_date=timezone.localdate() - dt.timedelta(days=5),
    )
    hidden = f.NeedFactory(
        care_plan=world.plan,
        domain="behavioural",
        category="mental-health",
        description=HIDDEN_NEED,
        sensitivity=world.behavioural_health,
    )
    visible = f.NeedFactory(care_plan=world.plan, description=VISIBLE_NEED)
    activity = f.ActivityFactory(
        care_plan=world.plan, title="Home visit", owner_discipline=f.discipline("social-work")
    )
    activity.needs.set([hidden, visible])
    client = Client()
    client.force_login(social)
    return world, social, client, hidden, visible, activity


def test_item1_social_worker_gets_404_on_the_need_itself(linked):
    _, _, client, hidden, _, _ = linked
    assert client.get(reverse("careplans:need_detail", kwargs={"need_id": hidden.pk})).status_code == 404


@pytest.mark.parametrize("page", ["activity_detail", "activity_edit", "activity_status"])
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_item1_activity_pages_hide_linked_sensitive_need(linked, page, htmx):
    world, _, client, hidden, visible, activity = linked
    response = client.get(
        reverse(f"careplans:{page}", kwargs={"activity_id": activity.pk}), **(HX if htmx else {})
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert HIDDEN_MARK not in body
    assert f"need-{hidden.pk}" not in body
    assert f'name="activity-{activity.pk}-needs" value="{hidden.pk}"' not in body
    assert "Home visit" in body


def test_item1_editor_hides_linked_sensitive_need(linked):
    world, _, client, hidden, visible, activity = linked
    body = client.get(reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})).content.decode()
    assert HIDDEN_MARK not in body
    assert VISIBLE_NEED in body


def test_item1_behavioural_clinician_still_sees_the_link(linked):
    world, _, _, hidden, _, activity = linked
    client = Client()
    client.force_login(world.behavioural)
    body = client.get(
        reverse("careplans:activity_detail", kwargs={"activity_id": activity.pk})
    ).content.decode()
    assert HIDDEN_MARK in body


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_item2_conflict_page_shows_only_what_the_viewer_may_see(linked, htmx):
    world, social, client, hidden, visible, activity = linked
    url = reverse("careplans:activity_edit", kwargs={"activity_id": activity.pk})
    opened_version = activity.version
    # someone else saves the activity meanwhile (the behavioural clinician's view of it)
    activity.title = "Home visit with the counsellor"
    activity.version += 1
    activity.save()
    prefix = f"activity-{activity.pk}"
    data = {
        f"{prefix}-title": "Home visit, bring forms",
        f"{prefix}-description": "",
        f"{prefix}-owner_discipline": str(activity.owner_discipline_id),
        f"{prefix}-assigned_to": "",
        f"{prefix}-due_date": "",
        f"{prefix}-sensitivity": "",
        f"{prefix}-needs": [str(visible.pk)],
        f"{prefix}-expected_version": str(opened_version),
    }
    response = client.post(url, data, **(HX if htmx else {}))
    assert response.status_code == 409
    body = response.content.decode()
    assert "Home visit with the counsellor" in body
    assert HIDDEN_MARK not in body
    assert VISIBLE_NEED in body
    activity.refresh_from_db()
    assert activity.title == "Home visit with the counsellor"
    assert set(activity.needs.values_list("pk", flat=True)) == {hidden.pk, visible.pk}


def test_item3_old_comment_follows_its_need_marked_sensitive_later(linked):
    world, social, client, hidden, visible, activity = linked
    from careplans.models import Note

    Note.objects.create(
        care_plan=world.plan, need=visible, author=world.nurse, text="COMMENT-LATER-HIDDEN-Q3"
    )
    Note.objects.create(
        care_plan=world.plan,
        need=visible,
        author=world.nurse,
        text="Referral to Food bank closed: REFERRAL-CLOSE-Q3.",
    )
    editor = reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})
    assert "COMMENT-LATER-HIDDEN-Q3" in client.get(editor).content.decode()
    visible.sensitivity = world.behavioural_health
    visible.save()
    for response in (
        client.get(editor),
        client.post(
            reverse("careplans:note_create", kwargs={"plan_id": world.plan.pk}),
            {"note-text": "my own comment", "note-kind": "comment"},
            **HX,
        ),
    ):
        body = response.content.decode()
        assert "COMMENT-LATER-HIDDEN-Q3" not in body
        assert "REFERRAL-CLOSE-Q3" not in body
    behavioural = Client()
    behavioural.force_login(world.behavioural)
    assert "COMMENT-LATER-HIDDEN-Q3" in behavioural.get(editor).content.decode()


def test_item4_chart_leaves_out_referrals_from_hidden_needs(linked):
    world, social, client, hidden, visible, activity = linked
    service = f.ServiceFactory(name="COUNSELLING-SERVICE-Q4")
    f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        need=hidden,
        service=service,
        status="requested",
        sent_at=timezone.now(),
        consent=f.ConsentFactory(patient=world.patient),
    )
    chart = reverse("patient_chart", kwargs={"patient_id": world.patient.pk})
    assert "COUNSELLING-SERVICE-Q4" not in client.get(chart).content.decode()
    behavioural = Client()
    behavioural.force_login(world.behavioural)
    assert "COUNSELLING-SERVICE-Q4" in behavioural.get(chart).content.decode()


def test_item4_goal_of_only_hidden_needs_is_hidden_with_them(linked):
    world, social, client, hidden, visible, activity = linked
    only_hidden = f.GoalFactory(
        care_plan=world.plan, description="GOAL-ONLY-HIDDEN-Q4", owner_discipline=None
    )
    hidden.goals.add(only_hidden)
    shared = f.GoalFactory(care_plan=world.plan, description="GOAL-SHARED-Q4", owner_discipline=None)
    hidden.goals.add(shared)
    visible.goals.add(shared)
    detail = reverse("careplans:goal_detail", kwargs={"goal_id": only_hidden.pk})
    assert client.get(detail).status_code == 404
    assert client.get(f"/fhir/Goal/{only_hidden.pk}").status_code == 404
    editor = reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})
    for body in (
        client.get(editor).content.decode(),
        client.get("/api/v1/goals/").content.decode(),
        client.get(f"/fhir/Patient/{world.patient.pk}/$everything").content.decode(),
    ):
        assert "GOAL-ONLY-HIDDEN-Q4" not in body
        assert "GOAL-SHARED-Q4" in body
    behavioural = Client()
    behavioural.force_login(world.behavioural)
    assert behavioural.get(detail).status_code == 200
    assert "GOAL-ONLY-HIDDEN-Q4" in behavioural.get("/api/v1/goals/").content.decode()


def test_item4_a_visible_activity_towards_the_goal_keeps_it_visible(linked):
    world, social, client, hidden, visible, activity = linked
    goal = f.GoalFactory(care_plan=world.plan, description="GOAL-WITH-ACTIVITY-Q4", owner_discipline=None)
    hidden.goals.add(goal)
    detail = reverse("careplans:goal_detail", kwargs={"goal_id": goal.pk})
    assert client.get(detail).status_code == 404
    activity.goals.add(goal)
    assert client.get(detail).status_code == 200


def test_item13_the_handoff_api_names_no_activity_the_reader_may_not_see(linked):
    world, social, client, hidden, visible, activity = linked
    secret = f.ActivityFactory(
        care_plan=world.plan,
        title="Counselling",
        owner_discipline=f.discipline("behavioural-health"),
        sensitivity=world.behavioural_health,
    )
    handoff = f.HandoffFactory(
        patient=world.patient,
        care_plan=world.plan,
        activity=secret,
        from_user=world.case_manager,
        to_user=social,
    )
    for url in ("/api/v1/handoffs/", f"/api/v1/handoffs/{handoff.pk}/"):
        body = client.get(url).json()
        row = body["results"][0] if "results" in body else body
        assert row["id"] == handoff.pk
        assert row["activity"] is None
    behavioural = Client()
    behavioural.force_login(world.behavioural)
    row = behavioural.get(f"/api/v1/handoffs/{handoff.pk}/").json()
    assert row["activity"].endswith(f"/api/v1/activities/{secret.pk}/")
