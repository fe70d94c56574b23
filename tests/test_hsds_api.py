"""The catalog as an HSDS 3.0 read API (/hsds/): every answer validates against the
official schemas and the spec's Page envelope, paging math and bad parameters (400),
access by HSDS_API_ACCESS (signed-in by default, API tokens too, or public), and query
counts that do not grow with the page."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from django.core.management import call_command
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from referrals import hsds
from referrals.models import Location, Service, ServiceAtLocation, Taxonomy
from tests import factories as f

DATA = Path(__file__).resolve().parent / "data" / "hsds"
pytestmark = pytest.mark.django_db

SERVICE_ID = "ac148810-d857-441c-9679-408f346de14b"
ORG_ID = "d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610"
SAL_ID = "e94b9f6a-9dc2-4d2e-8c7e-0ba2f2b7f2b3"


def _page_schema() -> dict:
    """The Page component of the spec's openapi.json, with `contents` required too."""
    spec = json.loads((DATA / "hsds_openapi.json").read_text())
    page = dict(spec["components"]["schemas"]["Page"])
    page["properties"] = {**page["properties"], "contents": {"type": "array"}}
    page["required"] = [*page["properties"]]
    return page


PAGE = jsonschema.Draft202012Validator(_page_schema())
ITEM_SCHEMA = {
    "/hsds/services": "service",
    "/hsds/organizations": "organization",
    "/hsds/service_at_locations": "service_at_location",
    "/hsds/taxonomies": "taxonomy",
    "/hsds/taxonomy_terms": "taxonomy_term",
}


def assert_valid(name: str, obj: dict) -> None:
    errors = [e.message for e in hsds.file_validator(name).iter_errors(obj)]
    assert not errors, (name, errors[:3])


def assert_page(body: dict, item_schema: str) -> None:
    errors = [e.message for e in PAGE.iter_errors(body)]
    assert not errors, errors
    for obj in body["contents"]:
        assert_valid(item_schema, obj)


@pytest.fixture
def catalog(db):
    call_command("import_hsds", str(DATA / "organization_full.json"))
    call_command("import_hsds", str(DATA / "service_full.json"))
    call_command("import_hsds", str(DATA / "taxonomy.json"))
    food = f.TaxonomyTermFactory(code="food", name="Food")
    org = f.OrganizationFactory(name="Eastside Pantry", phone="555-0100")
    location = Location.objects.create(
        organization=org, name="Pantry", address_1="1 Elm St", city="Springfield"
    )
    groceries = f.ServiceFactory(
        organization=org,
        name="Groceries",
        languages=["en", "es"],
        is_free=True,
        service_area="Springfield",
        capacity_status="waitlist",
        capacity_note="about 3 weeks",
        capacity_updated_at=timezone.now(),
    )
    groceries.categories.set([food])
    ServiceAtLocation.objects.create(service=groceries, location=location)
    f.ServiceFactory(organization=org, name="Closed pantry", status="defunct", languages=[])
    return groceries


@pytest.fixture
def client(world) -> APIClient:
    c = APIClient()
    c.force_login(world.nurse)
    return c


def test_every_endpoint_answers_objects_that_validate_against_the_official_schemas(catalog, client):
    root = client.get("/hsds/")
    assert root.status_code == 200 and root.json()["version"] == "3.0"
    assert root.json()["openapi_url"].endswith("/api/schema/")
    for url, schema in ITEM_SCHEMA.items():
        for query in ("", "?full=true"):
            response = client.get(url + query)
            assert response.status_code == 200, (url, response.content[:300])
            body = response.json()
            assert_page(body, schema)
            assert body["total_items"] >= 1, url
    service = client.get(f"/hsds/services/{SERVICE_ID}").json()
    assert_valid("service", service)
    assert service["organization"]["id"] == ORG_ID and service["service_at_locations"]
    assert service["phones"] and service["schedules"]
    org = client.get(f"/hsds/organizations/{ORG_ID}").json()
    assert_valid("organization", org)
    assert any(s["id"] == SERVICE_ID for s in org["services"]) and org["locations"]
    full_services = client.get(f"/hsds/organizations/{ORG_ID}?full_service=true").json()
    assert_valid("organization", full_services)
    assert full_services["services"][0]["service_at_locations"]
    sal_id = ServiceAtLocation.objects.filter(service_id=SERVICE_ID).values_list("pk", flat=True).first()
    sal = client.get(f"/hsds/service_at_locations/{sal_id}").json()
    assert_valid("service_at_location", sal)
    assert sal["service"]["id"] == SERVICE_ID and sal["location"]["location_type"]


