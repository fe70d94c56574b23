"""Property: whatever sequence of links, relabels, comments and referrals the team makes
through the services, a clinician of a discipline the sensitivity policy excludes never
finds the text of an item they may not see in their querysets, pages, API or FHIR.

Which items are hidden is worked out here from the rows themselves, independently of
careteam.permissions: a need or activity in a category; a comment whose own category
or target is hidden; a referral made from a hidden need; a goal whose linked needs are
all hidden and that no visible activity works towards. Every visible item must show
too, so the check cannot pass by showing nothing."""

from __future__ import annotations

import contextlib
import json

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careplans import selectors
from careplans import services as plan_services
from careplans.models import Activity, Goal, Need, Note
from careteam import services as team_services
from careteam.models import SensitivityCategory
from careteam.permissions import patient_access, restrict
from referrals import services as referral_services
from referrals.models import Referral
from referrals.selectors import referrals_for
from tests import factories as f

pytestmark = pytest.mark.django_db

NEEDS, ACTIVITIES, GOALS = 3, 2, 2
INITIALLY_SENSITIVE = {("need", 2), ("activity", 1)}

need_ix = st.integers(0, NEEDS - 1)
activity_ix = st.integers(0, ACTIVITIES - 1)
goal_ix = st.integers(0, GOALS - 1)
operation = st.one_of(
    st.tuples(st.just("link_activity_need"), activity_ix, need_ix),
    st.tuples(st.just("relabel_need"), need_ix, st.booleans()),
    st.tuples(st.just("comment"), st.sampled_from(["need", "activity", "goal"]), st.integers(0, 2)),
    st.tuples(st.just("refer_from_need"), need_ix, st.integers(0, 1)),
    st.tuples(st.just("link_goal_need"), goal_ix, need_ix),
    st.tuples(st.just("link_activity_goal"), activity_ix, goal_ix),
)


def token(kind: str, n: int) -> str:
    return f"PBT-{kind.upper()[:3]}-{n:03d}-Q"


def _world():
    """One patient and plan; a case manager who does everything, a social worker (not
    allowed behavioural health) who reads; needs, activities and goals to link."""
    cm = f.UserFactory(username="pbt-cm", disciplines=["case-management"])
    social = f.UserFactory(username="pbt-sw", disciplines=["social-work"])
    patient = f.PatientFactory()
    for user, code, role in ((cm, "case-management", "case-manager"), (social, "social-work", "member")):
        team_services.membership_add(patient=patient, user=user, discipline=f.discipline(code), role=role)
    plan = f.CarePlanFactory(patient=patient)
    bh = SensitivityCategory.objects.get(code="behavioural-health")
    items = {
        "need": [
            f.NeedFactory(
                care_plan=plan,
                description=token("need", i),
                sensitivity=bh if ("need", i) in INITIALLY_SENSITIVE else None,
            )
            for i in range(NEEDS)
        ],
        "activity": [
            f.ActivityFactory(
                care_plan=plan,
                title=token("activity", i),
                owner_discipline=f.discipline("social-work"),
                sensitivity=bh if ("activity", i) in INITIALLY_SENSITIVE else None,
            )
            for i in range(ACTIVITIES)
        ],
        "goal": [
            f.GoalFactory(care_plan=plan, description=token("goal", i), owner_discipline=None)
            for i in range(GOALS)
        ],
    }
    services = [f.ServiceFactory(name=f"PBT service {i}") for i in range(2)]
    return cm, social, patient, plan, bh, items, services


def _apply(op, *, cm, plan, bh, items, services, counter) -> None:
    access = patient_access(cm, plan.patient)
    kind = op[0]

    def fresh(obj):
        return type(obj).objects.get(pk=obj.pk)

    if kind == "link_activity_need":
        activity, need = fresh(items["activity"][op[1]]), items["need"][op[2]]
        changes = {"needs": [*activity.needs.all(), need]}
        plan_services.item_update(access=access, item=activity, by=cm, changes=changes, expected_version=None)
    elif kind == "relabel_need":
        need = fresh(items["need"][op[1]])
        changes = {"sensitivity": bh if op[2] else None}
        plan_services.item_update(access=access, item=need, by=cm, changes=changes, expected_version=None)
    elif kind == "comment":
        pool = items[op[1]]
        target = fresh(pool[op[2] % len(pool)])
        counter["comment"] += 1
        plan_services.note_add(
            access=access, plan=plan, by=cm, text=token("comment", counter["comment"]), target=target
        )
    elif kind == "refer_from_need":
        counter["referral"] += 1
        # refused when an open referral to that service for that need exists already
        with contextlib.suppress(ValidationError):
            referral_services.referral_create(
                access=access,
                by=cm,
                plan=plan,
                service=services[op[2]],
                reason=token("referral", counter["referral"]),
                need=fresh(items["need"][op[1]]),
                send=False,
            )
    elif kind == "link_goal_need":
        need, goal = fresh(items["need"][op[2]]), items["goal"][op[1]]
        changes = {"goals": [*need.goals.all(), goal]}
        plan_services.item_update(access=access, item=need, by=cm, changes=changes, expected_version=None)
    elif kind == "link_activity_goal":
        activity, goal = fresh(items["activity"][op[1]]), items["goal"][op[2]]
        changes = {"goals": [*activity.goals.all(), goal]}
        plan_services.item_update(access=access, item=activity, by=cm, changes=changes, expected_version=None)


