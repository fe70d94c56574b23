"""Access at its dates, emergency access, the audit trail and its immutability, sensitive
history, and the hardened sign-in: what a clinician, an auditor or an attacker would see."""

from __future__ import annotations

import datetime as dt
import re
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from careplans.models import Need
from careplans.selectors import plan_history
from careteam import services as team_services
from careteam.middleware import IdleSessionTimeoutMiddleware
from careteam.models import (
    AuditAction,
    AuditEvent,
    EmergencyAccess,
    Notification,
    NotificationKind,
    PatientUserObjectPermission,
    TeamMembership,
)
from careteam.permissions import (
    access_patient_by_id,
    audited_patient_view,
    history_for,
    patient_access,
    patients_for,
    restrict,
)
from patients.models import Patient
from tests import factories as f

pytestmark = pytest.mark.django_db

EMERGENCY = "security:emergency_access"


def login(client: Client, user) -> Client:
    client.force_login(user)
    return client


def without_csrf(body: bytes) -> bytes:
    """The page minus its per-response CSRF token."""
    return re.sub(rb'(X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+', rb"\1", body)


def at(moment: dt.datetime):
    """Move the clock (timezone.now, hence localdate) to `moment` for the block."""
    return mock.patch("django.utils.timezone.now", return_value=moment)


# ---------------------------------------------------------------------------
# Deny by default; memberships grant and revoke at their dates
# ---------------------------------------------------------------------------
def test_a_clinician_on_no_team_sees_no_patient(world):
    assert list(patients_for(world.outsider)) == []
    with pytest.raises(Exception) as exc:
        access_patient_by_id(world.outsider, world.patient.pk)
    assert exc.typename == "Http404"


def test_a_superuser_not_on_the_team_sees_no_patient(world):
    assert world.admin.is_superuser
    assert not patients_for(world.admin).exists()
    assert not patient_access(world.admin, world.patient).can_view


def test_a_deactivated_account_sees_nothing_despite_its_memberships(world):
    world.nurse.is_active = False
    world.nurse.save()
    assert not patients_for(world.nurse).exists()
    assert not patient_access(world.nurse, world.patient).can_view


def test_membership_starting_tomorrow_grants_nothing_until_its_date(world):
    today = timezone.localdate()
    newcomer = f.UserFactory(username="newcomer", disciplines=["dietetics"])
    team_services.membership_add(
        patient=world.patient,
        user=newcomer,
        discipline=f.discipline("dietetics"),
        start_date=today + dt.timedelta(days=1),
    )
    assert not PatientUserObjectPermission.objects.filter(user=newcomer).exists()
    assert not patients_for(newcomer).exists()
    # the sweep of today changes nothing
    team_services.memberships_sync(today=today)
    assert not patient_access(newcomer, world.patient).can_view

    tomorrow = timezone.now() + dt.timedelta(days=1)
    with at(tomorrow):
        assert not patients_for(newcomer).exists(), "no grant yet: the sweep has not run"
        team_services.memberships_sync()
        assert list(patients_for(newcomer)) == [world.patient]
        assert patient_access(newcomer, world.patient).on_team
    assert PatientUserObjectPermission.objects.filter(user=newcomer, content_object=world.patient).exists()


def test_membership_whose_end_date_passed_gives_no_access_even_before_the_sweep(world):
    membership = TeamMembership.objects.get(user=world.pharmacist, patient=world.patient)
    membership.end_date = timezone.localdate()
    membership.save()
    assert patient_access(world.pharmacist, world.patient).can_view, "the end date is inclusive"

    day_after = timezone.now() + dt.timedelta(days=1)
    with at(day_after):
        # the guardian row is still there, yet nothing is visible
        assert PatientUserObjectPermission.objects.filter(user=world.pharmacist).exists()
        assert not patients_for(world.pharmacist).exists()
        assert not patient_access(world.pharmacist, world.patient).can_view
        assert not restrict(Need.objects.all(), world.pharmacist, patient_path="care_plan__patient").exists()
        touched = team_services.memberships_sync()
    assert touched >= 1
    assert not PatientUserObjectPermission.objects.filter(user=world.pharmacist).exists()
    membership.refresh_from_db()
    assert membership.status == "inactive"


def test_ending_a_role_revokes_the_permissions_at_once(world):
    membership = TeamMembership.objects.get(user=world.nurse, patient=world.patient)
    team_services.membership_end(membership=membership, end_date=timezone.localdate() - dt.timedelta(days=1))
    assert not PatientUserObjectPermission.objects.filter(user=world.nurse).exists()
    assert not patients_for(world.nurse).exists()


