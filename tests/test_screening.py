"""Screening and plan templates: every shipped Questionnaire validates and renders;
scripted answers give the expected scores and proposed needs; accepting creates needs
with history and audit; sensitive instruments stay hidden; templates merge idempotently,
also under concurrent applies on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.http import QueryDict
from django.urls import reverse
from fhir.resources.R4B.plandefinition import PlanDefinition
from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse as FhirResponse

from careplans import plan_templates, screening
from careplans.models import Need, PlanTemplate, Questionnaire, TemplateItem
from careteam.models import AuditEvent, Handoff
from careteam.permissions import patient_access

pytestmark = pytest.mark.django_db

NAMES = {
    "ahc": "AHC_HRSN_CORE",
    "prapare": "PRAPARE",
    "hvs": "HUNGER_VITAL_SIGN",
    "phq2": "PHQ_2",
    "phq9": "PHQ_9",
}


@pytest.fixture
def shipped(world):
    screening.ensure_shipped_questionnaires()
    plan_templates.ensure_shipped_templates()
    return {k: Questionnaire.objects.filter(name=v).latest("id") for k, v in NAMES.items()}


def _post(answers: dict) -> QueryDict:
    q = QueryDict(mutable=True)
    for link, values in answers.items():
        q.setlist(f"q-{link}", values if isinstance(values, list) else [values])
    return q


AHC_NEGATIVE = {
    "living-1": "LA31993-1",
    "living-2": "LA9-3",
    "food-1": "LA28398-8",
    "food-2": "LA28398-8",
    "transport-1": "LA32-8",
    "utilities-1": "LA32-8",
    "safety-1": "LA6270-8",
    "safety-2": "LA6270-8",
    "safety-3": "LA6270-8",
    "safety-4": "LA6270-8",
}
PHQ9_ZERO = {f"phq-{i}": "LA6568-5" for i in range(1, 10)}
CASES = [
    ("ahc", AHC_NEGATIVE, set(), 4, "Negative"),
    (
        "ahc",
        {**AHC_NEGATIVE, "food-1": "LA6729-3", "transport-1": "LA33-6"},
        {"food-insecurity", "transportation"},
        4,
        "Negative",
    ),
    (
        "ahc",
        {**AHC_NEGATIVE, "safety-1": "LA6482-9", "safety-2": "LA6482-9", "safety-3": "LA10082-8"},
        {"interpersonal-safety"},
        14,
        "Positive (interpersonal safety)",
    ),
    (
        "ahc",
        {**AHC_NEGATIVE, "living-1": "LA31995-6", "living-2": ["LA28580-1", "LA31998-0"]},
        {"housing-instability", "housing-quality"},
        4,
        "Negative",
    ),
    ("hvs", {"hvs-1": "LA28398-8", "hvs-2": "LA28398-8"}, set(), None, ""),
    ("hvs", {"hvs-1": "LA28398-8", "hvs-2": "LA28397-0"}, {"food-insecurity"}, None, ""),
    ("phq2", {"phq-1": "LA6569-3", "phq-2": "LA6569-3"}, set(), 2, "Negative"),
    (
        "phq2",
        {"phq-1": "LA6570-1", "phq-2": "LA6569-3"},
        {"depression-screen-positive"},
        3,
        "Positive: administer the PHQ-9",
    ),
    ("phq9", PHQ9_ZERO, set(), 0, "Minimal depression"),
    (
        "phq9",
        {
            **PHQ9_ZERO,
            "phq-1": "LA6571-9",
            "phq-2": "LA6571-9",
            "phq-3": "LA6571-9",
            "phq-4": "LA6569-3",
            "phq-difficulty": "LA6573-5",
        },
        {"depression"},
        10,
        "Moderate depression",
    ),
    (
        "phq9",
        {f"phq-{i}": "LA6571-9" for i in range(1, 10)} | {"phq-difficulty": "LA6574-3"},
        {"depression", "self-harm-risk"},
        27,
        "Severe depression",
    ),
    (
        "phq9",
        {**PHQ9_ZERO, "phq-9": "LA6569-3", "phq-difficulty": "LA6573-5"},
        {"self-harm-risk"},
        1,
        "Minimal depression",
    ),
    (
        "prapare",
        {
            "hispanic": "LA32-8",
            "race": "LA4457-3",
            "housing-status": "LA30190-5",
            "housing-worry": "LA32-8",
            "material-needs": "LA9-3",
            "transportation": "LA32-8",
            "feel-safe": "LA33-6",
        },
        set(),
        None,
        "",
    ),
    (
        "prapare",
        {
            "hispanic": "LA32-8",
            "race": "LA4457-3",
            "housing-status": "LA30190-5",
            "housing-worry": "LA33-6",
            "material-needs": ["LA30125-1", "LA30128-5"],
            "transportation": "LA30133-5",
            "feel-safe": "LA32-8",
        },
        {"housing", "food", "medication-access", "transportation", "safety"},
        None,
        "",
    ),
]


def test_every_shipped_questionnaire_validates_as_r4_and_renders(shipped, world):
    client = _client(world.case_manager)
    access = patient_access(world.case_manager, world.patient)
    for key, q in shipped.items():
        FhirQuestionnaire.model_validate(q.resource)
        response = screening.screening_start(access=access, by=world.case_manager, questionnaire=q)
        page = client.get(reverse("careplans:screening_detail", kwargs={"screening_id": response.pk}))
        assert page.status_code == 200, key
        first = next(
            i for i in screening.iter_items(q.resource["item"]) if i["type"] not in ("group", "display")
        )
        assert f'name="q-{first["linkId"]}"' in page.content.decode()


def _client(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


@pytest.mark.parametrize(("instrument", "answers", "needs", "total", "band"), CASES)
def test_scripted_answers_give_the_expected_score_and_proposals(
    shipped, world, instrument, answers, needs, total, band
):
    access = patient_access(world.case_manager, world.patient)
    response = screening.screening_start(access=access, by=world.lead, questionnaire=shipped[instrument])
    access = patient_access(world.lead, world.patient)
    result = screening.screening_save(
        access=access, by=world.lead, response=response, data=_post(answers), complete=True
    )
    assert {p.rule.key for p in result.proposals} == needs
    assert (result.response.score, result.response.band) == (total, band)
    urgent = "self-harm-risk" in needs
    handoffs = Handoff.objects.filter(patient=world.patient, priority="urgent", to_user=world.case_manager)
    assert handoffs.exists() == urgent
    if urgent:
        assert "PHQ" not in handoffs.get().situation + handoffs.get().background


def test_completing_without_required_answers_saves_nothing_and_names_the_items(shipped, world):
    access = patient_access(world.nurse, world.patient)
    response = screening.screening_start(access=access, by=world.nurse, questionnaire=shipped["hvs"])
    client = _client(world.nurse)
    url = reverse("careplans:screening_detail", kwargs={"screening_id": response.pk})
    page = client.post(url, {"q-hvs-1": "LA28397-0", "action": "complete", "expected_version": 1})
    assert page.status_code == 422 and "This question needs an answer." in page.content.decode()
    response.refresh_from_db()
    assert response.status == "in-progress" and not response.proposals.exists()
    # a partial save keeps the answer; resuming shows it checked
    assert (
        client.post(url, {"q-hvs-1": "LA28397-0", "action": "save", "expected_version": 1}).status_code == 302
    )
    response.refresh_from_db()
    assert response.answers == {"hvs-1": ["LA28397-0"]}
    assert 'value="LA28397-0" checked' in client.get(url).content.decode()
    assert (
        client.post(url, {"q-hvs-1": "NOT-A-CODE", "action": "save", "expected_version": 2}).status_code
        == 422
    )


def test_accepting_proposals_creates_needs_with_history_and_audit(shipped, world):
    access = patient_access(world.nurse, world.patient)
    response = screening.screening_start(access=access, by=world.nurse, questionnaire=shipped["ahc"])
    answers = {**AHC_NEGATIVE, "food-1": "LA6729-3", "transport-1": "LA33-6"}
    screening.screening_save(
        access=access, by=world.nurse, response=response, data=_post(answers), complete=True
    )
    client = _client(world.nurse)
    url = reverse("careplans:screening_proposals", kwargs={"screening_id": response.pk})
    food = response.proposals.get(rule__key="food-insecurity")
    assert client.post(url, {"action": "accept", "proposal": food.pk}).status_code == 302
    food.refresh_from_db()
    assert food.status == "accepted" and food.need.category == "food" and food.need.care_plan == world.plan
    assert food.need.history.filter(history_type="+", history_user=world.nurse).exists()
    assert AuditEvent.objects.filter(
        object_type="careplans.need", object_id=str(food.need.pk), action="create"
    ).exists()
    transport = response.proposals.get(rule__key="transportation")
    assert client.post(url, {"action": "dismiss", "proposal": transport.pk, "reason": ""}).status_code == 422
    assert (
        client.post(
            url, {"action": "dismiss", "proposal": transport.pk, "reason": "Has a car now"}
        ).status_code
        == 302
    )
    transport.refresh_from_db()
    assert transport.status == "dismissed" and transport.need is None
    assert client.post(url, {"action": "accept", "proposal": food.pk}).status_code == 422  # twice: refused
    assert Need.objects.filter(care_plan=world.plan).count() == 1


def test_sensitive_instrument_is_hidden_from_excluded_disciplines(shipped, world):
    bh_access = patient_access(world.behavioural, world.patient)
    response = screening.screening_start(
        access=bh_access, by=world.behavioural, questionnaire=shipped["phq9"]
    )
    screening.screening_save(
        access=bh_access,
        by=world.behavioural,
        response=response,
        data=_post({f"phq-{i}": "LA6571-9" for i in range(1, 10)} | {"phq-difficulty": "LA6574-3"}),
        complete=True,
    )
    proposal = response.proposals.get(rule__key="depression")
    screening.proposal_accept(access=bh_access, by=world.behavioural, proposal=proposal)
    proposal.refresh_from_db()
    assert proposal.need.sensitivity == world.behavioural_health
    nurse = _client(world.nurse)
    assert (
        nurse.get(reverse("careplans:screening_detail", kwargs={"screening_id": response.pk})).status_code
        == 404
    )
    chart = nurse.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert "PHQ-9" not in chart
    editor = nurse.get(reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})).content.decode()
    assert "Depressive symptoms" not in editor
    nurse_access = patient_access(world.nurse, world.patient)
    assert not screening.screenings_for(nurse_access).exists()
    assert not screening.screenings_visible(world.nurse).exists()
    assert screening.screenings_visible(world.behavioural).exists()
    with pytest.raises(Exception, match="restricted"):
        screening.screening_start(access=nurse_access, by=world.nurse, questionnaire=shipped["phq9"])


def test_outsider_gets_404_for_screenings_and_templates(shipped, world):
    access = patient_access(world.nurse, world.patient)
    response = screening.screening_start(access=access, by=world.nurse, questionnaire=shipped["hvs"])
    outsider = _client(world.outsider)
    assert (
        outsider.get(reverse("careplans:screening_detail", kwargs={"screening_id": response.pk})).status_code
        == 404
    )
    assert (
        outsider.post(
            reverse("careplans:screening_proposals", kwargs={"screening_id": response.pk}), {}
        ).status_code
        == 404
    )
    assert (
        outsider.get(reverse("careplans:plan_templates", kwargs={"plan_id": world.plan.pk})).status_code
        == 404
    )
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    url = reverse("careplans:plan_templates", kwargs={"plan_id": world.plan.pk})
    assert outsider.post(url, {"template": hf.pk}).status_code == 404
    assert _client(world.nurse).post(url, {"template": hf.pk}).status_code == 403
    assert not TemplateItem.objects.exists()


def test_applying_a_template_twice_adds_nothing_and_a_newer_version_adds_the_difference(shipped, world):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    client = _client(world.case_manager)
    url = reverse("careplans:plan_templates", kwargs={"plan_id": world.plan.pk})
    assert client.post(url, {"template": hf.pk}).status_code == 302
    counts = (world.plan.goals.count(), world.plan.needs.count(), world.plan.activities.count())
    assert counts == (3, 2, 5)
    assert client.post(url, {"template": hf.pk}).status_code == 302
    assert (world.plan.goals.count(), world.plan.needs.count(), world.plan.activities.count()) == counts
    preview = client.get(url, {"template": hf.pk}).content.decode()
    assert "The plan already has everything in this template." in preview
    follow_up = world.plan.activities.get(title__startswith="Follow-up visit")
    assert follow_up.owner_discipline.code == "physician" and follow_up.assigned_to == world.lead
    assert (
        follow_up.history.get(history_type="+").history_change_reason
        == "from template Heart failure: after discharge v1"
    )
    data = plan_templates.as_data(hf)
    data["version"] = 2
    data["activities"] = [
        *data["activities"],
        {
            "key": "cardiac-rehab",
            "title": "Refer to cardiac rehabilitation",
            "owner": "physical-therapy",
            "due_days": 21,
        },
    ]
    v2 = plan_templates.template_import(data=data)
    preview = plan_templates.template_preview(plan=world.plan, template=v2)
    assert [a["key"] for a in preview.add["activities"]] == ["cardiac-rehab"] and not preview.add["goals"]
    access = patient_access(world.case_manager, world.patient)
    result = plan_templates.template_apply(access=access, plan=world.plan, template=v2, by=world.case_manager)
    assert (
        result.count == 1 and result.added["activities"][0].assigned_to is None
    )  # no physical therapist: the queue


def test_preview_shows_only_what_the_plan_lacks(shipped, world):
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    access = patient_access(world.case_manager, world.patient)
    plan_templates.template_apply(access=access, plan=world.plan, template=hf, by=world.case_manager)
    TemplateItem.objects.filter(care_plan=world.plan, item_key__in=["sodium", "diet-counselling"]).delete()
    preview = plan_templates.template_preview(plan=world.plan, template=hf)
    assert [g["key"] for g in preview.add["goals"]] == ["sodium"]
    assert [a["key"] for a in preview.add["activities"]] == ["diet-counselling"]
    assert not preview.add["needs"]


def test_plandefinition_export_validates_and_reimports_to_the_same_template(shipped):
    for template in PlanTemplate.objects.all():
        resource = plan_templates.plandefinition_resource(template)
        PlanDefinition.model_validate(resource)
        parsed = plan_templates.parse_plandefinition(resource)
        expected = plan_templates.as_data(template)
        assert {k: parsed[k] for k in expected} == expected


def test_bad_template_imports_are_refused(shipped):
    with pytest.raises(Exception, match="already stored|newer"):
        plan_templates.template_import(data=plan_templates.as_data(PlanTemplate.objects.first()))
    bad = {
        "slug": "x",
        "version": 1,
        "title": "X",
        "activities": [{"key": "a", "title": "A", "owner": "wizardry", "due_days": -3}],
    }
    with pytest.raises(Exception, match="unknown discipline"):
        plan_templates.template_import(data=bad)
    assert not PlanTemplate.objects.filter(slug="x").exists()


def test_questionnaire_response_export_validates(shipped, world):
    access = patient_access(world.lead, world.patient)
    response = screening.screening_start(
        access=access, by=world.lead, questionnaire=shipped["phq9"], answered_by="patient"
    )
    screening.screening_save(
        access=access, by=world.lead, response=response, data=_post(PHQ9_ZERO), complete=True
    )
    FhirResponse.model_validate(screening.response_resource(response))


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_applies_add_everything_once(world):
    plan_templates.ensure_shipped_templates()
    hf = PlanTemplate.objects.get(slug="heart-failure-discharge")
    barrier = threading.Barrier(2)
    errors = []

    def apply():
        try:
            access = patient_access(world.case_manager, world.patient)
            barrier.wait(timeout=10)
            plan_templates.template_apply(access=access, plan=world.plan, template=hf, by=world.case_manager)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert (world.plan.goals.count(), world.plan.needs.count(), world.plan.activities.count()) == (3, 2, 5)
    assert TemplateItem.objects.filter(care_plan=world.plan).count() == 10


def test_accept_all_takes_every_open_proposal_at_once_and_leaves_decided_ones(shipped, world):
    access = patient_access(world.nurse, world.patient)
    response = screening.screening_start(access=access, by=world.nurse, questionnaire=shipped["ahc"])
    answers = {**AHC_NEGATIVE, "food-1": "LA6729-3", "transport-1": "LA33-6", "utilities-1": "LA33-6"}
    screening.screening_save(
        access=access, by=world.nurse, response=response, data=_post(answers), complete=True
    )
    utilities = response.proposals.get(rule__key="utilities")
    screening.proposal_dismiss(access=access, by=world.nurse, proposal=utilities, reason="Paid up")
    client = _client(world.nurse)
    url = reverse("careplans:screening_proposals", kwargs={"screening_id": response.pk})
    assert client.post(url, {"action": "accept-all"}).status_code == 302
    statuses = dict(response.proposals.values_list("rule__key", "status"))
    assert statuses == {"food-insecurity": "accepted", "transportation": "accepted", "utilities": "dismissed"}
    assert Need.objects.filter(care_plan=world.plan).count() == 2
    again = client.post(url, {"action": "accept-all"})
    assert (
        again.status_code == 422 and "No proposed need is waiting for a decision." in again.content.decode()
    )
    assert Need.objects.filter(care_plan=world.plan).count() == 2


def test_accept_all_without_a_plan_accepts_nothing(shipped, world):
    access = patient_access(world.nurse, world.patient)
    response = screening.screening_start(access=access, by=world.nurse, questionnaire=shipped["ahc"])
    answers = {**AHC_NEGATIVE, "food-1": "LA6729-3", "transport-1": "LA33-6"}
    screening.screening_save(
        access=access, by=world.nurse, response=response, data=_post(answers), complete=True
    )
    response.care_plan = None
    response.save(update_fields=["care_plan"])
    world.plan.status = "revoked"
    world.plan.save(update_fields=["status"])
    page = _client(world.nurse).post(
        reverse("careplans:screening_proposals", kwargs={"screening_id": response.pk}),
        {"action": "accept-all"},
    )
    assert page.status_code == 422 and "Start a care plan first" in page.content.decode()
    assert not response.proposals.filter(status="accepted").exists() and not Need.objects.exists()
