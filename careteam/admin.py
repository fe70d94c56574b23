"""Admin: users, disciplines, sensitivity policy, audit log (read-only). Clinical models
are registered with querysets restricted by the permissions module: an administrator
sees patient data only for patients whose team they are on."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Q

from . import permissions
from .models import (
    AuditEvent,
    BreakGlassAccess,
    Discipline,
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


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (*BaseUserAdmin.fieldsets, ("Care team", {"fields": ("title", "phone", "disciplines")}))
    filter_horizontal = ("groups", "user_permissions", "disciplines")
    list_display = ("username", "first_name", "last_name", "title", "is_active", "is_staff")
    list_filter = ("is_active", "is_staff", "disciplines")


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
    search_help_text = "A username, an object type, or an exact object or patient id."
    date_hierarchy = "at"
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        """patient is a foreign key: Django's "=patient_id" search builds an iexact lookup
        on it, which fails for every term. Ids are matched exactly, and only when the
        term is a number that fits the column."""
        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(username__icontains=term) | Q(object_type__icontains=term) | Q(object_id=term[:64])
        if term.isdigit() and len(term) < 19:
            q |= Q(patient_id=int(term))
        return queryset.filter(q), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

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


@admin.register(BreakGlassAccess)
class BreakGlassAccessAdmin(PatientRestrictedAdmin):
    list_display = ("user", "patient", "started_at", "expires_at")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("recipient", "kind", "created_at", "email_sent_at", "read_at")

    def get_queryset(self, request):
        # only one's own notifications: a title can name a patient
        return super().get_queryset(request).filter(recipient=request.user)

    def has_change_permission(self, request, obj=None):
        return False
