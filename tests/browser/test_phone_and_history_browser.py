"""Chromium at phone width (390 px): the worklist and the plan fit the screen with the
nav folded behind a menu; and Back after a worklist search restores the whole page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(viewport=PHONE, locale="en-GB", is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    yield context
    context.close()


def _sign_in(page, live_server, user):
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/work/")  # clinicians land on My work
    page.goto(f"{live_server.url}/patients/")


def _fits(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport == 390, (width, viewport)


def test_worklist_and_plan_work_on_a_phone(phone, live_server, clinic):
    world = clinic
    page = phone.new_page()
    _sign_in(page, live_server, world.nurse)
    # the nav is folded behind the menu button and opens on a tap
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(nav.get_by_role("link", name="My patients")).to_be_visible()
    _fits(page)
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("link", name="Okafor, Grace")).to_be_visible()
    _fits(page)
    screenshot(page, "phone-worklist")

    page.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    expect(page.get_by_role("heading", name="Goals")).to_be_visible()
    _fits(page)
    # one column: every plan card starts at the same left edge
    lefts = page.evaluate(
        "[...document.querySelectorAll('.plan-section')].map(e => e.getBoundingClientRect().left)"
    )
    assert len(set(lefts)) == 1
    screenshot(page, "phone-plan")


def test_a_long_unbroken_goal_does_not_widen_the_plan(phone, live_server, clinic):
    from tests import factories as f

    world = clinic
    f.GoalFactory(care_plan=world.plan, description="https://example.org/" + "a" * 310)
    page = phone.new_page()
    _sign_in(page, live_server, world.nurse)
    page.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    expect(page.get_by_role("heading", name="Goals")).to_be_visible()
    _fits(page)


def test_back_after_a_worklist_search_shows_the_full_page(new_page, live_server, clinic):
    world = clinic
    page = new_page(world.nurse)
    page.get_by_label("Search by name or MRN").fill("Team")
    expect(page.get_by_role("link", name="Okafor, Grace")).to_have_count(0)
    page.wait_for_url("**/patients/?q=Team**")
    page.get_by_role("link", name="Team, Alice").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Team, Alice")
    page.go_back()
    page.wait_for_url("**/patients/?q=Team**")
    expect(page.get_by_role("heading", name="My patients")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("link", name="Team, Alice")).to_be_visible()
    assert page.evaluate("!!document.querySelector('link[rel=stylesheet]')")
    # and again after a reload of a cached entry
    page.reload()
    expect(page.get_by_role("heading", name="My patients")).to_be_visible()


def test_the_print_view_in_chromium(new_page, live_server, clinic):
    world = clinic
    page = new_page(world.case_manager)
    page.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    page.get_by_role("link", name="for the patient and family").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("care plan")
    assert page.locator("button, form, input, select").count() == 0
    headings = page.locator("h2").all_inner_texts()
    assert headings.index("Your goals") < headings.index("Who is doing what, and when")
    expect(page.get_by_text("Walk to church on Sundays without stopping")).to_be_visible()
    expect(page.get_by_text("PHQ-9")).to_have_count(0)
    page.emulate_media(media="print")
    screenshot(page, "print-family")
