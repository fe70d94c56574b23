"""Page forms of transitions and medications; the services validate again."""

from __future__ import annotations

from django import forms

from careteam.concurrency import VersionedFormMixin
from careteam.models import Discipline

from .models import SOURCE_LISTS, MedicationSource, TimeOfDay, TransitionKind

DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")

# Encounter.hospitalization.dischargeDisposition (HL7 discharge-disposition codes)
DISPOSITIONS = [
    ("", "—"),
    ("home", "Home"),
    ("alt-home", "Alternative home"),
    ("other-hcf", "Other healthcare facility"),
    ("hosp", "Hospice"),
    ("long", "Long-term care"),
    ("rehab", "Rehabilitation"),
    ("snf", "Skilled nursing facility"),
    ("aadvice", "Left against advice"),
    ("exp", "Expired"),
    ("oth", "Other"),
]
SOURCE_CHOICES = [(v, label) for v, label in MedicationSource.choices if v in SOURCE_LISTS]


class _Form(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class TransitionForm(_Form):
    kind = forms.ChoiceField(choices=TransitionKind.choices, initial=TransitionKind.DISCHARGE)
    occurred_at = forms.DateTimeField(label="When", widget=DATETIME)
    admitted_at = forms.DateTimeField(label="Admitted (for a discharge)", widget=DATETIME, required=False)
    from_location = forms.CharField(label="From", max_length=200, required=False)
    to_location = forms.CharField(label="To", max_length=200, required=False)
    reason = forms.CharField(max_length=300, required=False)
    disposition = forms.ChoiceField(label="Discharged to", choices=DISPOSITIONS, required=False)


class StepDoneForm(VersionedFormMixin, _Form):
    """Mark a checklist step (its activity) done, from the version the page showed."""


class DebriefForm(_Form):
    went_well = forms.CharField(
        label="What went well", widget=forms.Textarea(attrs={"rows": 3}), max_length=5000
    )
    tighten = forms.CharField(
        label="What to tighten", widget=forms.Textarea(attrs={"rows": 3}), max_length=5000, required=False
    )
    ACTIONS = 3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        disciplines = Discipline.objects.all()
        for n in range(1, self.ACTIONS + 1):
            self.fields[f"action_{n}"] = forms.CharField(
                label=f"Follow-up action {n}", max_length=200, required=False
            )
            self.fields[f"action_{n}_discipline"] = forms.ModelChoiceField(
                queryset=disciplines, required=False, label="Owned by", empty_label="Case management"
            )

    def actions(self) -> list[dict]:
        out = []
        for n in range(1, self.ACTIONS + 1):
            title = (self.cleaned_data.get(f"action_{n}") or "").strip()
            if title:
                discipline = self.cleaned_data.get(f"action_{n}_discipline")
                out.append(
                    {"title": title, "discipline": discipline.code if discipline else "case-management"}
                )
        return out


class MedicationForm(_Form):
    source = forms.ChoiceField(choices=SOURCE_CHOICES)
    name = forms.CharField(max_length=200, label="Medicine")
    rxnorm = forms.CharField(max_length=20, required=False, label="RxNorm code")
    dose = forms.CharField(max_length=100, required=False)
    route = forms.CharField(max_length=60, required=False)
    timing = forms.CharField(max_length=200, required=False, label="When, in plain words")
    times = forms.MultipleChoiceField(
        choices=TimeOfDay.choices, required=False, widget=forms.CheckboxSelectMultiple, label="Time of day"
    )
    prescriber = forms.CharField(max_length=200, required=False)
    start = forms.DateField(required=False, widget=DATE)
    stop = forms.DateField(required=False, widget=DATE)

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("stop") and data["stop"] < data["start"]:
            self.add_error("stop", "A medicine cannot stop before it starts.")
        return data


class CompareForm(_Form):
    sources = forms.MultipleChoiceField(
        choices=SOURCE_CHOICES, widget=forms.CheckboxSelectMultiple, label="Lists to compare"
    )

    def clean_sources(self):
        sources = self.cleaned_data["sources"]
        if len(sources) < 2:
            raise forms.ValidationError("Compare at least two lists.")
        return sources
