"""Request ids (careteam/requestid.py): answered in X-Request-ID, on every log line, on the
audit events a request writes and in the logs of the tasks it enqueues."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from careteam import publisher, requestid, tasks
from careteam.logfilters import JsonFormatter
from careteam.models import AuditEvent, AuditOutcome
from tests.processes import worker_database_url

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
NEW_ID = re.compile(r"[0-9a-f]{32}")


def test_every_response_carries_a_new_request_id(client):
    first = client.get(reverse("login"))["X-Request-ID"]
    second = client.get(reverse("login"))["X-Request-ID"]
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second)
    assert first != second
    assert type(first) is str


@pytest.mark.parametrize("incoming", ["abcd1234", "Req-2026-12-04-000042", "A" * 64, str(uuid.uuid4())])
def test_a_plain_incoming_request_id_is_echoed(client, incoming):
    assert client.get(reverse("login"), HTTP_X_REQUEST_ID=incoming)["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "short",
        "A" * 65,
        "has space 1234",
        "abc_12345678",
        "abc12345\r\nSet-Cookie: sessionid=x",
        "<script>alert(1)</script>",
        "ünïcødé-12345",
        "../../etc/passwd",
        "abc12345;drop",
    ],
)
def test_a_hostile_incoming_request_id_is_replaced(client, hostile):
    answered = client.get(reverse("login"), HTTP_X_REQUEST_ID=hostile)["X-Request-ID"]
    assert NEW_ID.fullmatch(answered)
    assert (
        "Set-Cookie"
        not in client.get(reverse("login"), HTTP_X_REQUEST_ID=hostile).serialize_headers().decode()
    )


def test_probes_answer_a_request_id_too(client):
    assert NEW_ID.fullmatch(client.get("/healthz")["X-Request-ID"])
    assert client.get("/readyz", HTTP_X_REQUEST_ID="probe-0001")["X-Request-ID"] == "probe-0001"


def test_the_id_is_gone_once_the_request_is_answered(client):
    client.get(reverse("login"), HTTP_X_REQUEST_ID="finished-0001")
    assert requestid.current() is None


# ---------------------------------------------------------------------------
# Audit
# ---------------------------------------------------------------------------
def test_an_audit_event_written_during_a_request_carries_its_id(world):
    client = Client()
    client.force_login(world.nurse)
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = client.get(
        reverse("patient_chart", args=[world.patient.pk]), HTTP_X_REQUEST_ID="chart-read-0001"
    )
    assert response.status_code == 200
    events = AuditEvent.objects.filter(pk__gt=last)
    assert events.exists()
    assert set(events.values_list("request_id", flat=True)) == {"chart-read-0001"}


def test_a_denial_audited_by_the_middleware_carries_the_generated_id(world):
    client = Client()
    client.force_login(world.outsider)
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = client.get(reverse("patient_chart", args=[world.patient.pk]))
    assert response.status_code == 404
    event = AuditEvent.objects.get(pk__gt=last, outcome=AuditOutcome.DENIED)
    assert event.request_id == response["X-Request-ID"]


def test_events_outside_a_request_have_no_id(world):
    from careteam.audit import audit

    event = audit(user=world.nurse, action="view", patient=world.patient)
    assert event.request_id == ""


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------
@contextmanager
def console_output(formatter: logging.Formatter | None = None):
    """What the configured console handler (settings.LOGGING) writes, into a buffer."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = io.StringIO()
    old_stream, old_formatter = handler.setStream(buffer), handler.formatter
    if formatter is not None:
        handler.setFormatter(formatter)
    try:
        yield buffer
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(old_formatter)


def test_a_log_line_written_in_the_request_carries_its_id(client):
    with console_output() as out:
        response = client.get("/no-such-page/", HTTP_X_REQUEST_ID="log-line-0001")
    assert response.status_code == 404
    line = next(line for line in out.getvalue().splitlines() if "Not Found: /no-such-page/" in line)
    assert "[log-line-0001]" in line


