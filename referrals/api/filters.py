"""Filters of the referral and catalog lists (django-filter)."""

from __future__ import annotations

import django_filters as filters
from django.contrib.postgres.search import SearchQuery

from careteam.api.filters import IdFilter
from referrals.models import Organization, Referral, Service


class ReferralFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    care_plan = IdFilter(field_name="care_plan_id")
    service = filters.UUIDFilter(field_name="service_id")

    class Meta:
        model = Referral
        fields = ["patient", "care_plan", "service", "status", "priority"]


class OrganizationFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Organization
        fields = ["name"]


class ServiceFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    name = filters.CharFilter(lookup_expr="icontains")
    category = filters.CharFilter(method="filter_category", label="Taxonomy term code")
    q = filters.CharFilter(
        method="filter_text", label="Full-text search of the name, description and eligibility"
    )

    def filter_text(self, queryset, name, value):
        """The catalog page's search: the generated `search_vector` column and its GIN
        index, so a search costs the matches, not a scan of the whole catalog."""
        return queryset.filter(search_vector=SearchQuery(value, search_type="websearch", config="english"))

    class Meta:
        model = Service
        fields = ["organization", "status", "is_free", "name"]

    def filter_category(self, queryset, name, value):
        return queryset.filter(pk__in=Service.objects.filter(categories__code=value).values("pk"))
