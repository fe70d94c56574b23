"""The Content-Security-Policy holds in a real browser: every page a clinician, a case
manager and an auditor opens, and the htmx fragments they load, run with no policy
violation and no script error (no inline script or style the policy would block)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def watch(page) -> list[str]:
    """Collect CSP violations (reported by the page itself) and uncaught script errors."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text or message.type == "error"
            else None
        ),
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    return problems


def test_pages_and_fragments_run_under_the_policy(new_page, live_server, clinic):
    world = clinic
    world.case_manager.user_permissions.add(Permission.objects.get(codename="view_audit_log"))
    page = new_page(world.case_manager)
    problems = watch(page)
    header = page.request.get(f"{live_server.url}/work/").headers.get("content-security-policy", "")
    assert "script-src" in header and "'unsafe-inline'" not in header.split("script-src", 1)[1].split(";")[0]

    pages = [
        reverse("my_work"),
        reverse("worklist"),
        reverse("patient_chart", kwargs={"patient_id": world.patient.pk}),
        reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}),
        reverse("careplans:plan_print", kwargs={"plan_id": world.plan.pk}),
        reverse("team:inbox"),
        reverse("security:emergency_access"),
        reverse("security:audit_log"),
        reverse("security:emergency_access_report"),
        reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk}),
        reverse("patient_new"),
    ]
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")

    # the plan editor's htmx sections and the worklist's live search
    page.goto(f"{live_server.url}{reverse('careplans:plan_editor', kwargs={'plan_id': world.plan.pk})}")
    page.get_by_text("Add a goal", exact=True).click()
    expect(page.locator("form[action$='/goals/new/']")).to_be_visible()
    page.goto(f"{live_server.url}{reverse('worklist')}")
    page.get_by_label("Search by name or MRN").fill("Team")
    expect(page.get_by_role("link", name="Team, Alice")).to_be_visible()
    page.wait_for_load_state("networkidle")

    assert problems == []
