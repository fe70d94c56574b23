"""Prometheus metrics at /metrics (careteam/metrics.py): who may scrape, what is there,
and what a scrape costs. Real PostgreSQL and Redis (the REDIS_URL database)."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from careteam import metrics, tasks
from careteam.health import redis_client
from careteam.models import Notification
from config.celery import app as celery_app
from tests import factories as f

pytestmark = pytest.mark.django_db

TOKEN = "scrape-" + "x" * 32
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_ops_keys(settings):
    settings.METRICS_TOKEN = TOKEN
    client = redis_client()
    client.delete(metrics.SWEEP_KEY, metrics.TASK_FAILURES_KEY)
    yield
    client.delete(metrics.SWEEP_KEY, metrics.TASK_FAILURES_KEY)
    client.close()


def scrape(client: Client | None = None, token: str = TOKEN):
    client = client or Client()
    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample line (`name{labels} value`), or None."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def notification(recipient, *, created_at=None, sent=False, n=[0]) -> Notification:  # noqa: B006 - a counter
    n[0] += 1
    now = timezone.now()
    return Notification.objects.create(
        recipient=recipient,
        kind="handoff-received",
        object_type="careteam.handoff",
        object_id=n[0],
        due_moment=now,
        title="New handoff",
        created_at=created_at or now,
        email_sent_at=now if sent else None,
    )


# ---------------------------------------------------------------------------
# Who may scrape
# ---------------------------------------------------------------------------
def test_scrape_with_the_token_lists_every_metric():
    user = f.UserFactory()
    notification(user)
    tasks.reminders_sweep()  # records the sweep's duration and the moment it swept up to
    Client().get("/accounts/login/")  # one timed request
    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for name in (
        "careteam_http_request_duration_seconds_bucket",
        "careteam_http_requests_total",
        "careteam_notification_emails_unsent",
        "careteam_notification_email_oldest_unsent_age_seconds",
        "careteam_broker_up",
        "careteam_celery_queue_length",
        "careteam_reminder_sweep_lag_seconds",
        "careteam_reminder_sweep_duration_seconds",
        "careteam_reminder_sweep_last_completed_timestamp_seconds",
        "careteam_celery_task_failures_total",
    ):
        assert f"\n{name}" in text, name
    assert sample(text, "careteam_broker_up") == 1
    assert sample(text, "careteam_notification_emails_unsent") == 1
    assert 'careteam_http_requests_total{status="2xx",view="login"}' in text


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Token {TOKEN}", "Bearer ", TOKEN])
def test_metrics_answer_404_without_the_token(header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    assert Client().get("/metrics", **extra).status_code == 404


def test_an_empty_token_setting_lets_no_bearer_in(settings):
    settings.METRICS_TOKEN = ""
    assert scrape(token="").status_code == 404


def test_staff_superusers_may_scrape_and_nobody_else_signed_in():
    for user, code in [
        (f.UserFactory(is_staff=True, is_superuser=True), 200),
        (f.UserFactory(is_staff=True), 404),
        (f.UserFactory(is_superuser=True), 404),
        (f.UserFactory(disciplines=["nursing"]), 404),
    ]:
        client = Client()
        client.force_login(user)
        assert client.get("/metrics").status_code == code, user


def test_a_write_to_metrics_is_404_for_strangers_and_405_for_scrapers():
    assert Client().post("/metrics").status_code == 404
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# ---------------------------------------------------------------------------
# What the collector reads
# ---------------------------------------------------------------------------
def test_the_collector_runs_one_query_however_many_notifications(django_assert_max_num_queries):
    users = [f.UserFactory() for _ in range(3)]
    for i in range(30):
        notification(users[i % 3])
    with django_assert_max_num_queries(1):
        families = list(metrics.StateCollector().collect())
    assert families
    with django_assert_max_num_queries(1):
        assert scrape().status_code == 200


def test_unsent_emails_count_only_wanted_emails_still_being_retried(settings):
    now = timezone.now()
    wanted = f.UserFactory()
    no_address = f.UserFactory(email="")
    gone = f.UserFactory(is_active=False)
    notification(wanted, created_at=now - dt.timedelta(minutes=10))
    notification(wanted)
    notification(wanted, sent=True)
    notification(no_address)
    notification(gone)
    notification(wanted, created_at=now - dt.timedelta(hours=settings.NOTIFICATION_EMAIL_RETRY_HOURS + 1))
    text = scrape().content.decode()
    assert sample(text, "careteam_notification_emails_unsent") == 2
    assert 600 <= sample(text, "careteam_notification_email_oldest_unsent_age_seconds") < 700


def test_emails_skipped_after_a_restore_are_not_counted_unsent():
    skipped = notification(f.UserFactory())
    Notification.objects.filter(pk=skipped.pk).update(email_skipped_at=timezone.now())
    text = scrape().content.decode()
    assert sample(text, "careteam_notification_emails_unsent") == 0


def test_queue_length_counts_waiting_messages_of_every_priority(settings):
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    keys = [
        queue,
        *(f"{queue}\x06\x16{p}" for p in (3, 6, 9)),
        f"_kombu.binding.{queue}",
        f"_kombu.binding_permanent.{queue}",
    ]
    try:
        celery_app.send_task("careteam.ping", args=["a"], queue=queue)
        celery_app.send_task("careteam.ping", args=["b"], queue=queue)
        celery_app.send_task("careteam.ping", args=["c"], queue=queue, priority=9)
        text = scrape().content.decode()
        assert sample(text, "careteam_celery_queue_length", f'queue="{queue}"') == 3
    finally:
        client = redis_client()
        client.delete(*keys)
        client.close()


def test_a_sweep_records_its_duration_and_the_lag_starts_from_it():
    text = scrape().content.decode()
    assert sample(text, "careteam_reminder_sweep_lag_seconds") is None  # no sweep yet: no guess
    tasks.reminders_sweep()
    text = scrape().content.decode()
    assert 0 <= sample(text, "careteam_reminder_sweep_lag_seconds") < 30
    assert 0 <= sample(text, "careteam_reminder_sweep_duration_seconds") < 30


def test_a_failed_task_is_counted_by_name():
    result = tasks.send_notification_email.apply(args=["not-a-notification-id"])
    assert result.failed()
    tasks.send_notification_email.apply(args=["still-not-an-id"])
    text = scrape().content.decode()
    assert sample(text, "careteam_celery_task_failures_total", 'task="careteam.send_notification_email"') == 2


def test_a_scrape_with_redis_down_answers_at_once_and_says_so(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    response = scrape()
    assert response.status_code == 200
    text = response.content.decode()
    assert sample(text, "careteam_broker_up") == 0
    assert "careteam_celery_queue_length{" not in text
    assert sample(text, "careteam_notification_emails_unsent") == 0


# ---------------------------------------------------------------------------
# Several gunicorn processes
# ---------------------------------------------------------------------------
OBSERVE = """
import django, sys
django.setup()
from careteam import metrics
metrics.observe_request(view="worklist", method="GET", status=200, seconds=0.2)
"""


def test_multiprocess_mode_adds_up_the_request_metrics_of_every_process(tmp_path):
    env = {
        **os.environ,
        "DEBUG": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    for _ in range(2):
        subprocess.run([sys.executable, "-c", OBSERVE], env=env, cwd=REPO, check=True, timeout=60)
    render = "import django; django.setup()\nfrom prometheus_client import CollectorRegistry, generate_latest, multiprocess\nr = CollectorRegistry(); multiprocess.MultiProcessCollector(r); print(generate_latest(r).decode())"
    out = subprocess.run(
        [sys.executable, "-c", render],
        env=env,
        cwd=REPO,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert sample(out, "careteam_http_request_duration_seconds_count", 'method="GET",view="worklist"') == 2
    assert sample(out, "careteam_http_requests_total", 'status="2xx",view="worklist"') == 2


def test_a_short_metrics_token_is_refused_at_start():
    env = {
        **os.environ,
        "DEBUG": "true",
        "METRICS_TOKEN": "short",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.METRICS_TOKEN"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "METRICS_TOKEN must be at least 16 characters" in out.stderr
