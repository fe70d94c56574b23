"""Turnaround metrics computed on known data: medians and 90th percentiles (PostgreSQL
percentile_cont) per service and organization, handoff acknowledgement and overdue
counts, the date range, and only what the viewer may see."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from referrals.selectors import dashboard_metrics
from tests import factories as f

pytestmark = pytest.mark.django_db
H = dt.timedelta(hours=1)


@pytest.fixture
def known(world):
    now = timezone.now()
    sent = now - dt.timedelta(days=5)
    org_x = f.OrganizationFactory(name="Org X")
    org_y = f.OrganizationFactory(name="Org Y")
    a = f.ServiceFactory(organization=org_x, name="Service A")
    c = f.ServiceFactory(organization=org_x, name="Service C")
    b = f.ServiceFactory(organization=org_y, name="Service B")
    consent = f.ConsentFactory(patient=world.patient)
    other_consent = f.ConsentFactory(patient=world.other_patient)

    def referral(
        service, *, accepted=None, closed=None, status="accepted", patient=None, need=None, created=None
    ):
        patient = patient or world.patient
        plan = world.plan if patient == world.patient else world.other_plan
        return f.ReferralFactory(
            patient=patient,
            care_plan=plan,
            service=service,
            need=need,
            referred_by=world.case_manager,
            consent=consent if patient == world.patient else other_consent,
            status=status,
            created_at=created or sent,
            sent_at=(created or sent),
            accepted_at=(created or sent) + accepted * H if accepted is not None else None,
            closed_at=(created or sent) + closed * H if closed is not None else None,
            outcome="got-help" if closed is not None else "",
        )

    referral(a, accepted=1, closed=10, status="completed")
    referral(a, accepted=2, closed=20, status="completed")
    referral(a, accepted=3, closed=30, status="failed")
    referral(a, accepted=4)
    referral(a, closed=99, status="entered-in-error")  # never counted as closed
    referral(a, status="requested")
    referral(c, accepted=10)
    referral(b, accepted=5)
    referral(b, accepted=7)
    # not visible to the team's nurse: another team's patient, a sensitive need
    referral(a, accepted=100, closed=200, status="completed", patient=world.other_patient)
    secret = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health)
    referral(b, accepted=500, need=secret)
    # outside the date range
    referral(a, accepted=1000, created=now - dt.timedelta(days=90))

    created = now - dt.timedelta(days=3)
    for ack_hours, status in ((2, "accepted"), (4, "completed")):
        f.HandoffFactory(
            patient=world.patient,
            from_user=world.nurse,
            to_user=world.lead,
            status=status,
            created_at=created,
            acknowledged_at=created + ack_hours * H,
        )
    f.HandoffFactory(
        patient=world.patient, from_user=world.nurse, to_user=world.lead, created_at=created, due_at=now - H
    )  # overdue, never acknowledged
    f.HandoffFactory(
        patient=world.other_patient,
        from_user=world.other_team_nurse,
        to_user=world.other_team_nurse,
        created_at=created,
        due_at=now - H,
    )
    return now


def by(rows, key, value):
    return next(r for r in rows if r[key] == value)


def test_medians_and_90th_percentiles_per_service_and_organization(world, known):
    m = dashboard_metrics(world.nurse, start=(known - dt.timedelta(days=30)).date())
    a = by(m.by_service, "service__name", "Service A")
    assert (a["sent"], a["accepted"], a["closed"]) == (6, 4, 3)
    assert a["accept_p50"] == pytest.approx(2.5)
    assert a["accept_p90"] == pytest.approx(3.7)
    assert a["close_p50"] == pytest.approx(20)
    assert a["close_p90"] == pytest.approx(28)
    b = by(m.by_service, "service__name", "Service B")
    assert (b["accepted"], b["accept_p50"], b["accept_p90"]) == (2, pytest.approx(6), pytest.approx(6.8))
    x = by(m.by_organization, "service__organization__name", "Org X")
    assert x["accepted"] == 5
    assert x["accept_p50"] == pytest.approx(3)
    assert x["accept_p90"] == pytest.approx(7.6)
    assert m.overall["sent"] == 9
    assert {r["status"]: r["n"] for r in m.by_status} == {
        "accepted": 4,
        "completed": 2,
        "failed": 1,
        "entered-in-error": 1,
        "requested": 1,
    }


def test_handoff_acknowledgement_times_and_overdue_counts(world, known):
    m = dashboard_metrics(world.nurse)
    assert m.handoffs["total"] == 3 and m.handoffs["acknowledged"] == 2
    assert m.handoffs["ack_p50"] == pytest.approx(3)
    assert m.handoffs["ack_p90"] == pytest.approx(3.8)
    assert m.handoffs["overdue"] == 1 and m.handoffs["unacknowledged_overdue"] == 1


def test_the_date_range_limits_what_is_counted(world, known):
    everything = dashboard_metrics(world.nurse)
    assert by(everything.by_service, "service__name", "Service A")["sent"] == 7
    nothing = dashboard_metrics(world.nurse, start=known.date() + dt.timedelta(days=1))
    assert nothing.by_service == [] and nothing.handoffs["total"] == 0


def test_an_outsider_counts_nothing_of_the_team_and_the_behavioural_clinician_counts_the_sensitive_referral(
    world, known
):
    outsider = dashboard_metrics(world.outsider)
    assert outsider.by_service == [] and outsider.overall["sent"] == 0 and outsider.handoffs["total"] == 0
    behavioural = dashboard_metrics(world.behavioural, start=(known - dt.timedelta(days=30)).date())
    assert by(behavioural.by_service, "service__name", "Service B")["accepted"] == 3


def test_the_dashboard_page_plots_the_figures_in_svg(client, world, known, django_assert_max_num_queries):
    client.force_login(world.nurse)
    client.get(reverse("referrals:dashboard"))
    with django_assert_max_num_queries(17):  # 12 for the turnaround, 5 for the screening measures
        response = client.get(
            reverse("referrals:dashboard"), {"start": (known - dt.timedelta(days=30)).date()}
        )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count("<svg") == 4
    assert "Service A" in body and "Org X" in body
    # turnaround in days (2.5, 3.7, 20 and 28 hours)
    assert "<td>0.1 days</td><td>0.2 days</td><td>0.8 days</td><td>1.2 days</td>" in body
    assert "Overdue: 1" in body


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2026-13-45"}, "Enter a valid date."),
        ({"start": "2026-05-01", "end": "2026-04-01"}, "The end date is before the start date."),
    ],
)
def test_a_bad_date_range_is_a_400_with_the_reason(client, world, query, message):
    client.force_login(world.nurse)
    response = client.get(reverse("referrals:dashboard"), query)
    assert response.status_code == 400
    assert message in response.content.decode()


def _busy_catalog(world, n: int) -> list:
    """n services in n organizations, service i with i + 1 referrals of the team's patient."""
    consent = f.ConsentFactory(patient=world.patient)
    sent = timezone.now() - dt.timedelta(days=3)
    services = []
    for i in range(n):
        service = f.ServiceFactory(
            organization=f.OrganizationFactory(name=f"Org {i:03}"), name=f"Service {i:03}"
        )
        for _ in range(i + 1):
            f.ReferralFactory(
                patient=world.patient,
                care_plan=world.plan,
                service=service,
                referred_by=world.case_manager,
                consent=consent,
                status="accepted",
                created_at=sent,
                sent_at=sent,
                accepted_at=sent + 2 * H,
            )
        services.append(service)
    return services


