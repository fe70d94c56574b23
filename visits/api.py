"""REST API of visits and authorisations (/api/v1/visits/, /api/v1/authorisations/):
the same contract as careteam/api/ (restricted querysets, audited reads, ETag versions,
If-Match on every change: 428 without, 412 stale; 400 field errors; 409 illegal
transitions and unconfirmed double bookings)."""

from __future__ import annotations

from django.db.models import Prefetch
from django.urls import include, path
from django_filters import rest_framework as df
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.routers import SimpleRouter

from careplans.models import Activity, CarePlan
from careteam.api.base import ETAG, IF_MATCH, PatientDataViewSet
from careteam.api.filters import IdFilter, UtcIsoDateTimeFilter
from careteam.api.serializers import (
    PrefetchedIdsField,
    RestrictedPrimaryKeyField,
    discipline_field,
    identity,
    link,
)
from careteam.models import User
from careteam.permissions import PatientAccess, access_patient_by_id, visible_related
from patients.models import Patient
from referrals.models import Referral

from . import services
from .models import (
    REASON_MAX_LENGTH,
    VISIT_MAX_MINUTES,
    Authorisation,
    AuthorisationStatus,
    UnitKind,
    Visit,
    VisitStatus,
    VisitType,
)


# ---------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------
class VisitSerializer(serializers.ModelSerializer):
    url = identity("api-visit-detail", "visit_id")
    patient = link("api-patient-detail", "patient_id")
    discipline = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    activities = PrefetchedIdsField(prefetched="visible_activities")

    class Meta:
        model = Visit
        fields = [
            "id",
            "url",
            "patient",
            "patient_id",
            "care_plan_id",
            "visit_type",
            "clinician_id",
            "provider_name",
            "discipline",
            "start",
            "end",
            "duration_minutes",
            "time_zone",
            "location",
            "activities",
            "authorisation_id",
            "referral_id",
            "units",
            "status",
            "status_reason",
            "status_by_id",
            "status_at",
            "rebooked_from_id",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class _VisitFields(serializers.Serializer):
    visit_type = serializers.ChoiceField(choices=VisitType.choices, required=False)
    clinician = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True), required=False, allow_null=True
    )
    provider_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    discipline = discipline_field(required=False, allow_null=True)
    start = serializers.DateTimeField(required=False)
    duration_minutes = serializers.IntegerField(min_value=5, max_value=VISIT_MAX_MINUTES, required=False)
    time_zone = serializers.CharField(max_length=60, required=False)
    location = serializers.CharField(max_length=300, required=False, allow_blank=True)
    units = serializers.IntegerField(min_value=1, max_value=100, required=False)
    authorisation = RestrictedPrimaryKeyField(
        model=Authorisation, patient_path="patient", required=False, allow_null=True
    )
    activities = serializers.ListField(
        child=RestrictedPrimaryKeyField(model=Activity, patient_path="care_plan__patient"),
        required=False,
        max_length=50,
    )
    allow_conflicts = serializers.BooleanField(
        required=False, default=False, help_text="Book even though the clinician has another visit then."
    )


class VisitCreateSerializer(_VisitFields):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    care_plan = RestrictedPrimaryKeyField(
        model=CarePlan, patient_path="patient", required=False, allow_null=True
    )
    referral = RestrictedPrimaryKeyField(
        model=Referral, patient_path="patient", required=False, allow_null=True
    )
    start = serializers.DateTimeField()


class VisitUpdateSerializer(_VisitFields):
    status = serializers.ChoiceField(choices=VisitStatus.choices, required=False)
    status_reason = serializers.CharField(max_length=REASON_MAX_LENGTH, required=False, allow_blank=True)

    def validate(self, attrs):
        if "status" in attrs and set(attrs) - {"status", "status_reason", "allow_conflicts"}:
            raise serializers.ValidationError(
                "Change the status or the visit's details, not both in one request."
            )
        return attrs


class AuthorisationSerializer(serializers.ModelSerializer):
    url = identity("api-authorisation-detail", "authorisation_id")
    patient = link("api-patient-detail", "patient_id")
    discipline = serializers.SlugRelatedField(slug_field="code", read_only=True)
    units_left = serializers.IntegerField(read_only=True)

    class Meta:
        model = Authorisation
        fields = [
            "id",
            "url",
            "patient",
            "patient_id",
            "care_plan_id",
            "payer",
            "service",
            "discipline",
            "provider_name",
            "unit_kind",
            "units_authorised",
            "units_used",
            "units_left",
            "start_date",
            "end_date",
            "reference_number",
            "status",
            "status_reason",
            "requested_at",
            "decided_at",
            "decided_by_id",
            "exhausted_at",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AuthorisationCreateSerializer(serializers.Serializer):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    care_plan = RestrictedPrimaryKeyField(
        model=CarePlan, patient_path="patient", required=False, allow_null=True
    )
    payer = serializers.CharField(max_length=200)
    service = serializers.CharField(max_length=200)
    discipline = discipline_field()
    provider_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    unit_kind = serializers.ChoiceField(choices=UnitKind.choices, required=False)
    units_authorised = serializers.IntegerField(
        min_value=1, max_value=100_000, error_messages={"min_value": "Authorise at least one unit or visit."}
    )
    start_date = serializers.DateField()
    end_date = serializers.DateField()
    reference_number = serializers.CharField(max_length=100, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=AuthorisationStatus.choices, required=False)

    def validate(self, attrs):
        if attrs["end_date"] < attrs["start_date"]:
            raise serializers.ValidationError({"end_date": "The authorisation cannot end before it starts."})
        return attrs


class AuthorisationUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=AuthorisationStatus.choices, required=False)
    reason = serializers.CharField(max_length=REASON_MAX_LENGTH, required=False, allow_blank=True)
    payer = serializers.CharField(max_length=200, required=False)
    service = serializers.CharField(max_length=200, required=False)
    provider_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    units_authorised = serializers.IntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        error_messages={"min_value": "Authorise at least one unit or visit."},
    )
    start_date = serializers.DateField(required=False)
    end_date = serializers.DateField(required=False)
    reference_number = serializers.CharField(max_length=100, required=False, allow_blank=True)


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------
class VisitFilter(df.FilterSet):
    patient = IdFilter(field_name="patient_id")
    clinician = IdFilter(field_name="clinician_id")
    authorisation = IdFilter(field_name="authorisation_id")
    start_after = UtcIsoDateTimeFilter(field_name="start", lookup_expr="gte")
    start_before = UtcIsoDateTimeFilter(field_name="start", lookup_expr="lt")

    class Meta:
        model = Visit
        fields = ["patient", "clinician", "authorisation", "status", "visit_type"]


