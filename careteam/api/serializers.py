"""Serializers: output serializers render (with hyperlinks to related objects), input
serializers only validate the shape of a request; the services decide the rest."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from careplans.models import (
    Activity,
    CarePlan,
)
from careteam.audit import PATIENT_URL_KWARGS, audit_denied
from careteam.models import (
    AuditEvent,
    Discipline,
    Handoff,
    HandoffStatus,
    MembershipStatus,
    Notification,
    SensitivityCategory,
    TeamMembership,
    User,
)
from careteam.permissions import patients_for, restrict, visible_related
from patients.models import DEMOGRAPHIC_FIELDS, BirthSex, Ethnicity, Patient, Race


class _TemplatedUrl:
    """A hyperlink field that resolves its URL once per request and fills in each row's
    id: `reverse()` and `build_absolute_uri()` for every link of every row were a quarter
    of a list page's CPU."""

    _SENTINEL = "987654321987654321"

    def get_url(self, obj, view_name, request, format):  # noqa: A002 - DRF's signature
        pk = getattr(obj, self.lookup_field, None)
        if format or pk in (None, ""):
            return super().get_url(obj, view_name, request, format)
        cache = getattr(self, "_url_template", None)
        if cache is None or cache[0] is not request or cache[1] != view_name:
            template = self.reverse(
                view_name, kwargs={self.lookup_url_kwarg: self._SENTINEL}, request=request, format=None
            )
            cache = (request, view_name, template)
            self._url_template = cache
        return cache[2].replace(self._SENTINEL, str(pk))

    def to_representation(self, value):
        # DRF's Hyperlink is a str subclass; a plain str is what JSON, the Location header
        # and WSGI servers (wsgiref refuses anything else in a header) expect
        url = super().to_representation(value)
        return None if url is None else str.__str__(url)


class _Link(_TemplatedUrl, serializers.HyperlinkedRelatedField):
    pass


class _Identity(_TemplatedUrl, serializers.HyperlinkedIdentityField):
    pass


class _VisibleLink(_Link):
    """A link to a related plan item only when the reader may see it (the activity of a
    handoff): read from the restricted `Prefetch(..., to_attr=prefetched)` of a list, or
    asked of the permissions module for one object."""

    def __init__(self, prefetched: str, **kw):
        self.prefetched = prefetched
        super().__init__(**kw)

    def get_attribute(self, instance):
        if hasattr(instance, self.prefetched):
            return getattr(instance, self.prefetched)
        related = super().get_attribute(instance)
        if related is None:
            return None
        user = self.context["request"].user
        return related if visible_related(user, type(related)).filter(pk=related.pk).exists() else None


def link(view_name: str, kwarg: str, **kw) -> serializers.HyperlinkedRelatedField:
    return _Link(view_name=view_name, lookup_url_kwarg=kwarg, read_only=True, **kw)


def identity(view_name: str, kwarg: str) -> serializers.HyperlinkedIdentityField:
    return _Identity(view_name=view_name, lookup_url_kwarg=kwarg)


def absolute_url(context, path: str) -> str:
    request = context.get("request")
    return request.build_absolute_uri(path) if request is not None else path


class LinksField(serializers.Field):
    """Links to the object's related collections, filtered to this object."""

    def __init__(self, collections: dict[str, tuple[str, str]], fhir: str | None = None, **kw):
        self.collections = collections
        self.fhir = fhir
        kw["source"] = "*"
        kw["read_only"] = True
        super().__init__(**kw)

    def to_representation(self, obj):
        # the collections' absolute URLs are built once per request, then the id appended
        request = self.context.get("request")
        cache = getattr(self, "_bases", None)
        if cache is None or cache[0] is not request:
            bases = {
                name: absolute_url(self.context, f"{reverse(view)}?{param}=")
                for name, (view, param) in self.collections.items()
            }
            if self.fhir:
                bases["fhir"] = absolute_url(self.context, f"/fhir/{self.fhir}/")
            cache = (request, bases)
            self._bases = cache
        return {name: f"{base}{obj.pk}" for name, base in cache[1].items()}


LinksField = extend_schema_field(
    {"type": "object", "additionalProperties": {"type": "string", "format": "uri"}}
)(LinksField)


class RestrictedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A reference to a patient-data row; only rows the caller may see are valid (others
    read 'does not exist', like missing ones)."""

    def __init__(self, *, model, patient_path: str, **kw):
        self.model = model
        self.patient_path = patient_path
        kw.setdefault("queryset", model.objects.all())
        super().__init__(**kw)

    def get_queryset(self):
        request = self.context["request"]
        if self.model is Patient:
            return patients_for(request.user)
        return restrict(self.model.objects.all(), request.user, patient_path=self.patient_path)

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            self.audit_refused(data)
            raise

    def audit_refused(self, data) -> None:
        """A reference the caller may not follow is a denial of that row's patient data,
        audited like a 404 on its URL (with its patient when the row exists; the same
        lookup runs for a missing row, so the answer takes as long)."""
        kwarg = next(
            (k for k, (label, _) in PATIENT_URL_KWARGS.items() if label == self.model._meta.label), None
        )
        request = self.context.get("request")
        if kwarg is None or request is None or isinstance(data, bool) or not isinstance(data, int | str):
            return
        audit_denied(
            request,
            url_kwargs={kwarg: data},
            detail=f"API {request.method} {self.field_name or self.parent.field_name}: not visible",
        )


class CodeField(serializers.SlugRelatedField):
    """A reference by code; a code PostgreSQL cannot even compare (NUL) is simply unknown."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


def discipline_field(**kw) -> serializers.SlugRelatedField:
    return CodeField(slug_field="code", queryset=Discipline.objects.all(), **kw)


def sensitivity_field(**kw) -> serializers.SlugRelatedField:
    return CodeField(
        slug_field="code", queryset=SensitivityCategory.objects.all(), required=False, allow_null=True, **kw
    )


@extend_schema_field({"type": "array", "items": {"type": "integer"}, "readOnly": True})
class PrefetchedIdsField(serializers.PrimaryKeyRelatedField):
    """Ids of a to-many relation, read from the list a `Prefetch(..., to_attr=...)` left on
    the instance when there is one (lists), else from the relation (one object). A
    to_attr prefetch spares Django a queryset clone per row, which for a
    permission-restricted queryset costs a large WHERE tree each."""

    def __init__(self, prefetched: str, **kwargs):
        self.prefetched = prefetched
        super().__init__(many=False, read_only=True, **kwargs)

    def get_attribute(self, instance):
        items = getattr(instance, self.prefetched, None)
        return items if items is not None else list(getattr(instance, self.source_attrs[-1]).all())

    def to_representation(self, value):
        return [item.pk for item in value]


