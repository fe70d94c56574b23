"""The hand-on rules' firings on the plan history: one entry per firing (when, which
rule, which event, the activity linked), once for an event saved twice, never for an
outsider, and never naming what the reader's discipline may not see."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careplans.models import Activity
from careplans.selectors import plan_history
from careteam import events
from careteam import services as team_services
from careteam.permissions import patient_access
from tests import factories as f
from visits import rules
from visits.models import HandOnRule, RuleFiring

pytestmark = pytest.mark.django_db


def _active_plan(world):
    world.plan.status = "active"
    world.plan.save()


def _pt_rule(name="PT approved", title="Schedule PT visits"):
    return HandOnRule.objects.create(
        name=name, event="authorisation.approved", condition_discipline=f.discipline("physical-therapy"),
        activity_title=title, owner_discipline=f.discipline("physical-therapy"), due_in_days=2,
    )  # fmt: skip


def _physio(world):
    physio = f.UserFactory(username="physio-h", disciplines=["physical-therapy"])
    team_services.membership_add(
        patient=world.patient, user=physio, discipline=f.discipline("physical-therapy"),
        start_date=timezone.localdate() - dt.timedelta(days=10),
    )  # fmt: skip
    return physio


def _approved(world):
    return f.AuthorisationFactory(patient=world.patient, status="approved", created_by=world.case_manager)


def _history(client, world, user):
    client.force_login(user)
    return client.get(reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}))


def _firings(response):
    return [c for c in response.context["changes"] if c.kind == "rule"]


def test_a_firing_shows_on_the_history_once_when_the_event_is_saved_twice(world, client):
    _active_plan(world)
    _physio(world)
    _pt_rule()
    auth = _approved(world)
    events.emit("authorisation.approved", obj=auth, by=world.case_manager)
    events.emit("authorisation.approved", obj=auth, by=world.case_manager)  # saved again
    assert rules.rules_fire(event="authorisation.approved", obj=auth, by=world.nurse) == []
    activity = Activity.objects.get(title="Schedule PT visits")
    response = _history(client, world, world.nurse)
    assert response.status_code == 200
    [entry] = _firings(response)
    assert entry.label == "PT approved" and entry.type == "fired"
    assert entry.by == world.case_manager.display_name
    assert ("Event", "—", f"authorisation #{auth.pk} approved") in entry.fields
    assert ("Activity", "—", "Schedule PT visits") in entry.fields
    link = reverse("careplans:activity_detail", kwargs={"activity_id": activity.pk})
    assert entry.link == link and f'href="{link}"' in response.text
    assert response.text.count(f"authorisation #{auth.pk} approved") == 1
    # the full history (for exports) has it once too
    assert [c.kind for c in plan_history(patient_access(world.nurse, world.patient), world.plan)].count(
        "rule"
    ) == 1


def test_a_firing_that_created_nothing_still_shows_with_its_outcome(world, client):
    _active_plan(world)
    HandOnRule.objects.create(
        name="Referrer follows up", event="authorisation.approved", assignee="referrer",
        activity_title="Call the payer", due_in_days=1,
    )  # fmt: skip
    auth = _approved(world)
    rules.rules_fire(event="authorisation.approved", obj=auth, by=world.case_manager)
    by_rule = {c.label: c for c in _firings(_history(client, world, world.case_manager))}
    assert by_rule["Referrer follows up"].reason.startswith("no discipline")
    assert [name for name, _, _ in by_rule["Referrer follows up"].fields] == ["Event"]


def test_an_outsider_gets_404_on_the_history_with_firings(world, client):
    _active_plan(world)
    _physio(world)
    _pt_rule()
    rules.rules_fire(event="authorisation.approved", obj=_approved(world), by=world.case_manager)
    assert RuleFiring.objects.count() == 1
    assert _history(client, world, world.outsider).status_code == 404
    assert _history(client, world, world.other_team_nurse).status_code == 404


def test_a_discipline_excluded_from_the_activity_sees_no_trace_of_the_firing(world, client):
    _active_plan(world)
    _physio(world)
    _pt_rule(name="Counselling approved", title="Book the counselling sessions")
    rules.rules_fire(event="authorisation.approved", obj=_approved(world), by=world.case_manager)
    activity = Activity.objects.get(title="Book the counselling sessions")
    Activity.objects.filter(pk=activity.pk).update(sensitivity=world.behavioural_health)
    nurse_sees = _history(client, world, world.nurse)
    assert _firings(nurse_sees) == []
    assert "Book the counselling" not in nurse_sees.text and "Counselling approved" not in nurse_sees.text
    assert _firings(_history(client, world, world.behavioural))[0].label == "Counselling approved"
    # filed in the category once and moved out of it later: still none of it
    Activity.objects.filter(pk=activity.pk).update(sensitivity=None)
    activity.refresh_from_db()
    activity.sensitivity = world.behavioural_health
    activity.save()
    activity.sensitivity = None
    activity.save()
    assert _firings(_history(client, world, world.nurse)) == []


def test_a_firing_on_a_referral_from_a_hidden_need_names_nothing(world, client):
    _active_plan(world)
    HandOnRule.objects.create(
        name="Counselling referral accepted", event="referral.accepted", assignee="referrer",
        activity_title="Confirm the counselling appointment", due_in_days=1,
    )  # fmt: skip
    need = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    referral = f.ReferralFactory(
        patient=world.patient, care_plan=world.plan, need=need, referred_by=world.behavioural,
        status="accepted", sent_at=timezone.now(), consent=f.ConsentFactory(patient=world.patient),
    )  # fmt: skip
    rules.rules_fire(event="referral.accepted", obj=referral, by=world.behavioural)
    # a rule that created nothing for the same referral: only its source can hide it
    intake = HandOnRule.objects.create(
        name="Counselling intake", event="referral.accepted", activity_title="Intake call",
        assignee="referrer", due_in_days=1,
    )  # fmt: skip
    RuleFiring.objects.create(
        rule=intake, event="referral.accepted", object_type="referrals.referral", object_id=referral.pk,
        patient=world.patient, care_plan=world.plan, outcome="refused: no one to file it",
    )  # fmt: skip
    made = Activity.objects.get(title="Confirm the counselling appointment")
    assert made.sensitivity == world.behavioural_health  # the activity carries the need's category
    assert RuleFiring.objects.filter(activity__isnull=True).count() == 1
    nurse_sees = _history(client, world, world.nurse)
    assert _firings(nurse_sees) == []
    assert "Counselling" not in nurse_sees.text and "counselling" not in nurse_sees.text
    assert (
        client.get(reverse("careplans:activity_detail", kwargs={"activity_id": made.pk})).status_code == 404
    )
    entries = _firings(_history(client, world, world.behavioural))
    assert sorted(c.label for c in entries) == ["Counselling intake", "Counselling referral accepted"]
    assert all(("Event", "—", f"referral #{referral.pk} accepted") in c.fields for c in entries)


def test_firings_page_with_the_plan_versions_by_keyset(world, client):
    _active_plan(world)
    _physio(world)
    _pt_rule()
    for _ in range(60):
        rules.rules_fire(event="authorisation.approved", obj=_approved(world), by=world.case_manager)
    first = _history(client, world, world.case_manager)
    assert len(first.context["changes"]) == 50
    seen = [(c.kind, c.item_id, c.type) for c in first.context["changes"]]
    response = first
    while response.context["pager"].next_url:
        response = client.get(
            reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
            + response.context["pager"].next_url
        )
        seen += [(c.kind, c.item_id, c.type) for c in response.context["changes"]]
    assert len(seen) == len(set(seen))
    assert sum(1 for kind, _, _ in seen if kind == "rule") == 60
    assert sum(1 for kind, _, t in seen if kind == "activity" and t == "created") == 60
