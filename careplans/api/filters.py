"""Filters of the care-plan, item and note lists (django-filter)."""

from __future__ import annotations

import django_filters as filters

from careplans.models import Activity, CarePlan, Goal, Need, Note
from careteam.api.filters import IdFilter


class CarePlanFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")

    class Meta:
        model = CarePlan
        fields = ["patient", "status", "intent"]


class GoalFilter(filters.FilterSet):
    patient = IdFilter(field_name="care_plan__patient_id")
    care_plan = IdFilter(field_name="care_plan_id")
    owner_discipline = filters.CharFilter(field_name="owner_discipline__code")

    class Meta:
        model = Goal
        fields = [
            "patient",
            "care_plan",
            "lifecycle_status",
            "achievement_status",
            "priority",
            "expressed_by",
        ]


class NeedFilter(filters.FilterSet):
    patient = IdFilter(field_name="care_plan__patient_id")
    care_plan = IdFilter(field_name="care_plan_id")

    class Meta:
        model = Need
        fields = ["patient", "care_plan", "status", "domain", "category", "is_barrier"]


class ActivityFilter(filters.FilterSet):
    patient = IdFilter(field_name="care_plan__patient_id")
    care_plan = IdFilter(field_name="care_plan_id")
    assigned_to = IdFilter(field_name="assigned_to_id")
    owner_discipline = filters.CharFilter(field_name="owner_discipline__code")
    due_before = filters.DateFilter(field_name="due_date", lookup_expr="lte")
    due_after = filters.DateFilter(field_name="due_date", lookup_expr="gte")

    class Meta:
        model = Activity
        fields = ["patient", "care_plan", "status", "assigned_to", "owner_discipline"]


class NoteFilter(filters.FilterSet):
    patient = IdFilter(field_name="care_plan__patient_id")
    care_plan = IdFilter(field_name="care_plan_id")
    plan = IdFilter(field_name="care_plan_id", label="The same as care_plan")
    goal = IdFilter(field_name="goal_id")
    need = IdFilter(field_name="need_id")
    activity = IdFilter(field_name="activity_id")

    class Meta:
        model = Note
        fields = ["patient", "care_plan", "plan", "goal", "need", "activity", "kind", "status"]