def test_the_sweep_removes_grants_left_without_a_current_membership(world):
    TeamMembership.objects.filter(user=world.nurse).update(status="suspended")
    assert PatientUserObjectPermission.objects.filter(user=world.nurse).exists()
    assert not patients_for(world.nurse).exists()
    team_services.memberships_sync()
    assert not PatientUserObjectPermission.objects.filter(user=world.nurse).exists()


def test_the_membership_sweep_is_scheduled_in_celery_beat():
    tasks = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "careteam.memberships_sync" in tasks
    assert tasks["careteam.memberships_sync"] <= 3600


def test_emergency_access_expires(world, settings):
    settings.EMERGENCY_ACCESS_HOURS = 4
    grant = team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Unconscious in the emergency room"
    )
    assert grant.expires_at - grant.started_at == dt.timedelta(hours=4)
    access = patient_access(world.outsider, world.patient)
    assert access.can_view and access.read_only
    with at(grant.expires_at + dt.timedelta(seconds=1)):
        assert not patients_for(world.outsider).exists()
        assert not patient_access(world.outsider, world.patient).can_view


# ---------------------------------------------------------------------------
# Sensitive items: lists, counts and history
# ---------------------------------------------------------------------------
@pytest.fixture
def sensitive(world):
    plain = f.NeedFactory(care_plan=world.plan, description="Needs a ride to dialysis")
    secret = f.NeedFactory(
        care_plan=world.plan,
        domain="behavioural",
        category="mental-health",
        description="SECRET depression screening",
        sensitivity=world.behavioural_health,
    )
    return plain, secret


def test_sensitive_needs_are_hidden_from_disciplines_the_policy_does_not_allow(world, sensitive):
    plain, secret = sensitive
    path = "care_plan__patient"
    for user in (world.nurse, world.pharmacist):
        qs = restrict(Need.objects.all(), user, patient_path=path)
        assert list(qs) == [plain]
        assert qs.count() == 1
    for user in (world.behavioural, world.lead, world.case_manager):
        assert restrict(Need.objects.all(), user, patient_path=path).count() == 2
    for user in (world.outsider, world.admin, world.other_team_nurse):
        assert restrict(Need.objects.all(), user, patient_path=path).count() == 0


def test_emergency_access_sees_sensitive_items_only_if_the_policy_allows_their_discipline(world, sensitive):
    plain, secret = sensitive
    bh_outsider = f.UserFactory(username="bh-outsider", disciplines=["behavioural-health"])
    for user in (world.outsider, bh_outsider):
        team_services.emergency_access_open(
            by=user, patient=world.patient, reason="Emergency admission tonight"
        )
    path = "care_plan__patient"
    assert list(restrict(Need.objects.all(), world.outsider, patient_path=path)) == [plain]
    assert restrict(Need.objects.all(), bh_outsider, patient_path=path).count() == 2


def test_history_of_a_sensitive_need_is_never_shown_to_disciplines_not_allowed(world, sensitive):
    plain, secret = sensitive
    # filed in plain words first, then flagged: the old version must stay hidden too
    later = f.NeedFactory(care_plan=world.plan, description="SECRET relapse mentioned at home")
    later.sensitivity = world.behavioural_health
    later.save()
    # flagged first, then unflagged with new words: the flagged version stays hidden
    earlier = f.NeedFactory(
        care_plan=world.plan, description="SECRET old overdose", sensitivity=world.behavioural_health
    )
    earlier.description = "Follow-up arranged"
    earlier.sensitivity = None
    earlier.save()

    nurse = patient_access(world.nurse, world.patient)
    rows = history_for(nurse, world.plan)
    texts = " ".join(getattr(r, "description", "") or "" for r in rows)
    assert "SECRET" not in texts
    assert plain.pk in {r.id for r in rows if r.instance_type is Need}
    assert "SECRET" not in repr([(c.label, c.fields) for c in plan_history(nurse, world.plan)])

    bh = patient_access(world.behavioural, world.patient)
    texts = " ".join(getattr(r, "description", "") or "" for r in history_for(bh, world.plan))
    assert "SECRET depression screening" in texts and "SECRET relapse" in texts


def test_history_of_another_patients_plan_is_empty(world):
    nurse = patient_access(world.nurse, world.patient)
    assert history_for(nurse, world.other_plan) == []


