"""Huddles: asynchronous check-ins on a patient. The case manager starts one (for a patient,
or for each of her patients with changes since their last huddle); each invited member
answers a short structured update (SBAR or I-PASS) by a deadline, posted into the
patient's conversations; a missing answer is reminded once by the reminder sweep
(careteam/reminders.py, rule `huddle-answer-due`); the case manager closes it with a
summary kept on the chart.

Who sees a huddle: the patient's current team (`careteam.permissions.access_huddle`,
`visible_huddles`). What each viewer sees of it: the changes since the last huddle read
from history through `careteam.permissions.history_rows` (sensitive items only for those
who may see them), and the answers through their conversation's own rule (an answer about
a sensitive need is posted in a conversation about that need, as hidden as the need)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .audit import audit
from .concurrency import lock_for_update
from .conversations import about_label, conversation_start, message_post
from .models import (
    CONVERSATION_ABOUT_FIELDS,
    HUDDLE_ANSWER_FIELDS,
    HUDDLE_ANSWER_MAX_LENGTH,
    HUDDLE_SUMMARY_MAX_LENGTH,
    AuditAction,
    Huddle,
    HuddleFormat,
    HuddleInvitation,
    HuddleStatus,
    NotificationKind,
    TeamMembership,
    TeamRole,
    User,
)
from .notifications import notify
from .permissions import (
    PatientAccess,
    history_rows,
    patient_access,
    restrict,
    team_member_q,
    team_members_who_may_see,
)

# a deadline at least this far ahead, and at most this far
DEADLINE_MIN = dt.timedelta(minutes=15)
DEADLINE_MAX = dt.timedelta(days=14)
# the first huddle of a patient shows the changes of this many days before it
FIRST_HUDDLE_WINDOW = dt.timedelta(days=7)
# at most this many changes on a huddle's page (newest first)
CHANGES_LIMIT = 200
# ValidationError codes the API answers with 409 (careteam.api.errors.CONFLICT_CODES)
HUDDLE_CLOSED = "huddle_closed"
ALREADY_ANSWERED = "already_answered"
HUDDLE_ALREADY_OPEN = "huddle_already_open"


def huddle_url(huddle: Huddle) -> str:
    return f"/patients/{huddle.patient_id}/huddles/{huddle.pk}/"


def _reminder_delta() -> dt.timedelta:
    return dt.timedelta(minutes=settings.HUDDLE_REMINDER_MINUTES)


# ---------------------------------------------------------------------------
# What changed since the last huddle (read from history, for one viewer)
# ---------------------------------------------------------------------------
KIND_LABELS = {
    "plan": "Care plan",
    "goal": "Goal",
    "need": "Need",
    "activity": "Activity",
    "handoff": "Handoff",
    "referral": "Referral",
}


@dataclass
class Change:
    at: dt.datetime
    kind: str  # plan, goal, need, activity, handoff, referral
    what: str  # "added", "status changed", "changed", "removed"
    label: str
    detail: str = ""
    by: str = ""
    key: str = ""  # the item as an answer's `about` names it ("need:12"); "" for none
    url: str = ""

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


_HISTORY_KINDS = (
    # (app, model, kind, status field, text field, url pattern)
    ("careplans", "CarePlan", "plan", "status", "title", "/plans/{id}/"),
    ("careplans", "Goal", "goal", "lifecycle_status", "description", "/plans/goals/{id}/"),
    ("careplans", "Need", "need", "status", "description", "/plans/needs/{id}/"),
    ("careplans", "Activity", "activity", "status", "title", "/plans/activities/{id}/"),
)
# history bookkeeping: never "what changed"
_SKIP_FIELDS = {"history_id", "history_date", "history_user", "history_type", "history_change_reason",
                "version", "id", "created_at", "updated_at"}  # fmt: skip


def _short(text, limit: int = 80) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _who(user) -> str:
    return user.display_name if user is not None else ""


def _history_changes(access: PatientAccess, spec, since: dt.datetime, until: dt.datetime) -> list[Change]:
    """One model's changes in (since, until]: each saved version compared with the one
    before it. Two queries whatever the number of changes (the versions of the items
    changed in the window, with their authors)."""
    app, model_name, kind, status_field, text_field, url = spec
    model = apps.get_model(app, model_name)
    visible = history_rows(access, model)
    changed = visible.filter(history_date__gt=since, history_date__lte=until).values("id")
    rows = list(
        visible.filter(id__in=changed, history_date__lte=until)
        .select_related("history_user")
        .order_by("id", "history_date", "history_id")
    )
    choices = dict(model._meta.get_field(status_field).choices)
    fields = [
        f.attname
        for f in model.history.model._meta.concrete_fields
        if f.attname not in _SKIP_FIELDS and f.name not in _SKIP_FIELDS
    ]
    out: list[Change] = []
    previous = None
    for row in rows:
        before = previous if previous is not None and previous.id == row.id else None
        previous = row
        if row.history_date <= since:
            continue
        change = Change(
            at=row.history_date,
            kind=kind,
            what="added",
            label=_short(getattr(row, text_field)),
            by=_who(row.history_user),
            key=f"{kind}:{row.id}" if kind != "plan" else "",
            url=url.format(id=row.id),
        )
        if row.history_type == "-":
            change.what, change.url, change.key = "removed", "", ""
        elif row.history_type == "~" and before is not None:
            old, new = getattr(before, status_field), getattr(row, status_field)
            if old != new:
                change.what = "status changed"
                change.detail = f"{choices.get(old, old)} → {choices.get(new, new)}"
            else:
                names = [
                    model.history.model._meta.get_field(name).verbose_name
                    for name in fields
                    if getattr(before, name) != getattr(row, name)
                ]
                if not names:
                    continue
                change.what = "changed"
                change.detail = ", ".join(str(n) for n in names[:4])
        elif row.history_type == "~":
            change.what = "changed"
        out.append(change)
    return out


def _handoff_changes(access: PatientAccess, since: dt.datetime, until: dt.datetime) -> list[Change]:
    """Handoffs sent, answered or completed in the window (seen by the whole team)."""
    from .models import Handoff

    window = Q(created_at__gt=since, created_at__lte=until)
    answered = Q(acknowledged_at__gt=since, acknowledged_at__lte=until)
    done = Q(completed_at__gt=since, completed_at__lte=until)
    rows = (
        Handoff.objects.filter(patient_id=access.patient.pk)
        .filter(window | answered | done)
        .select_related("from_user", "to_user", "to_discipline", "accepted_by")
    )
    out = []
    for h in rows:
        common = {"kind": "handoff", "label": _short(h.situation), "key": f"handoff:{h.pk}",
                  "url": f"/team/handoffs/{h.pk}/"}  # fmt: skip
        receiver = h.to_user.display_name if h.to_user_id else f"the {h.to_discipline} queue"
        if since < h.created_at <= until:
            out.append(Change(at=h.created_at, what="added", detail=f"to {receiver}",
                              by=_who(h.from_user), **common))  # fmt: skip
        if h.acknowledged_at and since < h.acknowledged_at <= until:
            out.append(Change(at=h.acknowledged_at, what="status changed",
                              detail=f"Requested → {h.get_status_display()}",
                              by=_who(h.accepted_by), **common))  # fmt: skip
        if h.completed_at and since < h.completed_at <= until:
            out.append(Change(at=h.completed_at, what="status changed", detail="Completed", **common))
    return out


def _referral_changes(access: PatientAccess, since: dt.datetime, until: dt.datetime) -> list[Change]:
    """Referral status changes in the window, of the referrals the viewer may see (a
    referral is as hidden as its need)."""
    Referral = apps.get_model("referrals", "Referral")
    ReferralEvent = apps.get_model("referrals", "ReferralEvent")
    visible = restrict(Referral.objects.filter(patient_id=access.patient.pk), access.user)
    rows = (
        ReferralEvent.objects.filter(referral__in=visible.values("pk"), at__gt=since, at__lte=until)
        .select_related("referral__service", "by")
        .order_by("at", "id")
    )
    choices = dict(Referral._meta.get_field("status").choices)
    out = []
    for e in rows:
        old = choices.get(e.from_status, e.from_status)
        new = choices.get(e.to_status, e.to_status)
        out.append(
            Change(
                at=e.at,
                kind="referral",
                what="added" if not e.from_status else "status changed",
                label=_short(e.referral.service.name),
                detail=f"{old} → {new}" if e.from_status else str(new),
                by=_who(e.by),
                key=f"referral:{e.referral_id}",
                url=f"/referrals/{e.referral_id}/",
            )
        )
    return out


def huddle_changes(access: PatientAccess, huddle: Huddle, *, limit: int = CHANGES_LIMIT) -> list[Change]:
    """What changed on the patient's record between the previous huddle and this one, as
    far as this viewer may see: plan items added or changed and their status changes
    (history), new needs, handoffs and referrals; newest first. A fixed number of queries."""
    return changes_between(access, since=huddle.since, until=huddle.started_at, limit=limit)


def changes_between(
    access: PatientAccess, *, since: dt.datetime, until: dt.datetime, limit: int = CHANGES_LIMIT
) -> list[Change]:
    if not access.on_team:
        return []
    changes: list[Change] = []
    for spec in _HISTORY_KINDS:
        changes.extend(_history_changes(access, spec, since, until))
    changes.extend(_handoff_changes(access, since, until))
    changes.extend(_referral_changes(access, since, until))
    changes.sort(key=lambda c: c.at, reverse=True)
    return changes[:limit]


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------
def huddles_for_patient(access: PatientAccess) -> QuerySet:
    """The patient's huddles, newest first (none unless the viewer is on the team today)."""
    if not access.on_team:
        return Huddle.objects.none()
    return Huddle.objects.filter(patient_id=access.patient.pk).select_related("started_by", "closed_by")


