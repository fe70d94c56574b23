"""URLs of the referrals app's pages."""

from django.urls import path

from . import views, views_catalog

app_name = "referrals"
urlpatterns = [
    path("", views.referral_list, name="list"),
    path("services/", views.service_list, name="service_list"),
    path("services/<uuid:service_id>/", views.service_detail, name="service_detail"),
    path("plans/<int:plan_id>/new/", views.referral_new, name="new"),
    path("needs/<int:need_id>/new/", views.referral_new_for_need, name="new_for_need"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/services/", views.dashboard_breakdown, {"group": "services"}, name="dashboard_services"),
    path(
        "dashboard/organizations/",
        views.dashboard_breakdown,
        {"group": "organizations"},
        name="dashboard_organizations",
    ),
    path("catalog/import/", views.catalog_import, name="catalog_import"),
    path("catalog/export/", views.catalog_export, name="catalog_export"),
    path("catalog/changes/", views_catalog.listing_changes, name="listing_changes"),
    path("catalog/stale/", views_catalog.stale_listings, name="stale_listings"),
    path("catalog/partners/", views_catalog.partner_staff, name="partner_staff"),
    path("services/<uuid:service_id>/capacity/", views_catalog.service_capacity, name="service_capacity"),
    path("<int:referral_id>/", views.referral_detail, name="detail"),
    path("<int:referral_id>/status/", views.referral_status, name="status"),
    path("<int:referral_id>/message/", views.referral_message, name="message"),
    path("<int:referral_id>/link/", views.referral_link, name="link"),
    path("<int:referral_id>/letter.pdf", views.referral_letter, name="letter"),
]
