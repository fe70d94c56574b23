"""URLs of huddles (/patients/<patient_id>/huddles/... and /patients/huddles/ for all my patients)."""

from django.urls import path

from . import views_huddles as views

app_name = "huddles"
urlpatterns: list = [
    path("huddles/", views.caseload_huddles, name="caseload"),
    path("<int:patient_id>/huddles/", views.patient_huddles, name="patient_list"),
    path("<int:patient_id>/huddles/new/", views.huddle_new, name="new"),
    path("<int:patient_id>/huddles/<int:huddle_id>/", views.huddle_detail, name="detail"),
    path("<int:patient_id>/huddles/<int:huddle_id>/answer/", views.huddle_answer, name="answer"),
    path("<int:patient_id>/huddles/<int:huddle_id>/close/", views.huddle_close, name="close"),
]
