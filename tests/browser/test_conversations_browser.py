"""Two team members in two browser contexts: the nurse starts a conversation from the
chart and mentions the pharmacist; the pharmacist, looking at the conversation, sees the
nurse's next message appear without reloading (htmx polling), answers, and the nurse sees
the answer appear the same way; the nav counts the unread conversation."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from careteam.models import Message, Notification

from .conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_member_posts_and_another_sees_it_live(new_page, live_server, clinic):
    world = clinic
    nurse = new_page(world.nurse)
    pharmacist = new_page(world.pharmacist)

    # the nurse starts a conversation from the chart
    nurse.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    nurse.get_by_role("link", name="Start a conversation").first.click()
    nurse.get_by_label("Subject").fill("Evening insulin")
    nurse.get_by_role("textbox", name="Message").fill(
        f"@{world.pharmacist.username} can we move the evening dose earlier?"
    )
    nurse.get_by_role("button", name="Start").click()
    expect(nurse.locator("#messages")).to_contain_text("can we move the evening dose earlier?")
    assert Notification.objects.filter(recipient=world.pharmacist, kind="conversation-mention").count() == 1

    # the pharmacist sees it unread in the nav and opens it from the conversations tab
    pharmacist.goto(f"{live_server.url}/patients/")
    tab = pharmacist.locator("#main-nav a", has_text="Conversations")
    expect(tab.locator(".nav-count")).to_have_text("1")
    tab.click()
    pharmacist.get_by_role("link", name="Evening insulin").click()
    expect(pharmacist.locator("#messages")).to_contain_text("can we move the evening dose earlier?")

    # the nurse posts again: it appears on the pharmacist's open page without a reload
    nurse.get_by_role("textbox", name="Message").fill("She eats at six since the new job.")
    nurse.get_by_role("button", name="Post").click()
    expect(nurse.locator("#messages")).to_contain_text("She eats at six")
    url_before = pharmacist.url
    expect(pharmacist.locator("#messages")).to_contain_text("She eats at six", timeout=15_000)
    assert pharmacist.url == url_before

    # and the answer comes back the same way
    pharmacist.get_by_role("textbox", name="Message").fill("Yes: 18:00 works with her other medicines.")
    pharmacist.get_by_role("button", name="Post").click()
    expect(nurse.locator("#messages")).to_contain_text("18:00 works", timeout=15_000)
    assert Message.objects.count() == 3
    screenshot(pharmacist, "conversation")
