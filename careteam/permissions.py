"""The one place that decides who may see and change patient data.

Rules (deny by default):
- A person sees a patient, the care plans and everything under them only while they hold a
  current TeamMembership on that patient's team. Memberships grant guardian object
  permissions on the Patient (direct foreign-key table `PatientUserObjectPermission`);
  lists are filtered in SQL with EXISTS over that table AND a current membership, so the
  grant also lapses at the membership's end date even before the nightly sync revokes it.
- Emergency access gives a clinician not on the team read-only access for a limited time.
- Items flagged with a SensitivityCategory are visible only to team members whose
  discipline the category's policy allows, plus the patient's case manager (and
  emergency access users whose own discipline the policy allows).
- Derived items follow what they were made from, at read time: comments follow their
  target, referrals their need, and a goal that exists only for needs the user may not
  see (all its linked needs hidden, no visible need or activity working towards it) is
  hidden with them. A conversation follows its own category and its item's (a referral's
  need; a handoff is seen by the whole team), and its messages follow it.
- A clinician edits items owned by their discipline; the case manager and the plan lead
  edit any item and manage the team. Administrators see no clinical data unless on the team.

Views, API endpoints, exports and tasks all call this module; none writes its own check.
Deactivated accounts see nothing, whatever their memberships. A superuser is no exception:
the checks read the guardian table directly (never `user.has_perm(perm, patient)`, which
is always true for superusers).

How a view uses it:
- lists: `patients_for(user)`, `team_patients_for(user)`, `restrict(qs, user, patient_path=...)`
- one patient: `access = access_patient_by_id(user, patient_id)` (404 if not visible), then
  `access.require_edit(item)` before a write (403 "Emergency access is read-only" for
  emergency access, or the owning-discipline message)
- `@audited_patient_view` on a function view with a `patient_id` URL kwarg does both: it
  puts the access on `request.patient_access`, refuses writes by read-only users with 403,
  and audits the read. Reads and denials of every URL naming patient data are audited
  anyway by `careteam.middleware.PatientAuditMiddleware` (a 403/404 is a denial; a 200 GET
  no view audited is a read), so a view only needs `audit(..., request=request)` for
  writes and for reads it wants to describe more precisely.
- history: `history_rows(access, model)` and `history_for(access, plan)` filter
  simple_history rows: an item ever filed in a category the user may not see never shows.
- the patient's access log: `access.can_view_access_log` (case manager and lead only).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.apps import apps
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from .models import (
    EmergencyAccess,
    MembershipStatus,
    PatientUserObjectPermission,
    SensitivityCategory,
    TeamMembership,
    TeamRole,
    User,
)

if TYPE_CHECKING:
    from patients.models import Patient, PatientQuerySet

_QS = TypeVar("_QS", bound=QuerySet[Any, Any])

VIEW_PATIENT = "view_patient"
EDIT_PLAN = "edit_plan"
MANAGE_TEAM = "manage_team"

# guardian permissions a role grants on the Patient
ROLE_PERMISSIONS = {
    TeamRole.MEMBER: {VIEW_PATIENT},
    TeamRole.LEAD: {VIEW_PATIENT, EDIT_PLAN, MANAGE_TEAM},
    TeamRole.CASE_MANAGER: {VIEW_PATIENT, EDIT_PLAN, MANAGE_TEAM},
}


# what a reader by emergency access is told when they try to change anything
EMERGENCY_ACCESS_READ_ONLY = "Emergency access is read-only."


class ReadOnlyAccess(PermissionDenied):
    """The user may see this record but not change it."""


# ---------------------------------------------------------------------------
# SQL building blocks (all take the patient id column as an OuterRef path)
# ---------------------------------------------------------------------------
def _granted(user, patient_ref: str, codename: str = VIEW_PATIENT) -> Exists:
    return Exists(
        PatientUserObjectPermission.objects.filter(
            user_id=user.pk,
            permission__codename=codename,
            permission__content_type__app_label="patients",
            content_object_id=OuterRef(patient_ref),
        )
    )


def _current_membership(user, patient_ref: str) -> Exists:
    return Exists(TeamMembership.objects.current().filter(user_id=user.pk, patient_id=OuterRef(patient_ref)))


def _emergency_access(user, patient_ref: str) -> Exists:
    return Exists(
        EmergencyAccess.objects.filter(
            user_id=user.pk, patient_id=OuterRef(patient_ref), expires_at__gt=timezone.now()
        )
    )


def _is_active_user(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


def team_member_q(user, patient_ref: str = "pk") -> Q:
    """Rows whose patient has `user` on its team today (guardian grant and current membership)."""
    if not _is_active_user(user):
        return Q(pk__in=[])
    return Q(_granted(user, patient_ref)) & Q(_current_membership(user, patient_ref))


def visible_patient_ids(user) -> QuerySet:
    """Ids of the patients `user` may read now, as one subquery: the team rule (guardian
    view grant AND a current membership) UNION active emergency access.

    Filtering with `IN (this)` lets PostgreSQL start from the user's own few hundred rows
    and join out by index. The same rule written as `EXISTS AND EXISTS OR EXISTS` on every
    row cannot be turned into a join (the OR), so it scanned every patient: 1 s per API
    list at 100,000 patients (bench/results.md)."""
    team = PatientUserObjectPermission.objects.filter(
        user_id=user.pk,
        permission__codename=VIEW_PATIENT,
        permission__content_type__app_label="patients",
        content_object_id__in=TeamMembership.objects.current().filter(user_id=user.pk).values("patient_id"),
    ).values("content_object_id")
    glass = (
        EmergencyAccess.objects.filter(user_id=user.pk, expires_at__gt=timezone.now())
        .order_by()
        .values("patient_id")
    )
    return team.union(glass)


def patient_visible_q(user, patient_ref: str = "pk") -> Q:
    """Rows whose patient `user` may read: team members and active emergency access."""
    if not _is_active_user(user):
        return Q(pk__in=[])
    return Q(**{f"{patient_ref}__in": visible_patient_ids(user)})


def sensitivity_visible_q(user, patient_ref: str, sensitivity_ref: str = "sensitivity") -> Q:
    """Items that are not sensitive, or whose category the user's role on that patient
    allows. Works across patients (API lists), entirely in SQL."""
    through = SensitivityCategory.allowed_disciplines.through
    allowed_disciplines = through.objects.filter(
        sensitivitycategory_id=OuterRef(OuterRef(sensitivity_ref))
    ).values("discipline_id")
    # the same two conditions as team membership itself (grant and current role), so a
    # role whose grant has not been synced yet widens nothing
    by_team_role = Q(
        Exists(
            TeamMembership.objects.current()
            .filter(user_id=user.pk, patient_id=OuterRef(patient_ref))
            .filter(Q(role=TeamRole.CASE_MANAGER) | Q(discipline_id__in=Subquery(allowed_disciplines)))
        )
    ) & Q(_granted(user, patient_ref))
    # the model, not type(user): a session-authenticated API request hands a SimpleLazyObject
    user_disciplines = User.disciplines.through.objects.filter(user_id=user.pk).values("discipline_id")
    by_emergency_access = Q(_emergency_access(user, patient_ref)) & Q(
        Exists(
            through.objects.filter(
                sensitivitycategory_id=OuterRef(sensitivity_ref),
                discipline_id__in=Subquery(user_disciplines),
            )
        )
    )
    return Q(**{f"{sensitivity_ref}__isnull": True}) | by_team_role | by_emergency_access


# ---------------------------------------------------------------------------
# The same rules as SQL fragments, for set-based statements over many (user, patient)
# candidate rows at once (the reminder sweep's INSERT ... SELECT). Each mirrors the ORM
# rule named in its docstring; tests/test_access_sql_agrees.py evaluates both on every
# persona and edge case and asserts they answer alike. The fragments are composed from
# the column expressions the caller passes (never values); they read two bound
# parameters, which the caller supplies with `sql_params()`: %(today)s (the local date)
# and %(view_permission)s (the id of the patients.view_patient permission).
# ---------------------------------------------------------------------------
def sql_params(now: dt.datetime | None = None) -> dict[str, Any]:
    """The bound parameters the fragments below read."""
    return {
        "today": timezone.localdate(now or timezone.now()),
        "view_permission": Permission.objects.get(
            codename=VIEW_PATIENT, content_type__app_label="patients"
        ).pk,
    }


def current_membership_sql(alias: str = "m") -> str:
    """Membership row `alias` is current on %(today)s: `TeamMembershipQuerySet.current()`."""
    return (
        f"{alias}.status = '{MembershipStatus.ACTIVE.value}' AND {alias}.start_date <= %(today)s"
        f" AND ({alias}.end_date IS NULL OR {alias}.end_date >= %(today)s)"
    )


def team_member_sql(user_col: str, patient_col: str) -> str:
    """The user in `user_col` is on the team of the patient in `patient_col` today: an
    active account, a guardian view grant AND a current membership, `team_member_q`."""
    return f"""EXISTS (SELECT 1 FROM careteam_user au WHERE au.id = {user_col} AND au.is_active)
        AND EXISTS (
            SELECT 1 FROM careteam_patientuserobjectpermission g
            WHERE g.user_id = {user_col} AND g.content_object_id = {patient_col}
              AND g.permission_id = %(view_permission)s
        )
        AND EXISTS (
            SELECT 1 FROM careteam_teammembership m
            WHERE m.user_id = {user_col} AND m.patient_id = {patient_col} AND {current_membership_sql("m")}
        )"""  # noqa: S608 (composed from column names; values bound)


def sensitivity_team_sql(user_col: str, patient_col: str, sensitivity_col: str) -> str:
    """An item of the category in `sensitivity_col` (NULL: not sensitive) may be seen by
    the team member in `user_col`: its policy allows the discipline of one of their current
    memberships on the patient, or they are its case manager. The team-role branch of
    `sensitivity_visible_q` (its emergency-access branch concerns readers off the team,
    whom `team_member_sql` already leaves out)."""
    return f"""(
            {sensitivity_col} IS NULL
            OR EXISTS (
                SELECT 1 FROM careteam_teammembership m
                WHERE m.user_id = {user_col} AND m.patient_id = {patient_col} AND {current_membership_sql("m")}
                  AND (m.role = '{TeamRole.CASE_MANAGER.value}' OR m.discipline_id IN (
                      SELECT ad.discipline_id FROM careteam_sensitivitycategory_allowed_disciplines ad
                      WHERE ad.sensitivitycategory_id = {sensitivity_col}))
            )
        )"""  # noqa: S608 (composed from column names; values bound)


def team_member_may_see_sql(user_col: str, patient_col: str, sensitivity_col: str) -> str:
    """Whom a notification about an item may reach: `team_member_sql` AND
    `sensitivity_team_sql` (`team_member_q` & `sensitivity_visible_q`, and
    `team_members_who_may_see` for one patient)."""
    return f"{team_member_sql(user_col, patient_col)} AND {sensitivity_team_sql(user_col, patient_col, sensitivity_col)}"


def current_member_sql(patient_col: str, condition: str, alias: str = "m") -> str:
    """A JOIN condition picking the current memberships `alias` on the patient in
    `patient_col` that meet `condition` (a discipline's queue, the case manager)."""
    return f"{alias}.patient_id = {patient_col} AND {condition} AND {current_membership_sql(alias)}"


def case_manager_sql(alias: str = "m") -> str:
    """Membership row `alias` is a case manager's (`PatientAccess.is_case_manager`)."""
    return f"{alias}.role = '{TeamRole.CASE_MANAGER.value}'"


def team_members_who_may_see(patient_id: int, sensitivity_id: int | None = None) -> QuerySet:
    """Active users on the patient's team today (guardian grant and current membership)
    who may see an item of this sensitivity: whom a notification about it may reach."""
    on_team = TeamMembership.objects.current().filter(user_id=OuterRef("pk"), patient_id=patient_id)
    granted = PatientUserObjectPermission.objects.filter(
        user_id=OuterRef("pk"),
        content_object_id=patient_id,
        permission__codename=VIEW_PATIENT,
        permission__content_type__app_label="patients",
    )
    qs = User.objects.filter(is_active=True).filter(Exists(on_team), Exists(granted))
    if sensitivity_id is not None:
        allowed = SensitivityCategory.allowed_disciplines.through.objects.filter(
            sensitivitycategory_id=sensitivity_id
        ).values("discipline_id")
        qs = qs.filter(
            Exists(on_team.filter(Q(role=TeamRole.CASE_MANAGER) | Q(discipline_id__in=Subquery(allowed))))
        )
    return qs


def team_members_who_may_see_item(patient_id: int, item) -> QuerySet:
    """`team_members_who_may_see` for one plan item (goal, need, activity or None: the
    plan itself): a goal hidden with its needs is hidden from whoever may see none of
    them. Whom a notification or a mention about the item may reach."""
    qs = team_members_who_may_see(patient_id, getattr(item, "sensitivity_id", None))
    if item is None or item._meta.label_lower != GOAL:
        return qs
    # the rule of goal_links_visible_q, in SQL for the whole team: a goal with needs is
    # seen by whoever may see one of its needs or of the activities working towards it
    needs = item.needs.all()
    if not needs.exists():
        return qs
    activities = apps.get_model("careplans", "Activity").objects.filter(goals=item)
    categories = set(needs.values_list("sensitivity_id", flat=True)) | set(
        activities.values_list("sensitivity_id", flat=True)
    )
    if None in categories:
        return qs  # a need or activity everybody sees
    who = Q()
    for category in categories:
        who |= Q(pk__in=team_members_who_may_see(patient_id, category).values("pk"))
    return qs.filter(who)


# ---------------------------------------------------------------------------
# Restricted querysets: every list starts here
# ---------------------------------------------------------------------------
def patients_for(user) -> QuerySet:
    from patients.models import Patient

    return Patient.objects.filter(patient_visible_q(user, "pk"))


def team_patients_for(user) -> PatientQuerySet:
    """Patients on whose team the user is (emergency access excluded): the worklist."""
    from patients.models import Patient

    return Patient.objects.filter(team_member_q(user, "pk"))


def restrict(queryset: _QS, user, *, patient_path: str = "patient") -> _QS:
    """Restrict any queryset of patient data to what `user` may read.

    `patient_path` is the lookup from the model to its patient id (e.g. "care_plan__patient").
    Models with a `sensitivity` field are also filtered by the sensitivity policy.
    """
    ref = patient_path or "pk"
    qs = queryset.filter(patient_visible_q(user, ref))
    if _has_field(queryset.model, "sensitivity"):
        qs = qs.filter(sensitivity_visible_q(user, ref))
    # items made from a need (referrals) are as hidden as their need
    # (conversations: in conversation_items_visible_q, with their other items)
    if _has_field(queryset.model, "need") and queryset.model._meta.label_lower not in (
        "careplans.note",
        CONVERSATION,
    ):
        qs = qs.filter(sensitivity_visible_q(user, ref, "need__sensitivity"))
    if queryset.model._meta.label_lower == GOAL:
        qs = qs.filter(goal_links_visible_q(sensitivity_visible_q(user, "care_plan__patient")))
    if queryset.model._meta.label_lower == CONVERSATION:
        qs = qs.filter(conversation_items_visible_q(user, ref))
    return qs


def visible_related(user, model) -> QuerySet:
    """Rows of a plan item model (goal, need, activity) `user` may see, for a Prefetch of
    a relation shown on another item (an activity's needs, a handoff's activity): the
    same rule as the related item's own page."""
    return restrict(model._default_manager.all(), user, patient_path="care_plan__patient")


def visible_notes(user, queryset: QuerySet | None = None) -> QuerySet:
    """Comments and proposals `user` may read, across patients (API lists): `restrict`
    (the patient, the note's own category) and, as `PatientAccess.note_q` does for one
    patient, its target as it is now: a need or activity in a hidden category, or a goal
    hidden with its needs, hides its notes too."""
    if queryset is None:
        queryset = apps.get_model("careplans", "Note").objects.all()
    ref = "care_plan__patient"
    goals = restrict(apps.get_model("careplans", "Goal").objects.all(), user, patient_path=ref)
    return (
        restrict(queryset, user, patient_path=ref)
        .filter(sensitivity_visible_q(user, ref, "need__sensitivity"))
        .filter(sensitivity_visible_q(user, ref, "activity__sensitivity"))
        .filter(Q(goal__isnull=True) | Q(goal__in=goals.values("pk")))
    )


GOAL = "careplans.goal"
CONVERSATION = "careteam.conversation"
MESSAGE = "careteam.message"


# ---------------------------------------------------------------------------
# Conversations: as visible as the item they are about, and their own category
# ---------------------------------------------------------------------------
def conversation_items_visible_q(user, patient_ref: str = "patient") -> Q:
    """Conversations whose item the user may see now (`restrict` adds the patient and the
    conversation's own category): a need, an activity or a referral's need in a hidden
    category, or a goal hidden with its needs, hides the conversation too. Each item kind
    is one `IN (the user's visible items)` subquery, so the list still starts from the
    user's own patients and joins no item table."""

    def item_visible(field: str, app: str, model: str, path: str) -> Q:
        visible = restrict(apps.get_model(app, model).objects.all(), user, patient_path=path)
        return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__in": visible.values("pk")})

    return (
        item_visible("goal", "careplans", "Goal", "care_plan__patient")
        & item_visible("need", "careplans", "Need", "care_plan__patient")
        & item_visible("activity", "careplans", "Activity", "care_plan__patient")
        & item_visible("referral", "referrals", "Referral", "patient")
    )


def visible_conversations(user, queryset: QuerySet | None = None) -> QuerySet:
    """Conversations `user` may read, across patients (inbox, API, unread counts)."""
    if queryset is None:
        queryset = apps.get_model("careteam", "Conversation").objects.all()
    return restrict(queryset, user, patient_path="patient")


def visible_messages(user, queryset: QuerySet | None = None) -> QuerySet:
    """Messages of the conversations `user` may read."""
    if queryset is None:
        queryset = apps.get_model("careteam", "Message").objects.all()
    return queryset.filter(conversation__in=visible_conversations(user).values("pk"))


def conversation_rule_item(conversation):
    """The plan item whose visibility a conversation follows: its goal, need or activity,
    a referral's need; None for a handoff (seen by the whole team) or the patient."""
    if conversation.referral_id is not None:
        return conversation.referral.need
    for name in ("goal", "need", "activity"):
        if getattr(conversation, f"{name}_id") is not None:
            return getattr(conversation, name)
    return None


def conversation_audience(conversation) -> QuerySet:
    """Active members of the patient's team today who may see this conversation: whom a
    mention or any other notification about it may reach."""
    patient_id = conversation.patient_id
    qs = team_members_who_may_see_item(patient_id, conversation_rule_item(conversation))
    if conversation.sensitivity_id is not None:
        qs = qs.filter(pk__in=team_members_who_may_see(patient_id, conversation.sensitivity_id).values("pk"))
    return qs


def access_conversation(user, conversation_id, *, queryset: QuerySet | None = None):
    """One conversation with the user's access to its patient; 404 when missing, on a
    patient the user may not see, or hidden by its or its item's category (one answer)."""
    if queryset is None:
        queryset = apps.get_model("careteam", "Conversation").objects.select_related(
            "patient", "goal", "need", "activity", "handoff", "referral__need"
        )
    return access_item(user, queryset, conversation_id, patient_path="patient")


# ---------------------------------------------------------------------------
# Huddles: the patient's current team only (emergency access does not open them)
# ---------------------------------------------------------------------------
def visible_huddles(user, queryset: QuerySet | None = None) -> QuerySet:
    """Huddles on patients whose team `user` is on today (lists, counts, the API). A
    former member, a future one and an emergency access reader see none."""
    if queryset is None:
        queryset = apps.get_model("careteam", "Huddle").objects.all()
    return queryset.filter(team_member_q(user, "patient"))


def access_huddle(user, huddle_id, *, patient_id=None):
    """One huddle with the user's access to its patient; 404 when missing, on another
    patient than `patient_id`, or when the user is not on the patient's team today (one
    answer, as for any hidden object)."""
    queryset = apps.get_model("careteam", "Huddle").objects.select_related(
        "patient", "conversation", "started_by", "closed_by"
    )
    try:
        huddle = queryset.get(pk=int(huddle_id))
    except (queryset.model.DoesNotExist, TypeError, ValueError, OverflowError):
        _as_if_hidden(user)
        raise Http404("Not found.") from None
    access = patient_access(user, huddle.patient)
    if not access.on_team or (patient_id is not None and huddle.patient_id != int(patient_id)):
        raise Http404("Not found.")
    return huddle, access


def goal_links_visible_q(item_visible: Q) -> Q:
    """Goals the viewer may see, given the rule for a need or activity they may see
    (`item_visible`, a Q on either): a goal with no linked need, or with at least one
    visible need or visible activity. A goal whose needs are all hidden and that no
    visible activity works towards exists for those needs and is hidden with them."""
    needs = apps.get_model("careplans", "Need").objects.filter(goals=OuterRef("pk"))
    activities = apps.get_model("careplans", "Activity").objects.filter(goals=OuterRef("pk"))
    return (
        ~Q(Exists(needs)) | Q(Exists(needs.filter(item_visible))) | Q(Exists(activities.filter(item_visible)))
    )


def _has_field(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:  # noqa: BLE001 - FieldDoesNotExist
        return False
    return True


# ---------------------------------------------------------------------------
# One patient: what may this user do here?
# ---------------------------------------------------------------------------
@dataclass
class PatientAccess:
    """What one user may do on one patient's record, computed once per request."""

    patient: Patient
    user: Any
    memberships: list[TeamMembership] = field(default_factory=list)
    emergency_access: EmergencyAccess | None = None
    visible_sensitivity_ids: frozenset[int] = frozenset()
    _hidden_goal_ids: frozenset[int] | None = field(default=None, repr=False)

    @property
    def on_team(self) -> bool:
        return bool(self.memberships)

    @property
    def can_view(self) -> bool:
        return self.on_team or self.emergency_access is not None

    @property
    def read_only(self) -> bool:
        return not self.on_team

    @property
    def roles(self) -> set[str]:
        return {m.role for m in self.memberships}

    @property
    def discipline_ids(self) -> set[int]:
        return {m.discipline_id for m in self.memberships}

    @property
    def is_case_manager(self) -> bool:
        return TeamRole.CASE_MANAGER in self.roles

    @property
    def is_lead(self) -> bool:
        return TeamRole.LEAD in self.roles

    @property
    def can_edit_any(self) -> bool:
        return self.is_case_manager or self.is_lead

    @property
    def can_manage_team(self) -> bool:
        return self.is_case_manager or self.is_lead

    @property
    def can_view_access_log(self) -> bool:
        """Who opened this patient's record: the case manager and the plan lead."""
        return self.is_case_manager or self.is_lead

    def can_see_sensitivity(self, sensitivity_id: int | None) -> bool:
        return sensitivity_id is None or sensitivity_id in self.visible_sensitivity_ids

    def sensitivity_q(self, field_name: str = "sensitivity") -> Q:
        return Q(**{f"{field_name}__isnull": True}) | Q(
            **{f"{field_name}__in": list(self.visible_sensitivity_ids)}
        )

    def goal_q(self) -> Q:
        """Goals of this patient the user may see (see `goal_links_visible_q`)."""
        return goal_links_visible_q(self.sensitivity_q()) & self.sensitivity_q("sensitivity")

    def hidden_goal_ids(self) -> frozenset[int]:
        """This patient's goals hidden from the user with their needs (one query, kept
        for the request)."""
        if self._hidden_goal_ids is None:
            goals = apps.get_model("careplans", "Goal").objects.filter(care_plan__patient_id=self.patient.pk)
            self._hidden_goal_ids = frozenset(goals.exclude(self.goal_q()).values_list("pk", flat=True))
        return self._hidden_goal_ids

    def note_q(self) -> Q:
        """Comments and proposals (and the closing notes referral outcomes write): their
        own category and their target's category as it is now, so a note on a need
        marked sensitive later is hidden with it, and a note on a hidden goal too."""
        return (
            self.sensitivity_q("sensitivity")
            & self.sensitivity_q("need__sensitivity")
            & self.sensitivity_q("activity__sensitivity")
            & ~Q(goal_id__in=list(self.hidden_goal_ids()))
        )

    def can_see(self, obj) -> bool:
        """The one rule for a related object shown on another item's page (the needs an
        activity addresses, the activity of a handoff, the need of a referral, the target
        of a note, the goals of a need): the same answer as opening that object's own
        page."""
        if obj is None:
            return False
        if obj._meta.label_lower == GOAL:
            return obj.pk not in self.hidden_goal_ids()
        if obj._meta.label_lower == CONVERSATION:
            return self.can_see_conversation(obj)
        if obj._meta.label_lower == MESSAGE:
            return self.can_see_conversation(obj.conversation)
        return self.can_see_sensitivity(getattr(obj, "sensitivity_id", None))

    def conversation_q(self, prefix: str = "") -> Q:
        """This patient's conversations the user may see (`prefix`: the lookup to the
        conversation, e.g. "conversation__" for messages): the rule of `can_see_conversation`."""
        p = prefix
        return (
            self.sensitivity_q(f"{p}sensitivity")
            & self.sensitivity_q(f"{p}need__sensitivity")
            & self.sensitivity_q(f"{p}activity__sensitivity")
            & self.sensitivity_q(f"{p}referral__need__sensitivity")
            & ~Q(**{f"{p}goal_id__in": list(self.hidden_goal_ids())})
        )

    def can_see_conversation(self, conversation) -> bool:
        """Its own category, and its item as the item's own page decides now."""
        if not self.can_view or conversation.patient_id != self.patient.pk:
            return False
        if not self.can_see_sensitivity(conversation.sensitivity_id):
            return False
        item = conversation_rule_item(conversation)
        return item is None or self.can_see(item)

    def can_see_note(self, note) -> bool:
        """A comment or proposal: its own category and its target's as it is now (the
        rule of `note_q`, for one note already loaded with its target)."""
        if not self.can_view or not self.can_see_sensitivity(note.sensitivity_id):
            return False
        target = note.goal or note.need or note.activity
        return target is None or self.can_see(target)

    def visible(self, objects) -> list:
        """Of related objects (a manager, queryset or list), those this user may see.
        Uses a prefetched relation when there is one, so lists stay at a fixed number of
        queries."""
        if hasattr(objects, "all"):
            objects = objects.all()
        return [obj for obj in objects if self.can_see(obj)]

    def can_edit_item(self, item) -> bool:
        """Goals, needs and activities: own discipline's items, or anything for case
        manager and lead. Items with no owning discipline are editable by any member."""
        if not self.on_team:
            return False
        if not self.can_see_sensitivity(getattr(item, "sensitivity_id", None)):
            return False
        if self.can_edit_any:
            return True
        owner = getattr(item, "owner_discipline_id", None)
        return owner is None or owner in self.discipline_ids

    def owner_problem(self, item) -> dict[str, str] | None:
        """Why this member may not save `item` (a new or changed goal, need or activity)
        with its owner and assignee, as {field: message}; None when they may. The case
        manager and the plan lead give items to any discipline and anyone on the team;
        other members only to a discipline they hold on this team (or none), assigned to
        nobody, themselves or a colleague holding that discipline here. Work for another
        discipline goes to it as a handoff."""
        if not self.on_team or self.can_edit_any:
            return None
        owner = getattr(item, "owner_discipline_id", None)
        if owner is not None and owner not in self.discipline_ids:
            return {
                "owner_discipline": "You can add items owned by your own discipline; the case manager "
                "or the plan lead can add them for another discipline (or send a handoff)."
            }
        assignee = getattr(item, "assigned_to_id", None)
        if assignee is None or assignee == self.user.pk:
            return None
        colleague = (
            owner is not None
            and TeamMembership.objects.current()
            .filter(patient_id=self.patient.pk, user_id=assignee, discipline_id=owner)
            .exists()
        )
        if colleague:
            return None
        return {
            "assigned_to": "You can assign an activity to yourself or a colleague of its discipline on "
            "this team; the case manager or the plan lead can assign it to anyone."
        }

    def can_contribute(self) -> bool:
        """Add needs, goals, notes and proposals; send handoffs and referrals."""
        return self.on_team

    # -- raising helpers ----------------------------------------------------
    def require_edit(self, item=None) -> None:
        ok = self.on_team if item is None else self.can_edit_item(item)
        if not ok:
            raise ReadOnlyAccess(self._denial_message(item))

    def require_manage_team(self) -> None:
        if not self.can_manage_team:
            raise PermissionDenied("Only the patient's case manager or plan lead can change the care team.")

    def _denial_message(self, item) -> str:
        if self.emergency_access is not None and not self.on_team:
            return EMERGENCY_ACCESS_READ_ONLY
        if item is not None and getattr(item, "owner_discipline", None) is not None:
            return (
                f"This item is owned by {item.owner_discipline}. You can comment on it or propose "
                "a change; the owning discipline, the case manager or the plan lead can edit it."
            )
        return "You are not on this patient's care team."


def patient_access(user, patient: Patient) -> PatientAccess:
    """Compute what `user` may do on `patient` (2-3 queries)."""
    access = PatientAccess(patient=patient, user=user)
    if not _is_active_user(user):
        return access
    granted = PatientUserObjectPermission.objects.filter(
        user_id=user.pk, content_object_id=patient.pk, permission__codename=VIEW_PATIENT
    ).exists()
    if granted:
        access.memberships = list(
            TeamMembership.objects.current()
            .filter(user_id=user.pk, patient_id=patient.pk)
            .select_related("discipline")
        )
    if not access.memberships:
        access.emergency_access = (
            EmergencyAccess.objects.filter(
                user_id=user.pk, patient_id=patient.pk, expires_at__gt=timezone.now()
            )
            .order_by("-expires_at")
            .first()
        )
    if access.can_view:
        if access.is_case_manager:
            access.visible_sensitivity_ids = frozenset(
                SensitivityCategory.objects.values_list("pk", flat=True)
            )
        else:
            disciplines = (
                access.discipline_ids
                if access.on_team
                else set(user.disciplines.values_list("pk", flat=True))
            )
            access.visible_sensitivity_ids = frozenset(
                SensitivityCategory.objects.filter(allowed_disciplines__in=disciplines)
                .values_list("pk", flat=True)
                .distinct()
            )
    return access


def emergency_access_only(user, patient_id: int) -> bool:
    """True when the user's only way into this patient's record is emergency access
    (no current team membership): everything they send must be read-only."""
    if not _is_active_user(user):
        return False
    on_team = (
        TeamMembership.objects.current().filter(user_id=user.pk, patient_id=patient_id).exists()
        and PatientUserObjectPermission.objects.filter(
            user_id=user.pk, content_object_id=patient_id, permission__codename=VIEW_PATIENT
        ).exists()
    )
    if on_team:
        return False
    return EmergencyAccess.objects.filter(
        user_id=user.pk, patient_id=patient_id, expires_at__gt=timezone.now()
    ).exists()


def _as_if_hidden(user) -> None:
    """A missing id costs the same queries as a hidden one: the access check runs against
    a patient that cannot exist, so the two 404s cannot be told apart by their timing."""
    from patients.models import Patient

    patient_access(user, Patient(pk=0))


def access_patient_by_id(user, patient_id, *, for_write: bool = False) -> PatientAccess:
    """The patient and the user's access to it; 404 if missing or not visible (the same
    answer, so existence never leaks); 403 if visible but `for_write` and read-only."""
    from patients.models import Patient

    try:
        patient = Patient.objects.get(pk=int(patient_id))
    except (Patient.DoesNotExist, TypeError, ValueError):
        _as_if_hidden(user)
        raise Http404("No such patient.") from None
    access = patient_access(user, patient)
    if not access.can_view:
        raise Http404("No such patient.")
    if for_write:
        access.require_edit()
    return access


def access_item(user, queryset: QuerySet, pk, *, patient_path: str) -> tuple[Any, PatientAccess]:
    """Fetch one plan item (goal, need, activity, handoff, referral, ...) with the user's
    access to its patient; 404 for missing, invisible or sensitive-and-hidden items."""
    try:
        obj = queryset.get(pk=pk)
    except (queryset.model.DoesNotExist, TypeError, ValueError):
        _as_if_hidden(user)
        raise Http404("Not found.") from None
    patient = obj
    for part in patient_path.split("__"):
        patient = getattr(patient, part)
    access = patient_access(user, patient)
    if not access.can_view or not access.can_see(obj):
        raise Http404("Not found.")
    return obj, access


# ---------------------------------------------------------------------------
# Views: one decorator that checks, exposes and audits access to one patient
# ---------------------------------------------------------------------------
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def audited_patient_view(view=None, *, for_write: bool = False):
    """Decorate a function view whose URL has a `patient_id` kwarg.

    Anonymous users go to the login page; a patient the user may not see is a 404 (the
    middleware audits the denial); a POST (or any request when `for_write`) by a read-only
    user is a 403; otherwise `request.patient_access` holds the PatientAccess, and a
    successful read is audited once (unless the view audited it itself)."""
    from django.contrib.auth.views import redirect_to_login

    from .audit import audit, audited_outcomes
    from .models import AuditAction

    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            access = access_patient_by_id(request.user, kwargs.get("patient_id"))
            if for_write or request.method not in SAFE_METHODS:
                access.require_edit()
            request.patient_access = access
            response = fn(request, *args, **kwargs)
            if (
                request.method in SAFE_METHODS
                and response.status_code == 200
                and not audited_outcomes(request)
            ):
                audit(
                    user=request.user,
                    action=AuditAction.VIEW,
                    obj=access.patient,
                    patient=access.patient,
                    request=request,
                    detail="emergency access" if access.read_only else "",
                )
            return response

        return wrapper

    return decorator(view) if view is not None else decorator


# ---------------------------------------------------------------------------
# History (django-simple-history) filtered like the live rows
# ---------------------------------------------------------------------------
@functools.cache
def historical_model(model):
    """simple-history's model of `model`'s versions. Looked up once: `model.history` builds
    a new manager class on every access (a millisecond each)."""
    return model.history.model


def history_rows(access: PatientAccess, model, queryset: QuerySet | None = None) -> QuerySet:
    """Historical rows of `model` belonging to `access.patient` that the user may see.

    For models with a `sensitivity` field, every version of an item that is now, or ever
    was, in a category hidden from the user is left out: an earlier or later version of
    a behavioural-health need carries the same sensitive text even when its own row is
    not flagged."""
    hist = historical_model(model)
    qs = queryset if queryset is not None else hist.objects.all()
    if not access.can_view:
        return qs.none()
    patient_id = access.patient.pk
    scope: dict[str, Any]
    if model._meta.label_lower == "patients.patient":
        scope = {"id": patient_id}
    elif _has_field(model, "patient"):
        scope = {"patient_id": patient_id}
    elif _has_field(model, "care_plan"):
        from careplans.models import CarePlan

        scope = {"care_plan_id__in": CarePlan.objects.filter(patient_id=patient_id).values("pk")}
    else:
        raise ValueError(f"{model._meta.label} has no path to a patient")
    qs = qs.filter(**scope)
    if model._meta.label_lower == GOAL:
        # a goal hidden with its needs now: none of its versions either
        qs = qs.exclude(id__in=list(access.hidden_goal_ids()))
    if _has_field(model, "sensitivity"):
        visible = access.sensitivity_q("sensitivity")
        ever_hidden = hist.objects.filter(**scope).exclude(visible).values("id")
        now_hidden = model._default_manager.filter(**scope).exclude(visible).values("pk")
        qs = qs.filter(visible).exclude(id__in=ever_hidden).exclude(id__in=now_hidden)
    return qs


def history_for(access: PatientAccess, plan) -> list:
    """Every visible saved version of the plan and its goals, needs and activities, newest
    first (one query per model). The UI's `careplans.selectors.plan_history` and any
    export or API over history must apply the same rule."""
    from careplans.models import Activity, CarePlan, Goal, Need

    if not access.can_view or plan.patient_id != access.patient.pk:
        return []
    rows: list = []
    for model in (CarePlan, Goal, Need, Activity):
        qs = history_rows(access, model)
        qs = qs.filter(id=plan.pk) if model is CarePlan else qs.filter(care_plan_id=plan.pk)
        rows.extend(qs.select_related("history_user"))
    rows.sort(key=lambda r: (r.history_date, r.history_id), reverse=True)
    return rows
