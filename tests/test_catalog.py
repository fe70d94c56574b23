"""Catalog search for clinicians (filters, full-text, pagination, constant queries, clear
errors) and catalog administration (only catalog admins import and export HSDS)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from referrals.models import Organization, Service
from tests import factories as f

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parent / "data" / "hsds"
SEARCH = "/referrals/services/"


@pytest.fixture
def catalog(db):
    food = f.TaxonomyTermFactory(code="food", name="Food")
    transport = f.TaxonomyTermFactory(code="transportation", name="Transportation")
    org = f.OrganizationFactory(name="Eastside Community Action")
    pantry = f.ServiceFactory(
        organization=org,
        name="Eastside Food Pantry",
        description="Weekly groceries and fresh vegetables for families",
        languages=["en", "es"],
        is_free=True,
        service_area="Springfield County",
    )
    pantry.categories.set([food])
    meals = f.ServiceFactory(
        organization=org,
        name="Meals on Wheels",
        description="Hot meals delivered to seniors at home",
        languages=["en"],
        is_free=False,
        fees_description="Sliding scale",
        service_area="Shelbyville",
    )
    meals.categories.set([food])
    rides = f.ServiceFactory(
        organization=org,
        name="Medical Rides",
        description="Door to door transportation to medical appointments",
        languages=["en", "vi"],
        is_free=True,
        service_area="Springfield County",
    )
    rides.categories.set([transport])
    closed = f.ServiceFactory(
        organization=org, name="Old Food Bank", description="Groceries", status="defunct", is_free=True
    )
    closed.categories.set([food])
    return {"pantry": pantry, "meals": meals, "rides": rides, "closed": closed}


def names(response) -> set[str]:
    return {s.name for s in response.context["page"].object_list}


@pytest.fixture
def clinician(client, world):
    client.force_login(world.nurse)
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"Eastside Food Pantry", "Meals on Wheels", "Medical Rides"}),
        ("category=food", {"Eastside Food Pantry", "Meals on Wheels"}),
        ("language=es", {"Eastside Food Pantry"}),
        ("language=VI", {"Medical Rides"}),
        ("free=on", {"Eastside Food Pantry", "Medical Rides"}),
        ("area=springfield", {"Eastside Food Pantry", "Medical Rides"}),
        ("q=vegetables", {"Eastside Food Pantry"}),
        ("q=hot meals", {"Meals on Wheels"}),
        ("q=appointments&free=on&category=transportation", {"Medical Rides"}),
        ("category=food&status=any", {"Eastside Food Pantry", "Meals on Wheels", "Old Food Bank"}),
        ("status=defunct", {"Old Food Bank"}),
    ],
)
def test_search_filters_the_catalog_and_shows_active_services_by_default(clinician, catalog, query, expected):
    response = clinician.get(f"{SEARCH}?{query}")
    assert response.status_code == 200
    assert names(response) == expected


def test_full_text_search_ranks_the_name_above_the_description(clinician, catalog):
    f.ServiceFactory(name="Groceries Delivered", description="Food to your door")
    response = clinician.get(f"{SEARCH}?q=groceries")
    assert [s.name for s in response.context["page"].object_list][0] == "Groceries Delivered"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("language=e1", b"is not a language we know: type its name (Spanish) or its code (es)."),
        ("category=unicorns", b"Select a valid choice. unicorns is not one of the available choices."),
        ("status=closed", b"Select a valid choice."),
        ("page=0", b"Ensure this value is greater than or equal to 1."),
        ("page=abc", b"Enter a whole number."),
        ("page=99", b"There is no page 99; the last is 1."),
        ("q=" + "x" * 201, b"Ensure this value has at most 200 characters"),
    ],
)
def test_invalid_filters_get_a_400_with_the_reason(clinician, catalog, query, message):
    response = clinician.get(f"{SEARCH}?{query}")
    assert response.status_code == 400
    assert message in response.content


def test_search_is_paginated_with_constant_queries(clinician, catalog):
    org = Organization.objects.get()
    clinician.get(SEARCH)  # the first request after signing in also saves the session
    with CaptureQueriesContext(connection) as few_queries:
        few = clinician.get(f"{SEARCH}?category=food&q=groceries")
    assert few.context["page"].paginator.count == 1
    created = Service.objects.bulk_create(
        [
            Service(organization=org, name=f"Pantry {i:03d}", description="Groceries", languages=["en"])
            for i in range(60)
        ]
    )
    term = catalog["pantry"].categories.get()
    through = Service.categories.through
    through.objects.bulk_create([through(service_id=s.pk, taxonomyterm_id=term.pk) for s in created])
    with CaptureQueriesContext(connection) as many_queries:
        many = clinician.get(f"{SEARCH}?category=food&q=groceries&page=2")
    assert many.status_code == 200
    assert many.context["page"].paginator.count == 61
    assert len(many.context["page"].object_list) == 20
    assert len(many_queries) == len(few_queries) <= 10


def test_the_catalog_needs_a_signed_in_user(client, catalog):
    response = client.get(SEARCH)
    assert response.status_code == 302 and "/accounts/login/" in response.url


def test_a_service_page_shows_the_hsds_details(clinician):
    from django.core.management import call_command

    call_command("import_hsds", str(DATA / "service_full.json"))
    response = clinician.get(
        reverse("referrals:service_detail", args=["ac148810-d857-441c-9679-408f346de14b"])
    )
    assert response.status_code == 200
    assert b"Reception Manager" not in response.content  # contacts stay in the catalog admin
    assert b"Any official identification document" in response.content
    assert b"MyCity Civic Center" in response.content
    missing = clinician.get(
        reverse("referrals:service_detail", args=["00000000-0000-4000-8000-000000000000"])
    )
    assert missing.status_code == 404


# ---------------------------------------------------------------------------
# Catalog administration
# ---------------------------------------------------------------------------
@pytest.fixture
def catalog_admin(client, world):
    user = f.UserFactory(username="catalog1", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="manage_catalog", content_type__app_label="careteam")
    )
    client.force_login(user)
    return client


def upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="application/json")


def test_clinicians_cannot_import_or_export_the_catalog(clinician):
    assert clinician.get(reverse("referrals:catalog_import")).status_code == 403
    response = clinician.post(
        reverse("referrals:catalog_import"), {"file": upload(DATA / "service_full.json")}
    )
    assert response.status_code == 403
    assert clinician.get(reverse("referrals:catalog_export")).status_code == 403
    assert not Service.objects.exists()


def test_a_catalog_admin_imports_the_json_and_the_zipped_csv_package_from_the_page(catalog_admin):
    url = reverse("referrals:catalog_import")
    assert catalog_admin.get(url).status_code == 200
    response = catalog_admin.post(url, {"file": upload(DATA / "service_full.json")})
    assert response.status_code in (200, 302)
    assert Service.objects.filter(name="Community Counselling").exists()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in (DATA / "csv").glob("*.csv"):
            archive.write(path, f"package/{path.name}")
    response = catalog_admin.post(url, {"file": SimpleUploadedFile("hsds.zip", buffer.getvalue())})
    assert response.status_code == 200 and b"Imported" in response.content  # with warnings listed
    assert Service.objects.count() == 1


def test_an_invalid_upload_lists_every_problem_and_imports_nothing(catalog_admin, tmp_path):
    bad = tmp_path / "services.json"
    bad.write_text(json.dumps([{"id": "0b7f3f4e-93f1-4a5e-8a6c-5d0d5d6a1a11", "name": "No status"}]))
    response = catalog_admin.post(reverse("referrals:catalog_import"), {"file": upload(bad)})
    assert response.status_code == 422
    assert b"Nothing was imported." in response.content
    assert b"services.json, line 1: service: &#x27;status&#x27; is a required property" in response.content
    wrong_type = catalog_admin.post(
        reverse("referrals:catalog_import"), {"file": SimpleUploadedFile("catalog.xml", b"<x/>")}
    )
    assert wrong_type.status_code == 422 and b"Upload a .json file or a .zip" in wrong_type.content
    assert not Service.objects.exists()


def test_a_catalog_admin_downloads_the_catalog_as_a_zip_of_hsds_files(catalog_admin, catalog):
    response = catalog_admin.get(reverse("referrals:catalog_export"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = set(archive.namelist())
        services = json.loads(archive.read("hsds/services.json"))
    assert {"hsds/organizations.json", "hsds/service_at_locations.json", "hsds/services.csv"} <= files
    assert {s["name"] for s in services} == {s.name for s in catalog.values()}


def test_the_admin_export_action_downloads_only_the_selected_services(catalog_admin, catalog):
    response = catalog_admin.post(
        reverse("admin:referrals_service_changelist"),
        {"action": "export_services", "_selected_action": [str(catalog["rides"].pk)]},
    )
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        services = json.loads(archive.read("hsds/services.json"))
    assert [s["name"] for s in services] == ["Medical Rides"]


def test_the_admin_marks_services_inactive_in_bulk_and_they_leave_the_default_search(
    catalog_admin, catalog, world
):
    changelist = reverse("admin:referrals_service_changelist")
    page = catalog_admin.get(changelist)
    assert page.status_code == 200 and b"Import HSDS" in page.content
    response = catalog_admin.post(
        changelist, {"action": "mark_inactive", "_selected_action": [str(catalog["pantry"].pk)]}
    )
    assert response.status_code == 302
    catalog["pantry"].refresh_from_db()
    assert catalog["pantry"].status == "inactive"
    catalog_admin.force_login(world.nurse)
    assert "Eastside Food Pantry" not in names(catalog_admin.get(SEARCH))


def test_a_clinician_with_staff_access_still_cannot_see_the_catalog_admin(client, world, catalog):
    world.nurse.is_staff = True
    world.nurse.save()
    client.force_login(world.nurse)
    assert client.get(reverse("admin:referrals_service_changelist")).status_code == 403