def previous_huddle(patient_id: int, *, before: dt.datetime | None = None) -> Huddle | None:
    qs = Huddle.objects.filter(patient_id=patient_id)
    if before is not None:
        qs = qs.filter(started_at__lt=before)
    return qs.order_by("-started_at", "-id").first()


def huddle_invitations(huddle: Huddle) -> QuerySet:
    """Its invitations with invitees and where each answer was posted (the conversation
    and its item, for the visibility rule)."""
    return (
        HuddleInvitation.objects.filter(huddle_id=huddle.pk)
        .select_related(
            "user",
            "conversation__goal",
            "conversation__need",
            "conversation__activity",
            "conversation__handoff",
            "conversation__referral__need",
        )
        .order_by("id")
    )


def invitation_rows(access: PatientAccess, huddle: Huddle) -> list[HuddleInvitation]:
    """Each invitation with `visible_answer`: whether this viewer may read the answer
    (its conversation's rule: an answer about a hidden item shows as answered only)."""
    rows = list(huddle_invitations(huddle))
    for inv in rows:
        inv.visible_answer = inv.answered and access.can_see_conversation(inv.conversation)
        inv.about = inv.conversation.about if inv.visible_answer else None
        inv.about_text = about_label(inv.about) if inv.visible_answer and inv.about is not None else ""
    return rows


