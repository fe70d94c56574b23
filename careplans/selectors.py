"""Reads of the living care plan: the editor's items, the history of changes, the plan as
it was at a moment and the difference between two moments. Sensitive items are filtered
with the caller's `PatientAccess` in SQL; a fixed number of queries whatever the size."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db.models import Case, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.urls import reverse
from django.utils.formats import date_format

from careteam import keyset
from careteam.cover import work_for_q
from careteam.models import Discipline, SensitivityCategory, TeamMembership, User
from careteam.permissions import PatientAccess, historical_model, history_rows, restrict, team_patients_for

from .models import (
    ACTIVITY_OPEN_STATUSES,
    ACTIVITY_TRANSITIONS,
    GOAL_TRANSITIONS,
    NEED_TRANSITIONS,
    Activity,
    CarePlan,
    ExpressedBy,
    Goal,
    GoalPriority,
    Need,
    Note,
)

# model -> (status field, transitions)
STATUS_FIELDS = {
    Goal: ("lifecycle_status", GOAL_TRANSITIONS),
    Need: ("status", NEED_TRANSITIONS),
    Activity: ("status", ACTIVITY_TRANSITIONS),
}


def next_statuses(item) -> list[tuple[str, str]]:
    """The legal next statuses of an item as (code, label), for the status control."""
    name, machine = STATUS_FIELDS[type(item)]
    legal = machine.get(getattr(item, name), ())
    # in the workflow order the model declares, not alphabetically
    return [(code, label) for code, label in type(item)._meta.get_field(name).choices if code in legal]


# ---------------------------------------------------------------------------
# The editor
# ---------------------------------------------------------------------------
def goals_for(access: PatientAccess, plan: CarePlan) -> QuerySet:
    """Goals with the patient's and family's own goals first, then by priority."""
    voice = Case(
        When(expressed_by__in=[ExpressedBy.PATIENT, ExpressedBy.FAMILY], then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    rank = Case(
        When(priority=GoalPriority.HIGH, then=Value(0)),
        When(priority=GoalPriority.MEDIUM, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return (
        Goal.objects.filter(care_plan=plan)
        .filter(access.goal_q())
        .select_related("owner_discipline")
        .annotate(voice_rank=voice, priority_rank=rank)
        .order_by("voice_rank", "priority_rank", "id")
    )


def needs_for(access: PatientAccess, plan: CarePlan) -> QuerySet:
    return (
        Need.objects.filter(care_plan=plan)
        .filter(access.sensitivity_q())
        .select_related("sensitivity")
        .prefetch_related(Prefetch("goals", queryset=Goal.objects.only("id", "description")))
        .order_by("-is_barrier", "domain", "id")
    )


def activities_for(access: PatientAccess, plan: CarePlan) -> QuerySet:
    return (
        Activity.objects.filter(care_plan=plan)
        .filter(access.sensitivity_q())
        .select_related("owner_discipline", "assigned_to", "sensitivity")
        .prefetch_related(
            Prefetch("goals", queryset=Goal.objects.only("id", "description")),
            Prefetch(
                "needs",
                queryset=Need.objects.filter(access.sensitivity_q()).only(
                    "id", "description", "category", "sensitivity_id"
                ),
            ),
        )
        .order_by("due_date", "id")
    )


def notes_for(access: PatientAccess, plan: CarePlan) -> QuerySet:
    return (
        Note.objects.filter(care_plan=plan)
        .filter(access.note_q())
        .select_related("author", "decided_by", "goal", "need", "activity")
        .order_by("-created_at", "-id")
    )


def notes_for_item(access: PatientAccess, item) -> QuerySet:
    """The comments and proposals on one item, newest first."""
    kind = type(item).__name__.lower()
    return notes_for(access, item.care_plan).filter(**{kind: item})


def decorate_notes(access: PatientAccess, notes: list) -> list:
    """What the notes list shows: each proposal's changes in words (labels loaded once
    for the list), and whether the user may accept or decline it (the item-write rule)."""
    proposed = [n for n in notes if n.changes]
    labels = _Labels() if proposed else None
    if labels is not None:
        user_ids = {
            c.get(end)
            for n in proposed
            for name, c in n.changes.items()
            if name == "assigned_to"
            for end in ("from", "to")
        } - {None}
        labels.users = {u.pk: u.display_name for u in User.objects.filter(pk__in=user_ids)}
    for note in notes:
        target = note.target
        note.target_kind = type(target).__name__.lower() if target is not None else ""
        note.is_open_proposal = note.kind == "proposal" and note.status == "open"
        note.can_decide = (
            note.is_open_proposal
            and not access.read_only
            and (access.can_edit_any if target is None else access.can_edit_item(target))
        )
        note.change_rows = []
        if note.changes and target is not None:
            model = type(target)
            for name, change in note.changes.items():
                note.change_rows.append(
                    (
                        _verbose(model, name),
                        _proposal_value(labels, model, name, change.get("from")),
                        _proposal_value(labels, model, name, change.get("to")),
                    )
                )
    return notes


def _proposal_value(labels, model, name: str, raw) -> str:
    if raw not in (None, "") and model._meta.get_field(name).get_internal_type() == "DateField":
        try:
            return date_format(dt.date.fromisoformat(raw))
        except (TypeError, ValueError):
            return str(raw)
    return labels.value(model, name, raw)


def item_label(item, plan: CarePlan | None = None) -> str:
    """How a notification names a plan item: "activity 'Arrange rides to clinic'"."""
    if item is None:
        return f"care plan '{_short(plan.title)}'" if plan is not None else "the care plan"
    kind = type(item).__name__.lower()
    text = item.title if isinstance(item, Activity) else item.description
    return f"{kind} '{_short(text)}'"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join((text or "").split())
    return f"{text[: limit - 1]}…" if len(text) > limit else text


def item_url(item, plan: CarePlan) -> str:
    """The page of an item (or of the plan, for a note on the plan itself)."""
    if item is None:
        return reverse("careplans:plan_editor", kwargs={"plan_id": plan.pk})
    kind = type(item).__name__.lower()
    return reverse(f"careplans:{kind}_detail", kwargs={f"{kind}_id": item.pk})


def item_owner_ids(item) -> set[int]:
    """Whom a comment or proposal on an item is for: an activity's assignee, else the
    team members of its owning discipline; a goal's owning discipline on the team, else
    whoever filed it; a need (which names no owner) whoever filed it."""
    if item is None:
        return set()
    if isinstance(item, Activity) and item.assigned_to_id is not None:
        return {item.assigned_to_id}
    discipline_id = getattr(item, "owner_discipline_id", None)
    if discipline_id is not None:
        members = set(
            TeamMembership.objects.current()
            .filter(patient_id=item.care_plan.patient_id, discipline_id=discipline_id)
            .values_list("user_id", flat=True)
        )
        if members or isinstance(item, Activity):
            return members
    return {item.created_by_id} if item.created_by_id is not None else set()


def team_users(patient) -> QuerySet:
    """People who may be assigned an activity: the patient's current team."""
    current = TeamMembership.objects.current().filter(patient=patient)
    return User.objects.filter(pk__in=current.values("user_id")).order_by("last_name", "first_name")


