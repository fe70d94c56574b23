"""Forms of the referral pages: they parse and explain bad input; rules live in services."""

from __future__ import annotations

import datetime as dt
import functools
import re

from django import forms
from django.conf.locale import LANG_INFO
from django.utils import timezone

from careteam.concurrency import VersionedFormMixin

from .models import (
    REFERRAL_CLOSED_STATUSES,
    REFERRAL_TRANSITIONS,
    CapacityStatus,
    ReferralOutcome,
    ReferralStatus,
    ServiceStatus,
    TaxonomyTerm,
)
from .selectors import CatalogFilters

# names people type that Django's table spells differently
EXTRA_LANGUAGE_NAMES = {
    "chinese": "zh",
    "mandarin": "zh",
    "cantonese": "yue",
    "tagalog": "tl",
    "filipino": "fil",
    "haitian creole": "ht",
    "creole": "ht",
    "somali": "so",
    "amharic": "am",
    "tigrinya": "ti",
    "hmong": "hmn",
    "navajo": "nv",
    "american sign language": "ase",
    "asl": "ase",
    "farsi": "fa",
    "punjabi": "pa",
}


@functools.cache
def _language_names() -> dict[str, str]:
    names = dict(EXTRA_LANGUAGE_NAMES)
    for code, info in LANG_INFO.items():
        if "name" not in info:
            continue  # a fallback entry
        for name in (info["name"], info.get("name_local", "")):
            if name:
                names.setdefault(name.lower(), code.split("-")[0] if "-" in code and len(code) > 5 else code)
    return names


def language_code(name: str) -> str | None:
    """'Spanish' -> 'es'; None for a name no table knows."""
    return _language_names().get(" ".join(name.split()).lower())


LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
PRIORITIES = [("routine", "Routine"), ("urgent", "Urgent"), ("asap", "ASAP")]


class CatalogSearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=200)
    category = forms.ChoiceField(label="Category", required=False)
    language = forms.CharField(
        label="Language",
        required=False,
        max_length=40,
        help_text="A language name or code, e.g. Spanish, Vietnamese, es",
    )
    free = forms.BooleanField(label="Free only", required=False)
    area = forms.CharField(label="Service area", required=False, max_length=100)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Active (default)"), ("any", "Any status"), *ServiceStatus.choices],
    )
    page = forms.IntegerField(required=False, min_value=1, max_value=100000, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        terms = list(TaxonomyTerm.objects.exclude(code="").values_list("code", "name", "id"))
        self.fields["category"].choices = [("", "Any category")] + [(code, name) for code, name, _ in terms]
        self.term_ids = {code: pk for code, _, pk in terms}

    def clean_language(self) -> str:
        """A BCP-47 code ("es") or a language's name in English or in itself ("Spanish",
        "español"), stored and searched as the code."""
        value = " ".join(self.cleaned_data["language"].split()).lower()
        if not value:
            return ""
        code = language_code(value)
        if code is None and LANGUAGE_RE.match(value):
            code = value
        if code is None:
            raise forms.ValidationError(
                f"“{self.cleaned_data['language'].strip()}” is not a language we know: "
                "type its name (Spanish) or its code (es)."
            )
        return code

    def filters(self) -> CatalogFilters:
        data = self.cleaned_data
        status = data.get("status") or ServiceStatus.ACTIVE
        return CatalogFilters(
            text=data.get("q", "").strip(),
            category=data.get("category", ""),
            category_id=self.term_ids.get(data.get("category", "")),
            language=data.get("language", ""),
            free_only=bool(data.get("free")),
            area=data.get("area", "").strip(),
            status="" if status == "any" else status,
        )


class ReferralForm(forms.Form):
    service = forms.UUIDField(widget=forms.HiddenInput, error_messages={"required": "Choose a service."})
    need = forms.TypedChoiceField(label="For the need", required=False, coerce=int, empty_value=None)
    reason = forms.CharField(label="Reason for the referral", widget=forms.Textarea(attrs={"rows": 3}))
    priority = forms.ChoiceField(choices=PRIORITIES, initial="routine")
    send = forms.BooleanField(label="Send now (otherwise saved as a draft)", required=False, initial=True)
    send_to_full = forms.BooleanField(label="Send even though the service says it is full", required=False)

    def __init__(self, *args, needs=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["need"].choices = [("", "No specific need")] + [(n.pk, str(n)) for n in needs]


class ReferralStatusForm(VersionedFormMixin):
    """Record the service's answer (on its behalf), progress, closing or reopening."""

    status = forms.ChoiceField(label="New status", error_messages={"required": "Choose the new status."})
    outcome = forms.ChoiceField(
        label="Outcome (to close)", required=False, choices=[("", "—"), *ReferralOutcome.choices]
    )
    note = forms.CharField(label="Note", required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, referral, **kwargs):
        super().__init__(*args, **kwargs)
        labels = dict(ReferralStatus.choices)
        targets = sorted(REFERRAL_TRANSITIONS.get(referral.status, set()))
        if referral.status == ReferralStatus.DRAFT:
            targets = [t for t in targets if t != ReferralStatus.REQUESTED] + [ReferralStatus.REQUESTED]
        # nothing preselected: a save without choosing must not record "Accepted"
        self.fields["status"].choices = [("", "Choose…")] + [(t, labels[t]) for t in targets]
        self.fields["expected_version"].initial = referral.version
        self.reopening = referral.status in REFERRAL_CLOSED_STATUSES
        self.has_targets = bool(targets)


class DateRangeForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            raise forms.ValidationError("The end date is before the start date.")
        if start and end and (end - start) > dt.timedelta(days=3660):
            raise forms.ValidationError("Choose a range of at most ten years.")
        return data


class MeasuresPeriodForm(forms.Form):
    """The period of the screening measures: the last 30, 90 (default) or 365 days up to
    and including today, or dates of one's own (at most ten years, not in the future)."""

    PERIODS = [("30", "Last 30 days"), ("90", "Last 90 days"), ("365", "Last 12 months"), ("custom", "Dates")]
    period = forms.ChoiceField(label="Period", choices=PERIODS, required=False)
    period_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    period_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        today = timezone.localdate()
        start, end = data.get("period_from"), data.get("period_to")
        period = data.get("period") or ("custom" if start or end else "90")
        if period != "custom":
            days = int(period)
            data["start"], data["end"] = today - dt.timedelta(days=days - 1), today
            return data
        if not start or not end:
            raise forms.ValidationError("Give both dates of the period (from and to).")
        if end < start:
            raise forms.ValidationError("The end date is before the start date.")
        if end > today:
            raise forms.ValidationError("The period ends today at the latest.")
        if (end - start) > dt.timedelta(days=3660):
            raise forms.ValidationError("Choose a period of at most ten years.")
        data["start"], data["end"] = start, end
        return data


class HsdsImportForm(forms.Form):
    file = forms.FileField(
        label="HSDS file",
        help_text=(
            "A JSON file (organizations, services, services-at-location, taxonomies or taxonomy "
            "terms) or a .zip of the CSV package."
        ),
    )
    kind = forms.ChoiceField(
        label="The JSON file holds",
        required=False,
        choices=[
            ("", "Guess from the objects"),
            ("organization", "Organizations"),
            ("service", "Services"),
            ("service_at_location", "Services at locations"),
            ("taxonomy", "Taxonomies"),
            ("taxonomy_term", "Taxonomy terms"),
        ],
    )

    MAX_BYTES = 50 * 1024 * 1024

    def clean_file(self):
        upload = self.cleaned_data["file"]
        name = upload.name.lower()
        if not (name.endswith(".json") or name.endswith(".zip")):
            raise forms.ValidationError("Upload a .json file or a .zip of the CSV package.")
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 50 MB.")
        return upload


class CapacityForm(forms.Form):
    """A service's capacity now (catalog administrators; partner staff through their page)."""

    capacity_status = forms.ChoiceField(
        label="Capacity", required=False, choices=[("", "Not known"), *CapacityStatus.choices]
    )
    capacity_note = forms.CharField(
        label="Note", required=False, max_length=250, help_text="e.g. about 3 weeks' wait"
    )
    capacity_available = forms.IntegerField(
        label="Places free", required=False, min_value=0, max_value=2**31 - 1
    )
    capacity_maximum = forms.IntegerField(
        label="Places in all", required=False, min_value=0, max_value=2**31 - 1
    )


class ListingReviewForm(forms.Form):
    change = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=2**31 - 1)
    decision = forms.ChoiceField(choices=[("publish", "Publish"), ("reject", "Reject")])
    note = forms.CharField(label="Note", required=False, max_length=1000)


class AssureForm(forms.Form):
    service = forms.UUIDField(widget=forms.HiddenInput)


# ---------------------------------------------------------------------------
# Partner organisations
# ---------------------------------------------------------------------------
DECLINE_REASON_CHOICES = [
    ("not-eligible", "The client is not eligible"),
    ("no-capacity", "We have no capacity"),
    ("could-not-contact", "We could not reach the client"),
    ("declined", "The client declined"),
    ("other", "Other (say what)"),
]
COMPLETE_OUTCOME_CHOICES = [
    ("service-provided", "Service provided"),
    ("partially-provided", "Partly provided"),
    ("not-provided", "Not provided (say why)"),
]


class PartnerActionForm(VersionedFormMixin):
    """A partner's answer to a referral; the version read guards against a stale page."""

    reason = forms.ChoiceField(choices=DECLINE_REASON_CHOICES, required=False)
    outcome = forms.ChoiceField(choices=COMPLETE_OUTCOME_CHOICES, required=False)
    text = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class ReferralMessageForm(forms.Form):
    text = forms.CharField(label="Message", max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))


class PartnerListingForm(forms.Form):
    """What a partner may propose for its service's listing (reviewed before it publishes)."""

    phone = forms.CharField(max_length=40, required=False)
    email = forms.EmailField(required=False)
    hours_description = forms.CharField(
        label="Hours", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    note = forms.CharField(label="Note for the reviewer", required=False, max_length=1000)


class PartnerInviteForm(forms.Form):
    organization = forms.ModelChoiceField(queryset=None)
    email = forms.EmailField()
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)

    def __init__(self, *args, **kwargs):
        from .models import Organization

        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = Organization.objects.order_by("name")


class ListingClaimForm(forms.Form):
    organization = forms.ModelChoiceField(queryset=None, label="Your organisation")
    name = forms.CharField(max_length=150, label="Your name")
    email = forms.EmailField(label="Your work email")
    role = forms.CharField(max_length=150, required=False, label="Your role")
    note = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs):
        from .models import Organization

        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = Organization.objects.order_by("name")


class SetPasswordForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, label="New password", strip=False)
    password_again = forms.CharField(widget=forms.PasswordInput, label="Again", strip=False)

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data