class AuthorisationFilter(df.FilterSet):
    patient = IdFilter(field_name="patient_id")

    class Meta:
        model = Authorisation
        fields = ["patient", "status"]


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------
def _documented(output, create, update):
    return extend_schema_view(
        list=extend_schema(responses=output),
        retrieve=extend_schema(responses=output, parameters=[ETAG]),
        create=extend_schema(request=create, responses={201: output}, parameters=[ETAG]),
        partial_update=extend_schema(request=update, responses={200: output}, parameters=[IF_MATCH, ETAG]),
    )


@_documented(VisitSerializer, VisitCreateSerializer, VisitUpdateSerializer)
class VisitViewSet(PatientDataViewSet):
    """Visits: booked by visit_book (a double booking answers 409 unless
    `allow_conflicts`), changed by visit_update, and moved through their statuses by
    visit_set_status (PATCH `{"status": "noshow", "status_reason": ...}`)."""

    serializer_class = VisitSerializer
    create_serializer_class = VisitCreateSerializer
    update_serializer_class = VisitUpdateSerializer
    filterset_class = VisitFilter
    ordering_fields = ["id", "start", "status", "updated_at"]
    lookup_url_kwarg = "visit_id"
    audit_type = "visits.visit"

    def base_queryset(self):
        activities = visible_related(self.request.user, Activity).only("id")
        return Visit.objects.select_related("discipline").prefetch_related(
            Prefetch("activities", queryset=activities, to_attr="visible_activities")
        )

    def perform_service_create(self, data: dict):
        patient = data.pop("patient")
        access = access_patient_by_id(self.request.user, patient.pk, for_write=True)
        data.setdefault("time_zone", "UTC")
        booking = services.visit_book(
            access=access,
            by=self.request.user,
            request=self.request,
            activities=data.pop("activities", []),
            **data,
        )
        return booking.visit

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        if "status" in data:
            return services.visit_set_status(
                access=access,
                visit=obj,
                by=self.request.user,
                status=data["status"],
                reason=data.get("status_reason", ""),
                expected_version=version,
                request=self.request,
            )
        allow = data.pop("allow_conflicts", False)
        return services.visit_update(
            access=access,
            visit=obj,
            by=self.request.user,
            changes=data,
            expected_version=version,
            allow_conflicts=allow,
            request=self.request,
        )


@_documented(AuthorisationSerializer, AuthorisationCreateSerializer, AuthorisationUpdateSerializer)
class AuthorisationViewSet(PatientDataViewSet):
    """Service authorisations: recorded by authorisation_create, answered by
    authorisation_set_status (PATCH `{"status": "approved"}`; approving fires the hand-on
    rules), changed by authorisation_update. `units_used` is counted from completed
    visits; it is never written."""

    serializer_class = AuthorisationSerializer
    create_serializer_class = AuthorisationCreateSerializer
    update_serializer_class = AuthorisationUpdateSerializer
    filterset_class = AuthorisationFilter
    ordering_fields = ["id", "start_date", "end_date", "status", "updated_at"]
    lookup_url_kwarg = "authorisation_id"
    audit_type = "visits.authorisation"

    def base_queryset(self):
        return Authorisation.objects.select_related("discipline")

    def perform_service_create(self, data: dict):
        patient = data.pop("patient")
        access = access_patient_by_id(self.request.user, patient.pk, for_write=True)
        data = {k: v for k, v in data.items() if v is not None or k == "care_plan"}
        return services.authorisation_create(
            access=access, by=self.request.user, request=self.request, **data
        )

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        status = data.pop("status", None)
        reason = data.pop("reason", "")
        if status is not None and data:
            raise serializers.ValidationError(
                {"detail": "Change the status or the authorisation's details, not both in one request."}
            )
        if status is not None:
            return services.authorisation_set_status(
                access=access,
                authorisation=obj,
                by=self.request.user,
                status=status,
                reason=reason,
                expected_version=version,
                request=self.request,
            )
        return services.authorisation_update(
            access=access,
            authorisation=obj,
            by=self.request.user,
            changes=data,
            expected_version=version,
            request=self.request,
        )


router = SimpleRouter()
router.register("visits", VisitViewSet, basename="api-visit")
router.register("authorisations", AuthorisationViewSet, basename="api-authorisation")

urlpatterns = [path("api/v1/", include(router.urls))]