@dataclass
class Editor:
    plan: CarePlan
    access: PatientAccess
    goals: list = field(default_factory=list)
    needs: list = field(default_factory=list)
    activities: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def editor_for(access: PatientAccess, plan: CarePlan) -> Editor:
    """The plan's visible items, each marked with what the user may do with it."""
    editor = Editor(plan=plan, access=access)
    editor.goals = list(goals_for(access, plan))
    editor.needs = list(needs_for(access, plan))
    editor.activities = list(activities_for(access, plan))
    editor.notes = decorate_notes(access, list(notes_for(access, plan)[:30]))
    for item in editor.goals + editor.needs + editor.activities:
        decorate(access, item)
    return editor


def decorate(access: PatientAccess, item) -> Any:
    """Attach what the template needs to know: may the user edit it, and where can its
    status go next."""
    item.can_edit = access.can_edit_item(item)
    item.next_statuses = next_statuses(item)
    item.kind = kind = type(item).__name__.lower()
    ids = {f"{kind}_id": item.pk}
    item.detail_url = reverse(f"careplans:{kind}_detail", kwargs=ids)
    item.edit_url = reverse(f"careplans:{kind}_edit", kwargs=ids)
    item.status_url = reverse(f"careplans:{kind}_status", kwargs=ids)
    item.propose_url = reverse(f"careplans:{kind}_propose", kwargs=ids)
    item.status_value = getattr(item, STATUS_FIELDS[type(item)][0])
    # linked items through the permissions module's rule only: templates never follow
    # `item.needs` or `item.goals` themselves
    item.linked_goals = access.visible(item.goals) if hasattr(item, "goals") else []
    item.linked_needs = access.visible(item.needs) if isinstance(item, Activity) else []
    return item


