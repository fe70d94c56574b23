"""Admin: hand-on rules are data the organisation manages here; visits, authorisations
and firings are read-only records (patient data is changed through the pages and API)."""

from django.contrib import admin

from .models import HandOnRule, RuleFiring


@admin.register(HandOnRule)
class HandOnRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "event",
        "condition_discipline",
        "activity_title",
        "owner_discipline",
        "due_in_days",
        "active",
    )
    list_filter = ("event", "active")
    search_fields = ("name", "activity_title")


@admin.register(RuleFiring)
class RuleFiringAdmin(admin.ModelAdmin):
    """Ids only (the patient's data stays behind the chart's access check)."""

    list_display = (
        "fired_at",
        "rule",
        "event",
        "object_type",
        "object_id",
        "patient_id",
        "activity_id",
        "outcome",
    )
    list_filter = ("event",)
    readonly_fields = [f.name for f in RuleFiring._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
