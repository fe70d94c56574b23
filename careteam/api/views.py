"""REST API v1: thin views over the permission-restricted querysets and the services.

Each write: the input serializer checks the request's shape, one service call decides
and saves (atomically, audited), the output serializer renders the saved object.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import exceptions, permissions, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from careplans.models import Activity
from careteam import handoffs as handoff_services
from careteam import services as team_services
from careteam import twofactor
from careteam.audit import AuditAction, audit, events_for_patient
from careteam.concurrency import lock_for_update
from careteam.models import AuditEvent, Handoff, Notification, TeamMembership, TeamRole
from careteam.notifications import notification_mark_read, notifications_for
from careteam.permissions import (
    PatientAccess,
    access_patient_by_id,
    patients_for,
    team_patients_for,
    visible_related,
)
from patients import services as patient_services
from patients.models import Patient, normalise_mrn
from portal.access import is_portal_user, portal_patients

from . import filters
from . import serializers as s
from .auth import ApiTokenAuthentication, token_issue
from .base import ApiViewMixin, AuditedListMixin, PatientDataViewSet, documented
from .pagination import KeysetPagination


# ---------------------------------------------------------------------------
# Patients: enrolled and their demographics changed through the patients services
# ---------------------------------------------------------------------------
@documented(s.PatientSerializer, s.PatientCreateSerializer, s.PatientUpdateSerializer)
class PatientViewSet(PatientDataViewSet):
    serializer_class = s.PatientSerializer
    create_serializer_class = s.PatientCreateSerializer
    update_serializer_class = s.PatientUpdateSerializer
    filterset_class = filters.PatientFilter
    ordering_fields = ["family_name", "given_name", "birth_date", "mrn", "id"]
    lookup_url_kwarg = "patient_id"
    patient_path = "pk"
    audit_type = "patients.patient"

    def perform_service_create(self, data: dict):
        not_a_duplicate = data.pop("not_a_duplicate", False)
        data["mrn"] = normalise_mrn(data.get("mrn", ""))
        patient, _membership = patient_services.patient_register(
            by=self.request.user, data=data, not_a_duplicate=not_a_duplicate, request=self.request
        )
        return patient

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        return patient_services.patient_update(
            by=self.request.user, access=access, data=data, expected_version=version, request=self.request
        )

    def base_queryset(self):
        return Patient.objects.all()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Patient.objects.none()
        if is_portal_user(self.request.user):
            # the patient-access contract: a portal account's own (or consented) patients
            return portal_patients(self.request.user)
        return patients_for(self.request.user)

    def create(self, request, *args, **kwargs):
        if is_portal_user(request.user):
            raise exceptions.PermissionDenied("Portal accounts read their own record only.")
        return super().create(request, *args, **kwargs)

    def partial_update(self, request, *args, **kwargs):
        if is_portal_user(request.user):
            self.get_object()  # someone else's record: 404 first
            raise exceptions.PermissionDenied("Portal accounts read their own record only.")
        return super().partial_update(request, *args, **kwargs)

    def patient_id_of(self, obj) -> int:
        return obj.pk


# ---------------------------------------------------------------------------
# Team memberships
# ---------------------------------------------------------------------------
@documented(s.TeamMembershipSerializer, s.TeamMembershipCreateSerializer, s.TeamMembershipUpdateSerializer)
class TeamMembershipViewSet(PatientDataViewSet):
    serializer_class = s.TeamMembershipSerializer
    create_serializer_class = s.TeamMembershipCreateSerializer
    update_serializer_class = s.TeamMembershipUpdateSerializer
    filterset_class = filters.TeamMembershipFilter
    ordering_fields = ["id", "start_date", "end_date", "role", "status"]
    lookup_url_kwarg = "membership_id"
    audit_type = "careteam.teammembership"

    def base_queryset(self):
        return TeamMembership.objects.select_related("user", "discipline")

    def perform_service_create(self, data: dict):
        patient = data.pop("patient")
        access = access_patient_by_id(self.request.user, patient.pk, for_write=True)
        access.require_manage_team()
        return team_services.membership_add(patient=access.patient, by=self.request.user, **data)

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()
        access.require_manage_team()

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        if "end_date" in data:
            return team_services.membership_end(
                membership=obj, end_date=data["end_date"], by=self.request.user, expected_version=version
            )
        return team_services.membership_set_status(
            membership=obj, status=data["status"], by=self.request.user, expected_version=version
        )


# ---------------------------------------------------------------------------
# Handoffs
# ---------------------------------------------------------------------------
@documented(s.HandoffSerializer, s.HandoffCreateSerializer, s.HandoffUpdateSerializer)
class HandoffViewSet(PatientDataViewSet):
    serializer_class = s.HandoffSerializer
    create_serializer_class = s.HandoffCreateSerializer
    update_serializer_class = s.HandoffUpdateSerializer
    filterset_class = filters.HandoffFilter
    ordering_fields = ["id", "due_at", "created_at", "priority", "status"]
    lookup_url_kwarg = "handoff_id"
    update_partial = False
    audit_type = "careteam.handoff"

    def base_queryset(self):
        # the activity a handoff is about shows only to those who may see it
        activities = visible_related(self.request.user, Activity).only("id")
        return Handoff.objects.select_related("to_discipline").prefetch_related(
            Prefetch("activity", queryset=activities, to_attr="visible_activity")
        )

    def perform_service_create(self, data: dict):
        patient = data.pop("patient")
        access = access_patient_by_id(self.request.user, patient.pk, for_write=True)
        return handoff_services.handoff_create(
            access=access, by=self.request.user, request=self.request, **data
        )

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit()

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        # the handoff services take no version: check it under the same row lock
        lock_for_update(obj, version)
        return handoff_services.handoff_set_status(
            access=access,
            by=self.request.user,
            handoff=obj,
            status=data["status"],
            reason=data.get("reason", ""),
            request=self.request,
        )


# ---------------------------------------------------------------------------
# The caller's own notifications; audit events
# ---------------------------------------------------------------------------
class NotificationViewSet(ApiViewMixin, AuditedListMixin, viewsets.ReadOnlyModelViewSet):
    """Only the caller's own notifications (none about patients they can no longer see);
    anyone else's id answers 404."""

    audit_list_name = "careteam.notification"

    serializer_class = s.NotificationSerializer
    filterset_class = filters.NotificationFilter
    ordering_fields = ["created_at", "due_moment"]
    lookup_url_kwarg = "notification_id"

    queryset = Notification.objects.none()  # schema generation

    def get_queryset(self):
        return notifications_for(self.request.user)

    @extend_schema(request=None, responses={200: s.NotificationSerializer})
    @action(detail=True, methods=["post"])
    def read(self, request, notification_id=None, format=None):  # noqa: A002 - DRF's suffix kwarg
        """Mark the notification read (idempotent)."""
        notification = self.get_object()
        notification_mark_read(user=request.user, notification_id=notification.pk)
        notification.refresh_from_db()
        return Response(self.get_serializer(notification).data)


