"""REST API of huddles: `/api/v1/huddles/` (the caller's patients' huddles, filtered by
patient and status), `/api/v1/huddles/<id>/` (with what changed since the last huddle and
the updates, as far as the caller may see them) and `/api/v1/huddles/<id>/answer/` (an
invited member's update). Only the patient's current team sees a huddle: anyone else,
emergency access included, gets 404. The same services and rules as the pages."""

from __future__ import annotations

from typing import cast

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from careteam import huddles as services
from careteam.audit import audit
from careteam.conversations import about_from_key
from careteam.models import (
    HUDDLE_ANSWER_MAX_LENGTH,
    AuditAction,
    Huddle,
    HuddleFormat,
    HuddleInvitation,
    HuddleStatus,
    User,
)
from careteam.permissions import patient_access, visible_huddles
from patients.models import Patient

from .base import PatientDataViewSet
from .conversations import AboutSerializer
from .errors import translate
from .serializers import RestrictedPrimaryKeyField


# ---------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------
class HuddleSerializer(serializers.ModelSerializer):
    format = serializers.ChoiceField(choices=HuddleFormat.choices, read_only=True)
    status = serializers.ChoiceField(choices=HuddleStatus.choices, read_only=True)

    class Meta:
        model = Huddle
        fields = [
            "id",
            "patient",
            "format",
            "status",
            "started_by",
            "started_at",
            "since",
            "deadline",
            "conversation",
            "summary",
            "closed_at",
            "closed_by",
            "version",
        ]


class ChangeSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=["plan", "goal", "need", "activity", "handoff", "referral"])
    what = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # the item's text, not the field's label
    detail = serializers.CharField()
    by = serializers.CharField()
    about = serializers.CharField(
        help_text='The item as an answer\'s `about` names it ("need:12"); "" for none.'
    )


class AnswerOutSerializer(serializers.Serializer):
    news = serializers.CharField()
    concerns = serializers.CharField()
    will_do = serializers.CharField()
    needs_from = serializers.CharField()
    about = serializers.CharField(
        help_text='The item it is about ("need:12"), "" for the patient in general.'
    )
    conversation = serializers.IntegerField(help_text="The conversation it was posted in.")
    message = serializers.IntegerField(help_text="The message it was posted as.")


class InvitationSerializer(serializers.Serializer):
    """An invited member and, when the caller may see it, their answer (an answer about an
    item hidden from the caller shows as answered, without its text)."""

    user = serializers.IntegerField(source="user_id")
    user_name = serializers.CharField(source="user.display_name")
    answered_at = serializers.DateTimeField(allow_null=True)
    answer = serializers.SerializerMethodField()

    @extend_schema_field(AnswerOutSerializer(allow_null=True))
    def get_answer(self, inv) -> dict | None:
        if not getattr(inv, "visible_answer", False):
            return None
        about = inv.conversation.about
        return {
            "news": inv.news,
            "concerns": inv.concerns,
            "will_do": inv.will_do,
            "needs_from": inv.needs_from,
            "about": f"{about._meta.model_name}:{about.pk}" if about is not None else "",
            "conversation": inv.conversation_id,
            "message": inv.message_id,
        }


class HuddleDetailSerializer(HuddleSerializer):
    changes = serializers.SerializerMethodField()
    invitations = serializers.SerializerMethodField()

    class Meta(HuddleSerializer.Meta):
        fields = [*HuddleSerializer.Meta.fields, "changes", "invitations"]

    @extend_schema_field(ChangeSerializer(many=True))
    def get_changes(self, obj) -> list[dict]:
        access = self.context["access"]
        return [
            {
                "at": c.at,
                "kind": c.kind,
                "what": c.what,
                "label": c.label,
                "detail": c.detail,
                "by": c.by,
                "about": c.key,
            }  # fmt: skip
            for c in services.huddle_changes(access, obj)
        ]

    @extend_schema_field(InvitationSerializer(many=True))
    def get_invitations(self, obj) -> list[dict]:
        rows = services.invitation_rows(self.context["access"], obj)
        return list(InvitationSerializer(rows, many=True).data)


class HuddleCreateSerializer(serializers.Serializer):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    deadline = serializers.DateTimeField()
    format = serializers.ChoiceField(choices=HuddleFormat.choices, required=False)
    invitees = serializers.ListField(
        child=serializers.IntegerField(), required=False, allow_empty=False, max_length=200,
        help_text="Current team members to ask (default: the whole team but the caller).",
    )  # fmt: skip


