"""Forms of the plan editor. Each carries the version of the item the user read, so a
save over someone else's newer change is refused instead of overwriting it."""

from __future__ import annotations

import json

from django import forms
from rest_framework.exceptions import ParseError

from careteam.api.parsers import check_json
from careteam.concurrency import VersionedFormMixin
from careteam.models import Discipline, SensitivityCategory
from careteam.permissions import PatientAccess

from .models import (
    CAREPLAN_TRANSITIONS,
    GOAL_INITIAL_STATUSES,
    STATUS_REASON_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    Activity,
    CarePlan,
    CarePlanStatus,
    Goal,
    GoalLifecycle,
    Need,
    NoteKind,
)
from .selectors import STATUS_FIELDS, next_statuses, team_users

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class VersionedForm(VersionedFormMixin, forms.ModelForm):
    """Edit forms post back the version they were rendered from (required); the same form
    adding a new item has nothing to compare with and carries none."""

    def __init__(self, *args, access: PatientAccess, plan: CarePlan, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.access, self.plan = access, plan
        if not self.instance.pk:
            del self.fields["expected_version"]
        elif not self.is_bound:
            self.initial["expected_version"] = self.instance.version
        if self.instance.pk:
            # an inline edit form replaces the item: put the keyboard where the user works
            first = next(iter(self.fields))
            self.fields[first].widget.attrs["autofocus"] = True
        for name in ("sensitivity",):
            if name in self.fields:
                self.fields[name].queryset = SensitivityCategory.objects.filter(
                    pk__in=access.visible_sensitivity_ids
                )
                self.fields[name].empty_label = "Not sensitive"
        if "goals" in self.fields:
            self.fields["goals"].queryset = (
                Goal.objects.filter(care_plan=plan).filter(access.goal_q()).order_by("id")
            )
            self.fields["goals"].required = False
        if "needs" in self.fields:
            self.fields["needs"].queryset = (
                Need.objects.filter(care_plan=plan).filter(access.sensitivity_q()).order_by("id")
            )
            self.fields["needs"].required = False
        if "owner_discipline" in self.fields:
            self.fields["owner_discipline"].queryset = Discipline.objects.all()
        if "assigned_to" in self.fields:
            self.fields["assigned_to"].queryset = team_users(access.patient)
            self.fields["assigned_to"].empty_label = "Unassigned"
            self.fields["assigned_to"].label_from_instance = lambda u: u.display_name

    def changes(self) -> dict:
        """The submitted values of the model fields, for `item_update`."""
        data = {name: self.cleaned_data[name] for name in self._meta.fields if name in self.cleaned_data}
        for name in ("goals", "needs"):
            if name in data:
                data[name] = list(data[name])
        return data

    def _post_clean(self):
        # Validation of the whole item happens in the service (on the locked, fresh row);
        # here only the fields themselves are checked, so the item read is never mutated.
        pass


class GoalForm(VersionedForm):
    class Meta:
        model = Goal
        fields = [
            "description",
            "expressed_by",
            "priority",
            "owner_discipline",
            "target_measure",
            "target_value",
            "target_due",
            "sensitivity",
        ]
        labels = {"description": "Goal", "expressed_by": "Whose goal is this?", "target_due": "Target date"}
        widgets = {"description": forms.Textarea(attrs={"rows": 2}), "target_due": DATE}


class GoalCreateForm(GoalForm):
    class Meta(GoalForm.Meta):
        fields = [*GoalForm.Meta.fields, "lifecycle_status"]
        labels = {**GoalForm.Meta.labels, "lifecycle_status": "Status"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lifecycle_status"].choices = [
            c for c in GoalLifecycle.choices if c[0] in GOAL_INITIAL_STATUSES
        ]


class NeedForm(VersionedForm):
    class Meta:
        model = Need
        fields = ["domain", "category", "description", "is_barrier", "sensitivity", "goals"]
        labels = {
            "description": "Need or barrier",
            "is_barrier": "This is a barrier to a goal",
            "goals": "Related goals",
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 2}), "goals": forms.CheckboxSelectMultiple}