# ---------------------------------------------------------------------------
# Work: what My work lists and the end-of-day digest counts
# ---------------------------------------------------------------------------
def my_activities(user) -> QuerySet:
    """Open activities of my patients' active plans that I may see: mine, or of a
    colleague I cover today (careteam.cover), or unassigned in the queue of a discipline
    I hold on that team. The activities My work lists; the end-of-day digest counts them."""
    mine_or_queue = work_for_q("assigned_to_id", user) | Q(
        assigned_to__isnull=True,
        owner_discipline_id__in=Subquery(
            TeamMembership.objects.current()
            .filter(user_id=user.pk, patient_id=OuterRef("care_plan__patient_id"))
            .values("discipline_id")
        ),
    )
    return (
        restrict(Activity.objects.all(), user, patient_path="care_plan__patient")
        .filter(mine_or_queue, status__in=ACTIVITY_OPEN_STATUSES)
        .filter(care_plan__status="active", care_plan__patient__in=team_patients_for(user))
    )


# ---------------------------------------------------------------------------
# History: changes, the plan at a moment, and the difference between two moments
# ---------------------------------------------------------------------------
TRACKED = (CarePlan, Goal, Need, Activity)
SKIP_FIELDS = {"id", "version", "created_at", "updated_at", "care_plan", "patient", "created_by", "author"}


@dataclass
class Change:
    """One saved version of one plan item."""

    at: dt.datetime
    kind: str
    item_id: int
    label: str
    by: str
    type: str  # created, changed, deleted
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (label, before, after)
    reason: str = ""  # e.g. whose accepted proposal this version applies
    link: str = ""  # an entry another app adds may point at what it made (a rule's activity)

    @property
    def token(self) -> str:
        return str(int(self.at.timestamp() * 1_000_000))


def _history_rows(access: PatientAccess, plan: CarePlan, model) -> QuerySet:
    """Historical rows of one model for this plan, through the permissions module's
    history filter: an item ever filed in a category the user may not see never shows."""
    qs = history_rows(access, model)
    qs = qs.filter(id=plan.pk) if model is CarePlan else qs.filter(care_plan_id=plan.pk)
    return qs.select_related("history_user").order_by("history_date", "history_id")


class _Labels:
    """Readable values for foreign keys and choices, loaded once per page."""

    def __init__(self):
        self.disciplines = dict(Discipline.objects.values_list("pk", "name"))
        self.sensitivities = dict(SensitivityCategory.objects.values_list("pk", "name"))
        self.users: dict[int, str] = {}

    def value(self, model, name: str, raw) -> str:
        if raw in (None, ""):
            return "—"
        f = model._meta.get_field(name)
        if f.choices:
            return str(dict(f.choices).get(raw, raw))
        if name == "owner_discipline":
            return self.disciplines.get(raw, str(raw))
        if name == "sensitivity":
            return self.sensitivities.get(raw, str(raw))
        if name in ("assigned_to",):
            return self.users.get(raw, f"user #{raw}")
        if isinstance(raw, bool):
            return "yes" if raw else "no"
        return str(raw)


