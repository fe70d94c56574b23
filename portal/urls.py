"""The portal (/portal/): patients and caregivers only; staff preview and invite from the chart."""

from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("language/", views.language, name="language"),
    path("welcome/<str:uidb64>/<str:token>/", views.welcome, name="welcome"),
    path("<int:patient_id>/", views.plan, name="plan"),
    path("<int:patient_id>/print/", views.plan_print, name="plan_print"),
    path("<int:patient_id>/plan.pdf", views.plan_pdf, name="plan_pdf"),
    path("<int:patient_id>/medicines/", views.medicines, name="medicines"),
    path("<int:patient_id>/medicines/print/", views.medicines_print, name="medicines_print"),
    path("<int:patient_id>/medicines.pdf", views.medicines_pdf, name="medicines_pdf"),
    path("<int:patient_id>/what-matters/", views.what_matters, name="what_matters"),
    path("<int:patient_id>/goals/new/", views.goal_new, name="goal_new"),
    path("<int:patient_id>/goals/<int:goal_id>/progress/", views.goal_progress, name="goal_progress"),
    path("<int:patient_id>/activities/<int:activity_id>/done/", views.activity_done, name="activity_done"),
    path("<int:patient_id>/messages/", views.messages, name="messages"),
    path(
        "<int:patient_id>/questionnaires/<int:assignment_id>/",
        views.questionnaire,
        name="questionnaire",
    ),
    path("<int:patient_id>/consents/", views.consents, name="consents"),
    path(
        "<int:patient_id>/consents/<int:consent_id>/confirm/",
        views.consent_confirm,
        name="consent_confirm",
    ),
    path("<int:patient_id>/caregivers/", views.caregivers, name="caregivers"),
    path(
        "<int:patient_id>/caregivers/<int:consent_id>/revoke/",
        views.caregiver_revoke,
        name="caregiver_revoke",
    ),
]
