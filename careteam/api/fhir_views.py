"""FHIR R4 endpoints (/fhir/): reads, search by patient, Patient/$everything, the
CapabilityStatement, and the import of a CarePlan Bundle. Same permission checks and
audit as the rest of CareTeam; errors answer as OperationOutcome."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404
from django.utils.http import urlencode
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from careplans import screening
from careplans.models import Activity, CarePlan, Goal
from careteam.audit import audit, audit_denied, audit_list
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
from transitions import fhir as transitions_fhir

from . import fhir
from .auth import ApiTokenAuthentication
from .errors import api_exception_handler
from .parsers import SafeJSONParser

CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
}


# Searches that do not page yet (Questionnaire, PlanDefinition, QuestionnaireResponse)
# return at most this many resources.
MAX_SEARCH = 50


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
        so a search for a hidden patient finds nothing rather than answering 404 (the
        refusal is audited against that patient)."""
        raw = self.request.query_params.get("patient") or self.request.query_params.get("subject")
        if not raw:
            raise fhir_bad_request("Search by patient: ?patient=<id>.")
        raw = raw.removeprefix("Patient/")
        try:
            return access_patient_by_id(self.request.user, raw)
        except Http404:
            self._hidden_patient = raw
            return None

    def page_window(self) -> tuple[int, int]:
        """(offset, count) from `_offset` and `_count`: count defaults to and is capped at
        FHIR_SEARCH_MAX_COUNT; anything that is not a small non-negative number is a 400."""
        limit = settings.FHIR_SEARCH_MAX_COUNT
        params = self.request.query_params

        def number(name: str, default: int) -> int:
            raw = params.get(name)
            if raw is None or raw == "":
                return default
            if not raw.isdigit() or len(raw) > 9:
                raise fhir_bad_request(f"{name} must be a whole number from 0.")
            return int(raw)

        return number("_offset", 0), min(number("_count", limit), limit)

    def searchset(
        self,
        kind: str,
        access: PatientAccess | None,
        entries: list[tuple[str, dict]],
        *,
        total: int | None = None,
        patient_ids: list[int] | None = None,
    ) -> Response:
        """One page of a search Bundle with `link` self/next/previous, audited with the
        searched patient (for a hidden one, as a denial naming that patient). `entries` is
        the whole result, or already the page when `total` is given."""
        offset, count = self.page_window()
        if total is None:
            total, page = len(entries), entries[offset : offset + count]
        else:
            page = entries
        hidden = getattr(self, "_hidden_patient", None)
        if access is None and hidden is not None:
            audit_denied(
                self.request,
                url_kwargs={"patient_id": hidden},
                detail=f"FHIR {kind} search for a patient not visible",
            )
        else:
            audit_list(
                self.request,
                list_name=f"fhir.{kind}",
                patient_id=access.patient.pk if access else None,
                patient_ids=patient_ids or (),
                query=self.request.query_params.dict(),
                detail=f"FHIR search, {total} results, {len(page)} shown from {offset}",
            )
        data = fhir.bundle(page)
        data["total"] = total
        data["link"] = self.page_links(kind, offset, count, total)
        return self.respond(data)

    def page_links(self, kind: str, offset: int, count: int, total: int) -> list[dict]:
        params = {k: v for k, v in self.request.query_params.items() if k not in ("_offset", "_count")}

        def link(relation: str, at: int) -> dict:
            query = urlencode({**params, "_offset": at, "_count": count})
            return {"relation": relation, "url": f"{self.url(kind)}?{query}"}

        links = [link("self", offset)]
        if count and offset + count < total:
            links.append(link("next", offset + count))
        if offset > 0 and count:
            links.append(link("previous", max(0, offset - count)))
        return links

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
    for goal in Goal.objects.filter(care_plan_id__in=plan_ids).filter(access.goal_q()).order_by("id"):
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


