"""Operator endpoints: liveness and readiness (careteam/health.py, careteam/views_ops.py)."""

from __future__ import annotations

import socket
import time

import pytest
from django.db import connection
from django.test import Client

from careteam import health
from careteam.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_migration_check():
    health.reset_migrations_cache()
    yield
    health.reset_migrations_cache()


@pytest.fixture
def hung_broker():
    """A port that completes the TCP handshake and never answers (a hung Redis)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_healthz_answers_ok_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_runs_no_query_even_with_a_signed_in_session(django_assert_num_queries):
    client = Client()
    client.force_login(f.UserFactory())
    with django_assert_num_queries(0):
        assert client.get("/healthz").status_code == 200


def test_readyz_reports_every_check_and_answers_200_when_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok"},
    }


def test_readyz_answers_503_when_the_broker_port_is_closed(client, settings):
    settings.CELERY_BROKER_URL = closed_port_url()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "broker": "error"}


def test_readyz_gives_up_on_a_hung_broker_within_a_second(client, settings, hung_broker):
    settings.CELERY_BROKER_URL = hung_broker
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "error"


def test_readyz_reveals_no_address_or_reason(client, settings):
    settings.CELERY_BROKER_URL = "redis://:s3cret-pw@127.0.0.1:1/0"
    body = client.get("/readyz").content.decode()
    for secret in ("s3cret", "127.0.0.1", "redis://", "Connection", "refused"):
        assert secret not in body


def test_readyz_answers_503_while_a_migration_is_not_applied(client):
    """As after a deploy whose `migrate` has not run yet (rolled back with the test)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE id = (SELECT max(id) FROM django_migrations WHERE app = 'careteam')"
        )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "migrations": "pending", "broker": "ok"}


def test_readyz_migrations_check_sees_the_running_code_fully_migrated():
    assert health.check_migrations() == "ok"
    # remembered: the second probe does not load the migration graph again
    assert health._migrations_ok_until > time.monotonic()


def test_probes_answer_any_host_over_plain_http(client, settings):
    """A load balancer probes by address and over HTTP even when the site redirects to TLS."""
    settings.ALLOWED_HOSTS = ["careteam.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    for path in ("/healthz", "/readyz"):
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")
        assert response.status_code == 200, (path, response.status_code)


def test_probes_write_no_audit_event_and_refuse_writes(client):
    before = AuditEvent.objects.count()
    client.get("/healthz")
    client.get("/readyz")
    assert AuditEvent.objects.count() == before
    assert client.post("/healthz").status_code == 405
