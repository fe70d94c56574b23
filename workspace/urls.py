"""URLs of the workspace pages, at the paths and names they had in the patients app. Not
namespaced: `my_work` and `worklist` are where people land after signing in
(careteam.views.home)."""

from django.urls import path

from . import views

urlpatterns = [
    path("work/", views.my_work, name="my_work"),
    path("patients/", views.worklist, name="worklist"),
    path("patients/<int:patient_id>/", views.chart, name="patient_chart"),
    path("patients/<int:patient_id>/plans/new/", views.plan_create, name="plan_create"),
]
