"""URLs of break-the-glass access and the audit log."""

from django.urls import path  # noqa: F401

app_name = "security"
urlpatterns: list = []
