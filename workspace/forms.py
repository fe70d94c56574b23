"""Forms of the pages that compose several domains: the worklist's filters."""

from __future__ import annotations

from django import forms

from careplans.models import CarePlanStatus

from .selectors import NO_PLAN

PLAN_STATUS_CHOICES = [("", "Any plan status"), *CarePlanStatus.choices, (NO_PLAN, "No care plan")]


class WorklistFilterForm(forms.Form):
    q = forms.CharField(
        label="Search by name or MRN",
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Name or MRN", "autocomplete": "off"}),
    )
    plan_status = forms.ChoiceField(label="Plan status", choices=PLAN_STATUS_CHOICES, required=False)
    waiting = forms.BooleanField(label="Something waiting for me", required=False)
