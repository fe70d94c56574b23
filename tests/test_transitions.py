"""Care transitions (issue 22): encounters received twice are one transition and one
checklist; steps are plan activities that land in the owner's My work; admissions hold
the activities that cannot happen in hospital; readmissions are flagged; the debrief is
prompted once; bad inputs write nothing; outsiders see nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter as FhirEncounter
from fhir.resources.R4B.medicationstatement import MedicationStatement as FhirMedicationStatement
from rest_framework.test import APIClient

from careplans.models import Activity
from careteam import services as team_services
from careteam.models import AuditEvent, Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from tests import factories as f
from transitions import services
from transitions.models import (
    ChecklistStepDefault,
    Debrief,
    HospitalPause,
    Transition,
    TransitionStep,
)

pytestmark = pytest.mark.django_db
FHIR = "application/fhir+json"
DEFAULT_KEYS = [
    "discharge-summary",
    "medication-reconciliation",
    "follow-up-call",
    "follow-up-appointment",
    "home-safety",
    "caregiver-teaching",
    "transport",
]


def encounter(patient, *, status="finished", start=None, end=None, ident="ENC-1", **extra) -> dict:
    now = timezone.now()
    start = start or now - dt.timedelta(days=3)
    end = end if end is not None else (now - dt.timedelta(hours=2) if status == "finished" else None)
    period = {"start": start.isoformat()}
    if end:
        period["end"] = end.isoformat()
    data = {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient.pk}"},
        "identifier": [{"system": "urn:hospital:enc", "value": ident}],
        "period": period,
        "hospitalization": {
            "origin": {"display": "St Mary's ward 4"},
            "destination": {"display": "Home"},
            "dischargeDisposition": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "home"}
                ]
            },
        },
        "reasonCode": [{"text": "Right total knee replacement"}],
    }
    data.update(extra)
    return data


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post_encounter(user, data):
    return api(user).post("/fhir/Encounter", json.dumps(data), content_type=FHIR)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# ---------------------------------------------------------------------------
# The same encounter twice
# ---------------------------------------------------------------------------
def test_same_discharge_sent_twice_is_one_transition_and_one_checklist(world):
    first = post_encounter(world.nurse, encounter(world.patient))
    assert first.status_code == 201, first.content
    again = post_encounter(world.nurse, encounter(world.patient, reasonCode=[{"text": "resent"}]))
    assert again.status_code == 200, again.content
    assert first.json()["id"] == again.json()["id"]
    transition = Transition.objects.get()
    assert transition.kind == "discharge" and transition.source == "fhir"
    steps = TransitionStep.objects.filter(transition=transition)
    assert sorted(steps.values_list("key", flat=True)) == sorted(DEFAULT_KEYS)
    assert Activity.objects.filter(care_plan=world.plan).count() == len(DEFAULT_KEYS)
    FhirEncounter.model_validate(again.json())


def test_encounter_search_pages_filters_and_shows_an_outsider_nothing(world):
    for n in range(3):
        assert post_encounter(world.nurse, encounter(world.patient, ident=f"enc-{n}")).status_code == 201
    client = api(world.nurse)
    first = client.get(f"/fhir/Encounter?patient={world.patient.pk}&_count=2").json()
    assert first["total"] == 3 and len(first["entry"]) == 2
    following = next(x["url"] for x in first["link"] if x["relation"] == "next")
    second = client.get(following).json()
    seen = {e["resource"]["id"] for e in first["entry"] + second["entry"]}
    assert len(seen) == 3
    assert client.get(f"/fhir/Encounter?patient={world.patient.pk}&status=in-progress").json()["total"] == 0
    assert client.get(f"/fhir/Encounter?patient={world.patient.pk}&type=discharge").json()["total"] == 3
    refused = client.get(
        f"/fhir/Encounter?patient={world.patient.pk}&status=x", HTTP_PREFER="handling=strict"
    )
    assert refused.status_code == 400
    outsider = api(world.outsider).get(f"/fhir/Encounter?patient={world.patient.pk}").json()
    assert outsider["total"] == 0 and not outsider.get("entry")


def test_admission_then_discharge_of_one_encounter_updates_one_row(world):
    start = timezone.now() - dt.timedelta(days=2)
    assert (
        post_encounter(world.nurse, encounter(world.patient, status="in-progress", start=start)).status_code
        == 201
    )
    assert TransitionStep.objects.count() == 0
    assert post_encounter(world.nurse, encounter(world.patient, start=start)).status_code == 200
    transition = Transition.objects.get()
    assert transition.kind == "discharge" and transition.admitted_at == start
    assert transition.history.count() == 2
    assert TransitionStep.objects.filter(transition=transition).count() == len(DEFAULT_KEYS)


def test_step_already_covered_by_an_open_activity_is_linked_not_duplicated(world):
    rail = f.ActivityFactory(
        care_plan=world.plan,
        title="Install front-door rail",
        owner_discipline=f.discipline("case-management"),
    )
    post_encounter(world.case_manager, encounter(world.patient))
    step = TransitionStep.objects.get(key="home-safety")
    assert step.activity == rail and step.linked_existing
    assert not Activity.objects.filter(title="Home safety and equipment").exists()


def test_steps_have_the_default_owners_and_due_times_and_follow_admin_edits(world):
    ChecklistStepDefault.objects.filter(key="transport").update(active=False)
    ChecklistStepDefault.objects.filter(key="follow-up-call").update(due_hours=24)
    discharged = timezone.now() - dt.timedelta(hours=1)
    post_encounter(world.nurse, encounter(world.patient, end=discharged))
    steps = {s.key: s for s in TransitionStep.objects.select_related("activity__owner_discipline")}
    assert "transport" not in steps
    assert steps["medication-reconciliation"].activity.owner_discipline.code == "pharmacy"
    assert steps["medication-reconciliation"].activity.assigned_to == world.pharmacist
    assert steps["discharge-summary"].activity.assigned_to == world.case_manager
    assert steps["follow-up-call"].due_at == discharged + dt.timedelta(hours=24)
    assert steps["discharge-summary"].activity.due_date == timezone.localdate(discharged)


# ---------------------------------------------------------------------------
# My work and reminders
# ---------------------------------------------------------------------------
def test_steps_land_in_the_owners_my_work_and_the_queue(world):
    second_nurse = f.UserFactory(username="nurse3", disciplines=["nursing"])
    team_services.membership_add(patient=world.patient, user=second_nurse, discipline=f.discipline("nursing"))
    post_encounter(world.case_manager, encounter(world.patient))
    pharmacy = client_for(world.pharmacist).get(reverse("my_work")).content.decode()
    assert "Medication reconciliation" in pharmacy
    assert "Caregiver teaching" not in pharmacy
    # two nurses: caregiver teaching is the nursing queue's, in both nurses' My work
    teaching = TransitionStep.objects.get(key="caregiver-teaching").activity
    assert teaching.owner_discipline.code == "nursing" and teaching.assigned_to is None
    for nurse in (world.nurse, second_nurse):
        assert "Caregiver teaching" in client_for(nurse).get(reverse("my_work")).content.decode()
    assert (
        "Medication reconciliation" not in client_for(world.outsider).get(reverse("my_work")).content.decode()
    )


def test_an_overdue_step_is_reminded_once_to_its_owner(world):
    discharged = timezone.now() - dt.timedelta(days=3)
    post_encounter(
        world.case_manager, encounter(world.patient, start=discharged - dt.timedelta(days=2), end=discharged)
    )
    step = TransitionStep.objects.get(key="medication-reconciliation")
    for _ in range(2):
        reminders_sweep(send_emails=False)
    reminders = Notification.objects.filter(
        kind=NotificationKind.ACTIVITY_OVERDUE, object_id=step.activity_id
    )
    assert list(reminders.values_list("recipient_id", flat=True)) == [world.pharmacist.pk]


# ---------------------------------------------------------------------------
# Admission: notify, hold, resume
# ---------------------------------------------------------------------------
def test_admission_notifies_the_team_and_holds_activities_marked_not_in_hospital(world):
    visits = f.ActivityFactory(care_plan=world.plan, title="Home PT visits", status="in-progress")
    calls = f.ActivityFactory(care_plan=world.plan, title="Weekly call", status="not-started")
    kept = f.ActivityFactory(care_plan=world.plan, title="Review labs", status="in-progress")
    for a in (visits, calls):
        HospitalPause.objects.create(activity=a, marked_by=world.nurse)
    start = timezone.now() - dt.timedelta(hours=5)
    post_encounter(world.nurse, encounter(world.patient, status="in-progress", start=start))
    for a in (visits, calls, kept):
        a.refresh_from_db()
    assert (visits.status, calls.status, kept.status) == ("on-hold", "on-hold", "in-progress")
    told = set(
        Notification.objects.filter(kind=NotificationKind.TRANSITION_ADMITTED).values_list(
            "recipient_id", flat=True
        )
    )
    assert told == {world.case_manager.pk, world.lead.pk, world.pharmacist.pk, world.behavioural.pk}
    assert world.outsider.pk not in told and world.other_team_nurse.pk not in told
    # sent again: nobody is told twice
    post_encounter(world.nurse, encounter(world.patient, status="in-progress", start=start))
    assert Notification.objects.filter(kind=NotificationKind.TRANSITION_ADMITTED).count() == 4
    post_encounter(world.nurse, encounter(world.patient, start=start))
    visits.refresh_from_db()
    calls.refresh_from_db()
    assert (visits.status, calls.status) == ("in-progress", "scheduled")


def test_hospital_marks_are_set_from_the_page(world):
    visit = f.ActivityFactory(
        care_plan=world.plan, title="Home visit", owner_discipline=f.discipline("nursing")
    )
    response = client_for(world.nurse).post(
        reverse("transitions:hospital_pauses", kwargs={"patient_id": world.patient.pk}),
        {"activities": [visit.pk]},
    )
    assert response.status_code == 302
    assert HospitalPause.objects.filter(activity=visit).exists()


# ---------------------------------------------------------------------------
# Readmission
# ---------------------------------------------------------------------------
def test_readmission_within_30_days_is_flagged_on_chart_and_worklist(world):
    now = timezone.now()
    post_encounter(
        world.nurse,
        encounter(world.patient, start=now - dt.timedelta(days=14), end=now - dt.timedelta(days=10)),
    )
    post_encounter(
        world.nurse,
        encounter(world.patient, status="in-progress", start=now - dt.timedelta(hours=3), ident="ENC-2"),
    )
    readmission = Transition.objects.get(identifier="ENC-2")
    assert readmission.readmission_of == Transition.objects.get(identifier="ENC-1")
    nurse = client_for(world.nurse)
    chart = nurse.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert 'id="readmission-flag"' in chart
    worklist = nurse.get(reverse("worklist")).content.decode()
    assert "Readmitted within 30 days" in worklist
    assert (
        "Readmitted within 30 days"
        not in client_for(world.other_team_nurse).get(reverse("worklist")).content.decode()
    )


def test_an_admission_after_30_days_is_not_a_readmission(world):
    now = timezone.now()
    post_encounter(
        world.nurse,
        encounter(world.patient, start=now - dt.timedelta(days=45), end=now - dt.timedelta(days=40)),
    )
    post_encounter(world.nurse, encounter(world.patient, status="in-progress", start=now, ident="ENC-2"))
    assert Transition.objects.get(identifier="ENC-2").readmission_of is None


# ---------------------------------------------------------------------------
# Debrief
# ---------------------------------------------------------------------------
def test_debrief_is_prompted_once_to_the_case_manager_between_day_7_and_30(world):
    discharged = timezone.now() - dt.timedelta(days=8)
    post_encounter(
        world.nurse, encounter(world.patient, start=discharged - dt.timedelta(days=3), end=discharged)
    )
    transition = Transition.objects.get()
    reminders_sweep(now=discharged + dt.timedelta(days=6), send_emails=False)
    prompts = Notification.objects.filter(kind=NotificationKind.DEBRIEF_DUE)
    assert prompts.count() == 0
    for _ in range(3):
        reminders_sweep(send_emails=False)
    assert list(prompts.values_list("recipient_id", "object_id")) == [(world.case_manager.pk, transition.pk)]
    assert prompts.get().url == f"/transitions/{transition.pk}/debrief/"


def test_debrief_recorded_with_actions_is_on_the_chart_and_stops_the_prompt(world):
    discharged = timezone.now() - dt.timedelta(days=8)
    post_encounter(
        world.nurse, encounter(world.patient, start=discharged - dt.timedelta(days=3), end=discharged)
    )
    transition = Transition.objects.get()
    response = client_for(world.case_manager).post(
        reverse("transitions:debrief", kwargs={"transition_id": transition.pk}),
        {
            "went_well": "Call within 24 h",
            "tighten": "Walker arrived late",
            "action_1": "Order walker before discharge",
            "action_1_discipline": f.discipline("physical-therapy").pk,
        },
    )
    assert response.status_code == 302, response.content
    debrief = Debrief.objects.get()
    assert [a.title for a in debrief.actions.all()] == ["Order walker before discharge"]
    assert debrief.actions.get().owner_discipline.code == "physical-therapy"
    reminders_sweep(send_emails=False)
    assert not Notification.objects.filter(kind=NotificationKind.DEBRIEF_DUE).exists()
    chart = client_for(world.nurse).get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    assert "Debrief recorded" in chart.content.decode()
    again = client_for(world.case_manager).post(
        reverse("transitions:debrief", kwargs={"transition_id": transition.pk}), {"went_well": "Twice"}
    )
    assert again.status_code == 400 and Debrief.objects.count() == 1


# ---------------------------------------------------------------------------
# Bad inputs write nothing
# ---------------------------------------------------------------------------
def _written() -> tuple:
    return (Transition.objects.count(), TransitionStep.objects.count(), Activity.objects.count())


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(resourceType="Patient"), id="not-an-encounter"),
        pytest.param(lambda d: d.pop("class"), id="no-class"),
        pytest.param(lambda d: d.update(status="bogus"), id="bad-status"),
        pytest.param(lambda d: d["period"].update(end="yesterday"), id="bad-date"),
        pytest.param(lambda d: d.update(subject={"reference": "Group/1"}), id="no-patient"),
        pytest.param(lambda d: d.update(identifier="ENC-1"), id="identifier-not-a-list"),
    ],
)
def test_malformed_encounter_answers_400_operation_outcome_and_writes_nothing(world, mutate):
    data = encounter(world.patient)
    mutate(data)
    before = _written()
    response = post_encounter(world.nurse, data)
    assert response.status_code == 400, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _written() == before


def test_discharge_before_admission_is_refused_on_fhir_and_the_page(world):
    now = timezone.now()
    response = post_encounter(
        world.nurse,
        encounter(world.patient, start=now - dt.timedelta(days=1), end=now - dt.timedelta(days=2)),
    )
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    page = client_for(world.nurse).post(
        reverse("transitions:patient_transitions", kwargs={"patient_id": world.patient.pk}),
        {"kind": "discharge", "occurred_at": "2026-11-01T10:00", "admitted_at": "2026-11-03T10:00"},
    )
    assert page.status_code == 400
    assert "cannot be before the admission" in page.content.decode()
    assert _written() == (0, 0, 0)


def test_encounter_for_a_patient_of_another_team_is_404_and_writes_nothing(world):
    response = post_encounter(world.nurse, encounter(world.other_patient))
    assert response.status_code == 404
    assert _written() == (0, 0, 0)


def test_encounter_identifier_of_another_patient_is_refused(world):
    post_encounter(world.other_team_nurse, encounter(world.other_patient))
    before = _written()
    response = post_encounter(world.nurse, encounter(world.patient))
    assert response.status_code == 400
    assert _written() == before
    assert str(world.other_patient.pk) not in response.content.decode()


def test_encounter_needs_a_token_or_session(world):
    response = APIClient().post("/fhir/Encounter", json.dumps(encounter(world.patient)), content_type=FHIR)
    assert response.status_code in (401, 403)
    assert Transition.objects.count() == 0


# ---------------------------------------------------------------------------
# Pages, access and FHIR
# ---------------------------------------------------------------------------
def test_discharge_recorded_on_the_page_closes_the_open_admission(world):
    nurse = client_for(world.nurse)
    url = reverse("transitions:patient_transitions", kwargs={"patient_id": world.patient.pk})
    assert (
        nurse.post(
            url, {"kind": "admission", "occurred_at": "2026-11-20T08:00", "to_location": "Ward 4"}
        ).status_code
        == 302
    )
    response = nurse.post(
        url,
        {
            "kind": "discharge",
            "occurred_at": "2026-11-24T15:00",
            "to_location": "Home",
            "disposition": "home",
        },
    )
    assert response.status_code == 302
    transition = Transition.objects.get()
    assert transition.kind == "discharge" and transition.admitted_at is not None
    page = nurse.get(reverse("transitions:transition_detail", kwargs={"transition_id": transition.pk}))
    body = page.content.decode()
    assert "Discharge checklist" in body and "Medication reconciliation" in body


def test_step_done_from_the_transition_page_completes_the_activity(world):
    post_encounter(world.case_manager, encounter(world.patient))
    step = TransitionStep.objects.get(key="follow-up-call")
    url = reverse("transitions:step_done", kwargs={"activity_id": step.activity_id})
    cm = client_for(world.case_manager)
    assert cm.post(url, {}).status_code == 428
    assert cm.post(url, {"expected_version": step.activity.version + 5}).status_code == 409
    assert cm.post(url, {"expected_version": step.activity.version}).status_code == 302
    step.activity.refresh_from_db()
    assert step.activity.status == "completed"
    # pharmacy does not own the follow-up call
    other = TransitionStep.objects.get(key="caregiver-teaching").activity
    assert (
        client_for(world.pharmacist)
        .post(
            reverse("transitions:step_done", kwargs={"activity_id": other.pk}),
            {"expected_version": other.version},
        )
        .status_code
        == 403
    )


def test_outsider_gets_404_everywhere_and_no_counts(world):
    post_encounter(world.nurse, encounter(world.patient))
    transition = Transition.objects.get()
    line = services.medication_add(
        access=patient_access(world.nurse, world.patient), by=world.nurse, source="home", name="Metformin"
    )
    outsider = client_for(world.outsider)
    for name, kwargs in [
        ("transitions:patient_transitions", {"patient_id": world.patient.pk}),
        ("transitions:transition_detail", {"transition_id": transition.pk}),
        ("transitions:debrief", {"transition_id": transition.pk}),
        ("transitions:medications", {"patient_id": world.patient.pk}),
        ("transitions:reconcile", {"patient_id": world.patient.pk}),
        ("transitions:schedule", {"patient_id": world.patient.pk}),
        ("transitions:medication_history", {"patient_id": world.patient.pk}),
    ]:
        assert outsider.get(reverse(name, kwargs=kwargs)).status_code == 404, name
    assert AuditEvent.objects.filter(user_id=world.outsider.pk, outcome="denied").count() >= 7
    dashboard = outsider.get(reverse("transitions:dashboard")).content.decode()
    assert "No discharges in this period" in dashboard
    out_api = api(world.outsider)
    assert out_api.get(f"/fhir/Encounter/{transition.pk}").status_code == 404
    assert out_api.get(f"/fhir/MedicationStatement/{line.pk}").status_code == 404
    assert out_api.get(f"/fhir/Encounter?patient={world.patient.pk}").json()["total"] == 0
    assert out_api.get("/api/v1/transitions/").json()["count"] == 0
    assert out_api.get("/api/v1/medication-lines/").json()["count"] == 0
    assert api(world.nurse).get("/api/v1/transitions/").json()["count"] == 1


def test_everything_holds_encounters_and_medication_statements_that_validate(world):
    post_encounter(world.nurse, encounter(world.patient))
    access = patient_access(world.nurse, world.patient)
    services.medication_add(
        access=access,
        by=world.nurse,
        source="home",
        name="Metformin",
        rxnorm="860975",
        dose="500 mg",
        route="by mouth",
        timing="with breakfast",
        times=["morning"],
    )
    bundle = api(world.nurse).get(f"/fhir/Patient/{world.patient.pk}/$everything").json()
    Bundle.model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Encounter") == 1 and kinds.count("MedicationStatement") == 1
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Encounter":
            FhirEncounter.model_validate(resource)
            assert resource["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "home"
        if resource["resourceType"] == "MedicationStatement":
            FhirMedicationStatement.model_validate(resource)
    other = api(world.other_team_nurse).get(f"/fhir/Patient/{world.other_patient.pk}/$everything").json()
    assert not [
        e for e in other["entry"] if e["resource"]["resourceType"] in ("Encounter", "MedicationStatement")
    ]


def test_dashboard_counts_readmissions_follow_up_and_steps_on_time(world):
    now = timezone.now()
    post_encounter(
        world.case_manager,
        encounter(world.patient, start=now - dt.timedelta(days=14), end=now - dt.timedelta(days=10)),
    )
    post_encounter(
        world.case_manager,
        encounter(world.patient, status="in-progress", start=now - dt.timedelta(days=2), ident="ENC-2"),
    )
    call = TransitionStep.objects.get(key="follow-up-call", transition__identifier="ENC-1").activity
    services.step_done(
        access=patient_access(world.case_manager, world.patient),
        by=world.case_manager,
        activity=call,
        expected_version=call.version,
    )
    from transitions.selectors import dashboard

    _, total = dashboard(world.case_manager, days=90)
    assert (total.discharges, total.readmitted, total.all_on_time) == (1, 1, 0)
    assert len(total.follow_up_hours) == 1 and total.follow_up_hours[0] > 200
    _, theirs = dashboard(world.other_team_nurse, days=90)
    assert theirs.discharges == 0


def test_transition_page_queries_do_not_grow_with_handoffs(world, django_assert_max_num_queries):
    from careteam import handoffs

    post_encounter(world.case_manager, encounter(world.patient))
    transition = Transition.objects.get()
    url = reverse("transitions:transition_detail", kwargs={"transition_id": transition.pk})
    cm = client_for(world.case_manager)

    def handoffs_on_steps(n):
        for step in TransitionStep.objects.filter(transition=transition)[:n]:
            handoffs.handoff_create(
                by=world.case_manager,
                access=patient_access(world.case_manager, world.patient),
                to_user=world.nurse,
                activity=step.activity,
                kind="transition",
                due_at=timezone.now() + dt.timedelta(days=1),
                situation="Home today",
                background="Knee",
                assessment="Stable",
                recommendation="Call tomorrow",
            )

    handoffs_on_steps(1)
    with django_assert_max_num_queries(40) as few:
        assert cm.get(url).status_code == 200
    handoffs_on_steps(7)
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = cm.get(url).content.decode()
    assert body.count("Handoff</a>") == 8


def test_seed_demo_has_a_recent_discharge_with_its_checklist_half_done():
    from django.core.management import call_command

    from patients.models import Patient
    from transitions.models import Reconciliation

    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", verbosity=0)
    maria = Patient.objects.get(mrn="CT-1001")
    discharge = Transition.objects.get(patient=maria, kind="discharge")
    assert Transition.objects.filter(patient=maria).count() == 1  # the admission became the discharge
    steps = TransitionStep.objects.filter(transition=discharge).select_related("activity")
    done = sorted(s.key for s in steps if s.activity.status == "completed")
    assert done == ["discharge-summary", "follow-up-call", "medication-reconciliation"]
    assert len(steps) == len(DEFAULT_KEYS)
    assert Reconciliation.objects.filter(patient=maria).count() == 1
    assert timezone.now() - discharge.occurred_at < dt.timedelta(days=3)


def test_conversations_about_a_step_show_who_told_whom_and_hidden_ones_do_not(world):
    from careteam import conversations

    post_encounter(world.case_manager, encounter(world.patient))
    transition = Transition.objects.get()
    step = TransitionStep.objects.get(transition=transition, key="medication-reconciliation")
    access = patient_access(world.pharmacist, world.patient)
    conversations.conversation_start(
        access=access,
        by=world.pharmacist,
        about=step.activity,
        subject="Metformin dose changed",
        text="Told the daughter: 1000 mg now.",
    )
    conversations.conversation_start(
        access=patient_access(world.behavioural, world.patient),
        by=world.behavioural,
        about=step.activity,
        subject="HIDDEN-TALK-Q9",
        sensitivity=world.behavioural_health,
        text="Mood and the new pills.",
    )
    url = reverse("transitions:transition_detail", kwargs={"transition_id": transition.pk})
    nurse = client_for(world.nurse).get(url).content.decode()
    assert "Conversation “Metformin dose changed”" in nurse
    assert "HIDDEN-TALK-Q9" not in nurse
    assert "HIDDEN-TALK-Q9" in client_for(world.behavioural).get(url).content.decode()
