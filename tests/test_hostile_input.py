"""Hostile input answers a clear 4xx and writes nothing: deep JSON, NUL characters, bad
dates, oversized or many-membered zips, spreadsheet formulas in exports; and API creates
work under wsgiref (runserver), whose headers must be plain str."""

from __future__ import annotations

import io
import json
import zipfile
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from careplans.models import Activity, CarePlan, Goal
from careteam.models import AuditEvent
from referrals import hsds
from referrals import services as referral_services
from referrals.models import Organization, Service

pytestmark = pytest.mark.django_db

DEEP = "[" * 1000 + "]" * 1000


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# ---------------------------------------------------------------------------
# Deep nesting and NUL in JSON bodies
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path,content_type",
    [
        ("/api/v1/auth/token/", "application/json"),
        ("/api/v1/goals/", "application/json"),
        ("/fhir/CarePlan", "application/fhir+json"),
    ],
)
def test_deeply_nested_json_answers_400(world, path, content_type):
    client = APIClient() if "token" in path else api(world.nurse)
    before = Goal.objects.count(), CarePlan.objects.count()
    response = client.generic("POST", path, DEEP, content_type=content_type)
    assert response.status_code == 400, response.content
    assert "nested" in response.content.decode() or "parse" in response.content.decode().lower()
    assert (Goal.objects.count(), CarePlan.objects.count()) == before


def test_nul_inside_a_json_string_answers_400_and_writes_nothing(world):
    body = json.dumps({"care_plan": world.plan.pk, "description": "a\x00b"})
    response = api(world.nurse).generic("POST", "/api/v1/goals/", body, content_type="application/json")
    assert response.status_code == 400
    assert not Goal.objects.exists()


# ---------------------------------------------------------------------------
# NUL and bad values in query parameters
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/fhir/CarePlan?patient=%00",
        "/fhir/Goal?subject=Patient/1%00",
        "/fhir/Task?status=%00",
        "/fhir/Patient?identifier=%00x",
        "/api/v1/needs/?category=%00",
        "/api/v1/goals/?ordering=%00",
    ],
)
def test_nul_in_api_and_fhir_query_parameters_answers_400(world, url):
    response = api(world.nurse).get(url)
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


def test_nul_in_a_page_query_answers_400(world, client):
    client.force_login(world.nurse)
    response = client.get("/referrals/services/?category=%00&q=food")
    assert response.status_code == 400
    response = client.get(f"/referrals/new/{world.plan.pk}/?category=a%00b")
    assert response.status_code == 400


def test_a_malformed_since_of_the_audit_api_answers_400(world):
    auditor = world.admin
    response = api(auditor).get("/api/v1/audit-events/?since=2026-11-30T10:00:00 22:50")
    assert response.status_code == 400
    assert "since" in response.json()
    good = api(auditor).get("/api/v1/audit-events/?since=2026-11-30T10:00:00%2B02:00")
    assert good.status_code == 200


@pytest.mark.parametrize(
    "term", ["nurse1", "42", "x" * 300, "careteam.user", "'; drop", "12345678901234567890"]
)
def test_the_admin_audit_search_answers_for_any_term(world, client, term):
    client.force_login(world.admin)
    response = client.get("/admin/careteam/auditevent/", {"q": term})
    assert response.status_code == 200, response.content[:500]


