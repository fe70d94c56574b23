"""Writes of the living care plan. Each checks the status machine and the version the
caller read, saves with history (who and when) and writes an audit event."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Field, Model
from django.utils import timezone

from careteam.audit import audit
from careteam.concurrency import M, apply_changes, lock_for_update, save_versioned
from careteam.history import history_by
from careteam.models import AuditAction, User
from careteam.notifications import notify_note_added, notify_proposal_decided
from careteam.permissions import (
    EMERGENCY_ACCESS_READ_ONLY,
    PatientAccess,
    team_members_who_may_see,
    team_members_who_may_see_item,
)
from careteam.statemachine import check_initial, check_transition

from . import selectors
from .models import (
    ACTIVITY_INITIAL_STATUSES,
    ACTIVITY_TRANSITIONS,
    CAREPLAN_INITIAL_STATUSES,
    CAREPLAN_TRANSITIONS,
    GOAL_INITIAL_STATUSES,
    GOAL_OUTCOME_ACHIEVEMENTS,
    GOAL_TRANSITIONS,
    NEED_INITIAL_STATUSES,
    NEED_TRANSITIONS,
    NOTE_TRANSITIONS,
    STATUS_REASON_MAX_LENGTH,
    STATUSES_NEEDING_REASON,
    Activity,
    CarePlan,
    CarePlanStatus,
    Goal,
    Need,
    Note,
    NoteKind,
    NoteStatus,
)

# the status field and its machine, per plan-item model
STATUS_MACHINES: dict[type[Model], tuple[str, dict]] = {
    CarePlan: ("status", CAREPLAN_TRANSITIONS),
    Goal: ("lifecycle_status", GOAL_TRANSITIONS),
    Need: ("status", NEED_TRANSITIONS),
    Activity: ("status", ACTIVITY_TRANSITIONS),
}
# fields a client may change per model (status goes through the machine)
EDITABLE_FIELDS: dict[type[Model], tuple[str, ...]] = {
    CarePlan: (
        "title",
        "description",
        "intent",
        "period_start",
        "period_end",
        "review_due",
        "status",
        "status_reason",
    ),
    Goal: (
        "description",
        "expressed_by",
        "priority",
        "owner_discipline",
        "target_measure",
        "target_value",
        "target_due",
        "lifecycle_status",
        "achievement_status",
        "status_reason",
        "sensitivity",
    ),
    Need: ("domain", "category", "description", "is_barrier", "status", "status_reason", "sensitivity"),
    Activity: (
        "title",
        "description",
        "owner_discipline",
        "assigned_to",
        "status",
        "status_reason",
        "due_date",
        "sensitivity",
        "for_patient",
    ),
}


def _check_reason(item: Model, status_field: str, changes: dict[str, Any]) -> None:
    """Entering an item in error or cancelling it says why: the reason is stored with the
    item and shown in its history."""
    new = changes[status_field]
    if new == getattr(item, status_field) or new not in STATUSES_NEEDING_REASON:
        return
    reason = (changes.get("status_reason") or "").strip()
    if not reason:
        field = type(item)._meta.get_field(status_field)
        choices = field.choices if isinstance(field, Field) else None
        label = dict(choices or ()).get(new, new)
        raise ValidationError({"status_reason": f"Say why this is changed to “{label}”."})
    changes["status_reason"] = reason


def _full_clean(instance: Model, exclude: list[str] | None = None) -> None:
    instance.full_clean(exclude=exclude, validate_constraints=False)


def _check_assignee(access: PatientAccess, activity: Activity) -> None:
    from careteam.models import TeamMembership

    if activity.assigned_to_id is None:
        return
    if (
        not TeamMembership.objects.current()
        .filter(patient=access.patient, user_id=activity.assigned_to_id)
        .exists()
    ):
        raise ValidationError({"assigned_to": "The assignee must be on this patient's care team."})


def _check_owner(access: PatientAccess, item: Model) -> None:
    """The owner and assignee rule of the permissions module (`owner_problem`)."""
    problem = access.owner_problem(item)
    if problem:
        raise ValidationError(problem)


def _check_sensitivity_allowed(access: PatientAccess, instance: Model) -> None:
    sid = getattr(instance, "sensitivity_id", None)
    if sid is not None and not access.can_see_sensitivity(sid):
        raise ValidationError(
            {"sensitivity": "You cannot file items in a category you are not allowed to see."}
        )


# ---------------------------------------------------------------------------
# Care plans
# ---------------------------------------------------------------------------
@transaction.atomic
def careplan_create(
    *,
    access: PatientAccess,
    by: User,
    title: str,
    description: str = "",
    status: str = CarePlanStatus.DRAFT,
    intent: str = "plan",
    period_start: dt.date | None = None,
    period_end: dt.date | None = None,
    review_due: dt.date | None = None,
    fhir: dict | None = None,
    imported: bool = False,
    request=None,
) -> CarePlan:
    """A new plan starts draft or active; an `imported` one (FHIR import of another
    system's record) keeps the status its source gave it, the one-active rule included."""
    access.require_edit()
    plan = CarePlan(
        patient=access.patient,
        title=title,
        description=description,
        status=status,
        intent=intent,
        review_due=review_due,
        period_end=period_end,
        author=by,
        fhir=fhir or {},
    )
    if period_start:
        plan.period_start = period_start
    _full_clean(plan, exclude=["patient", "author"])
    if not imported:
        check_initial(CAREPLAN_INITIAL_STATUSES, plan.status, what="care plan")
    if plan.period_end and plan.period_end < plan.period_start:
        raise ValidationError({"period_end": "The plan cannot end before it starts."})
    if (
        status == CarePlanStatus.ACTIVE
        and CarePlan.objects.filter(patient=access.patient, status="active").exists()
    ):
        raise ValidationError(
            {"status": "This patient already has an active care plan."}, code="business_rule"
        )
    history_by(plan, by)
    plan.save()
    audit(user=by, action=AuditAction.CREATE, obj=plan, patient=access.patient, request=request)
    return plan


# ---------------------------------------------------------------------------
# Plan items
# ---------------------------------------------------------------------------
@transaction.atomic
def goal_create(
    *, access: PatientAccess, plan: CarePlan, by: User, imported: bool = False, request=None, **fields: Any
) -> Goal:
    """`imported`: another system's goal keeps its lifecycle and achievement status."""
    access.require_edit()
    goal = Goal(care_plan=plan, created_by=by, **fields)
    _full_clean(goal, exclude=["care_plan", "created_by"])
    _check_sensitivity_allowed(access, goal)
    _check_owner(access, goal)
    if not imported:
        check_initial(GOAL_INITIAL_STATUSES, goal.lifecycle_status, label="lifecycle_status", what="goal")
    if goal.achievement_status in GOAL_OUTCOME_ACHIEVEMENTS and not imported:
        raise ValidationError(
            {
                "achievement_status": f"A new goal cannot start as '{goal.achievement_status}': record "
                "the outcome by changing the goal once it exists."
            },
            code="illegal_initial_status",
        )
    history_by(goal, by)
    goal.save()
    audit(user=by, action=AuditAction.CREATE, obj=goal, patient=access.patient, request=request)
    return goal


@transaction.atomic
def need_create(
    *, access: PatientAccess, plan: CarePlan, by: User, goals=(), request=None, **fields: Any
) -> Need:
    access.require_edit()
    need = Need(care_plan=plan, created_by=by, **fields)
    _full_clean(need, exclude=["care_plan", "created_by"])
    check_initial(NEED_INITIAL_STATUSES, need.status, what="need")
    _check_sensitivity_allowed(access, need)
    history_by(need, by)
    need.save()
    if goals:
        need.goals.set(_same_plan(goals, plan, "goals"))
    audit(user=by, action=AuditAction.CREATE, obj=need, patient=access.patient, request=request)
    return need


@transaction.atomic
def activity_create(
    *,
    access: PatientAccess,
    plan: CarePlan,
    by: User,
    goals=(),
    needs=(),
    imported: bool = False,
    request=None,
    **fields: Any,
) -> Activity:
    """`imported`: another system's activity keeps its status."""
    access.require_edit()
    activity = Activity(care_plan=plan, created_by=by, **fields)
    _full_clean(activity, exclude=["care_plan", "created_by"])
    if not imported:
        check_initial(ACTIVITY_INITIAL_STATUSES, activity.status, what="activity")
    _check_sensitivity_allowed(access, activity)
    _check_assignee(access, activity)
    _check_owner(access, activity)
    history_by(activity, by)
    activity.save()
    if goals:
        activity.goals.set(_same_plan(goals, plan, "goals"))
    if needs:
        activity.needs.set(_same_plan(needs, plan, "needs"))
    audit(user=by, action=AuditAction.CREATE, obj=activity, patient=access.patient, request=request)
    return activity


def _same_plan(items, plan: CarePlan, field: str):
    items = list(items)
    if any(i.care_plan_id != plan.pk for i in items):
        raise ValidationError({field: "Link only items of the same care plan."})
    return items


def _plan_of(item: Model) -> CarePlan:
    """The plan an item belongs to (a plan is its own)."""
    if isinstance(item, CarePlan):
        return item
    assert isinstance(item, Goal | Need | Activity)
    return item.care_plan


@transaction.atomic
def item_update(
    *,
    access: PatientAccess,
    item: M,
    by: User,
    changes: dict[str, Any],
    expected_version: int | None,
    request=None,
    change_reason: str = "",
) -> M:
    """Change a care plan, goal, need or activity. Refuses (StaleVersionError) if someone
    saved it after `expected_version` was read; checks the status machine; keeps history
    (with `change_reason` on the version saved, e.g. whose proposal it applies)."""
    model = type(item)
    unknown = set(changes) - set(EDITABLE_FIELDS[model]) - {"goals", "needs"}
    if unknown:
        raise ValidationError({name: "This field cannot be changed here." for name in sorted(unknown)})
    if model is CarePlan:
        access.require_edit()
        if not access.can_edit_any and "status" in changes:
            raise access_denied("Only the case manager or plan lead can change the plan's status.")
    else:
        access.require_edit(item)
    fresh = lock_for_update(item, expected_version)
    m2m = {k: [*changes.pop(k), *hidden_links(fresh, access, k)] for k in ("goals", "needs") if k in changes}
    status_field, machine = STATUS_MACHINES[model]
    if status_field in changes:
        check_transition(machine, getattr(fresh, status_field), changes[status_field], label=status_field)
        _check_reason(fresh, status_field, changes)
    changed = apply_changes(fresh, changes)
    if not changed and not m2m:
        return fresh
    _full_clean(fresh, exclude=["care_plan", "created_by", "patient", "author"])
    if model is not CarePlan:
        _check_sensitivity_allowed(access, fresh)
        if not access.can_edit_item(fresh):
            raise ValidationError(
                {"owner_discipline": "You cannot hand ownership to another discipline; ask the case manager."}
            )
    if isinstance(fresh, Activity):
        _check_assignee(access, fresh)
    if model is not CarePlan and {"owner_discipline", "assigned_to"} & set(changed):
        _check_owner(access, fresh)
    if isinstance(fresh, CarePlan) and fresh.period_end and fresh.period_end < fresh.period_start:
        raise ValidationError({"period_end": "The plan cannot end before it starts."})
    history_by(fresh, by, reason=change_reason or "")
    try:
        with transaction.atomic():
            save_versioned(fresh, expected_version=expected_version)
    except IntegrityError as exc:
        raise ValidationError({status_field: "This patient already has an active care plan."}) from exc
    plan = _plan_of(fresh)
    for name, values in m2m.items():
        getattr(fresh, name).set(_same_plan(values, plan, name))
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="changed: " + ", ".join(changed + list(m2m)) + (f"; {change_reason}" if change_reason else ""),
    )
    return fresh


