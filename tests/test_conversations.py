"""Conversations on a patient: who may start, read and post; mentions reach exactly those
mentioned (a person or a discipline's queue) and refuse anyone off the team; messages are
edited for five minutes by their author only, retracted but never deleted; unread state per
person; a conversation about a sensitive item is as hidden as the item."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from careteam import conversations as conv
from careteam import services as team_services
from careteam.models import (
    AuditEvent,
    Conversation,
    ConversationRead,
    Message,
    MessageMention,
    MessageRevision,
    Notification,
)
from careteam.permissions import ReadOnlyAccess, patient_access, visible_conversations, visible_messages
from tests import factories as f

pytestmark = pytest.mark.django_db


def _access(world, user):
    return patient_access(user, world.patient)


def _start(world, user, *, text="Can someone check the inhaler technique?", **kwargs):
    return conv.conversation_start(
        access=_access(world, user), by=user, subject=kwargs.pop("subject", "Inhaler"), text=text, **kwargs
    )


def _post(world, user, conversation, text):
    return conv.message_post(access=_access(world, user), by=user, conversation=conversation, text=text)


def _mentions(user) -> list[Notification]:
    return list(Notification.objects.filter(recipient=user, kind="conversation-mention"))


# ---------------------------------------------------------------------------
# Starting and posting
# ---------------------------------------------------------------------------
def test_a_member_starts_a_conversation_with_its_first_message_and_has_read_it(world):
    c = _start(world, world.nurse)
    c.refresh_from_db()
    message = Message.objects.get(conversation=c)
    assert c.last_message_id == message.pk and c.started_by == world.nurse
    assert ConversationRead.objects.get(conversation=c, user=world.nurse).last_read_message_id == message.pk
    assert not conv.inbox(world.nurse, unread=True).exists()
    assert list(conv.inbox(world.pharmacist, unread=True)) == [c]
    assert AuditEvent.objects.filter(
        object_type="careteam.conversation", object_id=str(c.pk), action="create"
    )
    assert AuditEvent.objects.filter(
        object_type="careteam.message", object_id=str(message.pk), action="create"
    )


def test_a_conversation_about_an_item_takes_its_label_when_no_subject_is_given(world):
    act = f.ActivityFactory(care_plan=world.plan, title="Arrange rides")
    c = _start(world, world.nurse, subject="", about=act)
    assert c.activity == act and c.subject == "activity “Arrange rides”"


def test_a_reply_makes_the_conversation_unread_for_the_others_only(world):
    c = _start(world, world.nurse)
    conv.conversation_mark_read(access=_access(world, world.pharmacist), by=world.pharmacist, conversation=c)
    assert not conv.inbox(world.pharmacist, unread=True).exists()
    _post(world, world.pharmacist, c, "I will see her on Tuesday")
    assert list(conv.inbox(world.nurse, unread=True)) == [c]
    assert not conv.inbox(world.pharmacist, unread=True).exists()
    assert conv.unread_conversation_count(world.nurse) == 1
    assert conv.unread_conversation_count(world.pharmacist) == 0


def test_the_inbox_is_newest_first_and_filters_by_item_kind(world):
    need = f.NeedFactory(care_plan=world.plan)
    older = _start(world, world.nurse, subject="General")
    newer = _start(world, world.nurse, subject="About a need", about=need)
    assert list(conv.inbox(world.lead)) == [newer, older]
    assert list(conv.inbox(world.lead, about="need")) == [newer]
    assert list(conv.inbox(world.lead, about="patient")) == [older]
    _post(world, world.lead, older, "Bumped")
    assert list(conv.inbox(world.lead)) == [older, newer]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Write the message."),
        ("   \n ", "Write the message."),
        ("x" * 4001, "A message is at most 4000 characters (this one has 4001)."),
        ("nul \x00 here", "The message contains a character that cannot be stored."),
    ],
)
def test_a_bad_message_is_refused_with_a_clear_error_and_nothing_is_written(world, text, message):
    c = _start(world, world.nurse)
    before = Message.objects.count()
    with pytest.raises(ValidationError) as exc:
        _post(world, world.pharmacist, c, text)
    assert exc.value.message_dict == {"text": [message]}
    assert Message.objects.count() == before


def test_a_bad_start_writes_no_conversation(world):
    with pytest.raises(ValidationError) as exc:
        _start(world, world.nurse, subject="", text="")
    assert exc.value.message_dict == {"subject": ["Give the conversation a subject."]}
    with pytest.raises(ValidationError) as exc:
        _start(world, world.nurse, subject="Fine", text="hello @outsider1")
    assert exc.value.message_dict == {"text": ["@outsider1 is not on this patient's team."]}
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_an_outsider_and_emergency_access_cannot_post(world):
    c = _start(world, world.nurse)
    with pytest.raises(ReadOnlyAccess):
        _post(world, world.outsider, c, "hello")
    assert not visible_conversations(world.outsider).exists()
    assert not visible_messages(world.outsider).exists()
    assert conv.unread_conversation_count(world.outsider) == 0
    assert not conv.inbox(world.other_team_nurse).exists()


def test_leaving_the_team_ends_access_to_its_conversations(world):
    c = _start(world, world.nurse)
    assert list(visible_conversations(world.pharmacist)) == [c]
    membership = world.pharmacist.memberships.get(patient=world.patient)
    team_services.membership_end(
        membership=membership,
        by=world.case_manager,
        reason="Discharged from pharmacy follow-up",
        expected_version=membership.version,
    )
    assert not visible_conversations(world.pharmacist).exists()
    assert conv.unread_conversation_count(world.pharmacist) == 0


# ---------------------------------------------------------------------------
# Mentions
# ---------------------------------------------------------------------------
def test_a_mention_notifies_exactly_the_mentioned_member(world):
    c = _start(world, world.nurse, text="@pharm1 could you review the doses?")
    message = c.messages.get()
    (told,) = _mentions(world.pharmacist)
    assert told.object_type == "careteam.message" and told.object_id == message.pk
    assert told.url == f"/patients/{world.patient.pk}/conversations/{c.pk}/#message-{message.pk}"
    assert not Notification.objects.exclude(recipient=world.pharmacist).exists()
    assert list(message.mentions.values_list("user__username", flat=True)) == ["pharm1"]


def test_a_discipline_mention_reaches_its_members_on_this_team_and_not_the_author(world):
    second = f.UserFactory(username="pharm2", disciplines=["pharmacy"])
    team_services.membership_add(patient=world.patient, user=second, discipline=f.discipline("pharmacy"))
    f.UserFactory(username="pharm3", disciplines=["pharmacy"])  # not on this team
    _start(world, second, text="@pharmacy please reconcile the list")
    recipients = set(Notification.objects.values_list("recipient__username", flat=True))
    assert recipients == {"pharm1"}
    assert MessageMention.objects.get().discipline.code == "pharmacy"


@pytest.mark.parametrize("handle", ["outsider1", "nurse2", "nobody-at-all", "dietitian"])
def test_a_mention_of_anyone_off_the_team_refuses_the_message_and_writes_nothing(world, handle):
    c = _start(world, world.nurse)
    before = (Message.objects.count(), Notification.objects.count(), MessageMention.objects.count())
    with pytest.raises(ValidationError) as exc:
        _post(world, world.nurse, c, f"@pharm1 and @{handle}")
    (error,) = exc.value.message_dict["text"]
    assert error.startswith(f"@{handle}")
    assert "not on this patient's team" in error or "nobody of that discipline" in error
    assert (Message.objects.count(), Notification.objects.count(), MessageMention.objects.count()) == before


# ---------------------------------------------------------------------------
# Sensitivity
# ---------------------------------------------------------------------------
def test_a_conversation_about_a_sensitive_need_is_invisible_to_an_excluded_discipline(world):
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    c = _start(world, world.behavioural, about=need, text="She mentioned her drinking again")
    assert c.sensitivity == world.behavioural_health
    for allowed in (world.behavioural, world.lead, world.case_manager):
        assert c in visible_conversations(allowed) and _access(world, allowed).can_see_conversation(c)
    for excluded in (world.nurse, world.pharmacist):
        assert not visible_conversations(excluded).exists()
        assert not visible_messages(excluded).exists()
        assert not _access(world, excluded).can_see_conversation(c)
        assert conv.unread_conversation_count(excluded) == 0
        assert not conv.conversations_for_patient(_access(world, excluded)).exists()


def test_a_sensitive_conversation_cannot_mention_an_excluded_member(world):
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    c = _start(world, world.behavioural, about=need)
    with pytest.raises(ValidationError) as exc:
        _post(world, world.behavioural, c, "@nurse1 see this")
    assert exc.value.message_dict == {
        "text": ["@nurse1 may not see this conversation, so cannot be mentioned in it."]
    }
    with pytest.raises(ValidationError):
        _post(world, world.behavioural, c, "@nursing see this")
    assert not Notification.objects.exists()


def test_a_conversation_marked_sensitive_is_hidden_like_an_item_of_that_category(world):
    c = _start(world, world.lead, sensitivity=world.behavioural_health)
    assert c in visible_conversations(world.behavioural)
    assert not visible_conversations(world.nurse).exists()


def test_a_member_cannot_file_a_conversation_in_a_category_they_may_not_see(world):
    with pytest.raises(ValidationError) as exc:
        _start(world, world.nurse, sensitivity=world.behavioural_health)
    assert exc.value.message_dict == {"sensitivity": ["Choose a category you may see."]}


def test_an_item_marked_sensitive_later_hides_its_conversation_then(world):
    act = f.ActivityFactory(care_plan=world.plan)
    c = _start(world, world.nurse, about=act)
    act.sensitivity = world.behavioural_health
    act.save()
    assert not visible_conversations(world.nurse).exists()
    assert not _access(world, world.nurse).can_see_conversation(Conversation.objects.get(pk=c.pk))
    assert c in visible_conversations(world.behavioural)


def test_a_hidden_item_cannot_be_the_subject_of_a_new_conversation(world):
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    other = f.NeedFactory(care_plan=world.other_plan)
    for item in (need, other):
        with pytest.raises(ValidationError) as exc:
            _start(world, world.nurse, about=item)
        assert exc.value.message_dict == {"about": ["No such item on this patient's record."]}


# ---------------------------------------------------------------------------
# Editing and retracting
# ---------------------------------------------------------------------------
def test_the_author_edits_within_five_minutes_and_the_earlier_text_is_kept(world):
    c = _start(world, world.nurse, text="Dose is 5 mg")
    message = c.messages.get()
    edited = conv.message_edit(
        access=_access(world, world.nurse),
        by=world.nurse,
        message=message,
        text="Dose is 50 mg",
        expected_version=1,
    )
    assert edited.text == "Dose is 50 mg" and edited.edited_at and edited.version == 2
    assert list(MessageRevision.objects.values_list("kind", "text")) == [("edit", "Dose is 5 mg")]


def test_an_edit_adding_a_mention_notifies_only_the_new_one(world):
    c = _start(world, world.nurse, text="@pharm1 please look")
    message = c.messages.get()
    conv.message_edit(
        access=_access(world, world.nurse), by=world.nurse, message=message, text="@pharm1 @lead please look"
    )
    assert len(_mentions(world.pharmacist)) == 1 and len(_mentions(world.lead)) == 1


def test_an_edit_after_five_minutes_or_by_another_member_is_refused(world):
    c = _start(world, world.nurse, text="Original")
    message = c.messages.get()
    with pytest.raises(PermissionDenied):
        conv.message_edit(access=_access(world, world.lead), by=world.lead, message=message, text="Changed")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - dt.timedelta(minutes=6))
    message.refresh_from_db()
    with pytest.raises(ValidationError) as exc:
        conv.message_edit(access=_access(world, world.nurse), by=world.nurse, message=message, text="Changed")
    assert exc.value.code == "edit_window_closed"
    message.refresh_from_db()
    assert message.text == "Original" and message.version == 1 and not MessageRevision.objects.exists()


def test_an_edit_from_an_older_version_is_refused(world):
    from careteam.concurrency import StaleVersionError

    c = _start(world, world.nurse, text="Original")
    message = c.messages.get()
    conv.message_edit(access=_access(world, world.nurse), by=world.nurse, message=message, text="Second")
    with pytest.raises(StaleVersionError):
        conv.message_edit(
            access=_access(world, world.nurse),
            by=world.nurse,
            message=message,
            text="Third",
            expected_version=1,
        )


def test_a_retracted_message_reads_retracted_and_keeps_its_original_for_the_audit(world):
    c = _start(world, world.nurse, text="Wrong patient, sorry")
    message = c.messages.get()
    with pytest.raises(PermissionDenied):
        conv.message_retract(access=_access(world, world.pharmacist), by=world.pharmacist, message=message)
    retracted = conv.message_retract(access=_access(world, world.nurse), by=world.nurse, message=message)
    assert retracted.text == "retracted" and retracted.is_retracted
    assert MessageRevision.objects.get(kind="retract").text == "Wrong patient, sorry"
    assert Message.objects.filter(pk=message.pk).exists()
    with pytest.raises(ValidationError) as exc:
        conv.message_edit(access=_access(world, world.nurse), by=world.nurse, message=retracted, text="again")
    assert exc.value.code == "already_retracted"
    assert AuditEvent.objects.filter(
        object_type="careteam.message", action="update", detail="retracted"
    ).exists()


def test_mentions_filter_lists_conversations_naming_me_or_my_discipline(world):
    named = _start(world, world.lead, subject="Named", text="@nurse1 please")
    queued = _start(world, world.lead, subject="Queue", text="@nursing please")
    _start(world, world.lead, subject="Nobody", text="no mention")
    assert set(conv.inbox(world.nurse, mentions=True)) == {named, queued}
    assert not conv.inbox(world.pharmacist, mentions=True).exists()


def test_the_demo_has_conversations_and_its_sensitive_one_is_hidden_from_the_nurse():
    from django.core.management import call_command

    from careteam.models import Huddle

    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", verbosity=0)
    # three conversations, besides the demo huddle's
    assert Conversation.objects.exclude(pk__in=Huddle.objects.values("conversation")).count() == 3
    nurse = Conversation._meta.apps.get_model("careteam", "User").objects.get(username="nurse")
    subjects = set(visible_conversations(nurse).values_list("subject", flat=True))
    assert "Blister packs before the next refill?" in subjects and "Low mood since the fall" not in subjects
    assert Notification.objects.filter(kind="conversation-mention", recipient__username="pharmacist").exists()


def test_a_conversations_url_is_its_pages_url(world):
    from django.urls import reverse

    c = conv.conversation_start(access=_access(world, world.nurse), by=world.nurse, subject="Doses")
    assert c.url == reverse(
        "conversations:detail", kwargs={"patient_id": c.patient_id, "conversation_id": c.pk}
    )
