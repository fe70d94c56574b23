"""Forms of the care-team pages: the SBAR handoff and answering one; conversations; huddles."""

from __future__ import annotations

from typing import cast

from django import forms
from django.utils import timezone

from careplans.models import Activity, CarePlan

from .concurrency import VersionedFormMixin
from .models import (
    CONVERSATION_SUBJECT_MAX_LENGTH,
    HUDDLE_ANSWER_MAX_LENGTH,
    HUDDLE_SUMMARY_MAX_LENGTH,
    MESSAGE_MAX_LENGTH,
    Discipline,
    HandoffKind,
    HuddleFormat,
    Priority,
    SensitivityCategory,
    TeamMembership,
    User,
)
from .permissions import PatientAccess


class MemberChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.display_name}{f', {obj.title}' if obj.title else ''}"


class HandoffForm(forms.Form):
    """SBAR handoff to one member or one discipline's queue on this patient's team. The
    choices offer only the current team and this patient's plans and visible activities;
    the service validates again."""

    to_user = MemberChoiceField(
        queryset=User.objects.none(), required=False, label="To a team member", empty_label="—"
    )
    to_discipline = forms.ModelChoiceField(
        queryset=Discipline.objects.none(),
        required=False,
        label="Or to a discipline's queue",
        empty_label="—",
    )
    situation = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What is happening now?")
    background = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What led up to it?")
    assessment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What do you think?")
    recommendation = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="What should the receiver do?"
    )
    due_at = forms.DateTimeField(
        label="Due", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.ROUTINE)
    kind = forms.ChoiceField(
        choices=HandoffKind.choices, initial=HandoffKind.PATIENT, label="What is handed off"
    )
    care_plan = forms.ModelChoiceField(queryset=CarePlan.objects.none(), required=False, label="Care plan")
    activity = forms.ModelChoiceField(queryset=Activity.objects.none(), required=False, label="Activity")

    def __init__(self, *args, access: PatientAccess, **kwargs):
        super().__init__(*args, **kwargs)
        team = TeamMembership.objects.current().filter(patient_id=access.patient.pk)
        self.fields["to_user"].queryset = (
            User.objects.filter(pk__in=team.values("user_id"), is_active=True)
            .exclude(pk=access.user.pk)
            .order_by("last_name", "first_name", "username")
        )
        self.fields["to_discipline"].queryset = Discipline.objects.filter(pk__in=team.values("discipline_id"))
        plans = CarePlan.objects.filter(patient_id=access.patient.pk)
        self.fields["care_plan"].queryset = plans
        self.fields["activity"].queryset = (
            Activity.objects.filter(care_plan__in=plans)
            .filter(access.sensitivity_q())
            .order_by("care_plan_id", "title")
        )

    def clean_due_at(self):
        due = self.cleaned_data["due_at"]
        if due <= timezone.now():
            raise forms.ValidationError("The due time must be in the future.")
        return due

    def clean(self):
        data = super().clean()
        to_user, to_discipline = data.get("to_user"), data.get("to_discipline")
        if to_user is None and to_discipline is None:
            self.add_error("to_user", "Choose a team member or a discipline's queue.")
        elif to_user is not None and to_discipline is not None:
            self.add_error("to_discipline", "Choose a team member or a discipline's queue, not both.")
        activity, plan = data.get("activity"), data.get("care_plan")
        if activity is not None and plan is None:
            data["care_plan"] = activity.care_plan
        elif activity is not None and activity.care_plan_id != plan.pk:
            self.add_error("activity", "That activity is on another care plan.")
        return data


class HandoffActionForm(VersionedFormMixin):
    """One button on the handoff page, carrying the version the page showed; a rejection
    needs a reason."""

    ACTIONS = ("accept", "reject", "start", "complete", "cancel")

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self):
        data = super().clean()
        if data.get("action") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Give a reason for rejecting the handoff.")
        return data


# ---------------------------------------------------------------------------
# Cover and caseload reassignment (careteam.caseloads)
# ---------------------------------------------------------------------------
class UsernameField(forms.ModelChoiceField):
    """An active clinician named by username: a text box, not a select of everyone."""

    widget = forms.TextInput(attrs={"placeholder": "Username", "autocomplete": "off"})
    default_error_messages = {"invalid_choice": "No active clinician has this username."}

    def __init__(self, **kwargs):
        kwargs.setdefault("queryset", User.objects.filter(is_active=True))
        super().__init__(to_field_name="username", **kwargs)

    def to_python(self, value):
        if isinstance(value, str) and ("\x00" in value or len(value) > 150):
            raise forms.ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return super().to_python(value)

    def prepare_value(self, value):
        return value.username if isinstance(value, User) else value


