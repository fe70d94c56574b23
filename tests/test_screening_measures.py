"""Screening measures on the dashboard, computed on a small known fixture: the screening
rate over the viewer's patients, the positive rate by domain and category, and the share
of needs accepted from a screening whose referral closed within 60 days; only patients
and sensitive items the viewer may see are counted; the period picker is validated."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careplans import screening
from careplans.models import ProposedNeed, Questionnaire, QuestionnaireResponse
from careteam import services as team_services
from referrals.selectors import screening_measures
from tests import factories as f

pytestmark = pytest.mark.django_db
DASHBOARD = reverse("referrals:dashboard")


class Known:
    """The fixture's patients and the day everything is counted from."""

    def __init__(self, world):
        self.world = world
        self.now = timezone.now()
        self.today = timezone.localdate()
        self.q = {
            name: Questionnaire.objects.filter(name=name).latest("id")
            for name in ("AHC_HRSN_CORE", "HUNGER_VITAL_SIGN", "PHQ_9")
        }
        self.service = f.ServiceFactory(name="Pantry")

    def ago(self, days: float) -> dt.datetime:
        return self.now - dt.timedelta(days=days)

    def patient(self, mrn: str):
        w = self.world
        patient = f.PatientFactory(mrn=mrn)
        start = self.today - dt.timedelta(days=400)
        for user, code, role in [
            (w.case_manager, "case-management", "case-manager"),
            (w.nurse, "nursing", "member"),
            (w.behavioural, "behavioural-health", "member"),
        ]:
            team_services.membership_add(
                patient=patient, user=user, discipline=f.discipline(code), role=role, start_date=start
            )
        f.CarePlanFactory(patient=patient, title=f"Plan of {mrn}")
        return patient

    def screening(self, patient, name: str, completed: float | None, proposals=()):
        """A response completed `completed` days ago (None: still in progress) and its
        proposals: (rule key, days ago accepted or None, days after acceptance its
        referral closed or None)."""
        q = self.q[name]
        response = QuestionnaireResponse.objects.create(
            patient=patient,
            care_plan=patient.care_plans.first(),
            questionnaire=q,
            author=self.world.case_manager,
            sensitivity=q.sensitivity,
            status="completed" if completed is not None else "in-progress",
            started_at=self.ago(completed or 1),
            completed_at=self.ago(completed) if completed is not None else None,
        )
        for key, accepted, closed_after in proposals:
            rule = q.rules.get(key=key)
            proposal = ProposedNeed.objects.create(
                response=response,
                rule=rule,
                category=rule.category,
                domain=rule.domain,
                description=rule.description,
                sensitivity=response.sensitivity,
            )
            if accepted is None:
                continue
            need = f.NeedFactory(
                care_plan=response.care_plan,
                domain=rule.domain,
                category=rule.category,
                sensitivity=response.sensitivity,
            )
            ProposedNeed.objects.filter(pk=proposal.pk).update(
                status="accepted",
                need=need,
                decided_at=self.ago(accepted),
                decided_by=self.world.case_manager,
            )
            if closed_after is not None:
                decided = self.ago(accepted)
                f.ReferralFactory(
                    patient=patient,
                    care_plan=response.care_plan,
                    need=need,
                    service=self.service,
                    referred_by=self.world.case_manager,
                    consent=f.ConsentFactory(patient=patient),
                    status="completed",
                    created_at=decided,
                    sent_at=decided,
                    closed_at=decided + dt.timedelta(days=closed_after),
                    outcome="got-help",
                )
        return response


@pytest.fixture
def known(world):
    screening.ensure_shipped_questionnaires()
    k = Known(world)
    k.p1, k.p2, k.p3, k.p4 = world.patient, k.patient("M-2"), k.patient("M-3"), k.patient("M-4")
    # P1: AHC 80 days ago, food accepted and its referral closed after 30 days; transport
    # accepted, referral closed after 65 days (too late); Hunger Vital Sign 5 days ago,
    # food proposed, not decided
    k.screening(k.p1, "AHC_HRSN_CORE", 80, [("food-insecurity", 79, 30), ("transportation", 79, 65)])
    k.screening(k.p1, "HUNGER_VITAL_SIGN", 5, [("food-insecurity", None, None)])
    # P2: AHC 100 days ago (before the default period), food accepted then, no referral;
    # Hunger Vital Sign 30 days ago, food accepted 2 days ago (its 60 days still running)
    k.screening(k.p2, "AHC_HRSN_CORE", 100, [("food-insecurity", 100, None)])
    k.screening(k.p2, "HUNGER_VITAL_SIGN", 30, [("food-insecurity", 2, None)])
    # P3: PHQ-9 (behavioural health, hidden from nursing): depression accepted 20 days
    # ago, referral closed 10 days later
    k.screening(k.p3, "PHQ_9", 20, [("depression", 20, 10)])
    # P4: a screening still in progress
    k.screening(k.p4, "AHC_HRSN_CORE", None)
    # another team's patient, screened positive
    k.screening(world.other_patient, "AHC_HRSN_CORE", 10, [("food-insecurity", 9, 5)])
    return k


def rates(m):
    return {label: (r.numerator, r.denominator) for label, r in m.positive_by_domain}


def categories(m):
    return {
        (domain, category): (r.numerator, r.denominator) for domain, category, r in m.positive_by_category
    }


def default_period(known):
    return {"start": known.today - dt.timedelta(days=89), "end": known.today}


