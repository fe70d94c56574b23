"""Conversations on a patient: start one (about a plan item or the patient), post, edit
for a few minutes, retract, @mention team members or a discipline's queue, read state;
and the reads the chart, the inbox and the nav need.

Who may see a conversation is decided in `careteam.permissions` (`visible_conversations`,
`PatientAccess.can_see_conversation`, `conversation_audience`): the patient's team (and
read-only emergency access), less whoever may not see its category or its item's."""

from __future__ import annotations

import re

from django.apps import apps
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import (
    Exists,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
)
from django.db.models.functions import Lower
from django.utils import timezone

from .audit import audit
from .concurrency import lock_for_update
from .cover import receivers_for
from .models import (
    CONVERSATION_ABOUT_FIELDS,
    CONVERSATION_SUBJECT_MAX_LENGTH,
    MESSAGE_EDIT_WINDOW,
    MESSAGE_MAX_LENGTH,
    RETRACTED_TEXT,
    AuditAction,
    Conversation,
    ConversationRead,
    Discipline,
    Message,
    MessageMention,
    MessageRevision,
    MessageRevisionKind,
    TeamMembership,
    User,
)
from .notifications import notify_conversation_mention
from .permissions import (
    PatientAccess,
    conversation_audience,
    conversation_rule_item,
    team_members_who_may_see,
    visible_conversations,
)
from .prepared import PreparedQuery

# a handle: not inside a word or an email address; a full stop after it ends the sentence
MENTION_RE = re.compile(r"(?<![A-Za-z0-9_.@-])@([A-Za-z0-9_.-]+)")
MAX_MENTIONS = 20
# ValidationError codes the API answers with 409 (careteam.api.errors.CONFLICT_CODES)
EDIT_WINDOW_CLOSED = "edit_window_closed"
ALREADY_RETRACTED = "already_retracted"


# ---------------------------------------------------------------------------
# Text and mentions
# ---------------------------------------------------------------------------
def mentions_in(text: str) -> list[str]:
    """The @handles a message names, each once (compared ignoring case), in order."""
    seen: dict[str, str] = {}
    for match in MENTION_RE.finditer(text or ""):
        handle = match.group(1).rstrip(".-")
        if handle and handle.lower() not in seen:
            seen[handle.lower()] = handle
    return list(seen.values())


def _clean_text(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "Write the message."})
    if len(text) > MESSAGE_MAX_LENGTH:
        raise ValidationError(
            {"text": f"A message is at most {MESSAGE_MAX_LENGTH} characters (this one has {len(text)})."}
        )
    if "\x00" in text:
        raise ValidationError({"text": "The message contains a character that cannot be stored."})
    return text


def _resolve_mentions(conversation: Conversation, text: str) -> tuple[list[User], list[Discipline]]:
    """The team members and discipline queues a message names. Anyone else (no such
    person, not on this patient's team, or not allowed to see this conversation) refuses
    the whole message, with one line per handle."""
    handles = mentions_in(text)
    if not handles:
        return [], []
    if len(handles) > MAX_MENTIONS:
        raise ValidationError(
            {"text": f"Mention at most {MAX_MENTIONS} people or disciplines in one message."}
        )
    lowered = [h.lower() for h in handles]
    patient_id = conversation.patient_id
    audience = conversation_audience(conversation)
    users = {
        u.username.lower(): u for u in audience.annotate(handle=Lower("username")).filter(handle__in=lowered)
    }
    on_team = set(
        team_members_who_may_see(patient_id)
        .annotate(handle=Lower("username"))
        .filter(handle__in=lowered)
        .values_list("handle", flat=True)
    )
    # a discipline's queue: someone of it on this team today who may see the conversation
    queues = {
        d.code.lower(): d
        for d in Discipline.objects.filter(code__in=lowered).filter(
            Exists(
                TeamMembership.objects.current().filter(
                    patient_id=patient_id,
                    discipline_id=OuterRef("pk"),
                    user_id__in=audience.values("pk"),
                )
            )
        )
    }
    known_codes = set(Discipline.objects.filter(code__in=lowered).values_list("code", flat=True))
    mentioned_users, mentioned_queues, errors = [], [], []
    for handle, key in zip(handles, lowered, strict=True):
        if key in users:
            mentioned_users.append(users[key])
        elif key in on_team:
            errors.append(f"@{handle} may not see this conversation, so cannot be mentioned in it.")
        elif key in queues:
            mentioned_queues.append(queues[key])
        elif key in known_codes:
            errors.append(
                f"@{handle}: nobody of that discipline on this patient's team may see this conversation."
            )
        else:
            errors.append(f"@{handle} is not on this patient's team.")
    if errors:
        raise ValidationError({"text": errors})
    return mentioned_users, mentioned_queues


