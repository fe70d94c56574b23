"""The access layer's SQL fragments (the reminder sweep's) answer as its ORM rules do.

careteam.permissions writes "who is on the team" and "who may see a sensitive item" twice:
as Q objects for querysets and as SQL for the sweep's set-based INSERT. Here both are
evaluated on every persona of the `world` fixture and on the edge cases that tell them
apart (dates, grants, inactive accounts, emergency access, cover, categories): the SQL
over a VALUES list of (recipient_id, patient_id, sensitivity_id) candidates, the ORM rule
one candidate at a time.
"""

from __future__ import annotations

import datetime as dt
from itertools import product

import pytest
from django.db import connection
from django.db.models import IntegerField, Value
from django.utils import timezone
from guardian.shortcuts import assign_perm

from careteam import caseloads
from careteam import services as team_services
from careteam.models import (
    EmergencyAccess,
    MembershipStatus,
    PatientUserObjectPermission,
    SensitivityCategory,
    TeamMembership,
    TeamRole,
)
from careteam.permissions import (
    case_manager_sql,
    current_member_sql,
    current_membership_sql,
    patient_access,
    sensitivity_visible_q,
    sql_params,
    team_member_may_see_sql,
    team_member_q,
    team_member_sql,
    team_members_who_may_see,
)
from patients.models import Patient
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(world):
    """The world's personas plus one user per edge case, on the world's patient."""
    today = timezone.localdate()
    patient, d = world.patient, f.discipline

    def member(username, code, **kwargs):
        user = f.UserFactory(username=username, disciplines=[code])
        team_services.membership_add(
            patient=patient, user=user, discipline=d(code), start_date=kwargs.pop("start", today), **kwargs
        )
        return user

    ended = member(
        "ended", "nursing", start=today - dt.timedelta(days=30), end_date=today - dt.timedelta(days=1)
    )
    starting = member("starting", "nursing", start=today + dt.timedelta(days=1))
    last_day = member("lastday", "behavioural-health", start=today - dt.timedelta(days=3), end_date=today)
    suspended = member("suspended", "nursing", status=MembershipStatus.SUSPENDED)
    inactive = member("inactive", "behavioural-health")
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])
    grant_only = f.UserFactory(username="grantonly", disciplines=["behavioural-health"])
    assign_perm("patients.view_patient", grant_only, patient)
    no_grant = member("nogrant", "behavioural-health")
    PatientUserObjectPermission.objects.filter(user=no_grant).delete()
    # emergency access (read-only, off the team): one whose discipline the category allows
    glass_bh = f.UserFactory(username="glassbh", disciplines=["behavioural-health"])
    glass_expired = f.UserFactory(username="glassold", disciplines=["nursing"])
    now = timezone.now()
    for user, started in (
        (world.outsider, now),
        (glass_bh, now),
        (glass_expired, now - dt.timedelta(hours=5)),
    ):
        EmergencyAccess.objects.create(
            user=user,
            patient=patient,
            reason="Emergency",
            started_at=started,
            expires_at=started + dt.timedelta(hours=4),
        )
    # cover: the colleague joins the absent nurse's teams for the dates only
    colleague = f.UserFactory(username="colleague", disciplines=["nursing"])
    caseloads.cover_create(
        by=world.nurse,
        absent=world.nurse,
        colleague=colleague,
        discipline=d("nursing"),
        start_date=today,
        end_date=today + dt.timedelta(days=2),
    )
    later_colleague = f.UserFactory(username="latercolleague", disciplines=["behavioural-health"])
    caseloads.cover_create(
        by=world.behavioural,
        absent=world.behavioural,
        colleague=later_colleague,
        discipline=d("behavioural-health"),
        start_date=today + dt.timedelta(days=1),
        end_date=today + dt.timedelta(days=2),
    )
    # a second category whose policy allows nursing only
    nursing_only = SensitivityCategory.objects.create(code="test-nursing-only", name="Nursing only")
    nursing_only.allowed_disciplines.add(d("nursing"))
    users = [
        world.case_manager,
        world.lead,
        world.nurse,
        world.pharmacist,
        world.behavioural,
        world.outsider,
        world.other_team_nurse,
        world.admin,
        ended,
        starting,
        last_day,
        suspended,
        inactive,
        grant_only,
        no_grant,
        glass_bh,
        glass_expired,
        colleague,
        later_colleague,
    ]
    patients = [world.patient, world.other_patient]
    sensitivities = [None, world.behavioural_health.pk, nursing_only.pk]
    return users, patients, sensitivities