class ActivityForm(VersionedForm):
    class Meta:
        model = Activity
        fields = [
            "title",
            "description",
            "owner_discipline",
            "assigned_to",
            "due_date",
            "sensitivity",
            "goals",
            "needs",
            "for_patient",
        ]
        labels = {
            "owner_discipline": "Owning discipline",
            "assigned_to": "Assigned to",
            "goals": "For goals",
            "needs": "Addresses needs",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "due_date": DATE,
            "goals": forms.CheckboxSelectMultiple,
            "needs": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk and not self.is_bound and self.access.memberships:
            self.initial.setdefault("owner_discipline", self.access.memberships[0].discipline_id)


class StatusForm(VersionedFormMixin):
    """Move an item to one of its legal next statuses."""

    status = forms.CharField(max_length=20)
    status_reason = forms.CharField(max_length=STATUS_REASON_MAX_LENGTH, required=False)


class NoteForm(forms.Form):
    text = forms.CharField(label="Comment or proposed change", widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(label="Kind", choices=NoteKind.choices, initial=NoteKind.COMMENT)
    goal = forms.IntegerField(required=False, widget=forms.HiddenInput)
    need = forms.IntegerField(required=False, widget=forms.HiddenInput)
    activity = forms.IntegerField(required=False, widget=forms.HiddenInput)


class ProposalForm(VersionedFormMixin, forms.Form):
    """Propose changes to an item one may not edit: the fields its editor offers (less
    sensitivity and links), prefilled with the item as read, its legal next statuses, and
    why. Only the fields changed become the proposal's `changes`."""

    text = forms.CharField(
        label="Your proposal",
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Say why; @username tells a team member.",
    )

    def __init__(self, *args, item, access: PatientAccess, fields: tuple[str, ...], **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.item, self.model = item, type(item)
        status_name = STATUS_FIELDS[self.model][0]
        names = [n for n in fields if n not in (status_name, "status_reason")]
        model_fields = forms.fields_for_model(
            self.model,
            fields=names,
            widgets={"description": forms.Textarea(attrs={"rows": 2}), "due_date": DATE, "target_due": DATE},
            labels={
                "owner_discipline": "Owning discipline",
                "assigned_to": "Assigned to",
                "target_due": "Target date",
            },
        )
        for name in names:
            field = model_fields[name]
            field.required = False
            self.fields[name] = field
        if "owner_discipline" in self.fields:
            self.fields["owner_discipline"].queryset = Discipline.objects.all()
        if "assigned_to" in self.fields:
            self.fields["assigned_to"].queryset = team_users(access.patient)
            self.fields["assigned_to"].empty_label = "Unassigned"
            self.fields["assigned_to"].label_from_instance = lambda u: u.display_name
        self.status_name = status_name
        self.fields[status_name] = forms.ChoiceField(
            label="Status", required=False, choices=[("", "No change"), *next_statuses(item)]
        )
        self.fields["status_reason"] = forms.CharField(
            label="Reason for the status", required=False, max_length=STATUS_REASON_MAX_LENGTH
        )
        if not self.is_bound:
            self.initial.update(forms.model_to_dict(item, fields=names))
            self.initial["expected_version"] = item.version
        # the text last, next to the button
        self.order_fields([*names, status_name, "status_reason", "text", "expected_version"])

    def changes(self) -> dict:
        """The fields the user changed (new values); the service keeps only real changes."""
        data = self.cleaned_data
        changes = {}
        for name in self.fields:
            if name in ("text", "expected_version", "status_reason", self.status_name):
                continue
            value = data.get(name)
            current = getattr(self.item, name)
            if getattr(value, "pk", value) != getattr(current, "pk", current) and not (
                value in (None, "") and current in (None, "")
            ):
                changes[name] = value
        if data.get(self.status_name):
            changes[self.status_name] = data[self.status_name]
            if data.get("status_reason"):
                changes["status_reason"] = data["status_reason"]
        return changes


class DecisionForm(forms.Form):
    """Accept or decline a proposal; a decline says why."""

    reason = forms.CharField(label="Why not", required=False, max_length=STATUS_REASON_MAX_LENGTH)
    next = forms.ChoiceField(choices=[("plan", "plan"), ("item", "item")], required=False)


class CarePlanForm(VersionedForm):
    """The plan's own details; its status (legal next statuses only) for the case manager
    and the plan lead."""

    class Meta:
        model = CarePlan
        fields = [
            "title",
            "description",
            "period_start",
            "period_end",
            "review_due",
            "status",
            "status_reason",
        ]
        labels = {
            "period_start": "Starts",
            "period_end": "Ends",
            "review_due": "Review due",
            "status_reason": "Reason for a status change",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "period_start": DATE,
            "period_end": DATE,
            "review_due": DATE,
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.access.can_edit_any:
            del self.fields["status"]
            del self.fields["status_reason"]
        else:
            current = self.instance.status
            legal = CAREPLAN_TRANSITIONS.get(current, set())
            self.fields["status"].choices = [
                (code, label) for code, label in CarePlanStatus.choices if code == current or code in legal
            ]


class CarePlanCreateForm(forms.Form):
    title = forms.CharField(label="Plan title", max_length=200)
    status = forms.ChoiceField(
        label="Status",
        choices=[(CarePlanStatus.DRAFT, "Draft"), (CarePlanStatus.ACTIVE, "Active")],
        initial=CarePlanStatus.DRAFT,
    )
    review_due = forms.DateField(label="Review due", required=False, widget=DATE)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ScreeningSaveForm(VersionedFormMixin):
    """The version a screening's answers were opened at; the answers themselves are parsed
    by `careplans.screening.parse_answers`."""


# ---------------------------------------------------------------------------
# Clinical content import (admin): Questionnaires and plan templates as JSON
# ---------------------------------------------------------------------------
CONTENT_UPLOAD_MAX_BYTES = 1024 * 1024


def json_from_upload(upload) -> object:
    """The parsed JSON of an uploaded file, or a ValidationError that says what is wrong
    with it (size, encoding, syntax with line and column, nesting, NUL characters)."""
    name = getattr(upload, "name", "The file")
    if (upload.size or 0) > CONTENT_UPLOAD_MAX_BYTES:
        raise forms.ValidationError(f"{name} is larger than {CONTENT_UPLOAD_MAX_BYTES // 1024} KB.")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise forms.ValidationError(f"{name} is not UTF-8 text: upload a JSON file.") from None

    def no_constant(value: str):
        raise ValueError(f"{value} is not valid JSON")

    try:
        data = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(
            f"{name} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except (ValueError, RecursionError) as exc:
        raise forms.ValidationError(f"{name} is not valid JSON: {str(exc)[:200]}.") from None
    try:
        check_json(data)
    except ParseError as exc:
        raise forms.ValidationError(
            f"{name}: {str(exc.detail).removeprefix('JSON parse error - ')}"
        ) from None
    if not isinstance(data, dict):
        raise forms.ValidationError(f"{name} holds a JSON {type(data).__name__}, not an object.")
    return data


class QuestionnaireImportForm(forms.Form):
    questionnaire = forms.FileField(
        label="Questionnaire",
        help_text="A FHIR R4 Questionnaire as JSON, with url and version. A new version of a "
        "stored url is added beside the older ones; a url and version already stored is refused.",
    )
    rules = forms.FileField(
        label="Scoring and rules",
        required=False,
        help_text='Optional JSON: {"sensitivity": "<category code>", "scoring": {"items": [...], '
        '"bands": [[low, high, "label"]]}, "rules": [{"key", "category", "domain", "description", '
        '"conditions": [{"link_id", "codes"}] or "min_score"}]} (the format of the shipped *.rules.json).',
    )

    def clean_questionnaire(self):
        return json_from_upload(self.cleaned_data["questionnaire"])

    def clean_rules(self):
        upload = self.cleaned_data.get("rules")
        return json_from_upload(upload) if upload else None


class TemplateImportForm(forms.Form):
    file = forms.FileField(
        label="Template",
        help_text="A FHIR R4 PlanDefinition as JSON with contained ActivityDefinitions, a Bundle "
        "of one PlanDefinition and the ActivityDefinitions it refers to by url, or CareTeam's "
        "template JSON. Its version must be newer than the stored ones.",
    )

    def clean_file(self):
        return json_from_upload(self.cleaned_data["file"])