# ---------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------
class PatientSerializer(serializers.ModelSerializer):
    url = identity("api-patient-detail", "patient_id")
    email = serializers.CharField(read_only=True, help_text="Empty when unknown.")
    # empty until recorded: the answers document "" beside the codes
    race = serializers.ChoiceField(choices=Race.choices, allow_blank=True, read_only=True)
    ethnicity = serializers.ChoiceField(choices=Ethnicity.choices, allow_blank=True, read_only=True)
    birth_sex = serializers.ChoiceField(choices=BirthSex.choices, allow_blank=True, read_only=True)
    links = LinksField(
        {
            "care_plans": ("api-care-plan-list", "patient"),
            "team_memberships": ("api-team-membership-list", "patient"),
            "handoffs": ("api-handoff-list", "patient"),
            "referrals": ("api-referral-list", "patient"),
        },
        fhir="Patient",
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "url",
            "mrn",
            *DEMOGRAPHIC_FIELDS,
            "status",
            "version",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields


class PatientCreateSerializer(serializers.ModelSerializer):
    """Enrol a patient: demographics and, optionally, the MRN (generated when empty).
    A record with the same MRN is refused (409); so is one with the same birth date and
    a similar name, unless `not_a_duplicate` is true."""

    not_a_duplicate = serializers.BooleanField(default=False, write_only=True)

    class Meta:
        model = Patient
        fields = ["mrn", *DEMOGRAPHIC_FIELDS, "not_a_duplicate"]
        extra_kwargs = {"mrn": {"required": False, "allow_blank": True, "validators": []}}


class PatientUpdateSerializer(serializers.ModelSerializer):
    """Change demographics (never the MRN), with If-Match."""

    class Meta:
        model = Patient
        fields = list(DEMOGRAPHIC_FIELDS)


# ---------------------------------------------------------------------------
# Team memberships and handoffs
# ---------------------------------------------------------------------------
class TeamMembershipSerializer(serializers.ModelSerializer):
    url = identity("api-team-membership-detail", "membership_id")
    patient = link("api-patient-detail", "patient_id")
    username = serializers.CharField(source="user.username", read_only=True)
    user_display_name = serializers.CharField(source="user.display_name", read_only=True)
    discipline = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = TeamMembership
        fields = [
            "id",
            "url",
            "patient",
            "patient_id",
            "user_id",
            "username",
            "user_display_name",
            "discipline",
            "role",
            "status",
            "start_date",
            "end_date",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TeamMembershipCreateSerializer(serializers.Serializer):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    user = serializers.PrimaryKeyRelatedField(queryset=User.objects.filter(is_active=True))
    discipline = discipline_field()
    role = serializers.ChoiceField(choices=TeamMembership._meta.get_field("role").choices, required=False)
    start_date = serializers.DateField(required=False)
    end_date = serializers.DateField(required=False, allow_null=True)


class TeamMembershipUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=MembershipStatus.choices, required=False)
    end_date = serializers.DateField(required=False, help_text="End the role on this date (today or later).")

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Send a new status or an end date.")
        if len(attrs) > 1:
            raise serializers.ValidationError("Change the status or end the role, not both at once.")
        return attrs


class HandoffSerializer(serializers.ModelSerializer):
    url = identity("api-handoff-detail", "handoff_id")
    patient = link("api-patient-detail", "patient_id")
    care_plan = link("api-care-plan-detail", "plan_id", allow_null=True)
    activity = _VisibleLink(
        "visible_activity",
        view_name="api-activity-detail",
        lookup_url_kwarg="activity_id",
        read_only=True,
        allow_null=True,
    )
    to_discipline = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    fhir = serializers.SerializerMethodField()

    class Meta:
        model = Handoff
        fields = [
            "id",
            "url",
            "patient",
            "patient_id",
            "care_plan",
            "activity",
            "kind",
            "from_user_id",
            "to_user_id",
            "to_discipline",
            "situation",
            "background",
            "assessment",
            "recommendation",
            "priority",
            "due_at",
            "status",
            "status_reason",
            "accepted_by_id",
            "acknowledged_at",
            "completed_at",
            "version",
            "created_at",
            "updated_at",
            "fhir",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_fhir(self, obj) -> str:
        return absolute_url(self.context, f"/fhir/Task/handoff-{obj.pk}")


class HandoffCreateSerializer(serializers.Serializer):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    care_plan = RestrictedPrimaryKeyField(
        model=CarePlan, patient_path="patient", required=False, allow_null=True
    )
    activity = RestrictedPrimaryKeyField(
        model=Activity, patient_path="care_plan__patient", required=False, allow_null=True
    )
    kind = serializers.ChoiceField(choices=Handoff._meta.get_field("kind").choices, required=False)
    to_user = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True), required=False, allow_null=True
    )
    to_discipline = discipline_field(required=False, allow_null=True)
    situation = serializers.CharField()
    background = serializers.CharField()
    assessment = serializers.CharField()
    recommendation = serializers.CharField()
    priority = serializers.ChoiceField(choices=Handoff._meta.get_field("priority").choices, required=False)
    due_at = serializers.DateTimeField()

    def validate_due_at(self, value):
        from django.utils import timezone

        if value < timezone.now():
            raise serializers.ValidationError("The due time has passed; choose a time from now on.")
        return value


class HandoffUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=HandoffStatus.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


# ---------------------------------------------------------------------------
# Notifications and audit events
# ---------------------------------------------------------------------------
class NotificationSerializer(serializers.ModelSerializer):
    url = identity("api-notification-detail", "notification_id")

    class Meta:
        model = Notification
        fields = [
            "id",
            "url",
            "kind",
            "patient_id",
            "object_type",
            "object_id",
            "title",
            "body",
            "due_moment",
            "created_at",
            "read_at",
        ]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    url = identity("api-audit-event-detail", "audit_event_id")
    patient_ids = serializers.SerializerMethodField(
        help_text="For a list read, the patients its page showed (auditors only; empty otherwise)."
    )

    def get_patient_ids(self, obj) -> list[int]:
        return list(obj.patient_ids) if self.context.get("show_patient_ids") else []

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "url",
            "at",
            "user_id",
            "username",
            "action",
            "outcome",
            "object_type",
            "object_id",
            "patient_id",
            "patient_ids",
            "source_ip",
            "path",
            "detail",
            "request_id",
        ]
        read_only_fields = fields


# ---------------------------------------------------------------------------
# Tokens and errors (documentation shapes)
# ---------------------------------------------------------------------------
class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, style={"input_type": "password"}, trim_whitespace=False)
    otp = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        help_text="The current code of the authenticator app (or a recovery code): required for "
        "accounts with two-factor sign-in.",
    )


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>` or `Bearer <token>`.")
    expiry = serializers.DateTimeField(
        help_text="Lapses at this time unless used before (each use extends it)."
    )
    max_expiry = serializers.DateTimeField(help_text="Lapses at this time at the latest, used or not.")
