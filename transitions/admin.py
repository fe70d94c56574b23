"""Administration of the transitions app: the default discharge checklist and who may
reconcile medications (configuration only: no patient data here)."""

from django.contrib import admin

from .models import ChecklistStepDefault, ReconciliationPolicy


@admin.register(ChecklistStepDefault)
class ChecklistStepDefaultAdmin(admin.ModelAdmin):
    list_display = ("title", "key", "disciplines", "due_hours", "position", "active")
    list_editable = ("due_hours", "position", "active")
    search_fields = ("title", "key")


@admin.register(ReconciliationPolicy)
class ReconciliationPolicyAdmin(admin.ModelAdmin):
    filter_horizontal = ("allowed_disciplines",)

    def has_add_permission(self, request):
        return not ReconciliationPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False