# ---------------------------------------------------------------------------
# Emergency access, through the pages
# ---------------------------------------------------------------------------
def test_patient_url_answers_the_same_404_whether_or_not_the_patient_exists(world, client):
    login(client, world.outsider)
    missing = Patient.objects.order_by("-pk").first().pk + 1000
    for name in ("patient_chart", "security:patient_access_log"):
        real = client.get(reverse(name, kwargs={"patient_id": world.patient.pk}))
        fake = client.get(reverse(name, kwargs={"patient_id": missing}))
        assert real.status_code == fake.status_code == 404
        assert without_csrf(real.content) == without_csrf(fake.content)
        assert world.patient.mrn.encode() not in real.content
        assert b"emergency access" in real.content.lower()


def test_emergency_access_form_errors_grant_nothing_and_reveal_nothing(world, client):
    login(client, world.outsider)
    url = reverse(EMERGENCY)
    cases = [
        {},
        {"mrn": world.patient.mrn, "reason": "short", "acknowledge": "on"},
        {"mrn": world.patient.mrn, "reason": "Unconscious after a fall"},
        {"mrn": "", "reason": "Unconscious after a fall", "acknowledge": "on"},
    ]
    for data in cases:
        response = client.post(url, data)
        assert response.status_code == 200, data
        assert response.context["form"].errors, data
        assert b"No patient record" not in response.content
    assert not EmergencyAccess.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.EMERGENCY_ACCESS).exists()


def test_emergency_access_with_an_unknown_mrn_is_refused_and_audited(world, client):
    login(client, world.outsider)
    response = client.post(
        reverse(EMERGENCY), {"mrn": "NOPE-1", "reason": "Unconscious after a fall", "acknowledge": "on"}
    )
    assert response.status_code == 200
    assert b"No patient record has this MRN" in response.content
    assert not EmergencyAccess.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.EMERGENCY_ACCESS)
    assert event.outcome == "denied" and event.user_id == world.outsider.pk and "NOPE-1" in event.detail


def test_emergency_access_grants_read_only_access_audits_and_notifies_the_case_manager(
    world, client, settings
):
    settings.EMERGENCY_ACCESS_HOURS = 2
    login(client, world.outsider)
    chart = reverse("patient_chart", kwargs={"patient_id": world.patient.pk})
    assert client.get(chart).status_code == 404
    response = client.post(
        reverse(EMERGENCY),
        {"mrn": world.patient.mrn.lower(), "reason": "Unconscious after a fall", "acknowledge": "on"},
    )
    assert response.status_code == 302 and response["Location"] == chart
    grant = EmergencyAccess.objects.get(user=world.outsider, patient=world.patient)
    assert dt.timedelta(hours=2) - dt.timedelta(seconds=5) < grant.expires_at - grant.started_at
    assert grant.expires_at - grant.started_at <= dt.timedelta(hours=2)
    assert AuditEvent.objects.filter(
        action=AuditAction.EMERGENCY_ACCESS,
        outcome="allowed",
        patient_id=world.patient.pk,
        user_id=world.outsider.pk,
    ).exists()
    notice = Notification.objects.get(kind=NotificationKind.EMERGENCY_ACCESS)
    assert notice.recipient == world.case_manager and "Unconscious after a fall" in notice.body

    page = client.get(chart)
    assert page.status_code == 200 and world.patient.mrn.encode() in page.content
    page = client.get(reverse(EMERGENCY))
    assert world.patient.mrn.encode() in page.content, "the active grant is listed"

    access = patient_access(world.outsider, world.patient)
    with pytest.raises(PermissionDenied, match="Emergency access is read-only"):
        access.require_edit()


def test_write_by_emergency_access_user_answers_403_read_only_and_changes_nothing(world):
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Emergency admission now"
    )

    @audited_patient_view
    def edit(request, patient_id):  # pragma: no cover - never reached
        Patient.objects.filter(pk=patient_id).update(given_name="Changed")
        return HttpResponse("ok")

    request = RequestFactory().post("/x/")
    request.user = world.outsider
    with pytest.raises(PermissionDenied, match="Emergency access is read-only"):
        edit(request, patient_id=world.patient.pk)
    world.patient.refresh_from_db()
    assert world.patient.given_name == "Alice"


