"""Closed-loop referrals as a clinician (and an attacker) sees them: consent before
sending, inactive services refused with the reason, the Gravity lifecycle with every
change logged, illegal transitions refused, closing updates the need, reopening needs
a note, and patient data stays inside the team."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careplans.models import Note
from careteam.models import AuditEvent, EmergencyAccess
from referrals.models import Referral, ReferralEvent
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def food(world):
    term = f.TaxonomyTermFactory(code="food", name="Food")
    service = f.ServiceFactory(name="Eastside Food Pantry", description="Groceries every week", is_free=True)
    service.categories.set([term])
    return service


@pytest.fixture
def need(world):
    return f.NeedFactory(care_plan=world.plan, category="food", description="Runs out of food by mid-month")


@pytest.fixture
def consent(world):
    return f.ConsentFactory(patient=world.patient)


def new_url(world) -> str:
    return reverse("referrals:new", kwargs={"plan_id": world.plan.pk})


def post_referral(client, world, service, need=None, **extra):
    data = {"service": str(service.pk), "reason": "No food at home", "priority": "urgent", "send": "on"}
    if need is not None:
        data["need"] = str(need.pk)
    data.update(extra)
    return client.post(new_url(world), data)


def set_status(client, referral, status, **data):
    referral.refresh_from_db()
    return client.post(
        reverse("referrals:status", kwargs={"referral_id": referral.pk}),
        {"status": status, "expected_version": referral.version, **data},
    )


# ---------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------
def test_a_team_member_refers_from_a_need_and_the_referral_is_sent_with_the_consent(
    client, world, food, need, consent
):
    client.force_login(world.nurse)
    start = client.get(reverse("referrals:new_for_need", kwargs={"need_id": need.pk}))
    assert start.status_code == 302 and "category=food" in start.url and f"need={need.pk}" in start.url
    page = client.get(start.url)
    assert page.status_code == 200 and b"Eastside Food Pantry" in page.content
    response = post_referral(client, world, food, need)
    referral = Referral.objects.get()
    assert response.status_code == 302 and response.url == reverse("referrals:detail", args=[referral.pk])
    assert referral.status == "requested" and referral.consent == consent and referral.sent_at
    assert referral.need == need and referral.priority == "urgent" and referral.tracked_by_referrer
    assert list(referral.events.values_list("from_status", "to_status", "by")) == [
        ("", "draft", world.nurse.pk),
        ("draft", "requested", world.nurse.pk),
    ]


def test_sending_without_recorded_consent_is_refused_with_a_clear_error_and_writes_nothing(
    client, world, food, need
):
    client.force_login(world.nurse)
    page = client.get(new_url(world))
    assert b"No consent to share information with community services" in page.content
    response = post_referral(client, world, food, need)
    assert response.status_code == 422
    assert b"Record the patient&#x27;s consent" in response.content
    assert not Referral.objects.exists() and not ReferralEvent.objects.exists()


def test_a_draft_can_be_saved_without_consent_and_sent_once_consent_is_recorded(client, world, food):
    client.force_login(world.nurse)
    response = post_referral(client, world, food, send="")
    referral = Referral.objects.get()
    assert response.status_code == 302 and referral.status == "draft" and referral.consent is None
    refused = set_status(client, referral, "requested")
    assert refused.status_code == 422 and b"consent" in refused.content
    f.ConsentFactory(patient=world.patient)
    assert set_status(client, referral, "requested").status_code == 302
    referral.refresh_from_db()
    assert referral.status == "requested" and referral.consent is not None


def test_a_draft_never_sent_can_be_cancelled_and_reopened_through_the_consent_check(
    client, world, food, need
):
    client.force_login(world.nurse)
    post_referral(client, world, food, need, send="")
    referral = Referral.objects.get()
    response = set_status(client, referral, "cancelled")
    referral.refresh_from_db()
    assert response.status_code == 302, response.content
    assert referral.status == "cancelled" and referral.sent_at is None and referral.consent is None
    assert not Note.objects.filter(need=need).exists()  # no loop was open: nothing to report on the need
    refused = set_status(client, referral, "requested", note="Patient changed their mind")
    assert refused.status_code == 422 and b"consent" in refused.content
    referral.refresh_from_db()
    assert referral.status == "cancelled"
    f.ConsentFactory(patient=world.patient)
    assert set_status(client, referral, "requested", note="Patient changed their mind").status_code == 302
    referral.refresh_from_db()
    assert referral.status == "requested" and referral.sent_at and referral.consent is not None
    assert referral.closed_at is None and referral.events.last().note == "Patient changed their mind"


def test_a_draft_is_cancelled_through_the_api_with_its_version(client, world, food):
    client.force_login(world.nurse)
    post_referral(client, world, food, send="")
    referral = Referral.objects.get()
    url = f"/api/v1/referrals/{referral.pk}/"
    etag = client.get(url).headers["ETag"]
    response = client.patch(
        url, {"status": "cancelled"}, content_type="application/json", headers={"If-Match": etag}
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"


def test_a_referral_to_an_inactive_service_is_refused_with_the_reason(client, world, food, consent):
    food.status = "temporarily closed"
    food.save()
    client.force_login(world.nurse)
    response = post_referral(client, world, food)
    assert response.status_code == 422
    assert b"Eastside Food Pantry is temporarily closed: it cannot take referrals." in response.content
    assert not Referral.objects.exists()


def test_an_empty_referral_form_explains_each_missing_field(client, world, consent):
    client.force_login(world.nurse)
    response = client.post(new_url(world), {})
    assert response.status_code == 422
    assert b"Choose a service." in response.content and b"This field is required." in response.content
    assert not Referral.objects.exists()


def test_a_need_of_another_plan_cannot_be_used(client, world, food, consent):
    other_need = f.NeedFactory(care_plan=world.other_plan)
    client.force_login(world.nurse)
    assert post_referral(client, world, food, other_need).status_code == 404
    assert not Referral.objects.exists()


# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------
@pytest.fixture
def sent(client, world, food, need, consent):
    client.force_login(world.case_manager)
    post_referral(client, world, food, need)
    return Referral.objects.get()


def test_the_referrer_records_the_services_answers_along_legal_transitions_and_each_is_logged(
    client, world, sent
):
    assert set_status(client, sent, "accepted", note="Called, they will see her Monday").status_code == 302
    assert set_status(client, sent, "in-progress").status_code == 302
    sent.refresh_from_db()
    assert sent.status == "in-progress" and sent.accepted_at and sent.responded_at
    log = list(sent.events.values_list("from_status", "to_status", "by", "note"))
    assert log[-2:] == [
        ("requested", "accepted", world.case_manager.pk, "Called, they will see her Monday"),
        ("accepted", "in-progress", world.case_manager.pk, ""),
    ]
    page = client.get(reverse("referrals:detail", args=[sent.pk]))
    assert (
        "Requested → Accepted".encode() in page.content
        and world.case_manager.display_name.encode() in page.content
    )


def test_an_illegal_transition_is_refused_with_the_allowed_ones_and_nothing_changes(client, world, sent):
    response = set_status(client, sent, "completed", outcome="got-help")
    assert response.status_code == 422
    assert b"Select a valid choice" in response.content
    events = sent.events.count()
    # the service layer refuses it too, whatever the form offers
    from careteam.permissions import patient_access
    from referrals import services

    with pytest.raises(Exception, match="Cannot change status from 'requested' to 'completed'"):
        services.referral_set_status(
            access=patient_access(world.case_manager, world.patient),
            referral=sent,
            by=world.case_manager,
            status="completed",
            outcome="got-help",
        )
    sent.refresh_from_db()
    assert sent.status == "requested" and sent.events.count() == events


def test_closing_with_an_outcome_resolves_the_need_and_notes_it_in_the_plan(client, world, sent, need):
    set_status(client, sent, "accepted")
    missing = set_status(client, sent, "completed")
    assert missing.status_code == 422 and b"Record the outcome to close the referral." in missing.content
    assert set_status(client, sent, "completed", outcome="got-help", note="Weekly box").status_code == 302
    sent.refresh_from_db()
    need.refresh_from_db()
    assert sent.status == "completed" and sent.outcome == "got-help" and sent.closed_at
    assert need.status == "resolved"
    assert Note.objects.filter(need=need, text__contains="Got help").exists()


def test_a_failed_referral_keeps_the_need_open_and_says_why(client, world, sent, need):
    assert set_status(client, sent, "failed", outcome="could-not-contact").status_code == 302
    need.refresh_from_db()
    assert need.status == "active"
    assert Note.objects.filter(need=need, text__contains="Could not contact").exists()


def test_a_closed_referral_reopens_only_with_a_note(client, world, sent):
    set_status(client, sent, "rejected", outcome="no-capacity")
    refused = set_status(client, sent, "requested")
    assert refused.status_code == 422 and b"Say why the referral is reopened." in refused.content
    assert set_status(client, sent, "requested", note="They have space again").status_code == 302
    sent.refresh_from_db()
    assert sent.status == "requested" and sent.closed_at is None and sent.outcome == ""
    assert sent.events.last().note == "They have space again"


def test_a_stale_form_gets_a_conflict_instead_of_overwriting(client, world, sent):
    old_version = sent.version
    set_status(client, sent, "accepted")
    response = client.post(
        reverse("referrals:status", args=[sent.pk]),
        {"status": "cancelled", "outcome": "declined", "expected_version": old_version},
    )
    assert response.status_code == 409 and b"changed by someone else" in response.content
    sent.refresh_from_db()
    assert sent.status == "accepted"


# ---------------------------------------------------------------------------
# Who sees what
# ---------------------------------------------------------------------------
def test_an_outsider_gets_404_for_the_referral_its_status_and_the_plans_referral_page(
    client, world, sent, need
):
    client.force_login(world.outsider)
    assert client.get(reverse("referrals:detail", args=[sent.pk])).status_code == 404
    assert set_status(client, sent, "accepted").status_code == 404
    assert client.get(new_url(world)).status_code == 404
    assert client.get(reverse("referrals:new_for_need", args=[need.pk])).status_code == 404
    assert client.get(reverse("referrals:detail", args=[999999])).status_code == 404
    listing = client.get(reverse("referrals:list") + "?scope=all")
    assert listing.status_code == 200 and b"Eastside Food Pantry" not in listing.content
    sent.refresh_from_db()
    assert sent.status == "requested"


def test_emergency_access_reads_the_referral_but_cannot_change_it(client, world, sent):
    EmergencyAccess.objects.create(
        user=world.outsider,
        patient=world.patient,
        reason="ED visit",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    client.force_login(world.outsider)
    assert client.get(reverse("referrals:detail", args=[sent.pk])).status_code == 200
    assert set_status(client, sent, "accepted").status_code == 403
    assert client.get(new_url(world)).status_code == 403


def test_a_referral_from_a_sensitive_need_is_hidden_from_disciplines_the_policy_excludes(
    client, world, food, consent
):
    secret = f.NeedFactory(
        care_plan=world.plan, description="Alcohol use", sensitivity=world.behavioural_health
    )
    client.force_login(world.case_manager)
    post_referral(client, world, food, secret)
    referral = Referral.objects.get()
    client.force_login(world.nurse)
    assert client.get(reverse("referrals:detail", args=[referral.pk])).status_code == 404
    assert client.get(reverse("referrals:new_for_need", args=[secret.pk])).status_code == 404
    listing = client.get(reverse("referrals:list") + "?scope=all")
    assert b"Eastside Food Pantry" not in listing.content
    assert b"Alcohol use" not in client.get(new_url(world)).content
    client.force_login(world.behavioural)
    assert client.get(reverse("referrals:detail", args=[referral.pk])).status_code == 200


def test_reading_a_referral_is_audited(client, world, sent):
    client.force_login(world.nurse)
    client.get(reverse("referrals:detail", args=[sent.pk]))
    assert AuditEvent.objects.filter(
        user=world.nurse, action="view", object_type="referrals.referral", object_id=str(sent.pk)
    ).exists()


def test_the_referral_list_has_constant_queries(client, world, food, consent, django_assert_max_num_queries):
    client.force_login(world.case_manager)
    # one open referral per service and need: each goes to another service
    for _ in range(3):
        post_referral(client, world, f.ServiceFactory())
    with django_assert_max_num_queries(8):
        first = client.get(reverse("referrals:list"))
    for _ in range(6):
        post_referral(client, world, f.ServiceFactory())
    with django_assert_max_num_queries(8):
        second = client.get(reverse("referrals:list"))
    assert first.status_code == second.status_code == 200
    assert second.content.count(b'class="status status-requested"') == 9