def test_lists_carry_only_one_to_one_fields_unless_full(catalog, client):
    brief = client.get("/hsds/services?search=groceries").json()["contents"][0]
    assert "phones" not in brief and "service_at_locations" not in brief
    assert brief["name"] == "Groceries"
    full = client.get("/hsds/services?search=groceries&full=true").json()["contents"][0]
    assert full["service_at_locations"] and full["languages"]


def test_capacity_is_served_in_the_hsds_3_1_service_capacity_shape(catalog, client):
    body = client.get(f"/hsds/services/{catalog.pk}").json()
    (capacity,) = body["service_capacity"]
    assert capacity["description"] == "waitlist: about 3 weeks"
    assert capacity["service_id"] == str(catalog.pk) and capacity["unit"]["name"] == "places"
    assert capacity["updated"]
    assert_valid("service", body)  # the 3.0 schema allows the 3.1 property


def test_paging_math_follows_the_page_envelope(catalog, client):
    for n in range(5):
        f.ServiceFactory(name=f"Extra {n}", organization=catalog.organization)
    total = Service.objects.count()
    first = client.get("/hsds/services?per_page=2").json()
    assert first["total_items"] == total and first["total_pages"] == -(-total // 2)
    assert first["page_number"] == 1 and first["size"] == 2
    assert first["first_page"] and not first["last_page"] and not first["empty"]
    last = client.get(f"/hsds/services?per_page=2&page={first['total_pages']}").json()
    assert (
        last["last_page"]
        and not last["first_page"]
        and last["size"] == total - 2 * (first["total_pages"] - 1)
    )
    past = client.get("/hsds/services?per_page=2&page=99").json()
    assert past["empty"] and past["size"] == 0 and past["contents"] == [] and past["last_page"]
    ids = set()
    for page in range(1, first["total_pages"] + 1):
        ids |= {s["id"] for s in client.get(f"/hsds/services?per_page=2&page={page}").json()["contents"]}
    assert len(ids) == total
    nothing = client.get("/hsds/services?search=zzzqqq").json()
    assert nothing["total_items"] == 0 and nothing["total_pages"] == 1 and nothing["empty"]
    assert nothing["first_page"] and nothing["last_page"]


@pytest.mark.parametrize(
    "query, name",
    [
        ("per_page=0", "per_page"),
        ("per_page=201", "per_page"),
        ("per_page=-1", "per_page"),
        ("per_page=ten", "per_page"),
        ("page=0", "page"),
        ("page=1.5", "page"),
        ("modified_after=yesterday", "modified_after"),
        ("modified_after=2026-13-45T99:99", "modified_after"),
        ("taxonomy_term_id=food", "taxonomy_term_id"),
        ("organization_id=1", "organization_id"),
        ("full=maybe", "full"),
        ("format=ndjson", "format"),
    ],
)
def test_a_bad_parameter_answers_400_naming_it(catalog, client, query, name):
    response = client.get(f"/hsds/services?{query}")
    assert response.status_code == 400, response.content
    assert name in response.json()


def test_filters_by_modified_after_taxonomy_term_and_organization(catalog, client):
    food = catalog.categories.get()
    by_term = client.get(f"/hsds/services?taxonomy_term_id={food.pk}").json()
    assert [s["id"] for s in by_term["contents"]] == [str(catalog.pk)]
    by_org = client.get(f"/hsds/services?organization_id={ORG_ID}").json()
    assert [s["id"] for s in by_org["contents"]] == [SERVICE_ID]
    sals = client.get(f"/hsds/service_at_locations?organization_id={catalog.organization_id}").json()
    assert [s["service_id"] for s in sals["contents"]] == [str(catalog.pk)]
    later = (timezone.now() + timezone.timedelta(minutes=5)).isoformat()
    assert client.get("/hsds/services", {"modified_after": later}).json()["total_items"] == 0
    Service.objects.filter(pk=catalog.pk).update(updated_at=timezone.now() + timezone.timedelta(hours=1))
    changed = client.get("/hsds/services", {"modified_after": later}).json()
    assert [s["id"] for s in changed["contents"]] == [str(catalog.pk)]
    assert (
        client.get("/hsds/services?modified_after=2020-01-01").json()["total_items"]
        == Service.objects.count()
    )


def test_taxonomies_and_terms_are_served_from_the_catalog(catalog, client):
    taxonomies = client.get("/hsds/taxonomies").json()
    assert [t["id"] for t in taxonomies["contents"]] == [str(Taxonomy.objects.get().pk)]
    terms = client.get("/hsds/taxonomy_terms?search=food").json()
    assert [t["code"] for t in terms["contents"]] == ["food"]


def test_an_unknown_or_malformed_id_answers_404(catalog, client):
    for url in (
        "/hsds/services/00000000-0000-4000-8000-000000000000",
        "/hsds/services/not-a-uuid",
        "/hsds/organizations/x",
        "/hsds/service_at_locations/00000000-0000-4000-8000-000000000000",
    ):
        response = client.get(url)
        assert response.status_code == 404 and response["Content-Type"].startswith("application/json")


def test_anonymous_callers_are_refused_by_default_and_tokens_are_accepted(catalog, world):
    anonymous = APIClient()
    for url in ("/hsds/", "/hsds/services", f"/hsds/services/{catalog.pk}"):
        assert anonymous.get(url).status_code == 401
    _, token = AuthToken.objects.create(user=world.outsider)
    with_token = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert with_token.get("/hsds/services").status_code == 200
    assert APIClient(HTTP_AUTHORIZATION="Token nope").get("/hsds/services").status_code == 401


def test_the_public_setting_opens_the_api_to_anyone(catalog, settings):
    settings.HSDS_API_ACCESS = "public"
    anonymous = APIClient()
    body = anonymous.get("/hsds/services?full=true").json()
    assert_page(body, "service")
    assert anonymous.get(f"/hsds/organizations/{ORG_ID}").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/hsds/services?full=true",
        "/hsds/services?search=pantry",
        "/hsds/organizations?full=true&full_service=true",
        "/hsds/service_at_locations?full=true",
        "/hsds/taxonomy_terms",
    ],
)
def test_queries_do_not_grow_with_the_page(catalog, client, django_assert_max_num_queries, url):
    def add_rows(n: int) -> None:
        for i in range(n):
            org = f.OrganizationFactory(name=f"Org {i}")
            location = Location.objects.create(organization=org, name=f"Pantry {i}", address_1="2 Elm St")
            service = f.ServiceFactory(organization=org, name=f"Pantry service {i}", capacity_status="full")
            service.categories.set([f.TaxonomyTermFactory(code=f"term-{i}")])
            ServiceAtLocation.objects.create(service=service, location=location)

    add_rows(2)
    client.get("/hsds/")  # the session's own queries, once
    with django_assert_max_num_queries(8) as small:
        assert client.get(url).status_code == 200
    add_rows(20)
    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        body = client.get(url).json()
    assert body["size"] >= 3
    assert len(large.captured_queries) == len(small.captured_queries)
