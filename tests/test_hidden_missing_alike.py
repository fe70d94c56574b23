"""A hidden id and a missing id answer alike, down to the work done: the same status,
a body of the same length (the identical-404 matrix checks the text) and the same
database queries (shape and number), so timing cannot tell a record on another team from
no record at all."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests import factories as f

pytestmark = pytest.mark.django_db
MISSING = 987654


def _shape(sql: str) -> str:
    """A query with its numbers, NULLs and quoted values blanked (the audit row of a
    hidden id names its patient; a missing id has none)."""
    return re.sub(r"\b(\d+|NULL)\b", "N", re.sub(r"'[^']*'", "'…'", sql))


@pytest.fixture
def hidden(world):
    return {
        "patient_id": world.other_patient.pk,
        "plan_id": world.other_plan.pk,
        "goal_id": f.GoalFactory(care_plan=world.other_plan).pk,
        "need_id": f.NeedFactory(care_plan=world.other_plan).pk,
        "activity_id": f.ActivityFactory(care_plan=world.other_plan).pk,
        "handoff_id": f.HandoffFactory(patient=world.other_patient, from_user=world.other_team_nurse).pk,
        "referral_id": f.ReferralFactory(
            patient=world.other_patient, care_plan=world.other_plan, referred_by=world.other_team_nurse
        ).pk,
    }


ROUTES = [
    ("patient_chart", "patient_id"),
    ("careplans:plan_editor", "plan_id"),
    ("careplans:plan_history", "plan_id"),
    ("careplans:goal_detail", "goal_id"),
    ("careplans:need_detail", "need_id"),
    ("careplans:activity_detail", "activity_id"),
    ("team:handoff_detail", "handoff_id"),
    ("referrals:detail", "referral_id"),
    ("api-patient-detail", "patient_id"),
    ("api-activity-detail", "activity_id"),
    ("fhir-patient", "patient_id"),
]


@pytest.mark.parametrize(("name", "kwarg"), ROUTES)
def test_hidden_and_missing_do_the_same_work(world, hidden, name, kwarg):
    client = Client()
    client.force_login(world.outsider)
    hidden_url = reverse(name, kwargs={kwarg: hidden[kwarg]})
    missing_url = reverse(name, kwargs={kwarg: MISSING})
    client.get(hidden_url)  # warm: sessions, caches
    client.get(missing_url)
    with CaptureQueriesContext(connection) as seen_hidden:
        a = client.get(hidden_url)
    with CaptureQueriesContext(connection) as seen_missing:
        b = client.get(missing_url)
    assert a.status_code == b.status_code == 404

    # the same page apart from the per-response tokens (CSRF, CSP nonce)
    def plain(response) -> str:
        return re.sub(r"[A-Za-z0-9+/_-]{20,}={0,2}", "TOKEN", response.content.decode())

    assert plain(a) == plain(b)
    assert [_shape(q["sql"]) for q in seen_hidden.captured_queries] == [
        _shape(q["sql"]) for q in seen_missing.captured_queries
    ]


def test_every_404_takes_at_least_the_floor(world, hidden, settings):
    import time

    from django.test import Client as DjangoClient

    settings.NOT_FOUND_FLOOR_MS = 60
    client = DjangoClient()  # a new handler reads the setting
    client.force_login(world.outsider)
    for pk in (hidden["activity_id"], MISSING):
        started = time.perf_counter()
        response = client.get(reverse("careplans:activity_detail", kwargs={"activity_id": pk}))
        assert response.status_code == 404
        assert time.perf_counter() - started >= 0.060
    started = time.perf_counter()
    assert client.get(reverse("worklist")).status_code == 200
    assert time.perf_counter() - started < 5  # other answers are not held back
