"""URLs of the careplans app's pages."""

from django.urls import path  # noqa: F401

app_name = "careplans"
urlpatterns: list = []