def _mention_recipients(conversation: Conversation, users, queues) -> QuerySet:
    """Exactly the people mentioned: by name (or, while one is away, the colleague
    covering them: careteam.cover), or holding a mentioned discipline on this team today,
    and who may see the conversation."""
    by_queue = TeamMembership.objects.current().filter(
        patient_id=conversation.patient_id, discipline__in=[d.pk for d in queues]
    )
    named = receivers_for([u.pk for u in users])
    return conversation_audience(conversation).filter(
        Q(pk__in=sorted({named[u.pk] for u in users})) | Q(pk__in=by_queue.values("user_id"))
    )


def _save_mentions(message: Message, users, queues) -> None:
    MessageMention.objects.bulk_create(
        [MessageMention(message=message, user=u) for u in users]
        + [MessageMention(message=message, discipline=d) for d in queues]
    )


def _notify_mentions(message: Message, users, queues, *, already: set[int] = frozenset()) -> int:
    if not users and not queues:
        return 0
    conversation = message.conversation
    recipients = _mention_recipients(conversation, users, queues).exclude(pk=message.author_id)
    if already:
        recipients = recipients.exclude(pk__in=already)
    return notify_conversation_mention(
        message=message,
        recipients=list(recipients),
        sensitivity_id=conversation_sensitivity_id(conversation),
        url=message_url(message),
    )


# ---------------------------------------------------------------------------
# Labels and links
# ---------------------------------------------------------------------------
def conversation_url(conversation: Conversation) -> str:
    return conversation.url


def message_url(message: Message) -> str:
    return f"/patients/{message.conversation.patient_id}/conversations/{message.conversation_id}/#message-{message.pk}"


def conversation_sensitivity_id(conversation: Conversation) -> int | None:
    """The category a notification about it is filed in: its own, else its item's."""
    if conversation.sensitivity_id is not None:
        return conversation.sensitivity_id
    item = conversation_rule_item(conversation)
    return getattr(item, "sensitivity_id", None)


def about_label(item) -> str:
    """How a page names the item a conversation is about."""
    if item is None:
        return "the patient"
    kind = item._meta.verbose_name
    text = (
        getattr(item, "title", "")
        or getattr(item, "description", "")
        or getattr(item, "situation", "")
        or str(item)
    )
    text = " ".join(str(text).split())
    return f"{kind} “{text[:60]}”"


def _about_item(access: PatientAccess, about) -> tuple[str, object] | tuple[None, None]:
    """Which field an item goes in, after checking it is this patient's and visible."""
    if about is None:
        return None, None
    label = about._meta.label_lower
    field = {
        "careplans.goal": "goal",
        "careplans.need": "need",
        "careplans.activity": "activity",
        "careteam.handoff": "handoff",
        "referrals.referral": "referral",
    }.get(label)
    if field is None:
        raise ValidationError(
            {"about": "A conversation is about a goal, need, activity, handoff or referral."}
        )
    patient_id = about.patient_id if field in ("handoff", "referral") else about.care_plan.patient_id
    if patient_id != access.patient.pk:
        raise ValidationError({"about": "No such item on this patient's record."})
    probe = Conversation(patient=access.patient, **{field: about})
    if not access.can_see_conversation(probe):
        raise ValidationError({"about": "No such item on this patient's record."})
    return field, about