@functools.cache
def _fields(model) -> tuple:
    """The tracked fields of a model shown in its history. Computed once per model:
    `model.history` builds a new manager class on every access, which made the history
    page cost ~1 ms of CPU per saved version when asked per row."""
    historical = {hf.name for hf in model.history.model._meta.fields}
    return tuple(f for f in model._meta.concrete_fields if f.name not in SKIP_FIELDS and f.name in historical)


def _row_values(model, row) -> dict[str, Any]:
    return {f.name: getattr(row, f.attname) for f in _fields(model)}


def _label(model, values: dict[str, Any]) -> str:
    text = values.get("title") or values.get("description") or ""
    return str(text)[:80]


HISTORY_SALT = "plan-history"
# ties of one moment across the four tables: the plan first, then goals, needs, activities
RANK = {model: len(TRACKED) - i for i, model in enumerate(TRACKED)}


def _walk_q(
    mine: int, cursor: keyset.Cursor, date_field: str = "history_date", id_field: str = "history_id"
) -> Q:
    """The entries of the table ranked `mine` beyond the cursor, in the order (moment,
    table, id) newest first, or the other way for a walk back to newer versions."""
    at, rank, entry_id = cursor.key
    lte, lt, gte, gt = (f"{date_field}__{op}" for op in ("lte", "lt", "gte", "gt"))
    if not cursor.backwards:
        if mine < rank:
            return Q(**{lte: at})
        if mine > rank:
            return Q(**{lt: at})
        return keyset.after_q((date_field, id_field), (at, entry_id))
    if mine > rank:
        return Q(**{gte: at})
    if mine < rank:
        return Q(**{gt: at})
    return keyset.after_q((date_field, id_field), (at, entry_id), descending=False)


# ---------------------------------------------------------------------------
# Entries other apps add to the history (a registry: careplans imports none of them)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryWindow:
    """What a history source is asked for: its next `limit` entries beyond the page's
    cursor, in the page's direction, as the plan's own tables walk them."""

    rank: int
    cursor: keyset.Cursor | None
    limit: int

    def slice(self, qs: QuerySet, date_field: str, id_field: str = "id") -> QuerySet:
        if self.cursor is not None:
            qs = qs.filter(_walk_q(self.rank, self.cursor, date_field, id_field))
        if self.cursor is not None and self.cursor.backwards:
            return qs.order_by(date_field, id_field)[: self.limit]
        return qs.order_by(f"-{date_field}", f"-{id_field}")[: self.limit]


# (access, plan, window) -> [(moment, entry id, Change)]: a fixed number of queries, the
# entries already filtered to what the viewer may see
HistorySource = Callable[[PatientAccess, CarePlan, HistoryWindow], list[tuple[dt.datetime, int, "Change"]]]
HISTORY_SOURCES: list[HistorySource] = []


def register_history_source(source: HistorySource) -> None:
    """Add entries of another app (the hand-on rules' firings) to every plan's history,
    after the plan's own versions at one moment. Called from an `AppConfig.ready`."""
    if source not in HISTORY_SOURCES:
        HISTORY_SOURCES.append(source)


def _source_rank(index: int) -> int:
    return -index  # below every plan table (their ranks run from 1 up)


