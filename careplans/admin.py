"""Admin of the care-plan app. Plans and their items are read-only and restricted to the
admin user's own patients; screening instruments and plan templates (clinical content,
permission careplans.manage_clinical_content) are imported as new versions and
downloaded as JSON here, never edited in place (only their status changes)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from careteam.admin import PatientRestrictedAdmin
from careteam.audit import audit
from careteam.models import AuditAction

from . import plan_templates, screening
from .forms import QuestionnaireImportForm, TemplateImportForm
from .models import Activity, CarePlan, Goal, Need, PlanTemplate, Questionnaire


@admin.register(CarePlan)
class CarePlanAdmin(PatientRestrictedAdmin):
    list_display = ("title", "patient", "status", "review_due", "version")
    list_filter = ("status",)


@admin.register(Goal)
class GoalAdmin(PatientRestrictedAdmin):
    patient_path = "care_plan__patient"
    list_display = ("description", "care_plan", "expressed_by", "lifecycle_status")


@admin.register(Need)
class NeedAdmin(PatientRestrictedAdmin):
    patient_path = "care_plan__patient"
    list_display = ("description", "care_plan", "domain", "category", "status")


@admin.register(Activity)
class ActivityAdmin(PatientRestrictedAdmin):
    patient_path = "care_plan__patient"
    list_display = ("title", "care_plan", "owner_discipline", "status", "due_date")


# ---------------------------------------------------------------------------
# Clinical content: Questionnaires and plan templates
# ---------------------------------------------------------------------------
def json_download(data: dict, filename: str, content_type: str = "application/fhir+json") -> HttpResponse:
    response = HttpResponse(json.dumps(data, indent=2, ensure_ascii=False) + "\n", content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ClinicalContentAdmin(admin.ModelAdmin):
    """Versions are added by import (the add form is the import page) and kept: only
    their status changes, and nothing is deleted (responses and plans refer to them)."""

    import_form: type
    import_title: str
    editable_fields = ("status",)

    def _content_admin(self, request) -> bool:
        user = request.user
        return user.is_active and (user.is_superuser or user.has_perm("careplans.manage_clinical_content"))

    def has_module_permission(self, request):
        return self._content_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._content_admin(request)

    def has_change_permission(self, request, obj=None):
        return self._content_admin(request)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.editable_fields]

    def _name(self, suffix: str) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_{suffix}"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name=self._name("import")),
            path("<int:object_id>/download/", wrap(self.download_view), name=self._name("download")),
            *self.extra_urls(wrap),
            *super().get_urls(),
        ]

    def extra_urls(self, wrap) -> list:
        return []

    def _require(self, request) -> None:
        if not self._content_admin(request):
            raise PermissionDenied("Only clinical content administrators import or download these.")

    def import_view(self, request):
        self._require(request)
        status = 200
        if request.method == "POST":
            form = self.import_form(request.POST, request.FILES)
            if form.is_valid():
                try:
                    obj = self.do_import(request, form.cleaned_data)
                except ValidationError as exc:
                    for key, problems in exc.message_dict.items():
                        form.add_error(self.error_field(key), problems)
                else:
                    self.message_user(request, f"Imported {obj}.", messages.SUCCESS)
                    return redirect(reverse(f"admin:{self._name('change')}", args=[obj.pk]))
            status = 422
        else:
            form = self.import_form()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": self.import_title,
            "form": form,
        }
        return TemplateResponse(request, "admin/careplans/content_import.html", context, status=status)

    def download_view(self, request, object_id: int):
        self._require(request)
        obj = get_object_or_404(self.model, pk=object_id)
        audit(
            user=request.user, action=AuditAction.EXPORT, obj=obj, request=request, detail=f"downloaded {obj}"
        )
        return self.download(obj)

    @admin.display(description="Download")
    def download_link(self, obj):
        return format_html('<a href="{}">JSON</a>', reverse(f"admin:{self._name('download')}", args=[obj.pk]))


@admin.register(Questionnaire)
class QuestionnaireAdmin(ClinicalContentAdmin):
    list_display = ("title", "version", "code", "status", "sensitivity", "created_at", "download_link")
    list_filter = ("status",)
    search_fields = ("title", "name", "url", "code")
    list_select_related = ("sensitivity",)
    change_list_template = "admin/careplans/content_change_list.html"
    change_form_template = "admin/careplans/content_change_form.html"
    import_form = QuestionnaireImportForm
    import_title = "Import a Questionnaire"

    def extra_urls(self, wrap) -> list:
        return [path("<int:object_id>/rules/", wrap(self.rules_view), name=self._name("rules"))]

    def error_field(self, key: str) -> str:
        return "rules" if key == "rules" else "questionnaire"

    def do_import(self, request, data) -> Questionnaire:
        return screening.questionnaire_import(
            resource=data["questionnaire"], rules=data.get("rules"), by=request.user, request=request
        )

    def download(self, obj: Questionnaire) -> HttpResponse:
        resource, _ = screening.questionnaire_export(obj)
        return json_download(resource, f"{obj.name}-v{obj.version}.json")

    def rules_view(self, request, object_id: int):
        self._require(request)
        obj = get_object_or_404(Questionnaire, pk=object_id)
        audit(
            user=request.user, action=AuditAction.EXPORT, obj=obj, request=request, detail=f"rules of {obj}"
        )
        _, rules = screening.questionnaire_export(obj)
        return json_download(rules, f"{obj.name}-v{obj.version}.rules.json", "application/json")

    @admin.display(description="Download")
    def download_link(self, obj):
        return format_html(
            '<a href="{}">Questionnaire</a> · <a href="{}">rules</a>',
            reverse(f"admin:{self._name('download')}", args=[obj.pk]),
            reverse(f"admin:{self._name('rules')}", args=[obj.pk]),
        )


@admin.register(PlanTemplate)
class PlanTemplateAdmin(ClinicalContentAdmin):
    list_display = ("title", "slug", "version", "status", "created_at", "download_link")
    list_filter = ("status",)
    search_fields = ("title", "slug")
    change_list_template = "admin/careplans/content_change_list.html"
    change_form_template = "admin/careplans/content_change_form.html"
    import_form = TemplateImportForm
    import_title = "Import a plan template"

    def error_field(self, key: str) -> str:
        return "file"

    def do_import(self, request, data) -> PlanTemplate:
        return plan_templates.template_import(data=data["file"], by=request.user, request=request)

    def download(self, obj: PlanTemplate) -> HttpResponse:
        resource = plan_templates.plandefinition_resource(obj)
        return json_download(resource, f"{obj.slug}-v{obj.version}.plandefinition.json")
