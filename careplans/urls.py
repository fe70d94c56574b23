"""URLs of the careplans app's pages: the plan editor, its item endpoints (htmx partials)
and the history. Item URLs carry only the item's id; its plan comes from the item."""

from django.urls import path

from . import views, views_screening

app_name = "careplans"
urlpatterns = [
    path("<int:plan_id>/", views.plan_editor, name="plan_editor"),
    path("<int:plan_id>/history/", views.plan_history, name="plan_history"),
    path("<int:plan_id>/print/", views.plan_print, name="plan_print"),
    path("<int:plan_id>/print.pdf", views.plan_pdf, name="plan_pdf"),
    path("<int:plan_id>/edit/", views.plan_edit, name="plan_edit"),
    path("<int:plan_id>/goals/new/", views.goal_create, name="goal_create"),
    path("<int:plan_id>/needs/new/", views.need_create, name="need_create"),
    path("<int:plan_id>/activities/new/", views.activity_create, name="activity_create"),
    path("<int:plan_id>/notes/new/", views.note_create, name="note_create"),
    path("<int:plan_id>/templates/", views_screening.plan_templates_view, name="plan_templates"),
    path("screening/patient/<int:patient_id>/", views_screening.screening_start, name="screening_start"),
    path(
        "screening/patient/<int:patient_id>/ask/", views_screening.screening_assign, name="screening_assign"
    ),
    path("screenings/<int:screening_id>/", views_screening.screening_detail, name="screening_detail"),
    path(
        "screenings/<int:screening_id>/proposals/",
        views_screening.screening_proposals,
        name="screening_proposals",
    ),
    path("notes/<int:note_id>/accept/", views.note_accept, name="note_accept"),
    path("notes/<int:note_id>/decline/", views.note_decline, name="note_decline"),
    path("goals/<int:goal_id>/", views.goal_detail, name="goal_detail"),
    path("goals/<int:goal_id>/edit/", views.goal_edit, name="goal_edit"),
    path("goals/<int:goal_id>/status/", views.goal_status, name="goal_status"),
    path("goals/<int:goal_id>/propose/", views.goal_propose, name="goal_propose"),
    path("needs/<int:need_id>/", views.need_detail, name="need_detail"),
    path("needs/<int:need_id>/edit/", views.need_edit, name="need_edit"),
    path("needs/<int:need_id>/status/", views.need_status, name="need_status"),
    path("needs/<int:need_id>/propose/", views.need_propose, name="need_propose"),
    path("activities/<int:activity_id>/", views.activity_detail, name="activity_detail"),
    path("activities/<int:activity_id>/edit/", views.activity_edit, name="activity_edit"),
    path("activities/<int:activity_id>/status/", views.activity_status, name="activity_status"),
    path("activities/<int:activity_id>/propose/", views.activity_propose, name="activity_propose"),
]