def hidden_links(item, access: PatientAccess, name: str) -> list:
    """The goals or needs linked to `item` that the caller may not see. A new list of
    links replaces only what the caller can see: these stay linked."""
    related = getattr(item, name)
    return list(related.exclude(access.sensitivity_q() if name == "needs" else access.goal_q()))


def access_denied(message: str):
    from careteam.permissions import ReadOnlyAccess

    return ReadOnlyAccess(message)


# ---------------------------------------------------------------------------
# Comments and proposals
# ---------------------------------------------------------------------------
# a handle: not inside a word or an email address; a full stop after it ends the sentence
MENTION_RE = re.compile(r"(?<![A-Za-z0-9_.@-])@([A-Za-z0-9_.-]+)")
MAX_MENTIONS = 20


def mentions_in(text: str) -> list[str]:
    """The @usernames a note mentions, each once (usernames are compared ignoring case),
    in the order written."""
    seen: dict[str, str] = {}
    for match in MENTION_RE.finditer(text or ""):
        handle = match.group(1).rstrip(".-")
        if handle and handle.lower() not in seen:
            seen[handle.lower()] = handle
    return list(seen.values())


def _mentioned(access: PatientAccess, item, handles: list[str]) -> list[User]:
    """The team members the handles name. Anyone else (no such user, not on this
    patient's team, or not allowed to see the item) refuses the whole note."""
    if len(handles) > MAX_MENTIONS:
        raise ValidationError({"text": f"Mention at most {MAX_MENTIONS} people in one note."})
    patient_id = access.patient.pk
    audience = team_members_who_may_see_item(patient_id, item)
    on_team = team_members_who_may_see(patient_id)
    users, errors = [], []
    for handle in handles:
        user = audience.filter(username__iexact=handle).first()
        if user is not None:
            users.append(user)
        elif on_team.filter(username__iexact=handle).exists():
            errors.append(f"@{handle} may not see this item, so cannot be mentioned on it.")
        else:
            errors.append(f"@{handle} is not on this patient's team.")
    if errors:
        raise ValidationError({"text": errors})
    return users


