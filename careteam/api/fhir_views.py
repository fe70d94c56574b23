"""FHIR R4 endpoints (/fhir/): reads, search by patient, Patient/$everything, the
CapabilityStatement, and the import of a CarePlan Bundle. Same permission checks and
audit as the rest of CareTeam; errors answer as OperationOutcome."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from careplans import screening
from careplans.models import Activity, CarePlan, Goal
from careteam.audit import audit
from careteam.models import AuditAction, Handoff, TeamMembership
from careteam.permissions import (
    PatientAccess,
    access_item,
    access_patient_by_id,
    patient_access,
    patients_for,
)
from referrals.models import Referral
from referrals.selectors import referral_for_user

from . import fhir
from .auth import ApiTokenAuthentication
from .errors import api_exception_handler
from .parsers import SafeJSONParser

MAX_SEARCH = 50
CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    415: "not-supported",
    429: "throttled",
}


class FHIRRenderer(JSONRenderer):
    media_type = fhir.FHIR_JSON
    format = "fhir"


class FHIRParser(SafeJSONParser):
    media_type = fhir.FHIR_JSON


def fhir_exception_handler(exc, context):
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and set(data) - {"detail", "current_version"}:
        message = "; ".join(
            f"{field}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for field, v in data.items()
        )
    else:
        message = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
    response.data = fhir.operation_outcome(CODES.get(response.status_code, "processing"), message)
    return response


@extend_schema(exclude=True)
class FHIRView(APIView):
    renderer_classes = [FHIRRenderer, JSONRenderer]
    parser_classes = [FHIRParser, SafeJSONParser]
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]

    def get_exception_handler(self):
        return fhir_exception_handler

    def url(self, path: str) -> str:
        return self.request.build_absolute_uri(f"/fhir/{path}")

    def respond(self, data: dict, status: int = 200) -> Response:
        response = Response(data, status=status, content_type=fhir.FHIR_JSON)
        version = data.get("meta", {}).get("versionId") if isinstance(data, dict) else None
        if version:
            response["ETag"] = f'W/"{version}"'
        return response

    def searched_patient(self) -> PatientAccess | None:
        """The patient a search names (?patient=12 or Patient/12); None when not visible,
        so a search for a hidden patient finds nothing rather than answering 404."""
        raw = self.request.query_params.get("patient") or self.request.query_params.get("subject")
        if not raw:
            raise fhir_bad_request("Search by patient: ?patient=<id>.")
        try:
            return access_patient_by_id(self.request.user, raw.removeprefix("Patient/"))
        except Http404:
            return None

    def searchset(self, kind: str, access: PatientAccess | None, entries: list[tuple[str, dict]]) -> Response:
        audit(
            user=self.request.user,
            action=AuditAction.VIEW,
            object_type=f"fhir.{kind}",
            object_id="",
            patient_id=access.patient.pk if access else None,
            request=self.request,
            detail=f"FHIR search, {len(entries)} results",
        )
        return self.respond(fhir.bundle(entries))

    def audit_read(self, obj, patient_id: int, detail: str = "FHIR read") -> None:
        audit(
            user=self.request.user,
            action=AuditAction.VIEW,
            obj=obj,
            patient_id=patient_id,
            request=self.request,
            detail=detail,
        )


def fhir_bad_request(message: str):
    from rest_framework.exceptions import ValidationError

    return ValidationError({"detail": message})


# ---------------------------------------------------------------------------
# Loaders shared by reads, searches and $everything (queries constant in rows)
# ---------------------------------------------------------------------------
def _plan_resources(access: PatientAccess, plans: list[CarePlan]) -> list[dict]:
    plan_ids = [p.pk for p in plans]
    goals = defaultdict(list)
    for goal in Goal.objects.filter(care_plan_id__in=plan_ids).order_by("id"):
        goals[goal.care_plan_id].append(goal)
    activities = defaultdict(list)
    visible = (
        Activity.objects.filter(care_plan_id__in=plan_ids)
        .filter(access.sensitivity_q())
        .select_related("owner_discipline", "assigned_to")
        .prefetch_related(Prefetch("goals", queryset=Goal.objects.only("id")))
        .order_by("id")
    )
    for activity in visible:
        activities[activity.care_plan_id].append(activity)
    return [fhir.careplan_resource(p, goals[p.pk], activities[p.pk]) for p in plans]


def _plans(patient_id: int) -> list[CarePlan]:
    return list(CarePlan.objects.filter(patient_id=patient_id).select_related("author").order_by("id"))


def _goals(patient_id: int) -> list[Goal]:
    return list(
        Goal.objects.filter(care_plan__patient_id=patient_id)
        .select_related("owner_discipline")
        .order_by("id")
    )


def _referrals(access: PatientAccess) -> list[Referral]:
    """The patient's referrals, less those made from a need the caller may not see."""
    return list(
        Referral.objects.filter(patient_id=access.patient.pk)
        .filter(access.sensitivity_q("need__sensitivity"))
        .select_related("service__organization", "referred_by")
        .order_by("id")
    )


