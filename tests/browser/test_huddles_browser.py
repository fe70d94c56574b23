"""A huddle in two browser contexts (issue 15): the case manager starts one from the chart
asking the nurse; the nurse opens the request from her inbox and posts her SBAR update
on the huddle's page; the case manager sees the update and closes the huddle with a
summary, which the huddle page and the chart then show."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from careteam.models import Huddle, HuddleInvitation

from .conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_case_manager_starts_a_huddle_a_member_answers_and_the_summary_appears(
    new_page, live_server, clinic
):
    world = clinic
    manager = new_page(world.case_manager)
    nurse = new_page(world.nurse)

    # the case manager starts a huddle on the patient, asking the nurse only
    manager.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    manager.locator("#huddles").get_by_role("link", name="Start a huddle").click()
    manager.get_by_role("checkbox", name=world.nurse.display_name).check()
    manager.get_by_role("button", name="Start the huddle").click()
    expect(manager.locator("h1")).to_contain_text("Huddle of")
    expect(manager.locator("#huddle-answers")).to_contain_text("not answered yet")
    huddle = Huddle.objects.get(patient=world.patient)

    # the nurse opens the request from her inbox and answers on the huddle's page
    nurse.goto(f"{live_server.url}/team/inbox/")
    nurse.get_by_role("link", name="asks for your huddle update").click()
    nurse.wait_for_url(f"**/patients/{world.patient.pk}/huddles/{huddle.pk}/")
    answer = nurse.locator("#answer")
    answer.get_by_label("Situation: what's new").fill("Feet checked: a small blister on the left heel.")
    answer.get_by_label("Recommendation: what I will do").fill("Dress it and look again on Thursday.")
    answer.get_by_role("button", name="Post my update").click()
    expect(nurse.locator("#huddle-answers")).to_contain_text("Update posted in the huddle's conversation.")
    expect(nurse.locator("#huddle-answers")).to_contain_text("small blister on the left heel")
    assert HuddleInvitation.objects.get(huddle=huddle, user=world.nurse).answered_at is not None

    # the case manager sees the update, closes with a summary; the summary is shown
    manager.reload()
    expect(manager.locator("#huddle-answers")).to_contain_text("small blister on the left heel")
    close = manager.locator("#close")
    close.get_by_label("Summary").fill("Blister care by nursing; podiatry if not better by Friday.")
    close.get_by_role("button", name="Close with this summary").click()
    expect(manager.locator(".huddle-summary")).to_have_text(
        "Blister care by nursing; podiatry if not better by Friday."
    )
    screenshot(manager, "huddle")
    manager.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    expect(manager.locator("#huddles")).to_contain_text("podiatry if not better by Friday")
    huddle.refresh_from_db()
    assert huddle.status == "closed"