def audit_events_for(user):
    """The audit pages' rules: auditors (careteam.view_audit_log) read the whole trail;
    a patient's case manager and plan lead read that patient's access log
    (`PatientAccess.can_view_access_log`); everyone else reads nothing."""
    if user.is_active and user.has_perm("careteam.view_audit_log"):
        return AuditEvent.objects.all()
    managed = TeamMembership.objects.current().filter(
        user_id=user.pk, role__in=(TeamRole.CASE_MANAGER, TeamRole.LEAD)
    )
    patients = team_patients_for(user).filter(pk__in=managed.values("patient_id"))
    return events_for_patient(patients.values("pk"))


class AuditEventViewSet(ApiViewMixin, AuditedListMixin, viewsets.ReadOnlyModelViewSet):
    """Reads of the audit trail are audited too: a list as one event naming the patients
    of its page, one event as a read of that event's patient."""

    serializer_class = s.AuditEventSerializer
    filterset_class = filters.AuditEventFilter
    # newest first by keyset: a page deep in a trail of millions costs what the first does
    pagination_class = KeysetPagination
    ordering_fields: list[str] = []
    lookup_url_kwarg = "audit_event_id"
    audit_list_name = "careteam.auditevent"

    queryset = AuditEvent.objects.none()  # schema generation

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        return audit_events_for(self.request.user)

    def get_serializer_context(self):
        # a list read names every patient its page showed; only auditors see the ids of
        # patients other than the one the event is about
        user = self.request.user
        auditor = user.is_active and user.has_perm("careteam.view_audit_log")
        return {**super().get_serializer_context(), "show_patient_ids": auditor}

    def retrieve(self, request, *args, **kwargs):
        event = self.get_object()
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=event,
            patient_id=event.patient_id,
            request=request,
            detail="API read of an audit event",
        )
        return Response(self.get_serializer(event).data)


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------
class TokenView(ApiViewMixin, APIView):
    """Exchange a username and password (and, for accounts with two-factor sign-in, a
    one-time code) for an API token of this client; DELETE revokes the token the call
    was made with (other clients keep theirs). Failed attempts count towards the same
    lockout as the sign-in page; successful ones are audited."""

    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]

    def get_permissions(self):
        if self.request.method == "POST":
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    def get_authenticators(self):
        if getattr(self, "request", None) is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    @extend_schema(
        request=s.TokenRequestSerializer,
        responses={
            200: s.TokenResponseSerializer,
            429: OpenApiResponse(description="Too many failed attempts: locked out for a while."),
        },
        auth=[],
    )
    def post(self, request):
        data = s.TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = data.validated_data["username"]
        user = authenticate(
            request=request._request, username=username, password=data.validated_data["password"]
        )
        if user is None or not user.is_active:
            return Response(
                {"detail": "Unable to sign in with those credentials."}, status=status.HTTP_400_BAD_REQUEST
            )
        if twofactor.needs_second_factor(user):
            problem = twofactor.check_api_code(
                user, data.validated_data.get("otp", ""), request=request._request
            )
            if problem is not None:
                return Response({"otp": [problem.message]}, status=problem.status)
        token, key = token_issue(user=user, request=request)
        return Response({"token": key, "expiry": token.expiry, "max_expiry": token.max_expiry})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        if isinstance(request.auth, AuthToken):
            request.auth.delete()
        else:
            # signed in with the browser session: that session's user revokes every token
            AuthToken.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


__all__ = [
    "AuditEventViewSet",
    "HandoffViewSet",
    "NotificationViewSet",
    "PatientViewSet",
    "TeamMembershipViewSet",
    "TokenView",
]
