"""Access matrix of the REST API, generated from the router: every endpoint x every role,
for an object on the caller's team and one outside it; and query counts that do not grow
with the page (5 rows vs 50 rows)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from careteam import services as team_services
from careteam.api.urls import router
from careteam.audit import audit
from careteam.models import Conversation, EmergencyAccess, TeamMembership
from tests import factories as f

pytestmark = pytest.mark.django_db


# One maker per patient-data endpoint: an object of `patient`/`plan`.
def _membership(world, patient, plan):
    user = f.UserFactory(disciplines=["dietetics"])
    return team_services.membership_add(patient=patient, user=user, discipline=f.discipline("dietetics"))


def _huddle(world, patient, plan):
    """A closed huddle (a patient has one open at a time; the lists grow by closed ones)."""
    from careteam.models import Huddle

    now = timezone.now()
    starter = world.case_manager if patient == world.patient else world.other_team_nurse
    conversation = Conversation.objects.create(patient=patient, subject="Huddle", started_by=starter)
    return Huddle.objects.create(
        patient=patient, started_by=starter, since=now - dt.timedelta(days=7),
        started_at=now - dt.timedelta(hours=3), deadline=now - dt.timedelta(hours=1), conversation=conversation,
        status="closed", summary="Agreed", closed_at=now, closed_by=starter,
    )  # fmt: skip


MAKERS = {
    "api-patient": lambda world, patient, plan: patient,
    "api-care-plan": lambda world, patient, plan: f.CarePlanFactory(patient=patient, status="draft"),
    "api-goal": lambda world, patient, plan: f.GoalFactory(care_plan=plan),
    "api-need": lambda world, patient, plan: f.NeedFactory(care_plan=plan),
    "api-activity": lambda world, patient, plan: f.ActivityFactory(care_plan=plan),
    "api-note": lambda world, patient, plan: f.NoteFactory(care_plan=plan, author=world.case_manager),
    "api-team-membership": _membership,
    "api-handoff": lambda world, patient, plan: f.HandoffFactory(
        patient=patient, from_user=world.nurse, to_user=world.pharmacist
    ),
    "api-referral": lambda world, patient, plan: f.ReferralFactory(
        patient=patient, care_plan=plan, referred_by=world.case_manager
    ),
    "api-conversation": lambda world, patient, plan: Conversation.objects.create(
        patient=patient, subject="Rides to dialysis", started_by=world.case_manager
    ),
    "api-huddle": _huddle,
}
# Endpoints without patient data, each with its own rule (tested in test_api.py).
NOT_PATIENT_DATA = {"api-organization", "api-service", "api-notification", "api-audit-event"}
# notes are never edited: they change only by their accept and decline actions
DECIDED = {"api-note"}
# conversations are never edited: they grow by their messages (tests/test_api_conversations.py)
# huddles are never edited either: they grow by their answers (tests/test_huddles.py)
APPEND_ONLY = {"api-conversation", "api-huddle"}
# seen by the patient's current team only: emergency access finds nothing
TEAM_ONLY = {"api-huddle"}
WRITABLE = set(MAKERS) - DECIDED - APPEND_ONLY

ROLES = ["case_manager", "nurse", "emergency_access", "outsider", "other_team_nurse", "anonymous"]
# who sees the object on world.patient's team / the one on world.other_patient's team
SEES_INSIDE = {"case_manager", "nurse", "emergency_access"}
SEES_OUTSIDE = {"other_team_nurse"}


def _url(basename: str, pk=None) -> str:
    prefix = next(p for p, _, b in router.registry if b == basename)
    return f"/api/v1/{prefix}/" + (f"{pk}/" if pk is not None else "")


def _client(world, role: str) -> APIClient:
    client = APIClient()
    if role == "anonymous":
        return client
    if role == "emergency_access":
        user = f.UserFactory(username="glass1", disciplines=["nursing"])
        EmergencyAccess.objects.create(
            user=user,
            patient=world.patient,
            reason="Emergency: unconscious, on blood thinners",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    else:
        user = getattr(world, role)
    client.force_authenticate(user)
    return client


def test_every_router_endpoint_is_in_the_matrix():
    assert {basename for _, _, basename in router.registry} == set(MAKERS) | NOT_PATIENT_DATA


@pytest.mark.parametrize("basename", sorted(MAKERS))
def test_access_matrix_of_every_role_on_objects_inside_and_outside_the_team(world, basename):
    make = MAKERS[basename]
    inside = make(world, world.patient, world.plan)
    outside = make(world, world.other_patient, world.other_plan)
    for role in ROLES:
        _check_role(world, basename, role, inside, outside)


def _check_role(world, basename, role, inside, outside):
    client = _client(world, role)

    listing = client.get(_url(basename))
    if role == "anonymous":
        assert listing.status_code == 401
        assert client.get(_url(basename, inside.pk)).status_code == 401
        return
    ids = {row["id"] for row in listing.json()["results"]}
    sees_inside = role in SEES_INSIDE and not (basename in TEAM_ONLY and role == "emergency_access")
    assert (inside.pk in ids) == sees_inside, role
    assert (outside.pk in ids) == (role in SEES_OUTSIDE), role
    assert listing.json()["count"] == len(ids)

    for obj, sees in ((inside, sees_inside), (outside, role in SEES_OUTSIDE)):
        detail = client.get(_url(basename, obj.pk))
        assert detail.status_code == (200 if sees else 404), (role, detail.content)
        if sees and hasattr(obj, "version"):
            assert detail["ETag"] == f'W/"{obj.version}"'
        if basename in WRITABLE:
            changed = client.patch(
                _url(basename, obj.pk), {}, format="json", HTTP_IF_MATCH=f'W/"{getattr(obj, "version", 1)}"'
            )
            if not sees:
                assert changed.status_code == 404, role
            elif role == "emergency_access":
                assert changed.status_code == 403, changed.content
            else:
                assert changed.status_code in (200, 400, 403), changed.content
        if basename in DECIDED:
            # no reason: refused (400) once the caller is found allowed to decide at all
            declined = client.post(_url(basename, obj.pk) + "decline/", {}, format="json")
            if not sees:
                assert declined.status_code == 404, role
            elif role == "emergency_access":
                assert declined.status_code == 403, declined.content
            else:
                assert declined.status_code == 400, declined.content


# ---------------------------------------------------------------------------
# Query counts: constant in the number of rows on the page
# ---------------------------------------------------------------------------
def _grow(world, basename: str, n: int) -> None:
    for _ in range(n):
        if basename == "api-patient":
            patient = f.PatientFactory()
            team_services.membership_add(
                patient=patient,
                user=world.case_manager,
                discipline=f.discipline("case-management"),
                role="case-manager",
                start_date=timezone.localdate() - dt.timedelta(days=1),
            )
        elif basename == "api-activity":
            f.ActivityFactory(
                care_plan=world.plan, assigned_to=world.nurse, sensitivity=world.behavioural_health
            )
        else:
            MAKERS[basename](world, world.patient, world.plan)


@pytest.mark.parametrize("basename", sorted(MAKERS))
def test_list_query_count_does_not_grow_with_rows(world, basename, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _client(world, "case_manager")
    _grow(world, basename, 5)
    with CaptureQueriesContext(connection) as five:
        first = client.get(_url(basename))
    assert first.json()["count"] >= 5
    _grow(world, basename, 45)
    with django_assert_max_num_queries(len(five.captured_queries)):
        page = client.get(_url(basename))
    assert len(page.json()["results"]) == 50


def test_activity_links_are_prefetched_not_queried_per_row(world, django_assert_max_num_queries):
    goals = [f.GoalFactory(care_plan=world.plan) for _ in range(3)]
    for _ in range(5):
        f.ActivityFactory(care_plan=world.plan).goals.set(goals)
    client = _client(world, "case_manager")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as five:
        client.get("/api/v1/activities/")
    for _ in range(45):
        f.ActivityFactory(care_plan=world.plan).goals.set(goals)
    with django_assert_max_num_queries(len(five.captured_queries)):
        rows = client.get("/api/v1/activities/").json()["results"]
    assert all(len(row["goals"]) == 3 for row in rows)
    assert TeamMembership.objects.exists()


def _grow_other(world, basename: str, n: int) -> None:
    for i in range(n):
        if basename == "api-service":
            f.ServiceFactory().categories.set(
                [f.TaxonomyTermFactory(code="food"), f.TaxonomyTermFactory(code="rides")]
            )
        elif basename == "api-organization":
            f.OrganizationFactory()
        elif basename == "api-notification":
            world.nurse.notifications.create(
                kind="handoff-received",
                object_type="handoff",
                object_id=i,
                patient=world.patient,
                due_moment=timezone.now() + dt.timedelta(seconds=i),
                title="New handoff",
            )
        elif basename == "api-audit-event":
            audit(user=world.nurse, action="view", obj=world.patient, patient=world.patient, detail="read")


@pytest.mark.parametrize("basename", sorted(NOT_PATIENT_DATA))
def test_catalog_notification_and_audit_lists_query_count_does_not_grow(
    world, basename, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _client(world, "nurse" if basename == "api-notification" else "case_manager")
    _grow_other(world, basename, 5)
    with CaptureQueriesContext(connection) as five:
        client.get(_url(basename))
    _grow_other(world, basename, 50)
    with django_assert_max_num_queries(len(five.captured_queries)):
        page = client.get(_url(basename))
    assert len(page.json()["results"]) == 50


# ---------------------------------------------------------------------------
# Optimistic concurrency on every writable endpoint
# ---------------------------------------------------------------------------
CHANGES = {
    "api-care-plan": {"title": "Changed"},
    "api-goal": {"description": "Changed"},
    "api-need": {"description": "Changed"},
    "api-activity": {"title": "Changed"},
    "api-team-membership": {"status": "suspended"},
    "api-handoff": {"status": "cancelled", "reason": "Not needed"},
    "api-referral": {"status": "entered-in-error", "note": "Duplicate"},
}


@pytest.mark.parametrize("basename", sorted(CHANGES))
def test_stale_or_missing_if_match_changes_nothing_and_the_current_one_succeeds(world, basename):
    obj = MAKERS[basename](world, world.patient, world.plan)
    model = type(obj)
    model.objects.filter(pk=obj.pk).update(version=2)  # someone else saved meanwhile
    before = model.objects.filter(pk=obj.pk).values().get()
    client = _client(world, "case_manager")
    url = _url(basename, obj.pk)
    change = CHANGES[basename]
    stale = client.patch(url, change, format="json", HTTP_IF_MATCH='W/"1"')
    assert stale.status_code == 412, stale.content
    assert stale["ETag"] == 'W/"2"'
    assert client.patch(url, change, format="json").status_code == 428
    assert model.objects.filter(pk=obj.pk).values().get() == before
    current = client.patch(url, change, format="json", HTTP_IF_MATCH=stale["ETag"])
    assert current.status_code == 200, current.content
    assert current["ETag"] == 'W/"3"'


@pytest.mark.parametrize("basename", sorted(set(MAKERS) | NOT_PATIENT_DATA))
def test_partner_accounts_reach_only_their_organisations_referrals(world, basename):
    """Partner personas: the staff of the organisation a referral was sent to see it
    (minimum fields) and nothing else of the API; a partner of another organisation sees
    nothing at all."""
    service = f.ServiceFactory(name="Matrix pantry")
    partner = f.partner_user(service.organization, "api-partner")
    other_partner = f.partner_user(f.OrganizationFactory(name="Second organisation"), "api-partner-2")
    consent = f.ConsentFactory(patient=world.patient)
    sent = f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        service=service,
        referred_by=world.nurse,
        status="requested",
        sent_at=timezone.now(),
        consent=consent,
        tracked_by_referrer=False,
    )
    draft = f.ReferralFactory(
        patient=world.patient, care_plan=world.plan, service=service, referred_by=world.nurse
    )
    elsewhere = MAKERS["api-referral"](world, world.other_patient, world.other_plan)
    for user, sees in ((partner, True), (other_partner, False)):
        client = APIClient()
        client.force_login(user)
        listed = client.get(_url(basename))
        if basename != "api-referral":
            assert listed.status_code == 404, (user, basename)
            continue
        assert listed.status_code == 200
        ids = [row["id"] for row in listed.json()["results"]]
        assert ids == ([sent.pk] if sees else [])
        assert "mrn" not in listed.content.decode() and "care_plan" not in listed.content.decode()
        for obj in (draft, elsewhere):
            assert client.get(_url(basename, obj.pk)).status_code == 404
        assert client.get(_url(basename, sent.pk)).status_code == (200 if sees else 404)
