"""Conversations as FHIR R4 `Communication` resources, for Patient/$everything.

A conversation is one Communication (`conversation-<id>`: its subject as `topic`, the
item it is about as `about`); each message is one more (`message-<id>`) that is `partOf`
its conversation, sent by its author to those it mentions, with its text as the payload.
A retracted message is `entered-in-error` and carries no text. Only what the caller may
see is passed in (`communications_for`)."""

from __future__ import annotations

from django.db.models import Prefetch

from careteam.models import Conversation, Message, MessageMention
from careteam.permissions import PatientAccess

from .fhir import SYSTEM_BASE, USER_SYSTEM, _drop_empty, patient_ref, user_ref

ITEM_SYSTEM = f"{SYSTEM_BASE}/sid"


def about_ref(conversation: Conversation) -> dict | None:
    """A reference to what the conversation is about: the resource where CareTeam
    exports one (Goal, Task for a handoff, ServiceRequest for a referral); needs and
    activities are parts of the CarePlan, named by a logical identifier."""
    kind = conversation.about_kind
    if not kind:
        return None
    pk = getattr(conversation, f"{kind}_id")
    if kind == "goal":
        return {"reference": f"Goal/{pk}"}
    if kind == "handoff":
        return {"reference": f"Task/handoff-{pk}"}
    if kind == "referral":
        return {"reference": f"ServiceRequest/{pk}"}
    return {"identifier": {"system": f"{ITEM_SYSTEM}/{kind}", "value": str(pk)}}


def conversation_resource(conversation: Conversation) -> dict:
    about = about_ref(conversation)
    return _drop_empty(
        {
            "resourceType": "Communication",
            "id": f"conversation-{conversation.pk}",
            "status": "in-progress",
            "subject": patient_ref(conversation.patient_id),
            "topic": {"text": conversation.subject},
            "about": [about] if about else [],
            "sent": conversation.created_at.isoformat(),
            "sender": user_ref(conversation.started_by),
        }
    )


def message_resource(message: Message, conversation: Conversation) -> dict:
    about = about_ref(conversation)
    recipients = []
    for mention in message.mentions.all():
        if mention.user_id:
            recipients.append(
                {
                    "identifier": {"system": USER_SYSTEM, "value": mention.user.username},
                    "display": mention.user.display_name,
                }
            )
        else:
            recipients.append({"display": f"{mention.discipline.name} queue"})
    return _drop_empty(
        {
            "resourceType": "Communication",
            "id": f"message-{message.pk}",
            "meta": {"versionId": str(message.version)},
            "partOf": [{"reference": f"Communication/conversation-{conversation.pk}"}],
            "status": "entered-in-error" if message.is_retracted else "completed",
            "subject": patient_ref(conversation.patient_id),
            "topic": {"text": conversation.subject},
            "about": [about] if about else [],
            "sent": message.created_at.isoformat(),
            "sender": user_ref(message.author),
            "recipient": recipients,
            "payload": [] if message.is_retracted else [{"contentString": message.text}],
        }
    )


def communications_for(access: PatientAccess) -> list[tuple[str, dict]]:
    """(relative url, resource) for the patient's conversations and messages the caller
    may see: a fixed number of queries."""
    conversations = (
        Conversation.objects.filter(patient_id=access.patient.pk)
        .filter(access.conversation_q())
        .select_related("started_by")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=Message.objects.select_related("author")
                .prefetch_related(
                    Prefetch("mentions", queryset=MessageMention.objects.select_related("user", "discipline"))
                )
                .order_by("created_at", "id"),
            )
        )
        .order_by("id")
    )
    entries: list[tuple[str, dict]] = []
    for conversation in conversations:
        entries.append((f"Communication/conversation-{conversation.pk}", conversation_resource(conversation)))
        for message in conversation.messages.all():
            entries.append((f"Communication/message-{message.pk}", message_resource(message, conversation)))
    return entries
