"""Demo data of care transitions: Maria Alvarez (CT-1001) home from hospital two days
ago, her checklist half done (summary received, medicines reconciled, follow-up call
made), the rest open in the team's My work. Written through the services, as a user
would; idempotent (a patient with transitions is left alone)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from careteam.models import User
from careteam.permissions import patient_access
from patients.models import Patient

from . import services
from .models import Transition, TransitionStep

PATIENT_MRN = "CT-1001"
HOME = [
    dict(
        name="Metformin",
        rxnorm="860975",
        dose="500 mg",
        route="by mouth",
        timing="with breakfast",
        times=["morning"],
    ),
    dict(name="Lisinopril", rxnorm="314076", dose="10 mg", route="by mouth", timing="", times=["morning"]),
    dict(name="Glipizide", dose="5 mg", route="by mouth", timing="before breakfast", times=["morning"]),
    dict(name="Ibuprofen", dose="400 mg", route="by mouth", timing="for knee pain", times=["as-needed"]),
]
DISCHARGE = [
    dict(
        name="Metformin",
        rxnorm="860975",
        dose="1000 mg",
        route="by mouth",
        timing="with breakfast and dinner",
        times=["morning", "evening"],
    ),
    dict(name="Lisinopril", rxnorm="314076", dose="10 mg", route="by mouth", timing="", times=["morning"]),
    dict(name="Insulin glargine", dose="10 units", route="injection", timing="at bedtime", times=["bedtime"]),
    dict(
        name="Paracetamol",
        dose="1 g",
        route="by mouth",
        timing="up to 3 times a day for pain",
        times=["as-needed"],
    ),
]
# home glipizide stopped in hospital (low sugars), ibuprofen stopped (kidneys): both
# still in the kitchen cupboard, so the reconciliation files them for pharmacy
MARKS = {
    ("home", "Metformin"): "stopped",
    ("discharge", "Metformin"): "changed",
    ("home", "Lisinopril"): "continue",
    ("discharge", "Lisinopril"): "stopped",
    ("home", "Glipizide"): "stopped",
    ("home", "Ibuprofen"): "stopped",
    ("discharge", "Insulin glargine"): "new",
    ("discharge", "Paracetamol"): "new",
}
DONE = ("discharge-summary", "medication-reconciliation", "follow-up-call")


@transaction.atomic
def seed() -> bool:
    patient = Patient.objects.filter(mrn=PATIENT_MRN).first()
    if patient is None or Transition.objects.filter(patient=patient).exists():
        return False
    users = {u.username: u for u in User.objects.filter(username__in=["casemanager", "pharmacist", "nurse"])}
    cm, pharmacist = users["casemanager"], users["pharmacist"]
    access = patient_access(cm, patient)
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    discharged = now - dt.timedelta(days=2, hours=3)
    services.transition_record(
        access=access,
        by=cm,
        kind="admission",
        occurred_at=discharged - dt.timedelta(days=4),
        from_location="Home",
        to_location="Riverside General, medical ward 3",
        reason="High blood sugar and a fall at home",
    )
    result = services.transition_record(
        access=access,
        by=cm,
        kind="discharge",
        occurred_at=discharged,
        from_location="Riverside General, medical ward 3",
        to_location="Home with daughter",
        reason="High blood sugar and a fall at home",
        disposition="home",
    )
    nurse_access = patient_access(users["nurse"], patient)
    lines = {}
    for source, rows in (("home", HOME), ("discharge", DISCHARGE)):
        for row in rows:
            lines[(source, row["name"])] = services.medication_add(
                access=nurse_access, by=users["nurse"], source=source, **row
            )
    pharm_access = patient_access(pharmacist, patient)
    services.reconciliation_sign(
        access=pharm_access,
        by=pharmacist,
        sources=["home", "discharge"],
        marks={lines[k].pk: (d, "") for k, d in MARKS.items()},
        transition=result.transition,
        note="Glipizide stopped for low sugars in hospital; ibuprofen stopped for the kidneys.",
    )
    for step in TransitionStep.objects.filter(transition=result.transition, key__in=DONE).select_related(
        "activity"
    ):
        activity = step.activity
        if activity.status != "completed":
            owner = patient_access(activity.assigned_to or cm, patient)
            who = owner if owner.can_edit_item(activity) else access
            services.step_done(access=who, by=who.user, activity=activity, expected_version=activity.version)
    return True
