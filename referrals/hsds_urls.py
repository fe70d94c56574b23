"""The HSDS 3.0 read API (referrals/hsds_api.py), mounted at /hsds/; paths as the spec
writes them (no trailing slash)."""

from django.urls import path

from . import hsds_api as v

urlpatterns = [
    path("", v.HsdsRootView.as_view(), name="hsds-root"),
    path("services", v.HsdsServiceListView.as_view(), name="hsds-service-list"),
    path("services/<str:service_id>", v.HsdsServiceView.as_view(), name="hsds-service-detail"),
    path("organizations", v.HsdsOrganizationListView.as_view(), name="hsds-organization-list"),
    path(
        "organizations/<str:organization_id>",
        v.HsdsOrganizationView.as_view(),
        name="hsds-organization-detail",
    ),
    path(
        "service_at_locations",
        v.HsdsServiceAtLocationListView.as_view(),
        name="hsds-service-at-location-list",
    ),
    path(
        "service_at_locations/<str:service_at_location_id>",
        v.HsdsServiceAtLocationView.as_view(),
        name="hsds-service-at-location-detail",
    ),
    path("taxonomies", v.HsdsTaxonomyListView.as_view(), name="hsds-taxonomy-list"),
    path("taxonomy_terms", v.HsdsTaxonomyTermListView.as_view(), name="hsds-taxonomy-term-list"),
]
