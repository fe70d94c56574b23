"""Conversations in Patient/$everything as FHIR R4B Communication resources: the thread
and its messages (`partOf`), what it is about (`about`), only what the caller may see."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.communication import Communication
from rest_framework.test import APIClient

from careteam import conversations as conv
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db


def _everything(user, patient) -> list[dict]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(f"/fhir/Patient/{patient.pk}/$everything")
    assert response.status_code == 200, response.content
    return [
        e["resource"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "Communication"
    ]


def test_conversations_are_communications_with_part_of_and_about(world):
    goal = f.GoalFactory(care_plan=world.plan, description="Walk to the shop")
    access = patient_access(world.nurse, world.patient)
    c = conv.conversation_start(
        access=access, by=world.nurse, subject="Walking", about=goal, text="@pharm1 dizzy?"
    )
    second = conv.message_post(access=access, by=world.nurse, conversation=c, text="Wrong thread")
    conv.message_retract(access=access, by=world.nurse, message=second)
    resources = _everything(world.lead, world.patient)
    for resource in resources:
        Communication.model_validate(resource)  # valid R4B
    by_id = {r["id"]: r for r in resources}
    thread = by_id[f"conversation-{c.pk}"]
    assert thread["topic"] == {"text": "Walking"} and thread["about"] == [{"reference": f"Goal/{goal.pk}"}]
    first, retracted = (by_id[f"message-{m.pk}"] for m in c.messages.order_by("id"))
    assert first["partOf"] == [{"reference": f"Communication/conversation-{c.pk}"}]
    assert first["payload"] == [{"contentString": "@pharm1 dizzy?"}]
    assert first["recipient"][0]["identifier"]["value"] == "pharm1"
    assert retracted["status"] == "entered-in-error" and "payload" not in retracted
    assert "Wrong thread" not in str(resources)


def test_a_sensitive_conversation_is_left_out_for_an_excluded_discipline(world):
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    conv.conversation_start(
        access=patient_access(world.behavioural, world.patient),
        by=world.behavioural,
        subject="SENSITIVE-FHIR-TALK",
        about=need,
        text="SENSITIVE-FHIR-TEXT",
    )
    assert "SENSITIVE-FHIR" not in str(_everything(world.nurse, world.patient))
    assert "SENSITIVE-FHIR-TEXT" in str(_everything(world.behavioural, world.patient))