def my_invitation(huddle: Huddle, user) -> HuddleInvitation | None:
    return HuddleInvitation.objects.filter(huddle_id=huddle.pk, user_id=user.pk).first()


def huddle_read(*, access: PatientAccess, by: User, huddle: Huddle, request=None) -> None:
    """Opening a huddle: audited as a read."""
    audit(user=by, action=AuditAction.VIEW, obj=huddle, patient=access.patient, request=request)


# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------
def _require_case_manager(access: PatientAccess) -> None:
    if not access.on_team:
        raise PermissionDenied("You are not on this patient's care team.")
    if not access.is_case_manager:
        raise PermissionDenied("Only the patient's case manager can start or close a huddle.")


def _clean_deadline(deadline, now: dt.datetime) -> dt.datetime:
    if deadline is None or not isinstance(deadline, dt.datetime):
        raise ValidationError({"deadline": "Give the deadline for the answers (a date and time)."})
    if timezone.is_naive(deadline):
        deadline = timezone.make_aware(deadline)
    if deadline < now + DEADLINE_MIN:
        minutes = int(DEADLINE_MIN.total_seconds() // 60)
        raise ValidationError({"deadline": f"The deadline must be at least {minutes} minutes from now."})
    if deadline > now + DEADLINE_MAX:
        raise ValidationError({"deadline": f"The deadline must be within {DEADLINE_MAX.days} days."})
    return deadline


def _invitees(access: PatientAccess, by: User, invitees) -> list[User]:
    """Current team members (default: all of them but the starter); anyone else refuses."""
    team = team_members_who_may_see(access.patient.pk)
    if invitees is None:
        people = list(team.exclude(pk=by.pk).order_by("id"))
    else:
        ids = []
        for raw in invitees:
            pk = getattr(raw, "pk", raw)
            try:
                ids.append(int(pk))
            except (TypeError, ValueError):
                raise ValidationError({"invitees": "Invite members of this patient's team."}) from None
        people = list(team.filter(pk__in=ids).order_by("id"))
        if len(people) != len(set(ids)):
            raise ValidationError({"invitees": "Invite only current members of this patient's team."})
    if not people:
        raise ValidationError({"invitees": "Invite at least one member of the team."})
    return people


@transaction.atomic
def huddle_start(
    *,
    access: PatientAccess,
    by: User,
    deadline: dt.datetime,
    format: str = HuddleFormat.SBAR,
    invitees=None,
    request=None,
) -> Huddle:
    """Start a huddle on the patient: the case manager only, one open at a time. Its
    changes are those since the previous huddle (or the last week, for the first); the
    invited members (current team members, default all) are notified; the huddle's
    conversation opens with the deadline."""
    _require_case_manager(access)
    now = timezone.now()
    errors: dict[str, str] = {}
    if format not in HuddleFormat.values:
        errors["format"] = "Choose SBAR or I-PASS."
    try:
        deadline = _clean_deadline(deadline, now)
    except ValidationError as exc:
        errors.update({k: " ".join(v) for k, v in exc.message_dict.items()})
    try:
        people = _invitees(access, by, invitees)
    except ValidationError as exc:
        errors.update({k: " ".join(v) for k, v in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    if Huddle.objects.filter(patient_id=access.patient.pk, status=HuddleStatus.OPEN).exists():
        raise ValidationError(
            "A huddle on this patient is still open: close it before starting another.",
            code=HUDDLE_ALREADY_OPEN,
        )
    last = previous_huddle(access.patient.pk)
    since = last.started_at if last is not None else now - FIRST_HUDDLE_WINDOW
    local = timezone.localtime(deadline)
    conversation = conversation_start(
        access=access,
        by=by,
        subject=f"Huddle of {timezone.localtime(now):%-d %b %Y}",
        text=f"Huddle started: each invited member posts an update here by {local:%-d %b %Y, %H:%M}.",
        request=request,
    )
    try:
        with transaction.atomic():
            huddle = Huddle.objects.create(
                patient=access.patient,
                started_by=by,
                format=format,
                since=since,
                started_at=now,
                deadline=deadline,
                conversation=conversation,
            )
    except IntegrityError:
        # a colleague's start committed between the check and this insert
        raise ValidationError(
            "A huddle on this patient is still open: close it before starting another.",
            code=HUDDLE_ALREADY_OPEN,
        ) from None
    invitations = HuddleInvitation.objects.bulk_create(
        [HuddleInvitation(huddle=huddle, user=u, invited_at=now) for u in people]
    )
    audit(
        user=by,
        action=AuditAction.CREATE,
        obj=huddle,
        patient=access.patient,
        request=request,
        detail=f"huddle, {len(people)} invited",
    )
    for inv, user in zip(invitations, people, strict=True):
        notify(
            recipient=user,
            kind=NotificationKind.HUDDLE_INVITED,
            obj=inv,
            patient_id=access.patient.pk,
            due_moment=now,
            title=f"{by.display_name} asks for your huddle update by {local:%-d %b %H:%M} ({access.patient})",
            url=huddle_url(huddle),
        )
    return huddle


def patients_due_a_huddle(by: User) -> QuerySet:
    """The patients whose case manager `by` is today, with no open huddle."""
    from patients.models import Patient

    mine = TeamMembership.objects.current().filter(user_id=by.pk, role=TeamRole.CASE_MANAGER)
    return (
        Patient.objects.filter(pk__in=mine.values("patient_id"))
        .filter(team_member_q(by, "pk"))
        .exclude(huddles__status=HuddleStatus.OPEN)
        .order_by("family_name", "given_name", "id")
    )


def huddles_start_for_caseload(
    *, by: User, deadline: dt.datetime, format: str = HuddleFormat.SBAR, request=None
) -> list[Huddle]:
    """Start a huddle on each of `by`'s patients (as their case manager) that has no open
    huddle and changes since its last one; each in its own transaction, so one patient's
    refusal (nobody else on the team) does not stop the others."""
    _clean_deadline(deadline, timezone.now())
    if format not in HuddleFormat.values:
        raise ValidationError({"format": "Choose SBAR or I-PASS."})
    started = []
    now = timezone.now()
    for patient in patients_due_a_huddle(by):
        access = patient_access(by, patient)
        if not access.is_case_manager:
            continue
        last = previous_huddle(patient.pk)
        since = last.started_at if last is not None else now - FIRST_HUDDLE_WINDOW
        if not changes_between(access, since=since, until=now, limit=1):
            continue
        try:
            started.append(
                huddle_start(access=access, by=by, deadline=deadline, format=format, request=request)
            )
        except ValidationError:
            continue
    return started


def _clean_answer(huddle: Huddle, answer: dict) -> dict[str, str]:
    labels = huddle.labels()
    cleaned, errors = {}, {}
    for name in HUDDLE_ANSWER_FIELDS:
        value = answer.get(name) or ""
        if not isinstance(value, str):
            errors[name] = "Write text."
            continue
        value = value.strip()
        if "\x00" in value:
            errors[name] = "The text contains a character that cannot be stored."
        elif len(value) > HUDDLE_ANSWER_MAX_LENGTH:
            errors[name] = f"At most {HUDDLE_ANSWER_MAX_LENGTH} characters (this has {len(value)})."
        cleaned[name] = value
    if not errors and not cleaned.get("news"):
        errors["news"] = f"Write the first part ({labels['news']})."
    if errors:
        raise ValidationError(errors)
    return cleaned


def answer_text(huddle: Huddle, parts: dict[str, str]) -> str:
    """The message an answer is posted as: each part under its format's label."""
    labels = huddle.labels()
    lines = [f"Huddle update ({huddle.get_format_display()})"]
    for name in HUDDLE_ANSWER_FIELDS:
        if parts.get(name):
            lines.append(f"{labels[name]}: {parts[name]}")
    return "\n".join(lines)


def _item_conversation(access: PatientAccess, by: User, huddle: Huddle, item):
    """The huddle's conversation about `item` (started on the first answer about it)."""
    field = item._meta.model_name
    if field not in CONVERSATION_ABOUT_FIELDS:
        raise ValidationError({"about": "No such item on this patient's record."})
    found = (
        HuddleInvitation.objects.filter(huddle_id=huddle.pk, **{f"conversation__{field}": item})
        .values_list("conversation", flat=True)
        .first()
    )
    if found is not None:
        return apps.get_model("careteam", "Conversation").objects.get(pk=found)
    subject = f"{huddle.conversation.subject}: {about_label(item)}"
    return conversation_start(access=access, by=by, subject=subject[:200], about=item)


@transaction.atomic
def huddle_answer(
    *, access: PatientAccess, by: User, huddle: Huddle, answer: dict, about=None, request=None
) -> HuddleInvitation:
    """An invited member's update, once, while the huddle is open (after the deadline it
    is still taken, late). Posted into the huddle's conversation, or its conversation about
    `about` (an item the member may see): whoever may not see that item sees neither."""
    if not access.on_team:
        raise PermissionDenied("You are not on this patient's care team.")
    if huddle.patient_id != access.patient.pk:
        raise ValidationError("No such huddle.")
    invitation = (
        HuddleInvitation.objects.select_for_update().filter(huddle_id=huddle.pk, user_id=by.pk).first()
    )
    if invitation is None:
        raise PermissionDenied("You were not invited to this huddle.")
    parts = _clean_answer(huddle, answer)
    status = Huddle.objects.filter(pk=huddle.pk).values_list("status", flat=True).first()
    if status != HuddleStatus.OPEN:
        raise ValidationError("This huddle is closed; post in its conversation instead.", code=HUDDLE_CLOSED)
    if invitation.answered:
        raise ValidationError(
            "You have answered this huddle; add to it in its conversation.", code=ALREADY_ANSWERED
        )
    conversation = huddle.conversation if about is None else _item_conversation(access, by, huddle, about)
    message = message_post(
        access=access, by=by, conversation=conversation, text=answer_text(huddle, parts), request=request
    )
    for name, value in parts.items():
        setattr(invitation, name, value)
    invitation.answered_at = timezone.now()
    invitation.conversation, invitation.message = conversation, message
    invitation.save(update_fields=[*HUDDLE_ANSWER_FIELDS, "answered_at", "conversation", "message"])
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=invitation,
        patient=access.patient,
        request=request,
        detail="huddle answered",
    )
    return invitation


@transaction.atomic
def huddle_close(
    *,
    access: PatientAccess,
    by: User,
    huddle: Huddle,
    summary: str,
    expected_version: int | None = None,
    request=None,
) -> Huddle:
    """The case manager closes the huddle with a summary: kept on the chart (the
    patient's huddles) and posted in the huddle's conversation. Missing answers are no
    longer reminded."""
    _require_case_manager(access)
    summary = (summary or "").strip()
    if not summary:
        raise ValidationError({"summary": "Write the summary of the huddle."})
    if len(summary) > HUDDLE_SUMMARY_MAX_LENGTH:
        raise ValidationError({"summary": f"A summary is at most {HUDDLE_SUMMARY_MAX_LENGTH} characters."})
    if "\x00" in summary:
        raise ValidationError({"summary": "The text contains a character that cannot be stored."})
    fresh = cast(Huddle, lock_for_update(huddle, expected_version))
    if fresh.status != HuddleStatus.OPEN:
        raise ValidationError("This huddle is already closed.", code=HUDDLE_CLOSED)
    message_post(
        access=access,
        by=by,
        conversation=huddle.conversation,
        text=f"Huddle closed. Summary:\n{summary}",
        request=request,
    )
    fresh.status, fresh.summary = HuddleStatus.CLOSED, summary
    fresh.closed_at, fresh.closed_by, fresh.version = timezone.now(), by, fresh.version + 1
    fresh.save(update_fields=["status", "summary", "closed_at", "closed_by", "version"])
    fresh.patient, fresh.conversation = huddle.patient, huddle.conversation
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="huddle closed",
    )
    return fresh