def _expected(plan) -> tuple[set[str], set[str]]:
    """(texts the social worker may see, texts they may not), from the rows alone."""
    hidden_needs = set(
        Need.objects.filter(care_plan=plan, sensitivity__isnull=False).values_list("pk", flat=True)
    )
    hidden_activities = set(
        Activity.objects.filter(care_plan=plan, sensitivity__isnull=False).values_list("pk", flat=True)
    )
    hidden_goals = set()
    for goal in Goal.objects.filter(care_plan=plan).prefetch_related("needs", "activities"):
        needs = {n.pk for n in goal.needs.all()}
        activities = {a.pk for a in goal.activities.all()}
        if needs and needs <= hidden_needs and activities <= hidden_activities:
            hidden_goals.add(goal.pk)
    visible, hidden = set(), set()
    for need in Need.objects.filter(care_plan=plan):
        (hidden if need.pk in hidden_needs else visible).add(need.description)
    for activity in Activity.objects.filter(care_plan=plan):
        (hidden if activity.pk in hidden_activities else visible).add(activity.title)
    for goal in Goal.objects.filter(care_plan=plan):
        (hidden if goal.pk in hidden_goals else visible).add(goal.description)
    for note in Note.objects.filter(care_plan=plan):
        secret = (
            note.sensitivity_id is not None
            or note.need_id in hidden_needs
            or note.activity_id in hidden_activities
            or note.goal_id in hidden_goals
        )
        (hidden if secret else visible).add(note.text)
    for referral in Referral.objects.filter(care_plan=plan):
        (hidden if referral.need_id in hidden_needs else visible).add(referral.reason)
    return visible, hidden


def _what_the_reader_gets(social, plan) -> dict[str, str]:
    """Everything the social worker is given, by where it came from."""
    access = patient_access(social, plan.patient)
    editor = selectors.editor_for(access, plan)
    linked = [
        obj.description if hasattr(obj, "description") and not hasattr(obj, "title") else obj.title
        for item in editor.goals + editor.needs + editor.activities
        for obj in [*item.linked_goals, *item.linked_needs]
    ]
    querysets = [
        *[g.description for g in editor.goals],
        *[n.description for n in editor.needs],
        *[a.title for a in editor.activities],
        *[n.text for n in editor.notes],
        *linked,
        *restrict(Goal.objects.all(), social, patient_path="care_plan__patient").values_list(
            "description", flat=True
        ),
        *restrict(Need.objects.all(), social, patient_path="care_plan__patient").values_list(
            "description", flat=True
        ),
        *restrict(Activity.objects.all(), social, patient_path="care_plan__patient").values_list(
            "title", flat=True
        ),
        *referrals_for(social).values_list("reason", flat=True),
    ]
    client = Client()
    client.force_login(social)
    out = {"querysets": "\n".join(querysets)}
    for url in (
        f"/plans/{plan.pk}/",
        f"/patients/{plan.patient_id}/",
        "/referrals/",
        "/api/v1/goals/",
        "/api/v1/needs/",
        "/api/v1/activities/",
        "/api/v1/referrals/",
        f"/fhir/Patient/{plan.patient_id}/$everything",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        out[url] = json.dumps(response.json()) if url.startswith(("/api/", "/fhir/")) else body
    return out


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=8))
def test_excluded_discipline_never_gets_hidden_text(reference_data, operations):
    with transaction.atomic():
        cm, social, patient, plan, bh, items, services = _world()
        counter = {"comment": 0, "referral": 0}
        for op in operations:
            _apply(op, cm=cm, plan=plan, bh=bh, items=items, services=services, counter=counter)
        visible, hidden = _expected(plan)
        got = _what_the_reader_gets(social, plan)
        leaks = {where: sorted(t for t in hidden if t in text) for where, text in got.items()}
        leaks = {where: texts for where, texts in leaks.items() if texts}
        everything = "\n".join(got.values())
        missing = sorted(t for t in visible if t not in everything)
        transaction.set_rollback(True)
    assert not leaks, f"after {operations}: hidden texts shown {leaks}"
    assert not missing, f"after {operations}: visible texts shown nowhere {missing}"
