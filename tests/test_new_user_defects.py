"""What a new user hit (issue 14, part 4), each defect with the test that proves it gone:
htmx Back, long text, SBAR, entered-in-error, plain labels and dates, duplicate referrals,
catalog search, error pages in demo runs and MRN search."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from careplans.models import STATEMENT_MAX_LENGTH, Goal
from careteam.middleware import ProductErrorPagesMiddleware
from referrals.models import Referral
from tests import factories as f

HX = {"HTTP_HX_REQUEST": "true"}


# ---------------------------------------------------------------------------
# htmx history: Back restores a full page
# ---------------------------------------------------------------------------
def test_worklist_search_fragment_varies_on_hx_request(client, world):
    client.force_login(world.nurse)
    fragment = client.get(reverse("worklist"), {"q": "Team"}, **HX)
    assert b"<html" not in fragment.content
    assert "HX-Request" in fragment["Vary"]


def test_history_restore_of_a_pushed_search_url_gets_the_full_page(client, world):
    client.force_login(world.nurse)
    response = client.get(
        reverse("worklist"), {"q": "Team"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"<html" in response.content and b'class="topbar"' in response.content
    assert b"Team, Alice" in response.content


# ---------------------------------------------------------------------------
# Long text
# ---------------------------------------------------------------------------
def test_a_goal_longer_than_the_limit_is_refused_in_the_form_and_nothing_is_written(client, world):
    client.force_login(world.case_manager)
    url = reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk})
    data = {
        "new-goal-description": "x" * (STATEMENT_MAX_LENGTH + 1),
        "new-goal-expressed_by": "patient",
        "new-goal-priority": "medium-priority",
        "new-goal-lifecycle_status": "proposed",
    }
    response = client.post(url, data, **HX)
    assert response.status_code == 422
    assert b"Ensure this value has at most 2000 characters" in response.content
    assert not Goal.objects.filter(care_plan=world.plan).exists()


def test_a_goal_longer_than_the_limit_is_a_400_in_the_api(world):
    api = APIClient()
    api.force_authenticate(world.case_manager)
    response = api.post(
        "/api/v1/goals/",
        {"care_plan": world.plan.pk, "description": "y" * 10_000},
        format="json",
    )
    assert response.status_code == 400
    assert "no more than 2000 characters" in str(response.json()["description"])
    assert not Goal.objects.filter(care_plan=world.plan).exists()


def test_long_unbroken_strings_wrap():
    from pathlib import Path

    css = (Path(__file__).resolve().parents[1] / "static" / "css" / "careteam.css").read_text()
    assert "overflow-wrap: anywhere" in css


# ---------------------------------------------------------------------------
# SBAR
# ---------------------------------------------------------------------------
def test_the_sbar_of_a_handoff_is_four_labelled_blocks(client, world):
    handoff = f.HandoffFactory(
        patient=world.patient,
        care_plan=world.plan,
        from_user=world.case_manager,
        to_user=world.nurse,
        situation="Fell at home",
        background="Lives alone",
        assessment="Bruised hip",
        recommendation="Home visit",
    )
    client.force_login(world.nurse)
    page = client.get(reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})).content.decode()
    for block, text in [
        ("situation", "Fell at home"),
        ("background", "Lives alone"),
        ("assessment", "Bruised hip"),
        ("recommendation", "Home visit"),
    ]:
        start = page.index(f'id="sbar-{block}"')
        assert text in page[start : start + 300]
        assert f"<dt>{block.capitalize()}</dt>" in page[start : start + 300]


# ---------------------------------------------------------------------------
# Entered in error and cancelled: a reason, and the item folds in the live plan
# ---------------------------------------------------------------------------
def test_entering_in_error_without_a_reason_is_refused_and_with_one_folds_the_item(client, world):
    goal = f.GoalFactory(care_plan=world.plan, description="Walk to church", lifecycle_status="active")
    client.force_login(world.case_manager)
    url = reverse("careplans:goal_status", kwargs={"goal_id": goal.pk})
    refused = client.post(url, {"status": "entered-in-error", "expected_version": 1}, **HX)
    assert refused.status_code == 422
    assert b"Say why" in refused.content
    goal.refresh_from_db()
    assert goal.lifecycle_status == "active"

    done = client.post(
        url, {"status": "entered-in-error", "status_reason": "Wrong patient", "expected_version": 1}, **HX
    )
    assert done.status_code == 200
    goal.refresh_from_db()
    assert (goal.lifecycle_status, goal.status_reason) == ("entered-in-error", "Wrong patient")
    editor = client.get(reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})).content.decode()
    card = editor[editor.index(f'id="goal-{goal.pk}"') :][:900]
    assert 'class="item collapsed"' in card and "Wrong patient" in card
    assert "Change status" not in card and "Edit" not in card
    history = client.get(reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}))
    assert b"Wrong patient" in history.content


def test_cancelling_through_the_api_needs_a_reason(world):
    goal = f.GoalFactory(care_plan=world.plan, lifecycle_status="active")
    api = APIClient()
    api.force_authenticate(world.case_manager)
    url = f"/api/v1/goals/{goal.pk}/"
    refused = api.patch(url, {"lifecycle_status": "cancelled"}, format="json", HTTP_IF_MATCH='W/"1"')
    assert refused.status_code == 400 and "status_reason" in refused.json()
    ok = api.patch(
        url,
        {"lifecycle_status": "cancelled", "status_reason": "Patient chose another goal"},
        format="json",
        HTTP_IF_MATCH='W/"1"',
    )
    assert ok.status_code == 200, ok.content
    assert ok.json()["lifecycle_status"] == "cancelled"  # FHIR codes stay in the API
    assert ok.json()["status_reason"] == "Patient chose another goal"


# ---------------------------------------------------------------------------
# Plain labels, one date format, turnaround in days
# ---------------------------------------------------------------------------
def test_pages_show_status_labels_and_one_date_format(client, world):
    import datetime as dt

    world.plan.review_due = dt.date(2026, 12, 2)
    world.plan.save()
    f.ActivityFactory(care_plan=world.plan, title="Call", status="in-progress")
    client.force_login(world.case_manager)
    page = client.get(reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})).content
    assert b"Review 2 Dec 2026" in page
    assert b">In progress<" in page and b">in-progress<" not in page


def test_turnaround_is_in_days():
    from careteam.templatetags.careteam_format import days, status_label

    assert days(36) == "1.5 days" and days(24) == "1 day" and days(None) == "–"
    assert status_label("entered-in-error") == "Entered in error"


# ---------------------------------------------------------------------------
# Referrals: nothing preselected, no duplicate open referral
# ---------------------------------------------------------------------------
@pytest.fixture
def service(world):
    return f.ServiceFactory(name="Rides for seniors")


def _refer(client, world, service, need):
    return client.post(
        reverse("referrals:new", kwargs={"plan_id": world.plan.pk}),
        {
            "service": str(service.pk),
            "need": str(need.pk),
            "reason": "Rides",
            "priority": "routine",
            "send": "on",
        },
    )


def test_a_second_open_referral_to_the_same_service_for_the_same_need_is_warned_and_refused(
    client, world, service
):
    f.ConsentFactory(patient=world.patient, scope="referral")
    need = f.NeedFactory(care_plan=world.plan, domain="social", category="transportation")
    client.force_login(world.case_manager)
    assert _refer(client, world, service, need).status_code == 302
    first = Referral.objects.get()
    form = client.get(
        reverse("referrals:new", kwargs={"plan_id": world.plan.pk}), {"service": service.pk, "need": need.pk}
    )
    assert b'id="duplicate-warning"' in form.content
    again = _refer(client, world, service, need)  # Back, then Save again
    assert again.status_code == 422
    assert b"An open referral to this service for the same need already exists" in again.content
    assert list(Referral.objects.all()) == [first]


def test_the_referral_update_form_preselects_no_status(client, world, service):
    f.ConsentFactory(patient=world.patient, scope="referral")
    need = f.NeedFactory(care_plan=world.plan, domain="social", category="transportation")
    client.force_login(world.case_manager)
    _refer(client, world, service, need)
    referral = Referral.objects.get()
    page = client.get(reverse("referrals:detail", kwargs={"referral_id": referral.pk})).content.decode()
    select = page[page.index('name="status"') :][:600]
    assert '<option value="" selected>Choose…</option>' in select
    response = client.post(
        reverse("referrals:status", kwargs={"referral_id": referral.pk}),
        {"expected_version": referral.version},
    )
    assert b"Choose the new status." in response.content
    referral.refresh_from_db()
    assert referral.status == "requested"


# ---------------------------------------------------------------------------
# Catalog search
# ---------------------------------------------------------------------------
def test_catalog_search_finds_services_by_category_synonym_and_language_name(client, world):
    term = f.TaxonomyTermFactory(code="transportation", name="Transportation", synonyms=["rides", "driver"])
    van = f.ServiceFactory(name="Northside Van", description="Door to door", languages=["en", "es"])
    van.categories.set([term])
    f.ServiceFactory(name="Food bank", description="Groceries", languages=["en"])
    client.force_login(world.nurse)
    for text in ("transport", "rides"):
        page = client.get(reverse("referrals:service_list"), {"q": text})
        assert page.status_code == 200 and b"Northside Van" in page.content, text
    spanish = client.get(reverse("referrals:service_list"), {"language": "Spanish"})
    assert spanish.status_code == 200
    assert b"Northside Van" in spanish.content and b"Food bank" not in spanish.content


# ---------------------------------------------------------------------------
# Demo runs show the product's error pages
# ---------------------------------------------------------------------------
@override_settings(DEBUG=True, TECHNICAL_ERROR_PAGES=False)
def test_with_debug_on_an_unknown_url_shows_the_products_404(client, world):
    client.force_login(world.nurse)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"Not found" in response.content and b"Using the URLconf" not in response.content
    assert b'class="topbar"' in response.content


def test_the_product_pages_are_off_when_technical_pages_are_asked_for():
    with override_settings(DEBUG=True, TECHNICAL_ERROR_PAGES=True):
        assert ProductErrorPagesMiddleware(lambda r: None).active is False
    with override_settings(DEBUG=True, TECHNICAL_ERROR_PAGES=False):
        assert ProductErrorPagesMiddleware(lambda r: None).active is True


# ---------------------------------------------------------------------------
# MRN search
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("typed", ["4100", "mrn4100", "MRN 4100", "mrn-4100"])
def test_worklist_finds_an_mrn_typed_without_prefix_or_dash(client, world, typed):
    world.patient.mrn = "MRN-4100"
    world.patient.save()
    client.force_login(world.nurse)
    page = client.get(reverse("worklist"), {"q": typed})
    assert b"Team, Alice" in page.content


def test_short_digit_strings_do_not_match_mrns(client, world):
    world.patient.mrn = "MRN-4100"
    world.patient.save()
    client.force_login(world.nurse)
    assert b"Team, Alice" not in client.get(reverse("worklist"), {"q": "41"}).content


def test_an_expected_403_is_logged_without_a_traceback():
    import logging

    from careteam.logfilters import ClientErrorWithoutTraceback

    try:
        raise PermissionError("no")
    except PermissionError:
        import sys

        record = logging.LogRecord("django.request", logging.WARNING, "", 0, "Forbidden", (), sys.exc_info())
    record.status_code = 403
    assert ClientErrorWithoutTraceback().filter(record) and record.exc_info is None
    record.status_code, record.exc_info = 500, (ValueError, ValueError("x"), None)
    assert ClientErrorWithoutTraceback().filter(record) and record.exc_info is not None


# ---------------------------------------------------------------------------
# Print view and PDF
# ---------------------------------------------------------------------------
@pytest.fixture
def printable(world):
    f.GoalFactory(care_plan=world.plan, description="Walk to church on Sundays", expressed_by="patient")
    f.GoalFactory(care_plan=world.plan, description="HbA1c below 7.5", lifecycle_status="active")
    f.ActivityFactory(care_plan=world.plan, title="Teach insulin pen", assigned_to=world.nurse)
    f.ActivityFactory(
        care_plan=world.plan, title="Counselling for low mood", sensitivity=world.behavioural_health
    )
    f.NeedFactory(care_plan=world.plan, description="Low mood PHQ-9 14", sensitivity=world.behavioural_health)
    return world


def test_the_print_view_has_goals_first_no_controls_and_is_audited(client, printable):
    world = printable
    client.force_login(world.case_manager)
    page = client.get(reverse("careplans:plan_print", kwargs={"plan_id": world.plan.pk})).content.decode()
    assert "<form" not in page and "<button" not in page
    assert (
        page.index('id="print-goals"')
        < page.index('id="print-activities"')
        < page.index('id="print-contacts"')
    )
    assert "Teach insulin pen" in page and world.nurse.display_name in page
    from careteam.models import AuditEvent

    assert AuditEvent.objects.filter(user=world.case_manager, action="export", detail="print team").exists()


def test_the_family_version_leaves_out_sensitive_items_unless_chosen(client, printable):
    world = printable
    client.force_login(world.behavioural)  # may see the behavioural-health items
    url = reverse("careplans:plan_print", kwargs={"plan_id": world.plan.pk})
    family = client.get(url, {"version": "family"}).content.decode()
    assert "Walk to church on Sundays" in family
    assert "Counselling for low mood" not in family and "PHQ-9" not in family
    chosen = client.get(url, {"version": "family", "sensitive": "1"}).content.decode()
    assert "Counselling for low mood" in chosen


def test_sensitive_items_never_print_for_someone_who_may_not_see_them(client, printable):
    world = printable
    client.force_login(world.pharmacist)
    url = reverse("careplans:plan_print", kwargs={"plan_id": world.plan.pk})
    page = client.get(url, {"version": "team", "sensitive": "1"}).content.decode()
    assert "Counselling for low mood" not in page and "PHQ-9" not in page


def test_the_pdf_holds_the_goals_and_not_the_sensitive_ones(client, printable):
    from io import BytesIO

    world = printable
    client.force_login(world.behavioural)
    response = client.get(
        reverse("careplans:plan_pdf", kwargs={"plan_id": world.plan.pk}), {"version": "family"}
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    text = _pdf_text(BytesIO(response.content))
    assert "Walk to church on Sundays" in text
    assert "Counselling for low mood" not in text


def test_an_outsider_gets_404_for_the_print_view_and_the_pdf(client, printable):
    world = printable
    client.force_login(world.outsider)
    for name in ("careplans:plan_print", "careplans:plan_pdf"):
        assert client.get(reverse(name, kwargs={"plan_id": world.plan.pk})).status_code == 404


def test_an_unknown_print_version_is_a_400(client, world):
    client.force_login(world.nurse)
    url = reverse("careplans:plan_print", kwargs={"plan_id": world.plan.pk})
    assert client.get(url, {"version": "everyone"}).status_code == 400


def _pdf_text(stream) -> str:
    """The text of a WeasyPrint PDF: its content streams, inflated, with the glyph runs
    mapped back through the ToUnicode tables would be exact; the plain decoded strings
    are enough here because WeasyPrint writes ActualText-free hex runs per font subset."""
    import re
    import zlib

    data = stream.getvalue()
    text = []
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            text.append(zlib.decompress(raw).decode("latin-1"))
        except zlib.error:
            continue
    return _decode_runs("\n".join(text), data)


def _decode_runs(content: str, data: bytes) -> str:
    import re
    import zlib

    # ToUnicode CMaps: <glyph> <unicode> pairs
    mapping: dict[str, str] = {}
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            cmap = zlib.decompress(raw).decode("latin-1")
        except zlib.error:
            continue
        for glyph, uni in re.findall(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", cmap):
            mapping.setdefault(glyph.lower(), bytes.fromhex(uni).decode("utf-16-be", "ignore"))
    out = []
    for run in re.findall(r"<([0-9a-fA-F]+)>", content):
        width = 4 if len(run) % 4 == 0 else 2
        out.append("".join(mapping.get(run[i : i + width].lower(), "") for i in range(0, len(run), width)))
    return "".join(out)
