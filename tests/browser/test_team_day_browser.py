"""A case manager's first day, in Chromium: enrol a patient (a possible duplicate is shown
first), put a nurse on the team from the directory, record consent, start a plan, send a
referral, hand off to the nurse, who accepts; the case manager sees it accepted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from careteam.models import Handoff
from patients.models import Consent, Patient
from referrals.models import Referral
from tests import factories as f

from .conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_enrol_consent_refer_and_a_handoff_loop(new_page, live_server, clinic):
    world = clinic
    service = f.ServiceFactory(name="Eastside Food Pantry", description="Groceries every week")
    page = new_page(world.case_manager)

    # enrol: a record with the same name and birth date is shown before anything is created
    page.get_by_role("link", name="Enrol a patient").click()
    page.get_by_label("Given name").fill(world.patient.given_name)
    page.get_by_label("Family name").fill(world.patient.family_name)
    page.get_by_label("Birth date").fill(world.patient.birth_date.isoformat())
    page.get_by_role("button", name="Enrol patient").click()
    duplicates = page.locator("section", has=page.get_by_role("heading", name="Possible duplicates"))
    expect(duplicates).to_contain_text(f"{world.patient.family_name}, {world.patient.given_name}")
    assert (
        Patient.objects.count() == 2 + 0
        or Patient.objects.filter(given_name=world.patient.given_name).count() == 1
    )
    page.get_by_label("Given name").fill("Alicia")
    page.get_by_label("None of these is my patient: enrol a new record").check()
    page.get_by_role("button", name="Enrol patient").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Alicia")
    patient = Patient.objects.get(given_name="Alicia")

    # the team picker: find the nurse by name, assign her as a nursing member
    page.get_by_role("link", name="Assign a role").click()
    page.get_by_label("Name or username").fill(world.nurse.last_name)
    assign = page.get_by_role("button", name=f"Assign {world.nurse.display_name}")
    expect(assign).to_be_visible()
    expect(page.locator("#clinician-results")).to_contain_text("patient")  # the caseload
    assign.click()
    expect(page.locator("#team-h")).to_be_visible()
    expect(page.locator("ul.team")).to_contain_text(world.nurse.display_name)

    # consent, recorded on the chart
    page.get_by_role("link", name="Record, view or revoke consent").click()
    page.get_by_label("What the patient agrees to").select_option("referral")
    page.get_by_label("Given by").fill("patient")
    page.get_by_label("How it was given").select_option("verbal")
    page.get_by_role("button", name="Record consent").click()
    expect(page.get_by_text("In force", exact=True)).to_be_visible()
    assert Consent.objects.filter(patient=patient, scope="referral").exists()
    screenshot(page, "consents")

    # a plan, then a referral that is sent at once (consent is on record)
    page.get_by_role("link", name=patient.full_name).first.click()
    page.get_by_text("Start a care plan").click()
    page.get_by_label("Plan title").fill("Food security plan")
    page.get_by_role("button", name="Start plan").click()
    expect(page.get_by_role("heading", name="Goals")).to_be_visible()
    plan = patient.care_plans.get()
    page.goto(f"{live_server.url}/referrals/plans/{plan.pk}/new/?service={service.pk}")
    page.get_by_label("Reason for the referral").fill("Runs out of food by mid-month")
    page.get_by_role("button", name="Save referral").click()
    referral = Referral.objects.get(patient=patient)
    assert referral.status == "requested" and referral.consent is not None

    # a handoff to the nurse
    page.goto(f"{live_server.url}/team/patients/{patient.pk}/handoffs/new/")
    page.get_by_label("To a team member").select_option(value=str(world.nurse.pk))
    page.get_by_label("Situation").fill("New to the caseload, lives alone")
    page.get_by_label("Background").fill("Enrolled today")
    page.get_by_label("Assessment").fill("Food insecure; referral sent")
    page.get_by_label("Recommendation").fill("Home visit this week")
    due = timezone.localtime() + dt.timedelta(days=2)
    page.get_by_label("Due").fill(due.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Send handoff").click()
    handoff = Handoff.objects.get(patient=patient)

    # the nurse accepts it
    nurse = new_page(world.nurse)
    nurse.goto(f"{live_server.url}/team/handoffs/{handoff.pk}/")
    nurse.get_by_role("button", name="Accept").click()
    expect(nurse.get_by_text("Accepted").first).to_be_visible()

    # the sender sees the answer: in the sent list and in the inbox
    page.goto(f"{live_server.url}/team/handoffs/sent/")
    expect(page.locator("tr", has_text="New to the caseload")).to_contain_text(
        f"Accepted by {world.nurse.display_name}"
    )
    page.goto(f"{live_server.url}/team/inbox/")
    expect(page.get_by_text("was accepted by").first).to_be_visible()
    screenshot(page, "handoff-accepted")
