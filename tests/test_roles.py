"""Who may give whom a role: the membership rules hold in the service, so the chart's
form, the API and every other door answer the same (issue 12, item 5)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from careteam import services as team_services
from careteam.models import AuditEvent, TeamMembership
from tests import factories as f

pytestmark = pytest.mark.django_db

MEMBERSHIPS = "/api/v1/team-memberships/"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def patch(client, membership, data):
    return client.patch(
        f"{MEMBERSHIPS}{membership.pk}/", data, format="json", HTTP_IF_MATCH=f'W/"{membership.version}"'
    )


def snapshot():
    return sorted(
        TeamMembership.objects.values_list("id", "user_id", "role", "status", "end_date", "version")
    )


def role_of(world, user):
    return TeamMembership.objects.get(patient=world.patient, user=user)


# ---------------------------------------------------------------------------
# A membership's discipline is one the person practises; no discipline, no team
# ---------------------------------------------------------------------------
def test_lead_cannot_add_themselves_in_a_discipline_they_do_not_practise(world):
    before = snapshot()
    response = api(world.lead).post(
        MEMBERSHIPS,
        {"patient": world.patient.pk, "user": world.lead.pk, "discipline": "behavioural-health"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "does not practise" in str(response.json())
    assert snapshot() == before


def test_a_member_cannot_be_added_in_a_discipline_they_do_not_practise(world):
    dietitian = f.UserFactory(username="diet1", disciplines=["dietetics"])
    before = snapshot()
    response = api(world.case_manager).post(
        MEMBERSHIPS,
        {"patient": world.patient.pk, "user": dietitian.pk, "discipline": "behavioural-health"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "does not practise" in str(response.json())
    assert snapshot() == before


def test_an_account_without_a_discipline_is_never_a_team_member(world):
    before = snapshot()
    for user in (world.admin, f.UserFactory(username="clerk1")):
        response = api(world.case_manager).post(
            MEMBERSHIPS,
            {"patient": world.patient.pk, "user": user.pk, "discipline": "nursing"},
            format="json",
        )
        assert response.status_code == 400, response.content
        assert "no discipline" in str(response.json())
    assert snapshot() == before
    with pytest.raises(ValidationError):  # the system (seeding, tests) obeys it too
        team_services.membership_add(
            patient=world.patient, user=world.admin, discipline=f.discipline("nursing")
        )


def test_reactivating_a_role_rechecks_the_discipline(world):
    membership = role_of(world, world.pharmacist)
    team_services.membership_set_status(membership=membership, status="suspended", by=world.case_manager)
    world.pharmacist.disciplines.clear()
    membership.refresh_from_db()
    response = patch(api(world.case_manager), membership, {"status": "active"})
    assert response.status_code == 400, response.content
    membership.refresh_from_db()
    assert membership.status == "suspended"


# ---------------------------------------------------------------------------
# Only a case manager appoints or ends a case manager
# ---------------------------------------------------------------------------
def test_lead_cannot_suspend_or_end_the_case_manager(world):
    cm_role = role_of(world, world.case_manager)
    before = snapshot()
    client = api(world.lead)
    assert patch(client, cm_role, {"status": "suspended"}).status_code == 403
    assert patch(client, cm_role, {"end_date": timezone.localdate().isoformat()}).status_code == 403
    assert snapshot() == before


def test_lead_cannot_make_themselves_or_another_case_manager_while_there_is_one(world):
    other_cm = f.UserFactory(username="cm2", disciplines=["case-management"])
    world.lead.disciplines.add(f.discipline("case-management"))
    before = snapshot()
    for user in (world.lead, other_cm):
        response = api(world.lead).post(
            MEMBERSHIPS,
            {
                "patient": world.patient.pk,
                "user": user.pk,
                "discipline": "case-management",
                "role": "case-manager",
            },
            format="json",
        )
        assert response.status_code in (400, 403), response.content
    assert snapshot() == before


def test_lead_appoints_a_case_manager_only_when_the_patient_has_none(world):
    cm_role = role_of(world, world.case_manager)
    # the case manager's role ends at its date (the sweep, no person)
    team_services.membership_end(membership=cm_role, end_date=timezone.localdate() - dt.timedelta(days=1))
    newcomer = f.UserFactory(username="cm2", disciplines=["case-management"])
    response = api(world.lead).post(
        MEMBERSHIPS,
        {
            "patient": world.patient.pk,
            "user": newcomer.pk,
            "discipline": "case-management",
            "role": "case-manager",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    new_role = TeamMembership.objects.get(pk=response.json()["id"])
    # now there is one: the lead may not end it, the new case manager may end a lead's role
    assert patch(api(world.lead), new_role, {"status": "suspended"}).status_code == 403
    lead_role = role_of(world, world.lead)
    assert patch(api(newcomer), lead_role, {"status": "suspended"}).status_code == 200


def test_the_service_itself_refuses_whoever_calls_it(world):
    cm_role = role_of(world, world.case_manager)
    with pytest.raises(PermissionDenied):
        team_services.membership_set_status(membership=cm_role, status="suspended", by=world.lead)
    with pytest.raises(PermissionDenied):
        team_services.membership_end(membership=cm_role, by=world.lead)
    cm_role.refresh_from_db()
    assert cm_role.status == "active" and cm_role.end_date is None


# ---------------------------------------------------------------------------
# Nobody changes their own role
# ---------------------------------------------------------------------------
def test_nobody_changes_their_own_role_through_the_api(world):
    before = snapshot()
    lead_role = role_of(world, world.lead)
    cm_role = role_of(world, world.case_manager)
    assert patch(api(world.lead), lead_role, {"status": "suspended"}).status_code == 403
    # leaving is allowed, but never leaves the patient without a case manager
    left = patch(api(world.case_manager), cm_role, {"end_date": timezone.localdate().isoformat()})
    assert left.status_code == 400 and "takes over" in left.content.decode()
    response = api(world.case_manager).post(
        MEMBERSHIPS,
        {"patient": world.patient.pk, "user": world.case_manager.pk, "discipline": "case-management"},
        format="json",
    )
    assert response.status_code == 403
    assert snapshot() == before
    assert not AuditEvent.objects.filter(
        object_type="careteam.teammembership", action="update", outcome="allowed"
    ).exists()


def test_the_chart_form_applies_the_same_rules(world):
    world.lead.disciplines.add(f.discipline("nursing"))
    client = Client()
    client.force_login(world.lead)
    before = snapshot()
    add = reverse("team_role_add", kwargs={"patient_id": world.patient.pk})
    response = client.post(
        add, {"user": world.lead.pk, "discipline": f.discipline("nursing").pk, "role": "member"}
    )
    assert response.status_code == 403
    cm_role = role_of(world, world.case_manager)
    end = reverse("team_role_end", kwargs={"patient_id": world.patient.pk, "membership_id": cm_role.pk})
    response = client.post(end, {"expected_version": cm_role.version})
    assert response.status_code == 403
    assert snapshot() == before


def test_the_admin_cannot_write_memberships(world):
    client = Client()
    client.force_login(world.admin)
    before = snapshot()
    response = client.post(
        "/admin/careteam/teammembership/add/",
        {"patient": world.patient.pk, "user": world.admin.pk, "discipline": 1, "role": "case-manager"},
    )
    assert response.status_code in (403, 404)
    assert snapshot() == before


def test_enrolment_still_puts_the_enrolling_clinician_on_the_new_team(world):
    from patients import services as patient_services

    patient, membership = patient_services.patient_enrol(
        by=world.nurse, data={"given_name": "New", "family_name": "Person", "birth_date": dt.date(1980, 1, 1)}
    )
    assert membership.user == world.nurse and membership.patient == patient
    # the bootstrap is once: a second self-add on that team is refused
    with pytest.raises(PermissionDenied):
        team_services.membership_add(
            patient=patient, user=world.nurse, discipline=f.discipline("nursing"), role="lead", by=world.nurse
        )


# ---------------------------------------------------------------------------
# Item 13 (part): a reason in words; no handoff due in the past
# ---------------------------------------------------------------------------
def test_emergency_access_refuses_a_reason_of_one_repeated_character(world):
    from careteam.models import EmergencyAccess

    for reason in ("aaaaaaaaaaaa", "x x x x x x x x", "............"):
        with pytest.raises(ValidationError):
            team_services.emergency_access_open(by=world.outsider, patient=world.patient, reason=reason)
    assert not EmergencyAccess.objects.exists()


def test_api_handoff_refuses_a_due_time_in_the_past(world):
    from careteam.models import Handoff

    response = api(world.nurse).post(
        "/api/v1/handoffs/",
        f.handoff_payload(patient=world.patient, to_user=world.pharmacist, due_in=-dt.timedelta(hours=1)),
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "due_at" in response.json()
    assert not Handoff.objects.exists()
