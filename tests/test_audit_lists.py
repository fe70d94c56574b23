"""List reads of patient data are audited as one event each (one INSERT whatever the
page holds) naming the patients the page showed, and each of those patients' access log
finds the read."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from careteam import services as team_services
from careteam.audit import events_for_patient
from careteam.models import AuditEvent, Notification, NotificationKind
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def lists(world):
    """The nurse and the case manager on two patients, with something on every list."""
    start = timezone.localdate() - dt.timedelta(days=30)
    for user, code, role in (
        (world.nurse, "nursing", "member"),
        (world.case_manager, "case-management", "case-manager"),
    ):
        team_services.membership_add(
            patient=world.other_patient, user=user, discipline=f.discipline(code), role=role, start_date=start
        )
    for patient, plan in ((world.patient, world.plan), (world.other_patient, world.other_plan)):
        handoff = f.HandoffFactory(
            patient=patient, care_plan=plan, from_user=world.case_manager, to_user=world.nurse
        )
        f.ReferralFactory(patient=patient, care_plan=plan, referred_by=world.case_manager)
        f.ActivityFactory(care_plan=plan, assigned_to=world.nurse, due_date=timezone.localdate())
        Notification.objects.create(
            recipient=world.nurse,
            kind=NotificationKind.HANDOFF_RECEIVED,
            patient=patient,
            object_type="careteam.handoff",
            object_id=handoff.pk,
            due_moment=timezone.now(),
            title="New handoff",
        )
    return world


def _client(user, api: bool = False):
    from django.test import Client

    client = APIClient() if api else Client()
    client.force_login(user)
    return client


# (list name, who reads, url); every list shows both patients of the fixture
LISTS = [
    ("patients.worklist", "nurse", "/patients/?q=e"),
    ("patients.my_work", "nurse", "/work/"),
    ("team.inbox", "nurse", "/team/inbox/"),
    ("team.open_handoffs", "case_manager", "/team/open-handoffs/"),
    ("team.handoffs_sent", "case_manager", "/team/handoffs/sent/"),
    ("referrals.referral_list", "case_manager", "/referrals/?scope=all"),
    ("careteam.notification", "nurse", "/api/v1/notifications/"),
    ("careplans.activity", "nurse", "/api/v1/activities/"),
    ("fhir.Patient", "nurse", "/fhir/Patient?name=team,elsewhere"),
]


def _read(world, who, url):
    client = _client(getattr(world, who), api=url.startswith(("/api", "/fhir")))
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    inserts = [q["sql"] for q in queries if q["sql"].startswith('INSERT INTO "careteam_auditevent"')]
    return response, inserts


@pytest.mark.parametrize(("name", "who", "url"), LISTS, ids=[item[0] for item in LISTS])
def test_a_list_read_writes_one_event_naming_the_patients_shown(lists, name, who, url):
    _, inserts = _read(lists, who, url)
    rows = list(AuditEvent.objects.filter(object_type=name))
    assert len(inserts) == 1 and len(rows) == 1, [(r.object_type, r.patient_id) for r in rows]
    row = rows[0]
    assert (row.object_type, row.action, row.outcome) == (name, "view", "allowed")
    assert row.username == getattr(lists, who).username
    assert row.patient_ids == sorted([lists.patient.pk, lists.other_patient.pk])
    for patient in (lists.patient, lists.other_patient):
        assert events_for_patient(patient.pk).filter(pk=row.pk).exists()


def test_the_search_terms_are_kept_with_the_worklist_read(lists):
    _read(lists, "nurse", "/patients/?q=Elsewhere&plan_status=active")
    row = AuditEvent.objects.latest("id")
    assert row.patient_ids == [lists.other_patient.pk]
    assert "search=Elsewhere" in row.detail and "plan_status=active" in row.detail


def test_an_empty_list_read_is_audited_with_no_patient(lists):
    _read(lists, "nurse", "/patients/?q=nobody-has-this-name")
    row = AuditEvent.objects.latest("id")
    assert (row.object_type, row.patient_id, row.patient_ids) == ("patients.worklist", None, [])


def test_the_patients_access_log_lists_the_list_reads_that_showed_them(lists):
    _read(lists, "nurse", "/referrals/?scope=all")  # the nurse's referral list
    client = _client(lists.case_manager)
    page = client.get(reverse("security:patient_access_log", kwargs={"patient_id": lists.patient.pk}))
    assert page.status_code == 200
    assert b"referrals.referral_list" in page.content
    api = (
        _client(lists.case_manager, api=True).get(f"/api/v1/audit-events/?patient={lists.patient.pk}").json()
    )
    assert "referrals.referral_list" in {e["object_type"] for e in api["results"]}


def test_a_list_read_of_another_patient_stays_out_of_this_patients_log(lists):
    _client(lists.other_team_nurse).get("/patients/")  # shows only the other patient
    row = AuditEvent.objects.latest("id")
    assert row.patient_ids == [lists.other_patient.pk]
    assert not events_for_patient(lists.patient.pk).filter(pk=row.pk).exists()


def test_reads_of_the_audit_events_api_are_audited(lists):
    _client(lists.nurse).get(f"/patients/{lists.patient.pk}/")
    client = _client(lists.case_manager, api=True)
    before = AuditEvent.objects.latest("id").pk
    listed = client.get("/api/v1/audit-events/").json()["results"]
    row = AuditEvent.objects.get(id__gt=before)
    assert (row.object_type, row.patient_ids) == ("careteam.auditevent", [lists.patient.pk])
    one = next(e for e in listed if e["patient_id"] == lists.patient.pk)
    assert client.get(f"/api/v1/audit-events/{one['id']}/").status_code == 200
    read = AuditEvent.objects.latest("id")
    assert (read.object_type, read.object_id, read.patient_id) == (
        "careteam.auditevent",
        str(one["id"]),
        lists.patient.pk,
    )


def test_the_access_log_finds_list_reads_through_the_gin_index(lists):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = events_for_patient(lists.patient.pk).explain()
    # the GIN index of each month partition (audit_patient_ids_gin on the parent)
    assert "BitmapOr" in plan and "_patient_ids_idx" in plan and "(patient_id = " in plan
