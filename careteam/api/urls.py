"""REST API (/api/v1/), OpenAPI schema and docs, and FHIR R4 (/fhir/)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
