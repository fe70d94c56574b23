"""Writes of the living care plan. Each checks the status machine and the version the
caller read, saves with history (who and when) and writes an audit event."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model

from careteam.audit import audit
from careteam.concurrency import apply_changes, lock_for_update
from careteam.models import AuditAction, User
from careteam.notifications import notify_note_added
from careteam.permissions import PatientAccess, team_members_who_may_see, team_members_who_may_see_item
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
        label = dict(type(item)._meta.get_field(status_field).choices).get(new, new)
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
    request=None,
) -> CarePlan:
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
    )
    if period_start:
        plan.period_start = period_start
    _full_clean(plan, exclude=["patient", "author"])
    check_initial(CAREPLAN_INITIAL_STATUSES, plan.status, what="care plan")
    if plan.period_end and plan.period_end < plan.period_start:
        raise ValidationError({"period_end": "The plan cannot end before it starts."})
    if (
        status == CarePlanStatus.ACTIVE
        and CarePlan.objects.filter(patient=access.patient, status="active").exists()
    ):
        raise ValidationError({"status": "This patient already has an active care plan."})
    plan._history_user = by
    plan.save()
    audit(user=by, action=AuditAction.CREATE, obj=plan, patient=access.patient, request=request)
    return plan


# ---------------------------------------------------------------------------
# Plan items
# ---------------------------------------------------------------------------
@transaction.atomic
def goal_create(*, access: PatientAccess, plan: CarePlan, by: User, request=None, **fields: Any) -> Goal:
    access.require_edit()
    goal = Goal(care_plan=plan, created_by=by, **fields)
    _full_clean(goal, exclude=["care_plan", "created_by"])
    check_initial(GOAL_INITIAL_STATUSES, goal.lifecycle_status, label="lifecycle_status", what="goal")
    if goal.achievement_status in GOAL_OUTCOME_ACHIEVEMENTS:
        raise ValidationError(
            {
                "achievement_status": f"A new goal cannot start as '{goal.achievement_status}': record "
                "the outcome by changing the goal once it exists."
            },
            code="illegal_initial_status",
        )
    goal._history_user = by
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
    need._history_user = by
    need.save()
    if goals:
        need.goals.set(_same_plan(goals, plan, "goals"))
    audit(user=by, action=AuditAction.CREATE, obj=need, patient=access.patient, request=request)
    return need


@transaction.atomic
def activity_create(
    *, access: PatientAccess, plan: CarePlan, by: User, goals=(), needs=(), request=None, **fields: Any
) -> Activity:
    access.require_edit()
    activity = Activity(care_plan=plan, created_by=by, **fields)
    _full_clean(activity, exclude=["care_plan", "created_by"])
    check_initial(ACTIVITY_INITIAL_STATUSES, activity.status, what="activity")
    _check_sensitivity_allowed(access, activity)
    _check_assignee(access, activity)
    if not access.can_edit_item(activity):
        raise ValidationError(
            {
                "owner_discipline": "You can add activities owned by your own discipline; ask the case manager for others."
            }
        )
    activity._history_user = by
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


@transaction.atomic
def item_update(
    *,
    access: PatientAccess,
    item: Model,
    by: User,
    changes: dict[str, Any],
    expected_version: int | None,
    request=None,
) -> Model:
    """Change a care plan, goal, need or activity. Refuses (StaleVersionError) if someone
    saved it after `expected_version` was read; checks the status machine; keeps history."""
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
    m2m = {k: changes.pop(k) for k in ("goals", "needs") if k in changes}
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
    if model is Activity:
        _check_assignee(access, fresh)
    if model is CarePlan and fresh.period_end and fresh.period_end < fresh.period_start:
        raise ValidationError({"period_end": "The plan cannot end before it starts."})
    fresh.version += 1
    fresh._history_user = by
    try:
        with transaction.atomic():
            fresh.save()
    except IntegrityError as exc:
        raise ValidationError({status_field: "This patient already has an active care plan."}) from exc
    plan = fresh if model is CarePlan else fresh.care_plan
    for name, values in m2m.items():
        getattr(fresh, name).set(_same_plan(values, plan, name))
    audit(
        user=by,
        action=AuditAction.UPDATE,
        obj=fresh,
        patient=access.patient,
        request=request,
        detail="changed: " + ", ".join(changed + list(m2m)),
    )
    return fresh


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
    request=None,
) -> Note:
    """Comment on, or propose a change to, any visible item (including other disciplines').
    The item's owners and the team members @mentioned are notified; a mention of anyone
    else refuses the note."""
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
