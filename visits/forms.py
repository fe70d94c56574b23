"""Page forms: they check the shape of the input; the services decide the rest."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django import forms
from django.conf import settings
from django.utils import timezone

from careplans.models import ACTIVITY_OPEN_STATUSES, Activity
from careteam.concurrency import VersionedFormMixin
from careteam.models import Discipline, TeamMembership, User
from careteam.permissions import PatientAccess

from .models import (
    AUTHORISATION_INITIAL_STATUSES,
    REASON_MAX_LENGTH,
    VISIT_MAX_MINUTES,
    Authorisation,
    AuthorisationStatus,
    UnitKind,
    VisitStatus,
    VisitType,
)

COMMON_ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
]


def zone_choices() -> list[tuple[str, str]]:
    zones = [settings.TIME_ZONE] + [z for z in COMMON_ZONES if z != settings.TIME_ZONE]
    return [(z, z) for z in zones]


class LocalDateTimeField(forms.DateTimeField):
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]

    def to_python(self, value):
        # the wall time as typed; the form attaches the chosen time zone
        value = super().to_python(value)
        return timezone.make_naive(value) if value is not None and timezone.is_aware(value) else value


def in_zone(value: dt.datetime, zone: str) -> dt.datetime:
    return value.replace(tzinfo=zoneinfo.ZoneInfo(zone))


class VisitForm(forms.Form):
    visit_type = forms.ChoiceField(choices=VisitType.choices, label="Type")
    clinician = forms.ModelChoiceField(queryset=User.objects.none(), required=False, label="Team member")
    provider_name = forms.CharField(max_length=200, required=False, label="Or an outside provider (name)")
    start = LocalDateTimeField(label="Starts")
    time_zone = forms.ChoiceField(choices=(), label="Time zone")
    duration_minutes = forms.IntegerField(
        min_value=5, max_value=VISIT_MAX_MINUTES, initial=60, label="Minutes"
    )
    location = forms.CharField(max_length=300, required=False, label="Where")
    activities = forms.ModelMultipleChoiceField(
        queryset=Activity.objects.none(),
        required=False,
        label="For activities",
        widget=forms.CheckboxSelectMultiple,
    )
    authorisation = forms.ModelChoiceField(
        queryset=Authorisation.objects.none(), required=False, label="Draws on"
    )
    units = forms.IntegerField(min_value=1, max_value=100, initial=1, label="Units it uses")
    allow_conflicts = forms.BooleanField(
        required=False, label="Book even though the clinician has another visit then"
    )

    def __init__(self, *args, access: PatientAccess, **kwargs):
        super().__init__(*args, **kwargs)
        patient = access.patient
        self.fields["time_zone"].choices = zone_choices()
        self.fields["time_zone"].initial = settings.TIME_ZONE
        members = TeamMembership.objects.current().filter(patient=patient).values("user_id")
        self.fields["clinician"].queryset = User.objects.filter(pk__in=members, is_active=True).order_by(
            "last_name", "first_name", "username"
        )
        self.fields["clinician"].label_from_instance = lambda u: u.display_name
        self.fields["activities"].queryset = (
            Activity.objects.filter(care_plan__patient=patient, status__in=ACTIVITY_OPEN_STATUSES)
            .filter(access.sensitivity_q())
            .order_by("due_date", "id")
        )
        self.fields["authorisation"].queryset = Authorisation.objects.filter(
            patient=patient, status=AuthorisationStatus.APPROVED
        )

    def clean(self):
        data = super().clean()
        if not data.get("clinician") and not (data.get("provider_name") or "").strip():
            self.add_error("clinician", "Choose the team member, or name the outside provider.")
        if data.get("start") and data.get("time_zone"):
            data["start"] = in_zone(data["start"], data["time_zone"])
        return data


class VisitStatusForm(VersionedFormMixin, forms.Form):
    status = forms.ChoiceField(choices=VisitStatus.choices)
    status_reason = forms.CharField(max_length=REASON_MAX_LENGTH, required=False, label="Why")


class VisitRebookForm(VersionedFormMixin, forms.Form):
    start = LocalDateTimeField(label="New time")
    time_zone = forms.ChoiceField(choices=(), label="Time zone")
    reason = forms.CharField(max_length=200, required=False, label="Why")
    allow_conflicts = forms.BooleanField(
        required=False, label="Book even though the clinician has another visit then"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = zone_choices()

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("time_zone"):
            data["start"] = in_zone(data["start"], data["time_zone"])
        return data


class AuthorisationForm(forms.Form):
    payer = forms.CharField(max_length=200)
    service = forms.CharField(max_length=200, label="Service (what)")
    discipline = forms.ModelChoiceField(queryset=Discipline.objects.all(), label="Provided by (discipline)")
    provider_name = forms.CharField(max_length=200, required=False, label="Outside provider")
    unit_kind = forms.ChoiceField(choices=UnitKind.choices, label="Counted in")
    units_authorised = forms.IntegerField(
        label="Authorised", error_messages={"min_value": "Authorise at least one unit or visit."}, min_value=1
    )
    start_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="From")
    end_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="Until")
    reference_number = forms.CharField(max_length=100, required=False)
    status = forms.ChoiceField(
        choices=[
            (v, label) for v, label in AuthorisationStatus.choices if v in AUTHORISATION_INITIAL_STATUSES
        ]
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("start_date"), data.get("end_date")
        if start and end and end < start:
            self.add_error("end_date", "The authorisation cannot end before it starts.")
        return data


class AuthorisationStatusForm(VersionedFormMixin, forms.Form):
    status = forms.ChoiceField(choices=AuthorisationStatus.choices)
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, required=False, label="Why")
    reference_number = forms.CharField(max_length=100, required=False)


class AuthorisationDocumentForm(forms.Form):
    document = forms.FileField()
