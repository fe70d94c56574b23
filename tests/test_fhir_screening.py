"""FHIR R4 for screening and plan templates: Questionnaire and PlanDefinition read and
search (read-only), QuestionnaireResponse search by patient with the team's access rules
and the sensitivity policy (audited), responses in $everything, PlanDefinition/$apply
through the same merge service (idempotent), and the CapabilityStatement naming them.
Everything emitted validates against the R4B models of fhir.resources."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careplan import CarePlan as FhirCarePlan
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.plandefinition import PlanDefinition
from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse as FhirResponse
from fhir.resources.R4B.resource import Resource
from rest_framework.test import APIClient

from careplans import plan_templates, screening
from careplans.models import PlanTemplate, Questionnaire, TemplateItem
from careteam.models import AuditEvent
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db

MODELS: dict[str, type[Resource]] = {
    "Bundle": Bundle,
    "CapabilityStatement": CapabilityStatement,
    "CarePlan": FhirCarePlan,
    "OperationOutcome": OperationOutcome,
    "PlanDefinition": PlanDefinition,
    "Questionnaire": FhirQuestionnaire,
    "QuestionnaireResponse": FhirResponse,
}


def _validate(data: dict) -> None:
    if data["resourceType"] in MODELS:
        MODELS[data["resourceType"]].model_validate(data)
    for entry in data.get("entry", []) if data["resourceType"] == "Bundle" else []:
        _validate(entry["resource"])


def call(user, method: str, url: str, data=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    response = (
        getattr(client, method)(url, data, format="json")
        if data is not None
        else getattr(client, method)(url)
    )
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    body = response.json()
    _validate(body)
    return response.status_code, body


def get(user, url):
    return call(user, "get", url)


def _post(answers: dict) -> QueryDict:
    q = QueryDict(mutable=True)
    for link, values in answers.items():
        q.setlist(f"q-{link}", values if isinstance(values, list) else [values])
    return q


@pytest.fixture
def shipped(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    screening.ensure_shipped_questionnaires()
    plan_templates.ensure_shipped_templates()
    return {q.name: q for q in Questionnaire.objects.all()}


@pytest.fixture
def responses(world, shipped):
    """A completed Hunger Vital Sign (anyone on the team may see it) and a completed PHQ-9
    (behavioural health only), both for world.patient."""
    cm = patient_access(world.case_manager, world.patient)
    hvs = screening.screening_start(
        access=cm, by=world.case_manager, questionnaire=shipped["HUNGER_VITAL_SIGN"]
    )
    screening.screening_save(
        access=cm,
        by=world.case_manager,
        response=hvs,
        data=_post({"hvs-1": "LA28397-0", "hvs-2": "LA28398-8"}),
        complete=True,
    )
    bh = patient_access(world.behavioural, world.patient)
    phq9 = screening.screening_start(access=bh, by=world.behavioural, questionnaire=shipped["PHQ_9"])
    screening.screening_save(
        access=bh,
        by=world.behavioural,
        response=phq9,
        data=_post({f"phq-{i}": "LA6570-1" for i in range(1, 10)} | {"phq-difficulty": "LA6573-5"}),
        complete=True,
    )
    return {"hvs": hvs, "phq9": phq9}


# ---------------------------------------------------------------------------
# CapabilityStatement
# ---------------------------------------------------------------------------
def test_capability_statement_lists_questionnaire_response_and_plandefinition_apply(world):
    status, data = get(None, "/fhir/metadata")
    assert status == 200
    resources = {r["type"]: r for r in data["rest"][0]["resource"]}
    assert {"Questionnaire", "QuestionnaireResponse", "PlanDefinition"} <= set(resources)
    assert {p["name"] for p in resources["Questionnaire"]["searchParam"]} == {"_id", "code", "url", "status"}
    assert [o["name"] for o in resources["PlanDefinition"]["operation"]] == ["apply"]
    assert {i["code"] for i in resources["Questionnaire"]["interaction"]} == {"read", "search-type"}


# ---------------------------------------------------------------------------
# Questionnaire
# ---------------------------------------------------------------------------
def test_every_stored_questionnaire_reads_and_validates(world, shipped):
    for q in shipped.values():
        status, data = get(world.nurse, f"/fhir/Questionnaire/{q.pk}")
        assert status == 200 and data["id"] == str(q.pk) and data["url"] == q.url
        assert data["version"] == q.version and data["status"] == q.status


def test_questionnaire_search_by_code_url_and_status(world, shipped):
    ahc = shipped["AHC_HRSN_CORE"]
    status, data = get(world.nurse, "/fhir/Questionnaire?code=96777-8")
    assert status == 200 and [e["resource"]["id"] for e in data["entry"]] == [str(ahc.pk)]
    status, data = get(world.nurse, "/fhir/Questionnaire?code=http://loinc.org|96777-8")
    assert data["total"] == 1
    status, data = get(world.nurse, "/fhir/Questionnaire?code=http://snomed.info/sct|96777-8")
    assert data["total"] == 0
    status, data = get(world.nurse, f"/fhir/Questionnaire?url={ahc.url}")
    assert [e["resource"]["id"] for e in data["entry"]] == [str(ahc.pk)]
    status, data = get(world.nurse, f"/fhir/Questionnaire?url={ahc.url}|{ahc.version}")
    assert data["total"] == 1
    status, data = get(world.nurse, f"/fhir/Questionnaire?url={ahc.url}|999")
    assert data["total"] == 0
    status, data = get(world.nurse, "/fhir/Questionnaire?status=active")
    assert data["total"] == len(shipped)
    status, data = get(world.nurse, "/fhir/Questionnaire?status=retired")
    assert data["total"] == 0
    status, data = get(world.nurse, "/fhir/Questionnaire")
    assert data["total"] == len(shipped)


def test_questionnaire_is_read_only_and_bad_searches_answer_400(world, shipped):
    ahc = shipped["AHC_HRSN_CORE"]
    status, data = get(world.nurse, "/fhir/Questionnaire?status=bogus")
    assert status == 400 and data["resourceType"] == "OperationOutcome"
    assert "bogus" in data["issue"][0]["diagnostics"]
    status, data = get(world.nurse, "/fhir/Questionnaire?code=" + "9" * 400)
    assert status == 400
    for method in ("post", "put", "delete"):
        status, data = call(
            world.admin, method, f"/fhir/Questionnaire/{ahc.pk}", {"resourceType": "Questionnaire"}
        )
        assert status == 405 and data["resourceType"] == "OperationOutcome"
    status, _ = call(world.admin, "post", "/fhir/Questionnaire", {"resourceType": "Questionnaire"})
    assert status == 405
    assert Questionnaire.objects.count() == len(shipped)
    status, data = get(world.nurse, "/fhir/Questionnaire/999999")
    assert status == 404 and data["resourceType"] == "OperationOutcome"
    status, _ = get(None, f"/fhir/Questionnaire/{ahc.pk}")
    assert status == 401


# ---------------------------------------------------------------------------
# QuestionnaireResponse
# ---------------------------------------------------------------------------
def test_response_search_by_patient_follows_team_access_and_sensitivity(world, responses):
    pid = world.patient.pk
    hvs, phq9 = str(responses["hvs"].pk), str(responses["phq9"].pk)
    status, data = get(world.behavioural, f"/fhir/QuestionnaireResponse?patient={pid}")
    assert status == 200 and {e["resource"]["id"] for e in data["entry"]} == {hvs, phq9}
    phq = next(e["resource"] for e in data["entry"] if e["resource"]["id"] == phq9)
    assert phq["status"] == "completed" and phq["subject"]["reference"] == f"Patient/{pid}"
    # excluded disciplines: the sensitive instrument is absent from search and read
    for user in (world.nurse, world.pharmacist):
        status, data = get(user, f"/fhir/QuestionnaireResponse?patient=Patient/{pid}")
        assert status == 200 and [e["resource"]["id"] for e in data["entry"]] == [hvs]
        assert data["total"] == 1
        status, data = get(user, f"/fhir/QuestionnaireResponse/{phq9}")
        assert status == 404 and data["resourceType"] == "OperationOutcome"
    status, data = get(world.nurse, f"/fhir/QuestionnaireResponse/{hvs}")
    assert status == 200 and data["questionnaire"].endswith(f"|{responses['hvs'].questionnaire.version}")
    # outsiders and another team: nothing, and 404 on read
    for user in (world.outsider, world.other_team_nurse):
        status, data = get(user, f"/fhir/QuestionnaireResponse?patient={pid}")
        assert status == 200 and data["total"] == 0 and "entry" not in data
        status, _ = get(user, f"/fhir/QuestionnaireResponse/{hvs}")
        assert status == 404
    status, _ = get(world.nurse, "/fhir/QuestionnaireResponse")
    assert status == 400
    status, _ = get(world.nurse, "/fhir/QuestionnaireResponse?patient=abc")
    assert status == 200
    status, _ = get(None, f"/fhir/QuestionnaireResponse?patient={pid}")
    assert status == 401


def test_response_reads_and_searches_are_audited(world, responses):
    pid = world.patient.pk
    get(world.nurse, f"/fhir/QuestionnaireResponse?patient={pid}")
    search = AuditEvent.objects.filter(user=world.nurse, object_type="fhir.QuestionnaireResponse").latest(
        "id"
    )
    assert search.patient_id == pid and "1 results" in search.detail
    get(world.nurse, f"/fhir/QuestionnaireResponse/{responses['hvs'].pk}")
    assert AuditEvent.objects.filter(
        user=world.nurse, patient_id=pid, object_id=str(responses["hvs"].pk), detail="FHIR read"
    ).exists()


def test_everything_holds_the_visible_responses_only(world, responses):
    pid = world.patient.pk

    def response_ids(user):
        status, data = get(user, f"/fhir/Patient/{pid}/$everything")
        assert status == 200
        return {
            e["resource"]["id"]
            for e in data["entry"]
            if e["resource"]["resourceType"] == "QuestionnaireResponse"
        }

    assert response_ids(world.behavioural) == {str(responses["hvs"].pk), str(responses["phq9"].pk)}
    assert response_ids(world.nurse) == {str(responses["hvs"].pk)}


def test_response_search_query_count_does_not_grow(world, shipped, django_assert_max_num_queries):
    access = patient_access(world.case_manager, world.patient)
    url = f"/fhir/QuestionnaireResponse?patient={world.patient.pk}"
    screening.screening_start(access=access, by=world.case_manager, questionnaire=shipped["PRAPARE"])
    client = APIClient()
    client.force_authenticate(world.case_manager)
    with django_assert_max_num_queries(20) as few:
        assert client.get(url).status_code == 200
    for _ in range(8):
        screening.screening_start(access=access, by=world.case_manager, questionnaire=shipped["PRAPARE"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        data = client.get(url).json()
    assert data["total"] == 9


# ---------------------------------------------------------------------------
# PlanDefinition and $apply
# ---------------------------------------------------------------------------
def test_plandefinition_read_and_search(world, shipped):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    status, data = get(world.nurse, f"/fhir/PlanDefinition/{hf.pk}")
    assert (
        status == 200
        and data["title"] == hf.title
        and data["contained"][0]["resourceType"] == "ActivityDefinition"
    )
    status, data = get(world.nurse, "/fhir/PlanDefinition")
    assert data["total"] == PlanTemplate.objects.count() >= 4
    status, data = get(world.nurse, f"/fhir/PlanDefinition?url={data['entry'][0]['resource']['url']}")
    assert data["total"] >= 1
    status, data = get(
        world.nurse, f"/fhir/PlanDefinition?url={plan_templates.BASE}/PlanDefinition/{hf.slug}|{hf.version}"
    )
    assert [e["resource"]["id"] for e in data["entry"]] == [str(hf.pk)]
    status, data = get(world.nurse, "/fhir/PlanDefinition?name=heart_failure_discharge&status=active")
    assert [e["resource"]["id"] for e in data["entry"]] == [str(hf.pk)]
    status, data = get(world.nurse, "/fhir/PlanDefinition?title=heart")
    assert data["total"] == 1
    status, data = get(world.nurse, "/fhir/PlanDefinition?url=http://elsewhere.example/PlanDefinition/x")
    assert data["total"] == 0
    status, _ = get(world.nurse, "/fhir/PlanDefinition?status=nope")
    assert status == 400
    status, _ = get(world.nurse, "/fhir/PlanDefinition/999999")
    assert status == 404


def _apply(user, template, patient_id, body=None):
    url = f"/fhir/PlanDefinition/{template.pk}/$apply?subject=Patient/{patient_id}"
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    response = client.post(url, body, format="json")
    body = response.json()
    _validate(body)
    return response


def test_apply_merges_into_the_plan_once_and_answers_the_careplan(world, shipped):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    first = _apply(world.case_manager, hf, world.patient.pk)
    assert first.status_code == 200, first.json()
    data = first.json()
    assert data["resourceType"] == "CarePlan" and data["id"] == str(world.plan.pk)
    added = int(first["X-Items-Added"])
    assert added == TemplateItem.objects.filter(care_plan=world.plan).count() > 0
    counts = (world.plan.goals.count(), world.plan.needs.count(), world.plan.activities.count())
    again = _apply(world.case_manager, hf, world.patient.pk)  # a retry after a timeout
    assert again.status_code == 200 and again["X-Items-Added"] == "0"
    assert (world.plan.goals.count(), world.plan.needs.count(), world.plan.activities.count()) == counts
    assert TemplateItem.objects.filter(care_plan=world.plan).count() == added
    assert AuditEvent.objects.filter(user=world.case_manager, detail__contains="items added").count() == 2


def test_apply_takes_subject_from_a_parameters_body(world, shipped):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    client = APIClient()
    client.force_authenticate(world.lead)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "subject", "valueString": f"Patient/{world.patient.pk}"}],
    }
    response = client.post(f"/fhir/PlanDefinition/{hf.pk}/$apply", body, format="json")
    assert response.status_code == 200 and int(response["X-Items-Added"]) > 0


def test_apply_boundaries_write_nothing(world, shipped):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    pid = world.patient.pk
    # outsider, another team, hidden patient: 404; a member who may not apply: 403
    for user in (world.outsider, world.other_team_nurse):
        response = _apply(user, hf, pid)
        assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"
    response = _apply(world.nurse, hf, pid)
    assert response.status_code == 403 and "case manager" in response.json()["issue"][0]["diagnostics"]
    assert _apply(None, hf, pid).status_code == 401
    # bad subject, missing template
    client = APIClient()
    client.force_authenticate(world.case_manager)
    for query in ("", "?subject=Group/1", "?subject=Patient/abc", "?subject=" + "9" * 50):
        response = client.post(f"/fhir/PlanDefinition/{hf.pk}/$apply{query}")
        assert response.status_code == 400, query
        assert "subject=Patient" in response.json()["issue"][0]["diagnostics"]
    assert _apply(world.case_manager, PlanTemplate(pk=999999), pid).status_code == 404
    assert _apply(world.case_manager, hf, 999999).status_code == 404
    # a patient with no open plan
    lonely = f.PatientFactory(mrn="P-NOPLAN")
    from careteam import services as team_services

    team_services.membership_add(
        patient=lonely,
        user=world.case_manager,
        discipline=f.discipline("case-management"),
        role="case-manager",
    )
    response = _apply(world.case_manager, hf, lonely.pk)
    assert response.status_code == 400 and "no open care plan" in response.json()["issue"][0]["diagnostics"]
    assert not TemplateItem.objects.exists()
    assert world.plan.goals.count() == 0
