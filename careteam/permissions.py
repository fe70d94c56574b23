"""The one place that decides who may see and change patient data.

Rules (deny by default):
- A person sees a patient, the care plans and everything under them only while they hold a
  current TeamMembership on that patient's team. Memberships grant guardian object
  permissions on the Patient (direct foreign-key table `PatientUserObjectPermission`);
  lists are filtered in SQL with EXISTS over that table AND a current membership, so the
  grant also lapses at the membership's end date even before the nightly sync revokes it.
- Break-the-glass gives a clinician not on the team read-only access for a limited time.
- Items flagged with a SensitivityCategory are visible only to team members whose
  discipline the category's policy allows, plus the patient's case manager (and
  break-the-glass users whose own discipline the policy allows).
- A clinician edits items owned by their discipline; the case manager and the plan lead
  edit any item and manage the team. Administrators see no clinical data unless on the team.

Views, API endpoints, exports and tasks all call this module; none writes its own check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from .models import (
    BreakGlassAccess,
    PatientUserObjectPermission,
    SensitivityCategory,
    TeamMembership,
    TeamRole,
)

if TYPE_CHECKING:
    from patients.models import Patient

VIEW_PATIENT = "view_patient"
EDIT_PLAN = "edit_plan"
MANAGE_TEAM = "manage_team"

# guardian permissions a role grants on the Patient
ROLE_PERMISSIONS = {
    TeamRole.MEMBER: {VIEW_PATIENT},
    TeamRole.LEAD: {VIEW_PATIENT, EDIT_PLAN, MANAGE_TEAM},
    TeamRole.CASE_MANAGER: {VIEW_PATIENT, EDIT_PLAN, MANAGE_TEAM},
}


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


def _break_glass(user, patient_ref: str) -> Exists:
    return Exists(
        BreakGlassAccess.objects.filter(
            user_id=user.pk, patient_id=OuterRef(patient_ref), expires_at__gt=timezone.now()
        )
    )


def team_member_q(user, patient_ref: str = "pk") -> Q:
    """Rows whose patient has `user` on its team today (guardian grant and current membership)."""
    if not getattr(user, "is_authenticated", False):
        return Q(pk__in=[])
    return Q(_granted(user, patient_ref)) & Q(_current_membership(user, patient_ref))


def patient_visible_q(user, patient_ref: str = "pk") -> Q:
    """Rows whose patient `user` may read: team members and active break-the-glass."""
    if not getattr(user, "is_authenticated", False):
        return Q(pk__in=[])
    return team_member_q(user, patient_ref) | Q(_break_glass(user, patient_ref))


def sensitivity_visible_q(user, patient_ref: str, sensitivity_ref: str = "sensitivity") -> Q:
    """Items that are not sensitive, or whose category the user's role on that patient
    allows. Works across patients (API lists), entirely in SQL."""
    through = SensitivityCategory.allowed_disciplines.through
    allowed_disciplines = through.objects.filter(
        sensitivitycategory_id=OuterRef(OuterRef(sensitivity_ref))
    ).values("discipline_id")
    by_team_role = Exists(
        TeamMembership.objects.current()
        .filter(user_id=user.pk, patient_id=OuterRef(patient_ref))
        .filter(Q(role=TeamRole.CASE_MANAGER) | Q(discipline_id__in=Subquery(allowed_disciplines)))
    )
    user_disciplines = type(user).disciplines.through.objects.filter(user_id=user.pk).values("discipline_id")
    by_break_glass = Q(_break_glass(user, patient_ref)) & Q(
        Exists(
            through.objects.filter(
                sensitivitycategory_id=OuterRef(sensitivity_ref),
                discipline_id__in=Subquery(user_disciplines),
            )
        )
    )
    return Q(**{f"{sensitivity_ref}__isnull": True}) | Q(by_team_role) | by_break_glass


# ---------------------------------------------------------------------------
# Restricted querysets: every list starts here
# ---------------------------------------------------------------------------
def patients_for(user) -> QuerySet:
    from patients.models import Patient

    return Patient.objects.filter(patient_visible_q(user, "pk"))


def team_patients_for(user) -> QuerySet:
    """Patients on whose team the user is (break-the-glass excluded): the worklist."""
    from patients.models import Patient

    return Patient.objects.filter(team_member_q(user, "pk"))


def restrict(queryset: QuerySet, user, *, patient_path: str = "patient") -> QuerySet:
    """Restrict any queryset of patient data to what `user` may read.

    `patient_path` is the lookup from the model to its patient id (e.g. "care_plan__patient").
    Models with a `sensitivity` field are also filtered by the sensitivity policy.
    """
    ref = patient_path or "pk"
    qs = queryset.filter(patient_visible_q(user, ref))
    if _has_field(queryset.model, "sensitivity"):
        qs = qs.filter(sensitivity_visible_q(user, ref))
    return qs


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
    break_glass: BreakGlassAccess | None = None
    visible_sensitivity_ids: frozenset[int] = frozenset()

    @property
    def on_team(self) -> bool:
        return bool(self.memberships)

    @property
    def can_view(self) -> bool:
        return self.on_team or self.break_glass is not None

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

    def can_see_sensitivity(self, sensitivity_id: int | None) -> bool:
        return sensitivity_id is None or sensitivity_id in self.visible_sensitivity_ids

    def sensitivity_q(self, field_name: str = "sensitivity") -> Q:
        return Q(**{f"{field_name}__isnull": True}) | Q(
            **{f"{field_name}__in": list(self.visible_sensitivity_ids)}
        )

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
        if self.break_glass is not None and not self.on_team:
            return "Emergency access is read-only."
        if item is not None and getattr(item, "owner_discipline", None) is not None:
            return (
                f"This item is owned by {item.owner_discipline}. You can comment on it or propose "
                "a change; the owning discipline, the case manager or the plan lead can edit it."
            )
        return "You are not on this patient's care team."


def patient_access(user, patient: Patient) -> PatientAccess:
    """Compute what `user` may do on `patient` (2-3 queries)."""
    access = PatientAccess(patient=patient, user=user)
    if not getattr(user, "is_authenticated", False):
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
        access.break_glass = (
            BreakGlassAccess.objects.filter(
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


def access_patient_by_id(user, patient_id, *, for_write: bool = False) -> PatientAccess:
    """The patient and the user's access to it; 404 if missing or not visible (the same
    answer, so existence never leaks); 403 if visible but `for_write` and read-only."""
    from patients.models import Patient

    try:
        patient = Patient.objects.get(pk=int(patient_id))
    except (Patient.DoesNotExist, TypeError, ValueError):
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
        raise Http404("Not found.") from None
    patient = obj
    for part in patient_path.split("__"):
        patient = getattr(patient, part)
    access = patient_access(user, patient)
    if not access.can_view or not access.can_see_sensitivity(getattr(obj, "sensitivity_id", None)):
        raise Http404("Not found.")
    return obj, access
