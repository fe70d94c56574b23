"""Browser tests: Playwright (sync API) driving Debian's Chromium against pytest-django's
live server, with a care team whose plan looks like a real one (the screenshots in
build/screenshots/, published to docs/screenshots/ by `./dev.py screenshots`, are taken from it)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.utils import timezone

from careteam import services as team_services
from tests import factories as f

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery-staple"  # tests.factories.UserFactory's
# Test runs never touch tracked files: screenshots go to build/screenshots, and
# `./dev.py screenshots` copies them to docs/screenshots when they should be published.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Sync Playwright keeps an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code, so Django's async-safety check is switched off here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    pw = sync_playwright().start()
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield chromium
    chromium.close()
    pw.stop()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser, live_server):
    """Open a signed-in page in a fresh browser context (tablet landscape)."""
    contexts = []

    def open_as(user):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/work/")  # clinicians land on My work
        page.goto(f"{live_server.url}/patients/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def clinic(world):
    """The world's team, dressed as a real caseload: names, a patient's own goals, a
    sensitive need, activities of several disciplines and more patients on the worklist."""
    today = timezone.localdate()
    d = f.discipline
    for user, first, last, title in [
        (world.nurse, "Tom", "Ellis", "RN"),
        (world.case_manager, "Carmen", "Diaz", "RN, CCM"),
        (world.lead, "Priya", "Raman", "MD"),
        (world.pharmacist, "Hana", "Kim", "PharmD"),
        (world.behavioural, "Ruth", "Adeyemi", "LCSW"),
    ]:
        user.first_name, user.last_name, user.title = first, last, title
        user.phone = "+1 555 0100"
        user.save()
    patient = world.patient
    patient.birth_date = dt.date(1948, 3, 14)
    patient.preferred_language = "es"
    patient.interpreter_needed = True
    patient.preferences = "I want to keep walking to church on Sundays and stay at home with José."
    patient.save()
    f.CaregiverFactory(
        patient=patient,
        name="José Team",
        relationship="spouse",
        is_primary=True,
        phone="+1 555 0142",
        lives_with_patient=True,
        may_receive_information=True,
    )
    f.CaregiverFactory(patient=patient, name="Lucía Team", relationship="child", phone="+1 555 0178")
    f.ConsentFactory(patient=patient, scope="information-sharing")
    referral_consent = f.ConsentFactory(patient=patient, scope="referral")
    plan = world.plan
    plan.title = "Diabetes and mobility plan"
    plan.review_due = today + dt.timedelta(days=21)
    plan.save()
    world.plan_title = plan.title

    hba1c = f.GoalFactory(
        care_plan=plan,
        description="HbA1c below 7.5 % within three months",
        expressed_by="clinician",
        priority="high-priority",
        owner_discipline=d("physician"),
        target_measure="HbA1c",
        target_value="< 7.5 %",
        target_due=today + dt.timedelta(days=90),
    )
    walk = f.GoalFactory(
        care_plan=plan,
        description="Walk to church on Sundays without stopping",
        expressed_by="patient",
        priority="high-priority",
        target_measure="Walking distance",
        target_value="400 m",
        target_due=today + dt.timedelta(days=60),
    )
    f.GoalFactory(
        care_plan=plan,
        description="Stay living at home with her husband",
        expressed_by="family",
        priority="medium-priority",
        lifecycle_status="accepted",
    )
    diabetes = f.NeedFactory(
        care_plan=plan,
        domain="medical",
        category="clinical",
        description="Type 2 diabetes, poorly controlled on current regimen",
    )
    diabetes.goals.add(hba1c)
    transport = f.NeedFactory(
        care_plan=plan,
        domain="social",
        category="transportation",
        is_barrier=True,
        description="No transport to clinic appointments since husband stopped driving",
    )
    transport.goals.add(walk)
    f.NeedFactory(
        care_plan=plan,
        domain="behavioural",
        category="mental-health",
        description="Low mood since husband's stroke; PHQ-9 score 14",
        sensitivity=world.behavioural_health,
    )
    world.insulin = f.ActivityFactory(
        care_plan=plan,
        title="Teach insulin pen technique",
        description="Two sessions at home, with José present.",
        owner_discipline=d("nursing"),
        assigned_to=world.nurse,
        due_date=today + dt.timedelta(days=3),
    )
    world.insulin.goals.add(hba1c)
    world.insulin.needs.add(diabetes)
    f.ActivityFactory(
        care_plan=plan,
        title="Medication reconciliation",
        owner_discipline=d("pharmacy"),
        assigned_to=world.pharmacist,
        status="in-progress",
        due_date=today + dt.timedelta(days=1),
    )
    rides = f.ActivityFactory(
        care_plan=plan,
        title="Arrange volunteer driver for appointments",
        owner_discipline=d("case-management"),
        assigned_to=world.case_manager,
        status="scheduled",
        due_date=today + dt.timedelta(days=7),
    )
    rides.needs.add(transport)
    service = f.ServiceFactory(
        name="Volunteer driver programme",
        organization=f.OrganizationFactory(name="Northside Community Transport"),
    )
    f.ReferralFactory(
        patient=patient,
        care_plan=plan,
        need=transport,
        service=service,
        referred_by=world.nurse,
        status="requested",
        consent=referral_consent,
        sent_at=timezone.now() - dt.timedelta(days=2),
        reason="Rides to clinic twice a month",
    )
    f.HandoffFactory(
        patient=patient,
        care_plan=plan,
        from_user=world.case_manager,
        to_user=world.nurse,
        situation="Discharged yesterday after hypoglycaemia; needs home visit this week",
        priority="urgent",
    )

    people = [
        ("Okafor", "Grace", "active"),
        ("Nguyen", "Bao", "draft"),
        ("Schmidt", "Hans", "active"),
        ("Silva", "Ana", "on-hold"),
        ("Walker", "June", "active"),
    ]
    for i, (family, given, status) in enumerate(people):
        p = f.PatientFactory(
            mrn=f"MRN-{4100 + i}",
            given_name=given,
            family_name=family,
            birth_date=dt.date(1940 + i * 7, 1 + i, 10 + i),
        )
        team_services.membership_add(
            patient=p, user=world.nurse, discipline=d("nursing"), start_date=today - dt.timedelta(days=10)
        )
        team_services.membership_add(
            patient=p,
            user=world.case_manager,
            discipline=d("case-management"),
            role="case-manager",
            start_date=today - dt.timedelta(days=10),
        )
        p_plan = f.CarePlanFactory(
            patient=p,
            title=f"{given}'s care plan",
            status=status,
            review_due=today + dt.timedelta(days=5 + i * 9),
        )
        if i % 2 == 0:
            f.ActivityFactory(
                care_plan=p_plan,
                title="Follow-up call",
                assigned_to=world.nurse,
                due_date=today - dt.timedelta(days=i),
            )
    return world
