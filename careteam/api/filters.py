"""Query filters for the API lists. They narrow the already-restricted queryset; ids are
plain integers (not model lookups) so a filter never reveals whether a hidden row exists."""

from __future__ import annotations

import datetime as dt

import django_filters as filters
from django import forms
from django_filters.fields import IsoDateTimeField

from careteam.audit import patient_events_q
from careteam.models import AuditEvent, Handoff, Notification, TeamMembership
from patients.models import Patient


class IdFilter(filters.NumberFilter):
    field_class = forms.IntegerField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, turned to UTC: Python accepts offsets up to 24 h, PostgreSQL
    only up to 16 h, and a date-time near year 1 or 9999 may not exist in UTC (a 400)."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(dt.UTC)
        except (OverflowError, ValueError) as exc:
            raise forms.ValidationError("Enter a date-time between years 1 and 9999 in UTC.") from exc


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class PatientFilter(filters.FilterSet):
    search = filters.CharFilter(method="filter_search", label="Name or MRN contains")

    class Meta:
        model = Patient
        fields = ["status", "gender", "mrn"]

    def filter_search(self, queryset, name, value):
        return queryset.search(value)


class TeamMembershipFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    user = IdFilter(field_name="user_id")
    discipline = filters.CharFilter(field_name="discipline__code")

    class Meta:
        model = TeamMembership
        fields = ["patient", "user", "discipline", "role", "status"]


class HandoffFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    to_user = IdFilter(field_name="to_user_id")
    from_user = IdFilter(field_name="from_user_id")

    class Meta:
        model = Handoff
        fields = ["patient", "status", "priority", "kind", "to_user", "from_user"]


class NotificationFilter(filters.FilterSet):
    unread = filters.BooleanFilter(field_name="read_at", lookup_expr="isnull", label="Only unread")

    class Meta:
        model = Notification
        fields = ["kind", "unread"]


class AuditEventFilter(filters.FilterSet):
    patient = IdFilter(
        method="filter_patient", label="Events about this patient, list reads that showed them included"
    )
    user = IdFilter(field_name="user_id")
    since = UtcIsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = ["patient", "user", "username", "action", "outcome", "object_type"]

    def filter_patient(self, queryset, name, value):
        value = int(value)
        if not -(2**63) < value < 2**63:  # no such patient; PostgreSQL would refuse the number
            return queryset.none()
        return queryset.filter(patient_events_q(value))