@transaction.atomic
def note_add(
    *,
    access: PatientAccess,
    plan: CarePlan,
    by: User,
    text: str,
    kind: str = "comment",
    target=None,
    changes: dict[str, Any] | None = None,
    target_version: int | None = None,
    request=None,
) -> Note:
    """Comment on, or propose a change to, any visible item (including other disciplines').
    A proposal may carry `changes` (field -> new value) to the item as the proposer read
    it (`target_version`). The item's owners and the team members @mentioned are
    notified; a mention of anyone else refuses the note."""
    access.require_edit()
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "Write the comment or proposal."})
    note = Note(care_plan=plan, author=by, text=text, kind=kind)
    if kind == NoteKind.PROPOSAL:
        if target is None:
            raise ValidationError({"kind": "Propose a change on a goal, need or activity."})
        note.status = NoteStatus.OPEN
    if target is not None:
        if not access.can_see(target):
            raise ValidationError("No such item.")
        setattr(note, type(target).__name__.lower(), target)
        note.sensitivity_id = getattr(target, "sensitivity_id", None)
    if changes:
        if kind != NoteKind.PROPOSAL:
            raise ValidationError({"kind": "Only a proposal can change the item."})
        note.changes = _proposed_changes(access, target, changes)
    if kind == NoteKind.PROPOSAL:
        note.target_version = target.version if target_version is None else int(target_version)
    mentioned = _mentioned(access, target, mentions_in(text))
    _full_clean(note, exclude=["care_plan", "author", "goal", "need", "activity", "sensitivity"])
    note.save()
    audit(user=by, action=AuditAction.CREATE, obj=note, patient=access.patient, request=request)
    notify_note_added(
        note=note,
        item=target,
        label=selectors.item_label(target, plan),
        owner_ids=selectors.item_owner_ids(target),
        mentioned_ids={u.pk for u in mentioned},
        url=f"{selectors.item_url(target, plan)}#note-{note.pk}",
    )
    return note


