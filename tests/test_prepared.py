"""Prepared queries (careteam.prepared): SQL built once per process answers exactly what
the queryset built for the real user answers, for every persona; a builder whose SQL
depends on more than the values it names is refused, not run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from careteam import handoffs
from careteam import services as team_services
from careteam.models import EmergencyAccess, Handoff, Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.prepared import PREPARED, PreparedQuery, PreparedQueryError
from tests import factories as f
from workspace import selectors as workspace_selectors


@pytest.fixture
def busy_world(world):
    """Every kind of My work and a notification of each sensitivity, for every persona."""
    today = timezone.localdate()
    nursing, bh = f.discipline("nursing"), world.behavioural_health
    f.ActivityFactory(care_plan=world.plan, title="Mine", assigned_to=world.nurse, due_date=today)
    f.ActivityFactory(care_plan=world.plan, title="Queue", owner_discipline=nursing, due_date=today)
    f.ActivityFactory(
        care_plan=world.plan, title="Hidden", owner_discipline=nursing, due_date=today, sensitivity=bh
    )
    f.ActivityFactory(
        care_plan=world.other_plan, title="Other team", owner_discipline=nursing, due_date=today
    )
    world.plan.review_due = today
    world.plan.save()
    for to_user in (world.nurse, world.pharmacist, None):
        handoffs.handoff_create(
            by=world.case_manager,
            access=patient_access(world.case_manager, world.patient),
            to_user=to_user,
            to_discipline=None if to_user else nursing,
            due_at=timezone.now() + dt.timedelta(hours=3),
            situation="s",
            background="b",
            assessment="a",
            recommendation="r",
        )
    Handoff.objects.filter(to_user=world.pharmacist).update(
        status="accepted", accepted_by=world.pharmacist, acknowledged_at=timezone.now()
    )
    for user in (world.nurse, world.behavioural, world.outsider):
        for sensitivity in (None, bh):
            Notification.objects.create(
                recipient=user,
                kind=NotificationKind.HANDOFF_RECEIVED,
                patient=world.patient,
                sensitivity=sensitivity,
                title="t",
                object_type="x",
                object_id="1",
                due_moment=timezone.now(),
            )
    former = f.UserFactory(username="former1", disciplines=["nursing"])
    team_services.membership_add(
        patient=world.patient, user=former, discipline=nursing, start_date=today - dt.timedelta(days=60)
    )
    former.memberships.update(end_date=today - dt.timedelta(days=1))
    glass = f.UserFactory(username="glass1", disciplines=["behavioural-health"])
    EmergencyAccess.objects.create(
        user=glass, patient=world.patient, reason="r", expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    inactive = f.UserFactory(username="inactive1", disciplines=["nursing"])
    team_services.membership_add(patient=world.patient, user=inactive, discipline=nursing, start_date=today)
    inactive.is_active = False
    inactive.save()
    world.extra = [former, glass, inactive]
    return world


def _values(query: PreparedQuery) -> dict:
    until = timezone.localdate() + dt.timedelta(days=7)
    return {
        **{name: 1 for name in query.ints},
        **{name: until for name in query.dates},
        **{name: timezone.now() for name in query.datetimes},
    }


def test_every_prepared_query_answers_what_its_queryset_answers_for_every_persona(busy_world):
    w = busy_world
    workspace_selectors.my_work(w.nurse)  # makes the per-kind handoff queries
    people = [w.case_manager, w.lead, w.nurse, w.pharmacist, w.behavioural, w.outsider, w.other_team_nurse]
    people += [w.admin, *w.extra]
    assert len(PREPARED) >= 6
    compared = 0
    for query in PREPARED:
        values = _values(query)
        for user in people:
            expected = list(query.queryset(user, **values)) if user.is_active else []
            assert [tuple(r) for r in query.fetch(user, **values)] == expected, (query, user.username)
            assert query.count(user, **values) == len(expected)
            compared += bool(expected)
    assert compared >= 8  # the personas and data really exercise the queries


def test_a_builder_whose_sql_depends_on_an_unnamed_value_is_refused(db):
    from careplans.models import Activity

    derived = PreparedQuery(
        lambda user: Activity.objects.filter(
            due_date__lte=timezone.localdate() + dt.timedelta(days=1)
        ).values_list("pk")
    )
    querying = PreparedQuery(
        lambda user: Activity.objects.filter(
            pk__in=list(Activity.objects.values_list("pk", flat=True)) or [0]
        ).values_list("pk")
    )
    models = PreparedQuery(lambda user: Activity.objects.filter(assigned_to_id=user.pk))
    clock = PreparedQuery(
        lambda user: Activity.objects.filter(created_at__lte=dt.datetime.now(dt.UTC)).values_list("pk")
    )
    user = f.UserFactory(username="someone")
    for query in (derived, querying, models, clock):
        with pytest.raises(PreparedQueryError):
            query.fetch(user)
        PREPARED.remove(query)


def test_named_values_and_the_clock_are_bound_per_call(world):
    from careplans.models import Activity

    today = timezone.localdate()
    a = f.ActivityFactory(care_plan=world.plan, title="Due", assigned_to=world.nurse, due_date=today)
    query = PreparedQuery(
        lambda user, until: (
            Activity.objects.filter(assigned_to_id=user.pk, due_date__lte=until)
            .filter(created_at__lte=timezone.now())
            .values_list("pk", "title")
        ),
        dates=("until",),
    )
    try:
        assert query.fetch(world.nurse, until=today) == [(a.pk, "Due")]
        assert query.fetch(world.nurse, until=today - dt.timedelta(days=1)) == []
        assert query.fetch(world.lead, until=today) == []
        assert query.fetch(world.nurse, until=today, now=a.created_at - dt.timedelta(seconds=1)) == []
        assert query.fetch(world.nurse, until=today)[0].title == "Due"
    finally:
        PREPARED.remove(query)


def test_another_thread_reads_the_real_clock_while_a_query_is_built(db):
    """A threaded server builds a prepared query in one request while others run: only
    the building thread sees the stand-in time."""
    import threading

    from careplans.models import Activity

    building, checked = threading.Event(), threading.Event()

    def build(user):
        building.set()
        assert checked.wait(10)
        return Activity.objects.filter(due_date__lte=timezone.localdate()).values_list("pk")

    query = PreparedQuery(build)
    PREPARED.remove(query)  # not one of the application's queries
    seen = []

    def other_thread():
        assert building.wait(10)
        seen.append(timezone.now())
        checked.set()

    reader = threading.Thread(target=other_thread)
    reader.start()
    query._prepare()
    reader.join()
    assert abs(seen[0] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_a_page_of_a_prepared_query_is_its_slice_in_the_builders_order(world):
    from careplans.models import Activity

    made = [f.ActivityFactory(care_plan=world.plan, title=f"A{i}", assigned_to=world.nurse) for i in range(5)]
    query = PreparedQuery(
        lambda user: Activity.objects.filter(assigned_to_id=user.pk).order_by("-id").values_list("pk")
    )
    sliced = PreparedQuery(lambda user: Activity.objects.order_by("id").values_list("pk")[:2])
    try:
        ids = [a.pk for a in reversed(made)]
        assert [r.pk for r in query.fetch(world.nurse, limit=2)] == ids[:2]
        assert [r.pk for r in query.fetch(world.nurse, limit=2, offset=2)] == ids[2:4]
        assert [r.pk for r in query.fetch(world.nurse, offset=3)] == ids[3:]
        assert query.fetch(world.nurse, limit=2, offset=5) == []
        with pytest.raises(PreparedQueryError):
            sliced.fetch(world.nurse, limit=1)
    finally:
        PREPARED.remove(query)
        PREPARED.remove(sliced)