# ---------------------------------------------------------------------------
# HSDS zip import: caps, streaming, nothing half-written
# ---------------------------------------------------------------------------
def _zip(members: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("catalog.zip", buffer.getvalue(), content_type="application/zip")


def test_a_zip_bomb_is_refused_before_it_expands(world, settings, tmp_path):
    settings.HSDS_IMPORT_MAX_BYTES = 1_000_000
    bomb = _zip({"services.csv": b"id,name\n" + b"0" * 5_000_000})
    assert bomb.size < 50_000
    with pytest.raises(hsds.HsdsImportError, match="expands to more than"):
        referral_services.catalog_import_upload(upload=bomb, by=world.admin)
    assert not Service.objects.exists()


def test_a_zip_with_too_many_members_is_refused(world, settings):
    settings.HSDS_IMPORT_MAX_FILES = 5
    upload = _zip({f"f{i}.csv": b"id\n" for i in range(6)})
    with pytest.raises(hsds.HsdsImportError, match="more than 5 files"):
        referral_services.catalog_import_upload(upload=upload, by=world.admin)


def test_the_catalog_import_page_shows_the_zip_refusal(world, client, settings):
    settings.HSDS_IMPORT_MAX_BYTES = 1_000_000
    client.force_login(world.admin)
    bomb = _zip({"services.csv": b"id,name\n" + b"0" * 3_000_000})
    response = client.post("/referrals/catalog/import/", {"file": bomb})
    assert response.status_code == 422
    assert b"expands to more than" in response.content
    assert not Organization.objects.exists()


# ---------------------------------------------------------------------------
# CSV export: spreadsheet formulas neutralised, and restored on re-import
# ---------------------------------------------------------------------------
def test_exported_csv_cells_that_start_a_formula_are_neutralised_and_round_trip():
    rows = [
        {"id": "1", "name": '=HYPERLINK("http://evil")', "description": "+1 555", "email": "@x", "url": "-2"}
    ]
    text = hsds.rows_to_csv("service", rows)
    assert "'=HYPERLINK" in text and "'+1 555" in text and "'@x" in text and "'-2" in text
    assert hsds.csv_cell_restore("'=SUM(A1)") == "=SUM(A1)"
    assert hsds.csv_cell_restore("'plain") == "'plain"
    assert hsds.csv_cell(-73.5) == -73.5  # numbers stay numbers


# ---------------------------------------------------------------------------
# Item 12: creates under wsgiref (runserver)
# ---------------------------------------------------------------------------
@pytest.fixture
def wsgi_keeps_test_connection():
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _wsgi_post(app, path: str, body: dict, token: str):
    data = json.dumps(body).encode()
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO=path,
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(len(data)),
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_HOST="testserver",
        SERVER_NAME="testserver",
        QUERY_STRING="",
    )
    environ["wsgi.input"] = io.BytesIO(data)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda _: None

    result = app(environ, start_response)
    body_out = b"".join(result)
    result.close()
    return captured["status"], dict(captured["headers"]), body_out


def test_api_creates_pass_wsgirefs_validator_with_a_plain_str_location(
    world, settings, wsgi_keeps_test_connection
):
    """wsgiref's validator asserts what runserver's server needs: every header a plain str."""
    settings.ALLOWED_HOSTS = ["testserver"]
    _, token = AuthToken.objects.create(user=world.nurse)
    app = validator(get_wsgi_application())
    status, headers, body = _wsgi_post(
        app,
        "/api/v1/activities/",
        {"care_plan": world.plan.pk, "title": "Check blood pressure", "owner_discipline": "nursing"},
        token,
    )
    assert status.startswith("201"), body
    activity = Activity.objects.get()
    assert headers["Location"].endswith(f"/api/v1/activities/{activity.pk}/")
    assert type(headers["Location"]) is str
    status, headers, body = _wsgi_post(
        app, "/api/v1/goals/", {"care_plan": world.plan.pk, "description": "Walk"}, token
    )
    assert status.startswith("201"), body
    assert AuditEvent.objects.filter(object_type="careplans.goal", action="create").exists()


# ---------------------------------------------------------------------------
# Found by tests/test_fuzz_endpoints.py
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/api/v1/activities/%00/", "/plans/goals/%00/", "/admin/knox/authtoken/%00/change/"]
)
def test_a_nul_in_the_path_answers_400(world, client, path):
    client.force_login(world.admin if path.startswith("/admin/") else world.case_manager)
    assert client.get(path).status_code == 400


def test_the_audit_trail_writes_a_nul_visibly_rather_than_failing(world):
    from careteam.audit import audit

    event = audit(user=world.nurse, action="view", object_type="careplans.goal", object_id="1\x002")
    assert event.object_id == "1\\x002"


def test_marking_a_notification_read_with_a_format_suffix_answers(world):
    from careteam.models import Notification

    n = Notification.objects.create(
        recipient=world.nurse,
        kind="handoff-received",
        object_type="careteam.handoff",
        object_id=1,
        title="x",
        due_moment=timezone.now(),
    )
    response = api(world.nurse).post(f"/api/v1/notifications/{n.pk}/read.json")
    assert response.status_code == 200, response.content
    assert response.json()["read_at"]


def test_a_page_of_the_access_log_past_any_number_answers(world, client):
    client.force_login(world.case_manager)
    response = client.get(f"/security/patients/{world.patient.pk}/access-log/", {"page": "9" * 30})
    assert response.status_code == 200


def test_the_admin_never_shows_a_second_factor_secret(world, client):
    client.force_login(world.admin)
    for view in ("config", "qrcode"):
        assert client.get(f"/admin/otp_totp/totpdevice/{10**6}/{view}/").status_code == 403
