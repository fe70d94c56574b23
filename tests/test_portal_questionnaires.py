"""Questions from the team and consents in the portal: staff ask the patient to answer a
questionnaire (a task for the patient), the patient or a caregiver acting for them
answers it once, through the screening service, and the needs it proposes reach the team
as a staff-entered screening's would; the patient sees the consents recorded for them
and confirms one awaiting their confirmation."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careplans import screening
from careplans.models import (
    ProposedNeed,
    Questionnaire,
    QuestionnaireAssignment,
    QuestionnaireResponse,
)
from careteam import services as team_services
from careteam.models import AuditEvent, Handoff, Notification
from patients.models import Consent

from .portal_world import build_portal

pytestmark = pytest.mark.django_db

HVS_POSITIVE = {"q-hvs-1": "LA28397-0", "q-hvs-2": "LA28398-8"}
PHQ9_ITEM9 = {f"q-phq-{i}": "LA6568-5" for i in range(1, 9)} | {"q-phq-9": "LA6571-9"}


@pytest.fixture
def portal(world, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return build_portal(world)


def client_for(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def _q(name: str) -> Questionnaire:
    return Questionnaire.objects.filter(name=name).latest("id")


def _answer_url(patient, assignment) -> str:
    return reverse("portal:questionnaire", kwargs={"patient_id": patient.pk, "assignment_id": assignment.pk})


def _counts() -> tuple:
    return (
        QuestionnaireResponse.objects.count(),
        ProposedNeed.objects.count(),
        Notification.objects.filter(kind="portal-questionnaire").count(),
        QuestionnaireAssignment.objects.filter(status="completed").count(),
    )


# ---------------------------------------------------------------------------
# Asking (staff)
# ---------------------------------------------------------------------------
def test_a_team_member_asks_the_patient_from_the_screening_page(portal, world):
    screening.ensure_shipped_questionnaires()
    QuestionnaireAssignment.objects.all().delete()
    url = reverse("careplans:screening_assign", kwargs={"patient_id": world.patient.pk})
    prapare = _q("PRAPARE")
    nurse = client_for(world.nurse)
    response = nurse.post(url, {"action": "assign", "questionnaire": prapare.pk})
    assert response.status_code == 302, response.content
    assignment = QuestionnaireAssignment.objects.get(patient=world.patient)
    assert assignment.status == "requested" and assignment.assigned_by == world.nurse
    assert assignment.care_plan == world.plan
    assert AuditEvent.objects.filter(
        user=world.nurse,
        action="create",
        patient_id=world.patient.pk,
        detail__contains="asked of the patient",
    ).exists()
    # asked again while open: refused, nothing written
    assert nurse.post(url, {"action": "assign", "questionnaire": prapare.pk}).status_code == 422
    assert nurse.post(url, {"action": "assign"}).status_code == 422
    assert QuestionnaireAssignment.objects.count() == 1
    # the page lists it; the chart links to it
    page = nurse.get(reverse("careplans:screening_start", kwargs={"patient_id": world.patient.pk}))
    assert "Waiting for the patient" in page.content.decode()
    chart = nurse.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert "Ask the patient to answer" in chart
    # the patient sees it in the plan, under questions from the team
    plan = client_for(portal.patient_user).get(
        reverse("portal:plan", kwargs={"patient_id": world.patient.pk})
    )
    assert "Questions from your team" in plan.content.decode() and prapare.title in plan.content.decode()
    # withdrawn: the patient no longer sees it
    stale = nurse.post(url, {"action": "cancel", "assignment": assignment.pk, "expected_version": 9})
    assert stale.status_code == 409
    assert nurse.post(url, {"action": "cancel", "assignment": assignment.pk}).status_code == 428
    done = nurse.post(url, {"action": "cancel", "assignment": assignment.pk, "expected_version": 1})
    assert done.status_code == 302
    assignment.refresh_from_db()
    assert assignment.status == "cancelled" and assignment.cancelled_by == world.nurse
    assert client_for(portal.patient_user).get(_answer_url(world.patient, assignment)).status_code == 404


def test_who_may_ask(portal, world):
    url = reverse("careplans:screening_assign", kwargs={"patient_id": world.patient.pk})
    hvs = _q("HUNGER_VITAL_SIGN")
    before = QuestionnaireAssignment.objects.count()
    assert client_for(world.outsider).post(url, {"questionnaire": hvs.pk}).status_code == 404
    glass = client_for(world.outsider)
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Emergency in the ward"
    )
    assert glass.post(url, {"questionnaire": hvs.pk}).status_code == 403
    # a sensitive instrument: only disciplines the policy allows
    phq9 = _q("PHQ_9")
    assert client_for(world.pharmacist).post(url, {"questionnaire": phq9.pk}).status_code == 422
    assert QuestionnaireAssignment.objects.count() == before


# ---------------------------------------------------------------------------
# Answering (portal)
# ---------------------------------------------------------------------------
def test_the_patient_answers_once_and_the_team_gets_a_proposed_need(portal, world):
    assignment = portal.assignment
    c = client_for(portal.patient_user)
    url = _answer_url(world.patient, assignment)
    page = c.get(url)
    assert page.status_code == 200 and "hvs-1" in page.content.decode()
    response = c.post(url, {**HVS_POSITIVE, "expected_version": assignment.version})
    assert response.status_code == 302, response.content
    assignment.refresh_from_db()
    answered = assignment.response
    assert assignment.status == "completed" and answered.status == "completed"
    assert answered.answered_by == "patient" and answered.author == portal.patient_user
    assert answered.care_plan == world.plan
    proposal = ProposedNeed.objects.get(response=answered)
    assert proposal.status == "proposed" and proposal.category == "food"
    # the case manager sees the proposal on the screening, as for one entered by staff
    cm = client_for(world.case_manager)
    detail = cm.get(reverse("careplans:screening_detail", kwargs={"screening_id": answered.pk}))
    assert detail.status_code == 200 and "Food insecurity" in detail.content.decode()
    accepted = cm.post(
        reverse("careplans:screening_proposals", kwargs={"screening_id": answered.pk}),
        {"action": "accept", "proposal": proposal.pk},
    )
    assert accepted.status_code == 302
    proposal.refresh_from_db()
    assert proposal.need is not None and proposal.need.care_plan == world.plan
    notes = Notification.objects.filter(recipient=world.case_manager, kind="portal-questionnaire")
    assert notes.count() == 1 and "1 need proposed" in notes.get().title
    assert AuditEvent.objects.filter(
        user=portal.patient_user, action="create", patient_id=world.patient.pk, detail__contains="portal"
    ).exists()
    # a second answer: 409 with a clear message, nothing written twice
    before = _counts()
    again = c.post(url, {**HVS_POSITIVE, "expected_version": assignment.version})
    assert again.status_code == 409 and "already answered" in again.content.decode()
    stale = c.post(url, {**HVS_POSITIVE, "expected_version": 1})
    assert stale.status_code == 409
    assert _counts() == before
    thanks = c.get(url).content.decode()
    assert "Your team has your answers" in thanks


def test_bad_answers_write_nothing(portal, world):
    assignment = portal.assignment
    c = client_for(portal.patient_user)
    url = _answer_url(world.patient, assignment)
    before = _counts()
    missing = c.post(url, {"q-hvs-1": "LA28397-0", "expected_version": assignment.version})
    assert missing.status_code == 422 and "This question needs an answer." in missing.content.decode()
    assert (
        c.post(url, {"q-hvs-1": "made-up", "q-hvs-2": "LA28397-0", "expected_version": 1}).status_code == 422
    )
    assert c.post(url, HVS_POSITIVE).status_code == 428
    assert c.post(url, {**HVS_POSITIVE, "expected_version": 7}).status_code == 409
    assert _counts() == before
    assignment.refresh_from_db()
    assert assignment.status == "requested"
    # another patient's questionnaire: the same 404 as a missing one
    other = QuestionnaireAssignment.objects.create(
        patient=world.other_patient,
        questionnaire=assignment.questionnaire,
        assigned_by=world.other_team_nurse,
    )
    for url in (_answer_url(world.patient, other), _answer_url(world.other_patient, other)):
        assert c.get(url).status_code == 404
        assert c.post(url, {**HVS_POSITIVE, "expected_version": 1}).status_code == 404
    assert c.get(_answer_url(world.patient, type("X", (), {"pk": 987654})())).status_code == 404
    assert _counts() == before


def test_a_view_only_caregiver_sees_but_may_not_answer(portal, world):
    assignment = portal.assignment
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="view")
    c = client_for(portal.caregiver_user)
    url = _answer_url(world.patient, assignment)
    page = c.get(url)
    assert page.status_code == 200 and "Send my answers" not in page.content.decode()
    before = _counts()
    assert c.post(url, {**HVS_POSITIVE, "expected_version": assignment.version}).status_code == 403
    assert _counts() == before
    # a former caregiver sees nothing
    assert client_for(portal.former_user).get(url).status_code == 404


def test_a_caregiver_acting_for_the_patient_answers_as_caregiver(portal, world):
    assignment = portal.assignment
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="act")
    c = client_for(portal.caregiver_user)
    url = _answer_url(world.patient, assignment)
    assert "Send my answers" in c.get(url).content.decode()
    assert c.post(url, {**HVS_POSITIVE, "expected_version": assignment.version}).status_code == 302
    assignment.refresh_from_db()
    assert assignment.response.answered_by == "caregiver"
    assert assignment.response.answerer_name == portal.caregiver.name
    title = Notification.objects.get(kind="portal-questionnaire").title
    assert "caregiver Carmen Daughter" in title


def test_a_sensitive_questionnaire_follows_the_screening_sensitivity_rule(portal, world):
    url = reverse("careplans:screening_assign", kwargs={"patient_id": world.patient.pk})
    phq9 = _q("PHQ_9")
    assert client_for(world.behavioural).post(url, {"questionnaire": phq9.pk}).status_code == 302
    assignment = QuestionnaireAssignment.objects.get(questionnaire=phq9)
    assert assignment.sensitivity_id == world.behavioural_health.pk
    # hidden from staff the policy does not allow, and from caregivers in the portal
    page = client_for(world.pharmacist).get(
        reverse("careplans:screening_start", kwargs={"patient_id": world.patient.pk})
    )
    assert phq9.title not in page.content.decode()
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="act")
    care = client_for(portal.caregiver_user)
    assert care.get(_answer_url(world.patient, assignment)).status_code == 404
    plan_url = reverse("portal:plan", kwargs={"patient_id": world.patient.pk})
    assert phq9.title not in care.get(plan_url).content.decode()
    preview = client_for(world.pharmacist).get(
        reverse("portal_preview", kwargs={"patient_id": world.patient.pk})
    )
    assert phq9.title not in preview.content.decode()
    # the patient answers it; the response and its proposals are filed in the category
    c = client_for(portal.patient_user)
    assert phq9.title in c.get(plan_url).content.decode()
    posted = c.post(_answer_url(world.patient, assignment), {**PHQ9_ITEM9, "expected_version": 1})
    assert posted.status_code == 302, posted.content
    assignment.refresh_from_db()
    response = assignment.response
    assert response.sensitivity_id == world.behavioural_health.pk
    assert ProposedNeed.objects.filter(response=response, sensitivity=world.behavioural_health).exists()
    detail = reverse("careplans:screening_detail", kwargs={"screening_id": response.pk})
    assert client_for(world.pharmacist).get(detail).status_code == 404
    assert client_for(world.behavioural).get(detail).status_code == 200
    # item 9: the safety handoff from the clinician who asked, to the case manager
    handoff = Handoff.objects.get(patient=world.patient, priority="urgent")
    assert handoff.from_user == world.behavioural and handoff.to_user == world.case_manager
    note = Notification.objects.get(kind="portal-questionnaire")
    assert "PHQ" not in note.title and note.sensitivity_id == world.behavioural_health.pk
    assert note.title.startswith("Same-day safety follow-up")


# ---------------------------------------------------------------------------
# Consents
# ---------------------------------------------------------------------------
def _awaiting(world, **extra) -> Consent:
    response = client_for(world.case_manager).post(
        reverse("patient_consents", kwargs={"patient_id": world.patient.pk}),
        {
            "scope": "research",
            "given_by": "patient",
            "method": "verbal",
            "date_given": timezone.localdate().isoformat(),
            "awaiting_confirmation": "on",
            **extra,
        },
    )
    assert response.status_code == 302, response.content
    return Consent.objects.filter(patient=world.patient, scope="research").latest("id")


def test_the_patient_sees_consents_in_plain_words_and_confirms_one(portal, world):
    consent = _awaiting(world)
    assert consent.status == "proposed" and not Consent.objects.in_force().filter(pk=consent.pk).exists()
    c = client_for(portal.patient_user)
    url = reverse("portal:consents", kwargs={"patient_id": world.patient.pk})
    page = c.get(url).content.decode()
    assert "You agree that your information may be used for research." in page
    assert "waiting for your confirmation" in page
    assert "Carmen Daughter may see your plan online" in page
    assert AuditEvent.objects.filter(user=portal.patient_user, detail="portal: consents").exists()
    confirm = reverse(
        "portal:consent_confirm", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk}
    )
    assert c.post(confirm, {}).status_code == 428
    assert c.post(confirm, {"expected_version": 5}).status_code == 409
    assert c.post(confirm, {"expected_version": consent.version}).status_code == 302
    consent.refresh_from_db()
    assert consent.status == "active" and Consent.objects.in_force().filter(pk=consent.pk).exists()
    assert AuditEvent.objects.filter(
        user=portal.patient_user, patient_id=world.patient.pk, detail__startswith="portal: consent research"
    ).exists()
    assert (
        Notification.objects.filter(recipient=world.case_manager, kind="portal-consent-confirmed").count()
        == 1
    )
    # again: the page is out of date (409), or with the new version not waiting (422)
    assert c.post(confirm, {"expected_version": 1}).status_code == 409
    assert c.post(confirm, {"expected_version": consent.version}).status_code == 422
    assert Notification.objects.filter(kind="portal-consent-confirmed").count() == 1


def test_who_may_confirm_a_consent(portal, world):
    consent = _awaiting(world)
    confirm = reverse(
        "portal:consent_confirm", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk}
    )
    # a caregiver who may only message: 403; a former caregiver and staff: 404
    assert client_for(portal.caregiver_user).post(confirm, {"expected_version": 1}).status_code == 403
    assert client_for(portal.former_user).post(confirm, {"expected_version": 1}).status_code == 404
    assert client_for(world.case_manager).post(confirm, {"expected_version": 1}).status_code == 404
    # another patient's consent: 404
    other = Consent.objects.create(patient=world.other_patient, scope="research", status="proposed")
    mine = client_for(portal.patient_user)
    for pid in (world.patient.pk, world.other_patient.pk):
        url = reverse("portal:consent_confirm", kwargs={"patient_id": pid, "consent_id": other.pk})
        assert mine.post(url, {"expected_version": 1}).status_code == 404
    consent.refresh_from_db()
    other.refresh_from_db()
    assert consent.status == "proposed" and other.status == "proposed"
    # a caregiver acting for the patient confirms; but not a consent naming a caregiver
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="act")
    care = client_for(portal.caregiver_user)
    assert care.post(confirm, {"expected_version": 1}).status_code == 302
    consent.refresh_from_db()
    assert consent.status == "active" and "caregiver Carmen Daughter" in consent.note
    naming = Consent.objects.create(
        patient=world.patient, scope="caregiver", caregiver=portal.caregiver, status="proposed"
    )
    url = reverse("portal:consent_confirm", kwargs={"patient_id": world.patient.pk, "consent_id": naming.pk})
    assert care.post(url, {"expected_version": 1}).status_code == 404
    assert (
        "I agree: confirm"
        in mine.get(reverse("portal:consents", kwargs={"patient_id": world.patient.pk})).content.decode()
    )
    naming.refresh_from_db()
    assert naming.status == "proposed"


def test_the_consents_page_ends_caregiver_access_through_the_caregiver_service(portal, world):
    c = client_for(portal.patient_user)
    page = c.get(reverse("portal:consents", kwargs={"patient_id": world.patient.pk})).content.decode()
    revoke = reverse(
        "portal:caregiver_revoke", kwargs={"patient_id": world.patient.pk, "consent_id": portal.consent.pk}
    )
    assert revoke in page
    assert c.post(revoke, {"expected_version": portal.consent.version}).status_code == 302
    assert (
        client_for(portal.caregiver_user)
        .get(reverse("portal:consents", kwargs={"patient_id": world.patient.pk}))
        .status_code
        == 404
    )


def test_the_questionnaire_and_consent_pages_speak_the_patients_language(portal, world):
    world.patient.preferred_language = "es"
    world.patient.save()
    _awaiting(world)
    c = client_for(portal.patient_user)
    plan = c.get(reverse("portal:plan", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert "Preguntas de su equipo" in plan and "Lo que he aceptado" in plan
    page = c.get(_answer_url(world.patient, portal.assignment)).content.decode()
    assert "Enviar mis respuestas" in page
    missing = c.post(_answer_url(world.patient, portal.assignment), {"expected_version": 1})
    assert missing.status_code == 422 and "Esta pregunta necesita una respuesta." in missing.content.decode()
    consents = c.get(reverse("portal:consents", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert "esperando su confirmación" in consents and "Estoy de acuerdo: confirmar" in consents
