"""What a clinician does in Chromium: sign in, find a patient, add a goal, change an
activity's status, read the change in the history, resolve an edit conflict with a
colleague, and never see what their discipline or team may not see."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from careplans.models import Activity, Goal

from .conftest import SCREENSHOTS, screenshot

# serialized_rollback: the flush after each live-server test would otherwise also wipe the
# reference rows the migrations seeded, for every later test on the same database
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _open_plan(page, live_server, world):
    page.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(world.plan_title)


def test_clinician_finds_a_patient_adds_a_goal_changes_a_status_and_reads_the_diff(
    new_page, live_server, clinic
):
    world = clinic
    page = new_page(world.nurse)
    expect(page.get_by_role("heading", name="My patients")).to_be_visible()
    expect(page.get_by_role("link", name="Okafor, Grace")).to_be_visible()
    screenshot(page, "worklist")

    # find the patient by name (htmx search, results replaced in place)
    page.get_by_label("Search by name or MRN").fill("Team")
    expect(page.get_by_role("link", name="Okafor, Grace")).to_have_count(0)
    page.get_by_role("link", name="Team, Alice").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Team, Alice")
    expect(page.get_by_text("José Team")).to_be_visible()
    expect(page.get_by_text("Interpreter needed")).to_be_visible()
    screenshot(page, "chart")

    page.get_by_role("link", name=re.compile("Open “Diabetes and mobility plan”")).click()
    expect(page.get_by_role("heading", name="Goals")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # survives only if nothing reloads the page

    # add a goal the patient expressed, inline
    page.get_by_text("Add a goal", exact=True).click()
    add = page.locator("form[action$='/goals/new/']")
    add.get_by_label("Goal", exact=True).fill("Cook her own breakfast again")
    add.get_by_label("Whose goal is this?").select_option("patient")
    add.get_by_label("Target measure").fill("Independent in kitchen")
    add.get_by_role("button", name="Add goal").click()
    new_goal = page.locator("article.goal", has_text="Cook her own breakfast again")
    expect(new_goal).to_be_visible()
    expect(new_goal).to_contain_text("Patient’s own goal")
    assert page.evaluate("window.__sameDocument") is True
    assert Goal.objects.filter(description="Cook her own breakfast again", created_by=world.nurse).exists()

    # change an activity's status: only legal next statuses are offered
    card = page.locator(f"#activity-{world.insulin.pk}")
    options = card.get_by_label("Change status").locator("option").all_inner_texts()
    assert "In progress" in options and "Completed" not in options
    card.get_by_label("Change status").select_option("in-progress")
    card.get_by_role("button", name="Apply").click()
    card = page.locator(f"#activity-{world.insulin.pk}")
    expect(card.locator(".badge")).to_have_text("In progress")
    expect(card.get_by_role("status")).to_contain_text("Status changed to In progress")
    assert page.evaluate("window.__sameDocument") is True
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "plan-editor")

    # the change is in the history, with a readable diff
    page.get_by_role("navigation", name="Plan views").get_by_role("link", name="History").click()
    newest = page.locator("table.history tbody tr").first
    expect(newest).to_contain_text("Teach insulin pen technique")
    expect(newest).to_contain_text("Tom Ellis")
    page.get_by_role("button", name="Compare versions").click()
    diff = page.locator("#diff")
    expect(diff.locator("del", has_text="Not started")).to_be_visible()
    expect(diff.locator("ins", has_text="In progress")).to_be_visible()
    screenshot(page, "history")

    # usable on a tablet held upright: no page wider than the screen
    page.set_viewport_size({"width": 768, "height": 1024})
    for path in ("/patients/", f"/patients/{world.patient.pk}/", f"/plans/{world.plan.pk}/"):
        page.goto(live_server.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 768, path


def test_two_clinicians_editing_the_same_activity_merge_instead_of_overwriting(new_page, live_server, clinic):
    world = clinic
    carmen = new_page(world.case_manager)
    tom = new_page(world.nurse)
    for page in (carmen, tom):
        _open_plan(page, live_server, world)
        page.locator(f"#activity-{world.insulin.pk}").get_by_role("button", name="Edit").click()
        expect(page.locator(f"#activity-{world.insulin.pk} form[action$='/edit/']")).to_be_visible()

    carmen_form = carmen.locator(f"#activity-{world.insulin.pk} form[action$='/edit/']")
    carmen_form.get_by_label("Title").fill("Teach insulin pen technique with José")
    carmen_form.get_by_role("button", name="Save").click()
    expect(carmen.locator(f"#activity-{world.insulin.pk} h3")).to_have_text(
        "Teach insulin pen technique with José"
    )

    tom_form = tom.locator(f"#activity-{world.insulin.pk} form[action$='/edit/']")
    tom_form.get_by_label("Title").fill("Teach insulin pen technique (Spanish leaflet)")
    tom_form.get_by_role("button", name="Save").click()
    conflict = tom.locator(f"#activity-{world.insulin.pk}")
    expect(
        conflict.get_by_role("heading", name=re.compile("Someone else saved this activity"))
    ).to_be_visible()
    expect(conflict.locator("td.mine", has_text="pen technique (Spanish leaflet)")).to_be_visible()
    expect(conflict.locator("td.theirs", has_text="pen technique with José")).to_be_visible()
    activity = Activity.objects.get(pk=world.insulin.pk)
    assert activity.title == "Teach insulin pen technique with José"  # nothing overwritten
    conflict.scroll_into_view_if_needed()
    conflict.screenshot(path=str(SCREENSHOTS / "conflict.png"))

    conflict.get_by_label("Title").fill("Teach insulin pen technique with José (Spanish leaflet)")
    conflict.get_by_role("button", name="Save merged version").click()
    expect(tom.locator(f"#activity-{world.insulin.pk} h3")).to_have_text(
        "Teach insulin pen technique with José (Spanish leaflet)"
    )
    activity.refresh_from_db()
    assert activity.title == "Teach insulin pen technique with José (Spanish leaflet)"
    assert activity.version == 3


def test_a_discipline_without_rights_sees_neither_the_sensitive_need_nor_another_teams_patient(
    new_page, live_server, clinic
):
    world = clinic
    tom = new_page(world.nurse)
    expect(tom.get_by_role("link", name="Team, Alice")).to_be_visible()
    expect(tom.get_by_text("Elsewhere")).to_have_count(0)
    tom.get_by_label("Search by name or MRN").fill("P-OTHER-1")
    expect(tom.get_by_text("No patients match")).to_be_visible()
    response = tom.goto(f"{live_server.url}/patients/{world.other_patient.pk}/")
    assert response.status == 404
    response = tom.goto(f"{live_server.url}/plans/{world.other_plan.pk}/")
    assert response.status == 404

    _open_plan(tom, live_server, world)
    expect(tom.get_by_role("heading", name=re.compile("No transport to clinic"))).to_be_visible()
    expect(tom.get_by_text("PHQ-9")).to_have_count(0)
    tom.get_by_role("navigation", name="Plan views").get_by_role("link", name="History").click()
    expect(tom.get_by_text("PHQ-9")).to_have_count(0)

    # the pharmacist reads a nursing activity but may only comment on it
    hana = new_page(world.pharmacist)
    _open_plan(hana, live_server, world)
    card = hana.locator(f"#activity-{world.insulin.pk}")
    expect(card.get_by_role("button", name="Edit")).to_have_count(0)
    card.get_by_text("Comment or propose a change").click()
    card.get_by_label("Your comment or proposal").fill("Check the pen needle size with me first")
    card.get_by_role("button", name="Send").click()
    expect(hana.locator("#notes")).to_contain_text("Check the pen needle size with me first")

    # the behavioural-health clinician on the same team does see the need
    ruth = new_page(world.behavioural)
    _open_plan(ruth, live_server, world)
    expect(ruth.get_by_role("heading", name=re.compile("PHQ-9"))).to_be_visible()
    expect(ruth.get_by_text("Restricted: Behavioural health")).to_be_visible()
