"""The shape every patient-data endpoint shares: the restricted queryset first, audit of
reads, versions as ETags, If-Match on every change, one service call per write."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response

from careteam.audit import audit, audit_list
from careteam.models import AuditAction
from careteam.permissions import PatientAccess, patient_access, restrict

from .auth import ApiTokenAuthentication
from .errors import PreconditionFailed, PreconditionRequired, api_exception_handler
from .parsers import SafeJSONParser

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description='The ETag from your last read, e.g. W/"3". Missing: 428. Stale: 412, nothing changes.',
)
ETAG = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200, 201],
    description='The object\'s version, e.g. W/"3": send it back as If-Match to change the object.',
)

_ETAG_RE = re.compile(r'^\s*(?:W/)?"?(\d{1,9})"?\s*$')


def etag_for(obj: Any) -> str:
    return f'W/"{obj.version}"'


def expected_version(request) -> int:
    """The version the client read, from If-Match (428 if absent, 412 if unreadable)."""
    header = request.headers.get("If-Match")
    if header is None or not header.strip():
        raise PreconditionRequired()
    match = _ETAG_RE.match(header.split(",")[0])
    if not match:
        raise PreconditionFailed('If-Match does not name a version of this object (expected W/"<version>").')
    return int(match.group(1))


def documented(output, create=None, update=None, **extra):
    """OpenAPI for a patient-data viewset: bodies in and out, the version headers."""
    views = {
        "list": extend_schema(responses=output),
        "retrieve": extend_schema(responses=output, parameters=[ETAG]),
    }
    if create is not None:
        views["create"] = extend_schema(request=create, responses={201: output}, parameters=[ETAG])
    if update is not None:
        views["partial_update"] = extend_schema(
            request=update, responses={200: output}, parameters=[IF_MATCH, ETAG]
        )
    views.update(extra)
    return extend_schema_view(**views)


class ApiViewMixin:
    """Error translation and JSON-only bodies for every API view."""

    parser_classes = [SafeJSONParser]
    # Token first: an unauthenticated call answers 401 with WWW-Authenticate: Token.
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]

    def get_exception_handler(self):
        return api_exception_handler


class AuditedListMixin:
    """A list read of patient data is audited as one event naming the patients on the
    page (`careteam.audit.audit_list`: one INSERT). Subclasses say how a row names its
    patient (`row_patient_id`, from columns already loaded) and may name the one patient
    the list is filtered to (`list_patient_id`)."""

    audit_list_name = ""

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        self._audited_rows = page
        return page

    def row_patient_id(self, obj) -> int | None:
        return getattr(obj, "patient_id", None)

    def list_patient_id(self) -> int | None:
        return None

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        rows = getattr(self, "_audited_rows", None) or []
        count = response.data.get("count", len(rows)) if isinstance(response.data, dict) else len(rows)
        audit_list(
            request,
            list_name=self.audit_list_name,
            patient_id=self.list_patient_id(),
            patient_ids=[self.row_patient_id(obj) for obj in rows],
            query=request.query_params.dict(),
            detail=f"API list, {count} results",
        )
        return response


class PatientDataViewSet(
    ApiViewMixin,
    AuditedListMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """List and read patient data the caller may see; subclasses add writes.

    `patient_path` is the lookup from the model to its patient, handed to
    `careteam.permissions.restrict`, so lists, counts and detail lookups never include
    rows of patients outside the caller's teams (nor sensitive items they may not see).
    """

    patient_path = "patient"
    audit_type = ""
    http_method_names = ["get", "post", "patch", "head", "options"]
    create_serializer_class = None
    update_serializer_class = None
    # False where the update serializer's required fields are the change itself (status)
    update_partial = True

    # -- reads ----------------------------------------------------------------
    def base_queryset(self):
        raise NotImplementedError

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return self.base_queryset().none()
        return restrict(self.base_queryset(), self.request.user, patient_path=self.patient_path)

    def patient_id_of(self, obj) -> int:
        *path, last = self.patient_path.split("__")
        for part in path:
            obj = getattr(obj, part)
        return getattr(obj, f"{last}_id")

    @property
    def audit_list_name(self) -> str:
        return self.audit_type

    def row_patient_id(self, obj) -> int | None:
        if self.patient_path == "pk":
            return obj.pk
        return self.patient_id_of(obj)  # the hops to the patient are select_related

    def list_patient_id(self) -> int | None:
        patient_filter = self.request.query_params.get("patient")
        if patient_filter and patient_filter.isdigit() and len(patient_filter) < 16:
            return int(patient_filter)
        return None

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=obj,
            patient_id=self.patient_id_of(obj),
            request=request,
            detail="API read",
        )
        return self.render(obj)

    def render(self, obj, status: int = 200) -> Response:
        data = self.get_serializer(obj).data
        response = Response(data, status=status)
        if hasattr(obj, "version"):
            response["ETag"] = etag_for(obj)
        if status == 201 and data.get("url"):
            response["Location"] = data["url"]
        return response

    def access_for(self, obj) -> PatientAccess:
        patient = obj
        if self.patient_path != "pk":  # "pk": the object is the patient
            for part in self.patient_path.split("__"):
                patient = getattr(patient, part)
        return patient_access(self.request.user, patient)

    # -- writes ---------------------------------------------------------------
    def input(self, serializer_class, *, instance=None, partial: bool = False):
        serializer = serializer_class(
            instance=instance, data=self.request.data, partial=partial, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def create(self, request, *args, **kwargs):
        data = self.input(self.create_serializer_class)
        with transaction.atomic():
            obj = self.perform_service_create(dict(data))
        return self.render(self.reload(obj), status=201)

    def partial_update(self, request, *args, **kwargs):
        obj = self.get_object()
        access = self.access_for(obj)
        self.check_can_change(access, obj)
        version = expected_version(request)
        data = self.input(self.update_serializer_class, instance=obj, partial=self.update_partial)
        with transaction.atomic():
            obj = self.perform_service_update(access, obj, dict(data), version)
        return self.render(self.reload(obj))

    def reload(self, obj):
        """The saved object as lists show it (related rows loaded, and the related rows the
        caller may not see left out by `base_queryset`). Not filtered by patient again: the
        caller was just allowed to write this very object, and the answer is that object
        whether or not the change took it out of their sight (e.g. they ended their own
        role); filtering would recompute their whole visible set for one row."""
        return self.base_queryset().filter(pk=obj.pk).first() or obj

    def check_can_change(self, access: PatientAccess, obj) -> None:
        access.require_edit(obj)

    def perform_service_create(self, data: dict):
        raise NotImplementedError

    def perform_service_update(self, access: PatientAccess, obj, data: dict, version: int):
        raise NotImplementedError