# fields a proposal may change, per item model: what the item's editor offers, less the
# sensitivity (the proposer files nothing into a category) and the links
PROPOSABLE_FIELDS: dict[type[Model], tuple[str, ...]] = {
    Goal: (
        "description",
        "priority",
        "owner_discipline",
        "target_measure",
        "target_value",
        "target_due",
        "lifecycle_status",
        "achievement_status",
        "status_reason",
    ),
    Need: ("category", "description", "is_barrier", "status", "status_reason"),
    Activity: (
        "title",
        "description",
        "owner_discipline",
        "assigned_to",
        "due_date",
        "status",
        "status_reason",
    ),
}


def stored_value(model: type[Model], name: str, value: Any) -> Any:
    """A field's value as a proposal keeps it in JSON: ids for foreign keys, ISO dates."""
    field = model._meta.get_field(name)
    if field.is_relation:
        return getattr(value, "pk", value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _live_value(model: type[Model], name: str, raw: Any) -> Any:
    """The model value of a stored proposal value, for `item_update`."""
    field = model._meta.get_field(name)
    if raw is None:
        return None
    if field.is_relation:
        related = field.related_model
        assert isinstance(related, type)  # a relation's target, never "self" here
        return related._default_manager.filter(pk=raw).first()
    assert isinstance(field, Field)  # a concrete field: not a relation
    return field.to_python(raw)


def _proposed_changes(access: PatientAccess, item: Model, changes: dict[str, Any]) -> dict[str, dict]:
    """Check a proposal's changes the way the save would (allowed fields, legal status,
    a reason where one is needed, field limits, an assignee on the team) and return
    them as field -> {"from", "to"} stored values, leaving out what would not change."""
    model = type(item)
    unknown = set(changes) - set(PROPOSABLE_FIELDS[model])
    if unknown:
        raise ValidationError({name: "A proposal cannot change this field." for name in sorted(unknown)})
    status_field, machine = STATUS_MACHINES[model]
    changed = {
        n: v
        for n, v in changes.items()
        if stored_value(model, n, v) != stored_value(model, n, getattr(item, n))
    }
    if set(changed) == {"status_reason"}:
        changed = {}  # a reason alone changes nothing
    if not changed:
        return {}
    candidate = model._default_manager.get(pk=item.pk)
    if status_field in changed:
        check_transition(machine, getattr(candidate, status_field), changed[status_field], label=status_field)
        _check_reason(candidate, status_field, changed)
    for name, value in changed.items():
        setattr(candidate, name, value)
    exclude = [f.name for f in model._meta.fields if f.name not in changed]
    _full_clean(candidate, exclude=exclude)
    if isinstance(candidate, Activity):
        _check_assignee(access, candidate)
    return {
        name: {"from": stored_value(model, name, getattr(item, name)), "to": stored_value(model, name, value)}
        for name, value in changed.items()
    }


def _open_proposal(note: Note) -> Note:
    """The proposal, locked and re-read; refused unless it is still open."""
    fresh = (
        Note.objects.select_for_update(of=("self",))
        .select_related("care_plan__patient", "author", "goal", "need", "activity")
        .get(pk=note.pk)
    )
    if fresh.kind != NoteKind.PROPOSAL:
        raise ValidationError("This is a comment, not a proposal: there is nothing to accept or decline.")
    if fresh.status != NoteStatus.OPEN:
        raise ValidationError(
            f"This proposal was {fresh.get_status_display().lower()} already.", code="already_decided"
        )
    return fresh


def _require_decide(access: PatientAccess, note: Note) -> None:
    """The item-write rule: the owning discipline, the case manager or the plan lead."""
    target = note.target
    allowed = access.can_edit_any if target is None else access.can_edit_item(target)
    if access.read_only or not allowed:
        raise access_denied(
            EMERGENCY_ACCESS_READ_ONLY
            if access.read_only
            else "Only the item's owning discipline, the case manager or the plan lead can accept or decline this proposal."
        )


def _decided(note: Note, *, status: str, by: User, reason: str, request, access: PatientAccess) -> Note:
    check_transition(NOTE_TRANSITIONS, note.status, status)
    note.status, note.decided_by, note.decided_at, note.decision_reason = status, by, timezone.now(), reason
    note.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=note,
        patient=access.patient,
        request=request,
        detail=f"proposal {status}, proposed by {note.author.get_username()}",
    )
    target = note.target
    notify_proposal_decided(
        note=note,
        item=target,
        label=selectors.item_label(target, note.care_plan),
        url=f"{selectors.item_url(target, note.care_plan)}#note-{note.pk}",
    )
    return note