def test_team_member_using_emergency_access_is_sent_to_the_chart_without_a_grant(world, client):
    login(client, world.nurse)
    response = client.post(
        reverse(EMERGENCY), {"mrn": world.patient.mrn, "reason": "Checking the record", "acknowledge": "on"}
    )
    assert response.status_code == 302
    assert not EmergencyAccess.objects.exists()


def test_only_clinicians_can_use_emergency_access(world, client):
    login(client, world.admin)
    response = client.post(
        reverse(EMERGENCY),
        {"mrn": world.patient.mrn, "reason": "Curious about this one", "acknowledge": "on"},
    )
    assert response.status_code == 200
    assert b"Only clinicians" in response.content
    assert not EmergencyAccess.objects.exists()


def test_emergency_access_requests_are_limited_per_hour(world, client, settings):
    settings.EMERGENCY_ACCESS_ATTEMPTS_PER_HOUR = 3
    login(client, world.outsider)
    for n in range(3):
        client.post(
            reverse(EMERGENCY), {"mrn": f"X-{n}", "reason": "Trying numbers here", "acknowledge": "on"}
        )
    response = client.post(
        reverse(EMERGENCY), {"mrn": world.patient.mrn, "reason": "Trying numbers here", "acknowledge": "on"}
    )
    assert b"Too many emergency access requests" in response.content
    assert not EmergencyAccess.objects.exists()


# ---------------------------------------------------------------------------
# Audit: written for reads, writes and denials; shown to the right people
# ---------------------------------------------------------------------------
def test_reading_the_chart_is_audited_once(world, client):
    login(client, world.nurse)
    before = AuditEvent.objects.count()
    assert client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).status_code == 200
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert len(events) == 1
    assert (events[0].action, events[0].outcome, events[0].patient_id) == (
        "view",
        "allowed",
        world.patient.pk,
    )
    assert events[0].source_ip == "127.0.0.1"


def test_a_denied_attempt_is_audited_with_its_path_and_patient(world, client):
    login(client, world.outsider)
    url = reverse("patient_chart", kwargs={"patient_id": world.patient.pk})
    assert client.get(url).status_code == 404
    event = AuditEvent.objects.get(outcome="denied")
    assert event.user_id == world.outsider.pk
    assert event.patient_id == world.patient.pk
    assert event.path == url and event.object_type == "patients.patient"


def test_a_denied_attempt_on_a_missing_patient_is_audited_without_a_patient(world, client):
    login(client, world.outsider)
    client.get(reverse("patient_chart", kwargs={"patient_id": 987654}))
    event = AuditEvent.objects.get(outcome="denied")
    assert event.patient_id is None and event.object_id == "987654"


def test_decorated_views_audit_reads_once_and_send_anonymous_users_to_sign_in(world):
    calls = []

    @audited_patient_view
    def page(request, patient_id):
        calls.append(request.patient_access)
        return HttpResponse("chart")

    factory = RequestFactory()
    request = factory.get("/p/")
    request.user = world.nurse
    before = AuditEvent.objects.count()
    assert page(request, patient_id=world.patient.pk).status_code == 200
    assert AuditEvent.objects.count() == before + 1
    assert calls[0].on_team

    from django.contrib.auth.models import AnonymousUser

    request = factory.get("/p/")
    request.user = AnonymousUser()
    response = page(request, patient_id=world.patient.pk)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_writes_through_services_are_audited(world):
    before = AuditEvent.objects.filter(action="create").count()
    team_services.membership_add(
        patient=world.patient,
        user=world.outsider,
        discipline=f.discipline("nursing"),
        by=world.case_manager,
    )
    event = AuditEvent.objects.filter(action="create").order_by("-id").first()
    assert AuditEvent.objects.filter(action="create").count() == before + 1
    assert event.user_id == world.case_manager.pk and event.patient_id == world.patient.pk


def test_case_manager_sees_who_opened_the_record_and_who_was_refused(world, client):
    login(Client(), world.nurse).get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    login(Client(), world.outsider).get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    team_services.emergency_access_open(
        by=world.other_team_nurse, patient=world.patient, reason="Seen in urgent care today"
    )
    login(client, world.case_manager)
    url = reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk})
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "nurse1" in body and "outsider1" in body and "Denied" in body
    assert "Seen in urgent care today" in body


