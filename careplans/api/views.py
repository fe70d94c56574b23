"""Viewsets of care plans, goals, needs, activities and notes. Thin: the care-plan
services decide; the shared bases of `careteam.api` answer ETags, If-Match, errors and
the audit."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action

from careplans import services as plan_services
from careplans.models import Activity, CarePlan, Goal, Need, Note
from careteam.api.base import PatientDataViewSet, documented
from careteam.api.errors import Conflict
from careteam.audit import note_refusal
from careteam.concurrency import StaleVersionError
from careteam.permissions import (
    PatientAccess,
    access_patient_by_id,
    patient_access,
    visible_notes,
    visible_related,
)

from . import filters
from . import serializers as s


class PlanItemViewSet(PatientDataViewSet):
    """Goals, needs and activities: created by the *_create services, changed by
    item_update (status machine, version check, ownership rules, history)."""

    patient_path = "care_plan__patient"
    create_service = None

    def perform_service_create(self, data: dict):
        plan = data.pop("care_plan")
        access = patient_access(self.request.user, plan.patient)
        if not access.can_view:
            raise serializers.ValidationError({"care_plan": ["No such care plan."]})
        return type(self).create_service(
            access=access, plan=plan, by=self.request.user, request=self.request, **data
        )

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        # a new list of linked needs replaces only those the caller can see (item_update)
        return plan_services.item_update(
            access=access,
            item=obj,
            by=self.request.user,
            changes=data,
            expected_version=version,
            request=self.request,
        )


@documented(s.CarePlanSerializer, s.CarePlanCreateSerializer, s.CarePlanUpdateSerializer)
class CarePlanViewSet(PatientDataViewSet):
    serializer_class = s.CarePlanSerializer
    create_serializer_class = s.CarePlanCreateSerializer
    update_serializer_class = s.CarePlanUpdateSerializer
    filterset_class = filters.CarePlanFilter
    ordering_fields = ["period_start", "review_due", "status", "id", "updated_at"]
    lookup_url_kwarg = "plan_id"
    audit_type = "careplans.careplan"

    def base_queryset(self):
        return CarePlan.objects.all()

    def perform_service_create(self, data: dict):
        patient = data.pop("patient")
        access = access_patient_by_id(self.request.user, patient.pk)
        data = {k: v for k, v in data.items() if v is not None or k in ("period_end", "review_due")}
        return plan_services.careplan_create(
            access=access, by=self.request.user, request=self.request, **data
        )

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()

    perform_service_update = PlanItemViewSet.perform_service_update


@documented(s.GoalSerializer, s.GoalCreateSerializer, s.GoalUpdateSerializer)
class GoalViewSet(PlanItemViewSet):
    serializer_class = s.GoalSerializer
    create_serializer_class = s.GoalCreateSerializer
    update_serializer_class = s.GoalUpdateSerializer
    filterset_class = filters.GoalFilter
    ordering_fields = ["id", "target_due", "priority", "lifecycle_status", "updated_at"]
    lookup_url_kwarg = "goal_id"
    audit_type = "careplans.goal"
    create_service = staticmethod(plan_services.goal_create)

    def base_queryset(self):
        return Goal.objects.select_related("care_plan", "owner_discipline", "sensitivity")


@documented(s.NeedSerializer, s.NeedCreateSerializer, s.NeedUpdateSerializer)
class NeedViewSet(PlanItemViewSet):
    serializer_class = s.NeedSerializer
    create_serializer_class = s.NeedCreateSerializer
    update_serializer_class = s.NeedUpdateSerializer
    filterset_class = filters.NeedFilter
    ordering_fields = ["id", "status", "domain", "category", "updated_at"]
    lookup_url_kwarg = "need_id"
    audit_type = "careplans.need"
    create_service = staticmethod(plan_services.need_create)

    def base_queryset(self):
        return Need.objects.select_related("care_plan", "sensitivity").prefetch_related(
            Prefetch("goals", queryset=Goal.objects.only("id"))
        )


@documented(s.ActivitySerializer, s.ActivityCreateSerializer, s.ActivityUpdateSerializer)
class ActivityViewSet(PlanItemViewSet):
    serializer_class = s.ActivitySerializer
    create_serializer_class = s.ActivityCreateSerializer
    update_serializer_class = s.ActivityUpdateSerializer
    filterset_class = filters.ActivityFilter
    ordering_fields = ["id", "due_date", "status", "updated_at"]
    lookup_url_kwarg = "activity_id"
    audit_type = "careplans.activity"
    create_service = staticmethod(plan_services.activity_create)

    def base_queryset(self):
        # linked needs the caller may not see (sensitive) are left out, as in the editor
        visible_needs = visible_related(self.request.user, Need).only("id")
        return Activity.objects.select_related(
            "care_plan", "owner_discipline", "sensitivity"
        ).prefetch_related(
            Prefetch("goals", queryset=Goal.objects.only("id")),
            Prefetch("needs", queryset=visible_needs, to_attr="visible_needs"),
        )


# ---------------------------------------------------------------------------
# Comments and proposals
# ---------------------------------------------------------------------------
DECISION_RESPONSES = {200: s.NoteSerializer}


@extend_schema_view(
    # no ETag: a note has no version
    list=extend_schema(responses=s.NoteSerializer),
    retrieve=extend_schema(responses=s.NoteSerializer),
    create=extend_schema(request=s.NoteCreateSerializer, responses={201: s.NoteSerializer}),
    accept=extend_schema(request=None, responses=DECISION_RESPONSES),
    decline=extend_schema(request=s.NoteDeclineSerializer, responses=DECISION_RESPONSES),
)
class NoteViewSet(PatientDataViewSet):
    """Comments and proposals: added by note_add (notifications, @mentions), decided by
    note_accept / note_decline. A note is never edited, so there is no PATCH: a
    proposal's `target_version` is its precondition."""

    serializer_class = s.NoteSerializer
    create_serializer_class = s.NoteCreateSerializer
    filterset_class = filters.NoteFilter
    ordering_fields = ["id", "created_at", "status"]
    lookup_url_kwarg = "note_id"
    patient_path = "care_plan__patient"
    audit_type = "careplans.note"
    http_method_names = ["get", "post", "head", "options"]

    def base_queryset(self):
        return Note.objects.select_related("care_plan", "author", "sensitivity")

    def get_queryset(self):
        """`visible_notes`: also hides notes whose target the caller may not see."""
        if getattr(self, "swagger_fake_view", False):
            return Note.objects.none()
        return visible_notes(self.request.user, self.base_queryset())

    def perform_service_create(self, data: dict):
        plan = data.pop("care_plan")
        access = patient_access(self.request.user, plan.patient)
        return plan_services.note_add(
            access=access, plan=plan, by=self.request.user, request=self.request, **data
        )

    def _decision_target(self):
        """The note (404 unless visible) with the caller's access; read-only access is
        refused (403) before the body is read, as on PATCH."""
        note = self.get_object()
        access = self.access_for(note)
        access.require_edit()
        return note, access

    @action(detail=True, methods=["post"])
    def accept(self, request, note_id=None, format=None):  # noqa: A002 - DRF's suffix kwarg
        """Accept a proposal: its changes are saved to the item through the item's own
        update, from the version proposed on (409 if the item changed since: nothing is
        changed, the proposal stays open)."""
        note, access = self._decision_target()
        try:
            with transaction.atomic():
                note = plan_services.note_accept(access=access, note=note, by=request.user, request=request)
        except StaleVersionError as exc:
            note_refusal(request, exc.audit_reason)
            raise Conflict(
                f"The {exc.current._meta.verbose_name} was changed after this proposal was made "
                f"(version {exc.expected} then, {exc.current.version} now), so nothing was changed."
            ) from exc
        return self.render(self.reload(note))

    @action(detail=True, methods=["post"])
    def decline(self, request, note_id=None, format=None):  # noqa: A002 - DRF's suffix kwarg
        """Decline a proposal with a reason, which the proposer is told."""
        note, access = self._decision_target()
        data = self.input(s.NoteDeclineSerializer)
        with transaction.atomic():
            note = plan_services.note_decline(
                access=access, note=note, by=request.user, reason=data["reason"], request=request
            )
        return self.render(self.reload(note))
