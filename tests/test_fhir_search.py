"""FHIR search does what it says or refuses: each declared parameter filters, comma
lists are OR, `_count` pages with working links, `_summary=count` counts only what the
caller may see, `_include` never brings a hidden item, strict handling refuses what is
not supported; the CapabilityStatement is the search table; unknown URLs, XML and bad
schemes answer as a FHIR or JSON client expects."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from rest_framework.test import APIClient

from careteam.api import fhir_search
from careteam.api.auth import token_issue
from tests import factories as f

pytestmark = pytest.mark.django_db
STRICT = {"HTTP_PREFER": "handling=strict"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def search(user, url, **headers) -> dict:
    response = client_for(user).get(url, **headers)
    assert response.status_code == 200, response.content
    data = response.json()
    Bundle.model_validate(data)
    return data


def ids(bundle, mode="match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


def link(bundle, relation) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


@pytest.fixture
def plans(world):
    today = timezone.localdate()
    world.plan.period_start = today - dt.timedelta(days=30)
    world.plan.save()
    held = f.CarePlanFactory(
        patient=world.patient, title="Held", status="on-hold", period_start=dt.date(2025, 3, 1)
    )
    done = f.CarePlanFactory(
        patient=world.patient,
        title="Done",
        status="completed",
        period_start=dt.date(2024, 1, 1),
        period_end=dt.date(2024, 6, 30),
    )
    return {"active": world.plan, "held": held, "done": done}


# ---------------------------------------------------------------------------
# Parameters filter
# ---------------------------------------------------------------------------
def test_careplan_status_filters_and_a_comma_list_means_or(world, plans):
    pid = world.patient.pk
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&status=active")
    assert ids(data) == {str(plans["active"].pk)} and data["total"] == 1
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&status=active,on-hold")
    assert ids(data) == {str(plans["active"].pk), str(plans["held"].pk)}
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&category=assess-plan&status=completed")
    assert ids(data) == {str(plans["done"].pk)}
    sys = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
    assert search(world.nurse, f"/fhir/CarePlan?patient={pid}&category={sys}|assess-plan")["total"] == 3
    assert search(world.nurse, f"/fhir/CarePlan?patient={pid}&category=other-thing")["total"] == 0
    status = client_for(world.nurse).get(f"/fhir/CarePlan?patient={pid}&status=half-done").status_code
    assert status == 400


def test_careplan_date_compares_the_period(world, plans):
    pid = world.patient.pk
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&date=2024")
    assert ids(data) == {str(plans["done"].pk)}
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&date=ge2025-01-01")
    assert ids(data) == {str(plans["active"].pk), str(plans["held"].pk)}
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&date=lt2025-01-01")
    assert ids(data) == {str(plans["done"].pk)}
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&date=ge2024-01-01&date=le2025-12-31")
    assert ids(data) == {str(plans["done"].pk), str(plans["held"].pk)}
    assert client_for(world.nurse).get(f"/fhir/CarePlan?patient={pid}&date=yesterday").status_code == 400


def test_careplan_sort_by_date_both_ways(world, plans):
    pid = world.patient.pk
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&_sort=date")
    order = [e["resource"]["title"] for e in data["entry"]]
    assert order == ["Done", "Held", "Team plan"]
    data = search(world.nurse, f"/fhir/CarePlan?patient={pid}&_sort=-date")
    assert [e["resource"]["title"] for e in data["entry"]] == ["Team plan", "Held", "Done"]


def test_goal_lifecycle_status_and_target_date(world):
    due = dt.date(2026, 6, 1)
    active = f.GoalFactory(care_plan=world.plan, lifecycle_status="active", target_due=due)
    proposed = f.GoalFactory(care_plan=world.plan, lifecycle_status="proposed")
    done = f.GoalFactory(care_plan=world.plan, lifecycle_status="completed", target_due=dt.date(2025, 1, 1))
    pid = world.patient.pk
    assert ids(search(world.nurse, f"/fhir/Goal?patient={pid}&lifecycle-status=active")) == {str(active.pk)}
    assert ids(search(world.nurse, f"/fhir/Goal?patient={pid}&lifecycle-status=proposed,completed")) == {
        str(proposed.pk),
        str(done.pk),
    }
    assert ids(search(world.nurse, f"/fhir/Goal?patient={pid}&target-date=2026-06")) == {str(active.pk)}
    assert ids(search(world.nurse, f"/fhir/Goal?patient={pid}&target-date=lt2026")) == {str(done.pk)}
    data = search(world.nurse, f"/fhir/Goal?patient={pid}&target-date=ge2025&_sort=-target-date")
    assert [e["resource"]["id"] for e in data["entry"]] == [str(active.pk), str(done.pk)]


def test_patient_search_by_identifier_name_birthdate_and_gender(world):
    world.patient.birth_date = dt.date(1950, 5, 17)
    world.patient.gender = "female"
    world.patient.save()
    pid = str(world.patient.pk)
    mrn = "https://careteam.example.org/fhir/sid/mrn"
    for query in (
        f"identifier={mrn}|P-TEAM-1",
        "identifier=P-TEAM-1",
        "name=ali",
        "name:exact=Alice",
        "name:contains=lic",
        "family=Team",
        "birthdate=1950",
        "birthdate=1950-05-17",
        "gender=female,other",
        f"_id={pid}",
    ):
        assert ids(search(world.nurse, f"/fhir/Patient?{query}")) == {pid}, query
    for query in ("identifier=other|P-TEAM-1", "name:exact=ali", "birthdate=ne1950-05-17", "gender=male"):
        assert search(world.nurse, f"/fhir/Patient?{query}")["total"] == 0, query
    # another team's patient is never found, by any parameter
    assert search(world.nurse, "/fhir/Patient?identifier=P-OTHER-1")["total"] == 0
    assert search(world.nurse, "/fhir/Patient?name=Bob")["total"] == 0


def test_service_request_and_task_status_and_code(world):
    service = f.ServiceFactory()
    draft = f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)
    sent = f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        referred_by=world.case_manager,
        status="cancelled",
        service=service,
    )
    handoff = f.HandoffFactory(patient=world.patient, from_user=world.nurse, to_user=world.pharmacist)
    pid = world.patient.pk
    assert ids(search(world.nurse, f"/fhir/ServiceRequest?patient={pid}&status=revoked")) == {str(sent.pk)}
    assert ids(search(world.nurse, f"/fhir/ServiceRequest?patient={pid}&status=draft")) == {str(draft.pk)}
    assert ids(search(world.nurse, f"/fhir/ServiceRequest?patient={pid}&code={service.pk}")) == {str(sent.pk)}
    data = search(world.nurse, f"/fhir/Task?patient={pid}&code=handoff")
    assert ids(data) == {f"handoff-{handoff.pk}"}
    data = search(
        world.nurse, f"/fhir/Task?patient={pid}&code=http://hl7.org/fhir/CodeSystem/task-code|fulfill"
    )
    assert ids(data) == {f"referral-{draft.pk}", f"referral-{sent.pk}"}
    data = search(world.nurse, f"/fhir/Task?patient={pid}&status=requested,cancelled")
    assert ids(data) == {f"handoff-{handoff.pk}", f"referral-{sent.pk}"}
    assert ids(search(world.nurse, f"/fhir/Task?_id=handoff-{handoff.pk}")) == {f"handoff-{handoff.pk}"}


def test_task_pages_over_handoffs_and_referrals_together(world):
    for _ in range(3):
        f.HandoffFactory(patient=world.patient, from_user=world.nurse, to_user=world.pharmacist)
        f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)
    url = f"/fhir/Task?patient={world.patient.pk}&_count=4"
    seen = []
    while url:
        data = search(world.nurse, url)
        assert data["total"] == 6
        seen += [e["resource"]["id"] for e in data["entry"]]
        url = link(data, "next")
    assert len(seen) == 6 and len(set(seen)) == 6


def test_careteam_status_and_role(world):
    pid = str(world.patient.pk)
    assert ids(search(world.nurse, f"/fhir/CareTeam?patient={pid}&status=active")) == {pid}
    assert search(world.nurse, f"/fhir/CareTeam?patient={pid}&status=inactive")["total"] == 0
    assert ids(search(world.nurse, f"/fhir/CareTeam?patient={pid}&role=pharmacy")) == {pid}
    assert search(world.nurse, f"/fhir/CareTeam?patient={pid}&role=dietetics")["total"] == 0


# ---------------------------------------------------------------------------
# Paging, counting, including: visible only
# ---------------------------------------------------------------------------
def test_count_pages_with_stable_next_links(world):
    goals = [f.GoalFactory(care_plan=world.plan) for _ in range(5)]
    url = f"/fhir/Goal?patient={world.patient.pk}&_count=2"
    pages = []
    while url:
        data = search(world.nurse, url)
        pages.append([e["resource"]["id"] for e in data["entry"]])
        assert dict(parse_qsl(urlsplit(link(data, "self")).query))["_count"] == "2"
        url = link(data, "next")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == [str(g.pk) for g in goals]
    # the same self link answers the same page
    first = search(world.nurse, f"/fhir/Goal?patient={world.patient.pk}&_count=2")
    again = search(world.nurse, link(first, "self"))
    assert ids(again) == ids(first)


def test_summary_count_counts_only_what_the_caller_may_see(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    f.GoalFactory(care_plan=world.plan)
    f.GoalFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    f.GoalFactory(care_plan=world.other_plan)
    both = f"{world.patient.pk},{world.other_patient.pk}"
    data = search(world.pharmacist, f"/fhir/Goal?patient={both}&_summary=count")
    assert data["total"] == 1 and "entry" not in data
    assert search(world.behavioural, f"/fhir/Goal?patient={both}&_summary=count")["total"] == 2
    assert search(world.outsider, f"/fhir/Goal?patient={both}&_summary=count")["total"] == 0
    assert search(world.other_team_nurse, f"/fhir/Goal?patient={both}&_summary=count")["total"] == 1


def test_include_brings_only_visible_goals_and_patients(world):
    world.behavioural_health.allowed_disciplines.set([f.discipline("behavioural-health")])
    open_goal = f.GoalFactory(care_plan=world.plan)
    hidden = f.GoalFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    url = f"/fhir/CarePlan?patient={world.patient.pk}&_include=CarePlan:goal&_include=CarePlan:patient"
    data = search(world.pharmacist, url)
    included = ids(data, "include")
    assert str(open_goal.pk) in included and str(hidden.pk) not in included
    assert str(world.patient.pk) in included
    assert f"Goal/{hidden.pk}" not in str(data)  # not even as a reference of the plan
    assert str(hidden.pk) in ids(search(world.behavioural, url), "include")


def test_search_with_includes_runs_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    def add(n):
        for _ in range(n):
            goal = f.GoalFactory(care_plan=world.plan)
            f.ActivityFactory(care_plan=world.plan).goals.set([goal])
            f.HandoffFactory(patient=world.patient, from_user=world.nurse, to_user=world.pharmacist)
            f.ReferralFactory(patient=world.patient, care_plan=world.plan, referred_by=world.case_manager)

    client = client_for(world.nurse)
    urls = [
        f"/fhir/CarePlan?patient={world.patient.pk}&_include=CarePlan:goal&_include=CarePlan:care-team",
        f"/fhir/Goal?patient={world.patient.pk}&_include=Goal:patient",
        f"/fhir/Task?patient={world.patient.pk}&_include=Task:patient",
        f"/fhir/ServiceRequest?patient={world.patient.pk}&_include=ServiceRequest:based-on",
    ]
    add(2)
    counts = []
    for url in urls:
        with CaptureQueriesContext(connection) as few:
            assert client.get(url).status_code == 200
        counts.append(len(few.captured_queries))
    add(15)
    for url, count in zip(urls, counts, strict=True):
        with django_assert_max_num_queries(count):
            assert client.get(url).status_code == 200


# ---------------------------------------------------------------------------
# Strict or lenient
# ---------------------------------------------------------------------------
def test_unsupported_parameter_is_ignored_and_absent_from_self_or_refused_under_strict(world):
    f.GoalFactory(care_plan=world.plan)
    url = f"/fhir/Goal?patient={world.patient.pk}&category=dietary&_elements=a.b&_summary=true"
    data = search(world.nurse, url)
    self_params = dict(parse_qsl(urlsplit(link(data, "self")).query))
    assert "category" not in self_params and "_elements" not in self_params and "_summary" not in self_params
    assert self_params["patient"] == str(world.patient.pk)
    for bad in (
        "category=dietary",
        "_elements=a.b",
        "_summary=true",
        "_sort=priority",
        "_include=Goal:nothing",
    ):
        response = client_for(world.nurse).get(f"/fhir/Goal?patient={world.patient.pk}&{bad}", **STRICT)
        assert response.status_code == 400, bad
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "invalid"


def test_capability_statement_is_the_search_table(world):
    response = APIClient().get("/fhir/metadata")
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == set(fhir_search.REGISTRY)
    assert "create" not in {i["code"] for i in resources["CarePlan"]["interaction"]}
    assert {o["name"] for o in resources["CarePlan"]["operation"]} == {"import"}
    assert resources["Patient"]["conditionalCreate"] is True
    assert "create" in {i["code"] for i in resources["Encounter"]["interaction"]}
    assert {"Encounter", "MedicationStatement"} <= set(resources)
    assert {"patient", "subject", "category", "status", "date"} <= {
        p["name"] for p in resources["CarePlan"]["searchParam"]
    }
    client = client_for(world.nurse)
    samples = {"reference": f"Patient/{world.patient.pk}", "date": "ge2020", "string": "a", "uri": "http://x"}
    token_samples = {
        "status": "active",
        "lifecycle-status": "active",
        "gender": "female",
        "class": "IMP",
        "type": "discharge",
    }
    for kind, resource in resources.items():
        for param in resource["searchParam"]:
            name = param["name"]
            value = samples.get(param["type"]) or token_samples.get(name, "x")
            if kind in ("Questionnaire", "PlanDefinition") and name == "status":
                value = "active"
            if kind == "CareTeam" and name == "status":
                value = "active"
            if kind == "ServiceRequest" and name == "status":
                value = "active"
            if kind == "Task" and name == "status":
                value = "requested"
            if kind == "Encounter" and name == "status":
                value = "finished"
            query = f"{name}={value}"
            if (
                fhir_search.REGISTRY[kind].requires_one_of
                and name not in fhir_search.REGISTRY[kind].requires_one_of
            ):
                query += f"&{fhir_search.REGISTRY[kind].requires_one_of[0]}={world.patient.pk}"
            response = client.get(f"/fhir/{kind}?{query}", **STRICT)
            assert response.status_code == 200, (kind, name, response.content)
        response = client.get(f"/fhir/{kind}?not-a-parameter=1", **STRICT)
        assert response.status_code == 400, kind
        for include in resource.get("searchInclude", []):
            first = fhir_search.REGISTRY[kind].requires_one_of or ("_id",)
            response = client.get(f"/fhir/{kind}?{first[0]}={world.patient.pk}&_include={include}", **STRICT)
            assert response.status_code == 200, (kind, include)


# ---------------------------------------------------------------------------
# Unknown URLs, formats, schemes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/fhir/Goal/abc", 404),
        ("get", "/fhir/Observation?patient=7", 404),
        ("post", "/fhir", 405),
        ("post", "/fhir/", 405),
        ("get", "/fhir/Goal/1/_history/1", 404),
        ("get", "/fhir/CarePlan/1/_history", 404),
        ("delete", "/fhir/Nothing/here", 404),
    ],
)
def test_unknown_fhir_urls_answer_operation_outcome(world, method, url, status):
    response = getattr(client_for(world.nurse), method)(url)
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_api_urls_answer_json_404(world):
    client = client_for(world.nurse)
    for url in ("/api/v1/nothing/", "/api/v1/patients/abc/def/", "/api/v2/"):
        response = client.get(url)
        assert response.status_code == 404 and response.json() == {"detail": "Not found."}, url
    response = client.get("/api/v1/patients")
    assert response.status_code == 301 and response["Location"].endswith("/api/v1/patients/")


def test_xml_format_answers_406(world):
    client = client_for(world.nurse)
    for fmt in ("xml", "application/fhir+xml"):
        response = client.get(f"/fhir/Patient/{world.patient.pk}?_format={fmt}")
        assert response.status_code == 406 and response.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{world.patient.pk}?_format=json").status_code == 200
    assert APIClient().get("/fhir/metadata?_format=xml").status_code == 406


def test_bearer_and_token_schemes_both_authenticate(world):
    _, key = token_issue(user=world.nurse, request=None)
    for scheme in ("Bearer", "Token", "bearer"):
        response = APIClient().get(f"/fhir/Patient/{world.patient.pk}", HTTP_AUTHORIZATION=f"{scheme} {key}")
        assert response.status_code == 200, scheme
    response = APIClient().get(f"/fhir/Patient/{world.patient.pk}", HTTP_AUTHORIZATION="Bearer wrong")
    assert response.status_code == 401 and response.json()["resourceType"] == "OperationOutcome"


def test_everything_type_selects_resource_types(world):
    f.GoalFactory(care_plan=world.plan)
    data = search(world.nurse, f"/fhir/Patient/{world.patient.pk}/$everything?_type=Goal,CarePlan")
    assert {e["resource"]["resourceType"] for e in data["entry"]} == {"Goal", "CarePlan"}
    response = client_for(world.nurse).get(
        f"/fhir/Patient/{world.patient.pk}/$everything?_type=Observation", **STRICT
    )
    assert response.status_code == 400


def test_elements_returns_the_asked_elements_and_what_r4_requires(world):
    f.GoalFactory(care_plan=world.plan, description="Walk daily")
    bundle = search(world.nurse, f"/fhir/Goal?patient={world.patient.pk}&_elements=target,note")
    goal = bundle["entry"][0]["resource"]
    assert set(goal) <= {
        "resourceType",
        "id",
        "meta",
        "target",
        "note",
        "lifecycleStatus",
        "description",
        "subject",
    }
    assert {"lifecycleStatus", "description", "subject"} <= set(goal)
    assert "SUBSETTED" in {t["code"] for t in goal["meta"]["tag"]}
    assert "_elements=target%2Cnote" in link(bundle, "self") or "_elements=target,note" in link(
        bundle, "self"
    )
    refused = client_for(world.nurse).get(
        f"/fhir/Goal?patient={world.patient.pk}&_elements=Bad.Path", **STRICT
    )
    assert refused.status_code == 400
    lenient = search(world.nurse, f"/fhir/Goal?patient={world.patient.pk}&_elements=Bad.Path")
    assert "_elements" not in link(lenient, "self")
