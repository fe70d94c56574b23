"""URLs of the patients app's pages, under /patients/ (the worklist and the chart at
/patients/ and /patients/<id>/ are workspace pages, workspace/urls.py).

Not namespaced, as the workspace's names are not."""

from django.urls import path

from . import views

urlpatterns = [
    path("new/", views.patient_new, name="patient_new"),
    path("<int:patient_id>/edit/", views.patient_edit, name="patient_edit"),
    path("<int:patient_id>/caregivers/", views.caregivers, name="patient_caregivers"),
    path("<int:patient_id>/consents/", views.consents, name="patient_consents"),
    path(
        "<int:patient_id>/consents/<int:consent_id>/revoke/",
        views.consent_revoke,
        name="patient_consent_revoke",
    ),
    path(
        "<int:patient_id>/consents/<int:consent_id>/document/",
        views.consent_document,
        name="patient_consent_document",
    ),
    path("<int:patient_id>/programmes/", views.programmes, name="patient_programmes"),
    path("<int:patient_id>/team/add/", views.team_role_add, name="team_role_add"),
    path("<int:patient_id>/team/<int:membership_id>/end/", views.team_role_end, name="team_role_end"),
]
