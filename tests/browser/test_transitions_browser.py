"""A discharge in Chromium, on the demo's knee-replacement patient (Robert Chen): the case
manager records the discharge and the checklist appears; the pharmacist reconciles the
home and discharge lists and prints the patient's schedule; the follow-up call is marked
done; the debrief is recorded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from careteam.models import User
from careteam.permissions import patient_access
from patients.models import Patient
from transitions import services
from transitions.models import Debrief, Reconciliation, Transition, TransitionStep

from .conftest import PASSWORD, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(reference_data):
    call_command("seed_demo", verbosity=0)
    users = {u.username: u for u in User.objects.filter(username__in=["casemanager", "pharmacist", "nurse"])}
    for user in users.values():
        user.set_password(PASSWORD)
        user.save()
    robert = Patient.objects.get(mrn="CT-1002")
    nurse = users["nurse"]
    access = patient_access(nurse, robert)
    for source, name, dose, timing, times in [
        ("home", "Lisinopril", "10 mg", "", ["morning"]),
        ("home", "Naproxen", "500 mg", "for knee pain", ["morning", "evening"]),
        ("discharge", "Lisinopril", "10 mg", "", ["morning"]),
        ("discharge", "Apixaban", "2.5 mg", "for 14 days", ["morning", "evening"]),
        ("discharge", "Paracetamol", "1 g", "with food", ["morning", "midday", "evening"]),
    ]:
        services.medication_add(
            access=access, by=nurse, source=source, name=name, dose=dose, timing=timing, times=times
        )
    return users, robert


def test_discharge_checklist_reconciliation_schedule_follow_up_and_debrief(new_page, live_server, demo):
    users, robert = demo
    cm = new_page(users["casemanager"])

    # the discharge, recorded from the chart
    cm.goto(f"{live_server.url}/patients/{robert.pk}/")
    cm.locator("#transitions-card").get_by_role("link", name="All transitions").click()
    now = timezone.localtime().replace(second=0, microsecond=0)
    cm.get_by_label("Kind").select_option("discharge")
    cm.get_by_label("When").fill((now - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    cm.get_by_label("Admitted (for a discharge)").fill(
        (now - dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    )
    cm.get_by_label("From").fill("Lakeside General, orthopaedics")
    cm.get_by_label("To", exact=True).fill("Home with his son")
    cm.get_by_label("Reason").fill("Right total knee replacement")
    cm.get_by_label("Discharged to").select_option("home")
    cm.get_by_role("button", name="Record").click()
    checklist = cm.locator("#checklist")
    expect(checklist).to_contain_text("Discharge checklist")
    expect(checklist).to_contain_text("Medication reconciliation")
    # the open "Install front-door rail" activity already covers home safety
    expect(cm.locator("#step-home-safety")).to_contain_text("Install front-door rail")
    expect(cm.locator("#step-home-safety")).to_contain_text("open activity linked")
    screenshot(cm, "transition-checklist")
    transition = Transition.objects.get(patient=robert, kind="discharge")
    assert TransitionStep.objects.filter(transition=transition).count() == 7

    # the pharmacist reconciles the home and discharge lists
    ph = new_page(users["pharmacist"])
    ph.goto(f"{live_server.url}/transitions/patients/{robert.pk}/medications/")
    ph.get_by_role("link", name="Reconcile lists").click()
    ph.get_by_label("Home").check()
    ph.get_by_label("Discharge list").check()
    ph.get_by_role("button", name="Compare").click()
    form = ph.locator("#reconcile-form")
    expect(form).to_contain_text("Apixaban")
    decisions = {
        ("home", "Lisinopril"): "continue",
        ("discharge", "Lisinopril"): "stopped",
        ("home", "Naproxen"): "stopped",
        ("discharge", "Apixaban"): "new",
        ("discharge", "Paracetamol"): "new",
    }
    from transitions.models import MedicationLine

    for (source, name), decision in decisions.items():
        line = MedicationLine.objects.get(patient=robert, source=source, name=name)
        form.locator(f'input[name="mark-{line.pk}"][value="{decision}"]').check()
    screenshot(ph, "medication-reconciliation")
    ph.get_by_role("button", name="Sign the reconciled list").click()
    expect(ph.locator("ul.messages")).to_contain_text("Reconciled list v1 signed")
    expect(ph.locator("ul.messages")).to_contain_text("1 discrepancy")  # naproxen still at home
    rec = Reconciliation.objects.get(patient=robert)
    assert rec.signed_by == users["pharmacist"] and rec.transition == transition
    assert sorted(line.name for line in rec.lines.all()) == ["Apixaban", "Lisinopril", "Paracetamol"]

    # the patient's schedule, printed (and as a PDF)
    ph.get_by_role("link", name="Schedule for the patient (print)").click()
    expect(ph.get_by_role("heading", name="Morning")).to_be_visible()
    expect(ph.locator("body")).to_contain_text("Apixaban 2.5 mg for 14 days")
    expect(ph.locator("body")).not_to_contain_text("Naproxen")
    screenshot(ph, "medication-schedule")
    pdf = ph.request.get(f"{live_server.url}/transitions/patients/{robert.pk}/medications/schedule.pdf")
    assert pdf.ok and pdf.body()[:4] == b"%PDF"

    # the follow-up call is made; the reconciliation step was completed by the signature
    cm.goto(f"{live_server.url}/transitions/{transition.pk}/")
    expect(cm.locator("#step-medication-reconciliation")).to_contain_text("Done")
    cm.get_by_role("button", name="Mark Follow-up call to the patient done").click()
    expect(cm.locator("#step-follow-up-call")).to_contain_text("Done")

    # the debrief
    cm.get_by_role("link", name="Record the debrief").click()
    cm.get_by_label("What went well").fill("Walker and rail in place before he got home")
    cm.get_by_label("What to tighten").fill("Naproxen was still in the cupboard")
    cm.get_by_label("Follow-up action 1").fill("Ask about over-the-counter painkillers at admission")
    cm.get_by_role("button", name="Record the debrief").click()
    expect(cm.locator("#debrief")).to_contain_text("Walker and rail in place")
    screenshot(cm, "transition-debrief")
    debrief = Debrief.objects.get(transition=transition)
    assert [a.title for a in debrief.actions.all()] == ["Ask about over-the-counter painkillers at admission"]
