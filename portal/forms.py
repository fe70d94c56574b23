"""The portal's forms: plain words, translated labels (gettext)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from careplans.models import STATEMENT_MAX_LENGTH
from careteam.models import MESSAGE_MAX_LENGTH
from patients.models import CaregiverAccess

from .services import PORTAL_ACHIEVEMENTS, WHAT_MATTERS_MAX_LENGTH

STALE = _("This page is out of date; reload and try again.")


class _Versioned(forms.Form):
    expected_version = forms.IntegerField(
        widget=forms.HiddenInput, min_value=1, error_messages={"required": STALE, "invalid": STALE}
    )


class WhatMattersForm(forms.Form):
    text = forms.CharField(
        label=_("What matters to me"),
        max_length=WHAT_MATTERS_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("Write what matters to you.")},
    )


class GoalProposeForm(forms.Form):
    description = forms.CharField(
        label=_("My goal, in my own words"),
        max_length=STATEMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("Write the goal in your own words.")},
    )


ACHIEVEMENT_LABELS = {
    "in-progress": _("I am working on it"),
    "improving": _("Getting better"),
    "no-change": _("No change"),
    "worsening": _("Getting worse"),
    "achieved": _("Done: I reached it"),
}


class GoalProgressForm(_Versioned):
    achievement = forms.ChoiceField(
        label=_("How is it going?"),
        choices=[(a.value, ACHIEVEMENT_LABELS[a.value]) for a in PORTAL_ACHIEVEMENTS],
        error_messages={
            "required": _("Choose how it is going."),
            "invalid_choice": _("Choose how it is going."),
        },
    )


class ActivityDoneForm(_Versioned):
    pass


class MessageForm(forms.Form):
    text = forms.CharField(
        label=_("Your message to the team"),
        max_length=MESSAGE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": _("Write your message.")},
    )


CAREGIVER_ACCESS_LABELS = {
    CaregiverAccess.VIEW: _("See my plan"),
    CaregiverAccess.MESSAGE: _("See my plan and message my team"),
    CaregiverAccess.ACT: _("Act for me (see, message, add goals and mark progress)"),
}


class CaregiverGrantForm(forms.Form):
    caregiver = forms.TypedChoiceField(label=_("Who"), coerce=int, choices=())
    level = forms.ChoiceField(
        label=_("What they may do"),
        choices=[(k.value, v) for k, v in CAREGIVER_ACCESS_LABELS.items()],
        error_messages={
            "required": _("Choose what they may do."),
            "invalid_choice": _("Choose what they may do."),
        },
    )

    def __init__(self, *args, caregivers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["caregiver"].choices = [(c.pk, f"{c.name}") for c in caregivers]
        self.fields["caregiver"].error_messages = {
            "required": _("Choose one of your caregivers."),
            "invalid_choice": _("Choose one of your caregivers."),
        }


class CaregiverRevokeForm(_Versioned):
    pass


class QuestionnaireAnswerForm(_Versioned):
    """The version of the request the answers were opened at; the answers themselves
    are parsed by the screening (`careplans.screening.parse_answers`)."""


class ConsentConfirmForm(_Versioned):
    pass


# the screening's answer errors, in the portal's words (and language)
ANSWER_ERRORS = {
    "This question needs an answer.": _("This question needs an answer."),
    "Choose one of the answers offered.": _("Choose one of the answers offered."),
    "Choose one answer.": _("Choose one answer."),
    "Enter a whole number.": _("Enter a whole number."),
    "Enter a number.": _("Enter a number."),
    "Enter a smaller number.": _("Enter a smaller number."),
    "Enter a date (YYYY-MM-DD).": _("Enter a date (YYYY-MM-DD)."),
    "Answer yes or no.": _("Answer yes or no."),
}
ANSWER_ERROR_DEFAULT = _("Check this answer.")

CONSENT_SCOPE_LABELS = {
    "treatment": _("You agree to be cared for by your care team."),
    "information-sharing": _(
        "You agree that the people on your care team share your information with each other."
    ),
    "referral": _(
        "You agree that your team shares your information with community services they refer you to."
    ),
    "caregiver": _("You agree that %(name)s may see your plan online."),
    "research": _("You agree that your information may be used for research."),
}


class LanguageForm(forms.Form):
    language = forms.ChoiceField(choices=settings.PORTAL_LANGUAGES)
    next = forms.CharField(required=False, max_length=300)


class SetPasswordForm(forms.Form):
    """The invitation's form: a new password twice, checked by the password validators."""

    password1 = forms.CharField(label=_("New password"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label=_("New password again"), widget=forms.PasswordInput, strip=False)

    def __init__(self, *args, user=None, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean(self):
        from django.contrib.auth import password_validation

        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("The two passwords are not the same."))
        elif p1:
            try:
                password_validation.validate_password(p1, self.user)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


# ---------------------------------------------------------------------------
# Staff
# ---------------------------------------------------------------------------
class InviteForm(forms.Form):
    who = forms.CharField(label="Invite", max_length=20)
    email = forms.EmailField(label="Email address", max_length=254)

    def __init__(self, *args, caregivers=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("patient", "The patient")] + [
            (f"caregiver-{c.pk}", f"{c.name} (caregiver)") for c in caregivers
        ]
        self.fields["who"] = forms.ChoiceField(label="Invite", choices=choices)


class ShareForm(forms.Form):
    shared = forms.TypedChoiceField(
        choices=[("1", "Shared"), ("0", "Not shared")],
        coerce=lambda v: v == "1",
        label="Shared with the patient",
    )
    expected_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