def test_only_the_case_manager_and_lead_see_the_access_log(world, client):
    url = reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk})
    for user in (world.case_manager, world.lead):
        assert login(Client(), user).get(url).status_code == 200
    for user in (world.nurse, world.pharmacist, world.outsider, world.admin, world.other_team_nurse):
        assert login(Client(), user).get(url).status_code == 404, user
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Emergency admission now"
    )
    assert login(Client(), world.outsider).get(url).status_code == 404
    assert Client().get(url).status_code == 302


def test_access_log_pages_with_constant_queries(world, client, django_assert_max_num_queries):
    for _ in range(120):
        AuditEvent.objects.create(username="x", action="view", patient_id=world.patient.pk)
    login(client, world.case_manager)
    url = reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk})
    with django_assert_max_num_queries(14):
        first = client.get(url)
    assert first.context["has_next"] and len(first.context["events"]) == 50
    second = client.get(url + first.context["pager"].next_url)
    with django_assert_max_num_queries(14):
        third = client.get(url + second.context["pager"].next_url)
    assert not third.context["has_next"] and third.context["events"]


@pytest.fixture
def auditor(world):
    from django.contrib.auth.models import Permission

    user = f.UserFactory(username="auditor")
    user.user_permissions.add(Permission.objects.get(codename="view_audit_log"))
    return user