@transaction.atomic
def note_accept(*, access: PatientAccess, note: Note, by: User, request=None) -> Note:
    """Apply a proposal through the normal item update, from the version it was made
    against (StaleVersionError, nothing changed, if the item changed since), with the
    proposer named in the item's history and the audit trail; the proposer is told."""
    access.require_edit()
    note = _open_proposal(note)
    _require_decide(access, note)
    target = note.target
    if note.changes and target is not None:
        model = type(target)
        item_update(
            access=access,
            item=target,
            by=by,
            changes={name: _live_value(model, name, c["to"]) for name, c in note.changes.items()},
            expected_version=note.target_version,
            request=request,
            change_reason=f"Proposed by {note.author.display_name} (proposal {note.pk})",
        )
    return _decided(note, status=NoteStatus.ACCEPTED, by=by, reason="", request=request, access=access)


@transaction.atomic
def note_decline(*, access: PatientAccess, note: Note, by: User, reason: str, request=None) -> Note:
    """Decline a proposal, saying why (required); the proposer is told the reason."""
    access.require_edit()
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why you decline this proposal."})
    if len(reason) > STATUS_REASON_MAX_LENGTH:
        raise ValidationError({"reason": f"Keep the reason under {STATUS_REASON_MAX_LENGTH} characters."})
    note = _open_proposal(note)
    _require_decide(access, note)
    return _decided(note, status=NoteStatus.DECLINED, by=by, reason=reason, request=request, access=access)