def _sql_answers(fragment: str, candidates: list[tuple]) -> set[tuple]:
    """The candidates (recipient_id, patient_id, sensitivity_id) the fragment keeps."""
    # the fragments take named parameters, so the VALUES list does too
    values = ", ".join(
        f"(%(u{i})s::bigint, %(p{i})s::bigint, %(s{i})s::bigint)" for i in range(len(candidates))
    )
    named: dict[str, int | None] = {}
    for i, (user_id, patient_id, sensitivity_id) in enumerate(candidates):
        named.update({f"u{i}": user_id, f"p{i}": patient_id, f"s{i}": sensitivity_id})
    sql = f"""SELECT t.recipient_id, t.patient_id, t.sensitivity_id
              FROM (VALUES {values}) AS t(recipient_id, patient_id, sensitivity_id)
              WHERE {fragment}"""  # noqa: S608 (the fragment is the module's own; values bound)
    with connection.cursor() as cursor:
        cursor.execute(sql, {**sql_params(), **named})
        return set(cursor.fetchall())


def _candidates(cases) -> list[tuple]:
    users, patients, sensitivities = cases
    return [(u.pk, p.pk, s) for u, p, s in product(users, patients, sensitivities)]


def test_team_member_sql_agrees_with_team_member_q_on_every_persona(world, cases):
    users, patients, _ = cases
    candidates = [(u.pk, p.pk, None) for u, p in product(users, patients)]
    sql = _sql_answers(team_member_sql("t.recipient_id", "t.patient_id"), candidates)
    orm = {
        (u.pk, p.pk, None)
        for u, p in product(users, patients)
        if Patient.objects.filter(pk=p.pk).filter(team_member_q(u)).exists()
    }
    assert sql == orm
    # and the cases say what they are meant to: only these are on the team
    names = {u.username for u in users if (u.pk, world.patient.pk, None) in sql}
    assert names == {"cm", "lead", "nurse1", "pharm1", "bh1", "lastday", "colleague"}
    assert {u.username for u in users if (u.pk, world.other_patient.pk, None) in sql} == {"nurse2"}


def test_team_member_may_see_sql_agrees_with_the_orm_rules_on_every_persona(world, cases):
    candidates = _candidates(cases)
    sql = _sql_answers(
        team_member_may_see_sql("t.recipient_id", "t.patient_id", "t.sensitivity_id"), candidates
    )
    users = {u.pk: u for u in cases[0]}

    def orm_q(user_id, patient_id, sensitivity_id):
        user = users[user_id]
        return (
            Patient.objects.filter(pk=patient_id)
            .annotate(item_sensitivity=Value(sensitivity_id, output_field=IntegerField()))
            .filter(team_member_q(user))
            .filter(sensitivity_visible_q(user, "pk", "item_sensitivity"))
            .exists()
        )

    def orm_access(user_id, patient_id, sensitivity_id):
        access = patient_access(users[user_id], Patient.objects.get(pk=patient_id))
        return access.on_team and (sensitivity_id is None or sensitivity_id in access.visible_sensitivity_ids)

    def orm_who(user_id, patient_id, sensitivity_id):
        return team_members_who_may_see(patient_id, sensitivity_id).filter(pk=user_id).exists()

    for rule in (orm_q, orm_access, orm_who):
        assert sql == {c for c in candidates if rule(*c)}, rule.__name__
    bh, nursing_only = cases[2][1], cases[2][2]
    on_bh = {users[u].username for u, p, s in sql if p == world.patient.pk and s == bh}
    # the allowed disciplines (behavioural health, physician) and the case manager; not
    # the nurse or the pharmacist, nor anyone by emergency access
    assert on_bh == {"cm", "lead", "bh1", "lastday"}
    on_nursing = {users[u].username for u, p, s in sql if p == world.patient.pk and s == nursing_only}
    assert on_nursing == {"cm", "nurse1", "colleague"}


def test_current_membership_sql_agrees_with_current_memberships(world, cases):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id FROM careteam_teammembership m WHERE {current_membership_sql('m')}",  # noqa: S608
            sql_params(),
        )
        sql = {row[0] for row in cursor.fetchall()}
    assert sql == set(TeamMembership.objects.current().values_list("pk", flat=True))
    assert TeamMembership.objects.exclude(pk__in=sql).count() >= 4  # ended, starting, suspended, cover later


def test_the_case_manager_join_agrees_with_the_orm(world, cases):
    answers = {}
    for patient in (world.patient, world.other_patient):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT m.user_id FROM careteam_teammembership m WHERE "  # noqa: S608
                + current_member_sql("%(patient)s", case_manager_sql("m")),
                {**sql_params(), "patient": patient.pk},
            )
            sql = {row[0] for row in cursor.fetchall()}
        orm = set(
            TeamMembership.objects.current()
            .filter(patient=patient, role=TeamRole.CASE_MANAGER)
            .values_list("user_id", flat=True)
        )
        assert sql == orm
        answers[patient.pk] = sql
    assert answers == {world.patient.pk: {world.case_manager.pk}, world.other_patient.pk: set()}
