"""Administrators: account changes are audited, emergency access always tells someone and
shows in the recent emergency-access report, and reading the audit log is itself audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from careteam import services as team_services
from careteam.models import AuditEvent, EmergencyAccess, Notification, NotificationKind, TeamMembership
from tests import factories as f

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def auditor(username="auditor1"):
    user = f.UserFactory(username=username, is_staff=True)
    group, _ = Group.objects.get_or_create(name="Security and audit")
    group.permissions.add(Permission.objects.get(codename="view_audit_log"))
    user.groups.add(group)
    return user


def change_form_data(user, **changes) -> dict:
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "title": user.title,
        "phone": user.phone,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "disciplines": [d.pk for d in user.disciplines.all()],
        "groups": [g.pk for g in user.groups.all()],
        "user_permissions": [],
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_superuser_giving_themselves_a_discipline_is_audited(world):
    admin = signed_in(world.admin)
    nursing = f.discipline("nursing")
    response = admin.post(
        f"/admin/careteam/user/{world.admin.pk}/change/",
        change_form_data(world.admin, disciplines=[nursing.pk]),
    )
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(
        object_type="careteam.user", object_id=str(world.admin.pk), action="update"
    )
    assert event.username == world.admin.username
    assert event.action == "update"
    assert event.detail == "account: disciplines +nursing"


def test_deactivating_and_promoting_accounts_is_audited(world):
    admin = signed_in(world.admin)
    nurse = world.nurse
    data = change_form_data(nurse, is_active=None, is_staff="on")
    response = admin.post(f"/admin/careteam/user/{nurse.pk}/change/", data)
    assert response.status_code == 302
    event = AuditEvent.objects.get(object_type="careteam.user", object_id=str(nurse.pk), action="update")
    assert "is_active True→False" in event.detail
    assert "is_staff False→True" in event.detail
    # saving the form again without a change writes nothing more
    nurse.refresh_from_db()
    admin.post(f"/admin/careteam/user/{nurse.pk}/change/", change_form_data(nurse))
    assert (
        AuditEvent.objects.filter(
            object_type="careteam.user", object_id=str(nurse.pk), action="update"
        ).count()
        == 1
    )


def test_group_changes_are_audited(world):
    group = Group.objects.create(name="Catalog editors")
    admin = signed_in(world.admin)
    admin.post(
        f"/admin/careteam/user/{world.pharmacist.pk}/change/",
        change_form_data(world.pharmacist, groups=[group.pk]),
    )
    event = AuditEvent.objects.get(
        object_type="careteam.user", object_id=str(world.pharmacist.pk), action="update"
    )
    assert event.detail == "account: groups +Catalog editors"


# ---------------------------------------------------------------------------
# Emergency access always tells someone
# ---------------------------------------------------------------------------
def grant_emergency_access(user, patient):
    return team_services.emergency_access_open(
        by=user, patient=patient, reason="Unconscious in the emergency room"
    )


def test_the_case_manager_is_told(world):
    grant = grant_emergency_access(world.outsider, world.patient)
    told = Notification.objects.filter(kind=NotificationKind.EMERGENCY_ACCESS, object_id=grant.pk)
    assert [n.recipient for n in told] == [world.case_manager]


def test_without_a_case_manager_the_lead_is_told(world):
    TeamMembership.objects.filter(patient=world.patient, role="case-manager").update(
        end_date=timezone.localdate() - dt.timedelta(days=1)
    )
    grant = grant_emergency_access(world.outsider, world.patient)
    told = Notification.objects.filter(kind=NotificationKind.EMERGENCY_ACCESS, object_id=grant.pk)
    assert [n.recipient for n in told] == [world.lead]


def test_without_case_manager_or_lead_the_auditors_are_told_by_patient_id_only(world):
    audit_person = auditor()
    grant = grant_emergency_access(
        world.outsider, world.other_patient
    )  # nurse2's team: no case manager, no lead
    told = list(Notification.objects.filter(kind=NotificationKind.EMERGENCY_ACCESS, object_id=grant.pk))
    assert [n.recipient for n in told] == [audit_person]
    (n,) = told
    assert n.patient_id is None
    assert str(world.other_patient.pk) in n.title
    assert world.other_patient.family_name not in n.title + n.body
    assert world.other_patient.mrn not in n.title + n.body
    assert "Unconscious" not in n.title + n.body
    # the auditor sees it in the inbox and it leads to the report
    inbox = signed_in(audit_person).get("/team/inbox/")
    assert inbox.status_code == 200
    assert f"patient {world.other_patient.pk}".encode() in inbox.content
    assert n.url == "/security/emergency-access/recent/"


# ---------------------------------------------------------------------------
# The recent emergency-access report
# ---------------------------------------------------------------------------
def test_report_lists_grants_with_renewals_for_auditors_only(world, django_assert_max_num_queries):
    audit_person = auditor()
    first = grant_emergency_access(world.outsider, world.patient)
    EmergencyAccess.objects.filter(pk=first.pk).update(
        started_at=timezone.now() - dt.timedelta(hours=10), expires_at=timezone.now() - dt.timedelta(hours=6)
    )
    grant_emergency_access(world.outsider, world.patient)
    grant_emergency_access(world.other_team_nurse, world.patient)
    client = signed_in(audit_person)
    with django_assert_max_num_queries(12):
        response = client.get("/security/emergency-access/recent/?days=7")
    assert response.status_code == 200
    rows = response.context["grants"]
    assert [g.user for g in rows] == [world.other_team_nurse, world.outsider, world.outsider]
    assert [g.earlier or 0 for g in rows] == [0, 1, 0]
    html = response.content.decode()
    assert "renewed" in html
    assert world.patient.given_name not in html and world.patient.mrn not in html
    assert AuditEvent.objects.filter(
        username=audit_person.username, object_type="careteam.emergencyaccess", detail__contains="7 days"
    ).exists()


@pytest.mark.parametrize("who", ["case_manager", "nurse", "outsider"])
def test_report_is_missing_for_everyone_else(world, who):
    grant_emergency_access(world.outsider, world.patient)
    response = signed_in(getattr(world, who)).get("/security/emergency-access/recent/")
    assert response.status_code == 404
    assert b"Unconscious" not in response.content


def test_report_ignores_a_bad_period(world):
    response = signed_in(auditor()).get("/security/emergency-access/recent/?days=abc&page=-3")
    assert response.status_code == 200
    assert response.context["days"] == 30


# ---------------------------------------------------------------------------
# Reading the audit log in the admin is audited; it shows ids, and only to auditors
# ---------------------------------------------------------------------------
def test_admin_audit_reads_are_audited(world):
    audit_person = auditor()
    grant_emergency_access(world.outsider, world.patient)
    client = signed_in(audit_person)
    response = client.get("/admin/careteam/auditevent/?q=outsider1")
    assert response.status_code == 200
    assert world.patient.given_name not in response.content.decode()
    event = AuditEvent.objects.filter(
        username=audit_person.username, detail__startswith="admin audit list"
    ).get()
    assert "q=outsider1" in event.detail
    some = AuditEvent.objects.exclude(pk=event.pk).first()
    assert client.get(f"/admin/careteam/auditevent/{some.pk}/change/").status_code == 200
    assert AuditEvent.objects.filter(
        username=audit_person.username, detail="admin audit event", object_id=str(some.pk)
    ).exists()


def test_staff_without_the_audit_permission_cannot_read_the_admin_audit_log(world):
    staff = f.UserFactory(username="staff1", is_staff=True)
    response = signed_in(staff).get("/admin/careteam/auditevent/")
    assert response.status_code == 403


# ---------------------------------------------------------------------------
# Patient data read in the admin is audited, and only the admin's own patients show
# ---------------------------------------------------------------------------
def test_admin_lists_and_reads_of_patient_data_are_audited(world):
    world.admin.disciplines.add(f.discipline("nursing"))
    team_services.membership_add(
        patient=world.other_patient, user=world.admin, discipline=f.discipline("nursing")
    )
    client = signed_in(world.admin)
    response = client.get("/admin/careteam/teammembership/")
    assert response.status_code == 200
    event = AuditEvent.objects.filter(object_type="admin.careteam.teammembership").latest("pk")
    assert event.patient_ids == [world.other_patient.pk]
    membership = TeamMembership.objects.filter(patient=world.other_patient).first()
    assert client.get(f"/admin/careteam/teammembership/{membership.pk}/change/").status_code == 200
    read = AuditEvent.objects.filter(detail="admin read", object_id=str(membership.pk)).get()
    assert read.patient_id == world.other_patient.pk
    # the patient's access log finds both
    from careteam.audit import events_for_patient

    assert {event.pk, read.pk} <= set(events_for_patient(world.other_patient.pk).values_list("pk", flat=True))