def test_the_dashboard_shows_the_busiest_ten_and_links_to_all(client, world):
    _busy_catalog(world, 14)
    client.force_login(world.nurse)
    body = client.get(reverse("referrals:dashboard")).content.decode()
    assert "Service 013" in body and "Service 004" in body and "Service 003" not in body
    assert "Org 013" in body and "Org 003" not in body
    assert reverse("referrals:dashboard_services") in body and "Show all organizations" in body
    everything = client.get(reverse("referrals:dashboard_services")).content.decode()
    assert all(f"Service {i:03}" in everything for i in range(14))
    assert everything.index("Service 013") < everything.index("Service 000"), "busiest first"
    orgs = client.get(reverse("referrals:dashboard_organizations")).content.decode()
    assert all(f"Org {i:03}" in orgs for i in range(14))


def test_the_full_breakdown_pages_and_keeps_to_what_the_user_may_see(client, world):
    from referrals import views

    _busy_catalog(world, 4)
    client.force_login(world.nurse)
    url = reverse("referrals:dashboard_services")
    old = views.BREAKDOWN_PAGE_SIZE
    views.BREAKDOWN_PAGE_SIZE = 3
    try:
        first = client.get(url)
        second = client.get(url, {"page": 2})
    finally:
        views.BREAKDOWN_PAGE_SIZE = old
    assert [r["service__name"] for r in first.context["rows"]] == [
        "Service 003",
        "Service 002",
        "Service 001",
    ]
    assert [r["service__name"] for r in second.context["rows"]] == ["Service 000"]
    assert 'rel="next"' in first.content.decode()
    client.force_login(world.other_team_nurse)
    assert "Service 003" not in client.get(url).content.decode()
    assert client.get(url, {"start": "2026-05-01", "end": "2026-04-01"}).status_code == 400
    assert Client().get(url).status_code == 302
