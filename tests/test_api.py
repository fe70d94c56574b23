"""REST API v1: per resource list, read, create, update, illegal transition, the outsider's
404, stale and missing If-Match, validation that writes nothing; tokens; audit."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from careplans.models import Activity, CarePlan, Goal, Need
from careteam.models import AuditEvent, EmergencyAccess, Handoff, Notification, TeamMembership
from referrals.models import Referral
from tests import factories as f

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def result_ids(response) -> set:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def patch(client, url, data, version):
    headers = {} if version is None else {"HTTP_IF_MATCH": f'W/"{version}"'}
    return client.patch(url, data, format="json", **headers)


# ---------------------------------------------------------------------------
# Care plans
# ---------------------------------------------------------------------------
def test_case_manager_creates_a_draft_plan_and_gets_its_version_as_etag(world):
    client = client_for(world.case_manager)
    response = client.post(
        "/api/v1/care-plans/", {"patient": world.patient.pk, "title": "Second plan"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft" and body["version"] == 1
    assert response["ETag"] == 'W/"1"'
    assert response["Location"].endswith(f"/api/v1/care-plans/{body['id']}/")
    assert body["patient"].endswith(f"/api/v1/patients/{world.patient.pk}/")
    assert body["links"]["goals"].endswith(f"/api/v1/goals/?care_plan={body['id']}")


def test_plan_title_changes_with_the_current_version_and_the_version_moves_on(world):
    client = client_for(world.case_manager)
    url = f"/api/v1/care-plans/{world.plan.pk}/"
    assert client.get(url)["ETag"] == 'W/"1"'
    response = patch(client, url, {"title": "Renamed"}, 1)
    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Renamed" and response["ETag"] == 'W/"2"'


def test_illegal_plan_transition_answers_409_with_the_reason(world):
    response = patch(
        client_for(world.case_manager), f"/api/v1/care-plans/{world.plan.pk}/", {"status": "draft"}, 1
    )
    assert response.status_code == 409
    assert "Cannot change status from 'active' to 'draft'" in response.json()["status"][0]
    assert CarePlan.objects.get(pk=world.plan.pk).status == "active"


def test_outsider_cannot_create_a_plan_for_a_patient_they_cannot_see(world):
    before = CarePlan.objects.count()
    response = client_for(world.outsider).post(
        "/api/v1/care-plans/", {"patient": world.patient.pk, "title": "Sneaky"}, format="json"
    )
    assert response.status_code == 400
    assert "patient" in response.json()
    assert CarePlan.objects.count() == before


# ---------------------------------------------------------------------------
# Goals
# ---------------------------------------------------------------------------
def test_nurse_lists_reads_creates_and_updates_goals_of_their_patient(world):
    client = client_for(world.nurse)
    other = f.GoalFactory(care_plan=world.other_plan)
    response = client.post(
        "/api/v1/goals/",
        {
            "care_plan": world.plan.pk,
            "description": "Walks 200 m without rest",
            "owner_discipline": "nursing",
            "target_measure": "walking distance",
            "target_value": "200 m",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    goal_id = response.json()["id"]
    assert result_ids(client.get("/api/v1/goals/")) == {goal_id}
    assert other.pk not in result_ids(client.get("/api/v1/goals/?patient=" + str(world.other_patient.pk)))
    detail = client.get(f"/api/v1/goals/{goal_id}/")
    assert detail.status_code == 200 and detail["ETag"] == 'W/"1"'
    updated = patch(client, f"/api/v1/goals/{goal_id}/", {"lifecycle_status": "active"}, 1)
    assert updated.status_code == 200, updated.content
    assert updated.json()["lifecycle_status"] == "active" and updated.json()["version"] == 2


def test_stale_if_match_answers_412_and_changes_nothing(world):
    goal = f.GoalFactory(care_plan=world.plan, description="Original")
    client = client_for(world.case_manager)
    assert patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "First"}, 1).status_code == 200
    response = patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "Second"}, 1)
    assert response.status_code == 412
    assert response.json()["current_version"] == 2
    assert response["ETag"] == 'W/"2"'
    assert Goal.objects.get(pk=goal.pk).description == "First"


def test_missing_if_match_answers_428(world):
    goal = f.GoalFactory(care_plan=world.plan)
    response = patch(client_for(world.case_manager), f"/api/v1/goals/{goal.pk}/", {"description": "x"}, None)
    assert response.status_code == 428
    assert "If-Match" in response.json()["detail"]


def test_goal_with_blank_description_answers_400_per_field_and_writes_nothing(world):
    before = Goal.objects.count()
    response = client_for(world.nurse).post(
        "/api/v1/goals/", {"care_plan": world.plan.pk, "description": ""}, format="json"
    )
    assert response.status_code == 400
    assert "description" in response.json()
    assert Goal.objects.count() == before


def test_illegal_goal_transition_answers_409(world):
    goal = f.GoalFactory(care_plan=world.plan, lifecycle_status="cancelled")
    response = patch(client_for(world.lead), f"/api/v1/goals/{goal.pk}/", {"lifecycle_status": "active"}, 1)
    assert response.status_code == 409
    assert "Allowed from 'cancelled'" in response.json()["lifecycle_status"][0]


def test_pharmacist_cannot_change_a_physician_goal_403_with_reason(world):
    goal = f.GoalFactory(care_plan=world.plan, owner_discipline=f.discipline("physician"))
    response = patch(client_for(world.pharmacist), f"/api/v1/goals/{goal.pk}/", {"description": "x"}, 1)
    assert response.status_code == 403
    assert "owned by" in response.json()["detail"]


def test_outsider_gets_404_for_goal_and_never_sees_it_in_lists(world):
    goal = f.GoalFactory(care_plan=world.plan)
    client = client_for(world.outsider)
    assert client.get(f"/api/v1/goals/{goal.pk}/").status_code == 404
    assert patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "x"}, 1).status_code == 404
    listing = client.get("/api/v1/goals/")
    assert listing.json()["count"] == 0


# ---------------------------------------------------------------------------
# Needs (sensitive items)
# ---------------------------------------------------------------------------
def test_sensitive_need_is_hidden_from_disciplines_the_policy_does_not_allow(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    client = client_for(world.behavioural)
    response = client.post(
        "/api/v1/needs/",
        {
            "care_plan": world.plan.pk,
            "domain": "behavioural",
            "category": "mental-health",
            "description": "Low mood",
            "sensitivity": world.behavioural_health.code,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    need_id = response.json()["id"]
    plain = f.NeedFactory(care_plan=world.plan)
    pharmacist = client_for(world.pharmacist)
    assert result_ids(pharmacist.get("/api/v1/needs/")) == {plain.pk}
    assert pharmacist.get("/api/v1/needs/").json()["count"] == 1
    assert pharmacist.get(f"/api/v1/needs/{need_id}/").status_code == 404
    assert need_id in result_ids(client_for(world.case_manager).get("/api/v1/needs/"))


def test_need_update_and_illegal_transition(world):
    need = f.NeedFactory(care_plan=world.plan, status="resolved")
    client = client_for(world.case_manager)
    assert patch(client, f"/api/v1/needs/{need.pk}/", {"status": "active"}, 1).status_code == 409
    ok = patch(client, f"/api/v1/needs/{need.pk}/", {"status": "recurrence", "is_barrier": True}, 1)
    assert ok.status_code == 200, ok.content
    assert ok.json()["status"] == "recurrence" and ok.json()["is_barrier"] is True


# ---------------------------------------------------------------------------
# Activities
# ---------------------------------------------------------------------------
def test_activity_is_created_linked_to_goals_and_moves_through_its_statuses(world):
    goal = f.GoalFactory(care_plan=world.plan)
    client = client_for(world.nurse)
    response = client.post(
        "/api/v1/activities/",
        {
            "care_plan": world.plan.pk,
            "title": "Teach inhaler technique",
            "owner_discipline": "nursing",
            "assigned_to": world.nurse.pk,
            "goals": [goal.pk],
            "due_date": (timezone.localdate() + dt.timedelta(days=3)).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["goals"] == [goal.pk]
    url = f"/api/v1/activities/{body['id']}/"
    assert patch(client, url, {"status": "completed"}, 1).status_code == 409
    started = patch(client, url, {"status": "in-progress"}, 1)
    assert started.status_code == 200 and started.json()["status"] == "in-progress"


def test_activity_linked_to_another_plans_goal_is_refused_and_nothing_is_written(world):
    foreign = f.GoalFactory(care_plan=f.CarePlanFactory(patient=world.patient, status="draft"))
    before = Activity.objects.count()
    response = client_for(world.case_manager).post(
        "/api/v1/activities/",
        {"care_plan": world.plan.pk, "title": "Linked", "owner_discipline": "nursing", "goals": [foreign.pk]},
        format="json",
    )
    assert response.status_code == 400
    assert "goals" in response.json()
    assert Activity.objects.count() == before


def test_nurse_cannot_create_an_activity_owned_by_pharmacy(world):
    response = client_for(world.nurse).post(
        "/api/v1/activities/",
        {"care_plan": world.plan.pk, "title": "Reconcile meds", "owner_discipline": "pharmacy"},
        format="json",
    )
    assert response.status_code == 400
    assert "owner_discipline" in response.json()


# ---------------------------------------------------------------------------
# Team memberships
# ---------------------------------------------------------------------------
def test_case_manager_adds_and_ends_a_role_nurse_may_not(world):
    dietitian = f.UserFactory(username="diet1", disciplines=["dietetics"])
    payload = {"patient": world.patient.pk, "user": dietitian.pk, "discipline": "dietetics"}
    assert (
        client_for(world.nurse).post("/api/v1/team-memberships/", payload, format="json").status_code == 403
    )
    client = client_for(world.case_manager)
    response = client.post("/api/v1/team-memberships/", payload, format="json")
    assert response.status_code == 201, response.content
    url = f"/api/v1/team-memberships/{response.json()['id']}/"
    assert client_for(dietitian).get(f"/api/v1/patients/{world.patient.pk}/").status_code == 200
    ended = patch(client, url, {"end_date": timezone.localdate().isoformat()}, 1)
    assert ended.status_code == 200, ended.content
    assert ended.json()["status"] == "inactive"
    assert client_for(dietitian).get(f"/api/v1/patients/{world.patient.pk}/").status_code == 404
    assert patch(client, url, {"status": "active"}, 2).status_code == 409
    assert patch(client, url, {"status": "entered-in-error"}, 1).status_code == 412


def test_second_case_manager_is_refused_with_a_clear_message(world):
    response = client_for(world.case_manager).post(
        "/api/v1/team-memberships/",
        {
            "patient": world.patient.pk,
            "user": world.nurse.pk,
            "discipline": "case-management",
            "role": "case-manager",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "already has an active case manager" in str(response.json())


# ---------------------------------------------------------------------------
# Handoffs
# ---------------------------------------------------------------------------
def test_handoff_is_sent_accepted_and_cannot_go_back(world):
    nurse = client_for(world.nurse)
    response = nurse.post(
        "/api/v1/handoffs/",
        f.handoff_payload(patient=world.patient, to_user=world.pharmacist),
        format="json",
    )
    assert response.status_code == 201, response.content
    url = f"/api/v1/handoffs/{response.json()['id']}/"
    assert response.json()["fhir"].endswith(f"/fhir/Task/handoff-{response.json()['id']}")
    pharmacist = client_for(world.pharmacist)
    accepted = patch(pharmacist, url, {"status": "accepted"}, 1)
    assert accepted.status_code == 200, accepted.content
    assert (
        accepted.json()["status"] == "accepted" and accepted.json()["accepted_by_id"] == world.pharmacist.pk
    )
    assert patch(pharmacist, url, {"status": "requested"}, 2).status_code == 409
    assert patch(pharmacist, url, {"status": "in-progress"}, 1).status_code == 412
    assert client_for(world.outsider).get(url).status_code == 404


def test_handoff_missing_sbar_answers_400_per_field(world):
    response = client_for(world.nurse).post(
        "/api/v1/handoffs/",
        {
            "patient": world.patient.pk,
            "to_user": world.pharmacist.pk,
            "situation": "x",
            "background": "",
            "assessment": "y",
            "recommendation": "z",
            "due_at": timezone.now().isoformat(),
        },
        format="json",
    )
    assert response.status_code == 400
    assert "background" in response.json()
    assert not Handoff.objects.exists()


# ---------------------------------------------------------------------------
# Referrals
# ---------------------------------------------------------------------------
def test_referral_draft_is_sent_only_with_consent(world):
    service = f.ServiceFactory()
    client = client_for(world.case_manager)
    response = client.post(
        "/api/v1/referrals/",
        {"care_plan": world.plan.pk, "service": str(service.pk), "reason": "Needs rides", "send": False},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "draft"
    url = f"/api/v1/referrals/{response.json()['id']}/"
    assert patch(client, url, {"status": "accepted"}, 1).status_code == 409
    no_consent = patch(client, url, {"status": "requested"}, 1)
    assert no_consent.status_code == 400
    assert "consent" in no_consent.json()
    assert Referral.objects.get(pk=response.json()["id"]).status == "draft"
    f.ConsentFactory(patient=world.patient)
    sent = patch(client, url, {"status": "requested"}, 1)
    assert sent.status_code == 200, sent.content
    assert sent.json()["status"] == "requested"
    assert patch(client, url, {"status": "accepted"}, 1).status_code == 412


# ---------------------------------------------------------------------------
# Patients, catalog, notifications
# ---------------------------------------------------------------------------
def test_patient_list_has_only_team_patients_and_searches_by_name(world):
    client = client_for(world.nurse)
    assert result_ids(client.get("/api/v1/patients/")) == {world.patient.pk}
    assert result_ids(client.get("/api/v1/patients/?search=Team")) == {world.patient.pk}
    assert result_ids(client.get("/api/v1/patients/?search=Elsewhere")) == set()
    body = client.get(f"/api/v1/patients/{world.patient.pk}/").json()
    assert body["links"]["fhir"].endswith(f"/fhir/Patient/{world.patient.pk}")


def test_catalog_is_readable_by_any_clinician(world):
    service = f.ServiceFactory()
    client = client_for(world.outsider)
    assert str(service.pk) in {row["id"] for row in client.get("/api/v1/services/").json()["results"]}
    org = client.get(f"/api/v1/organizations/{service.organization_id}/")
    assert org.status_code == 200
    assert client.get(f"/api/v1/services/?organization={service.organization_id}").json()["count"] == 1


def test_notifications_are_the_callers_own(world):
    mine = Notification.objects.create(
        recipient=world.nurse,
        kind="handoff-received",
        object_type="handoff",
        object_id=1,
        due_moment=timezone.now(),
        title="New handoff",
    )
    theirs = Notification.objects.create(
        recipient=world.pharmacist,
        kind="handoff-received",
        object_type="handoff",
        object_id=2,
        due_moment=timezone.now(),
        title="New handoff",
    )
    client = client_for(world.nurse)
    assert result_ids(client.get("/api/v1/notifications/")) == {mine.pk}
    assert client.get(f"/api/v1/notifications/{theirs.pk}/").status_code == 404
    assert client.post(f"/api/v1/notifications/{theirs.pk}/read/").status_code == 404
    marked = client.post(f"/api/v1/notifications/{mine.pk}/read/")
    assert marked.status_code == 200 and marked.json()["read_at"] is not None
    assert result_ids(client.get("/api/v1/notifications/?unread=true")) == set()
    assert Notification.objects.get(pk=theirs.pk).read_at is None


# ---------------------------------------------------------------------------
# Emergency access: read-only
# ---------------------------------------------------------------------------
def test_emergency_access_reader_reads_but_every_write_answers_403(world):
    EmergencyAccess.objects.create(
        user=world.outsider,
        patient=world.patient,
        reason="Unconscious in ED, need meds",
        expires_at=timezone.now() + dt.timedelta(hours=2),
    )
    goal = f.GoalFactory(care_plan=world.plan)
    client = client_for(world.outsider)
    assert client.get(f"/api/v1/goals/{goal.pk}/").status_code == 200
    assert patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "x"}, 1).status_code == 403
    created = client.post("/api/v1/goals/", {"care_plan": world.plan.pk, "description": "x"}, format="json")
    assert created.status_code == 403
    assert "read-only" in created.json()["detail"]
    assert patch(client, f"/api/v1/care-plans/{world.plan.pk}/", {"title": "x"}, 1).status_code == 403
    assert Goal.objects.count() == 1


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------
def test_token_is_issued_used_and_revoked(world):
    anonymous = APIClient()
    response = anonymous.post(
        "/api/v1/auth/token/",
        {"username": "nurse1", "password": "correct-horse-battery-staple"},
        format="json",
    )
    assert response.status_code == 200, response.content
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/patients/").json()["count"] == 1
    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert not AuthToken.objects.exists()
    assert client.get("/api/v1/patients/").status_code == 401


def test_wrong_password_answers_400_and_repeated_failures_lock_the_account(world):
    anonymous = APIClient()
    for _ in range(5):
        bad = anonymous.post(
            "/api/v1/auth/token/", {"username": "nurse1", "password": "wrong"}, format="json"
        )
        assert bad.status_code in (400, 429)
    locked = anonymous.post(
        "/api/v1/auth/token/",
        {"username": "nurse1", "password": "correct-horse-battery-staple"},
        format="json",
    )
    assert locked.status_code == 429
    assert not AuthToken.objects.exists()


def test_unauthenticated_calls_answer_401(world):
    assert APIClient().get("/api/v1/goals/").status_code == 401


# ---------------------------------------------------------------------------
# Audit
# ---------------------------------------------------------------------------
def test_reads_and_writes_through_the_api_are_audited(world):
    goal = f.GoalFactory(care_plan=world.plan)
    client = client_for(world.nurse)
    client.get(f"/api/v1/goals/?patient={world.patient.pk}")
    listed = AuditEvent.objects.filter(user=world.nurse, object_type="careplans.goal", action="view").latest(
        "id"
    )
    assert listed.detail == f"API list, 1 results; patient={world.patient.pk}"
    assert (listed.patient_id, listed.patient_ids) == (world.patient.pk, [world.patient.pk])
    client.get(f"/api/v1/goals/{goal.pk}/")
    read = AuditEvent.objects.filter(user=world.nurse, object_id=str(goal.pk), action="view").latest("id")
    assert read.patient_id == world.patient.pk
    patch(client, f"/api/v1/goals/{goal.pk}/", {"description": "Changed"}, 1)
    assert AuditEvent.objects.filter(user=world.nurse, object_id=str(goal.pk), action="update").exists()


def test_audit_events_case_manager_and_lead_see_their_patients_auditor_sees_all(world):
    f.GoalFactory(care_plan=world.other_plan)
    client_for(world.nurse).get(f"/api/v1/patients/{world.patient.pk}/")
    client_for(world.other_team_nurse).get(f"/api/v1/patients/{world.other_patient.pk}/")
    cm_events = client_for(world.case_manager).get("/api/v1/audit-events/").json()["results"]
    assert cm_events and {e["patient_id"] for e in cm_events} == {world.patient.pk}
    assert client_for(world.nurse).get("/api/v1/audit-events/").json()["results"] == []
    lead_events = client_for(world.lead).get("/api/v1/audit-events/").json()["results"]
    # the case manager's read of the log showed this patient: the lead sees it, without
    # the ids of the other patients a list may have shown
    cm_read = [e for e in lead_events if e["patient_id"] is None]
    assert [(e["username"], e["object_type"], e["patient_ids"]) for e in cm_read] == [
        (world.case_manager.username, "careteam.auditevent", [])
    ]
    assert {e["patient_id"] for e in lead_events} == {world.patient.pk, None}
    auditor = f.UserFactory(username="auditor1")
    auditor.user_permissions.add(Permission.objects.get(codename="view_audit_log"))
    everything = client_for(auditor).get("/api/v1/audit-events/").json()["results"]
    assert {world.patient.pk, world.other_patient.pk} <= {e["patient_id"] for e in everything}
    assert [e["patient_ids"] for e in everything if e["object_type"] == "careteam.auditevent"][-1] == [
        world.patient.pk
    ]


# ---------------------------------------------------------------------------
# OpenAPI and docs
# ---------------------------------------------------------------------------
def test_schema_documents_bodies_and_error_answers(world):
    schema = client_for(world.nurse).get("/api/schema/?format=json").json()
    goal_patch = schema["paths"]["/api/v1/goals/{goal_id}/"]["patch"]
    assert {"200", "400", "404", "409", "412", "428"} <= set(goal_patch["responses"])
    if_match = [p for p in goal_patch["parameters"] if p["name"] == "If-Match"]
    assert if_match and if_match[0]["required"] is True
    assert "GoalCreateRequest" in str(schema["paths"]["/api/v1/goals/"]["post"]["requestBody"])


def test_swagger_ui_is_served_without_a_cdn(world):
    page = client_for(world.nurse).get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr" not in html


def test_membership_list_filters_by_patient(world):
    rows = client_for(world.case_manager).get(f"/api/v1/team-memberships/?patient={world.patient.pk}").json()
    assert rows["count"] == TeamMembership.objects.filter(patient=world.patient).count()
    assert client_for(world.case_manager).get("/api/v1/team-memberships/?patient=abc").status_code == 400


def test_need_model_counts_unchanged_by_invalid_choice(world):
    before = Need.objects.count()
    response = client_for(world.nurse).post(
        "/api/v1/needs/",
        {"care_plan": world.plan.pk, "domain": "cosmic", "category": "food", "description": "x"},
        format="json",
    )
    assert response.status_code == 400 and "domain" in response.json()
    assert Need.objects.count() == before


def test_out_of_range_ids_answer_like_missing_ones(world):
    client = client_for(world.nurse)
    huge = "9" * 25
    assert client.get(f"/api/v1/goals/{huge}/").status_code == 404
    assert client.get(f"/api/v1/goals/?patient={'9' * 20}").json()["count"] == 0
    assert client.get(f"/fhir/Task/handoff-{huge}").status_code == 404


def test_nul_characters_answer_400_not_a_server_error(world):
    client = client_for(world.case_manager)
    response = client.post(
        "/api/v1/activities/",
        {"care_plan": world.plan.pk, "title": "x", "owner_discipline": "nurs\x00ing"},
        format="json",
    )
    # refused by the JSON parser, before any field is read
    assert response.status_code == 400 and "NUL" in response.json()["detail"]


def test_activity_does_not_reveal_linked_needs_the_caller_may_not_see(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    hidden = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    plain = f.NeedFactory(care_plan=world.plan)
    activity = f.ActivityFactory(care_plan=world.plan)
    activity.needs.set([hidden, plain])
    assert client_for(world.pharmacist).get(f"/api/v1/activities/{activity.pk}/").json()["needs"] == [
        plain.pk
    ]
    seen = client_for(world.case_manager).get(f"/api/v1/activities/{activity.pk}/").json()["needs"]
    assert sorted(seen) == sorted([hidden.pk, plain.pk])


def test_relinking_needs_keeps_links_to_needs_the_caller_cannot_see(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    hidden = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    old, new = f.NeedFactory(care_plan=world.plan), f.NeedFactory(care_plan=world.plan)
    activity = f.ActivityFactory(care_plan=world.plan)
    activity.needs.set([hidden, old])
    changed = patch(client_for(world.lead), f"/api/v1/activities/{activity.pk}/", {"needs": [new.pk]}, 1)
    assert changed.status_code == 200, changed.content
    assert changed.json()["needs"] == [new.pk]
    assert set(activity.needs.values_list("pk", flat=True)) == {hidden.pk, new.pk}


def test_browser_session_works_for_the_api_as_well_as_tokens(world):
    f.NeedFactory(care_plan=world.plan)
    f.ActivityFactory(care_plan=world.plan)
    client = APIClient()
    client.force_login(world.nurse)
    for url in ("/api/v1/needs/", "/api/v1/activities/", "/api/v1/patients/"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.content)
        assert response.json()["count"] == 1


def test_a_change_the_database_refuses_answers_409_and_writes_nothing(world):
    """Cancelling a never-sent referral: whatever the rules decide, never a server error
    and never half a change."""
    referral = f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)
    response = patch(
        client_for(world.case_manager),
        f"/api/v1/referrals/{referral.pk}/",
        {"status": "cancelled", "outcome": "declined", "note": "Patient declined"},
        1,
    )
    assert response.status_code in (200, 400, 409), response.content
    if response.status_code != 200:
        referral.refresh_from_db()
        assert (referral.status, referral.version, referral.events.count()) == ("draft", 1, 0)
