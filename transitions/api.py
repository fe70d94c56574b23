"""REST (/api/v1/transitions/, /api/v1/medication-lines/) and FHIR R4 (Encounter,
MedicationStatement) endpoints of transitions and medications: the same token auth,
access rules, audit and error contract (404 hidden = missing, 400 field errors or an
OperationOutcome, 403 read-only) as careteam/api/."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError as DRFValidationError

from careteam.api import fhir_search as fs
from careteam.api.base import ApiViewMixin, AuditedListMixin
from careteam.api.fhir_views import (
    HL7_SP,
    FHIRView,
    _id_param,
    _last_updated,
    _subject_params,
    check_import_size,
    patient_includes,
)
from careteam.audit import AuditAction, audit
from careteam.permissions import access_item, access_patient_by_id, restrict

from . import fhir, services
from .models import EncounterStatus, MedicationLine, MedicationStatus, Transition, TransitionKind


# ---------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------
class TransitionSerializer(serializers.ModelSerializer):
    steps = serializers.SerializerMethodField()

    class Meta:
        model = Transition
        fields = [
            "id",
            "patient",
            "kind",
            "status",
            "encounter_class",
            "from_location",
            "to_location",
            "admitted_at",
            "discharged_at",
            "occurred_at",
            "reason",
            "disposition",
            "source",
            "identifier_system",
            "identifier",
            "readmission_of",
            "version",
            "steps",
        ]
        read_only_fields = fields

    def get_steps(self, obj) -> list[dict]:
        return [
            {
                "key": s.key,
                "title": s.title,
                "activity": s.activity_id,
                "due_at": s.due_at.isoformat(),
                "linked_existing": s.linked_existing,
            }
            for s in obj.steps.all()
        ]


class MedicationLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = MedicationLine
        fields = [
            "id",
            "patient",
            "source",
            "name",
            "rxnorm",
            "dose",
            "route",
            "timing",
            "times",
            "prescriber",
            "start",
            "stop",
            "status",
            "reconciliation",
            "version",
        ]
        read_only_fields = fields


class _PatientList(ApiViewMixin, AuditedListMixin, generics.ListAPIView):
    def list_patient_id(self):
        raw = self.request.query_params.get("patient", "")
        return int(raw) if raw.isdigit() and len(raw) < 16 else None

    def filtered(self, qs):
        raw = self.request.query_params.get("patient", "")
        if raw:
            if not raw.isdigit() or len(raw) > 15:
                raise DRFValidationError({"patient": "A patient id."})
            qs = qs.filter(patient_id=int(raw))
        return qs


@extend_schema_view(
    get=extend_schema(summary="Transitions (admissions, discharges, transfers) of your patients")
)
class TransitionListView(_PatientList):
    serializer_class = TransitionSerializer
    audit_list_name = "transitions.transition"

    def get_queryset(self):
        qs = Transition.objects.prefetch_related("steps").order_by("-occurred_at", "-id")
        if getattr(self, "swagger_fake_view", False):
            return qs.none()
        return self.filtered(restrict(qs, self.request.user))


@extend_schema_view(get=extend_schema(summary="One transition with its checklist steps"))
class TransitionDetailView(ApiViewMixin, generics.RetrieveAPIView):
    serializer_class = TransitionSerializer
    lookup_url_kwarg = "transition_id"

    def get_queryset(self):
        qs = Transition.objects.prefetch_related("steps")
        if getattr(self, "swagger_fake_view", False):
            return qs.none()
        return restrict(qs, self.request.user)

    def retrieve(self, request, *args, **kwargs):
        response = super().retrieve(request, *args, **kwargs)
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            object_type="transitions.transition",
            object_id=kwargs["transition_id"],
            patient_id=response.data["patient"],
            request=request,
            detail="API read",
        )
        response["ETag"] = f'W/"{response.data["version"]}"'
        return response


@extend_schema_view(get=extend_schema(summary="Medication list lines of your patients (every source list)"))
class MedicationLineListView(_PatientList):
    serializer_class = MedicationLineSerializer
    audit_list_name = "transitions.medicationline"

    def get_queryset(self):
        qs = MedicationLine.objects.order_by("patient_id", "source", "name", "id")
        if getattr(self, "swagger_fake_view", False):
            return qs.none()
        qs = self.filtered(restrict(qs, self.request.user))
        source = self.request.query_params.get("source")
        return qs.filter(source=source) if source else qs


# ---------------------------------------------------------------------------
# FHIR R4
# ---------------------------------------------------------------------------
def _bad(exc: ValidationError) -> DRFValidationError:
    detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": " ".join(exc.messages)}
    return DRFValidationError(detail)


fs.register(
    fs.SearchType(
        kind="Encounter",
        queryset=lambda user: restrict(Transition.objects.all(), user),
        render=lambda view, rows: [(view.url(f"Encounter/{t.pk}"), fhir.encounter_resource(t)) for t in rows],
        params=[
            _id_param(),
            *_subject_params("patient_id"),
            fs.Param(
                "status",
                "token",
                fs.code_q("status", allowed=EncounterStatus.values),
                "",
                f"{HL7_SP}/Encounter-status",
            ),
            fs.Param(
                "class",
                "token",
                fs.code_q("encounter_class", allowed=list(fhir.ENCOUNTER_CLASSES)),
                "v3 ActCode: IMP, EMER, AMB, HH, ...",
                f"{HL7_SP}/Encounter-class",
            ),
            fs.Param(
                "type",
                "token",
                fs.code_q("kind", allowed=TransitionKind.values),
                "admission, discharge or transfer",
                f"{HL7_SP}/clinical-type",
            ),
            fs.Param(
                "date", "date", fs.date_q("occurred_at__date"), "When it happened", f"{HL7_SP}/clinical-date"
            ),
            _last_updated(),
        ],
        sorts={"date": "occurred_at", "_lastUpdated": "updated_at"},
        includes={
            "Encounter:patient": patient_includes("patient"),
            "Encounter:subject": patient_includes("patient"),
        },
        default_order=("occurred_at", "pk"),
        requires_one_of=("patient", "subject", "_id"),
        interactions=("read", "search-type", "create"),
    )
)

fs.register(
    fs.SearchType(
        kind="MedicationStatement",
        queryset=lambda user: restrict(MedicationLine.objects.all(), user),
        render=lambda view, rows: [
            (view.url(f"MedicationStatement/{m.pk}"), fhir.medication_statement_resource(m)) for m in rows
        ],
        params=[
            _id_param(),
            *_subject_params("patient_id"),
            fs.Param(
                "status",
                "token",
                fs.code_q("status", allowed=MedicationStatus.values),
                "",
                f"{HL7_SP}/medications-status",
            ),
            _last_updated(),
        ],
        sorts={"_lastUpdated": "updated_at"},
        includes={
            "MedicationStatement:patient": patient_includes("patient"),
            "MedicationStatement:subject": patient_includes("patient"),
        },
        requires_one_of=("patient", "subject", "_id"),
    )
)


class EncounterView(FHIRView):
    """GET: the search table's Encounter search. POST: an admission or discharge from
    another system; the same identifier again updates the one transition (200), a new one
    answers 201."""

    search_kind = "Encounter"

    def post(self, request):
        data = check_import_size(request.data)
        try:
            parsed = fhir.parse_encounter(data)
        except ValidationError as exc:
            raise _bad(exc) from None
        access = access_patient_by_id(request.user, parsed.pop("patient_id"), for_write=True)
        try:
            result = services.transition_record(
                access=access, by=request.user, source="fhir", request=request, **parsed
            )
        except ValidationError as exc:
            raise _bad(exc) from None
        response = self.respond(
            fhir.encounter_resource(result.transition), status=201 if result.created else 200
        )
        response["Location"] = self.url(f"Encounter/{result.transition.pk}")
        return response


class EncounterReadView(FHIRView):
    def get(self, request, transition_id: int):
        transition, _ = access_item(
            request.user, Transition.objects.select_related("patient"), transition_id, patient_path="patient"
        )
        self.audit_read(transition, transition.patient_id)
        return self.respond(fhir.encounter_resource(transition))


class MedicationStatementSearchView(FHIRView):
    search_kind = "MedicationStatement"


class MedicationStatementReadView(FHIRView):
    def get(self, request, line_id: int):
        line, _ = access_item(
            request.user, MedicationLine.objects.select_related("patient"), line_id, patient_path="patient"
        )
        self.audit_read(line, line.patient_id)
        return self.respond(fhir.medication_statement_resource(line))
