"""URLs of visits, authorisations, calendars and the scheduling dashboard."""

from django.urls import path

from . import views

app_name = "visits"
urlpatterns = [
    path("", views.my_week, name="my_week"),
    path("team/", views.team_week, name="team_week"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("calendar-feed/", views.calendar_feed, name="calendar_feed"),
    path("calendar-feed/<str:feed_token>.ics", views.calendar_feed_ics, name="calendar_feed_ics"),
    path("patients/<int:patient_id>/", views.patient_visits, name="patient_visits"),
    path(
        "patients/<int:patient_id>/authorisations/",
        views.patient_authorisations,
        name="patient_authorisations",
    ),
    path("<int:visit_id>/", views.visit_detail, name="visit_detail"),
    path("<int:visit_id>/status/", views.visit_status, name="visit_status"),
    path("<int:visit_id>/rebook/", views.visit_rebook, name="visit_rebook"),
    path("authorisations/<int:authorisation_id>/", views.authorisation_detail, name="authorisation_detail"),
    path(
        "authorisations/<int:authorisation_id>/status/",
        views.authorisation_status,
        name="authorisation_status",
    ),
    path(
        "authorisations/<int:authorisation_id>/documents/",
        views.authorisation_document_add,
        name="authorisation_document_add",
    ),
    path(
        "authorisations/<int:authorisation_id>/document/",
        views.authorisation_document,
        name="authorisation_document",
    ),
]
