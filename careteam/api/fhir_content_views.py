"""FHIR R4 endpoints for screening and plan templates: Questionnaire and PlanDefinition
(read-only definitions, any signed-in user), QuestionnaireResponse (patient data: team
access rules, sensitivity policy, audited) and PlanDefinition/$apply (the same merge
service as the plan editor). Built on the shared FHIRView helpers of fhir_views."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
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

from .fhir_views import MAX_SEARCH, FHIRView, _plan_resources, fhir_bad_request

TOKEN_LIMIT = 300


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


def _param(request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > TOKEN_LIMIT or "\x00" in value:
        raise fhir_bad_request(f"Search parameter {name}: give a value of at most {TOKEN_LIMIT} characters.")
    return value


def _status_filter(request, queryset: QuerySet) -> QuerySet:
    status = _param(request, "status")
    if status is None:
        return queryset
    wanted = status.split(",")
    unknown = [s for s in wanted if s not in QuestionnaireStatus.values]
    if unknown:
        raise fhir_bad_request(
            f"Search parameter status: '{unknown[0]}' is not one of {', '.join(QuestionnaireStatus.values)}."
        )
    return queryset.filter(status__in=wanted)


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


class QuestionnaireSearchView(FHIRView):
    """Search by `code` ([system|]code, e.g. 96777-8), `url` (url or url|version), `status`;
    no parameter lists every stored version."""

    def get(self, request):
        found = Questionnaire.objects.all()
        code = _param(request, "code")
        if code is not None:
            system, bar, value = code.rpartition("|")
            coding = {"code": value, **({"system": system} if bar and system else {})}
            found = found.filter(resource__code__contains=[coding])
        url = _param(request, "url")
        if url is not None:
            url, version = _canonical(url)
            found = found.filter(url=url)
            if version is not None:
                found = found.filter(version=version)
        found = _status_filter(request, found)
        rows = list(found.order_by("title", "-id")[:MAX_SEARCH])
        return self.searchset(
            "Questionnaire",
            None,
            [(self.url(f"Questionnaire/{q.pk}"), questionnaire_resource(q)) for q in rows],
        )


# ---------------------------------------------------------------------------
# QuestionnaireResponse (patient data)
# ---------------------------------------------------------------------------
def responses_for(access) -> list[QuestionnaireResponse]:
    return list(screening.screenings_for(access).order_by("id")[:MAX_SEARCH])


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


class QuestionnaireResponseSearchView(FHIRView):
    """Search by patient (?patient=<id>): the screenings the caller may see; sensitive
    instruments are absent for disciplines the policy excludes."""

    def get(self, request):
        access = self.searched_patient()
        rows = [] if access is None else responses_for(access)
        return self.searchset(
            "QuestionnaireResponse",
            access,
            [(self.url(f"QuestionnaireResponse/{r.pk}"), screening.response_resource(r)) for r in rows],
        )


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


class PlanDefinitionSearchView(FHIRView):
    """Search by `url` (url or url|version), `name`, `title` (contains), `status`."""

    def get(self, request):
        found = PlanTemplate.objects.all()
        url = _param(request, "url")
        if url is not None:
            url, version = _canonical(url)
            base = f"{plan_templates.BASE}/PlanDefinition/"
            slug = url.removeprefix(base) if url.startswith(base) else None
            found = found.filter(slug=slug) if slug else found.none()
            if version is not None:
                found = found.filter(version=int(version)) if version.isdigit() else found.none()
        name = _param(request, "name")
        if name is not None:
            found = found.filter(slug=name.replace("_", "-").lower())
        title = _param(request, "title")
        if title is not None:
            found = found.filter(title__icontains=title)
        found = _status_filter(request, found)
        rows = list(found.order_by("title", "-version")[:MAX_SEARCH])
        return self.searchset(
            "PlanDefinition",
            None,
            [(self.url(f"PlanDefinition/{t.pk}"), plan_templates.plandefinition_resource(t)) for t in rows],
        )


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
