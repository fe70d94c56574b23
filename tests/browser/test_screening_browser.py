"""The screening walk and a template merge in Chromium: the case manager screens a
patient with the AHC-HRSN core questions (saving half-way and resuming), accepts the two
proposed needs, refers one to a suggested service; then adds the heart-failure template
to a plan that already has its first version, and the preview offers only what is
missing. No page breaks the Content-Security-Policy."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from careplans import plan_templates, screening
from careplans.models import PlanTemplate, ProposedNeed, QuestionnaireResponse, TemplateItem
from careteam.permissions import patient_access
from referrals.models import Referral
from tests import factories as f

from .conftest import screenshot
from .test_csp_browser import watch

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

AHC = "AHC Health-Related Social Needs screening (core)"


@pytest.fixture
def catalog(clinic):
    """Services in the categories the AHC proposes; one speaks the patient's Spanish."""
    food = f.TaxonomyTermFactory(code="food", name="Food")
    rides = f.TaxonomyTermFactory(code="transportation", name="Transportation")
    pantry = f.ServiceFactory(
        name="Eastside Food Pantry",
        languages=["en", "es"],
        organization=f.OrganizationFactory(name="Eastside Mutual Aid"),
    )
    pantry.categories.add(food)
    f.ServiceFactory(name="Meals on Wheels", languages=["en"]).categories.add(food)
    f.ServiceFactory(name="Dial-a-Ride", languages=["en"]).categories.add(rides)
    return pantry


def answer(page, link_id: str, label: str) -> None:
    page.locator(f"#item-{link_id}").get_by_label(label, exact=True).check()


def test_screen_accept_two_needs_and_refer_one_from_the_suggestions(new_page, live_server, clinic, catalog):
    world = clinic
    screening.ensure_shipped_questionnaires()
    page = new_page(world.case_manager)
    problems = watch(page)
    page.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    page.get_by_role("link", name="Screen for needs").click()
    expect(page.get_by_role("heading", name="Screening", level=1)).to_be_visible()
    page.get_by_label(re.compile(re.escape(AHC))).check()
    page.get_by_label("Who answers").select_option("patient")
    page.get_by_role("button", name="Start screening").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(AHC)

    # half the answers, saved; the screening resumes with them
    answer(page, "living-1", "I have a steady place to live")
    answer(page, "living-2", "None of the above")
    answer(page, "food-1", "Sometimes true")
    answer(page, "food-2", "Never true")
    page.get_by_role("button", name="Save and finish later").click()
    expect(page.get_by_text("Answers saved; you can resume this screening later.")).to_be_visible()
    response = QuestionnaireResponse.objects.get(patient=world.patient)
    assert response.status == "in-progress" and response.answers["food-1"] == ["LA6729-3"]
    page.goto(f"{live_server.url}/patients/{world.patient.pk}/")
    page.get_by_role("link", name="Screen for needs").click()
    page.get_by_role("link", name=AHC).click()
    expect(page.locator("#item-food-1").get_by_label("Sometimes true", exact=True)).to_be_checked()

    answer(page, "transport-1", "Yes")
    answer(page, "utilities-1", "No")
    for item in ("safety-1", "safety-2", "safety-3", "safety-4"):
        answer(page, item, "Never")
    page.get_by_role("button", name="Complete screening").click()
    expect(page.get_by_text("Screening completed; 2 needs proposed.")).to_be_visible()
    proposals = page.locator("#proposals li.proposal")
    expect(proposals).to_have_count(2)
    food = proposals.filter(has_text="Food insecurity")
    expect(food).to_contain_text("Eastside Food Pantry")  # in the patient's language first
    screenshot(page, "screening-results")

    # accept both, one click each
    for name in ("Food insecurity", "Transportation problems"):
        page.get_by_role("button", name=re.compile(f"^Accept {name}")).click()
        expect(page.locator("#proposals li.proposal", has_text=name)).to_contain_text("In the plan")
    accepted = ProposedNeed.objects.filter(response=response, status="accepted").select_related("need")
    assert accepted.count() == 2
    assert {p.need.care_plan_id for p in accepted} == {world.plan.pk}
    food_need = accepted.get(category="food").need

    # refer the food need to the suggested pantry
    food = page.locator("#proposals li.proposal", has_text="Food insecurity")
    food.locator("li", has_text="Eastside Food Pantry").get_by_role("link", name="Refer").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Refer")
    form = page.locator("#referral-form")
    expect(form).to_contain_text("Eastside Food Pantry")
    expect(form.get_by_label("For the need")).to_have_value(str(food_need.pk))
    form.get_by_label("Reason for the referral").fill("Food runs out before the end of the month")
    form.get_by_role("button", name="Save referral").click()
    expect(page.get_by_text("Referral to Eastside Food Pantry sent.")).to_be_visible()
    referral = Referral.objects.get(need=food_need)
    assert referral.service_id == catalog.pk and referral.status == "requested"
    assert not problems, problems


def test_the_template_preview_offers_only_what_the_plan_lacks(new_page, live_server, clinic):
    world = clinic
    plan_templates.ensure_shipped_templates()
    v1 = PlanTemplate.objects.get(slug="heart-failure-discharge", version=1)
    access = patient_access(world.case_manager, world.patient)
    plan_templates.template_apply(access=access, plan=world.plan, template=v1, by=world.case_manager)
    # since then the clinical content team published v2 with two more items
    data = plan_templates.as_data(v1) | {"version": 2}
    data["goals"] = [
        *data["goals"],
        {
            "key": "breathless-plan",
            "description": "Knows what to do when more breathless",
            "due_days": 7,
            "owner": "nursing",
        },
    ]
    data["activities"] = [
        *data["activities"],
        {
            "key": "cardiac-rehab",
            "title": "Refer to cardiac rehabilitation",
            "owner": "physical-therapy",
            "due_days": 21,
            "goals": ["breathless-plan"],
        },
    ]
    plan_templates.template_import(data=data)
    before = TemplateItem.objects.filter(care_plan=world.plan).count()

    page = new_page(world.case_manager)
    problems = watch(page)
    page.goto(f"{live_server.url}/plans/{world.plan.pk}/")
    page.get_by_role("navigation", name="Plan views").get_by_role("link", name="Add from a template").click()
    page.get_by_role("link", name="Heart failure: after discharge").click()
    preview = page.locator("#preview")
    expect(preview.get_by_role("heading", level=2)).to_contain_text("v2")
    added = preview.locator(".preview-add li")
    expect(added).to_have_count(2)
    expect(added.nth(0)).to_contain_text("Knows what to do when more breathless")
    expect(added.nth(1)).to_contain_text("Refer to cardiac rehabilitation")
    expect(preview.locator(".preview-present li")).to_have_count(before)
    expect(preview.locator(".preview-present")).to_contain_text("Keeps to a low-sodium diet")
    screenshot(page, "template-preview")

    preview.get_by_role("button", name="Add these items to the plan").click()
    expect(page.get_by_text("2 items added from template Heart failure: after discharge v2.")).to_be_visible()
    expect(page.get_by_text("Refer to cardiac rehabilitation")).to_be_visible()
    assert TemplateItem.objects.filter(care_plan=world.plan).count() == before + 2
    page.get_by_role("navigation", name="Plan views").get_by_role("link", name="Add from a template").click()
    page.get_by_role("link", name="Heart failure: after discharge").click()
    expect(page.get_by_text("The plan already has everything in this template.")).to_be_visible()
    expect(page.get_by_role("button", name="Add these items to the plan")).to_have_count(0)
    assert not problems, problems
