"""Care transitions and medications: pages under /transitions/, the REST API under
/api/v1/ and FHIR Encounter and MedicationStatement under /fhir/."""

from django.urls import path

from . import api, views

app_name = "transitions"

urlpatterns = [
    path("transitions/dashboard/", views.dashboard, name="dashboard"),
    path("transitions/patients/<int:patient_id>/", views.patient_transitions, name="patient_transitions"),
    path("transitions/patients/<int:patient_id>/holds/", views.hospital_pauses, name="hospital_pauses"),
    path("transitions/patients/<int:patient_id>/medications/", views.medications, name="medications"),
    path("transitions/patients/<int:patient_id>/medications/reconcile/", views.reconcile, name="reconcile"),
    path(
        "transitions/patients/<int:patient_id>/medications/history/",
        views.medication_history,
        name="medication_history",
    ),
    path("transitions/patients/<int:patient_id>/medications/schedule/", views.schedule, name="schedule"),
    path(
        "transitions/patients/<int:patient_id>/medications/schedule.pdf",
        views.schedule_pdf,
        name="schedule_pdf",
    ),
    path("transitions/<int:transition_id>/", views.transition_detail, name="transition_detail"),
    path("transitions/<int:transition_id>/debrief/", views.debrief, name="debrief"),
    path("transitions/steps/<int:activity_id>/done/", views.step_done, name="step_done"),
    # REST API v1 and FHIR R4
    path("api/v1/transitions/", api.TransitionListView.as_view(), name="api-transition-list"),
    path(
        "api/v1/transitions/<int:transition_id>/",
        api.TransitionDetailView.as_view(),
        name="api-transition-detail",
    ),
    path("api/v1/medication-lines/", api.MedicationLineListView.as_view(), name="api-medication-line-list"),
    path("fhir/Encounter", api.EncounterView.as_view(), name="fhir-encounter-search"),
    path("fhir/Encounter/<int:transition_id>", api.EncounterReadView.as_view(), name="fhir-encounter"),
    path(
        "fhir/MedicationStatement",
        api.MedicationStatementSearchView.as_view(),
        name="fhir-medicationstatement-search",
    ),
    path(
        "fhir/MedicationStatement/<int:line_id>",
        api.MedicationStatementReadView.as_view(),
        name="fhir-medicationstatement",
    ),
]