def _handoffs(patient_id: int) -> list[Handoff]:
    return list(
        Handoff.objects.filter(patient_id=patient_id)
        .select_related("from_user", "to_user", "to_discipline")
        .order_by("id")
    )


def _questionnaire_responses(access: PatientAccess) -> list:
    """The patient's screenings the caller may see (sensitive instruments filtered)."""
    return list(screening.screenings_for(access).order_by("id"))


def _careteam(access: PatientAccess) -> dict:
    members = (
        TeamMembership.objects.current().filter(patient=access.patient).select_related("user", "discipline")
    )
    return fhir.careteam_resource(access.patient, members)


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------
class MetadataView(FHIRView):
    """The CapabilityStatement: what this server offers (public, like any FHIR server's)."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    def get(self, request):
        search_patient = [{"name": "patient", "type": "reference"}]

        def resource(kind, interactions, search=True, operations=(), params=()):
            data = {
                "type": kind,
                "interaction": [{"code": code} for code in interactions],
            }
            if params:
                data["searchParam"] = [{"name": name, "type": kind_} for name, kind_ in params]
            elif search:
                data["searchParam"] = search_patient
            elif kind == "Patient":
                data["searchParam"] = [
                    {"name": "identifier", "type": "token"},
                    {"name": "name", "type": "string"},
                    {"name": "_id", "type": "token"},
                ]
            if operations:
                data["operation"] = [
                    {"name": name, "definition": definition} for name, definition in operations
                ]
            return data

        return self.respond(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": "2026-11-23",
                "publisher": "CareTeam",
                "kind": "instance",
                "software": {"name": "CareTeam"},
                "implementation": {"description": "CareTeam FHIR R4 API", "url": self.url("")},
                "fhirVersion": "4.0.1",
                "format": [fhir.FHIR_JSON, "json"],
                "rest": [
                    {
                        "mode": "server",
                        "security": {
                            "description": "Authorization: Token <token> from POST /api/v1/auth/token/, "
                            "or a signed-in session. Same access rules as the application."
                        },
                        "resource": [
                            resource(
                                "Patient",
                                ["read", "search-type"],
                                search=False,
                                operations=[
                                    (
                                        "everything",
                                        "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                                    )
                                ],
                            ),
                            resource("CarePlan", ["read", "search-type", "create"]),
                            resource("CareTeam", ["read", "search-type"]),
                            resource("Goal", ["read", "search-type"]),
                            resource("ServiceRequest", ["read", "search-type"]),
                            resource("Task", ["read", "search-type"]),
                            resource(
                                "Questionnaire",
                                ["read", "search-type"],
                                params=[("code", "token"), ("url", "uri"), ("status", "token")],
                            ),
                            resource("QuestionnaireResponse", ["read", "search-type"]),
                            resource(
                                "PlanDefinition",
                                ["read", "search-type"],
                                params=[
                                    ("url", "uri"),
                                    ("name", "string"),
                                    ("title", "string"),
                                    ("status", "token"),
                                ],
                                operations=[
                                    ("apply", "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply")
                                ],
                            ),
                        ],
                    }
                ],
            }
        )


class PatientReadView(FHIRView):
    def get(self, request, patient_id: int):
        access = access_patient_by_id(request.user, patient_id)
        self.audit_read(access.patient, access.patient.pk)
        return self.respond(fhir.patient_resource(access.patient))


class PatientSearchView(FHIRView):
    """Find a visible patient by MRN (`identifier=[system|]value`), `name` or `_id`."""

    def get(self, request):
        params = request.query_params
        identifier, name, pk = params.get("identifier"), params.get("name"), params.get("_id")
        if not (identifier or name or pk):
            raise fhir_bad_request("Search patients by identifier (MRN), name or _id.")
        patients = patients_for(request.user)
        if identifier:
            system, _, value = identifier.rpartition("|")
            if system and system != fhir.MRN_SYSTEM:
                patients = patients.none()
            patients = patients.filter(mrn=value)
        if name:
            patients = patients.search(name)
        if pk:
            patients = patients.filter(pk=int(pk)) if pk.isdigit() and len(pk) < 16 else patients.none()
        found = list(patients.order_by("family_name", "given_name", "id")[:MAX_SEARCH])
        return self.searchset(
            "Patient", None, [(self.url(f"Patient/{p.pk}"), fhir.patient_resource(p)) for p in found]
        )


class PatientEverythingView(FHIRView):
    """Everything the caller may see about one patient, as one searchset Bundle."""

    def get(self, request, patient_id: int):
        access = access_patient_by_id(request.user, patient_id)
        pid = access.patient.pk
        plans = _plans(pid)
        entries = [(self.url(f"Patient/{pid}"), fhir.patient_resource(access.patient))]
        entries.append((self.url(f"CareTeam/{pid}"), _careteam(access)))
        for plan, resource in zip(plans, _plan_resources(access, plans), strict=True):
            entries.append((self.url(f"CarePlan/{plan.pk}"), resource))
        for goal in _goals(pid):
            entries.append((self.url(f"Goal/{goal.pk}"), fhir.goal_resource(goal, pid)))
        for referral in _referrals(access):
            entries.append(
                (self.url(f"ServiceRequest/{referral.pk}"), fhir.service_request_resource(referral))
            )
            entries.append((self.url(f"Task/referral-{referral.pk}"), fhir.referral_task_resource(referral)))
        for handoff in _handoffs(pid):
            entries.append((self.url(f"Task/handoff-{handoff.pk}"), fhir.handoff_task_resource(handoff)))
        for response in _questionnaire_responses(access):
            entries.append(
                (self.url(f"QuestionnaireResponse/{response.pk}"), screening.response_resource(response))
            )
        audit(
            user=request.user,
            action=AuditAction.EXPORT,
            obj=access.patient,
            patient_id=pid,
            request=request,
            detail=f"FHIR $everything, {len(entries)} resources",
        )
        return self.respond(fhir.bundle(entries))


class CarePlanReadView(FHIRView):
    def get(self, request, plan_id: int):
        plan, access = access_item(
            request.user,
            CarePlan.objects.select_related("patient", "author"),
            plan_id,
            patient_path="patient",
        )
        self.audit_read(plan, plan.patient_id)
        return self.respond(_plan_resources(access, [plan])[0])


class CarePlanSearchView(FHIRView):
    """GET: search by patient. POST: import a CarePlan Bundle for the patient its
    CarePlan.subject names (same as Patient/{id}/CarePlan/$import)."""

    def get(self, request):
        access = self.searched_patient()
        if access is None:
            return self.searchset("CarePlan", None, [])
        plans = _plans(access.patient.pk)
        resources = _plan_resources(access, plans)
        return self.searchset(
            "CarePlan",
            access,
            [(self.url(f"CarePlan/{p.pk}"), r) for p, r in zip(plans, resources, strict=True)],
        )

    def post(self, request):
        parsed = fhir.parse_careplan_bundle(request.data)
        subject = parsed["plan"]["subject"] or ""
        if not subject.startswith("Patient/"):
            raise fhir_bad_request("CarePlan.subject must reference the Patient (Patient/<id>).")
        return import_response(self, subject.removeprefix("Patient/"), parsed)


class CarePlanImportView(FHIRView):
    def post(self, request, patient_id: int):
        access_patient_by_id(request.user, patient_id)  # 404 before reading the body
        parsed = fhir.parse_careplan_bundle(request.data)
        return import_response(self, patient_id, parsed)


def import_response(view: FHIRView, patient_id, parsed: dict) -> Response:
    from django.db import transaction

    access = access_patient_by_id(view.request.user, patient_id, for_write=True)
    with transaction.atomic():
        plan = fhir.careplan_import(access=access, by=view.request.user, parsed=parsed, request=view.request)
    access = patient_access(view.request.user, access.patient)
    plan = CarePlan.objects.select_related("author").get(pk=plan.pk)
    response = view.respond(_plan_resources(access, [plan])[0], status=201)
    response["Location"] = view.url(f"CarePlan/{plan.pk}")
    return response


class CareTeamReadView(FHIRView):
    def get(self, request, patient_id: int):
        access = access_patient_by_id(request.user, patient_id)
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            object_type="fhir.CareTeam",
            object_id=access.patient.pk,
            patient_id=access.patient.pk,
            request=request,
            detail="FHIR read",
        )
        return self.respond(_careteam(access))


class CareTeamSearchView(FHIRView):
    def get(self, request):
        access = self.searched_patient()
        entries = [] if access is None else [(self.url(f"CareTeam/{access.patient.pk}"), _careteam(access))]
        return self.searchset("CareTeam", access, entries)


class GoalReadView(FHIRView):
    def get(self, request, goal_id: int):
        goal, access = access_item(
            request.user,
            Goal.objects.select_related("care_plan__patient", "owner_discipline"),
            goal_id,
            patient_path="care_plan__patient",
        )
        self.audit_read(goal, access.patient.pk)
        return self.respond(fhir.goal_resource(goal, access.patient.pk))


class GoalSearchView(FHIRView):
    def get(self, request):
        access = self.searched_patient()
        if access is None:
            return self.searchset("Goal", None, [])
        pid = access.patient.pk
        return self.searchset(
            "Goal", access, [(self.url(f"Goal/{g.pk}"), fhir.goal_resource(g, pid)) for g in _goals(pid)]
        )


class ServiceRequestReadView(FHIRView):
    def get(self, request, referral_id: int):
        referral, _ = referral_for_user(request.user, referral_id)
        self.audit_read(referral, referral.patient_id)
        return self.respond(fhir.service_request_resource(referral))


class ServiceRequestSearchView(FHIRView):
    def get(self, request):
        access = self.searched_patient()
        referrals = [] if access is None else _referrals(access)
        return self.searchset(
            "ServiceRequest",
            access,
            [(self.url(f"ServiceRequest/{r.pk}"), fhir.service_request_resource(r)) for r in referrals],
        )


class TaskReadView(FHIRView):
    """Task/handoff-<id> (a handoff) or Task/referral-<id> (the task tracking a referral)."""

    def get(self, request, task_id: str):
        kind, _, raw_id = task_id.partition("-")
        if kind == "handoff":
            handoff, access = access_item(
                request.user,
                Handoff.objects.select_related("patient", "from_user", "to_user", "to_discipline"),
                raw_id,
                patient_path="patient",
            )
            self.audit_read(handoff, handoff.patient_id)
            return self.respond(fhir.handoff_task_resource(handoff))
        if kind == "referral":
            referral, _ = referral_for_user(request.user, raw_id)
            self.audit_read(referral, referral.patient_id)
            return self.respond(fhir.referral_task_resource(referral))
        raise Http404


class TaskSearchView(FHIRView):
    def get(self, request):
        access = self.searched_patient()
        entries = []
        if access is not None:
            pid = access.patient.pk
            entries += [
                (self.url(f"Task/handoff-{h.pk}"), fhir.handoff_task_resource(h)) for h in _handoffs(pid)
            ]
            entries += [
                (self.url(f"Task/referral-{r.pk}"), fhir.referral_task_resource(r))
                for r in _referrals(access)
            ]
        return self.searchset("Task", access, entries)
