"""Third-party FHIR clients against a live server: fhirpy (Bearer) and SMART's fhirclient
(Token). Each declared search parameter returns exactly the matching resources, `_count`
pages and `next` links are followed to the end, strict handling refuses an unknown
parameter, and another team's patient is never found."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.careplan import CarePlan as SmartCarePlan
from fhirclient.models.goal import Goal as SmartGoal
from fhirclient.models.patient import Patient as SmartPatient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as FhirpyOutcome

from careteam.api.auth import token_issue
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def record(world):
    goals = [
        f.GoalFactory(care_plan=world.plan, lifecycle_status="active", target_due=dt.date(2026, 3, 1 + i))
        for i in range(5)
    ]
    proposed = f.GoalFactory(
        care_plan=world.plan, lifecycle_status="proposed", target_due=dt.date(2027, 1, 1)
    )
    f.CarePlanFactory(
        patient=world.patient, title="Old plan", status="completed", period_start=dt.date(2020, 1, 1)
    )
    f.GoalFactory(care_plan=world.other_plan)
    return {"active": goals, "proposed": proposed}


@pytest.fixture
def key(world):
    return token_issue(user=world.nurse, request=None)[1]


@pytest.fixture
def fhirpy_client(live_server, key):
    return SyncFHIRClient(f"{live_server.url}/fhir", authorization=f"Bearer {key}")


@pytest.fixture
def smart(live_server, key):
    client = smart_client.FHIRClient(
        settings={"app_id": "careteam-tests", "api_base": f"{live_server.url}/fhir"}
    )
    client.server.session.headers["Authorization"] = f"Token {key}"
    return client


def test_fhirpy_search_by_each_parameter_returns_exactly_the_matches(world, record, fhirpy_client):
    pid = world.patient.pk
    goals = fhirpy_client.resources("Goal").search(patient=pid)
    assert {g.id for g in goals.fetch_all()} == {str(g.pk) for g in [*record["active"], record["proposed"]]}
    active = goals.search(**{"lifecycle-status": "active"}).fetch_all()
    assert {g.id for g in active} == {str(g.pk) for g in record["active"]}
    later = goals.search(**{"target-date": "ge2026-12-01"}).fetch_all()
    assert [g.id for g in later] == [str(record["proposed"].pk)]
    plans = fhirpy_client.resources("CarePlan").search(patient=pid)
    assert {p.title for p in plans.search(status="active").fetch_all()} == {"Team plan"}
    assert {p.title for p in plans.search(status="active,completed").fetch_all()} == {"Team plan", "Old plan"}
    assert {p.title for p in plans.search(date="lt2021").fetch_all()} == {"Old plan"}
    assert plans.search(category="assess-plan").count() == 2
    team = fhirpy_client.resources("CareTeam").search(patient=pid, status="active").fetch_all()
    assert [t.id for t in team] == [str(pid)]
    patients = fhirpy_client.resources("Patient").search(identifier="P-TEAM-1").fetch_all()
    assert [p.id for p in patients] == [str(pid)]
    assert fhirpy_client.resources("Patient").search(identifier="P-OTHER-1").fetch_all() == []
    assert fhirpy_client.resources("Goal").search(patient=world.other_patient.pk).count() == 0


def test_fhirpy_honours_count_and_follows_next_links(world, record, fhirpy_client):
    search = fhirpy_client.resources("Goal").search(patient=world.patient.pk).limit(2)
    first_page = search.fetch()
    assert len(first_page) == 2
    everything = list(search)  # iterates over every page through Bundle.link[next]
    assert len(everything) == 6 and len({g.id for g in everything}) == 6
    assert search.count() == 6


def test_strict_handling_refuses_an_unknown_parameter(world, live_server, key, fhirpy_client):
    strict = SyncFHIRClient(
        f"{live_server.url}/fhir",
        authorization=f"Bearer {key}",
        extra_headers={"Prefer": "handling=strict"},
    )
    with pytest.raises(FhirpyOutcome):
        strict.resources("Goal").search(patient=world.patient.pk, flavour="sweet").fetch()
    lenient = fhirpy_client.resources("Goal").search(patient=world.patient.pk, flavour="sweet").fetch_raw()
    self_link = next(link.url for link in lenient.link if link.relation == "self")
    assert "flavour" not in self_link


def test_smart_client_reads_metadata_and_searches_with_a_token(world, record, smart):
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    patient = SmartPatient.read(str(world.patient.pk), smart.server)
    assert patient.name[0].family == "Team"
    search = SmartGoal.where(struct={"patient": str(world.patient.pk), "_count": "2"})
    found = list(search.perform_resources_iter(smart.server))
    assert len(found) == 6
    active = SmartGoal.where(struct={"patient": str(world.patient.pk), "lifecycle-status": "active"})
    assert len(list(active.perform_resources_iter(smart.server))) == 5
    plans = SmartCarePlan.where(struct={"patient": str(world.patient.pk), "status": "completed"})
    assert [p.title for p in plans.perform_resources_iter(smart.server)] == ["Old plan"]


def test_bearer_and_token_both_work_and_a_wrong_one_is_refused(world, live_server, key):
    url = f"{live_server.url}/fhir/Patient/{world.patient.pk}"
    for scheme in ("Bearer", "Token"):
        response = requests.get(url, headers={"Authorization": f"{scheme} {key}"}, timeout=10)
        assert response.status_code == 200, scheme
    response = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert response.status_code == 401 and response.json()["resourceType"] == "OperationOutcome"
