"""The case manager's and the lead's worklist count the whole team's overdue work per
patient (activities past their due date, handoffs past their due time), not only their
own; members see only their own; sensitive items count only for who may see them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careteam.models import SensitivityCategory
from tests import factories as f

pytestmark = pytest.mark.django_db


def worklist_row(user, patient):
    client = Client()
    client.force_login(user)
    response = client.get(reverse("worklist"))
    assert response.status_code == 200
    return next(p for p in response.context["page"].object_list if p.pk == patient.pk), response


def test_the_team_overdue_count_for_case_manager_and_lead(world, django_assert_max_num_queries):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse, due_date=yesterday, status="in-progress")
    f.ActivityFactory(
        care_plan=world.plan, assigned_to=world.pharmacist, due_date=yesterday, status="scheduled"
    )
    f.ActivityFactory(care_plan=world.plan, due_date=yesterday, status="completed")  # done: not overdue
    f.ActivityFactory(care_plan=world.plan, due_date=timezone.localdate() + dt.timedelta(days=2))
    f.ActivityFactory(
        care_plan=world.plan,
        due_date=yesterday,
        status="in-progress",
        sensitivity=SensitivityCategory.objects.get(code="domestic-violence"),
    )
    f.HandoffFactory(
        patient=world.patient,
        from_user=world.nurse,
        to_user=world.pharmacist,
        due_at=timezone.now() - dt.timedelta(hours=3),
    )
    row, page = worklist_row(world.case_manager, world.patient)
    assert row.team_overdue == 4  # two activities, the sensitive one, the handoff
    assert "Team: 4 overdue" in page.content.decode()
    row, _ = worklist_row(world.lead, world.patient)
    assert row.team_overdue == 3  # a physician may not see the domestic-violence item
    row, page = worklist_row(world.nurse, world.patient)
    assert row.team_overdue is None
    assert "Team:" not in page.content.decode()
    other, _ = worklist_row(world.other_team_nurse, world.other_patient)
    assert other.team_overdue is None


def test_the_count_costs_no_query_per_patient(world, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from careteam import services as team_services

    client = Client()
    client.force_login(world.case_manager)

    def grow(n):
        for _ in range(n):
            patient = f.PatientFactory()
            team_services.membership_add(
                patient=patient,
                user=world.case_manager,
                discipline=f.discipline("case-management"),
                role="case-manager",
            )
            plan = f.CarePlanFactory(patient=patient)
            f.ActivityFactory(care_plan=plan, due_date=timezone.localdate() - dt.timedelta(days=3))

    grow(3)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("worklist"))
    grow(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("worklist"))
