"""A case manager's authorisation-to-visit loop, in Chromium: the payer approves the
physiotherapy authorisation, the rule puts "Schedule PT visits" on the plan, two visits
are booked, one is missed, and the scheduling dashboard counts it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from careteam import services as team_services
from tests import factories as f
from visits.models import HandOnRule, Visit

from .conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_approve_an_authorisation_book_visits_and_count_a_missed_one(new_page, live_server, clinic):
    world = clinic
    world.plan.status = "active"
    world.plan.save()
    pt = f.discipline("physical-therapy")
    physio = f.UserFactory(
        username="physio9", first_name="Leo", last_name="Marsh", disciplines=["physical-therapy"]
    )
    team_services.membership_add(patient=world.patient, user=physio, discipline=pt,
                                 start_date=timezone.localdate() - dt.timedelta(days=5))  # fmt: skip
    HandOnRule.objects.create(
        name="PT approved", event="authorisation.approved", condition_discipline=pt,
        activity_title="Schedule PT visits", owner_discipline=pt, due_in_days=2,
    )  # fmt: skip
    auth = f.AuthorisationFactory(patient=world.patient, status="requested", created_by=world.case_manager)
    page = new_page(world.case_manager)

    # the payer's answer
    page.goto(f"{live_server.url}/visits/authorisations/{auth.pk}/")
    page.get_by_label("Status").select_option("approved")
    page.get_by_label("Reference number").fill("AC-7781")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#authorisation-status")).to_have_text("Approved")

    # the rule handed on the work: the physiotherapy activity is on the plan
    page.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    expect(page.get_by_text("Schedule PT visits").first).to_be_visible()

    # two visits with the physiotherapist, yesterday
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    for hour in (10, 14):
        page.goto(f"{live_server.url}/visits/patients/{world.patient.pk}/")
        page.get_by_label("Team member").select_option(str(physio.pk))
        page.get_by_label("Starts").fill(f"{yesterday.isoformat()}T{hour}:00")
        page.get_by_label("Time zone").select_option("UTC")
        page.get_by_label("Minutes").fill("45")
        page.get_by_label("Where").fill("At home")
        page.get_by_role("button", name="Book visit").click()
        expect(page.locator("#visit-status")).to_have_text("Booked")
    assert Visit.objects.filter(patient=world.patient).count() == 2

    # the second one was missed
    page.get_by_label("Status", exact=True).select_option("noshow")
    page.get_by_label("Why").first.fill("Not at home, no answer by phone")
    page.get_by_role("button", name="Save status").click()
    expect(page.locator("#visit-status")).to_have_text("Missed")

    page.goto(f"{live_server.url}/visits/dashboard/")
    expect(page.locator("#total-booked")).to_have_text("2")
    expect(page.locator("#total-missed")).to_have_text("1")
    screenshot(page, "scheduling-accuracy")