def _page_rows(
    access: PatientAccess, plan: CarePlan, model, cursor: keyset.Cursor | None, limit: int
) -> list:
    """Up to `limit` versions of one model in the walking direction, each with the id of the
    version before it of the same item (to show what changed): one query."""
    base = _history_rows(access, plan, model)
    before = (
        base.filter(id=OuterRef("id"))
        .filter(
            keyset.after_q(("history_date", "history_id"), (OuterRef("history_date"), OuterRef("history_id")))
        )
        .order_by("-history_date", "-history_id")
        .values("history_id")[:1]
    )
    qs = base.annotate(before_id=Subquery(before))
    if cursor is not None:
        qs = qs.filter(_walk_q(RANK[model], cursor))
    backwards = cursor is not None and cursor.backwards
    order = ("history_date", "history_id") if backwards else ("-history_date", "-history_id")
    return list(qs.order_by(*order)[:limit])


def plan_history_page(
    access: PatientAccess,
    plan: CarePlan,
    token: str | None = None,
    *,
    size: int = 50,
    query=None,
) -> keyset.Page:
    """One page of the saved versions of the plan and its visible items, newest first, each
    with the fields that changed from the version before. A fixed number of queries and
    work in proportion to the page, not to the length of the history: each table gives
    its next `size + 1` versions by keyset and the version before each of them. A version
    in which nothing the user may see changed is left off its page. Raises
    `keyset.BadCursor` for a cursor this history did not make."""
    cursor = keyset.decode(token, salt=HISTORY_SALT, length=3)
    if cursor is not None and not (
        isinstance(cursor.key[0], dt.datetime) and all(isinstance(v, int) for v in cursor.key[1:])
    ):
        raise keyset.BadCursor("not a cursor of the history")
    merged: list[tuple[tuple, Any, Any]] = []
    for model in TRACKED:
        merged += [
            ((row.history_date, RANK[model], row.history_id), model, row)
            for row in _page_rows(access, plan, model, cursor, size + 1)
        ]
    for index, source in enumerate(HISTORY_SOURCES):
        window = HistoryWindow(rank=_source_rank(index), cursor=cursor, limit=size + 1)
        merged += [
            ((at, window.rank, entry_id), None, change)
            for at, entry_id, change in source(access, plan, window)
        ]
    backwards = cursor is not None and cursor.backwards
    merged.sort(key=lambda entry: entry[0], reverse=not backwards)
    page = keyset.page_of(
        merged[: size + 1], cursor, size=size, key_of=lambda entry: entry[0], salt=HISTORY_SALT, query=query
    )
    page.rows = _changes(access, plan, page.rows)
    return page


def plan_history(access: PatientAccess, plan: CarePlan) -> list[Change]:
    """Every saved version of the plan and its visible items, newest first (for exports and
    checks; the history page shows `plan_history_page`)."""
    return plan_history_page(access, plan, size=10**9).rows


def _changes(access: PatientAccess, plan: CarePlan, entries: list) -> list[Change]:
    """The page's versions as changes: each compared with the version before it (fetched
    in one query per model, with the activity links of both)."""
    labels = _Labels()
    before_ids: dict[Any, list[int]] = {model: [] for model in TRACKED}
    for _, model, row in entries:
        if model is not None and row.before_id is not None:
            before_ids[model].append(row.before_id)
    befores = {
        model: {r.history_id: r for r in historical_model(model).objects.filter(history_id__in=ids)}
        for model, ids in before_ids.items()
        if ids
    }
    activity_rows = [row for _, model, row in entries if model is Activity]
    activity_rows += list(befores.get(Activity, {}).values())
    assignees = {r.assigned_to_id for r in activity_rows if r.assigned_to_id is not None}
    labels.users = {u.pk: u.display_name for u in User.objects.filter(pk__in=assignees)} if assignees else {}
    links = _activity_links(access, plan, activity_rows, [r.history_id for r in activity_rows])
    changes: list[Change] = []
    for _, model, row in entries:
        if model is None:
            changes.append(row)  # a registered source's entry, built and filtered by it
            continue
        values = _row_values(model, row)
        if model is Activity:
            values.update(links.get(row.history_id, EMPTY_LINKS))
        before_row = befores.get(model, {}).get(row.before_id)
        before = None
        if before_row is not None:
            before = _row_values(model, before_row)
            if model is Activity:
                before.update(links.get(before_row.history_id, EMPTY_LINKS))
        kind = model.__name__.lower() if model is not CarePlan else "plan"
        by = row.history_user.display_name if row.history_user else "system"
        if row.history_type == "+" or before is None:
            change_type = "created" if row.history_type != "-" else "deleted"
            diff = [
                (_verbose(model, n), "—", labels.value(model, n, v))
                for n, v in values.items()
                if v not in (None, "", False) and v != frozenset()
            ]
        elif row.history_type == "-":
            change_type, diff = "deleted", []
        else:
            change_type = "changed"
            diff = [
                (_verbose(model, n), labels.value(model, n, before[n]), labels.value(model, n, v))
                for n, v in values.items()
                if before.get(n) != v
            ]
        if change_type == "changed" and not diff:
            continue  # nothing the user may see changed (e.g. a link to a hidden need)
        changes.append(
            Change(
                at=row.history_date,
                kind=kind,
                item_id=row.id,
                label=_label(model, values),
                by=by,
                type=change_type,
                fields=diff,
                reason=row.history_change_reason or "",
            )
        )
    return changes


