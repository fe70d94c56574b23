"""FHIR R4 endpoints for screening and plan templates: Questionnaire and PlanDefinition
(read-only definitions, any signed-in user), QuestionnaireResponse (patient data: team
access rules, sensitivity policy, audited) and PlanDefinition/$apply (the same merge
service as the plan editor). Built on the shared FHIRView helpers of fhir_views."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.http import Http404
from rest_framework.response import Response

from careplans import plan_templates, screening
from careplans.models import (
    CarePlan,
    PlanTemplate,
    Questionnaire,
    QuestionnaireResponse,
    QuestionnaireStatus,
)
from careteam.permissions import access_item, access_patient_by_id, patient_access

from . import fhir_search as fs
from .fhir_views import HL7_SP, FHIRView, _id_param, _plan_resources, _subject_params, fhir_bad_request


def questionnaire_resource(questionnaire: Questionnaire) -> dict:
    """The stored Questionnaire as served: the row id, and the row's status (an import
    keeps the resource whole; retiring a version changes the row)."""
    data = dict(questionnaire.resource)
    data["id"] = str(questionnaire.pk)
    data["status"] = questionnaire.status
    data["url"] = questionnaire.url
    data["version"] = questionnaire.version
    data.pop("meta", None)
    data["meta"] = {"lastUpdated": questionnaire.created_at.isoformat()}
    return data


def _status(value: str, name: str) -> Q:
    status = fs.Token.parse(value).code
    if status not in QuestionnaireStatus.values:
        raise fs.bad_request(
            f"Search parameter {name}: '{status}' is not one of {', '.join(QuestionnaireStatus.values)}."
        )
    return Q(status=status)


def _canonical(raw: str) -> tuple[str, str | None]:
    """`url` or `url|version` (a FHIR canonical with its version)."""
    url, bar, version = raw.partition("|")
    return url, (version if bar else None)


# ---------------------------------------------------------------------------
# Questionnaire
# ---------------------------------------------------------------------------
class QuestionnaireReadView(FHIRView):
    def get(self, request, questionnaire_id: int):
        questionnaire = Questionnaire.objects.filter(pk=questionnaire_id).first()
        if questionnaire is None:
            raise Http404
        return self.respond(questionnaire_resource(questionnaire))


def _questionnaire_code(value: str, name: str) -> Q:
    token = fs.Token.parse(value)
    coding = {"code": token.code, **({"system": token.system} if token.system else {})}
    return Q(resource__code__contains=[coding])


def _questionnaire_url(value: str, name: str) -> Q:
    url, version = _canonical(value)
    return Q(url=url, **({"version": version} if version is not None else {}))


fs.register(
    fs.SearchType(
        kind="Questionnaire",
        queryset=lambda user: Questionnaire.objects.all(),
        render=lambda view, rows: [
            (view.url(f"Questionnaire/{q.pk}"), questionnaire_resource(q)) for q in rows
        ],
        params=[
            _id_param(),
            fs.Param("code", "token", _questionnaire_code, "e.g. 96777-8", f"{HL7_SP}/Questionnaire-code"),
            fs.Param("url", "uri", _questionnaire_url, "url or url|version", f"{HL7_SP}/Questionnaire-url"),
            fs.Param("status", "token", _status, "", f"{HL7_SP}/Questionnaire-status"),
        ],
        default_order=("title", "-pk"),
        patient_path=None,
    )
)


class QuestionnaireSearchView(FHIRView):
    """Search by `code` ([system|]code, e.g. 96777-8), `url` (url or url|version), `status`;
    no parameter lists every stored version."""

    search_kind = "Questionnaire"


# ---------------------------------------------------------------------------
# QuestionnaireResponse (patient data)
# ---------------------------------------------------------------------------
class QuestionnaireResponseReadView(FHIRView):
    def get(self, request, response_id: int):
        response, access = access_item(
            request.user,
            QuestionnaireResponse.objects.select_related("patient", "questionnaire", "author"),
            response_id,
            patient_path="patient",
        )
        self.audit_read(response, access.patient.pk)
        return self.respond(screening.response_resource(response))


fs.register(
    fs.SearchType(
        kind="QuestionnaireResponse",
        queryset=lambda user: screening.screenings_visible(user).select_related("questionnaire", "author"),
        render=lambda view, rows: [
            (view.url(f"QuestionnaireResponse/{r.pk}"), screening.response_resource(r)) for r in rows
        ],
        params=[
            _id_param(),
            *_subject_params("patient_id"),
            fs.Param(
                "authored",
                "date",
                fs.date_q("authored_at__date"),
                "",
                f"{HL7_SP}/QuestionnaireResponse-authored",
            ),
        ],
        sorts={"authored": "authored_at"},
        default_order=("-started_at", "-pk"),
        requires_one_of=("patient", "subject", "_id"),
    )
)


class QuestionnaireResponseSearchView(FHIRView):
    """Search by patient (?patient=<id>): the screenings the caller may see; sensitive
    instruments are absent for disciplines the policy excludes."""

    search_kind = "QuestionnaireResponse"


# ---------------------------------------------------------------------------
# PlanDefinition and $apply
# ---------------------------------------------------------------------------
def _template(template_id) -> PlanTemplate:
    template = PlanTemplate.objects.filter(pk=template_id).first()
    if template is None:
        raise Http404
    return template


class PlanDefinitionReadView(FHIRView):
    def get(self, request, template_id: int):
        return self.respond(plan_templates.plandefinition_resource(_template(template_id)))


def _plandefinition_url(value: str, name: str) -> Q:
    url, version = _canonical(value)
    base = f"{plan_templates.BASE}/PlanDefinition/"
    slug = url.removeprefix(base) if url.startswith(base) else None
    if not slug:
        return Q(pk__in=[])
    if version is None:
        return Q(slug=slug)
    return Q(slug=slug, version=int(version)) if version.isdigit() and len(version) < 9 else Q(pk__in=[])


fs.register(
    fs.SearchType(
        kind="PlanDefinition",
        queryset=lambda user: PlanTemplate.objects.all(),
        render=lambda view, rows: [
            (view.url(f"PlanDefinition/{t.pk}"), plan_templates.plandefinition_resource(t)) for t in rows
        ],
        params=[
            _id_param(),
            fs.Param("url", "uri", _plandefinition_url, "url or url|version", f"{HL7_SP}/PlanDefinition-url"),
            fs.Param(
                "name",
                "string",
                lambda value, name, modifier="": Q(slug=value.replace("_", "-").lower()),
                "",
                f"{HL7_SP}/PlanDefinition-name",
            ),
            fs.Param(
                "title",
                "string",
                lambda value, name, modifier="": Q(title__icontains=value),
                "contains",
                f"{HL7_SP}/PlanDefinition-title",
            ),
            fs.Param("status", "token", _status, "", f"{HL7_SP}/PlanDefinition-status"),
        ],
        default_order=("title", "-version", "pk"),
        patient_path=None,
        operations=(("apply", "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"),),
    )
)


class PlanDefinitionSearchView(FHIRView):
    """Search by `url` (url or url|version), `name`, `title` (contains), `status`."""

    search_kind = "PlanDefinition"


def _subject(request) -> str:
    raw = request.query_params.get("subject")
    if not raw and isinstance(request.data, dict) and request.data.get("resourceType") == "Parameters":
        for parameter in request.data.get("parameter") or []:
            if isinstance(parameter, dict) and parameter.get("name") == "subject":
                raw = parameter.get("valueString") or (parameter.get("valueReference") or {}).get("reference")
    raw = (raw or "").strip()
    if not raw.startswith("Patient/") or not raw.removeprefix("Patient/").isdigit() or len(raw) > 40:
        raise fhir_bad_request("$apply needs subject=Patient/<id>.")
    return raw.removeprefix("Patient/")


class PlanDefinitionApplyView(FHIRView):
    """Merge the template into the patient's open care plan (as the plan editor does:
    case manager or plan lead; idempotent) and answer the CarePlan. The number of items
    added is in the X-Items-Added header (0 on a repeat)."""

    def post(self, request, template_id: int):
        patient_id = _subject(request)
        access = access_patient_by_id(request.user, patient_id, for_write=True)
        template = _template(template_id)
        plan = screening._active_plan(access.patient)
        if plan is None:
            raise fhir_bad_request("The patient has no open care plan to merge the template into.")
        with transaction.atomic():
            result = plan_templates.template_apply(
                access=access, plan=plan, template=template, by=request.user, request=request
            )
        access = patient_access(request.user, access.patient)
        plan = CarePlan.objects.select_related("author").get(pk=plan.pk)
        response: Response = self.respond(_plan_resources(access, [plan])[0])
        response["X-Items-Added"] = str(result.count)
        response["Content-Location"] = self.url(f"CarePlan/{plan.pk}")
        return response