ABOUT_MODELS = {
    "goal": ("careplans", "Goal", "care_plan__patient_id"),
    "need": ("careplans", "Need", "care_plan__patient_id"),
    "activity": ("careplans", "Activity", "care_plan__patient_id"),
    "handoff": ("careteam", "Handoff", "patient_id"),
    "referral": ("referrals", "Referral", "patient_id"),
}


def about_key(item) -> str:
    """An item as a form or a link names it: "need:12" ("" for the patient)."""
    if item is None:
        return ""
    return f"{item._meta.model_name}:{item.pk}"


def about_from_key(access: PatientAccess, key: str | None):
    """The item "need:12" names on this patient's record, if the user may see it; a
    ValidationError (one message for missing and hidden) otherwise. "" is the patient."""
    key = (key or "").strip()
    if not key:
        return None
    kind, _, raw = key.partition(":")
    if kind not in ABOUT_MODELS or not raw.isdigit() or len(raw) > 18:
        raise ValidationError({"about": "No such item on this patient's record."})
    app, model_name, patient_path = ABOUT_MODELS[kind]
    model = apps.get_model(app, model_name)
    item = model._default_manager.filter(pk=int(raw), **{patient_path: access.patient.pk}).first()
    if item is None:
        raise ValidationError({"about": "No such item on this patient's record."})
    _about_item(access, item)  # hidden: the same answer as missing
    return item


# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------
@transaction.atomic
def conversation_start(
    *,
    access: PatientAccess,
    by: User,
    subject: str = "",
    about=None,
    sensitivity=None,
    text: str = "",
    request=None,
) -> Conversation:
    """Start a conversation on the patient (about one visible item, or none), filed in
    the item's category or the one chosen (`sensitivity`, which the starter must be
    allowed to see); with `text`, its first message (mentions checked as in `message_post`)."""
    access.require_edit()
    field, item = _about_item(access, about)
    subject = " ".join((subject or "").split())
    if not subject and item is not None:
        subject = about_label(item)[:CONVERSATION_SUBJECT_MAX_LENGTH]
    errors: dict[str, str] = {}
    if not subject:
        errors["subject"] = "Give the conversation a subject."
    elif len(subject) > CONVERSATION_SUBJECT_MAX_LENGTH:
        errors["subject"] = f"A subject is at most {CONVERSATION_SUBJECT_MAX_LENGTH} characters."
    conversation = Conversation(patient=access.patient, subject=subject, started_by=by)
    if field is not None:
        setattr(conversation, field, item)
    item_category = getattr(conversation_rule_item(conversation), "sensitivity_id", None)
    chosen = getattr(sensitivity, "pk", sensitivity)
    if chosen is not None and not access.can_see_sensitivity(int(chosen)):
        errors["sensitivity"] = "Choose a category you may see."
    elif chosen is not None and item_category is not None and int(chosen) != item_category:
        errors["sensitivity"] = "A conversation about a sensitive item is filed in the item's category."
    if text:
        try:
            _clean_text(text)
        except ValidationError as exc:
            errors.update({k: " ".join(v) for k, v in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    conversation.sensitivity_id = item_category if item_category is not None else chosen
    conversation.save()
    audit(user=by, action=AuditAction.CREATE, obj=conversation, patient=access.patient, request=request)
    if text:
        message_post(access=access, by=by, conversation=conversation, text=text, request=request)
    return conversation


@transaction.atomic
def message_post(
    *,
    access: PatientAccess,
    by: User,
    conversation: Conversation,
    text: str,
    to_patient: bool = False,
    request=None,
) -> Message:
    """Post a plain-text message. Mentions of anyone who is not on the team and allowed to
    see the conversation refuse it; those mentioned (by name or discipline) are notified.
    `to_patient` (the patient's own thread with the team only) shows the reply in the
    portal."""
    access.require_edit()
    if not access.can_see_conversation(conversation):
        raise ValidationError("No such conversation.")
    text = _clean_text(text)
    if to_patient and not conversation.with_patient:
        raise ValidationError({"to_patient": "Only a reply in the patient's own thread goes to the patient."})
    users, queues = _resolve_mentions(conversation, text)
    now = timezone.now()
    message = Message.objects.create(
        conversation=conversation, author=by, text=text, created_at=now, to_patient=to_patient
    )
    # the lists' order and everyone's unread state come from this row
    Conversation.objects.filter(pk=conversation.pk).update(
        last_message=message, last_message_at=now, messages_changed_at=now
    )
    conversation.last_message, conversation.last_message_at = message, now
    conversation.messages_changed_at = now
    _save_mentions(message, users, queues)
    _read_to(conversation=conversation, user=by, message_id=message.pk)
    audit(user=by, action=AuditAction.CREATE, obj=message, patient=access.patient, request=request)
    _notify_mentions(message, users, queues)
    return message


def _editable(access: PatientAccess, by: User, message: Message, expected_version: int | None) -> Message:
    access.require_edit()
    if not access.can_see_conversation(message.conversation):
        raise ValidationError("No such message.")
    if message.author_id != by.pk:
        raise PermissionDenied("Only the author can change a message.")
    fresh = lock_for_update(message, expected_version)
    fresh.conversation = message.conversation
    if fresh.is_retracted:
        raise ValidationError("This message was retracted.", code=ALREADY_RETRACTED)
    return fresh


@transaction.atomic
def message_edit(
    *,
    access: PatientAccess,
    by: User,
    message: Message,
    text: str,
    expected_version: int | None = None,
    request=None,
) -> Message:
    """The author corrects a message within `MESSAGE_EDIT_WINDOW` of posting it; the
    earlier text is kept as a revision. New mentions are notified."""
    fresh = _editable(access, by, message, expected_version)
    if timezone.now() > fresh.created_at + MESSAGE_EDIT_WINDOW:
        minutes = int(MESSAGE_EDIT_WINDOW.total_seconds() // 60)
        raise ValidationError(
            f"A message can be edited for {minutes} minutes after it was posted; retract it or post a correction.",
            code=EDIT_WINDOW_CLOSED,
        )
    text = _clean_text(text)
    if text == fresh.text:
        return fresh
    users, queues = _resolve_mentions(fresh.conversation, text)
    before = set(
        _mention_recipients(fresh.conversation, *_current_mentions(fresh)).values_list("pk", flat=True)
    )
    now = timezone.now()
    MessageRevision.objects.create(
        message=fresh, kind=MessageRevisionKind.EDIT, text=fresh.text, replaced_at=now
    )
    fresh.text, fresh.edited_at, fresh.version = text, now, fresh.version + 1
    fresh.save(update_fields=["text", "edited_at", "version"])
    Conversation.objects.filter(pk=fresh.conversation_id).update(messages_changed_at=now)
    fresh.mentions.all().delete()
    _save_mentions(fresh, users, queues)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="edited",
    )
    _notify_mentions(fresh, users, queues, already=before)
    return fresh


def _current_mentions(message: Message) -> tuple[list[User], list[Discipline]]:
    rows = list(message.mentions.select_related("user", "discipline"))
    return [m.user for m in rows if m.user_id], [m.discipline for m in rows if m.discipline_id]


@transaction.atomic
def message_retract(
    *,
    access: PatientAccess,
    by: User,
    message: Message,
    expected_version: int | None = None,
    request=None,
) -> Message:
    """The author withdraws a message: its text reads "retracted" from now on, the
    original is kept as a revision for the audit, and the row stays."""
    fresh = _editable(access, by, message, expected_version)
    now = timezone.now()
    MessageRevision.objects.create(
        message=fresh, kind=MessageRevisionKind.RETRACT, text=fresh.text, replaced_at=now
    )
    fresh.text, fresh.retracted_at, fresh.version = RETRACTED_TEXT, now, fresh.version + 1
    fresh.save(update_fields=["text", "retracted_at", "version"])
    Conversation.objects.filter(pk=fresh.conversation_id).update(messages_changed_at=now)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="retracted",
    )
    return fresh


def message_for_work(access: PatientAccess, message_id) -> Message:
    """A message on this patient's record the user may see, to make work from (the
    activity or handoff form's `from_message`); ValidationError otherwise."""
    try:
        pk = int(message_id)
    except (TypeError, ValueError):
        pk = 0
    message = (
        Message.objects.select_related("conversation")
        .filter(pk=pk, conversation__patient_id=access.patient.pk, retracted_at__isnull=True)
        .first()
    )
    if message is None or not access.can_see_conversation(message.conversation):
        raise ValidationError({"from_message": "No such message on this patient's record."})
    return message


@transaction.atomic
def message_link_work(
    *, access: PatientAccess, by: User, message: Message, activity=None, handoff=None, request=None
) -> Message:
    """Record the activity or handoff made from a message ("make this an activity", "hand
    this off"): the message links to it and it lists the message (`from_messages`)."""
    access.require_edit()
    fields = []
    if activity is not None:
        message.activity = activity
        fields.append("activity")
    if handoff is not None:
        message.handoff = handoff
        fields.append("handoff")
    if fields:
        Message.objects.filter(pk=message.pk).update(**{name: getattr(message, name) for name in fields})
        audit(
            user=by,
            action=AuditAction.UPDATE,
            obj=message,
            patient=access.patient,
            request=request,
            detail="made into " + " and ".join(fields),
        )
    return message


def work_source_messages(access: PatientAccess, *, activity=None, handoff=None) -> list[Message]:
    """The messages an activity or handoff was made from, that the user may see (its
    page links back to them)."""
    qs = Message.objects.select_related("conversation").filter(conversation__patient_id=access.patient.pk)
    if activity is not None:
        qs = qs.filter(activity=activity)
    elif handoff is not None:
        qs = qs.filter(handoff=handoff)
    else:
        return []
    return list(qs.filter(access.conversation_q("conversation__")).order_by("id")[:10])


def _read_to(*, conversation: Conversation, user: User, message_id: int | None) -> None:
    if message_id is None:
        return
    now = timezone.now()
    # read before (the usual case): one UPDATE; the upsert below is a transaction of its
    # own (BEGIN, INSERT ... ON CONFLICT, COMMIT) and stays for the first read
    if ConversationRead.objects.filter(user_id=user.pk, conversation_id=conversation.pk).update(
        last_read_message_id=message_id, read_at=now
    ):
        return
    ConversationRead.objects.bulk_create(
        [
            ConversationRead(
                conversation_id=conversation.pk, user_id=user.pk, last_read_message_id=message_id, read_at=now
            )
        ],
        update_conflicts=True,
        unique_fields=["user", "conversation"],
        update_fields=["last_read_message", "read_at"],
    )


def conversation_mark_read(*, access: PatientAccess, by: User, conversation: Conversation) -> None:
    """`by` has read the conversation up to its newest message (emergency access readers
    too: it is their own state, not the record)."""
    if not access.can_see_conversation(conversation):
        return
    _read_to(conversation=conversation, user=by, message_id=conversation.last_message_id)


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------
def unread_q(user) -> Q:
    """Conversations with a message newer than what `user` has read."""
    read = ConversationRead.objects.filter(
        user_id=user.pk, conversation_id=OuterRef("pk"), last_read_message_id__gte=OuterRef("last_message_id")
    )
    return Q(last_message__isnull=False) & ~Q(Exists(read))


def mentions_q(user) -> Q:
    """Conversations with a message naming `user`, or a discipline they hold on that
    patient's team today."""
    my_queues = TeamMembership.objects.current().filter(
        user_id=user.pk, patient_id=OuterRef(OuterRef("patient_id"))
    )
    named = MessageMention.objects.filter(message__conversation_id=OuterRef("pk")).filter(
        Q(user_id=user.pk) | Q(discipline_id__in=my_queues.values("discipline_id"))
    )
    return Q(Exists(named))


def _with_unread(qs: QuerySet, user) -> QuerySet:
    read = ConversationRead.objects.filter(
        user_id=user.pk, conversation_id=OuterRef("pk"), last_read_message_id__gte=OuterRef("last_message_id")
    )
    return qs.annotate(is_read=Exists(read))


def conversations_for_patient(access: PatientAccess) -> QuerySet:
    """The patient's conversations the user may see, newest first, with `is_read`."""
    qs = Conversation.objects.filter(patient_id=access.patient.pk).filter(access.conversation_q())
    return (
        _with_unread(qs, access.user)
        # the list names the kind of item only (its id columns): no joins to the items
        .select_related("last_message__author")
        .order_by("-last_message_at", "-id")
    )


def inbox(user, *, unread: bool = False, mentions: bool = False, about: str = "") -> QuerySet:
    """Conversations across the patients on whose team `user` is (emergency access
    excluded), newest first, with `is_read`. `about`: an item kind, "patient" for the
    conversations about the patient in general."""
    qs = visible_conversations(user).filter(
        patient_id__in=TeamMembership.objects.current().filter(user_id=user.pk).values("patient_id")
    )
    if unread:
        qs = qs.filter(unread_q(user))
    if mentions:
        qs = qs.filter(mentions_q(user))
    if about == "patient":
        qs = qs.filter(**{f"{name}__isnull": True for name in CONVERSATION_ABOUT_FIELDS})
    elif about in CONVERSATION_ABOUT_FIELDS:
        qs = qs.filter(**{f"{about}__isnull": False})
    return (
        _with_unread(qs, user)
        .select_related("patient", "last_message__author")
        .order_by("-last_message_at", "-id")
    )


UNREAD_COUNT_LIMIT = 99
INBOX_PAGE = 50


def _inbox_page_query(unread: bool, mentions: bool, about: str) -> PreparedQuery:
    return PreparedQuery(
        lambda user: inbox(user, unread=unread, mentions=mentions, about=about).values_list("pk", "is_read")[
            :INBOX_PAGE
        ]
    )


# The inbox's visibility rule is a deep tree of EXISTS that takes Django longer to build
# than PostgreSQL to run; each filter combination's SQL is built once per process.
INBOX_PAGES = {
    (unread, mentions, about): _inbox_page_query(unread, mentions, about)
    for unread in (False, True)
    for mentions in (False, True)
    for about in ("", "patient", *CONVERSATION_ABOUT_FIELDS)
}
UNREAD_CONVERSATIONS = PreparedQuery(
    lambda user: inbox(user, unread=True).order_by().values_list("pk")[: UNREAD_COUNT_LIMIT + 1]
)


def inbox_page(user, *, unread: bool = False, mentions: bool = False, about: str = "") -> list[Conversation]:
    """The first INBOX_PAGE rows of `inbox`, newest first, each with `is_read`: the ids
    from the prepared query, the rows by id."""
    rows = INBOX_PAGES[(unread, mentions, about)].fetch(getattr(user, "_wrapped", user))
    loaded = Conversation.objects.select_related("patient", "last_message__author").in_bulk(
        [r.pk for r in rows]
    )
    page = []
    for row in rows:
        if (conversation := loaded.get(row.pk)) is not None:
            conversation.is_read = row.is_read
            page.append(conversation)
    return page


def unread_conversation_count(user) -> int:
    """The number in the nav: unread conversations the user may see, counted up to
    UNREAD_COUNT_LIMIT + 1 (shown as "99+"), in one query built once per process."""
    return UNREAD_CONVERSATIONS.count(getattr(user, "_wrapped", user))


def conversation_messages(conversation: Conversation) -> QuerySet:
    """Its messages, oldest first, with authors, mentions and the work made from them
    (the activity made from a message follows the activity's own rule in the template's
    caller: pass `access.visible`)."""
    return (
        Message.objects.filter(conversation_id=conversation.pk)
        .select_related("author", "activity")
        .prefetch_related(
            Prefetch("mentions", queryset=MessageMention.objects.select_related("user", "discipline")),
        )
        .order_by("created_at", "id")
    )


def conversation_read(*, access: PatientAccess, by: User, conversation: Conversation, request=None) -> None:
    """Opening a conversation: audited as a read and marked read for `by`."""
    audit(user=by, action=AuditAction.VIEW, obj=conversation, patient=access.patient, request=request)
    conversation_mark_read(access=access, by=by, conversation=conversation)
