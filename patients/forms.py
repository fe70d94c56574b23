"""Forms of enrolment, the record's pages and the case manager's team tools."""

from __future__ import annotations

from django import forms
from django.core.validators import MaxLengthValidator

from careteam.concurrency import VersionedFormMixin
from careteam.models import Discipline, TeamRole, User

from .models import (
    DEMOGRAPHIC_FIELDS,
    Acuity,
    Caregiver,
    Consent,
    Patient,
    Programme,
    ProgrammeExitReason,
    normalise_mrn,
)


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


class MembershipEndForm(VersionedFormMixin):
    """Confirm the end of a role: a reason, a date, and for the last case manager the
    colleague who takes over (only case-management clinicians are offered)."""

    end_date = forms.DateField(
        label="Ends on",
        required=False,
        help_text="Empty for today.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    reason = forms.CharField(
        label="Why does this role end?",
        max_length=300,
        help_text="E.g. “Discharged from home health”, “Caseload moved to the north team”.",
    )
    successor = forms.ModelChoiceField(
        label="Case manager who takes over",
        queryset=User.objects.none(),
        required=False,
        empty_label="Choose a case manager",
    )

    def __init__(self, *args, membership=None, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if membership is not None and membership.role == TeamRole.CASE_MANAGER:
            from careteam.selectors import clinician_directory

            self.fields["successor"].queryset = clinician_directory(discipline=membership.discipline).exclude(
                pk=membership.user_id
            )
            self.fields["successor"].label_from_instance = lambda u: (
                f"{u.display_name} ({u.username}), {u.caseload} patients"
            )
        else:
            del self.fields["successor"]


class ClinicianSearchForm(forms.Form):
    """The team picker's directory search."""

    q = forms.CharField(
        label="Name or username",
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off", "placeholder": "e.g. Ellis"}),
    )
    discipline = forms.ModelChoiceField(
        label="Discipline", queryset=Discipline.objects.all(), required=False, empty_label="Any discipline"
    )


# ---------------------------------------------------------------------------
# Enrolment
# ---------------------------------------------------------------------------
def language_choices() -> list[tuple[str, str]]:
    """Language names (Django's LANG_INFO, maintained with Django) keyed by BCP-47 code."""
    from django.conf.locale import LANG_INFO

    names = {
        code: f"{info['name']} ({info['name_local']})" if info["name_local"] != info["name"] else info["name"]
        for code, info in LANG_INFO.items()
        if "name" in info
    }
    return sorted(names.items(), key=lambda item: item[1].casefold())


class PatientEnrolForm(forms.ModelForm):
    mrn = forms.CharField(
        label="MRN",
        required=False,
        max_length=40,
        help_text="Leave empty to generate one.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    preferred_language = forms.ChoiceField(label="Preferred language", initial="en")
    not_a_duplicate = forms.BooleanField(
        label="None of these is my patient: enrol a new record", required=False
    )

    class Meta:
        model = Patient
        fields = list(DEMOGRAPHIC_FIELDS)
        labels = {"gender": "Sex", "preferences": "What matters to me (in the patient’s words)"}
        widgets = {
            "birth_date": forms.DateInput(attrs={"type": "date"}),
            "preferences": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["preferred_language"].choices = language_choices()
        # the MRN is declared, not a model field here: its uniqueness is the duplicate
        # check's to explain (showing the record, or saying only that one exists)
        self.order_fields([*self.Meta.fields[:5], "mrn"])
        # what matters to the patient, in their words: a paragraph, not a document
        self.fields["preferences"].validators.append(MaxLengthValidator(4000))
        self.fields["preferences"].widget.attrs["maxlength"] = 4000

    def clean_mrn(self):
        return normalise_mrn(self.cleaned_data.get("mrn", ""))

    def patient_data(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("not_a_duplicate", None)
        return data


class PatientEditForm(VersionedFormMixin, PatientEnrolForm):
    """Demographics edited later from the chart; the MRN is the record's key and stays."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["mrn"]
        del self.fields["not_a_duplicate"]

    def patient_data(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("expected_version", None)
        return data


class CaregiverForm(forms.ModelForm):
    """A new caregiver; `CaregiverEditForm` edits one already recorded."""

    language = forms.ChoiceField(label="Their language", required=False)

    class Meta:
        model = Caregiver
        fields = [
            "name",
            "relationship",
            "phone",
            "email",
            "language",
            "may_contact",
            "may_receive_information",
            "is_primary",
            "lives_with_patient",
            "notes",
        ]
        labels = {"may_contact": "The team may contact them", "is_primary": "Primary caregiver"}
        widgets = {"notes": forms.Textarea(attrs={"rows": 2, "maxlength": 2000})}

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [("", "Not recorded"), *language_choices()]
        self.fields["notes"].validators.append(MaxLengthValidator(2000))

    def caregiver_data(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("expected_version", None)
        return data


class CaregiverEditForm(VersionedFormMixin, CaregiverForm):
    pass


class CaregiverEndForm(VersionedFormMixin):
    """ "No longer a caregiver": only the version of the caregiver the page showed."""


class ConsentForm(forms.ModelForm):
    """Record a consent; the document is optional (PDF, PNG or JPEG, at most 5 MB)."""

    document = forms.FileField(
        label="Scanned or signed form",
        required=False,
        help_text="Optional. PDF, PNG or JPEG, at most 5 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf,image/png,image/jpeg"}),
    )

    awaiting_confirmation = forms.BooleanField(
        label="Awaiting the patient's confirmation",
        required=False,
        help_text="Not in force until the patient (or a caregiver acting for them) confirms it in the portal.",
    )

    class Meta:
        model = Consent
        fields = [
            "scope",
            "caregiver",
            "caregiver_access",
            "given_by",
            "method",
            "date_given",
            "expires_on",
            "note",
        ]
        labels = {
            "scope": "What the patient agrees to",
            "given_by": "Given by",
            "date_given": "Date given",
            "expires_on": "Expires on",
        }
        help_texts = {"expires_on": "Leave empty if it does not expire."}
        widgets = {
            "date_given": forms.DateInput(attrs={"type": "date"}),
            "expires_on": forms.DateInput(attrs={"type": "date"}),
            "note": forms.Textarea(attrs={"rows": 2, "maxlength": 2000}),
        }

    def __init__(self, *args, patient: Patient, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["caregiver"].queryset = patient.caregivers.filter(end_date__isnull=True)
        self.fields["caregiver"].required = False
        self.fields["caregiver"].help_text = "Only for sharing with a named caregiver."
        self.fields["caregiver_access"].required = False
        self.fields[
            "caregiver_access"
        ].help_text = (
            "Only for a named caregiver: what they may do in the patient portal (default: view the plan)."
        )
        self.fields["note"].validators.append(MaxLengthValidator(2000))
        self.fields["given_by"].max_length = 150

    def _post_clean(self):
        """Rules are the service's (consent_record): the form only parses fields."""

    def consent_data(self) -> dict:
        data = {k: v for k, v in self.cleaned_data.items() if k != "document"}
        if not data.get("caregiver_access"):
            data.pop("caregiver_access", None)
        return data


class ConsentRevokeForm(VersionedFormMixin):
    reason = forms.CharField(
        label="Why is it revoked?",
        max_length=500,
        help_text="Who withdrew it and how, e.g. “Patient asked by phone”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


# ---------------------------------------------------------------------------
# Acuity and programmes
# ---------------------------------------------------------------------------
class AcuityForm(VersionedFormMixin):
    acuity = forms.ChoiceField(
        label="Acuity", choices=[("", "Not assessed"), *Acuity.choices], required=False
    )


class EnrolmentForm(forms.Form):
    programme = forms.ModelChoiceField(
        label="Programme", queryset=Programme.objects.filter(active=True), empty_label="Choose a programme"
    )
    entered_on = forms.DateField(label="Entered on", widget=forms.DateInput(attrs={"type": "date"}))
    reason = forms.CharField(label="Reason for entry", max_length=300)


class EnrolmentExitForm(VersionedFormMixin):
    enrolment = forms.IntegerField(widget=forms.HiddenInput)
    exited_on = forms.DateField(label="Left on", widget=forms.DateInput(attrs={"type": "date"}))
    exit_reason = forms.ChoiceField(
        label="Reason", choices=[("", "Choose a reason"), *ProgrammeExitReason.choices]
    )
    note = forms.CharField(label="Note", max_length=300, required=False)