def test_json_log_lines_carry_time_level_logger_message_and_request_id(client):
    with console_output(JsonFormatter()) as out:
        client.get("/no-such-page/?q=Patient+Name", HTTP_X_REQUEST_ID="json-line-0001")
        logging.getLogger("careteam.test").info("outside any request")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    in_request = next(line for line in lines if line["message"].startswith("Not Found"))
    assert in_request["request_id"] == "json-line-0001"
    assert in_request["level"] == "WARNING"
    assert in_request["logger"] == "django.request"
    assert in_request["status_code"] == 404
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", in_request["time"])
    assert "Patient+Name" not in json.dumps(in_request)  # the request object is left out
    outside = next(line for line in lines if line["message"] == "outside any request")
    assert outside["request_id"] == "-"


def test_a_json_log_line_keeps_the_exception():
    with console_output(JsonFormatter()) as out:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("careteam.test").exception("failed")
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["message"] == "failed" and "RuntimeError: boom" in line["exception"]


def test_log_format_json_is_the_default_without_debug():
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT")}
    env.update(
        SECRET_KEY="x" * 50,
        SITE_URL="https://careteam.example.org",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    code = "from django.conf import settings; print(settings.LOG_FORMAT, settings.LOGGING['handlers']['console']['formatter'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["json", "json"]


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------
@pytest.mark.celery_worker
def test_a_task_enqueued_in_a_request_logs_the_requests_id_on_the_worker(transactional_db, tmp_path):
    """Published on the background publisher thread, run by a real worker writing JSON."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": worker_database_url(), "DEBUG": "true", "LOG_FORMAT": "json"}
    with log.open("w") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "1", "-P", "solo",
             "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "info"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        token = requestid.REQUEST_ID.set("task-origin-0001")
        try:
            publisher.submit(lambda: tasks.ping.apply_async(args=["x"], queue=queue), "ping")
            assert publisher.flush(timeout=30)
        finally:
            requestid.REQUEST_ID.reset(token)
        deadline = time.monotonic() + 60
        done = []
        while time.monotonic() < deadline and not done:
            time.sleep(0.3)
            lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
            done = [x for x in lines if x.get("task_name") == "careteam.ping" and "succeeded" in x["message"]]
        assert done, log.read_text()[-3000:]
        assert done[0]["request_id"] == "task-origin-0001"
        assert done[0]["task_id"]
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_a_task_run_eagerly_in_a_request_keeps_the_requests_id():
    seen = []

    def capture(**kwargs):
        seen.append(requestid.current())

    from celery.signals import task_success

    task_success.connect(capture, weak=False)
    token = requestid.REQUEST_ID.set("eager-run-0001")
    try:
        tasks.ping.apply(args=["x"])
        assert requestid.current() == "eager-run-0001"
    finally:
        requestid.REQUEST_ID.reset(token)
        task_success.disconnect(capture)
    assert seen == ["eager-run-0001"]


def test_a_published_task_carries_the_id_in_its_headers():
    headers = {}
    token = requestid.REQUEST_ID.set("header-0001")
    try:
        requestid.add_to_task_headers(headers=headers)
    finally:
        requestid.REQUEST_ID.reset(token)
    assert headers == {requestid.TASK_HEADER: "header-0001"}
    outside = {}
    requestid.add_to_task_headers(headers=outside)
    assert outside == {}


def test_gunicorn_writes_json_access_lines_with_the_request_id(tmp_path):
    """The compose web command's logger: gunicorn's own lines are JSON too."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "DEBUG": "true", "LOG_FORMAT": "json"}
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--logger-class", "config.gunicorn_logging.Logger", "--access-logfile", "-"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/healthz?q=Patient+Name",
                    headers={"X-Request-ID": "gunicorn-0001"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own server
                    assert response.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.3)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=20)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    access = [x for x in lines if x["logger"] == "gunicorn.access" and x.get("request_id") == "gunicorn-0001"]
    assert access, log.read_text()[-2000:]
    assert access[0]["path"] == "/healthz" and access[0]["status"] == 200 and access[0]["method"] == "GET"
    assert "Patient" not in json.dumps(access[0])  # no query string
    assert any(x["logger"] == "gunicorn.error" and x["message"].startswith("Booting worker") for x in lines)
