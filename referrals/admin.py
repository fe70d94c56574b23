"""Catalog administration (users with careteam.manage_catalog, not clinicians): search,
filters, bulk status and verification actions, HSDS export of the selection, and a link
to the HSDS import page."""

from django.contrib import admin, messages
from django.http import HttpResponse
from django.utils import timezone

from careteam.admin import PatientRestrictedAdmin

from . import hsds
from .models import (
    ListingClaim,
    Location,
    Organization,
    PartnerStaff,
    Referral,
    Service,
    ServiceAtLocation,
    ServiceStatus,
    Taxonomy,
    TaxonomyTerm,
)


class CatalogAdmin(admin.ModelAdmin):
    """The catalog is managed by catalog administrators (permission careteam.manage_catalog)."""

    def _catalog_admin(self, request) -> bool:
        return request.user.is_active and (
            request.user.is_superuser or request.user.has_perm("careteam.manage_catalog")
        )

    def has_module_permission(self, request):
        return self._catalog_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._catalog_admin(request)

    def has_add_permission(self, request):
        return self._catalog_admin(request)

    def has_change_permission(self, request, obj=None):
        return self._catalog_admin(request)

    def has_delete_permission(self, request, obj=None):
        return self._catalog_admin(request)


def _zip_response(services) -> HttpResponse:
    response = HttpResponse(hsds.export_zip(services), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="hsds-{timezone.localdate().isoformat()}.zip"'
    return response


@admin.action(description="Export selected services as HSDS (JSON and CSV, zipped)")
def export_services(modeladmin, request, queryset):
    return _zip_response(queryset)


@admin.action(description="Export services of selected organizations as HSDS")
def export_organizations(modeladmin, request, queryset):
    return _zip_response(Service.objects.filter(organization__in=queryset))


def _set_status(status: str, label: str):
    @admin.action(description=f"Mark selected services {label}")
    def action(modeladmin, request, queryset):
        count = queryset.update(status=status, updated_at=timezone.now())
        modeladmin.message_user(request, f"{count} service(s) marked {label}.", messages.SUCCESS)

    action.__name__ = f"mark_{status.replace(' ', '_')}"
    return action


@admin.action(description="Mark selected services verified today")
def mark_verified(modeladmin, request, queryset):
    today = timezone.localdate()
    count = queryset.update(
        last_verified=today,
        assured_date=today.isoformat(),
        assurer_email=request.user.email or "",
        updated_at=timezone.now(),
    )
    modeladmin.message_user(request, f"{count} service(s) verified today.", messages.SUCCESS)


@admin.register(Organization)
class OrganizationAdmin(CatalogAdmin):
    list_display = ("name", "email", "website", "updated_at")
    search_fields = ("name", "alternate_name", "description", "tax_id")
    actions = [export_organizations]
    change_list_template = "referrals/admin_change_list.html"


@admin.register(Service)
class ServiceAdmin(CatalogAdmin):
    list_display = ("name", "organization", "status", "capacity_status", "is_free", "last_verified")
    list_filter = ("status", "capacity_status", "is_free", "categories", "last_verified")
    search_fields = ("name", "alternate_name", "description", "organization__name", "service_area")
    list_select_related = ("organization",)
    filter_horizontal = ("categories",)
    autocomplete_fields = ("organization",)
    actions = [
        _set_status(ServiceStatus.ACTIVE, "active"),
        _set_status(ServiceStatus.INACTIVE, "inactive"),
        _set_status(ServiceStatus.TEMPORARILY_CLOSED, "temporarily closed"),
        _set_status(ServiceStatus.DEFUNCT, "defunct"),
        mark_verified,
        export_services,
    ]
    change_list_template = "referrals/admin_change_list.html"
    readonly_fields = ("created_at", "updated_at")


@admin.register(Location)
class LocationAdmin(CatalogAdmin):
    list_display = ("name", "city", "location_type", "organization")
    list_filter = ("location_type",)
    search_fields = ("name", "address_1", "city", "postal_code")
    list_select_related = ("organization",)


@admin.register(ServiceAtLocation)
class ServiceAtLocationAdmin(CatalogAdmin):
    list_display = ("service", "location")
    search_fields = ("service__name", "location__name")
    list_select_related = ("service", "location")
    raw_id_fields = ("service", "location")


@admin.register(Taxonomy)
class TaxonomyAdmin(CatalogAdmin):
    list_display = ("name", "version", "uri")
    search_fields = ("name",)


@admin.register(TaxonomyTerm)
class TaxonomyTermAdmin(CatalogAdmin):
    list_display = ("name", "code", "taxonomy")
    list_filter = ("taxonomy",)
    search_fields = ("name", "code")


@admin.register(Referral)
class ReferralAdmin(PatientRestrictedAdmin):
    list_display = ("id", "patient", "service", "status", "sent_at", "outcome")


@admin.register(PartnerStaff)
class PartnerStaffAdmin(CatalogAdmin):
    """Who answers an organisation's referrals; invitations are sent from
    /referrals/catalog/partners/ (a one-time set-password link), not made here."""

    list_display = ("user", "organization", "active", "invited_at")
    list_filter = ("active",)
    search_fields = ("user__username", "user__email", "organization__name")
    fields = ("user", "organization", "active")
    readonly_fields = ("user",)

    def has_add_permission(self, request):
        return False


@admin.register(ListingClaim)
class ListingClaimAdmin(CatalogAdmin):
    """Claims are decided on /referrals/catalog/partners/ (approving one invites the claimant)."""

    list_display = ("organization", "name", "email", "status", "created_at")
    list_filter = ("status",)
    readonly_fields = (
        "organization",
        "name",
        "email",
        "role",
        "note",
        "status",
        "reviewed_by",
        "reviewed_at",
    )

    def has_add_permission(self, request):
        return False
