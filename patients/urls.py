"""URLs of the patients app's pages."""

from django.urls import path  # noqa: F401

app_name = "patients"
urlpatterns: list = []
