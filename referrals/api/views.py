"""Viewsets of referrals and the catalog. Thin: the referral services decide, the shared
bases of `careteam.api` answer ETags, If-Match, errors and the audit."""

from __future__ import annotations

from django.db import transaction
from rest_framework import viewsets
from rest_framework.exceptions import NotFound

from careteam.api.base import ApiViewMixin, PatientDataViewSet, documented, expected_version
from careteam.models import AccountKind
from careteam.permissions import PatientAccess, access_patient_by_id
from referrals import partners
from referrals import services as referral_services
from referrals.models import Organization, Referral, Service
from referrals.selectors import referrals_for

from . import filters
from . import serializers as s


@documented(s.ReferralSerializer, s.ReferralCreateSerializer, s.ReferralUpdateSerializer)
class ReferralViewSet(PatientDataViewSet):
    serializer_class = s.ReferralSerializer
    create_serializer_class = s.ReferralCreateSerializer
    update_serializer_class = s.ReferralUpdateSerializer
    filterset_class = filters.ReferralFilter
    ordering_fields = ["id", "created_at", "sent_at", "status", "priority"]
    lookup_url_kwarg = "referral_id"
    update_partial = False
    audit_type = "referrals.referral"

    def base_queryset(self):
        return Referral.objects.select_related("service")

    def get_queryset(self):
        """The referrals selector: also hides referrals made from a need in a sensitivity
        category the caller may not see."""
        if getattr(self, "swagger_fake_view", False):
            return Referral.objects.none()
        if self._is_partner():
            return partners.partner_referrals_for(self.request.user).select_related(*partners.VIEW_RELATED)
        return referrals_for(self.request.user).select_related("service")

    # -- partners: their organisation's referrals, the minimum view, their own answers
    def _is_partner(self) -> bool:
        return getattr(self.request.user, "kind", "") == AccountKind.PARTNER

    def get_serializer_class(self):
        if not getattr(self, "swagger_fake_view", False) and self._is_partner():
            return s.PartnerReferralSerializer
        return super().get_serializer_class()

    def filter_queryset(self, queryset):
        if self._is_partner():  # no filters by patient, plan or need: they know none
            return queryset.order_by("-sent_at", "-id")
        return super().filter_queryset(queryset)

    def create(self, request, *args, **kwargs):
        if self._is_partner():
            raise NotFound()
        return super().create(request, *args, **kwargs)

    def partial_update(self, request, *args, **kwargs):
        if not self._is_partner():
            return super().partial_update(request, *args, **kwargs)
        referral = self.get_object()
        version = expected_version(request)
        data = self.input(s.PartnerReferralUpdateSerializer)
        with transaction.atomic():
            referral = partners.partner_referral_set_status(
                by=request.user,
                referral=referral,
                status=data["status"],
                outcome=data["outcome"],
                note=data["note"],
                expected_version=version,
                request=request,
            )
        return self.render(self.get_queryset().get(pk=referral.pk))

    def perform_service_create(self, data: dict):
        plan = data.pop("care_plan")
        access = access_patient_by_id(self.request.user, plan.patient_id, for_write=True)
        return referral_services.referral_create(
            access=access, by=self.request.user, plan=plan, request=self.request, **data
        )

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        return referral_services.referral_set_status(
            access=access,
            referral=obj,
            by=self.request.user,
            status=data["status"],
            note=data.get("note", ""),
            outcome=data.get("outcome", ""),
            expected_version=version,
            request=self.request,
        )


# ---------------------------------------------------------------------------
# Catalog (no patient data: every signed-in user reads it)
# ---------------------------------------------------------------------------
class OrganizationViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.OrganizationSerializer
    filterset_class = filters.OrganizationFilter
    ordering_fields = ["name"]
    lookup_url_kwarg = "organization_id"
    queryset = Organization.objects.all()


class ServiceViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.ServiceSerializer
    filterset_class = filters.ServiceFilter
    ordering_fields = ["name", "expected_response_days", "last_verified"]
    lookup_url_kwarg = "service_id"
    queryset = Service.objects.prefetch_related("categories")
