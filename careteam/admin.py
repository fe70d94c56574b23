"""Admin: users, disciplines, sensitivity policy, audit log (read-only). Clinical models
are registered with querysets restricted by the permissions module: an administrator
sees patient data only for patients whose team they are on."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Q

from . import permissions, services
from .audit import audit, audit_list
from .models import (
    AuditAction,
    AuditEvent,
    Discipline,
    EmergencyAccess,
    Handoff,
    Notification,
    SensitivityCategory,
    TeamMembership,
    User,
)


class PatientRestrictedAdmin(admin.ModelAdmin):
    """Shows only rows of patients the admin user may see; read-only (writes go
    through the app so that rules, history and audit apply)."""

    patient_path = "patient"

    def get_queryset(self, request):
        return permissions.restrict(
            super().get_queryset(request), request.user, patient_path=self.patient_path
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _patient_ids(self, pks) -> list[int]:
        field = "pk" if self.patient_path == "pk" else self.patient_path
        return list(self.model._default_manager.filter(pk__in=list(pks)).values_list(field, flat=True))

    def changelist_view(self, request, extra_context=None):
        """A list read of patient data in the admin is audited like any other list: one
        event naming the patients on the page."""
        response = super().changelist_view(request, extra_context)
        changelist = (
            getattr(response, "context_data", {}).get("cl") if hasattr(response, "context_data") else None
        )
        if getattr(response, "status_code", 200) == 200 and changelist is not None:
            audit_list(
                request,
                list_name=f"admin.{self.model._meta.label_lower}",
                patient_ids=self._patient_ids(obj.pk for obj in changelist.result_list),
                query=dict(request.GET.items()),
                detail=f"admin list, {len(changelist.result_list)} shown",
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if getattr(response, "status_code", 200) == 200:
            patient_ids = self._patient_ids([object_id]) if str(object_id).isdigit() else []
            audit(
                user=request.user,
                action=AuditAction.VIEW,
                object_type=self.model._meta.label_lower,
                object_id=object_id,
                patient_id=patient_ids[0] if patient_ids else None,
                request=request,
                detail="admin read",
            )
        return response


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Changes to what an account may do (disciplines, groups, permissions, the active,
    staff and superuser flags) are audited with who made them."""

    fieldsets = (*BaseUserAdmin.fieldsets, ("Care team", {"fields": ("title", "phone", "disciplines")}))
    filter_horizontal = ("groups", "user_permissions", "disciplines")
    list_display = ("username", "first_name", "last_name", "title", "is_active", "is_staff")
    list_filter = ("is_active", "is_staff", "disciplines")

    def save_related(self, request, form, formsets, change):
        account = form.instance
        before = services.account_powers(account) if change else {}
        # the flags were saved already by save_model: take their old values from the form
        for flag in services.ACCOUNT_FLAGS:
            if change and flag in form.changed_data:
                before[flag] = not getattr(account, flag)
        super().save_related(request, form, formsets, change)
        services.account_changes_audit(by=request.user, account=account, before=before, request=request)


@admin.register(Discipline)
class DisciplineAdmin(admin.ModelAdmin):
    list_display = ("name", "code")
    search_fields = ("name", "code")


@admin.register(SensitivityCategory)
class SensitivityCategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "code")
    filter_horizontal = ("allowed_disciplines",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Searchable, never editable: the database refuses UPDATE and DELETE as well."""

    list_display = (
        "at",
        "username",
        "action",
        "outcome",
        "object_type",
        "object_id",
        "patient_id",
        "source_ip",
    )
    list_filter = ("action", "outcome", ("at", admin.DateFieldListFilter))
    # username, object type, or an exact object or patient id (get_search_results)
    search_fields = ("username", "object_type")
    search_help_text = "A username, an object type, or an exact object id, patient id or request id."
    date_hierarchy = "at"
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        """patient is a foreign key: Django's "=patient_id" search builds an iexact lookup
        on it, which fails for every term. Ids are matched exactly, and only when the
        term is a number that fits the column."""
        term = search_term.strip()
        if not term:
            return queryset, False
        q = (
            Q(username__icontains=term)
            | Q(object_type__icontains=term)
            | Q(object_id=term[:64])
            | Q(request_id=term[:64])
        )
        if term.isdigit() and len(term) < 19:
            q |= Q(patient_id=int(term))
        return queryset.filter(q), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if getattr(response, "status_code", 200) == 200:
            audit(
                user=request.user,
                action=AuditAction.VIEW,
                object_type="careteam.auditevent",
                request=request,
                detail=f"admin audit list {request.GET.urlencode()}"[:500],
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if getattr(response, "status_code", 200) == 200:
            audit(
                user=request.user,
                action=AuditAction.VIEW,
                object_type="careteam.auditevent",
                object_id=object_id,
                request=request,
                detail="admin audit event",
            )
        return response

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and (
            request.user.is_superuser or request.user.has_perm("careteam.view_audit_log")
        )

    has_module_permission = has_view_permission


@admin.register(TeamMembership)
class TeamMembershipAdmin(PatientRestrictedAdmin):
    list_display = ("patient", "user", "discipline", "role", "status", "start_date", "end_date")
    list_select_related = ("patient", "user", "discipline")


@admin.register(Handoff)
class HandoffAdmin(PatientRestrictedAdmin):
    list_display = ("id", "patient", "from_user", "to_user", "to_discipline", "status", "due_at")
    list_select_related = ("patient", "from_user", "to_user", "to_discipline")


@admin.register(EmergencyAccess)
class EmergencyAccessAdmin(PatientRestrictedAdmin):
    list_display = ("user", "patient", "started_at", "expires_at")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("recipient", "kind", "created_at", "email_sent_at", "email_skipped_at", "read_at")

    def get_queryset(self, request):
        # only one's own notifications: a title can name a patient
        return super().get_queryset(request).filter(recipient=request.user)

    def has_change_permission(self, request, obj=None):
        return False