def _goals(access: PatientAccess) -> list[Goal]:
    return list(
        Goal.objects.filter(care_plan__patient_id=access.patient.pk)
        .filter(access.goal_q())
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

    def put(self, request, patient_id: int):
        """Update demographics from a Patient resource, with If-Match (428 without, 412
        when stale). The MRN cannot change: a different one is a 400."""
        from django.db import transaction

        from patients import services as patient_services

        from .base import expected_version

        access = access_patient_by_id(request.user, patient_id, for_write=True)
        version = expected_version(request)
        data = fhir.parse_patient(request.data)
        if request.data.get("id") not in (None, str(patient_id)):
            raise fhir_bad_request("Patient.id differs from the id in the URL.")
        if data.pop("mrn") not in ("", access.patient.mrn):
            raise fhir_bad_request("The MRN cannot be changed.")
        with transaction.atomic():
            patient = patient_services.patient_update(
                by=request.user, access=access, data=data, expected_version=version, request=request
            )
        return self.respond(fhir.patient_resource(patient))


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
        offset, count = self.page_window()
        total = patients.count()
        found = list(patients.order_by("family_name", "given_name", "id")[offset : offset + count])
        return self.searchset(
            "Patient",
            None,
            [(self.url(f"Patient/{p.pk}"), fhir.patient_resource(p)) for p in found],
            total=total,
            patient_ids=[p.pk for p in found],
        )

    def post(self, request):
        return patient_create(self, request)


def _if_none_exist(request) -> str | None:
    """The MRN of an `If-None-Exist: identifier=[system|]value` header; None without one."""
    from urllib.parse import parse_qs

    header = request.headers.get("If-None-Exist")
    if header is None:
        return None
    values = parse_qs(header).get("identifier", [])
    if len(values) != 1 or not values[0].strip():
        raise fhir_bad_request("If-None-Exist must be identifier=[system|]value.")
    system, _, value = values[0].rpartition("|")
    if system and system != fhir.MRN_SYSTEM:
        raise fhir_bad_request(f"If-None-Exist: only the MRN system ({fhir.MRN_SYSTEM}) is matched.")
    return value.strip()


class ExistsHidden(APIException):
    status_code = 412
    default_detail = (
        "A patient with this identifier exists on a care team you are not on; "
        "ask the patient's case manager to add you."
    )
    default_code = "conflict"


def patient_create(view: FHIRView, request) -> Response:
    """POST /fhir/Patient. With `If-None-Exist: identifier=<MRN>` an existing record is
    answered (200) instead of created again, so a sender may repeat itself safely; a
    record the caller may not see answers 412 without its content. Name-and-birth-date
    look-alikes are not refused here: a sending system names its patient by MRN."""
    from django.db import transaction

    from patients import services as patient_services
    from patients.models import Patient

    data = fhir.parse_patient(request.data)
    mrn = _if_none_exist(request)
    data["mrn"] = patient_services.normalise_mrn(data["mrn"])
    if mrn is not None:
        mrn = patient_services.normalise_mrn(mrn)
        if data["mrn"] and data["mrn"] != mrn:
            raise fhir_bad_request("If-None-Exist names another MRN than the resource's identifier.")
        existing = Patient.objects.filter(mrn__iexact=mrn).first() if mrn else None
        if existing is not None:
            access = patient_access(request.user, existing)
            if not access.on_team:
                audit_denied(
                    request, url_kwargs={"patient_id": existing.pk}, detail="FHIR conditional create"
                )
                raise ExistsHidden()
            view.audit_read(existing, existing.pk)
            response = view.respond(fhir.patient_resource(existing), status=200)
            response["Location"] = view.url(f"Patient/{existing.pk}")
            return response
        data["mrn"] = mrn
    with transaction.atomic():
        patient, _membership = patient_services.patient_register(
            by=request.user, data=data, not_a_duplicate=True, request=request
        )
    response = view.respond(fhir.patient_resource(patient), status=201)
    response["Location"] = view.url(f"Patient/{patient.pk}")
    return response


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
        for goal in _goals(access):
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
        entries.extend(transitions_fhir.everything_entries(access, self.url))
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
        parsed = fhir.parse_careplan_bundle(check_import_size(request.data))
        subject = parsed["plan"]["subject"] or ""
        if not subject.startswith("Patient/"):
            raise fhir_bad_request("CarePlan.subject must reference the Patient (Patient/<id>).")
        return import_response(self, subject.removeprefix("Patient/"), parsed)


class CarePlanImportView(FHIRView):
    def post(self, request, patient_id: int):
        access_patient_by_id(request.user, patient_id)  # 404 before reading the body
        parsed = fhir.parse_careplan_bundle(check_import_size(request.data))
        return import_response(self, patient_id, parsed)


class ImportTooLarge(APIException):
    status_code = 413
    default_detail = "The Bundle holds too many entries."
    default_code = "too-costly"


def check_import_size(data):
    """413 for a Bundle of more than FHIR_IMPORT_MAX_ENTRIES entries, before it is
    validated or anything is written."""
    entries = data.get("entry") if isinstance(data, dict) else None
    limit = settings.FHIR_IMPORT_MAX_ENTRIES
    if isinstance(entries, list) and len(entries) > limit:
        raise ImportTooLarge(
            f"The Bundle holds {len(entries)} entries; at most {limit} are imported at once."
        )
    return data


def import_response(view: FHIRView, patient_id, parsed: dict) -> Response:
    from django.db import transaction

    try:
        access = access_patient_by_id(view.request.user, patient_id, for_write=True)
    except (Http404, PermissionDenied):
        audit_denied(view.request, url_kwargs={"patient_id": patient_id}, detail="FHIR CarePlan import")
        raise
    fhir.check_import_subjects(parsed, access.patient.pk)
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
            "Goal", access, [(self.url(f"Goal/{g.pk}"), fhir.goal_resource(g, pid)) for g in _goals(access)]
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
        try:
            return self.read(request, kind, raw_id)
        except Http404:
            if kind in ("handoff", "referral"):
                audit_denied(request, url_kwargs={f"{kind}_id": raw_id}, detail=f"FHIR Task/{kind} read")
            raise

    def read(self, request, kind: str, raw_id: str):
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
