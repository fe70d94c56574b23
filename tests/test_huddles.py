"""Huddles: the case manager starts one, invited members answer a structured update that
lands in the patient's conversation, the case manager closes it with a summary; what
changed since the last huddle as each viewer may see it; a missing answer reminded once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from careteam import huddles
from careteam import services as team_services
from careteam.models import (
    AuditEvent,
    Conversation,
    Huddle,
    HuddleInvitation,
    Message,
    Notification,
    NotificationKind,
    TeamMembership,
)
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from tests import factories as f

pytestmark = pytest.mark.django_db


def _access(world, user):
    return patient_access(user, world.patient)


def _start(world, **kwargs):
    kwargs.setdefault("deadline", timezone.now() + dt.timedelta(hours=6))
    return huddles.huddle_start(access=_access(world, world.case_manager), by=world.case_manager, **kwargs)


def _answer(world, user, huddle, about=None, **parts):
    parts.setdefault("news", f"News from {user.username}")
    return huddles.huddle_answer(
        access=_access(world, user), by=user, huddle=huddle, answer=parts, about=about
    )


def _url(huddle, name="huddles:detail"):
    return reverse(name, kwargs={"patient_id": huddle.patient_id, "huddle_id": huddle.pk})


# ---------------------------------------------------------------------------
# Start
# ---------------------------------------------------------------------------
def test_case_manager_starts_a_huddle_inviting_every_other_team_member(world):
    h = _start(world)
    invited = set(h.invitations.values_list("user_id", flat=True))
    assert invited == {world.lead.pk, world.nurse.pk, world.pharmacist.pk, world.behavioural.pk}
    assert h.is_open and h.conversation.patient_id == world.patient.pk
    assert h.conversation.messages.count() == 1  # the opening line with the deadline
    told = Notification.objects.filter(kind=NotificationKind.HUDDLE_INVITED)
    assert set(told.values_list("recipient_id", flat=True)) == invited
    assert AuditEvent.objects.filter(object_type="careteam.huddle", object_id=str(h.pk)).exists()


def test_invitees_may_be_chosen_among_current_team_members_only(world):
    h = _start(world, invitees=[world.nurse.pk])
    assert list(h.invitations.values_list("user_id", flat=True)) == [world.nurse.pk]
    huddles.huddle_close(
        access=_access(world, world.case_manager), by=world.case_manager, huddle=h, summary="ok"
    )
    for outsider in (world.outsider, world.other_team_nurse):
        with pytest.raises(ValidationError) as exc:
            _start(world, invitees=[world.nurse.pk, outsider.pk])
        assert "invitees" in exc.value.message_dict
    assert Huddle.objects.count() == 1


def test_only_the_case_manager_starts_a_huddle(world):
    for user in (world.nurse, world.lead, world.outsider):
        with pytest.raises(PermissionDenied):
            huddles.huddle_start(
                access=_access(world, user), by=user, deadline=timezone.now() + dt.timedelta(hours=3)
            )
    assert not Huddle.objects.exists()
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    "deadline",
    [
        None,
        "tomorrow",
        timezone.now() - dt.timedelta(hours=1),
        timezone.now() + dt.timedelta(minutes=5),
        timezone.now() + dt.timedelta(days=30),
    ],
)
def test_a_deadline_in_the_past_too_near_or_too_far_is_refused_and_nothing_written(world, deadline):
    with pytest.raises(ValidationError) as exc:
        _start(world, deadline=deadline)
    assert "deadline" in exc.value.message_dict
    assert not Huddle.objects.exists() and not Conversation.objects.exists()
    assert not Notification.objects.exists()


def test_a_bad_format_is_refused(world):
    with pytest.raises(ValidationError) as exc:
        _start(world, format="soap")
    assert "format" in exc.value.message_dict
    assert not Huddle.objects.exists()


def test_one_open_huddle_per_patient(world):
    _start(world)
    with pytest.raises(ValidationError) as exc:
        _start(world)
    assert exc.value.code == huddles.HUDDLE_ALREADY_OPEN
    assert Huddle.objects.count() == 1


# ---------------------------------------------------------------------------
# Answer and close
# ---------------------------------------------------------------------------
def test_an_invited_member_answers_once_and_it_is_posted_into_the_huddle_conversation(world):
    h = _start(world, format="ipass")
    inv = _answer(
        world, world.nurse, h, concerns="Falls at night", will_do="Night check", needs_from="@pharm1 review"
    )
    assert inv.answered and inv.conversation_id == h.conversation_id
    message = Message.objects.get(pk=inv.message_id)
    assert "Patient summary: what's new: News from nurse1" in message.text
    assert "Action list: what I will do: Night check" in message.text
    # the mention in "what I need from whom" reaches the pharmacist
    assert Notification.objects.filter(
        kind=NotificationKind.CONVERSATION_MENTION, recipient=world.pharmacist
    ).exists()
    with pytest.raises(ValidationError) as exc:
        _answer(world, world.nurse, h)
    assert exc.value.code == huddles.ALREADY_ANSWERED
    assert h.conversation.messages.count() == 2


@pytest.mark.parametrize(
    "parts",
    [
        {"news": ""},
        {"news": "   "},
        {"news": "x" * 801},
        {"news": "a\x00b"},
        {"news": "ok", "concerns": ["x"]},
    ],
)
def test_a_bad_answer_is_refused_and_nothing_written(world, parts):
    h = _start(world)
    with pytest.raises(ValidationError):
        huddles.huddle_answer(access=_access(world, world.nurse), by=world.nurse, huddle=h, answer=parts)
    assert not HuddleInvitation.objects.filter(answered_at__isnull=False).exists()
    assert h.conversation.messages.count() == 1


def test_a_member_not_invited_cannot_answer(world):
    h = _start(world, invitees=[world.nurse.pk])
    with pytest.raises(PermissionDenied):
        _answer(world, world.pharmacist, h)
    assert h.conversation.messages.count() == 1


# ---------------------------------------------------------------------------
# What changed since the last huddle
# ---------------------------------------------------------------------------
def test_changes_since_the_last_huddle_are_those_after_its_start(world):
    before = f.NeedFactory(care_plan=world.plan, description="Before the first huddle")
    first = _start(world)
    assert any(
        c.label == "Before the first huddle"
        for c in huddles.huddle_changes(_access(world, world.nurse), first)
    )
    huddles.huddle_close(
        access=_access(world, world.case_manager), by=world.case_manager, huddle=first, summary="s"
    )
    f.NeedFactory(care_plan=world.plan, description="Lives alone now")
    activity = f.ActivityFactory(
        care_plan=world.plan, title="Home visit", owner_discipline=f.discipline("nursing")
    )
    before.status = "resolved"
    before.save()
    f.HandoffFactory(
        patient=world.patient, from_user=world.nurse, to_user=world.pharmacist, situation="Dose check"
    )
    second = _start(world)
    assert second.since == first.started_at
    changes = huddles.huddle_changes(_access(world, world.nurse), second)
    seen = {(c.kind, c.what, c.label) for c in changes}
    assert ("need", "added", "Lives alone now") in seen
    assert ("activity", "added", "Home visit") in seen
    assert ("need", "status changed", "Before the first huddle") in seen
    assert ("handoff", "added", "Dose check") in seen
    assert all(c.label != "Before the first huddle" or c.what != "added" for c in changes)
    assert (
        next(c for c in changes if c.kind == "need" and c.what == "status changed").detail
        == "Active → Resolved"
    )
    assert any(c.key == f"activity:{activity.pk}" for c in changes)


def test_caseload_start_covers_only_patients_with_changes_and_no_open_huddle(world):
    quiet = f.PatientFactory(mrn="P-QUIET")
    busy = f.PatientFactory(mrn="P-BUSY")
    start = timezone.localdate() - dt.timedelta(days=30)
    for p in (quiet, busy):
        team_services.membership_add(
            patient=p, user=world.case_manager, discipline=f.discipline("case-management"),
            role="case-manager", start_date=start,
        )  # fmt: skip
        team_services.membership_add(
            patient=p, user=world.nurse, discipline=f.discipline("nursing"), start_date=start
        )
    f.NeedFactory(care_plan=f.CarePlanFactory(patient=busy), description="New")
    Huddle.objects.all().delete()
    started = huddles.huddles_start_for_caseload(
        by=world.case_manager, deadline=timezone.now() + dt.timedelta(hours=4)
    )
    patients = {h.patient_id for h in started}
    assert busy.pk in patients and world.patient.pk in patients and quiet.pk not in patients
    again = huddles.huddles_start_for_caseload(
        by=world.case_manager, deadline=timezone.now() + dt.timedelta(hours=4)
    )
    assert again == []


# ---------------------------------------------------------------------------
# Access
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The reminder
# ---------------------------------------------------------------------------
def test_missing_answers_are_reminded_once_by_the_sweep(world):
    h = _start(world, deadline=timezone.now() + dt.timedelta(hours=6))
    _answer(world, world.nurse, h)
    assert reminders_sweep().created[NotificationKind.HUDDLE_ANSWER_DUE] == 0  # not due yet
    later = h.deadline - dt.timedelta(minutes=60)
    first = reminders_sweep(now=later).created[NotificationKind.HUDDLE_ANSWER_DUE]
    assert first == 3  # lead, pharmacist, behavioural: not the nurse who answered
    assert (
        reminders_sweep(now=later + dt.timedelta(minutes=5)).created[NotificationKind.HUDDLE_ANSWER_DUE] == 0
    )
    assert (
        reminders_sweep(now=h.deadline + dt.timedelta(hours=1)).created[NotificationKind.HUDDLE_ANSWER_DUE]
        == 0
    )
    reminded = Notification.objects.filter(kind=NotificationKind.HUDDLE_ANSWER_DUE)
    assert set(reminded.values_list("recipient_id", flat=True)) == {
        world.lead.pk,
        world.pharmacist.pk,
        world.behavioural.pk,
    }
    assert all(n.url == huddles.huddle_url(h) for n in reminded)


def test_a_closed_huddle_reminds_nobody(world):
    h = _start(world, deadline=timezone.now() + dt.timedelta(hours=1))
    huddles.huddle_close(
        access=_access(world, world.case_manager), by=world.case_manager, huddle=h, summary="Done"
    )
    assert reminders_sweep(now=h.deadline).created[NotificationKind.HUDDLE_ANSWER_DUE] == 0


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------
def test_case_manager_closes_with_a_summary_kept_on_the_chart(world, client):
    h = _start(world)
    _answer(world, world.nurse, h)
    cm = _access(world, world.case_manager)
    with pytest.raises(ValidationError):
        huddles.huddle_close(access=cm, by=world.case_manager, huddle=h, summary="  ")
    with pytest.raises(PermissionDenied):
        huddles.huddle_close(access=_access(world, world.nurse), by=world.nurse, huddle=h, summary="Mine")
    closed = huddles.huddle_close(access=cm, by=world.case_manager, huddle=h, summary="Night checks agreed")
    assert closed.status == "closed" and closed.closed_at is not None
    assert h.conversation.messages.last().text.endswith("Night checks agreed")
    with pytest.raises(ValidationError) as exc:
        huddles.huddle_close(access=cm, by=world.case_manager, huddle=h, summary="Again")
    assert exc.value.code == huddles.HUDDLE_CLOSED
    with pytest.raises(ValidationError) as exc:
        _answer(world, world.pharmacist, h)
    assert exc.value.code == huddles.HUDDLE_CLOSED
    client.force_login(world.pharmacist)
    chart = client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    assert "Night checks agreed" in chart.content.decode()


def test_a_sensitive_need_is_left_out_of_the_changes_for_a_discipline_the_policy_excludes(world, client):
    f.NeedFactory(care_plan=world.plan, description="SECRET-BH-NEED", sensitivity=world.behavioural_health)
    h = _start(world)
    nurse = {c.label for c in huddles.huddle_changes(_access(world, world.nurse), h)}
    behavioural = {c.label for c in huddles.huddle_changes(_access(world, world.behavioural), h)}
    assert "SECRET-BH-NEED" not in nurse
    assert "SECRET-BH-NEED" in behavioural
    client.force_login(world.nurse)
    assert "SECRET-BH-NEED" not in client.get(_url(h)).content.decode()
    client.force_login(world.behavioural)
    assert "SECRET-BH-NEED" in client.get(_url(h)).content.decode()


def test_an_answer_about_a_sensitive_need_is_hidden_from_who_may_not_see_it(world, client):
    need = f.NeedFactory(care_plan=world.plan, description="Mood", sensitivity=world.behavioural_health)
    h = _start(world)
    inv = _answer(world, world.behavioural, h, about=need, news="SECRET-MOOD-ANSWER")
    assert inv.conversation_id != h.conversation_id
    assert (
        inv.conversation.need_id == need.pk and inv.conversation.sensitivity_id == world.behavioural_health.pk
    )
    client.force_login(world.nurse)
    page = client.get(_url(h)).content.decode()
    assert "SECRET-MOOD-ANSWER" not in page and "Mood" not in page
    assert "SECRET-MOOD-ANSWER" not in client.get(reverse("team:conversations")).content.decode()
    client.force_login(world.case_manager)
    assert "SECRET-MOOD-ANSWER" in client.get(_url(h)).content.decode()
    # the nurse cannot post about an item she may not see
    with pytest.raises(ValidationError):
        _answer(world, world.nurse, h, about=need)
    assert not HuddleInvitation.objects.filter(user=world.nurse, answered_at__isnull=False).exists()


def test_outsiders_former_members_and_emergency_access_get_404(world, client):
    h = _start(world)
    glass = f.UserFactory(username="glass9", disciplines=["nursing"])
    team_services.emergency_access_open(
        by=glass, patient=world.patient, reason="Unconscious in the emergency room"
    )
    for user in (world.outsider, world.other_team_nurse, glass, world.admin):
        client.force_login(user)
        assert client.get(_url(h)).status_code == 404
        assert client.post(_url(h, "huddles:answer"), {"news": "x"}).status_code == 404
        assert client.get(
            reverse("huddles:patient_list", kwargs={"patient_id": world.patient.pk})
        ).status_code in (
            404,
            200,
        )
    assert not HuddleInvitation.objects.filter(answered_at__isnull=False).exists()
    # a huddle on another patient under this patient's URL is missing too
    client.force_login(world.nurse)
    other = reverse("huddles:detail", kwargs={"patient_id": world.other_patient.pk, "huddle_id": h.pk})
    assert client.get(other).status_code == 404


def test_leaving_the_team_ends_access_and_the_reminder(world, client):
    h = _start(world, deadline=timezone.now() + dt.timedelta(hours=1))
    client.force_login(world.pharmacist)
    assert client.get(_url(h)).status_code == 200
    membership = TeamMembership.objects.get(patient=world.patient, user=world.pharmacist)
    team_services.membership_end(membership=membership, by=world.pharmacist)
    assert client.get(_url(h)).status_code == 404
    reminders_sweep(send_emails=False)
    reminded = Notification.objects.filter(kind=NotificationKind.HUDDLE_ANSWER_DUE)
    assert world.pharmacist.pk not in set(reminded.values_list("recipient_id", flat=True))
    client.force_login(world.pharmacist)
    inbox = client.get(reverse("team:inbox")).content.decode()
    assert "huddle" not in inbox.lower()


def test_the_demo_has_one_open_huddle_of_the_case_manager_with_the_nurses_answer(client):
    from django.core.management import call_command

    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", verbosity=0)
    (h,) = Huddle.objects.all()
    assert h.is_open and h.started_by.username == "casemanager"
    answered = h.invitations.filter(answered_at__isnull=False)
    assert [i.user.username for i in answered] == ["nurse"]
    assert h.invitations.filter(answered_at__isnull=True).count() >= 3
    client.force_login(h.started_by)
    page = client.get(_url(h)).content.decode()
    assert "Fasting glucose 7.9" in page and "Close the huddle" in page


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------
def _api(user):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    return api


def test_api_lists_reads_and_answers_a_huddle_for_the_team_only(world):
    f.NeedFactory(care_plan=world.plan, description="SECRET-API-NEED", sensitivity=world.behavioural_health)
    h = _start(world)
    nurse = _api(world.nurse)
    listing = nurse.get("/api/v1/huddles/", {"patient": world.patient.pk, "status": "open"}).json()
    assert [row["id"] for row in listing["results"]] == [h.pk]
    detail = nurse.get(f"/api/v1/huddles/{h.pk}/")
    assert detail.status_code == 200
    assert "SECRET-API-NEED" not in detail.content.decode()
    assert "SECRET-API-NEED" in _api(world.behavioural).get(f"/api/v1/huddles/{h.pk}/").content.decode()
    answered = nurse.post(
        f"/api/v1/huddles/{h.pk}/answer/",
        {"news": "Steadier on the stairs", "will_do": "Visit"},
        format="json",
    )
    assert answered.status_code == 201, answered.content
    assert answered.json()["answer"]["news"] == "Steadier on the stairs"
    again = nurse.post(f"/api/v1/huddles/{h.pk}/answer/", {"news": "Again"}, format="json")
    assert again.status_code == 409
    rows = nurse.get(f"/api/v1/huddles/{h.pk}/").json()["invitations"]
    assert next(r for r in rows if r["user"] == world.nurse.pk)["answer"]["will_do"] == "Visit"


def test_api_bad_answers_are_400_and_write_nothing(world):
    h = _start(world)
    nurse = _api(world.nurse)
    for body in (
        {},
        {"news": ""},
        {"news": "x" * 801},
        {"news": "ok", "about": {"type": "need", "id": 987654}},
    ):
        response = nurse.post(f"/api/v1/huddles/{h.pk}/answer/", body, format="json")
        assert response.status_code == 400, (body, response.content)
    assert not HuddleInvitation.objects.filter(answered_at__isnull=False).exists()
    assert h.conversation.messages.count() == 1
    assert (
        _api(world.case_manager)
        .post(f"/api/v1/huddles/{h.pk}/answer/", {"news": "x"}, format="json")
        .status_code
        == 403
    )


def test_api_outsiders_and_emergency_access_get_404_and_never_see_it_listed(world):
    h = _start(world)
    glass = f.UserFactory(username="glass8", disciplines=["nursing"])
    team_services.emergency_access_open(
        by=glass, patient=world.patient, reason="Unconscious in the emergency room"
    )
    for user in (world.outsider, world.other_team_nurse, glass):
        api = _api(user)
        assert api.get("/api/v1/huddles/").json()["count"] == 0
        assert api.get(f"/api/v1/huddles/{h.pk}/").status_code == 404
        assert api.post(f"/api/v1/huddles/{h.pk}/answer/", {"news": "x"}, format="json").status_code == 404
    assert not HuddleInvitation.objects.filter(answered_at__isnull=False).exists()


def test_api_starts_a_huddle_for_the_case_manager_only(world):
    deadline = (timezone.now() + dt.timedelta(hours=5)).isoformat()
    body = {"patient": world.patient.pk, "deadline": deadline, "format": "ipass"}
    assert _api(world.nurse).post("/api/v1/huddles/", body, format="json").status_code == 403
    assert _api(world.outsider).post("/api/v1/huddles/", body, format="json").status_code == 400
    bad = _api(world.case_manager).post(
        "/api/v1/huddles/", {**body, "deadline": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert bad.status_code == 400 and "deadline" in bad.json()
    assert not Huddle.objects.exists()
    started = _api(world.case_manager).post("/api/v1/huddles/", body, format="json")
    assert started.status_code == 201, started.content
    assert started.json()["format"] == "ipass"
    assert _api(world.case_manager).post("/api/v1/huddles/", body, format="json").status_code == 409


def test_the_schema_documents_huddles(world):
    schema = _api(world.nurse).get("/api/schema/?format=json").json()
    assert {"/api/v1/huddles/", "/api/v1/huddles/{huddle_id}/", "/api/v1/huddles/{huddle_id}/answer/"} <= set(
        schema["paths"]
    )
    answer = schema["paths"]["/api/v1/huddles/{huddle_id}/answer/"]["post"]
    assert "AnswerRequest" in str(answer["requestBody"])
    params = {p["name"] for p in schema["paths"]["/api/v1/huddles/"]["get"]["parameters"]}
    assert {"patient", "status"} <= params
    detail = schema["components"]["schemas"]["HuddleDetail"]["properties"]
    assert {"changes", "invitations"} <= set(detail)


def test_an_update_posted_with_htmx_comes_back_in_place_and_a_bad_one_as_a_form_error(world, client):
    h = _start(world)
    client.force_login(world.nurse)
    hx = {"HTTP_HX_REQUEST": "true"}
    bad = client.post(_url(h, "huddles:answer"), {"news": ""}, **hx)
    assert bad.status_code == 422
    page = bad.content.decode()
    assert page.startswith('<div id="huddle-answers">') and 'class="field-error"' in page
    assert not HuddleInvitation.objects.filter(answered_at__isnull=False).exists()
    good = client.post(_url(h, "huddles:answer"), {"news": "Slept through", "about": ""}, **hx)
    assert good.status_code == 200
    page = good.content.decode()
    assert "Slept through" in page and "Update posted" in page and 'id="answer"' not in page
    again = client.post(_url(h, "huddles:answer"), {"news": "Twice"}, **hx)
    assert again.status_code == 409 and "You have answered" in again.content.decode()
