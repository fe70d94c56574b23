"""Forms of the worklist filters and the case manager's team tools."""

from __future__ import annotations

from django import forms

from careplans.models import CarePlanStatus
from careteam.models import Discipline, TeamRole, User

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


class ClinicianField(forms.ModelChoiceField):
    """A clinician named by username (or id, as API clients and older pages post it).

    A text box, not a <select>: a health system has thousands of clinicians, and a select
    would render every one of them into every chart a case manager opens."""

    widget = forms.TextInput(attrs={"placeholder": "Username", "autocomplete": "off"})

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, User):
            value = value.pk
        text = str(value).strip()
        match = self.queryset.filter(username__iexact=text).first()
        if match is None and text.isdigit():
            match = self.queryset.filter(pk=int(text)).first()
        if match is None:
            raise forms.ValidationError("No active clinician has this username.", code="invalid_choice")
        return match

    def prepare_value(self, value):
        return value.username if isinstance(value, User) else value


class MembershipAddForm(forms.Form):
    """Give a clinician a role on this patient's team (case manager or lead only)."""

    user = ClinicianField(
        label="Clinician",
        queryset=User.objects.none(),
        empty_label="Choose a clinician",
    )
    discipline = forms.ModelChoiceField(
        label="Discipline", queryset=Discipline.objects.all(), empty_label="Choose a discipline"
    )
    role = forms.ChoiceField(label="Role", choices=TeamRole.choices, initial=TeamRole.MEMBER)
    start_date = forms.DateField(
        label="Starts", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end_date = forms.DateField(label="Ends", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            User.objects.filter(is_active=True, disciplines__isnull=False)
            .distinct()
            .order_by("last_name", "first_name", "username")
        )

    def clean(self):
        data = super().clean()
        user, discipline = data.get("user"), data.get("discipline")
        if user and discipline and not user.disciplines.filter(pk=discipline.pk).exists():
            self.add_error("discipline", f"{user.display_name} does not practise {discipline}.")
        start, end = data.get("start_date"), data.get("end_date")
        if start and end and end < start:
            self.add_error("end_date", "The end date cannot be before the start date.")
        return data


class MembershipEndForm(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput)
    end_date = forms.DateField(
        label="Ends on", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
