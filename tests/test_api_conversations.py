"""The conversations API: lists filtered by patient, about and unread; a thread's
messages; posting; the outsider's and the excluded discipline's 404 and empty lists; bad
input 400 with nothing written; the OpenAPI schema."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from careteam import conversations as conv
from careteam.models import AuditEvent, Conversation, Message, Notification
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _start(world, user, text="Any news on the ride?", **kwargs):
    return conv.conversation_start(
        access=patient_access(user, world.patient),
        by=user,
        subject=kwargs.pop("subject", "Rides"),
        text=text,
        **kwargs,
    )


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_a_member_lists_filters_and_reads_conversations(world):
    need = f.NeedFactory(care_plan=world.plan)
    general = _start(world, world.nurse, subject="General")
    about = _start(world, world.nurse, subject="Need", about=need)
    client = client_for(world.pharmacist)
    assert _ids(client.get("/api/v1/conversations/")) == [about.pk, general.pk]
    assert _ids(client.get(f"/api/v1/conversations/?patient={world.patient.pk}")) == [about.pk, general.pk]
    assert _ids(client.get(f"/api/v1/conversations/?about=need:{need.pk}")) == [about.pk]
    assert _ids(client.get("/api/v1/conversations/?about=need")) == [about.pk]
    assert _ids(client.get("/api/v1/conversations/?about=patient")) == [general.pk]
    assert _ids(client.get("/api/v1/conversations/?unread=true")) == [about.pk, general.pk]
    body = client.get(f"/api/v1/conversations/{about.pk}/").json()
    assert body["about"] == {"type": "need", "id": need.pk} and body["unread"] is True
    messages = client.get(f"/api/v1/conversations/{about.pk}/messages/")
    assert messages.status_code == 200
    assert [m["text"] for m in messages.json()["results"]] == ["Any news on the ride?"]
    assert _ids(client.get("/api/v1/conversations/?unread=true")) == [general.pk]
    assert AuditEvent.objects.filter(user=world.pharmacist, detail__startswith="API list").exists()


def test_a_member_starts_a_conversation_and_posts_with_a_mention(world):
    client = client_for(world.nurse)
    response = client.post(
        "/api/v1/conversations/",
        {"patient": world.patient.pk, "subject": "Doses", "text": "@pharm1 please check"},
        format="json",
    )
    assert response.status_code == 201, response.content
    cid = response.json()["id"]
    assert Notification.objects.get().recipient == world.pharmacist
    posted = client.post(f"/api/v1/conversations/{cid}/messages/", {"text": "Thanks"}, format="json")
    assert posted.status_code == 201, posted.content
    assert posted.json()["text"] == "Thanks" and posted.json()["author"] == world.nurse.pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "x" * 4001}, "text"),
        ({"text": "hi @outsider1"}, "text"),
        ({}, "text"),
    ],
)
def test_bad_messages_are_400_with_nothing_written(world, body, field):
    c = _start(world, world.nurse)
    response = client_for(world.pharmacist).post(
        f"/api/v1/conversations/{c.pk}/messages/", body, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Message.objects.count() == 1 and not Notification.objects.exists()


def test_a_bad_start_is_400_and_a_hidden_item_reads_as_missing(world):
    hidden = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    client = client_for(world.nurse)
    for body in (
        {"patient": world.patient.pk, "subject": "", "text": ""},
        {
            "patient": world.patient.pk,
            "subject": "x",
            "text": "y",
            "about": {"type": "need", "id": hidden.pk},
        },
        {"patient": world.patient.pk, "subject": "x", "text": "y", "sensitivity": "behavioural-health"},
        {"patient": world.other_patient.pk, "subject": "x", "text": "y"},
    ):
        response = client.post("/api/v1/conversations/", body, format="json")
        assert response.status_code == 400, (body, response.content)
    assert not Conversation.objects.exists()


def test_an_outsider_gets_404_and_empty_lists(world):
    c = _start(world, world.nurse)
    client = client_for(world.outsider)
    assert _ids(client.get("/api/v1/conversations/")) == []
    assert client.get("/api/v1/conversations/").json()["count"] == 0
    assert client.get(f"/api/v1/conversations/{c.pk}/").status_code == 404
    assert client.get(f"/api/v1/conversations/{c.pk}/messages/").status_code == 404
    assert (
        client.post(f"/api/v1/conversations/{c.pk}/messages/", {"text": "hi"}, format="json").status_code
        == 404
    )
    assert client.get("/api/v1/conversations/987654321/messages/").status_code == 404
    assert Message.objects.count() == 1


def test_a_conversation_about_a_sensitive_need_is_missing_for_an_excluded_discipline(world):
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    c = _start(world, world.behavioural, about=need)
    nurse = client_for(world.nurse)
    assert _ids(nurse.get("/api/v1/conversations/")) == []
    assert _ids(nurse.get(f"/api/v1/conversations/?about=need:{need.pk}")) == []
    assert nurse.get(f"/api/v1/conversations/{c.pk}/").status_code == 404
    assert nurse.get(f"/api/v1/conversations/{c.pk}/messages/").status_code == 404
    assert _ids(client_for(world.lead).get("/api/v1/conversations/")) == [c.pk]


def test_bad_filters_are_400(world):
    client = client_for(world.nurse)
    for query in ("patient=abc", "about=nonsense", "about=need:x", "unread=maybe"):
        assert client.get(f"/api/v1/conversations/?{query}").status_code == 400, query


def test_emergency_access_reads_but_posting_is_403(world):
    from careteam import services as team_services

    c = _start(world, world.nurse)
    glass = f.UserFactory(username="glass7", disciplines=["nursing"])
    team_services.emergency_access_open(by=glass, patient=world.patient, reason="Unconscious on arrival")
    client = client_for(glass)
    assert client.get(f"/api/v1/conversations/{c.pk}/messages/").status_code == 200
    assert (
        client.post(f"/api/v1/conversations/{c.pk}/messages/", {"text": "x"}, format="json").status_code
        == 403
    )


def test_the_schema_documents_conversations(world):
    schema = client_for(world.nurse).get("/api/schema/?format=json").json()
    assert "/api/v1/conversations/" in schema["paths"]
    messages = schema["paths"]["/api/v1/conversations/{conversation_id}/messages/"]
    assert "MessageCreateRequest" in str(messages["post"]["requestBody"])
    params = {p["name"] for p in schema["paths"]["/api/v1/conversations/"]["get"]["parameters"]}
    assert {"patient", "about", "unread"} <= params
