"""HSDS 3.0 import and export: the official examples import, a bad row is reported with
file, line and reason and nothing is written, re-import updates, export validates against
the compiled schemas, and export -> import gives the same catalog."""

import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from referrals import hsds
from referrals.models import Location, Organization, Service, ServiceAtLocation, Taxonomy, TaxonomyTerm
from tests import factories as f

DATA = Path(__file__).resolve().parent / "data" / "hsds"
pytestmark = pytest.mark.django_db

SERVICE_ID = "ac148810-d857-441c-9679-408f346de14b"
ORG_ID = "d9d5e0f5-d3ce-4f73-9a2f-4dd0ecc6c610"


def catalog_counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count() for m in (Organization, Service, Location, ServiceAtLocation, TaxonomyTerm)
    )


def differences(a, b, path="") -> list[str]:
    """Where two exports differ (readable failure messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]


def normalized(folder: Path) -> dict:
    return {name: json.loads((folder / name).read_text()) for name in hsds.export_json()}


# ---------------------------------------------------------------------------
# The official examples
# ---------------------------------------------------------------------------
def test_the_official_service_example_imports_with_its_sub_records():
    call_command("import_hsds", str(DATA / "service_full.json"))
    service = Service.objects.get(pk=SERVICE_ID)
    assert service.name == "Community Counselling"
    assert service.organization_id.hex == ORG_ID.replace("-", "")
    assert service.languages == ["ur"]
    assert service.minimum_age == 12 and service.maximum_age == 100
    assert "MyCity" in service.service_area
    assert service.details["phones"][0]["number"]
    assert service.details["cost_options"][0]["amount"] == 35
    assert service.details["required_documents"]
    assert service.categories.count() == 1
    sal = ServiceAtLocation.objects.get(service=service)
    assert sal.location.name == "MyCity Civic Center"
    assert sal.location.address_1 == "1-30 Main Street"


def test_the_official_organization_example_imports_with_its_locations_and_services():
    call_command("import_hsds", str(DATA / "organization_full.json"))
    org = Organization.objects.get(pk=ORG_ID)
    assert org.details["organization_identifiers"][0]["identifier"] == "1234567"
    assert org.locations.exists()
    assert org.services.filter(pk=SERVICE_ID).exists()


def test_the_official_csv_package_imports_and_reports_links_to_nothing_as_warnings(capsys):
    call_command("import_hsds", str(DATA / "csv"))
    service = Service.objects.get(pk=SERVICE_ID)
    assert service.details["schedules"][0]["byday"] == "TH,FR"
    assert service.details["phones"][0]["extension"] == 100
    assert service.details["phones"][0]["languages"][0]["code"] == "ur"
    assert service.program_id is not None and service.details["program"]["name"]
    assert ServiceAtLocation.objects.filter(service=service).count() == 1
    # the example's location points at an organization that is not in the package
    assert "matches no organization" in capsys.readouterr().err


def test_reimporting_the_same_files_updates_and_never_duplicates():
    call_command("import_hsds", str(DATA / "service_full.json"))
    call_command("import_hsds", str(DATA / "organization_full.json"))
    before = catalog_counts()
    call_command("import_hsds", str(DATA / "service_full.json"))
    call_command("import_hsds", str(DATA / "organization_full.json"))
    call_command("import_hsds", str(DATA / "csv"))
    call_command("import_hsds", str(DATA / "csv"))
    assert catalog_counts() == before


# ---------------------------------------------------------------------------
# Validation failures write nothing
# ---------------------------------------------------------------------------
def test_a_bad_csv_row_is_reported_with_file_line_and_reason_and_nothing_is_written(tmp_path, capsys):
    package = tmp_path / "csv"
    shutil.copytree(DATA / "csv", package)
    services = package / "services.csv"
    lines = services.read_text().splitlines()
    good = lines[1]
    second = good.replace(SERVICE_ID, "0b7f3f4e-93f1-4a5e-8a6c-5d0d5d6a1a11", 1).replace(
        ",active,", ",closed,", 1
    )
    services.write_text("\n".join([lines[0], good, second]) + "\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_hsds", str(package))
    err = capsys.readouterr().err
    assert "services.csv, line 3: status 'closed' is not one of" in err
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_a_csv_row_with_a_number_that_is_not_a_number_names_the_column(tmp_path):
    package = tmp_path / "csv"
    shutil.copytree(DATA / "csv", package)
    phones = package / "phones.csv"
    phones.write_text(phones.read_text().replace(",100,voice,", ",one hundred,voice,"))
    with pytest.raises(hsds.HsdsImportError) as exc:
        hsds.import_path(package)
    assert str(exc.value.problems[0]).startswith("phones.csv, line 2: extension must be a number")
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_a_service_pointing_at_an_unknown_organization_fails_the_whole_file(tmp_path):
    package = tmp_path / "csv"
    shutil.copytree(DATA / "csv", package)
    (package / "organizations.csv").write_text(
        (package / "organizations.csv").read_text().splitlines()[0] + "\n"
    )
    with pytest.raises(hsds.HsdsImportError, match="organization_id .* matches no organization"):
        hsds.import_path(package)
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_a_json_array_with_one_invalid_object_imports_none_of_them(tmp_path):
    good = json.loads((DATA / "service_full.json").read_text())
    bad = {"id": "5e1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b", "name": "No status", "organization_id": ORG_ID}
    path = tmp_path / "services.json"
    path.write_text(json.dumps([good, bad], indent=2))
    with pytest.raises(hsds.HsdsImportError) as exc:
        hsds.import_path(path)
    problem = exc.value.problems[0]
    assert problem.file == "services.json" and problem.line > 1
    assert "'status' is a required property" in problem.reason
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_a_failure_found_while_writing_rolls_back_what_was_already_written(tmp_path):
    good = json.loads((DATA / "service_full.json").read_text())
    orphan = {
        "id": "5e1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "name": "Orphan",
        "status": "active",
        "organization_id": "11111111-2222-4333-8444-555555555555",
    }
    path = tmp_path / "services.json"
    path.write_text(json.dumps([good, orphan]))
    with pytest.raises(hsds.HsdsImportError, match="is not in the file or the catalog"):
        hsds.import_path(path)
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_a_file_that_is_not_json_is_refused_with_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"id": "x",\n')
    with pytest.raises(hsds.HsdsImportError, match=r"broken.json, line \d+: not valid JSON"):
        hsds.import_path(path)


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
@pytest.fixture
def mixed_catalog(db):
    """The official example plus a catalog typed in by an administrator (no sub-records)."""
    call_command("import_hsds", str(DATA / "organization_full.json"))
    call_command("import_hsds", str(DATA / "service_full.json"))
    food = f.TaxonomyTermFactory(code="food", name="Food")
    org = f.OrganizationFactory(name="Eastside Pantry", phone="555-0100")
    location = Location.objects.create(
        organization=org, name="Pantry", address_1="1 Elm St", city="Springfield"
    )
    service = f.ServiceFactory(
        organization=org, name="Groceries", languages=["en", "es"], is_free=True, service_area="Springfield"
    )
    service.categories.set([food])
    ServiceAtLocation.objects.create(service=service, location=location)
    f.ServiceFactory(organization=org, name="Closed pantry", status="defunct", languages=[])
    return service


def test_every_exported_object_validates_against_the_compiled_schemas(mixed_catalog, tmp_path):
    call_command("export_hsds", str(tmp_path))
    for name, table in (
        ("organizations.json", "organization"),
        ("services.json", "service"),
        ("service_at_locations.json", "service_at_location"),
    ):
        objects = json.loads((tmp_path / name).read_text())
        assert objects, name
        for obj in objects:
            errors = list(hsds.validator(table).iter_errors(obj))
            assert not errors, (name, [e.message for e in errors[:3]])
    assert (tmp_path / "services.csv").exists() and (tmp_path / "phones.csv").exists()
    package = json.loads((tmp_path / "datapackage.json").read_text())
    assert {r["path"] for r in package["resources"]} >= {"services.csv", "organizations.csv", "phones.csv"}
    groceries = next(
        s for s in json.loads((tmp_path / "services.json").read_text()) if s["name"] == "Groceries"
    )
    assert {lang["code"] for lang in groceries["languages"]} == {"en", "es"}
    assert groceries["cost_options"][0]["amount"] == 0
    assert groceries["attributes"][0]["taxonomy_term"]["code"] == "food"


def test_export_then_import_of_the_csv_package_gives_the_same_catalog(mixed_catalog, tmp_path):
    first = tmp_path / "first"
    call_command("export_hsds", str(first))
    before = normalized(first)
    counts = catalog_counts()
    ServiceAtLocation.objects.all().delete()
    Service.objects.all().delete()
    Location.objects.all().delete()
    Organization.objects.all().delete()
    TaxonomyTerm.objects.all().delete()
    call_command("import_hsds", str(first))
    second = tmp_path / "second"
    call_command("export_hsds", str(second))
    assert catalog_counts() == counts
    assert not differences(normalized(second), before)
    groceries = Service.objects.get(name="Groceries")
    assert groceries.is_free and groceries.languages == ["en", "es"]
    assert list(groceries.categories.values_list("code", flat=True)) == ["food"]


def test_export_then_import_of_the_json_documents_gives_the_same_catalog(mixed_catalog, tmp_path):
    first = tmp_path / "first"
    call_command("export_hsds", str(first))
    before = normalized(first)
    ServiceAtLocation.objects.all().delete()
    Service.objects.all().delete()
    Location.objects.all().delete()
    Organization.objects.all().delete()
    call_command("import_hsds", str(first / "organizations.json"))
    call_command("import_hsds", str(first / "services.json"))
    call_command("import_hsds", str(first / "service_at_locations.json"))
    second = tmp_path / "second"
    call_command("export_hsds", str(second))
    assert not differences(normalized(second), before)


# ---------------------------------------------------------------------------
# Files that are not organizations, services or services at locations
# ---------------------------------------------------------------------------
def test_the_official_location_example_is_refused_with_a_clear_error(capsys):
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_hsds", str(DATA / "location.json"))
    assert (
        "location.json, line 1: a file of locations cannot be imported on its own" in capsys.readouterr().err
    )
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_a_location_is_refused_under_any_file_name(tmp_path):
    path = tmp_path / "upload.json"
    path.write_text((DATA / "location.json").read_text())
    with pytest.raises(hsds.HsdsImportError, match="cannot be imported on its own"):
        hsds.import_path(path)
    assert catalog_counts() == (0, 0, 0, 0, 0)


def test_the_official_taxonomy_example_imports_as_a_taxonomy_not_an_organization(tmp_path):
    result = hsds.import_path(DATA / "taxonomy.json")
    assert result.summary() == "taxonomy: 1 created, 0 updated"
    taxonomy = Taxonomy.objects.get()
    assert (taxonomy.name, taxonomy.version, taxonomy.uri) == ("name", "version", "http://example.com")
    assert not Organization.objects.exists()
    renamed = tmp_path / "upload.json"  # the objects' own keys tell, without the file name
    renamed.write_text((DATA / "taxonomy.json").read_text())
    assert hsds.import_path(renamed).summary() == "taxonomy: 0 created, 1 updated"


def test_the_official_taxonomy_term_example_imports_the_term_and_its_taxonomy():
    result = hsds.import_path(DATA / "taxonomy_term.json")
    assert not Organization.objects.exists()
    term = TaxonomyTerm.objects.get()
    assert (term.code, term.name, term.language) == ("code", "name", "eng")
    assert str(term.taxonomy_id_ref) == "5c4d79d7-cc55-470e-9f1f-8cad074e4892"
    assert Taxonomy.objects.filter(pk=term.taxonomy_id_ref).exists()
    assert "parent_id 0bc248fa-dc27-4650-9ba4-8f1a24ef16a2 matches no term" in str(result.warnings[0])
    hsds.import_path(DATA / "taxonomy_term_list.json")
    hsds.import_path(DATA / "taxonomy_list.json")
    assert not Organization.objects.exists()


def test_unknown_fields_are_warned_alike_in_json_and_csv(tmp_path):
    service = json.loads((DATA / "service_full.json").read_text())
    service["colour"] = "green"
    service["phones"][0]["fax_only"] = True
    path = tmp_path / "services.json"
    path.write_text(json.dumps(service))
    json_warnings = [str(w) for w in hsds.import_path(path).warnings]
    assert (
        "services.json, line 1: unknown fields ignored: service.colour, service.phones[0].fax_only"
        in json_warnings
    )

    package = tmp_path / "csv"
    shutil.copytree(DATA / "csv", package)
    services = package / "services.csv"
    lines = services.read_text().splitlines()
    services.write_text("\n".join([lines[0] + ",colour", *(line + ",green" for line in lines[1:])]) + "\n")
    csv_warnings = [str(w) for w in hsds.import_path(package).warnings]
    assert "services.csv, line 1: unknown fields ignored: service.colour" in csv_warnings


def test_capacity_goes_out_and_back_in_json_and_csv_alike(mixed_catalog, tmp_path):
    from django.utils import timezone

    Service.objects.filter(pk=mixed_catalog.pk).update(
        capacity_status="waitlist",
        capacity_note="about 3 weeks",
        capacity_maximum=40,
        capacity_updated_at=timezone.now(),
    )
    call_command("export_hsds", str(tmp_path / "out"))
    exported = json.loads((tmp_path / "out" / "services.json").read_text())
    groceries = next(s for s in exported if s["name"] == "Groceries")
    assert groceries["service_capacity"][0]["description"] == "waitlist: about 3 weeks"
    assert "about 3 weeks" in (tmp_path / "out" / "service_capacity.csv").read_text()
    for source in ("csv", "json"):
        Service.objects.filter(pk=mixed_catalog.pk).update(capacity_status="", capacity_note="")
        if source == "csv":
            hsds.import_path(tmp_path / "out")
        else:
            hsds.import_path(tmp_path / "out" / "services.json")
        fresh = Service.objects.get(pk=mixed_catalog.pk)
        assert (fresh.capacity_status, fresh.capacity_note, fresh.capacity_maximum) == (
            "waitlist",
            "about 3 weeks",
            40,
        ), source


def test_json_and_csv_exports_carry_the_same_fields(mixed_catalog, tmp_path):
    """Every field of the JSON documents is in the CSV package: the CSV read back and
    nested again gives the JSON export."""
    hsds.import_path(DATA / "taxonomy.json")
    call_command("export_hsds", str(tmp_path))
    documents = {name: json.loads((tmp_path / name).read_text()) for name in hsds.export_json()}
    items, problems, _ = hsds.read_csv_package(tmp_path)
    assert not problems
    from_csv = {(i.table, str(i.obj["id"])): i.obj for i in items}
    for name, table in (
        ("services.json", "service"),
        ("taxonomies.json", "taxonomy"),
        ("taxonomy_terms.json", "taxonomy_term"),
    ):
        for obj in documents[name]:
            flat = {k for k, v in obj.items() if not isinstance(v, dict | list)}
            csv_obj = from_csv[(table, str(obj["id"]))]
            assert flat <= set(csv_obj), (name, flat - set(csv_obj))
            nested = {k for k, v in obj.items() if isinstance(v, list) and k != "service_at_locations"}
            assert nested <= set(csv_obj), (name, nested - set(csv_obj))
