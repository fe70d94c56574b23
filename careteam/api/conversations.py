"""REST API of conversations: `/api/v1/conversations/` (list filtered by patient, about
and unread; read; start one) and `/api/v1/conversations/<id>/messages/` (list, post), with
the API's contract: hidden and missing answer 404, bad input 400 with field errors, a
state conflict 409. The same services and permission rules as the pages."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from careteam import conversations as services
from careteam.models import (
    CONVERSATION_ABOUT_FIELDS,
    CONVERSATION_SUBJECT_MAX_LENGTH,
    MESSAGE_MAX_LENGTH,
    Conversation,
    Message,
    MessageMention,
    SensitivityCategory,
)
from careteam.permissions import access_conversation, access_patient_by_id
from patients.models import Patient

from .base import ApiViewMixin, AuditedListMixin, PatientDataViewSet
from .errors import translate
from .serializers import RestrictedPrimaryKeyField


# ---------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------
class AboutSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=CONVERSATION_ABOUT_FIELDS)
    id = serializers.IntegerField()


class ConversationSerializer(serializers.ModelSerializer):
    about = serializers.SerializerMethodField()
    sensitivity = serializers.SlugRelatedField(slug_field="code", read_only=True)
    unread = serializers.SerializerMethodField()
    messages_url = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "id",
            "patient",
            "subject",
            "about",
            "sensitivity",
            "started_by",
            "created_at",
            "last_message_at",
            "unread",
            "messages_url",
        ]

    @extend_schema_field(AboutSerializer(allow_null=True))
    def get_about(self, obj) -> dict | None:
        kind = obj.about_kind
        return {"type": kind, "id": getattr(obj, f"{kind}_id")} if kind else None

    def get_unread(self, obj) -> bool:
        return obj.last_message_id is not None and not getattr(obj, "is_read", True)

    def get_messages_url(self, obj) -> str:
        return f"/api/v1/conversations/{obj.pk}/messages/"


class MentionSerializer(serializers.ModelSerializer):
    discipline = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = MessageMention
        fields = ["user", "discipline"]


class MessageSerializer(serializers.ModelSerializer):
    author_name = serializers.CharField(source="author.display_name", read_only=True)
    retracted = serializers.SerializerMethodField()
    mentions = MentionSerializer(many=True, read_only=True)
    activity = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "conversation",
            "author",
            "author_name",
            "text",
            "created_at",
            "edited_at",
            "retracted",
            "version",
            "mentions",
            "activity",
            "handoff",
        ]

    def get_retracted(self, obj) -> bool:
        return obj.is_retracted

    def get_activity(self, obj) -> int | None:
        """The activity made from it, when the caller may see it."""
        access = self.context.get("access")
        if obj.activity_id is None or access is None or not access.can_see(obj.activity):
            return None
        return obj.activity_id


class ConversationCreateSerializer(serializers.Serializer):
    patient = RestrictedPrimaryKeyField(model=Patient, patient_path="pk")
    subject = serializers.CharField(
        max_length=CONVERSATION_SUBJECT_MAX_LENGTH, required=False, allow_blank=True
    )
    about = AboutSerializer(required=False, allow_null=True)
    sensitivity = serializers.SlugRelatedField(
        slug_field="code", queryset=SensitivityCategory.objects.all(), required=False, allow_null=True
    )
    text = serializers.CharField(max_length=MESSAGE_MAX_LENGTH, trim_whitespace=True)


class MessageCreateSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MESSAGE_MAX_LENGTH, trim_whitespace=True)


def _service_call(fn, **kwargs):
    """Run a service; its ValidationError / PermissionDenied answer as the API does."""
    try:
        return fn(**kwargs)
    except DjangoValidationError as exc:
        raise translate(exc) from exc


# ---------------------------------------------------------------------------
# /api/v1/conversations/
# ---------------------------------------------------------------------------
UNREAD = OpenApiParameter("unread", OpenApiTypes.BOOL, description="Only conversations with unread messages.")
PATIENT = OpenApiParameter("patient", OpenApiTypes.INT, description="Only this patient's.")
ABOUT = OpenApiParameter(
    "about",
    OpenApiTypes.STR,
    description='An item ("need:12"), a kind of item ("need"), or "patient" (about the patient in general).',
)


def _flag(value: str | None, name: str) -> bool:
    if value in (None, ""):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValidationError({name: ["Use true or false."]})


@extend_schema_view(
    list=extend_schema(parameters=[PATIENT, ABOUT, UNREAD], responses=ConversationSerializer),
    retrieve=extend_schema(responses=ConversationSerializer),
    create=extend_schema(request=ConversationCreateSerializer, responses={201: ConversationSerializer}),
)
class ConversationViewSet(PatientDataViewSet):
    """Conversations the caller may see (hidden ones are missing: 404, never counted).
    POST starts one on a patient whose team the caller is on, with its first message."""

    serializer_class = ConversationSerializer
    create_serializer_class = ConversationCreateSerializer
    lookup_url_kwarg = "conversation_id"
    audit_type = "careteam.conversation"
    http_method_names = ["get", "post", "head", "options"]
    ordering_fields = ["last_message_at", "created_at", "id"]

    def base_queryset(self):
        return Conversation.objects.all()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Conversation.objects.none()
        user = self.request.user
        qs = services._with_unread(super().get_queryset(), user)
        params = self.request.query_params
        patient = params.get("patient")
        if patient not in (None, ""):
            if not patient.isdigit() or len(patient) > 18:
                raise ValidationError({"patient": ["A patient id is a whole number."]})
            qs = qs.filter(patient_id=int(patient))
        about = (params.get("about") or "").strip()
        if about == "patient":
            qs = qs.filter(**{f"{name}__isnull": True for name in CONVERSATION_ABOUT_FIELDS})
        elif about in CONVERSATION_ABOUT_FIELDS:
            qs = qs.filter(**{f"{about}__isnull": False})
        elif about:
            kind, _, raw = about.partition(":")
            if kind not in CONVERSATION_ABOUT_FIELDS or not raw.isdigit() or len(raw) > 18:
                raise ValidationError({"about": ['Name an item ("need:12"), a kind ("need") or "patient".']})
            qs = qs.filter(**{f"{kind}_id": int(raw)})
        if _flag(params.get("unread"), "unread"):
            qs = qs.filter(services.unread_q(user))
        return qs.order_by("-last_message_at", "-id")

    def perform_service_create(self, data: dict):
        patient = data.pop("patient")
        access = access_patient_by_id(self.request.user, patient.pk, for_write=True)
        about = data.get("about")
        item = None
        if about:
            item = _service_call(services.about_from_key, access=access, key=f"{about['type']}:{about['id']}")
        return _service_call(
            services.conversation_start,
            access=access,
            by=self.request.user,
            subject=data.get("subject", ""),
            about=item,
            sensitivity=data.get("sensitivity"),
            text=data["text"],
            request=self.request,
        )


# ---------------------------------------------------------------------------
# /api/v1/conversations/<id>/messages/
# ---------------------------------------------------------------------------
@extend_schema_view(
    get=extend_schema(responses=MessageSerializer(many=True)),
    post=extend_schema(request=MessageCreateSerializer, responses={201: MessageSerializer}),
)
class ConversationMessagesView(ApiViewMixin, AuditedListMixin, generics.ListCreateAPIView):
    """A conversation's messages, oldest first (the caller's read state moves to the
    newest); POST posts one. A conversation the caller may not see is 404."""

    serializer_class = MessageSerializer
    audit_list_name = "careteam.message"
    queryset = Message.objects.none()  # schema generation

    def _conversation(self):
        """The conversation and the caller's access (Http404, the API's 404, if hidden)."""
        if not hasattr(self, "_found"):
            self._found = access_conversation(self.request.user, self.kwargs["conversation_id"])
        return self._found

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["access"] = self._conversation()[1]
        return context

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        conversation, _ = self._conversation()
        return (
            Message.objects.filter(conversation_id=conversation.pk)
            .select_related("author", "activity")
            .prefetch_related(
                Prefetch("mentions", queryset=MessageMention.objects.select_related("discipline"))
            )
            .order_by("created_at", "id")
        )

    def row_patient_id(self, obj) -> int | None:
        return self._conversation()[0].patient_id

    def list_patient_id(self) -> int | None:
        return self._conversation()[0].patient_id

    def list(self, request, *args, **kwargs):
        conversation, access = self._conversation()
        response = super().list(request, *args, **kwargs)
        services.conversation_mark_read(access=access, by=request.user, conversation=conversation)
        return response

    def create(self, request, *args, **kwargs):
        conversation, access = self._conversation()
        if access.read_only:
            access.require_edit()  # 403: emergency access is read-only
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = _service_call(
            services.message_post,
            access=access,
            by=request.user,
            conversation=conversation,
            text=data.validated_data["text"],
            request=request,
        )
        message = self.get_queryset().get(pk=message.pk)
        return Response(self.get_serializer(message).data, status=201)