class AnswerSerializer(serializers.Serializer):
    news = serializers.CharField(max_length=HUDDLE_ANSWER_MAX_LENGTH)
    concerns = serializers.CharField(max_length=HUDDLE_ANSWER_MAX_LENGTH, required=False, allow_blank=True)
    will_do = serializers.CharField(max_length=HUDDLE_ANSWER_MAX_LENGTH, required=False, allow_blank=True)
    needs_from = serializers.CharField(max_length=HUDDLE_ANSWER_MAX_LENGTH, required=False, allow_blank=True)
    about = AboutSerializer(required=False, allow_null=True)


# ---------------------------------------------------------------------------
# /api/v1/huddles/
# ---------------------------------------------------------------------------
PATIENT = OpenApiParameter("patient", OpenApiTypes.INT, description="Only this patient's.")
STATUS = OpenApiParameter("status", OpenApiTypes.STR, enum=HuddleStatus.values, description="open or closed.")


@extend_schema_view(
    list=extend_schema(parameters=[PATIENT, STATUS], responses=HuddleSerializer),
    create=extend_schema(request=HuddleCreateSerializer, responses={201: HuddleSerializer}),
    retrieve=extend_schema(responses=HuddleDetailSerializer),
    answer=extend_schema(request=AnswerSerializer, responses={201: InvitationSerializer}),
)
class HuddleViewSet(PatientDataViewSet):
    """Huddles on the patients whose team the caller is on today (others are missing:
    404, never counted). POST starts one (the patient's case manager); POST
    `<id>/answer/` posts the caller's update, once."""

    serializer_class = HuddleSerializer
    create_serializer_class = HuddleCreateSerializer  # type: ignore[assignment]
    lookup_url_kwarg = "huddle_id"
    audit_type = "careteam.huddle"
    http_method_names = ["get", "post", "head", "options"]
    ordering_fields = ["started_at", "deadline", "id"]

    def base_queryset(self):
        return Huddle.objects.select_related("patient", "conversation")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Huddle.objects.none()
        qs = visible_huddles(self.request.user, self.base_queryset())
        params = self.request.query_params
        patient = params.get("patient")
        if patient not in (None, ""):
            if not patient.isdigit() or len(patient) > 18:
                raise ValidationError({"patient": ["A patient id is a whole number."]})
            qs = qs.filter(patient_id=int(patient))
        status = params.get("status")
        if status not in (None, ""):
            if status not in HuddleStatus.values:
                raise ValidationError({"status": ["Use open or closed."]})
            qs = qs.filter(status=status)
        return qs.order_by("-started_at", "-id")

    def perform_service_create(self, data: dict):
        """Start a huddle: the patient's case manager only (403 for another member); a
        patient whose team the caller is not on is as missing as one that does not exist."""
        patient = data["patient"]
        access = patient_access(self.request.user, patient)
        if not access.on_team:
            raise ValidationError({"patient": [f'Invalid pk "{patient.pk}" - object does not exist.']})
        try:
            return services.huddle_start(
                access=access,
                by=cast(User, self.request.user),
                deadline=data["deadline"],
                format=data.get("format") or "sbar",
                invitees=data.get("invitees"),
                request=self.request,
            )
        except DjangoValidationError as exc:
            raise translate(exc) from exc

    def retrieve(self, request, *args, **kwargs):
        huddle = self.get_object()
        access = patient_access(request.user, huddle.patient)
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=huddle,
            patient_id=huddle.patient_id,
            request=request,
            detail="API read",
        )
        data = HuddleDetailSerializer(
            huddle, context={**self.get_serializer_context(), "access": access}
        ).data
        response = Response(data)
        response["ETag"] = f'W/"{huddle.version}"'
        return response

    @action(detail=True, methods=["post"])
    def answer(self, request, *args, **kwargs):
        huddle = self.get_object()
        access = patient_access(request.user, huddle.patient)
        data = AnswerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        try:
            about = None
            if d.get("about"):
                about = about_from_key(access, f"{d['about']['type']}:{d['about']['id']}")
            invitation = services.huddle_answer(
                access=access,
                by=request.user,
                huddle=huddle,
                answer={name: d.get(name, "") for name in ("news", "concerns", "will_do", "needs_from")},
                about=about,
                request=request,
            )
        except DjangoValidationError as exc:
            raise translate(exc) from exc
        invitation = HuddleInvitation.objects.select_related(
            "user", "conversation__goal", "conversation__need", "conversation__activity",
            "conversation__handoff", "conversation__referral__need",
        ).get(pk=invitation.pk)  # fmt: skip
        setattr(invitation, "visible_answer", True)  # noqa: B010 - what InvitationSerializer reads
        return Response(InvitationSerializer(invitation).data, status=201)