def test_the_nurse_sees_exact_figures_without_the_hidden_phq9(known):
    m = screening_measures(known.world.nurse, **default_period(known))
    assert (m.screening_rate.numerator, m.screening_rate.denominator) == (2, 4)
    assert m.screening_rate.percent == 50.0 and str(m.screening_rate) == "2 of 4 (50 %)"
    assert m.responses == 3
    assert rates(m) == {"Medical": (0, 3), "Behavioural": (0, 3), "Social": (3, 3)}
    assert categories(m) == {("Social", "Food"): (3, 3), ("Social", "Transportation"): (1, 3)}
    assert (m.loop_closed.numerator, m.loop_closed.denominator, m.loop_pending) == (1, 3, 1)
    assert str(m.loop_closed) == "1 of 3 (33.3 %)"


def test_the_case_manager_and_behavioural_clinician_count_the_sensitive_screening(known):
    for user in (known.world.case_manager, known.world.behavioural):
        m = screening_measures(user, **default_period(known))
        assert (m.screening_rate.numerator, m.screening_rate.denominator) == (3, 4)
        assert m.responses == 4
        assert rates(m) == {"Medical": (0, 4), "Behavioural": (1, 4), "Social": (3, 4)}
        assert categories(m)[("Behavioural", "Mental health")] == (1, 4)
        assert (m.loop_closed.numerator, m.loop_closed.denominator, m.loop_pending) == (2, 4, 1)


def test_a_user_not_on_a_patients_team_does_not_have_that_patient_counted(known):
    w = known.world
    other = screening_measures(w.other_team_nurse, **default_period(known))
    assert (other.screening_rate.numerator, other.screening_rate.denominator) == (1, 1)
    assert other.responses == 1 and rates(other)["Social"] == (1, 1)
    assert (other.loop_closed.numerator, other.loop_closed.denominator) == (1, 1)
    # the pharmacist is on P1's team only
    pharmacist = screening_measures(w.pharmacist, **default_period(known))
    assert (pharmacist.screening_rate.numerator, pharmacist.screening_rate.denominator) == (1, 1)
    outsider = screening_measures(w.outsider, **default_period(known))
    assert (outsider.screening_rate.denominator, outsider.responses, outsider.loop_closed.denominator) == (
        0,
        0,
        0,
    )
    assert str(outsider.screening_rate) == "0 of 0"


def test_a_period_of_ones_own_counts_only_what_falls_in_it(known):
    start = known.today - dt.timedelta(days=101)
    m = screening_measures(known.world.nurse, start=start, end=known.today - dt.timedelta(days=95))
    assert (m.screening_rate.numerator, m.screening_rate.denominator) == (1, 4)
    assert m.responses == 1 and rates(m)["Social"] == (1, 1)
    assert (m.loop_closed.numerator, m.loop_closed.denominator, m.loop_pending) == (0, 1, 0)


def test_the_dashboard_shows_the_measures_for_the_last_90_days_by_default(client, known):
    client.force_login(known.world.nurse)
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<dd id="measure-screening-rate">2 of 4 (50 %)</dd>' in body
    assert '<dd id="measure-loop-closed">1 of 3 (33.3 %)</dd>' in body
    assert "<td>Social</td><td>Food</td><td>3 of 3 (100 %)</td>" in body
    assert "Mental health" not in body
    first = (known.today - dt.timedelta(days=89)).strftime("%-d %b %Y")
    assert first in body
    picked = client.get(
        DASHBOARD,
        {
            "period": "custom",
            "period_from": (known.today - dt.timedelta(days=101)).isoformat(),
            "period_to": (known.today - dt.timedelta(days=95)).isoformat(),
        },
    )
    assert '<dd id="measure-screening-rate">1 of 4 (25 %)</dd>' in picked.content.decode()
    year = client.get(DASHBOARD, {"period": "365"})
    assert '<dd id="measure-screening-rate">2 of 4 (50 %)</dd>' in year.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"period": "7"}, "Select a valid choice."),
        ({"period": "custom"}, "Give both dates of the period (from and to)."),
        (
            {"period": "custom", "period_from": "2026-05-01", "period_to": "2026-04-01"},
            "The end date is before",
        ),
        ({"period_from": "2026-02-30", "period_to": "2026-03-01"}, "Enter a valid date."),
        ({"period": "custom", "period_from": "2001-01-01", "period_to": "2026-01-01"}, "at most ten years"),
    ],
)
def test_a_bad_period_is_a_400_with_the_reason(client, world, query, message):
    client.force_login(world.nurse)
    response = client.get(DASHBOARD, query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_period_ending_in_the_future_is_refused(client, world):
    client.force_login(world.nurse)
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    response = client.get(
        DASHBOARD, {"period": "custom", "period_from": "2026-01-01", "period_to": tomorrow.isoformat()}
    )
    assert response.status_code == 400 and "The period ends today at the latest." in response.content.decode()


def test_the_measures_take_a_fixed_number_of_queries(client, known, django_assert_max_num_queries):
    client.force_login(known.world.nurse)
    client.get(DASHBOARD)
    with django_assert_max_num_queries(5) as few:
        screening_measures(known.world.nurse, **default_period(known))
    for n in range(8):
        patient = known.patient(f"M-MORE-{n}")
        known.screening(
            patient, "AHC_HRSN_CORE", 3, [("food-insecurity", 2, 1), ("transportation", None, None)]
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        m = screening_measures(known.world.nurse, **default_period(known))
    assert (m.screening_rate.numerator, m.screening_rate.denominator) == (10, 12)
    with django_assert_max_num_queries(18):
        assert client.get(DASHBOARD).status_code == 200
