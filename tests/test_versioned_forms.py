"""Every page form that edits a versioned object carries the version it was rendered
from: a post without it (or with a garbled one) is refused and changes nothing, a post
from an older version gets the conflict answer (409), and the current version saves.
One case per edit URL; the API's `If-Match` rule is tested in test_api.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db.models import F, Model
from django.urls import reverse
from django.utils import timezone

from careplans import screening
from careplans.models import Questionnaire
from careteam import handoffs as handoff_services
from careteam.concurrency import STALE_PAGE_MESSAGE
from careteam.models import AuditAction, AuditEvent, TeamMembership, User
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db


@dataclass
class Case:
    user: User
    url: str
    obj: Model
    data: dict  # valid POST data, without the version
    watched: tuple[str, ...]  # the values a refused post must leave as they are
    saved: Callable[[Model], bool]  # what the accepted post changed (on the re-read row)
    version_key: str = "expected_version"


def _refusals(case: Case) -> list[str]:
    return list(
        AuditEvent.objects.filter(user=case.user, action=AuditAction.EDIT_REFUSED).values_list(
            "detail", flat=True
        )
    )


def _state(case: Case) -> dict:
    return type(case.obj).objects.filter(pk=case.obj.pk).values("version", *case.watched).get()


# ---------------------------------------------------------------------------
# One builder per edit URL
# ---------------------------------------------------------------------------
def plan_edit(world) -> Case:
    plan = world.plan
    data = {
        "plan-title": "Renamed plan",
        "plan-description": "",
        "plan-period_start": plan.period_start.isoformat(),
        "plan-period_end": "",
        "plan-review_due": "",
        "plan-status": plan.status,
        "plan-status_reason": "",
    }
    url = reverse("careplans:plan_edit", kwargs={"plan_id": plan.pk})
    return Case(
        world.case_manager,
        url,
        plan,
        data,
        ("title", "status"),
        lambda p: p.title == "Renamed plan",
        "plan-expected_version",
    )


def goal_edit(world) -> Case:
    goal = f.GoalFactory(care_plan=world.plan, description="Walk to the shop")
    pre = f"goal-{goal.pk}-"
    data = {
        pre + "description": "Walk to the shop without a rest",
        pre + "expressed_by": goal.expressed_by,
        pre + "priority": goal.priority,
        pre + "owner_discipline": "",
        pre + "target_measure": "",
        pre + "target_value": "",
        pre + "target_due": "",
    }
    url = reverse("careplans:goal_edit", kwargs={"goal_id": goal.pk})
    return Case(
        world.case_manager,
        url,
        goal,
        data,
        ("description",),
        lambda g: g.description == "Walk to the shop without a rest",
        pre + "expected_version",
    )


def need_edit(world) -> Case:
    need = f.NeedFactory(care_plan=world.plan, description="No rides")
    pre = f"need-{need.pk}-"
    data = {
        pre + "domain": need.domain,
        pre + "category": need.category,
        pre + "description": "No rides to the clinic",
        pre + "sensitivity": "",
    }
    url = reverse("careplans:need_edit", kwargs={"need_id": need.pk})
    return Case(
        world.case_manager,
        url,
        need,
        data,
        ("description", "is_barrier"),
        lambda n: n.description == "No rides to the clinic",
        pre + "expected_version",
    )


def activity_edit(world) -> Case:
    act = f.ActivityFactory(care_plan=world.plan, title="Home visit")
    pre = f"activity-{act.pk}-"
    data = {
        pre + "title": "Home visit on Monday",
        pre + "description": "",
        pre + "owner_discipline": act.owner_discipline_id,
        pre + "assigned_to": "",
        pre + "due_date": "",
        pre + "sensitivity": "",
    }
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    return Case(
        world.case_manager,
        url,
        act,
        data,
        ("title", "owner_discipline_id"),
        lambda a: a.title == "Home visit on Monday",
        pre + "expected_version",
    )


def goal_status(world) -> Case:
    goal = f.GoalFactory(care_plan=world.plan)
    url = reverse("careplans:goal_status", kwargs={"goal_id": goal.pk})
    return Case(
        world.case_manager,
        url,
        goal,
        {"status": "on-hold"},
        ("lifecycle_status",),
        lambda g: g.lifecycle_status == "on-hold",
    )


def need_status(world) -> Case:
    need = f.NeedFactory(care_plan=world.plan)
    url = reverse("careplans:need_status", kwargs={"need_id": need.pk})
    return Case(
        world.case_manager, url, need, {"status": "resolved"}, ("status",), lambda n: n.status == "resolved"
    )


def activity_status(world) -> Case:
    act = f.ActivityFactory(care_plan=world.plan)
    url = reverse("careplans:activity_status", kwargs={"activity_id": act.pk})
    return Case(
        world.case_manager,
        url,
        act,
        {"status": "in-progress"},
        ("status",),
        lambda a: a.status == "in-progress",
    )


def patient_edit(world) -> Case:
    p = world.patient
    data = {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "preferred_name": "",
        "birth_date": p.birth_date.isoformat(),
        "gender": "female",
        "preferred_language": "es",
        "phone": "555-4242",
        "email": "",
        "address_line": "",
        "city": "",
        "state": "",
        "postal_code": "",
        "preferences": "To stay at home with my cat.",
    }
    url = reverse("patient_edit", kwargs={"patient_id": p.pk})
    return Case(
        world.nurse,
        url,
        p,
        data,
        ("phone", "preferred_language", "preferences"),
        lambda q: q.phone == "555-4242" and q.preferences == "To stay at home with my cat.",
    )


def caregiver_edit(world) -> Case:
    c = f.CaregiverFactory(patient=world.patient, name="Rosa Diaz", phone="555-1")
    pre = f"c{c.pk}-"
    data = {
        "caregiver": c.pk,
        pre + "name": "Rosa Diaz",
        pre + "relationship": c.relationship,
        pre + "phone": "555-2",
        pre + "language": "",
    }
    url = reverse("patient_caregivers", kwargs={"patient_id": world.patient.pk})
    return Case(
        world.nurse, url, c, data, ("phone", "name"), lambda x: x.phone == "555-2", pre + "expected_version"
    )


def caregiver_end(world) -> Case:
    c = f.CaregiverFactory(patient=world.patient, name="Rosa Diaz")
    url = reverse("patient_caregivers", kwargs={"patient_id": world.patient.pk})
    return Case(
        world.nurse, url, c, {"caregiver": c.pk, "end": "1"}, ("end_date",), lambda x: x.end_date is not None
    )


def consent_revoke(world) -> Case:
    consent = f.ConsentFactory(patient=world.patient, scope="referral")
    url = reverse("patient_consent_revoke", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk})
    return Case(
        world.nurse,
        url,
        consent,
        {f"r{consent.pk}-reason": "Patient asked by phone"},
        ("revoked_at", "revoke_reason"),
        lambda c: c.revoked_at is not None and c.revoke_reason == "Patient asked by phone",
        f"r{consent.pk}-expected_version",
    )


def membership_end(world) -> Case:
    m = TeamMembership.objects.get(patient=world.patient, user=world.pharmacist)
    url = reverse("team_role_end", kwargs={"patient_id": world.patient.pk, "membership_id": m.pk})
    return Case(
        world.case_manager,
        url,
        m,
        {"end_date": "", "reason": "Medication review finished"},
        ("status", "end_date"),
        lambda x: x.status == "inactive",
    )


def handoff_answer(world) -> Case:
    h = handoff_services.handoff_create(
        by=world.lead,
        access=patient_access(world.lead, world.patient),
        to_user=world.nurse,
        situation="Discharged home today",
        background="CHF admission",
        assessment="Stable",
        recommendation="Home visit within 48 hours",
        due_at=timezone.now() + dt.timedelta(hours=6),
    )
    url = reverse("team:handoff_detail", kwargs={"handoff_id": h.pk})
    return Case(
        world.nurse,
        url,
        h,
        {"action": "accept"},
        ("status", "accepted_by_id"),
        lambda x: x.status == "accepted" and x.accepted_by_id == world.nurse.pk,
    )


def referral_status(world) -> Case:
    r = f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        referred_by=world.case_manager,
        status="requested",
        sent_at=timezone.now(),
        consent=f.ConsentFactory(patient=world.patient, scope="referral"),
    )
    url = reverse("referrals:status", kwargs={"referral_id": r.pk})
    return Case(
        world.case_manager,
        url,
        r,
        {"status": "accepted", "outcome": "", "note": "They call her on Monday"},
        ("status", "status_reason"),
        lambda x: x.status == "accepted",
    )


def screening_save(world) -> Case:
    screening.ensure_shipped_questionnaires()
    hvs = Questionnaire.objects.filter(name="HUNGER_VITAL_SIGN").latest("id")
    access = patient_access(world.nurse, world.patient)
    response = screening.screening_start(access=access, by=world.nurse, questionnaire=hvs)
    url = reverse("careplans:screening_detail", kwargs={"screening_id": response.pk})
    return Case(
        world.nurse,
        url,
        response,
        {"q-hvs-1": "LA28397-0", "action": "save"},
        ("answers", "status"),
        lambda x: x.answers == {"hvs-1": ["LA28397-0"]},
    )


CASES = [
    plan_edit,
    goal_edit,
    need_edit,
    activity_edit,
    goal_status,
    need_status,
    activity_status,
    patient_edit,
    caregiver_edit,
    caregiver_end,
    consent_revoke,
    membership_end,
    handoff_answer,
    referral_status,
    screening_save,
]
ids = [build.__name__ for build in CASES]


# ---------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [None, "", "two", "0"], ids=["missing", "empty", "not-a-number", "zero"])
@pytest.mark.parametrize("build", CASES, ids=ids)
def test_a_post_without_a_usable_version_is_refused_and_changes_nothing(client, world, build, bad):
    case = build(world)
    before = _state(case)
    data = dict(case.data)
    if bad is not None:
        data[case.version_key] = bad
    client.force_login(case.user)
    response = client.post(case.url, data)
    assert response.status_code == 428, response.content.decode()[-2000:]
    assert STALE_PAGE_MESSAGE in response.content.decode()
    assert _state(case) == before
    refusals = _refusals(case)
    assert len(refusals) == 1 and refusals[0].startswith(
        f"HTTP 428 POST {response.resolver_match.view_name}: "
    )


@pytest.mark.parametrize("build", CASES, ids=ids)
def test_a_post_from_an_older_version_gets_the_conflict_and_changes_nothing(client, world, build):
    case = build(world)
    opened = _state(case)["version"]
    # a colleague saved in between
    type(case.obj).objects.filter(pk=case.obj.pk).update(version=F("version") + 1)
    before = _state(case)
    client.force_login(case.user)
    response = client.post(case.url, {**case.data, case.version_key: opened})
    assert response.status_code == 409, response.content.decode()[-2000:]
    assert _state(case) == before
    # the audit trail says which versions met, never what was in the form
    assert _refusals(case) == [
        f"HTTP 409 POST {response.resolver_match.view_name}: stale version: sent {opened}, "
        f"current {opened + 1}"
    ]


@pytest.mark.parametrize("build", CASES, ids=ids)
def test_a_post_with_the_current_version_saves(client, world, build):
    case = build(world)
    opened = _state(case)["version"]
    client.force_login(case.user)
    response = client.post(case.url, {**case.data, case.version_key: opened})
    assert response.status_code == 302, response.content.decode()[-2000:]
    saved = type(case.obj).objects.get(pk=case.obj.pk)
    assert saved.version == opened + 1 and case.saved(saved)


@pytest.mark.parametrize("build", CASES, ids=ids)
def test_the_page_carries_the_version_it_shows(client, world, build):
    """The form the user opens posts back the version of what it shows."""
    case = build(world)
    client.force_login(case.user)
    pages = {
        consent_revoke: reverse("patient_consents", kwargs={"patient_id": world.patient.pk}),
        referral_status: reverse("referrals:detail", kwargs={"referral_id": case.obj.pk}),
    }
    html = client.get(pages.get(build, case.url)).content.decode()
    version = _state(case)["version"]
    assert f'name="{case.version_key}" value="{version}"' in html
