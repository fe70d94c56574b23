"""URLs of emergency access and the audit log."""

from django.urls import path

from . import views_security as views

app_name = "security"
urlpatterns = [
    path("emergency-access/", views.emergency_access, name="emergency_access"),
    path("emergency-access/recent/", views.emergency_access_report, name="emergency_access_report"),
    path("patients/<int:patient_id>/access-log/", views.patient_access_log, name="patient_access_log"),
    path("audit/", views.audit_log, name="audit_log"),
]