class CoverForm(forms.Form):
    colleague = UsernameField(label="Colleague who covers")
    discipline = forms.ModelChoiceField(queryset=Discipline.objects.none(), label="Discipline covered")
    start_date = forms.DateField(label="First day away", widget=forms.DateInput(attrs={"type": "date"}))
    end_date = forms.DateField(label="Last day away", widget=forms.DateInput(attrs={"type": "date"}))
    note = forms.CharField(label="Note (optional)", max_length=300, required=False)

    def __init__(self, *args, absent: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["discipline"].queryset = absent.disciplines.all()


class ReassignForm(forms.Form):
    """Move some or all of a case manager's patients to another case manager."""

    from_user = forms.ModelChoiceField(
        queryset=User.objects.none(), label="From case manager", required=False
    )
    to_user = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True),
        label="To case manager",
        error_messages={"invalid_choice": "Choose the case manager who takes the patients over."},
    )
    scope = forms.ChoiceField(
        choices=[("all", "All of their patients"), ("chosen", "Only the patients ticked below")],
        initial="all",
        widget=forms.RadioSelect,
        label="Which patients",
    )
    patients = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=[], label="Patients")

    def __init__(self, *args, case_managers, patient_choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from_user"].queryset = case_managers
        self.fields["patients"].choices = patient_choices


# ---------------------------------------------------------------------------
# Conversations
# ---------------------------------------------------------------------------
class MessageForm(forms.Form):
    """A plain-text message (links are shown as links; anything else as typed)."""

    text = forms.CharField(
        label="Message",
        max_length=MESSAGE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": MESSAGE_MAX_LENGTH}),
        help_text="Plain text. @username mentions a team member, @pharmacy a discipline's queue.",
        error_messages={"required": "Write the message."},
    )
    # the patient's thread with the team only: the reply is shown in the portal
    to_patient = forms.BooleanField(required=False, label="To patient")


class MessageEditForm(VersionedFormMixin, MessageForm):
    """Correcting one's own message within minutes of posting it."""


class ConversationStartForm(MessageForm):
    """A new conversation on the patient: a subject, optionally about one visible item
    (`about`, "need:12"), optionally filed in a sensitivity category the starter may see,
    and its first message."""

    subject = forms.CharField(
        max_length=CONVERSATION_SUBJECT_MAX_LENGTH,
        required=False,
        help_text="Leave empty to use the item's name.",
    )
    about = forms.CharField(required=False, widget=forms.HiddenInput)
    sensitivity = forms.ModelChoiceField(
        queryset=SensitivityCategory.objects.none(),
        required=False,
        label="Sensitive",
        empty_label="Not sensitive",
        help_text="Only disciplines the policy allows for this category (and the case manager) will see it.",
    )
    field_order = ["subject", "text", "sensitivity", "about"]

    def __init__(self, *args, access: PatientAccess, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sensitivity"].queryset = SensitivityCategory.objects.filter(
            pk__in=list(access.visible_sensitivity_ids)
        )


# ---------------------------------------------------------------------------
# Huddles (careteam/huddles.py)
# ---------------------------------------------------------------------------
def _deadline_field() -> forms.DateTimeField:
    return forms.DateTimeField(
        label="Answers by",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Each invited member is reminded once before then if they have not answered.",
    )


class MemberMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.display_name


class HuddleStartForm(forms.Form):
    """A huddle on one patient: its format, deadline and the members asked (the current
    team; all of them but the case manager unless chosen otherwise)."""

    format = forms.ChoiceField(choices=HuddleFormat.choices, initial=HuddleFormat.SBAR)
    deadline = _deadline_field()
    invitees = MemberMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Ask for an update from",
        help_text="None ticked: everyone on the team.",
    )

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        cast(MemberMultipleChoiceField, self.fields["invitees"]).queryset = team


class CaseloadHuddleForm(forms.Form):
    """A huddle on each of my patients with changes since their last one."""

    format = forms.ChoiceField(choices=HuddleFormat.choices, initial=HuddleFormat.SBAR)
    deadline = _deadline_field()


class HuddleAnswerForm(forms.Form):
    """An invited member's structured update, labelled as the huddle's format names the
    parts; optionally about one item among the changes the member may see."""

    news = forms.CharField(max_length=HUDDLE_ANSWER_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))
    concerns = forms.CharField(
        max_length=HUDDLE_ANSWER_MAX_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    will_do = forms.CharField(
        max_length=HUDDLE_ANSWER_MAX_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    needs_from = forms.CharField(
        max_length=HUDDLE_ANSWER_MAX_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="@mention the person or the discipline's queue.",
    )
    about = forms.ChoiceField(required=False, label="About", choices=())

    def __init__(self, *args, labels: dict[str, str], about_choices, **kwargs):
        super().__init__(*args, **kwargs)
        for name, label in labels.items():
            self.fields[name].label = label
        cast(forms.ChoiceField, self.fields["about"]).choices = [
            ("", "The patient in general"),
            *about_choices,
        ]


class HuddleCloseForm(VersionedFormMixin, forms.Form):
    summary = forms.CharField(
        max_length=HUDDLE_SUMMARY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Kept on the chart and posted in the huddle's conversation, for the whole team.",
    )
