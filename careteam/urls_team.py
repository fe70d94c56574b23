"""URLs of handoffs, the inbox and notifications."""

from django.urls import path  # noqa: F401

app_name = "team"
urlpatterns: list = []
