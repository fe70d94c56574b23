"""Serializers of referrals and the catalog: output serializers render (with hyperlinks to
related objects), input serializers only validate the shape of a request; the services
decide the rest."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from careplans.models import CarePlan, Need
from careteam.api.serializers import LinksField, RestrictedPrimaryKeyField, absolute_url, identity, link
from referrals.models import Organization, Referral, ReferralOutcome, ReferralStatus, Service
from referrals.partners import minimum_view


class OrganizationSerializer(serializers.ModelSerializer):
    url = identity("api-organization-detail", "organization_id")
    email = serializers.CharField(read_only=True, help_text="Empty when unknown.")
    website = serializers.CharField(read_only=True, help_text="Empty when unknown.")
    links = LinksField({"services": ("api-service-list", "organization")})

    class Meta:
        model = Organization
        fields = [
            "id",
            "url",
            "name",
            "alternate_name",
            "description",
            "email",
            "website",
            "phone",
            "links",
        ]
        read_only_fields = fields


class ServiceSerializer(serializers.ModelSerializer):
    url = identity("api-service-detail", "service_id")
    organization = link("api-organization-detail", "organization_id")
    categories = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Service
        fields = [
            "id",
            "url",
            "organization",
            "name",
            "alternate_name",
            "description",
            "url_website",
            "email",
            "phone",
            "status",
            "categories",
            "eligibility_description",
            "minimum_age",
            "maximum_age",
            "languages",
            "is_free",
            "fees_description",
            "hours_description",
            "service_area",
            "expected_response_days",
            "last_verified",
        ]
        read_only_fields = fields

    url_website = serializers.CharField(
        source="url", read_only=True, help_text="The service's web page; empty when unknown."
    )
    email = serializers.CharField(read_only=True, help_text="Empty when unknown.")


class ReferralSerializer(serializers.ModelSerializer):
    url = identity("api-referral-detail", "referral_id")
    patient = link("api-patient-detail", "patient_id")
    care_plan = link("api-care-plan-detail", "plan_id")
    need = link("api-need-detail", "need_id", allow_null=True)
    service = link("api-service-detail", "service_id")
    service_name = serializers.CharField(source="service.name", read_only=True)
    outcome = serializers.ChoiceField(choices=ReferralOutcome.choices, allow_blank=True, read_only=True)
    fhir = serializers.SerializerMethodField()

    class Meta:
        model = Referral
        fields = [
            "id",
            "url",
            "patient",
            "patient_id",
            "care_plan",
            "need",
            "service",
            "service_name",
            "reason",
            "priority",
            "status",
            "status_reason",
            "referred_by_id",
            "sent_at",
            "responded_at",
            "accepted_at",
            "closed_at",
            "outcome",
            "outcome_note",
            "version",
            "created_at",
            "updated_at",
            "fhir",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_fhir(self, obj) -> str:
        return absolute_url(self.context, f"/fhir/ServiceRequest/{obj.pk}")


class ReferralCreateSerializer(serializers.Serializer):
    care_plan = RestrictedPrimaryKeyField(model=CarePlan, patient_path="patient")
    service = serializers.PrimaryKeyRelatedField(queryset=Service.objects.all())
    reason = serializers.CharField()
    need = RestrictedPrimaryKeyField(
        model=Need, patient_path="care_plan__patient", required=False, allow_null=True
    )
    priority = serializers.ChoiceField(choices=Referral._meta.get_field("priority").choices, required=False)
    send = serializers.BooleanField(
        default=True, help_text="Send at once (needs consent on file); false keeps a draft."
    )


class ReferralUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ReferralStatus.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="")
    outcome = serializers.ChoiceField(
        choices=ReferralOutcome.choices, required=False, allow_blank=True, default=""
    )


class PartnerReferralSerializer(serializers.Serializer):
    """A referral as its receiving service sees it (referrals.partners.minimum_view):
    the patient's name, language and, while the consent covers it, contact details; the
    reason, priority, need category, referrer and consent scope. No plan, no other
    need, no MRN, no links to patient data."""

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    service = serializers.CharField(source="service_id")
    service_name = serializers.CharField()
    patient_name = serializers.CharField()
    preferred_language = serializers.CharField()
    interpreter_needed = serializers.BooleanField()
    contact_shared = serializers.BooleanField(
        help_text="False: the consent does not cover contact details now."
    )
    phone = serializers.CharField()
    email = serializers.CharField()
    address = serializers.CharField()
    contact_preferences = serializers.CharField()
    reason = serializers.CharField()
    priority = serializers.CharField()
    need_category = serializers.CharField()
    referrer_name = serializers.CharField()
    referrer_email = serializers.CharField()
    referrer_phone = serializers.CharField()
    consent_scope = serializers.CharField()
    consent_state = serializers.CharField()
    sent_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    outcome = serializers.CharField()
    outcome_note = serializers.CharField()

    def to_representation(self, instance):
        return super().to_representation(minimum_view(instance))

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, obj) -> str:
        request = self.context.get("request")
        path = reverse("api-referral-detail", kwargs={"referral_id": obj.id})
        return request.build_absolute_uri(path) if request else path


class PartnerReferralUpdateSerializer(serializers.Serializer):
    """A partner's answer: accepted, in-progress, rejected or failed (outcome: the
    decline reason), completed (outcome: service-provided, partially-provided,
    not-provided)."""

    status = serializers.ChoiceField(choices=["accepted", "in-progress", "rejected", "failed", "completed"])
    outcome = serializers.CharField(required=False, allow_blank=True, default="")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
