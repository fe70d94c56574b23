"""Capacity and eligibility before a referral, and proposed listing edits reviewed by a
catalog administrator: a full service is warned of before sending (and sent only when
the referrer confirms), eligibility is a warning and never a refusal, publishing applies
the change and sets last_modified and the assurance, rejecting leaves the listing as it
was, only catalog administrators review, and listings not assured for the configured
months are listed as stale."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from referrals import hsds, services
from referrals.models import ListingChange, Referral, Service
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def consent(world):
    return f.ConsentFactory(patient=world.patient)


@pytest.fixture
def pantry(world):
    return f.ServiceFactory(
        name="Eastside Food Pantry",
        phone="555-0100",
        service_area="Springfield",
        details={"phones": [{"id": "7d8e0c0e-5b4f-4e4b-9a36-0e2b0c6b9f10", "number": "555-0100"}]},
    )


def new_url(world, **query) -> str:
    url = reverse("referrals:new", kwargs={"plan_id": world.plan.pk})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def post_referral(client, world, service, **extra):
    data = {"service": str(service.pk), "reason": "No food at home", "priority": "routine", "send": "on"}
    data.update(extra)
    return client.post(new_url(world), data)


# ---------------------------------------------------------------------------
# Capacity
# ---------------------------------------------------------------------------
def test_the_catalog_search_shows_capacity(client, world, pantry):
    services.service_capacity_set(by=world.admin, service=pantry, status="waitlist", note="about 3 weeks")
    client.force_login(world.nurse)
    page = client.get(reverse("referrals:service_list"), {"q": "pantry"}).content.decode()
    assert "Waitlist" in page and "about 3 weeks" in page


def test_sending_to_a_full_service_is_warned_of_and_needs_a_confirmation(client, world, pantry, consent):
    services.service_capacity_set(by=world.admin, service=pantry, status="full")
    client.force_login(world.case_manager)
    chosen = client.get(new_url(world, service=pantry.pk)).content.decode()
    assert "says it is full" in chosen and 'name="send_to_full"' in chosen
    refused = post_referral(client, world, pantry)
    assert refused.status_code == 422
    assert "says it is full. Tick to send anyway" in refused.content.decode()
    assert not Referral.objects.exists()
    sent = post_referral(client, world, pantry, send_to_full="on")
    assert sent.status_code == 302
    assert Referral.objects.get().status == "requested"


def test_a_draft_to_a_full_service_needs_no_confirmation(client, world, pantry, consent):
    services.service_capacity_set(by=world.admin, service=pantry, status="full")
    client.force_login(world.case_manager)
    data = {"service": str(pantry.pk), "reason": "No food", "priority": "routine"}
    assert client.post(new_url(world), data).status_code == 302
    assert Referral.objects.get().status == "draft"


def test_only_catalog_admins_or_registered_editors_set_capacity(world, pantry):
    with pytest.raises(PermissionDenied):
        services.service_capacity_set(by=world.nurse, service=pantry, status="full")
    services.CAPACITY_EDITORS.append(lambda user, service: user.pk == world.nurse.pk)
    try:
        services.service_capacity_set(by=world.nurse, service=pantry, status="full", available=0, maximum=10)
    finally:
        services.CAPACITY_EDITORS.pop()
    pantry.refresh_from_db()
    assert pantry.capacity_status == "full" and pantry.capacity_updated_at is not None
    with pytest.raises(ValidationError):
        services.service_capacity_set(by=world.admin, service=pantry, status="closed")
    with pytest.raises(ValidationError):
        services.service_capacity_set(
            by=world.admin, service=pantry, status="available", available=5, maximum=2
        )


def test_the_capacity_page_is_for_catalog_admins(client, world, pantry):
    url = reverse("referrals:service_capacity", kwargs={"service_id": pantry.pk})
    client.force_login(world.nurse)
    assert client.get(url).status_code == 403
    assert client.post(url, {"capacity_status": "full"}).status_code == 403
    client.force_login(world.admin)
    assert client.get(url).status_code == 200
    bad = client.post(url, {"capacity_status": "closed"})
    assert bad.status_code == 422
    response = client.post(url, {"capacity_status": "full", "capacity_note": "until March"})
    assert response.status_code == 302
    pantry.refresh_from_db()
    assert (pantry.capacity_status, pantry.capacity_note) == ("full", "until March")
    assert hsds.service_json(pantry)["service_capacity"][0]["available"] == 0


# ---------------------------------------------------------------------------
# Eligibility
# ---------------------------------------------------------------------------
def test_eligibility_is_checked_against_the_patient_and_only_warns(client, world, consent):
    patient = world.patient
    patient.birth_date = timezone.localdate() - dt.timedelta(days=365 * 40 + 20)
    patient.city = "Shelbyville"
    patient.save()
    youth = f.ServiceFactory(name="Youth Drop-in", minimum_age=12, maximum_age=24, service_area="Springfield")
    client.force_login(world.case_manager)
    page = client.get(new_url(world, service=youth.pk, q="youth")).content.decode()
    assert "Youth Drop-in is for ages 12–24; the patient is 40." in page
    assert "Youth Drop-in serves Springfield; the patient&#x27;s address is in Shelbyville." in page
    assert post_referral(client, world, youth).status_code == 302  # a warning, not a block
    assert Referral.objects.get().service == youth


def test_no_eligibility_warning_when_the_patient_fits(world):
    patient = world.patient
    patient.birth_date = timezone.localdate() - dt.timedelta(days=365 * 30)
    patient.city = "Springfield"
    everyone = f.ServiceFactory(name="Open", minimum_age=18, service_area="Springfield and Shelbyville")
    statewide = f.ServiceFactory(name="Statewide line", service_area="Statewide")
    from referrals.selectors import eligibility_warnings

    assert eligibility_warnings(everyone, patient) == []
    patient.city = "Ogdenville"
    assert eligibility_warnings(statewide, patient) == []


# ---------------------------------------------------------------------------
# Proposed listing changes and their review
# ---------------------------------------------------------------------------
def test_a_proposal_publishes_nothing_until_reviewed(world, pantry):
    change = services.listing_change_propose(
        by=world.nurse, service=pantry, changes={"phone": "555-0199", "capacity_status": "waitlist"}
    )
    assert change.status == "pending" and change.previous == {"phone": "555-0100", "capacity_status": ""}
    pantry.refresh_from_db()
    assert pantry.phone == "555-0100" and pantry.capacity_status == ""


def test_a_proposal_is_checked_field_by_field(world, pantry):
    for changes in (
        {"name": "Renamed"},  # not an editable field
        {"url": "javascript:alert(1)"},
        {"email": "not an email"},
        {"capacity_status": "closed"},
        {"minimum_age": 30, "maximum_age": 10},
        {"phone": "555-0100"},  # nothing would change
        {},
    ):
        with pytest.raises(ValidationError):
            services.listing_change_propose(by=world.nurse, service=pantry, changes=changes)
    assert not ListingChange.objects.exists()


def test_publishing_applies_the_change_and_sets_last_modified_and_assured_date(client, world, pantry):
    change = services.listing_change_propose(
        by=world.nurse,
        service=pantry,
        changes={"phone": "555-0199", "hours_description": "Mon-Fri 9-5", "capacity_status": "full"},
        note="Called them",
    )
    client.force_login(world.admin)
    page = client.get(reverse("referrals:listing_changes"))
    assert (
        page.status_code == 200
        and "555-0199" in page.content.decode()
        and "Called them" in page.content.decode()
    )
    before = timezone.now()
    response = client.post(reverse("referrals:listing_changes"), {"change": change.pk, "decision": "publish"})
    assert response.status_code == 302
    pantry.refresh_from_db()
    assert (pantry.phone, pantry.hours_description, pantry.capacity_status) == (
        "555-0199",
        "Mon-Fri 9-5",
        "full",
    )
    assert pantry.last_modified >= before and pantry.capacity_updated_at >= before
    assert (
        pantry.assured_date == timezone.localdate().isoformat()
        and pantry.last_verified == timezone.localdate()
    )
    assert hsds.service_json(pantry)["phones"][0]["number"] == "555-0199"  # the HSDS phone follows
    change.refresh_from_db()
    assert change.status == "published" and change.reviewed_by == world.admin and change.reviewed_at
    again = client.post(reverse("referrals:listing_changes"), {"change": change.pk, "decision": "reject"})
    assert again.status_code == 409
    change.refresh_from_db()
    assert change.status == "published"


def test_rejecting_leaves_the_listing_unchanged(client, world, pantry):
    org = pantry.organization
    change = services.listing_change_propose(by=world.nurse, organization=org, changes={"phone": "555-0000"})
    before = Service.objects.filter(pk=pantry.pk).values().get()
    client.force_login(world.admin)
    response = client.post(
        reverse("referrals:listing_changes"),
        {"change": change.pk, "decision": "reject", "note": "Wrong number"},
    )
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.phone != "555-0000"
    assert Service.objects.filter(pk=pantry.pk).values().get() == before
    change.refresh_from_db()
    assert (change.status, change.review_note, change.reviewed_by) == (
        "rejected",
        "Wrong number",
        world.admin,
    )


def test_someone_who_is_not_a_catalog_admin_cannot_review(client, world, pantry):
    change = services.listing_change_propose(by=world.nurse, service=pantry, changes={"phone": "555-0199"})
    for user in (world.nurse, world.case_manager, world.outsider):
        client.force_login(user)
        assert client.get(reverse("referrals:listing_changes")).status_code in (403, 404)
        response = client.post(
            reverse("referrals:listing_changes"), {"change": change.pk, "decision": "publish"}
        )
        assert response.status_code in (403, 404)
    with pytest.raises(PermissionDenied):
        services.listing_change_publish(by=world.nurse, change=change)
    change.refresh_from_db()
    pantry.refresh_from_db()
    assert change.status == "pending" and pantry.phone == "555-0100"
    client.logout()
    assert client.get(reverse("referrals:listing_changes")).status_code == 302  # to sign in


def test_stale_listings_are_those_not_assured_for_the_configured_months(client, world, settings):
    today = timezone.localdate()
    fresh = f.ServiceFactory(name="Fresh", last_verified=today - dt.timedelta(days=30))
    old = f.ServiceFactory(name="Old", last_verified=today - dt.timedelta(days=400))
    never = f.ServiceFactory(name="Never checked")
    f.ServiceFactory(name="Gone", status="defunct")
    client.force_login(world.admin)
    url = reverse("referrals:stale_listings")
    page = client.get(url).content.decode()
    assert "Old" in page and "Never checked" in page and "Fresh" not in page and "Gone" not in page
    assert page.index("Never checked") < page.index(">Old<")
    settings.CATALOG_STALE_MONTHS = 24
    page = client.get(url).content.decode()
    assert "Old" not in page and "Never checked" in page
    assert client.post(url, {"service": str(never.pk)}).status_code == 302
    never.refresh_from_db()
    assert never.last_verified == today
    assert ">Never checked<" not in client.get(url).content.decode()
    client.force_login(world.nurse)
    assert client.get(url).status_code == 403
    assert client.post(url, {"service": str(old.pk)}).status_code == 403
    old.refresh_from_db()
    assert old.last_verified == today - dt.timedelta(days=400)
    assert fresh.pk


def test_published_hours_reach_the_hsds_export(world, pantry):
    change = services.listing_change_propose(
        by=world.nurse, service=pantry, changes={"hours_description": "Tue 9-12"}
    )
    services.listing_change_publish(by=world.admin, change=change)
    pantry.refresh_from_db()
    exported = hsds.service_json(pantry)
    assert exported["schedules"][0]["description"] == "Tue 9-12"
    assert not list(hsds.validator("service").iter_errors(exported))
