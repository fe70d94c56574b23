"""A closed loop in Chromium: the nurse refers the patient to a service whose
organisation answers on CareTeam; the partner accepts the referral in /partner/ and
completes it; the nurse's dashboard turnaround shows the service's own answer."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from referrals.models import Referral
from tests import factories as f

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_referrer_sends_partner_accepts_and_completes_and_the_dashboard_shows_it(
    new_page, browser, live_server, world
):
    service = f.ServiceFactory(name="Harbor pantry", expected_response_days=2)
    partner = f.partner_user(service.organization, "harbor-partner", first_name="Rosa", last_name="Partida")
    f.ConsentFactory(patient=world.patient, contact_preferences="Text after 5 pm")
    need = f.NeedFactory(care_plan=world.plan, category="food", description="Runs out of food mid-month")

    # the referrer sends the referral from the plan
    nurse = new_page(world.nurse)
    nurse.goto(f"{live_server.url}/referrals/plans/{world.plan.pk}/new/?service={service.pk}#referral-form")
    nurse.get_by_label("For the need").select_option(str(need.pk))
    nurse.get_by_label("Reason for the referral").fill("Needs groceries until the benefits start")
    nurse.get_by_role("button", name="Save referral").click()
    expect(nurse.get_by_text("The service answers on CareTeam.")).to_be_visible()
    referral = Referral.objects.get(service=service)
    assert referral.status == "requested"

    # the partner signs in and lands on its inbox
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(partner.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/partner/")
    expect(page.locator("#tab-new")).to_contain_text("New (1)")
    page.get_by_role("link", name=f"#{referral.pk}").click()
    expect(page.locator("#referral-view")).to_contain_text("Text after 5 pm")
    expect(page.locator("#referral-view")).not_to_contain_text(world.patient.mrn)
    page.locator("#accept").click()
    expect(page.locator("#referral-status")).to_contain_text("Accepted")
    page.get_by_label("Outcome").select_option("service-provided")
    page.get_by_label("What happened").fill("Weekly food box from Monday")
    page.locator("#complete").click()
    expect(page.locator("#referral-status")).to_contain_text("Completed: Service provided")
    context.close()

    # the referrer's dashboard: the service's own answer, the share provided
    nurse.goto(f"{live_server.url}/referrals/dashboard/")
    expect(nurse.locator("#answered-by-service")).to_contain_text("Answered by the service itself: 1 of 1")
    expect(nurse.locator("#provided-share")).to_contain_text("100.0 %")
    referral.refresh_from_db()
    assert referral.accepted_at is not None and referral.closed_at is not None
    assert referral.events.filter(by=partner).count() == 2
