from django.contrib import admin

from careteam.admin import PatientRestrictedAdmin

from .models import Location, Organization, Referral, Service, ServiceAtLocation, TaxonomyTerm


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


@admin.register(Organization)
class OrganizationAdmin(CatalogAdmin):
    list_display = ("name", "email", "website")
    search_fields = ("name", "alternate_name", "description")


@admin.register(Service)
class ServiceAdmin(CatalogAdmin):
    list_display = ("name", "organization", "status", "last_verified")
    list_filter = ("status", "categories")
    search_fields = ("name", "description", "organization__name")
    list_select_related = ("organization",)
    filter_horizontal = ("categories",)


@admin.register(Location)
class LocationAdmin(CatalogAdmin):
    list_display = ("name", "city", "location_type")
    search_fields = ("name", "address_1", "city")


@admin.register(ServiceAtLocation)
class ServiceAtLocationAdmin(CatalogAdmin):
    list_display = ("service", "location")


@admin.register(TaxonomyTerm)
class TaxonomyTermAdmin(CatalogAdmin):
    list_display = ("name", "code", "taxonomy")
    search_fields = ("name", "code")


@admin.register(Referral)
class ReferralAdmin(PatientRestrictedAdmin):
    list_display = ("id", "patient", "service", "status", "sent_at", "outcome")