# ---------------------------------------------------------------------------
# Changes other apps make to a need (a referral's answer closes its loop)
# ---------------------------------------------------------------------------
@transaction.atomic
def need_transition(*, need: Need, by: User, status: str, reason: str = "", request=None) -> Need:
    """Move a need along its status machine on behalf of another app's service (a
    referral closed with help received resolves its need). The calling service has
    decided that `by` may make the change (a team member or the receiving partner);
    the machine, the version and the history are kept here."""
    fresh = lock_for_update(need, None)
    if fresh.status == status:
        return fresh
    check_transition(NEED_TRANSITIONS, fresh.status, status)
    fresh.status = status
    if reason:
        fresh.status_reason = reason[:STATUS_REASON_MAX_LENGTH]
    history_by(fresh, by)
    save_versioned(fresh, expected_version=None)
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient_id=fresh.care_plan.patient_id,
        request=request,
        detail=f"changed: status; {reason}"[:200] if reason else "changed: status",
    )
    return fresh


def need_note_record(*, need: Need, by: User, text: str) -> Note:
    """A note on a need that another app's service writes (what happened to a referral
    made from it): filed in the need's category, so it is as hidden as the need."""
    return Note.objects.create(
        care_plan_id=need.care_plan_id,
        need=need,
        author=by,
        sensitivity_id=need.sensitivity_id,
        text=text,
    )