def test_audit_search_filters_by_user_patient_and_date(world, auditor, client):
    now = timezone.now()
    nurse = {"username": "nurse1", "user_id": world.nurse.pk}
    AuditEvent.objects.create(**nurse, action="view", patient_id=world.patient.pk, at=now)
    AuditEvent.objects.create(
        **nurse, action="view", patient_id=world.patient.pk, at=now - dt.timedelta(days=10)
    )
    AuditEvent.objects.create(**nurse, action="view", patient_id=world.other_patient.pk, at=now)
    AuditEvent.objects.create(
        username="pharm1", user_id=world.pharmacist.pk, action="update", patient_id=world.patient.pk, at=now
    )
    AuditEvent.objects.create(username="gone-away", action="view", patient_id=world.patient.pk, at=now)
    login(client, auditor)
    url = reverse("security:audit_log")
    today = timezone.localdate().isoformat()

    def found(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return response.context["events"]

    assert len(found(user="NURSE1", patient=str(world.patient.pk))) == 2
    assert len(found(user="nurse1", patient=world.patient.mrn, date_from=today, date_to=today)) == 1
    assert len(found(patient=world.patient.mrn, action="update")) == 1
    assert found(user="nobody") == []
    assert len(found(user="gone-away")) == 1, "a deleted account is still found by its stored name"
    bad = client.get(url, {"date_from": today, "date_to": "2000-01-01"})
    assert bad.context["form"].errors["date_to"]


def test_audit_search_pages_with_constant_queries(auditor, client, django_assert_max_num_queries):
    AuditEvent.objects.bulk_create([AuditEvent(username=f"u{i}", action="view") for i in range(130)])
    login(client, auditor)
    url, link = reverse("security:audit_log"), ""
    for _ in range(3):
        with django_assert_max_num_queries(12):
            response = client.get(url + link)
        assert response.status_code == 200
        link = response.context["pager"].next_url or ""
    assert not response.context["has_next"]


def test_audit_search_needs_the_audit_permission(world, client):
    url = reverse("security:audit_log")
    for user in (world.case_manager, world.nurse, world.outsider):
        assert login(Client(), user).get(url).status_code == 403
    assert login(Client(), world.admin).get(url).status_code == 200
    assert Client().get(url).status_code == 302


# ---------------------------------------------------------------------------
# Audit rows cannot be changed
# ---------------------------------------------------------------------------
@pytest.fixture
def event(world):
    return AuditEvent.objects.create(username="nurse1", action="view", patient_id=world.patient.pk)


def test_audit_rows_cannot_be_updated_or_deleted_through_the_orm(event):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(username="someone-else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.detail = "edited"
        event.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    event.refresh_from_db()
    assert (event.username, event.detail) == ("nurse1", "")


def test_audit_rows_cannot_be_updated_or_deleted_with_raw_sql(event):
    for sql in (
        "UPDATE careteam_auditevent SET username = 'x' WHERE id = %s",
        "DELETE FROM careteam_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk, username="nurse1").exists()


def test_audit_rows_cannot_be_truncated(event):
    # the application's connections carry no permission to truncate (only the test flush does)
    app = connection.copy()
    app.settings_dict = {**connection.settings_dict, "OPTIONS": {}}
    try:
        with app.cursor() as cursor:
            cursor.execute("SELECT current_setting('careteam.allow_audit_truncate', true)")
            assert cursor.fetchone()[0] in (None, "")
    finally:
        app.close()
    with (
        pytest.raises(DatabaseError, match="TRUNCATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL careteam.allow_audit_truncate = off")
        cursor.execute("TRUNCATE careteam_auditevent")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_deleting_a_patient_leaves_its_audit_rows(world, event):
    team_patient = world.patient
    Patient.objects.filter(pk=world.other_patient.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk, patient_id=team_patient.pk).exists()


def test_the_admin_offers_no_change_or_delete_of_audit_rows(world, event, client):
    login(client, world.admin)
    changelist = client.get(reverse("admin:careteam_auditevent_changelist"))
    assert changelist.status_code == 200
    assert b"delete_selected" not in changelist.content
    change_url = reverse("admin:careteam_auditevent_change", args=[event.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(change_url, {"username": "x", "action": "view"}).status_code == 403
    assert client.get(reverse("admin:careteam_auditevent_delete", args=[event.pk])).status_code == 403
    assert (
        client.post(reverse("admin:careteam_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert client.get(reverse("admin:careteam_auditevent_add")).status_code == 403
    event.refresh_from_db()
    assert event.username == "nurse1"


def test_a_superuser_not_on_the_team_sees_no_patient_rows_in_the_admin(world, client):
    login(client, world.admin)
    response = client.get(reverse("admin:patients_patient_changelist"))
    assert response.status_code == 200
    for patient in (world.patient, world.other_patient):
        assert patient.mrn.encode() not in response.content
    change = client.get(reverse("admin:patients_patient_change", args=[world.patient.pk]))
    assert change.status_code in (302, 404)
    assert world.patient.mrn.encode() not in change.content


# ---------------------------------------------------------------------------
# Sign-in hardening
# ---------------------------------------------------------------------------
def _attempt(client: Client, username: str, password: str, ip: str):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_five_failures_lock_the_username_from_that_address_only(world):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _attempt(client, "nurse1", "wrong-password-1", "10.0.0.1").status_code == 200
    assert _attempt(client, "nurse1", "wrong-password-1", "10.0.0.1").status_code == 429, "the fifth locks"
    locked = _attempt(client, "nurse1", "correct-horse-battery-staple", "10.0.0.1")
    assert locked.status_code == 429
    assert b"Sign-in paused" in locked.content
    assert "_auth_user_id" not in client.session
    # the same person from another address is not locked out
    other = Client()
    response = _attempt(other, "nurse1", "correct-horse-battery-staple", "10.0.0.2")
    assert response.status_code == 302
    assert other.session["_auth_user_id"] == str(world.nurse.pk)
    # another account from the first address is not locked out either
    assert _attempt(Client(), "pharm1", "correct-horse-battery-staple", "10.0.0.1").status_code == 302
    assert AuditEvent.objects.filter(action="login", outcome="denied").count() >= 5


def test_the_lockout_lifts_after_the_cool_off(world):
    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == dt.timedelta(minutes=15)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, "nurse1", "wrong-password-1", "10.0.0.1")
    assert _attempt(client, "nurse1", "correct-horse-battery-staple", "10.0.0.1").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=16))
    assert _attempt(client, "nurse1", "correct-horse-battery-staple", "10.0.0.1").status_code == 302


def test_successful_sign_in_is_audited_with_the_address(world):
    _attempt(Client(), "nurse1", "correct-horse-battery-staple", "10.1.2.3")
    event = AuditEvent.objects.get(action="login", outcome="allowed")
    assert event.user_id == world.nurse.pk and event.source_ip == "10.1.2.3"


def test_an_idle_session_is_signed_out(world, client, settings):
    settings.SESSION_IDLE_TIMEOUT = 15 * 60
    login(client, world.nurse)
    worklist = reverse("worklist")
    assert client.get(worklist).status_code == 200
    session = client.session
    session[IdleSessionTimeoutMiddleware.KEY] = int(timezone.now().timestamp()) - 16 * 60
    session.save()
    response = client.get(worklist)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert "_auth_user_id" not in client.session
    # an htmx request is told to reload the page rather than swap the login form in
    login(client, world.nurse)
    client.get(worklist)
    session = client.session
    session[IdleSessionTimeoutMiddleware.KEY] = int(timezone.now().timestamp()) - 16 * 60
    session.save()
    response = client.get(worklist, headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"] == reverse("login")


def test_an_active_session_is_kept(world, client):
    login(client, world.nurse)
    worklist = reverse("worklist")
    client.get(worklist)
    session = client.session
    session[IdleSessionTimeoutMiddleware.KEY] = int(timezone.now().timestamp()) - 10 * 60
    session.save()
    assert client.get(worklist).status_code == 200
    assert client.session[IdleSessionTimeoutMiddleware.KEY] >= int(timezone.now().timestamp()) - 5


@pytest.mark.parametrize(
    "password",
    ["short1!", "password1234", "123456789012", "alice-team-2026", "careteam"],
)
def test_weak_passwords_are_refused(world, password):
    user = f.UserFactory(username="alice-team-2026", first_name="Alice", last_name="Team")
    with pytest.raises(ValidationError):
        validate_password(password, user=user)


def test_a_long_uncommon_password_is_accepted(world):
    validate_password("violet-kettle-orbit-91", user=world.nurse)


def test_sign_in_without_a_csrf_token_is_refused(world):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("login"), {"username": "nurse1", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_a_patient_write_without_a_csrf_token_is_refused_and_audited(world):
    client = login(Client(enforce_csrf_checks=True), world.case_manager)
    url = reverse("team_role_add", kwargs={"patient_id": world.patient.pk})
    before = TeamMembership.objects.count()
    response = client.post(url, {"user": world.outsider.pk, "discipline": f.discipline("nursing").pk})
    assert response.status_code == 403
    assert TeamMembership.objects.count() == before
    assert AuditEvent.objects.filter(outcome="denied", patient_id=world.patient.pk).exists()


def test_the_login_page_renders_a_proper_form(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'autocomplete="current-password"' in body and "csrfmiddlewaretoken" in body


def test_any_write_to_a_patient_url_by_emergency_access_is_refused_before_the_view(world, client):
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Emergency admission now"
    )
    login(client, world.outsider)
    before = TeamMembership.objects.count()
    for url in (
        reverse("team_role_add", kwargs={"patient_id": world.patient.pk}),
        reverse("patient_chart", kwargs={"patient_id": world.patient.pk}),
    ):
        response = client.post(url, {"user": world.outsider.pk, "discipline": f.discipline("nursing").pk})
        assert response.status_code == 403
        assert b"Emergency access is read-only" in response.content
    assert TeamMembership.objects.count() == before
    assert AuditEvent.objects.filter(outcome="denied", user_id=world.outsider.pk).count() == 2


def test_emergency_access_write_to_a_hidden_sensitive_item_is_a_404_not_a_403(world, sensitive, client):
    plain, secret = sensitive
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Emergency admission now"
    )
    login(client, world.outsider)
    from careteam.middleware import PatientAuditMiddleware

    request = RequestFactory().post("/x/")
    request.user = world.outsider
    middleware = PatientAuditMiddleware(lambda r: HttpResponse())
    with pytest.raises(PermissionDenied):
        middleware.process_view(request, None, (), {"need_id": plain.pk})
    with pytest.raises(Exception) as exc:
        middleware.process_view(request, None, (), {"need_id": secret.pk})
    assert exc.typename == "Http404"


def test_a_superuser_not_on_the_team_sees_no_clinical_rows_in_any_admin_changelist(world, client):
    from django.contrib import admin

    f.GoalFactory(care_plan=world.plan, description="ADMIN-LEAK-GOAL")
    f.NeedFactory(care_plan=world.other_plan, description="ADMIN-LEAK-NEED")
    f.ActivityFactory(care_plan=world.plan, title="ADMIN-LEAK-ACTIVITY")
    f.HandoffFactory(
        patient=world.patient, from_user=world.nurse, to_user=world.pharmacist, situation="ADMIN-LEAK-SBAR"
    )
    f.CaregiverFactory(patient=world.patient, name="ADMIN-LEAK-CAREGIVER")
    login(client, world.admin)
    secrets = [
        world.patient.mrn,
        world.other_patient.mrn,
        "ADMIN-LEAK",
        world.plan.title,
        world.other_plan.title,
    ]
    checked = 0
    for model in admin.site._registry:
        if model._meta.app_label not in ("patients", "careplans", "careteam", "referrals"):
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code in (200, 403), url
        body = response.content.decode()
        leaked = [s for s in secrets if s in body]
        assert not leaked, f"{url} shows {leaked}"
        checked += 1
    assert checked >= 8
