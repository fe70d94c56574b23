"""Keyset paging of the audit trail (the audit search, a patient's access log and the API's
audit events): every row once across the pages while new events arrive between page
loads, newer links back, and an altered or foreign cursor answers 400, never a 500."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from careteam import keyset
from careteam import services as team_services
from careteam.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor(world):
    user = f.UserFactory(username="auditor")
    user.user_permissions.add(Permission.objects.get(codename="view_audit_log"))
    return user


@pytest.fixture
def trail(world):
    """130 events about the patient, several sharing one moment (the id breaks the tie)."""
    base = timezone.now() - dt.timedelta(days=1)
    events = [
        AuditEvent(
            username=f"u{i}",
            action="view",
            patient_id=world.patient.pk,
            at=base + dt.timedelta(seconds=i // 4),
        )
        for i in range(130)
    ]
    return {e.pk for e in AuditEvent.objects.bulk_create(events)}


def _walk(client: Client, url: str, params: dict, *, between=None) -> list[int]:
    """The ids of every page followed by its Older link, `between()` run between loads."""
    seen: list[int] = []
    response = client.get(url, params)
    while True:
        assert response.status_code == 200
        seen += [e.pk for e in response.context["events"]]
        pager = response.context["pager"]
        if not pager.has_next:
            return seen
        if between:
            between()
        response = client.get(url + pager.next_url)


def _new_event(world):
    AuditEvent.objects.create(username="late", action="view", patient_id=world.patient.pk)


def test_the_audit_search_shows_every_event_once_while_new_ones_arrive(world, auditor, trail):
    client = Client()
    client.force_login(auditor)
    params = {"patient": str(world.patient.pk), "user": ""}
    seen = _walk(client, reverse("security:audit_log"), params, between=lambda: _new_event(world))
    assert len(seen) == len(set(seen)), "no event twice"
    assert trail <= set(seen), "no event skipped"
    assert seen == sorted(seen, key=lambda pk: (AuditEvent.objects.get(pk=pk).at, pk), reverse=True)


def test_the_access_log_pages_by_keyset_newest_first_and_back(world, trail):
    client = Client()
    client.force_login(world.case_manager)
    url = reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk})
    first = client.get(url)
    assert first.context["pager"].first and not first.context["pager"].has_previous
    second = client.get(url + first.context["pager"].next_url)
    body = second.content.decode()
    assert 'rel="prev"' in body and 'rel="next"' in body and "Newest" in body
    _new_event(world)
    back = client.get(url + second.context["pager"].previous_url)
    assert [e.pk for e in back.context["events"]] == [e.pk for e in first.context["events"]]
    assert back.context["pager"].has_previous, "the event that arrived since is one newer page away"
    seen = _walk(client, url, {}, between=lambda: _new_event(world))
    assert len(seen) == len(set(seen)) and trail <= set(seen)


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        "a" * 600,
        keyset.encode(keyset.Cursor((timezone.now(), 1)), salt="another-list"),
        keyset.encode(keyset.Cursor((1, 2, 3)), salt="audit-search"),
    ],
)
def test_an_altered_or_foreign_cursor_is_a_400_with_the_way_back(world, auditor, trail, cursor):
    client = Client()
    client.force_login(auditor)
    response = client.get(reverse("security:audit_log"), {"cursor": cursor})
    assert response.status_code == 400
    assert "start again from the newest events" in response.content.decode()
    client.force_login(world.case_manager)
    url = reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk})
    assert client.get(url, {"cursor": cursor}).status_code == 400
    api = APIClient()
    api.force_authenticate(auditor)
    answer = api.get("/api/v1/audit-events/", {"cursor": cursor})
    assert answer.status_code == 400 and "cursor" in answer.json()


def test_an_edited_cursor_signature_is_refused(world, auditor, trail):
    client = Client()
    client.force_login(auditor)
    url = reverse("security:audit_log")
    token = client.get(url).context["pager"].next_cursor
    payload, _, signature = token.rpartition(":")
    tampered = payload + ":" + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert client.get(url, {"cursor": tampered}).status_code == 400


def test_the_access_log_cursor_of_one_patient_does_not_open_another(world, trail):
    client = Client()
    client.force_login(world.case_manager)
    url = reverse("security:patient_access_log", kwargs={"patient_id": world.patient.pk})
    cursor = client.get(url).context["pager"].next_cursor
    other = f.PatientFactory()
    team_services.membership_add(
        patient=other,
        user=world.case_manager,
        discipline=f.discipline("case-management"),
        role="case-manager",
    )
    other_url = reverse("security:patient_access_log", kwargs={"patient_id": other.pk})
    assert client.get(other_url, {"cursor": cursor}).status_code == 400


def test_the_api_audit_events_page_by_cursor_links(world, auditor, trail):
    api = APIClient()
    api.force_authenticate(auditor)
    seen: list[int] = []
    answer = api.get("/api/v1/audit-events/", {"patient": world.patient.pk}).json()
    assert set(answer) == {"next", "previous", "results"} and answer["previous"] is None
    pages = 0
    while True:
        pages += 1
        seen += [e["id"] for e in answer["results"]]
        if answer["next"] is None:
            break
        _new_event(world)
        answer = api.get(answer["next"]).json()
        assert answer["previous"] is not None
    assert pages == 3
    assert len(seen) == len(set(seen)) and trail <= set(seen)


def test_the_api_audit_events_stay_empty_for_a_clinician(world):
    api = APIClient()
    api.force_authenticate(world.nurse)
    assert api.get("/api/v1/audit-events/").json() == {"next": None, "previous": None, "results": []}


def test_a_cursor_key_refuses_what_the_database_would_refuse():
    for key in ((2**63, 1), (True, 1)):
        token = keyset.signing.dumps([list(key), 0], salt="careteam.keyset.x")
        with pytest.raises(keyset.BadCursor):
            keyset.decode(token, salt="x", length=2)
    naive = keyset.signing.dumps([[{"d": "2026-01-01T00:00:00"}, 1], 0], salt="careteam.keyset.x")
    with pytest.raises(keyset.BadCursor):
        keyset.decode(naive, salt="x", length=2)


# ---------------------------------------------------------------------------
# The plan history
# ---------------------------------------------------------------------------
def _history_walk(client: Client, url: str, *, between=None) -> list[tuple]:
    seen: list[tuple] = []
    response = client.get(url)
    while True:
        assert response.status_code == 200
        seen += [(c.kind, c.item_id, c.at) for c in response.context["changes"]]
        pager = response.context["pager"]
        if not pager.has_next:
            return seen
        if between:
            between()
        response = client.get(url + pager.next_url)


def test_the_history_pages_every_version_once_while_the_plan_is_edited(world):
    act = f.ActivityFactory(care_plan=world.plan, title="Rides")
    for i in range(70):
        act.title = f"Rides, revision {i}"
        act.save()
    for i in range(20):
        f.GoalFactory(care_plan=world.plan, description=f"Goal {i}")
    client = Client()
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    everything = [(c.kind, c.item_id, c.at) for c in client.get(url).context["changes"]]
    assert len(everything) == 50

    def edit():
        act.title = f"Rides, late edit at {timezone.now()}"
        act.save()

    before = _history_walk(client, url)
    seen = _history_walk(client, url, between=edit)
    assert len(seen) == len(set(seen)), "no version twice"
    assert set(before) <= set(seen), "no version skipped"
    assert len(before) == 1 + 1 + 70 + 20  # the plan, the activity created, 70 edits, 20 goals
    assert [c[2] for c in seen] == sorted((c[2] for c in seen), reverse=True)


def test_each_history_page_shows_what_changed_from_the_version_before(world):
    act = f.ActivityFactory(care_plan=world.plan, title="Version 0")
    for i in range(1, 60):
        act.title = f"Version {i}"
        act.save()
    client = Client()
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    second = client.get(url + client.get(url).context["pager"].next_url)
    changes = second.context["changes"]
    assert changes[0].type == "changed" and ("Title", "Version 8", "Version 9") in changes[0].fields
    assert second.context["pager"].has_previous
    back = client.get(url + second.context["pager"].previous_url).context["changes"]
    assert back[0].fields == [("Title", "Version 58", "Version 59")] and len(back) == 50


@pytest.mark.parametrize("cursor", ["nonsense", keyset.encode(keyset.Cursor((1, 2)), salt="plan-history")])
def test_an_altered_history_cursor_is_a_400(world, cursor):
    client = Client()
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    response = client.get(url, {"cursor": cursor})
    assert response.status_code == 400
    assert "start again from the newest changes" in response.content.decode()
    wrong_types = keyset.encode(keyset.Cursor(("x", 1, 2)), salt="plan-history")
    assert client.get(url, {"cursor": wrong_types}).status_code == 400


def test_a_history_cursor_shows_an_outsider_nothing(world):
    client = Client()
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    cursor = keyset.encode(keyset.Cursor((timezone.now(), 4, 1)), salt="plan-history")
    client.force_login(world.outsider)
    assert client.get(url, {"cursor": cursor}).status_code == 404