def _verbose(model, name: str) -> str:
    if name in LINK_LABELS:
        return LINK_LABELS[name]
    return str(model._meta.get_field(name).verbose_name).capitalize()


LINK_LABELS = {"goals": "Linked goals", "needs": "Linked needs"}


class _Linked(frozenset):
    """The visible goals or needs an activity version linked to, shown by their text."""

    names: dict[int, str] = {}

    def __str__(self) -> str:
        return "; ".join(sorted(self.names.get(pk, "") for pk in self)) or "—"


EMPTY_LINKS: dict[str, Any] = {}


def _activity_links(
    access: PatientAccess, plan: CarePlan, rows: list, versions: QuerySet | list[int]
) -> dict[int, dict[str, Any]]:
    """For each historical activity row: the goals and needs it linked to, keeping only
    those the user may see (a link to a hidden need is neither named nor counted).
    Two queries for the links of every version, one per kind for the names."""
    if not rows:
        return {}
    history_ids = [r.history_id for r in rows]
    out: dict[int, dict[str, Any]] = {h: {"goals": set(), "needs": set()} for h in history_ids}
    for name, target, model in (("goals", "goal_id", Goal), ("needs", "need_id", Need)):
        through = apps.get_model("careplans", f"HistoricalActivity_{name}")
        visible = {
            obj.pk: str(obj.description)[:60] for obj in access.visible(model.objects.filter(care_plan=plan))
        }
        # a queryset of versions goes as a subquery: a thousand ids inlined cost more to send
        # than to run (a page's hundred or so are sent as they are)
        ids = versions.values("history_id") if isinstance(versions, QuerySet) else versions
        for history_id, pk in through.objects.filter(history_id__in=ids).values_list("history_id", target):
            if pk in visible:
                out[history_id][name].add(pk)
        linked = type(f"_Linked{name}", (_Linked,), {"names": visible})
        for value in out.values():
            value[name] = linked(value[name])
    return out


@dataclass
class Snapshot:
    at: dt.datetime
    items: dict[tuple[str, int], dict[str, Any]]  # (kind, id) -> {"label", "values"}


