"""My work (/work/): what needs me across my patients, the overdue tag, the sender's loop."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from careteam import handoffs
from careteam.models import Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.templatetags.overdue import overdue_text
from tests import factories as f


def _handoff(world, **kw):
    defaults = dict(
        by=world.case_manager,
        to_user=world.nurse,
        due_at=timezone.now() - dt.timedelta(days=2, hours=1),
        situation="Needs rides to clinic",
        background="b",
        assessment="a",
        recommendation="r",
    )
    defaults.update(kw)
    return handoffs.handoff_create(access=patient_access(defaults["by"], world.patient), **defaults)


def test_overdue_text_counts_days_and_says_due_today():
    today = timezone.localdate()
    assert overdue_text(today - dt.timedelta(days=2)) == "Overdue 2 days"
    assert overdue_text(today) == "Due today"
    assert overdue_text(today + dt.timedelta(days=1)) == ""
    assert overdue_text(timezone.now() - dt.timedelta(days=1, hours=2)) == "Overdue 1 day"


def test_my_work_lists_my_overdue_activity_and_handoff_with_the_red_tag(client, world):
    f.ActivityFactory(
        care_plan=world.plan,
        title="Arrange rides to clinic",
        assigned_to=world.nurse,
        due_date=timezone.localdate() - dt.timedelta(days=2),
    )
    _handoff(world)
    client.force_login(world.nurse)
    body = client.get(reverse("my_work")).content.decode()
    assert "Arrange rides to clinic" in body and "Needs rides to clinic" in body
    assert 'class="tag overdue">Overdue 2 days' in body


def test_my_work_shows_nothing_of_another_team_or_a_hidden_sensitive_item(client, world):
    f.ActivityFactory(care_plan=world.other_plan, title="Other team work", due_date=timezone.localdate())
    f.ActivityFactory(
        care_plan=world.plan,
        title="Restricted counselling",
        owner_discipline=f.discipline("nursing"),
        sensitivity=world.behavioural_health,
        due_date=timezone.localdate(),
    )
    client.force_login(world.nurse)
    body = client.get(reverse("my_work")).content.decode()
    assert "Other team work" not in body and "Restricted counselling" not in body
    client.force_login(world.outsider)
    assert "Team, Alice" not in client.get(reverse("my_work")).content.decode()


def test_my_work_refuses_an_unknown_filter_with_400(client, world):
    client.force_login(world.nurse)
    assert client.get(reverse("my_work"), {"kind": "<script>"}).status_code == 400


def test_my_work_query_count_does_not_grow_with_rows(client, world, django_assert_max_num_queries):
    client.force_login(world.nurse)
    _handoff(world)
    with CaptureQueriesContext(connection) as small:
        assert client.get(reverse("my_work")).status_code == 200
    for i in range(10):
        f.ActivityFactory(
            care_plan=world.plan, title=f"A{i}", assigned_to=world.nurse, due_date=timezone.localdate()
        )
        _handoff(world, situation=f"S{i}")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get(reverse("my_work")).status_code == 200


def test_accepting_tells_the_sender_and_reads_the_new_handoff_notice(world):
    h = _handoff(world)
    received = Notification.objects.get(recipient=world.nurse, kind=NotificationKind.HANDOFF_RECEIVED)
    handoffs.handoff_accept(access=patient_access(world.nurse, h.patient), handoff=h, by=world.nurse)
    received.refresh_from_db()
    assert received.read_at is not None
    n = Notification.objects.get(recipient=world.case_manager, kind=NotificationKind.HANDOFF_ACCEPTED)
    assert "“Needs rides to clinic” was accepted by" in n.title


def test_rejection_reason_reaches_the_sender(world):
    h = _handoff(world)
    handoffs.handoff_reject(
        access=patient_access(world.nurse, h.patient),
        handoff=h,
        by=world.nurse,
        reason="Not my patient today",
    )
    n = Notification.objects.get(recipient=world.case_manager, kind=NotificationKind.HANDOFF_REJECTED)
    assert n.title.endswith("Not my patient today")


def test_clinicians_land_on_my_work(client, world):
    client.force_login(world.nurse)
    assert client.get("/")["Location"] == reverse("my_work")


def test_my_work_pages_the_most_urgent_first(client, world):
    today = timezone.localdate()
    for i in range(60):
        f.ActivityFactory(
            care_plan=world.plan,
            assigned_to=world.nurse,
            title=f"Task {i:02d}",
            due_date=today - dt.timedelta(days=60 - i),
            status="in-progress",
        )
    world.plan.status = "active"
    world.plan.save(update_fields=["status"])
    client.force_login(world.nurse)
    first = client.get(reverse("my_work"))
    rows = first.context["rows"]
    assert len(rows) == 50 and rows[0].what == "Activity: Task 00"
    assert first.context["page"].paginator.count == 60
    assert "page=2" in first.content.decode()
    second = client.get(reverse("my_work"), {"page": 2, "kind": "activity"})
    assert [r.what for r in second.context["rows"]][-1] == "Activity: Task 59"
    assert len(second.context["rows"]) == 10
    assert "kind=activity" in second.content.decode()
    assert client.get(reverse("my_work"), {"page": "x"}).status_code == 200
