"""Partner organisations: the staff of the organisation behind a service answer its
referrals themselves, see only their own organisation's referrals, and of each only the
minimum necessary."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from careplans.models import Need, Note
from careteam.models import AuditEvent, Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from patients import services as patient_services
from referrals import partners
from referrals import services as referral_services
from referrals.models import Referral, ReferralEvent, ReferralMessage
from tests import factories as f

pytestmark = pytest.mark.django_db

API = "/api/v1/referrals/"


@pytest.fixture
def orgs(world):
    """Two organisations, each with a service and a partner; a referral to each."""
    org_a = f.OrganizationFactory(name="Harbor Food Bank")
    org_b = f.OrganizationFactory(name="Eastside Housing")
    food = f.ServiceFactory(organization=org_a, name="Harbor pantry", expected_response_days=2)
    housing = f.ServiceFactory(organization=org_b, name="Eastside shelter")
    partner_a = f.partner_user(org_a, "partner-a")
    partner_b = f.partner_user(org_b, "partner-b")
    world.patient.phone = "555-0100"
    world.patient.email = "alice@example.org"
    world.patient.address_line = "1 Main St"
    world.patient.save()
    f.ConsentFactory(patient=world.patient, contact_preferences="Text after 5 pm")
    access = patient_access(world.nurse, world.patient)
    need = f.NeedFactory(care_plan=world.plan, category="food", description="Runs out of food mid-month")
    other_need = f.NeedFactory(care_plan=world.plan, category="housing", description="PRIVATE-OTHER-NEED")
    to_a = referral_services.referral_create(
        access=access, by=world.nurse, plan=world.plan, service=food, need=need, reason="Needs groceries"
    )
    to_b = referral_services.referral_create(
        access=access, by=world.nurse, plan=world.plan, service=housing, need=other_need, reason="SECRET-B"
    )
    return {
        "a": org_a,
        "b": org_b,
        "food": food,
        "partner_a": partner_a,
        "partner_b": partner_b,
        "to_a": to_a,
        "to_b": to_b,
        "need": need,
    }


def patch(client, referral, **data):
    version = Referral.objects.get(pk=referral.pk).version
    return client.patch(
        f"{API}{referral.pk}/", data, content_type="application/json", headers={"if-match": f'W/"{version}"'}
    )


# ---------------------------------------------------------------------------
# What a partner sees
# ---------------------------------------------------------------------------
def test_a_referral_to_a_partner_service_is_answered_by_the_service_itself(orgs):
    assert orgs["to_a"].tracked_by_referrer is False


def test_a_partner_lists_only_its_own_organisations_referrals_with_the_minimum_fields(client, world, orgs):
    client.force_login(orgs["partner_a"])
    response = client.get(API)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["id"] for r in rows] == [orgs["to_a"].pk]
    row = rows[0]
    assert row["patient_name"] == f"{world.patient.given_name} {world.patient.family_name}"
    assert row["reason"] == "Needs groceries" and row["need_category"]
    assert row["phone"] == "555-0100" and row["contact_preferences"] == "Text after 5 pm"
    assert row["referrer_name"] == world.nurse.display_name
    body = response.content.decode()
    for secret in (
        world.patient.mrn,
        "SECRET-B",
        "PRIVATE-OTHER-NEED",
        "care_plan",
        "patient_id",
        world.plan.title,
    ):
        assert secret not in body


def test_a_partner_of_another_organisation_gets_404_for_the_referral(client, orgs):
    client.force_login(orgs["partner_b"])
    assert client.get(f"{API}{orgs['to_a'].pk}/").status_code == 404
    response = patch(client, orgs["to_a"], status="accepted")
    assert response.status_code == 404
    assert Referral.objects.get(pk=orgs["to_a"].pk).status == "requested"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/patients/",
        "/api/v1/care-plans/",
        "/api/v1/needs/",
        "/api/v1/conversations/",
        "/api/v1/goals/",
        "/fhir/ServiceRequest",
        "/referrals/",
        "/patients/",
        "/hsds/services",
    ],
)
def test_a_partner_gets_404_on_staff_apis_and_pages(client, orgs, path):
    client.force_login(orgs["partner_a"])
    assert client.get(path).status_code == 404


def test_a_staff_member_keeps_the_full_referral_api(client, world, orgs):
    client.force_login(world.nurse)
    rows = client.get(API).json()["results"]
    assert {r["id"] for r in rows} == {orgs["to_a"].pk, orgs["to_b"].pk}
    assert "care_plan" in rows[0]


def test_a_partner_cannot_create_a_referral_through_the_api(client, world, orgs):
    client.force_login(orgs["partner_a"])
    before = Referral.objects.count()
    response = client.post(
        API,
        {"care_plan": world.plan.pk, "service": str(orgs["food"].pk), "reason": "x"},
        content_type="application/json",
    )
    assert response.status_code == 404
    assert Referral.objects.count() == before


def test_revoking_the_consent_after_sending_hides_the_contact_details(client, world, orgs):
    consent = orgs["to_a"].consent
    patient_services.consent_revoke(
        by=world.case_manager,
        access=patient_access(world.case_manager, world.patient),
        consent=consent,
        reason="Patient asked by phone",
        expected_version=None,
    )
    client.force_login(orgs["partner_a"])
    row = client.get(f"{API}{orgs['to_a'].pk}/").json()
    assert row["contact_shared"] is False
    assert row["phone"] == row["email"] == row["address"] == row["contact_preferences"] == ""
    assert "555-0100" not in client.get(f"{API}{orgs['to_a'].pk}/").content.decode()


def test_a_consent_that_does_not_share_contact_details_withholds_them(client, orgs):
    type(orgs["to_a"].consent).objects.filter(pk=orgs["to_a"].consent_id).update(share_contact=False)
    client.force_login(orgs["partner_a"])
    row = client.get(f"{API}{orgs['to_a'].pk}/").json()
    assert row["contact_shared"] is False and row["phone"] == "" and row["patient_name"]


def test_every_partner_read_is_audited(client, orgs):
    client.force_login(orgs["partner_a"])
    client.get(f"{API}{orgs['to_a'].pk}/")
    assert AuditEvent.objects.filter(
        user=orgs["partner_a"], object_type="referrals.referral", object_id=str(orgs["to_a"].pk)
    ).exists()


# ---------------------------------------------------------------------------
# What a partner does
# ---------------------------------------------------------------------------
def test_accept_then_complete_through_the_api_closes_the_loop(client, world, orgs):
    client.force_login(orgs["partner_a"])
    assert patch(client, orgs["to_a"], status="accepted").status_code == 200
    response = patch(client, orgs["to_a"], status="completed", outcome="service-provided")
    assert response.status_code == 200, response.content
    referral = Referral.objects.get(pk=orgs["to_a"].pk)
    assert referral.status == "completed" and referral.outcome == "service-provided"
    assert referral.accepted_at is not None and referral.closed_at is not None
    need = Need.objects.get(pk=orgs["need"].pk)
    assert need.status == "resolved"
    assert need.history.first().history_user == orgs["partner_a"]
    assert Note.objects.filter(need=need, text__contains="Service provided").exists()
    steps = list(ReferralEvent.objects.filter(referral=referral).values_list("to_status", "by"))
    assert steps[-2:] == [("accepted", orgs["partner_a"].pk), ("completed", orgs["partner_a"].pk)]


def test_an_illegal_transition_answers_409_and_a_stale_version_412(client, orgs):
    client.force_login(orgs["partner_a"])
    response = patch(client, orgs["to_a"], status="completed", outcome="service-provided")
    assert response.status_code == 409
    stale = client.patch(
        f"{API}{orgs['to_a'].pk}/",
        {"status": "accepted"},
        content_type="application/json",
        headers={"if-match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert Referral.objects.get(pk=orgs["to_a"].pk).status == "requested"


@pytest.mark.parametrize(
    "data",
    [
        {"status": "rejected", "outcome": "bored"},
        {"status": "rejected", "outcome": "other", "note": "  "},
        {"status": "completed", "outcome": "not-provided"},
        {"status": "cancelled"},
        {"status": "rejected", "outcome": "not-eligible", "note": "x" * 5000},
    ],
)
def test_bad_partner_answers_are_refused_and_write_nothing(client, orgs, data):
    client.force_login(orgs["partner_a"])
    if data["status"] == "completed":
        patch(client, orgs["to_a"], status="accepted")
    before = (ReferralEvent.objects.count(), Notification.objects.count(), Note.objects.count())
    response = patch(client, orgs["to_a"], **data)
    assert 400 <= response.status_code < 500
    assert (ReferralEvent.objects.count(), Notification.objects.count(), Note.objects.count()) == before


def test_decline_notifies_the_referrer_once_with_the_reason(client, world, orgs):
    client.force_login(orgs["partner_a"])
    response = patch(client, orgs["to_a"], status="rejected", outcome="no-capacity", note="Full until March")
    assert response.status_code == 200
    told = Notification.objects.filter(recipient=world.nurse, kind=NotificationKind.REFERRAL_ANSWERED)
    assert told.count() == 1
    assert "declined" in told.get().title and "No capacity" in told.get().title
    # a second attempt is refused (closed) and tells nobody again
    assert patch(client, orgs["to_a"], status="rejected", outcome="no-capacity").status_code == 409
    assert told.count() == 1
    assert Need.objects.get(pk=orgs["need"].pk).status == "active"


def test_complete_notifies_the_referrer_once(world, orgs):
    referral = partners.partner_referral_accept(by=orgs["partner_a"], referral=orgs["to_a"])
    partners.partner_referral_complete(by=orgs["partner_a"], referral=referral, outcome="partially-provided")
    titles = list(
        Notification.objects.filter(recipient=world.nurse, kind=NotificationKind.REFERRAL_ANSWERED)
        .order_by("created_at", "id")
        .values_list("title", flat=True)
    )
    assert len(titles) == 2 and "completed" in titles[1]
    assert Need.objects.get(pk=orgs["need"].pk).status == "active"  # partly provided keeps it open


def test_a_request_for_information_starts_a_thread_the_referrer_answers(client, world, orgs):
    partners.partner_referral_request_info(
        by=orgs["partner_a"], referral=orgs["to_a"], text="Which days suit?"
    )
    assert (
        Notification.objects.filter(recipient=world.nurse, kind=NotificationKind.REFERRAL_MESSAGE).count()
        == 1
    )
    assert partners.inbox_filter(partners.partner_referrals_for(orgs["partner_a"]), "new").count() == 1
    partners.referral_message_add(
        access=patient_access(world.nurse, world.patient),
        by=world.nurse,
        referral=orgs["to_a"],
        text="Mondays",
    )
    assert list(ReferralMessage.objects.values_list("from_partner", flat=True)) == [True, False]
    assert (
        Notification.objects.filter(
            recipient=orgs["partner_a"], kind=NotificationKind.REFERRAL_MESSAGE
        ).count()
        == 1
    )
    waiting = partners.inbox_filter(partners.partner_referrals_for(orgs["partner_a"]), "waiting")
    assert list(waiting) == [Referral.objects.get(pk=orgs["to_a"].pk)]


def test_a_partner_sets_its_own_services_capacity_but_not_anothers(orgs):
    referral_services.service_capacity_set(by=orgs["partner_a"], service=orgs["food"], status="waitlist")
    assert type(orgs["food"]).objects.get(pk=orgs["food"].pk).capacity_status == "waitlist"
    with pytest.raises(Exception, match="capacity"):
        referral_services.service_capacity_set(by=orgs["partner_b"], service=orgs["food"], status="full")


# ---------------------------------------------------------------------------
# Reminders: the partner first, the referrer past a second threshold, each once
# ---------------------------------------------------------------------------
def test_a_waiting_referral_reminds_the_partner_once_then_the_referrer(world, orgs, settings):
    settings.PARTNER_REFERRER_REMINDER_DAYS = 2
    sent = orgs["to_a"].sent_at
    reminders_sweep(now=sent + dt.timedelta(days=2, minutes=1))
    reminders_sweep(now=sent + dt.timedelta(days=2, minutes=2))
    partner_told = Notification.objects.filter(
        kind=NotificationKind.REFERRAL_PARTNER_WAITING, object_id=orgs["to_a"].pk
    )
    assert list(partner_told.values_list("recipient", "patient")) == [(orgs["partner_a"].pk, None)]
    assert not Notification.objects.filter(
        kind=NotificationKind.REFERRAL_NO_RESPONSE, object_id=orgs["to_a"].pk
    ).exists()
    reminders_sweep(now=sent + dt.timedelta(days=4, minutes=1))
    reminders_sweep(now=sent + dt.timedelta(days=4, minutes=2))
    referrer_told = Notification.objects.filter(
        kind=NotificationKind.REFERRAL_NO_RESPONSE, object_id=orgs["to_a"].pk
    )
    assert list(referrer_told.values_list("recipient", flat=True)) == [world.nurse.pk]
    assert partner_told.count() == 1


# ---------------------------------------------------------------------------
# Invitations
# ---------------------------------------------------------------------------
def test_an_invited_partner_sets_a_password_once(world, orgs, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        staff = partners.partner_invite(by=world.admin, organization=orgs["a"], email="Ana@Harbor.example")
    assert staff.user.kind == "partner" and not staff.user.has_usable_password()
    link = next(line for line in mailoutbox[-1].body.splitlines() if "/partner/welcome/" in line)
    uid, token = link.rstrip("/").split("/")[-2:]
    user = partners.partner_password_set(uidb64=uid, token=token, password="a-long-harbor-passphrase")
    assert user.check_password("a-long-harbor-passphrase")
    with pytest.raises(Exception, match="expired or was used"):
        partners.partner_password_set(uidb64=uid, token=token, password="another-long-passphrase")


def test_an_invitation_link_older_than_72_hours_no_longer_works(world, orgs):
    staff = partners.partner_invite(by=world.admin, organization=orgs["a"], email="late@harbor.example")
    tokens = partners.invite_tokens
    made = tokens._num_seconds(tokens._now()) - 73 * 3600
    old = tokens._make_token_with_timestamp(staff.user, made, tokens.secret)
    fresh = tokens.make_token(staff.user)
    uid = partners.invite_url(staff.user).rstrip("/").split("/")[-2]
    assert partners.invited_user(uid, old) is None
    assert partners.invited_user(uid, fresh) == staff.user


def test_only_a_catalog_admin_invites_partner_staff(world, orgs):
    with pytest.raises(Exception, match="catalog administrators"):
        partners.partner_invite(by=world.nurse, organization=orgs["a"], email="x@harbor.example")


# ---------------------------------------------------------------------------
# The partner pages
# ---------------------------------------------------------------------------
def test_the_partner_inbox_shows_its_tabs_counts_and_only_its_referrals(client, world, orgs):
    client.force_login(orgs["partner_a"])
    page = client.get("/partner/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "New (1)" in text and "Harbor pantry" in text and "Not updated for 3 days" in text
    assert "SECRET-B" not in text and world.patient.mrn not in text
    assert client.get(f"/partner/referrals/{orgs['to_b'].pk}/").status_code == 404
    assert client.get(f"/partner/?service={orgs['food'].pk}&tab=closed").status_code == 200


def test_a_staff_member_gets_404_on_the_partner_pages(client, world, orgs):
    client.force_login(world.nurse)
    assert client.get("/partner/").status_code == 404
    assert client.get(f"/partner/referrals/{orgs['to_a'].pk}/").status_code == 404


def test_a_partner_accepts_and_completes_on_its_pages(client, world, orgs):
    client.force_login(orgs["partner_a"])
    url = f"/partner/referrals/{orgs['to_a'].pk}/"
    page = client.get(url)
    assert page.status_code == 200 and "555-0100" in page.content.decode()
    version = Referral.objects.get(pk=orgs["to_a"].pk).version
    assert client.post(f"{url}accept/", {"expected_version": version}).status_code == 302
    # the same page posted again is stale: 409, nothing changes
    assert client.post(f"{url}accept/", {"expected_version": version}).status_code == 409
    version = Referral.objects.get(pk=orgs["to_a"].pk).version
    response = client.post(f"{url}complete/", {"expected_version": version, "outcome": "not-provided"})
    assert response.status_code == 400 and Referral.objects.get(pk=orgs["to_a"].pk).status == "accepted"
    response = client.post(f"{url}complete/", {"expected_version": version, "outcome": "service-provided"})
    assert response.status_code == 302
    assert Referral.objects.get(pk=orgs["to_a"].pk).status == "completed"


def test_a_partner_updates_capacity_at_once_and_proposes_listing_edits_for_review(client, orgs):
    client.force_login(orgs["partner_a"])
    url = f"/partner/services/{orgs['food'].pk}/"
    assert client.post(url, {"form": "capacity", "capacity_status": "full"}).status_code == 302
    assert type(orgs["food"]).objects.get(pk=orgs["food"].pk).capacity_status == "full"
    assert (
        client.post(
            url, {"form": "listing", "phone": "555-0199", "email": "", "hours_description": ""}
        ).status_code
        == 302
    )
    service = type(orgs["food"]).objects.get(pk=orgs["food"].pk)
    assert service.phone != "555-0199" and service.listing_changes.get().changes == {"phone": "555-0199"}
    assert (
        client.get(
            f"/partner/services/{orgs['food'].pk}/".replace(
                str(orgs["food"].pk), str(orgs["to_b"].service_id)
            )
        ).status_code
        == 404
    )


def test_the_team_answers_the_service_on_the_referral_page(client, world, orgs):
    partners.partner_referral_request_info(
        by=orgs["partner_a"], referral=orgs["to_a"], text="Which days suit?"
    )
    client.force_login(world.nurse)
    page = client.get(f"/referrals/{orgs['to_a'].pk}/")
    assert "Which days suit?" in page.content.decode()
    assert client.post(f"/referrals/{orgs['to_a'].pk}/message/", {"text": ""}).status_code == 400
    assert client.post(f"/referrals/{orgs['to_a'].pk}/message/", {"text": "Mondays"}).status_code == 302
    assert ReferralMessage.objects.filter(from_partner=False, text="Mondays").exists()


def test_the_referral_letter_is_a_pdf_of_the_minimum_view(client, world, orgs):
    client.force_login(world.nurse)
    response = client.get(f"/referrals/{orgs['to_a'].pk}/letter.pdf")
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    client.force_login(world.outsider)
    assert client.get(f"/referrals/{orgs['to_a'].pk}/letter.pdf").status_code == 404


# ---------------------------------------------------------------------------
# The signed link for a service without an account
# ---------------------------------------------------------------------------
@pytest.fixture
def link(world, orgs, mailoutbox, django_capture_on_commit_callbacks):
    from referrals import links

    # a service of an organisation without partner staff: the referrer tracks it
    other = f.ServiceFactory(name="Quiet clinic", email="intake@quiet.example")
    referral = referral_services.referral_create(
        access=patient_access(world.nurse, world.patient),
        by=world.nurse,
        plan=world.plan,
        service=other,
        reason="Needs a ride",
    )
    with django_capture_on_commit_callbacks(execute=True):
        made = links.referral_link_create(
            access=patient_access(world.nurse, world.patient), by=world.nurse, referral=referral
        )
    url = next(line for line in mailoutbox[-1].body.splitlines() if "/partner/link/" in line)
    assert (
        mailoutbox[-1].to == ["intake@quiet.example"] and world.patient.family_name not in mailoutbox[-1].body
    )
    return {
        "referral": referral,
        "link": made,
        "path": url.replace("http://localhost:8000", "").replace("http://testserver", ""),
    }


def test_the_link_shows_only_that_referral_and_each_action_works_once(client, world, link):
    path = link["path"]
    page = client.get(path)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Needs a ride" in text and world.patient.mrn not in text and "SECRET-B" not in text
    assert world.plan.title not in text
    assert client.post(f"{path}accept/").status_code == 302
    assert Referral.objects.get(pk=link["referral"].pk).status == "accepted"
    again = client.post(f"{path}accept/")
    assert again.status_code == 409 and "already done" in again.content.decode()
    assert client.post(f"{path}complete/", {"outcome": "service-provided"}).status_code == 302
    assert client.post(f"{path}complete/", {"outcome": "service-provided"}).status_code == 409
    referral = Referral.objects.get(pk=link["referral"].pk)
    assert referral.status == "completed" and referral.outcome == "service-provided"
    assert ReferralEvent.objects.filter(referral=referral, to_status="accepted").count() == 1
    assert AuditEvent.objects.filter(object_id=str(referral.pk), detail__contains="emailed to").count() >= 3


def test_a_bad_answer_through_the_link_does_not_use_it_up(client, link):
    path = link["path"]
    assert client.post(f"{path}decline/", {"reason": "other", "text": ""}).status_code == 400
    assert client.post(f"{path}decline/", {"reason": "other", "text": "Moved away"}).status_code == 302
    assert Referral.objects.get(pk=link["referral"].pk).status == "rejected"


def test_an_altered_link_cannot_reach_another_referral(client, orgs, link):
    from django.core import signing

    from referrals import links

    token = link["path"].rstrip("/").split("/")[-1]
    payload = signing.loads(token, salt=links.SALT)
    forged = signing.dumps({"r": orgs["to_a"].pk, "n": payload["n"]}, salt="not-the-salt")
    for bad in (
        forged,
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        token.replace(":", ".", 1),
    ):
        response = client.get(f"/partner/link/{bad}/")
        assert response.status_code == 404 and "not valid" in response.content.decode()
        assert "Needs groceries" not in response.content.decode()
    # a well-signed token naming another referral with this nonce finds nothing
    swapped = signing.dumps({"r": orgs["to_a"].pk, "n": payload["n"]}, salt=links.SALT)
    assert client.get(f"/partner/link/{swapped}/").status_code == 404
    assert client.post(f"/partner/link/{swapped}/accept/").status_code == 404
    assert Referral.objects.get(pk=orgs["to_a"].pk).status == "requested"
    assert AuditEvent.objects.filter(detail="referral link refused: invalid").count() >= 4


def test_an_expired_link_answers_a_clear_page(client, link):
    from referrals.models import ReferralLink

    ReferralLink.objects.filter(pk=link["link"].pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    response = client.get(link["path"])
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert client.post(f"{link['path']}accept/").status_code == 410
    assert Referral.objects.get(pk=link["referral"].pk).status == "requested"


# ---------------------------------------------------------------------------
# The dashboard measures the service's own answers
# ---------------------------------------------------------------------------
def test_the_dashboard_counts_the_services_own_answers_and_the_share_provided(client, world, orgs):
    referral = partners.partner_referral_accept(by=orgs["partner_a"], referral=orgs["to_a"])
    partners.partner_referral_complete(by=orgs["partner_a"], referral=referral, outcome="service-provided")
    partners.partner_referral_decline(by=orgs["partner_b"], referral=orgs["to_b"], reason="no-capacity")
    from referrals.selectors import dashboard_metrics

    metrics = dashboard_metrics(world.nurse)
    assert metrics.overall["by_service"] == 1 and metrics.overall["closed"] == 2
    assert metrics.overall["provided_share"] == 50.0
    pantry = next(r for r in metrics.by_service if r["service__name"] == "Harbor pantry")
    assert pantry["provided_share"] == 100.0 and pantry["accept_p50"] is not None
    food = next(r for r in metrics.by_category if r["need__category"] == "food")
    assert food["provided_share"] == 100.0
    client.force_login(world.nurse)
    page = client.get("/referrals/dashboard/").content.decode()
    assert "Closed with the service provided: 50.0 %" in page and "Per need category" in page
