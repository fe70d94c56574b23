"""URLs of the referrals app's pages."""

from django.urls import path  # noqa: F401

app_name = "referrals"
urlpatterns: list = []