def plan_snapshot(access: PatientAccess, plan: CarePlan, at: dt.datetime) -> Snapshot:
    """The plan and its visible items as they stood at `at` (latest version at or before
    it, deleted ones left out). One query per model: DISTINCT ON (id) in PostgreSQL."""
    labels = _Labels()
    items: dict[tuple[str, int], dict[str, Any]] = {}
    raw_rows = {}
    for model in TRACKED:
        rows = list(
            _history_rows(access, plan, model)
            .filter(history_date__lte=at)
            .order_by("id", "-history_date", "-history_id")
            .distinct("id")
        )
        raw_rows[model] = [r for r in rows if r.history_type != "-"]
    assignees = {r.assigned_to_id for r in raw_rows[Activity] if r.assigned_to_id is not None}
    labels.users = {u.pk: u.display_name for u in User.objects.filter(pk__in=assignees)}
    for model, rows in raw_rows.items():
        kind = model.__name__.lower() if model is not CarePlan else "plan"
        for row in rows:
            values = _row_values(model, row)
            items[(kind, row.id)] = {
                "kind": kind,
                "id": row.id,
                "label": _label(model, values),
                "values": {_verbose(model, n): labels.value(model, n, v) for n, v in values.items()},
            }
    return Snapshot(at=at, items=items)


KIND_ORDER = {"plan": 0, "goal": 1, "need": 2, "activity": 3}


def snapshot_items(snapshot: Snapshot) -> list[dict[str, Any]]:
    return sorted(snapshot.items.values(), key=lambda i: (KIND_ORDER[i["kind"]], i["id"]))


def snapshot_diff(old: Snapshot, new: Snapshot) -> list[dict[str, Any]]:
    """Items added, removed or changed between two moments, with field-level before/after."""
    result = []
    for key in sorted(set(old.items) | set(new.items), key=lambda k: (KIND_ORDER[k[0]], k[1])):
        a, b = old.items.get(key), new.items.get(key)
        if b is not None and a is None:
            result.append({"kind": key[0], "label": b["label"], "type": "added", "fields": []})
        elif a is not None and b is None:
            result.append({"kind": key[0], "label": a["label"], "type": "removed", "fields": []})
        elif a is not None and b is not None:
            fields = [
                (n, a["values"].get(n, "—"), v) for n, v in b["values"].items() if a["values"].get(n) != v
            ]
            if fields:
                result.append({"kind": key[0], "label": b["label"], "type": "changed", "fields": fields})
    return result


# ---------------------------------------------------------------------------
# The printed plan (team and family versions)
# ---------------------------------------------------------------------------
LIVE_GOAL_STATUSES = ("proposed", "planned", "accepted", "active", "on-hold")
LIVE_NEED_STATUSES = ("active", "recurrence")
FAMILY_GOAL_STATUSES = ("accepted", "active", "on-hold")


@dataclass
class PrintedPlan:
    plan: CarePlan
    audience: str  # "team" or "family"
    include_sensitive: bool
    goals: list = field(default_factory=list)
    needs: list = field(default_factory=list)
    activities: list = field(default_factory=list)
    team: list = field(default_factory=list)
    caregivers: list = field(default_factory=list)


def printed_plan(
    access: PatientAccess, plan: CarePlan, *, audience: str, include_sensitive: bool
) -> PrintedPlan:
    """What the print view and the PDF show: the live items the viewer may see (the
    sensitivity rule of the permissions module first), the patient's own goals first.
    The family version leaves out needs, and sensitive activities unless chosen."""
    printed = PrintedPlan(plan=plan, audience=audience, include_sensitive=include_sensitive)
    goal_statuses = FAMILY_GOAL_STATUSES if audience == "family" else LIVE_GOAL_STATUSES
    printed.goals = list(goals_for(access, plan).filter(lifecycle_status__in=goal_statuses))
    activities = activities_for(access, plan).filter(status__in=ACTIVITY_OPEN_STATUSES)
    needs = needs_for(access, plan).filter(status__in=LIVE_NEED_STATUSES)
    if not include_sensitive:
        activities = activities.filter(sensitivity__isnull=True)
        needs = needs.filter(sensitivity__isnull=True)
    printed.activities = list(activities)
    printed.needs = list(needs) if audience == "team" else []
    printed.team = list(
        TeamMembership.objects.current()
        .filter(patient=plan.patient)
        .select_related("user", "discipline")
        .order_by("role", "discipline__name", "user__last_name")
    )
    printed.caregivers = list(plan.patient.caregivers.all())
    return printed
