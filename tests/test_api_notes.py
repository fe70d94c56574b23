"""REST API v1 comments and proposals (/api/v1/notes/): created, accepted and declined
through the careplans services, with the same visibility as the pages."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from careplans.models import Note
from careteam.models import AuditEvent, Notification
from tests import factories as f

pytestmark = pytest.mark.django_db

NOTES = "/api/v1/notes/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def result_ids(response) -> set:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def rides(world):
    """A nursing activity assigned to the nurse."""
    return f.ActivityFactory(
        care_plan=world.plan,
        title="Arrange rides to clinic",
        owner_discipline=f.discipline("nursing"),
        assigned_to=world.nurse,
    )


def _propose(world, rides, **changes):
    return client_for(world.pharmacist).post(
        NOTES,
        {"activity": rides.pk, "kind": "proposal", "text": "Book it sooner", "changes": changes},
        format="json",
    )


def _accept(user, note_id):
    return client_for(user).post(f"{NOTES}{note_id}/accept/", format="json")


def test_a_comment_on_an_item_is_created_on_its_plan_and_tells_the_assignee(world, rides):
    response = client_for(world.pharmacist).post(
        NOTES, {"activity": rides.pk, "text": "The bus pass ran out"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "comment" and body["status"] == ""
    assert body["care_plan_id"] == world.plan.pk and body["activity_id"] == rides.pk
    assert body["patient_id"] == world.patient.pk
    assert response["Location"].endswith(f"{NOTES}{body['id']}/")
    told = Notification.objects.get(recipient=world.nurse)
    assert told.kind == "note-comment" and told.object_id == body["id"]
    listed = client_for(world.nurse).get(NOTES, {"activity": rides.pk, "kind": "comment"})
    assert result_ids(listed) == {body["id"]}


def test_a_proposal_keeps_its_changes_from_and_to_and_the_version_it_was_made_on(world, rides):
    response = _propose(world, rides, due_date="2031-05-06", status="scheduled")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "open" and body["target_version"] == rides.version
    assert body["changes"] == {
        "due_date": {"from": None, "to": "2031-05-06"},
        "status": {"from": "not-started", "to": "scheduled"},
    }
    assert result_ids(client_for(world.nurse).get(NOTES, {"status": "open", "plan": world.plan.pk})) == {
        body["id"]
    }


def test_a_proposal_of_a_field_it_may_not_change_is_refused_and_writes_nothing(world, rides):
    response = _propose(world, rides, sensitivity=world.behavioural_health.code)
    assert response.status_code == 400, response.content
    assert "sensitivity" in response.json()
    assert not Note.objects.exists()


def test_accepting_applies_the_change_with_history_naming_the_proposer(world, rides):
    note_id = _propose(world, rides, due_date="2031-05-06").json()["id"]
    response = _accept(world.nurse, note_id)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted" and response.json()["decided_by_id"] == world.nurse.pk
    rides.refresh_from_db()
    assert str(rides.due_date) == "2031-05-06" and rides.version == 2
    row = rides.history.latest("history_date")
    assert row.history_user == world.nurse
    assert world.pharmacist.display_name in row.history_change_reason
    assert Notification.objects.filter(recipient=world.pharmacist, kind="proposal-decided").exists()
    # decided once: accepting again conflicts with its state
    again = _accept(world.nurse, note_id)
    assert again.status_code == 409, again.content
    assert "accepted already" in again.json()["detail"]


def test_declining_without_a_reason_answers_400_and_the_proposal_stays_open(world, rides):
    note_id = _propose(world, rides, due_date="2031-05-06").json()["id"]
    nurse = client_for(world.nurse)
    response = nurse.post(f"{NOTES}{note_id}/decline/", {}, format="json")
    assert response.status_code == 400, response.content
    assert "reason" in response.json()
    assert Note.objects.get(pk=note_id).status == "open"
    declined = nurse.post(f"{NOTES}{note_id}/decline/", {"reason": "No transport then"}, format="json")
    assert declined.status_code == 200, declined.content
    assert declined.json()["status"] == "declined"
    assert declined.json()["decision_reason"] == "No transport then"


def test_accepting_after_the_item_changed_answers_409_and_changes_nothing(world, rides):
    note_id = _propose(world, rides, due_date="2031-05-06").json()["id"]
    response = client_for(world.nurse).patch(
        f"/api/v1/activities/{rides.pk}/", {"title": "Rides"}, format="json", HTTP_IF_MATCH='W/"1"'
    )
    assert response.status_code == 200, response.content
    stale = _accept(world.nurse, note_id)
    assert stale.status_code == 409, stale.content
    rides.refresh_from_db()
    assert rides.due_date is None and rides.version == 2
    assert Note.objects.get(pk=note_id).status == "open"
    refused = AuditEvent.objects.get(action="edit-refused", object_type="careplans.note")
    assert refused.object_id == str(note_id) and refused.patient_id == world.patient.pk


def test_a_member_of_another_discipline_may_not_accept_403(world, rides):
    note_id = f.NoteFactory(
        care_plan=world.plan, goal=None, activity=rides, author=world.nurse, target_version=1
    ).pk
    response = _accept(world.behavioural, note_id)
    assert response.status_code == 403, response.content
    assert Note.objects.get(pk=note_id).status == "open"


def test_an_outsider_gets_404_for_the_note_and_its_decisions_and_a_400_for_its_plan(world, rides):
    note = f.NoteFactory(care_plan=world.plan, goal=None, activity=rides, author=world.pharmacist)
    outsider = client_for(world.outsider)
    assert outsider.get(f"{NOTES}{note.pk}/").status_code == 404
    assert _accept(world.outsider, note.pk).status_code == 404
    assert outsider.get(NOTES).json()["count"] == 0
    created = outsider.post(NOTES, {"care_plan": world.plan.pk, "text": "Hello"}, format="json")
    assert created.status_code == 400, created.content
    assert Note.objects.count() == 1


def test_a_comment_on_a_sensitive_need_is_invisible_to_an_excluded_discipline(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    need = f.NeedFactory(care_plan=world.plan)
    response = client_for(world.behavioural).post(
        NOTES, {"need": need.pk, "text": "Low mood since the move"}, format="json"
    )
    assert response.status_code == 201, response.content
    note_id = response.json()["id"]
    # the need is filed as sensitive after the comment: the comment is hidden with it
    need.sensitivity = world.behavioural_health
    need.save()
    plain = f.NeedFactory(care_plan=world.plan)
    other = client_for(world.behavioural).post(NOTES, {"need": plain.pk, "text": "Fine"}, format="json")
    pharmacist = client_for(world.pharmacist)
    listing = pharmacist.get(NOTES)
    assert result_ids(listing) == {other.json()["id"]}
    assert listing.json()["count"] == 1
    assert pharmacist.get(NOTES, {"need": need.pk}).json()["count"] == 0
    assert pharmacist.get(f"{NOTES}{note_id}/").status_code == 404
    assert result_ids(client_for(world.behavioural).get(NOTES)) == {note_id, other.json()["id"]}


def test_notes_on_a_goal_hidden_with_its_needs_are_hidden_too(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    goal = f.GoalFactory(care_plan=world.plan)
    f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health).goals.set([goal])
    note = f.NoteFactory(care_plan=world.plan, goal=goal, author=world.behavioural)
    on_plan = f.NoteFactory(care_plan=world.plan, goal=None, kind="comment", status="", author=world.nurse)
    pharmacist = client_for(world.pharmacist)
    assert result_ids(pharmacist.get(NOTES)) == {on_plan.pk}
    assert pharmacist.get(f"{NOTES}{note.pk}/").status_code == 404
    assert _accept(world.pharmacist, note.pk).status_code == 404
    assert result_ids(client_for(world.case_manager).get(NOTES)) == {note.pk, on_plan.pk}


def test_a_hidden_item_in_the_body_answers_400_like_a_missing_one_and_is_audited(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    hidden = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    pharmacist = client_for(world.pharmacist)
    response = pharmacist.post(NOTES, {"need": hidden.pk, "text": "What is this?"}, format="json")
    missing = pharmacist.post(NOTES, {"need": hidden.pk + 1000, "text": "What is this?"}, format="json")
    assert response.status_code == missing.status_code == 400
    assert response.json().keys() == missing.json().keys() == {"need"}
    assert AuditEvent.objects.filter(
        user=world.pharmacist, outcome="denied", object_type="careplans.need", object_id=str(hidden.pk)
    ).exists()
    assert not Note.objects.exists()


def test_mentioning_someone_off_the_team_is_refused_and_nothing_is_written(world, rides):
    response = client_for(world.pharmacist).post(
        NOTES, {"activity": rides.pk, "text": f"Ask @{world.outsider.username}"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "not on this patient's team" in " ".join(response.json()["text"])
    assert not Note.objects.exists()
    assert not Notification.objects.exists()


def test_notes_are_listed_with_a_fixed_number_of_queries(world, rides, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cm = client_for(world.case_manager)
    for _ in range(3):
        f.NoteFactory(care_plan=world.plan, goal=None, activity=rides, author=world.pharmacist)
    with CaptureQueriesContext(connection) as three:
        cm.get(NOTES)
    for _ in range(20):
        f.NoteFactory(care_plan=world.plan, author=world.nurse)
    with django_assert_max_num_queries(len(three.captured_queries)):
        assert cm.get(NOTES).json()["count"] == 23
