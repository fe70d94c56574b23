"""Medication lists and reconciliation (issue 22): lines per source, reconciliation by a
pharmacist (or a discipline the policy allows) with exactly the expected needs, the
signed list versioned with a diff, the plain-language schedule (print and PDF, the fixed
words in the patient's language), and the access rules."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from careplans.models import Activity, Need
from careteam.models import AuditEvent
from careteam.permissions import ReadOnlyAccess, patient_access
from tests import factories as f
from transitions import services
from transitions.models import Discrepancy, MedicationLine, Reconciliation, ReconciliationPolicy

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add(world, source, name, **fields):
    access = patient_access(world.nurse, world.patient)
    return services.medication_add(access=access, by=world.nurse, source=source, name=name, **fields)


@pytest.fixture
def lists(world):
    """A home list and a discharge list: metformin continued at a new dose, lisinopril
    stopped in hospital (still at home), a new anticoagulant, and one unreadable line."""
    return {
        "home_metformin": add(
            world, "home", "Metformin", dose="500 mg", timing="with breakfast", times=["morning"]
        ),
        "home_lisinopril": add(world, "home", "Lisinopril", dose="10 mg", times=["morning"]),
        "home_mystery": add(world, "home", "White pill from the neighbour"),
        "dc_metformin": add(
            world,
            "discharge",
            "Metformin",
            dose="1000 mg",
            timing="with breakfast",
            times=["morning", "evening"],
        ),
        "dc_apixaban": add(world, "discharge", "Apixaban", dose="2.5 mg", times=["morning", "evening"]),
    }


def sign(world, lists, decisions, user=None):
    user = user or world.pharmacist
    access = patient_access(user, world.patient)
    marks = {lists[k].pk: (d, "") for k, d in decisions.items()}
    return services.reconciliation_sign(access=access, by=user, sources=["home", "discharge"], marks=marks)


CLEAN = {
    "home_metformin": "stopped",
    "dc_metformin": "changed",
    "home_lisinopril": "stopped",
    "home_mystery": "unclear",
    "dc_apixaban": "new",
}


def test_reconciliation_marks_produce_exactly_the_expected_needs(world, lists):
    result = sign(world, lists, CLEAN)
    needs = sorted(n.description for n in result.needs)
    assert needs == [
        "Stopped drug still on the home list: Lisinopril 10 mg",
        "Unclear medication line (Home): White pill from the neighbour",
    ]
    # metformin is kept (changed), so its stopped home line is no discrepancy
    kept = sorted(str(line) for line in result.reconciliation.lines.all())
    assert kept == ["Apixaban 2.5 mg", "Metformin 1000 mg"]
    for need in result.needs:
        assert need.category == "medication" and need.care_plan == world.plan
        resolve = Activity.objects.get(needs=need)
        assert resolve.owner_discipline.code == "pharmacy" and resolve.assigned_to == world.pharmacist
    assert result.reconciliation.signed_by == world.pharmacist and result.reconciliation.number == 1


def test_a_drug_kept_twice_is_one_duplicate_need(world, lists):
    result = sign(world, lists, {**CLEAN, "home_metformin": "continue", "home_mystery": "stopped"})
    assert sorted(n.description for n in result.needs) == [
        "Duplicate drug on the reconciled list: Metformin 500 mg, Metformin 1000 mg",
        "Stopped drug still on the home list: Lisinopril 10 mg",
        "Stopped drug still on the home list: White pill from the neighbour",
    ]


def test_the_same_discrepancy_is_one_need_while_it_is_open(world, lists):
    sign(world, lists, CLEAN)
    again = sign(world, lists, CLEAN)
    assert again.needs == []
    assert Need.objects.filter(category="medication").count() == 2
    assert Discrepancy.objects.count() == 2
    assert again.reconciliation.number == 2


def test_clean_reconciliation_makes_no_needs(world, lists):
    result = sign(world, lists, {**CLEAN, "home_lisinopril": "continue", "home_mystery": "stopped"})
    kinds = [d.kind for d in Discrepancy.objects.all()]
    assert kinds == ["stopped-at-home"]  # the neighbour's pill: stopped, nothing replaces it
    assert len(result.needs) == 1


def test_every_line_must_be_marked_and_nothing_is_half_written(world, lists):
    partial = dict(CLEAN)
    partial.pop("dc_apixaban")
    with pytest.raises(ValidationError, match="Mark every line"):
        sign(world, lists, partial)
    with pytest.raises(ValidationError):
        sign(world, lists, {**CLEAN, "dc_apixaban": "maybe"})
    assert Reconciliation.objects.count() == 0 and Need.objects.count() == 0
    assert MedicationLine.objects.filter(source="reconciled").count() == 0


def test_reconcile_by_a_discipline_the_policy_does_not_allow_is_403(world, lists):
    with pytest.raises(ReadOnlyAccess):
        sign(world, lists, CLEAN, user=world.nurse)
    url = reverse("transitions:reconcile", kwargs={"patient_id": world.patient.pk})
    data = {"sources": ["home", "discharge"], **{f"mark-{lists[k].pk}": d for k, d in CLEAN.items()}}
    nurse = client_for(world.nurse)
    assert nurse.get(url + "?sources=home&sources=discharge").status_code == 200
    assert nurse.post(url, data).status_code == 403
    assert client_for(world.case_manager).post(url, data).status_code == 403
    assert Reconciliation.objects.count() == 0 and Need.objects.count() == 0
    # the policy allows nursing: now the nurse may
    ReconciliationPolicy.objects.get(pk=1).allowed_disciplines.add(f.discipline("nursing"))
    assert nurse.post(url, data).status_code == 302
    assert Reconciliation.objects.get().signed_by == world.nurse


def test_pharmacist_reconciles_on_the_page(world, lists):
    url = reverse("transitions:reconcile", kwargs={"patient_id": world.patient.pk})
    pharmacist = client_for(world.pharmacist)
    page = pharmacist.get(url + "?sources=home&sources=discharge").content.decode()
    assert page.count('name="mark-') == 5 * 5
    data = {"sources": ["home", "discharge"], **{f"mark-{lists[k].pk}": d for k, d in CLEAN.items()}}
    assert pharmacist.post(url, data).status_code == 302
    meds = pharmacist.get(
        reverse("transitions:medications", kwargs={"patient_id": world.patient.pk})
    ).content.decode()
    assert "Reconciled list v1" in meds


def test_unknown_source_is_refused_on_the_page_and_the_service(world):
    with pytest.raises(ValidationError):
        add(world, "reconciled", "Metformin")
    with pytest.raises(ValidationError):
        add(world, "fax", "Metformin")
    response = client_for(world.nurse).post(
        reverse("transitions:medications", kwargs={"patient_id": world.patient.pk}),
        {"source": "fax", "name": "Metformin"},
    )
    assert response.status_code == 400
    assert MedicationLine.objects.count() == 0


def test_stop_before_start_is_refused(world):
    response = client_for(world.nurse).post(
        reverse("transitions:medications", kwargs={"patient_id": world.patient.pk}),
        {"source": "home", "name": "Metformin", "start": "2026-11-10", "stop": "2026-11-01"},
    )
    assert response.status_code == 400
    assert MedicationLine.objects.count() == 0


def test_history_shows_versions_with_a_diff(world, lists):
    sign(world, lists, CLEAN)
    sign(world, lists, {**CLEAN, "dc_apixaban": "stopped", "home_lisinopril": "continue"})
    page = client_for(world.nurse).get(
        reverse("transitions:medication_history", kwargs={"patient_id": world.patient.pk})
    )
    body = page.content.decode()
    assert "Version 2" in body and "Version 1" in body
    assert "Added:</strong> Lisinopril" in body and "Removed:</strong> Apixaban" in body
    assert MedicationLine.history.filter(source="reconciled").count() == 4


def test_schedule_is_by_time_of_day_in_the_patients_language_and_prints_as_pdf(world, lists):
    sign(world, lists, CLEAN)
    world.patient.preferred_language = "es"
    world.patient.save()
    url = reverse("transitions:schedule", kwargs={"patient_id": world.patient.pk})
    body = client_for(world.nurse).get(url).content.decode()
    # the fixed words in Spanish, each time of day with its medicines
    assert (
        body.index("Mañana") < body.index("Metformin</strong> 1000 mg with breakfast") < body.index("Noche")
    )
    assert body.count("Apixaban") == 2  # morning and evening
    assert "Lisinopril" not in body
    pdf = client_for(world.nurse).get(
        reverse("transitions:schedule_pdf", kwargs={"patient_id": world.patient.pk})
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert AuditEvent.objects.filter(action="export", patient_id=world.patient.pk).count() == 2


def test_medication_list_and_schedule_queries_do_not_grow_with_lines(world, django_assert_max_num_queries):
    url = reverse("transitions:medications", kwargs={"patient_id": world.patient.pk})
    nurse = client_for(world.nurse)
    for i in range(2):
        add(world, "home", f"Drug{i}")
    with django_assert_max_num_queries(40) as few:
        assert nurse.get(url).status_code == 200
    for i in range(2, 30):
        add(world, "home" if i % 2 else "pharmacy", f"Drug{i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert nurse.get(url).status_code == 200


def test_outsider_never_sees_medications(world, lists):
    for name in ("medications", "reconcile", "schedule", "schedule_pdf", "medication_history"):
        url = reverse(f"transitions:{name}", kwargs={"patient_id": world.patient.pk})
        assert client_for(world.outsider).get(url).status_code == 404
    assert (
        client_for(world.outsider)
        .post(
            reverse("transitions:medications", kwargs={"patient_id": world.patient.pk}),
            {"source": "home", "name": "X"},
        )
        .status_code
        == 404
    )
    assert MedicationLine.objects.count() == 5
