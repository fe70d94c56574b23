"""Serializers of care plans, their items and notes: output serializers render (with
hyperlinks to related objects), input serializers only validate the shape of a request;
the services decide the rest."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from careplans.models import (
    STATEMENT_MAX_LENGTH,
    STATUS_REASON_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    Activity,
    ActivityStatus,
    CarePlan,
    CarePlanIntent,
    CarePlanStatus,
    Goal,
    GoalAchievement,
    GoalLifecycle,
    Need,
    Note,
    NoteKind,
)
from careteam.api.serializers import (
    LinksField,
    PrefetchedIdsField,
    RestrictedPrimaryKeyField,
    absolute_url,
    discipline_field,
    identity,
    link,
    sensitivity_field,
)
from careteam.models import User
from patients.models import Patient


class CarePlanSerializer(serializers.ModelSerializer):
    url = identity("api-care-plan-detail", "plan_id")
    patient = link("api-patient-detail", "patient_id")
    links = LinksField(
        {
            "goals": ("api-goal-list", "care_plan"),
            "needs": ("api-need-list", "care_plan"),
            "activities": ("api-activity-list", "care_plan"),
        },
        fhir="CarePlan",
    )

    class Meta:
        model = CarePlan
        fields = [
            "id",
            "url",
            "patient",
            "patient_id",
            "title",
            "description",
            "status",
            "status_reason",
            "intent",
            "period_start",
            "period_end",
            "review_due",
            "author_id",
            "version",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields


class CarePlanCreateSerializer(serializers.Serializer):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(
        max_length=TEXT_MAX_LENGTH, required=False, allow_blank=True, default=""
    )
    status = serializers.ChoiceField(choices=CarePlanStatus.choices, default=CarePlanStatus.DRAFT)
    intent = serializers.ChoiceField(choices=CarePlanIntent.choices, default=CarePlanIntent.PLAN)
    period_start = serializers.DateField(required=False, allow_null=True)
    period_end = serializers.DateField(required=False, allow_null=True)
    review_due = serializers.DateField(required=False, allow_null=True)


class CarePlanUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=TEXT_MAX_LENGTH, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=CarePlanStatus.choices, required=False)
    status_reason = serializers.CharField(
        max_length=STATUS_REASON_MAX_LENGTH, required=False, allow_blank=True
    )
    intent = serializers.ChoiceField(choices=CarePlanIntent.choices, required=False)
    period_start = serializers.DateField(required=False)
    period_end = serializers.DateField(required=False, allow_null=True)
    review_due = serializers.DateField(required=False, allow_null=True)


class GoalSerializer(serializers.ModelSerializer):
    url = identity("api-goal-detail", "goal_id")
    care_plan = link("api-care-plan-detail", "plan_id")
    owner_discipline = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    achievement_status = serializers.ChoiceField(
        choices=GoalAchievement.choices, allow_blank=True, read_only=True
    )
    sensitivity = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    shared_with_patient = serializers.BooleanField(
        source="is_shared_with_patient",
        read_only=True,
        help_text="Shown in the patient portal (a sensitive item only once shared explicitly).",
    )
    fhir = serializers.SerializerMethodField()

    class Meta:
        model = Goal
        fields = [
            "id",
            "url",
            "care_plan",
            "care_plan_id",
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
            "shared_with_patient",
            "version",
            "created_at",
            "updated_at",
            "fhir",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_fhir(self, obj) -> str:
        return absolute_url(self.context, f"/fhir/Goal/{obj.pk}")


class GoalWriteSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=STATEMENT_MAX_LENGTH)
    status_reason = serializers.CharField(
        max_length=STATUS_REASON_MAX_LENGTH, required=False, allow_blank=True
    )
    expressed_by = serializers.ChoiceField(
        choices=Goal._meta.get_field("expressed_by").choices, required=False
    )
    priority = serializers.ChoiceField(choices=Goal._meta.get_field("priority").choices, required=False)
    owner_discipline = discipline_field(required=False, allow_null=True)
    target_measure = serializers.CharField(max_length=200, required=False, allow_blank=True)
    target_value = serializers.CharField(max_length=100, required=False, allow_blank=True)
    target_due = serializers.DateField(required=False, allow_null=True)
    lifecycle_status = serializers.ChoiceField(choices=GoalLifecycle.choices, required=False)
    achievement_status = serializers.ChoiceField(
        choices=GoalAchievement.choices, required=False, allow_blank=True
    )
    sensitivity = sensitivity_field()


class GoalCreateSerializer(GoalWriteSerializer):
    care_plan = RestrictedPrimaryKeyField(model=CarePlan, patient_path="patient")


class GoalUpdateSerializer(GoalWriteSerializer):
    description = serializers.CharField(max_length=STATEMENT_MAX_LENGTH, required=False)


class NeedSerializer(serializers.ModelSerializer):
    url = identity("api-need-detail", "need_id")
    care_plan = link("api-care-plan-detail", "plan_id")
    sensitivity = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    goals = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    shared_with_patient = serializers.BooleanField(
        source="is_shared_with_patient",
        read_only=True,
        help_text="Shown in the patient portal (a sensitive item only once shared explicitly).",
    )

    class Meta:
        model = Need
        fields = [
            "id",
            "url",
            "care_plan",
            "care_plan_id",
            "domain",
            "category",
            "description",
            "is_barrier",
            "status",
            "status_reason",
            "sensitivity",
            "shared_with_patient",
            "goals",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class NeedWriteSerializer(serializers.Serializer):
    domain = serializers.ChoiceField(choices=Need._meta.get_field("domain").choices)
    category = serializers.ChoiceField(choices=Need._meta.get_field("category").choices)
    description = serializers.CharField(max_length=STATEMENT_MAX_LENGTH)
    is_barrier = serializers.BooleanField(required=False)
    status = serializers.ChoiceField(choices=Need._meta.get_field("status").choices, required=False)
    status_reason = serializers.CharField(
        max_length=STATUS_REASON_MAX_LENGTH, required=False, allow_blank=True
    )
    sensitivity = sensitivity_field()
    goals = serializers.ListField(
        child=RestrictedPrimaryKeyField(model=Goal, patient_path="care_plan__patient"),
        required=False,
        max_length=100,
    )


class NeedCreateSerializer(NeedWriteSerializer):
    care_plan = RestrictedPrimaryKeyField(model=CarePlan, patient_path="patient")


class NeedUpdateSerializer(NeedWriteSerializer):
    domain = serializers.ChoiceField(choices=Need._meta.get_field("domain").choices, required=False)
    category = serializers.ChoiceField(choices=Need._meta.get_field("category").choices, required=False)
    description = serializers.CharField(max_length=STATEMENT_MAX_LENGTH, required=False)


class ActivitySerializer(serializers.ModelSerializer):
    url = identity("api-activity-detail", "activity_id")
    care_plan = link("api-care-plan-detail", "plan_id")
    owner_discipline = serializers.SlugRelatedField(slug_field="code", read_only=True)
    sensitivity = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    goals = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    needs = PrefetchedIdsField(prefetched="visible_needs")
    shared_with_patient = serializers.BooleanField(
        source="is_shared_with_patient",
        read_only=True,
        help_text="Shown in the patient portal (a sensitive item only once shared explicitly).",
    )

    class Meta:
        model = Activity
        fields = [
            "id",
            "url",
            "care_plan",
            "care_plan_id",
            "title",
            "description",
            "owner_discipline",
            "assigned_to_id",
            "status",
            "status_reason",
            "due_date",
            "sensitivity",
            "shared_with_patient",
            "for_patient",
            "goals",
            "needs",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ActivityWriteSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=TEXT_MAX_LENGTH, required=False, allow_blank=True)
    owner_discipline = discipline_field()
    assigned_to = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True), required=False, allow_null=True
    )
    status = serializers.ChoiceField(choices=ActivityStatus.choices, required=False)
    status_reason = serializers.CharField(
        max_length=STATUS_REASON_MAX_LENGTH, required=False, allow_blank=True
    )
    due_date = serializers.DateField(required=False, allow_null=True)
    sensitivity = sensitivity_field()
    goals = serializers.ListField(
        child=RestrictedPrimaryKeyField(model=Goal, patient_path="care_plan__patient"),
        required=False,
        max_length=100,
    )
    needs = serializers.ListField(
        child=RestrictedPrimaryKeyField(model=Need, patient_path="care_plan__patient"),
        required=False,
        max_length=100,
    )


class ActivityCreateSerializer(ActivityWriteSerializer):
    care_plan = RestrictedPrimaryKeyField(model=CarePlan, patient_path="patient")


class ActivityUpdateSerializer(ActivityWriteSerializer):
    title = serializers.CharField(max_length=200, required=False)
    owner_discipline = discipline_field(required=False)


# ---------------------------------------------------------------------------
# Comments and proposals
# ---------------------------------------------------------------------------
CHANGES_SCHEMA = {
    "type": "object",
    "description": 'Field -> {"from": stored value, "to": stored value} (ids for references, ISO dates).',
    "additionalProperties": {
        "type": "object",
        "properties": {"from": {"nullable": True}, "to": {"nullable": True}},
    },
}


class NoteSerializer(serializers.ModelSerializer):
    url = identity("api-note-detail", "note_id")
    care_plan = link("api-care-plan-detail", "plan_id")
    patient_id = serializers.IntegerField(source="care_plan.patient_id", read_only=True)
    goal = link("api-goal-detail", "goal_id", allow_null=True)
    need = link("api-need-detail", "need_id", allow_null=True)
    activity = link("api-activity-detail", "activity_id", allow_null=True)
    author_display_name = serializers.CharField(source="author.display_name", read_only=True)
    sensitivity = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    changes = serializers.SerializerMethodField()
    status = serializers.CharField(
        read_only=True, help_text="open, accepted or declined; empty for a comment."
    )

    class Meta:
        model = Note
        fields = [
            "id",
            "url",
            "care_plan",
            "care_plan_id",
            "patient_id",
            "goal",
            "goal_id",
            "need",
            "need_id",
            "activity",
            "activity_id",
            "kind",
            "text",
            "sensitivity",
            "author_id",
            "author_display_name",
            "created_at",
            "changes",
            "target_version",
            "status",
            "decided_by_id",
            "decided_at",
            "decision_reason",
        ]
        read_only_fields = fields

    @extend_schema_field(CHANGES_SCHEMA)
    def get_changes(self, obj) -> dict:
        return obj.changes or {}


class NoteCreateSerializer(serializers.Serializer):
    """A comment on the plan or one of its items, or a proposal to change an item. Name
    the plan, or the item (its plan is implied), or both."""

    care_plan = RestrictedPrimaryKeyField(model=CarePlan, patient_path="patient", required=False)
    goal = RestrictedPrimaryKeyField(model=Goal, patient_path="care_plan__patient", required=False)
    need = RestrictedPrimaryKeyField(model=Need, patient_path="care_plan__patient", required=False)
    activity = RestrictedPrimaryKeyField(model=Activity, patient_path="care_plan__patient", required=False)
    kind = serializers.ChoiceField(choices=NoteKind.choices, default=NoteKind.COMMENT)
    text = serializers.CharField(max_length=TEXT_MAX_LENGTH, help_text="@username mentions notify them.")
    changes = serializers.DictField(
        required=False,
        help_text="Proposals only: field -> new value, as the item's own PATCH takes them.",
    )
    target_version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**31 - 1,
        help_text="The item's version the proposal was made against (default: its current one).",
    )

    def validate(self, attrs):
        targets = [attrs.pop(name) for name in ("goal", "need", "activity") if name in attrs]
        if len(targets) > 1:
            raise serializers.ValidationError("Name one goal, need or activity, not several.")
        target = targets[0] if targets else None
        plan = attrs.get("care_plan")
        if plan is None and target is None:
            raise serializers.ValidationError({"care_plan": ["Name the care plan or the item."]})
        if plan is not None and target is not None and target.care_plan_id != plan.pk:
            raise serializers.ValidationError({"care_plan": ["The item is on another care plan."]})
        attrs["care_plan"] = plan or target.care_plan
        attrs["target"] = target
        if "changes" in attrs and target is not None:
            attrs["changes"] = self._item_changes(target, attrs["changes"])
        return attrs

    def _item_changes(self, target, changes: dict) -> dict:
        """The proposed values as the item's own update takes them (codes and ids become
        objects); which fields a proposal may change is the service's rule."""
        update_serializer = {
            Goal: GoalUpdateSerializer,
            Need: NeedUpdateSerializer,
            Activity: ActivityUpdateSerializer,
        }[type(target)]
        known = {name: value for name, value in changes.items() if name in update_serializer._declared_fields}
        serializer = update_serializer(data=known, partial=True, context=self.context)
        if not serializer.is_valid():
            raise serializers.ValidationError({"changes": serializer.errors})
        # unknown names go on as they are, for the service to refuse by name
        return {**changes, **serializer.validated_data}


class NoteDeclineSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=STATUS_REASON_MAX_LENGTH, help_text="Told to the proposer.")
