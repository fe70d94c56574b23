"""Handoff pages, the inbox and the case manager's open-handoff view, as clinicians and
outsiders see them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careteam import handoffs as handoff_services
from careteam import services as team_services
from careteam.models import Handoff, Notification, NotificationKind
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db


def _sbar(**extra):
    due = (timezone.localtime() + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M")
    data = {
        "situation": "Discharged home today",
        "background": "CHF admission, new diuretic",
        "assessment": "Stable, weight up 1 kg",
        "recommendation": "Home visit within 48 hours",
        "due_at": due,
        "priority": "urgent",
        "kind": "transition",
    }
    data.update(extra)
    return data


def _answer(client, url, handoff, data):
    """POST an answer from the handoff page as it shows now (with the version it carries)."""
    return client.post(url, {**data, "expected_version": Handoff.objects.get(pk=handoff.pk).version})


def _handoff(world, *, to_user=None, to_discipline=None, due_in_hours=6, **kwargs):
    by = kwargs.pop("from_user", world.lead)
    return handoff_services.handoff_create(
        access=patient_access(by, world.patient),
        by=by,
        to_user=to_user,
        to_discipline=to_discipline,
        due_at=timezone.now() + dt.timedelta(hours=due_in_hours),
        situation="Needs wound check",
        background="Post-op day 3",
        assessment="Healing",
        recommendation="Check dressing",
        **kwargs,
    )


def _login(client, user):
    client.force_login(user)
    return client


# ---------------------------------------------------------------------------
# Creating
# ---------------------------------------------------------------------------
def test_team_member_hands_off_to_a_discipline_queue_and_its_members_are_notified(client, world):
    _login(client, world.lead)
    url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
    response = client.post(url, _sbar(to_discipline=f.discipline("nursing").pk))
    handoff = Handoff.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    assert (handoff.to_discipline.code, handoff.to_user, handoff.priority) == ("nursing", None, "urgent")
    received = Notification.objects.filter(kind=NotificationKind.HANDOFF_RECEIVED)
    assert list(received.values_list("recipient_id", flat=True)) == [world.nurse.pk]


def test_missing_sbar_fields_and_receiver_are_shown_next_to_the_fields_and_nothing_is_written(client, world):
    _login(client, world.lead)
    url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
    response = client.post(url, _sbar(situation="", assessment="  ", due_at=""))
    assert response.status_code == 422
    html = response.content.decode()
    for name in ("situation", "assessment", "due_at", "to_user"):
        assert f'id="{name}-error"' in html
    assert "Choose a team member or a discipline" in html
    assert not Handoff.objects.exists()


def test_choosing_both_a_person_and_a_queue_is_refused(client, world):
    _login(client, world.lead)
    url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
    response = client.post(url, _sbar(to_user=world.nurse.pk, to_discipline=f.discipline("nursing").pk))
    assert response.status_code == 422
    assert "not both" in response.content.decode()
    assert not Handoff.objects.exists()


def test_receiver_off_the_team_cannot_be_chosen(client, world):
    _login(client, world.lead)
    url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
    response = client.post(url, _sbar(to_user=world.outsider.pk))
    assert response.status_code == 422
    assert 'id="to_user-error"' in response.content.decode()
    assert not Handoff.objects.exists()


def test_past_due_time_is_refused(client, world):
    _login(client, world.lead)
    url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
    past = (timezone.localtime() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(url, _sbar(to_user=world.nurse.pk, due_at=past))
    assert response.status_code == 422
    assert "must be in the future" in response.content.decode()


def test_outsider_and_other_team_get_404_for_the_form_and_the_handoff(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    for user in (world.outsider, world.other_team_nurse, world.admin):
        _login(client, user)
        create = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
        assert client.get(create).status_code == 404
        assert client.post(create, _sbar(to_user=world.nurse.pk)).status_code == 404
        detail = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
        assert client.get(detail).status_code == 404
        assert client.post(detail, {"action": "accept"}).status_code == 404
    assert Handoff.objects.count() == 1
    assert Handoff.objects.get().status == "requested"


def test_emergency_access_reader_sees_the_handoff_but_cannot_answer_it(client, world):
    handoff = _handoff(world, to_discipline=f.discipline("nursing"))
    team_services.emergency_access_open(
        by=world.outsider, patient=world.patient, reason="Unconscious in the ED"
    )
    _login(client, world.outsider)
    detail = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    assert client.get(detail).status_code == 200
    assert client.post(detail, {"action": "accept"}).status_code == 403
    handoff.refresh_from_db()
    assert handoff.status == "requested"


# ---------------------------------------------------------------------------
# Answering
# ---------------------------------------------------------------------------
def test_receiver_sees_only_the_legal_buttons(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    _login(client, world.nurse)
    html = client.get(reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})).content.decode()
    assert 'value="accept"' in html and 'value="reject"' in html
    assert 'value="complete"' not in html and 'value="start"' not in html
    _login(client, world.pharmacist)
    html = client.get(reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})).content.decode()
    assert 'value="accept"' not in html and 'name="action"' not in html


def test_accept_start_complete_along_legal_transitions(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    _login(client, world.nurse)
    url = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    assert _answer(client, url, handoff, {"action": "complete"}).status_code == 409  # not accepted yet
    for action, status in [("accept", "accepted"), ("start", "in-progress"), ("complete", "completed")]:
        assert _answer(client, url, handoff, {"action": action}).status_code == 302
        handoff.refresh_from_db()
        assert handoff.status == status
    assert 'name="action"' not in client.get(url).content.decode()


def test_second_acceptance_of_a_queue_handoff_says_who_accepted_it(client, world):
    second_nurse = f.UserFactory(
        username="nurse3", first_name="Nia", last_name="Second", disciplines=["nursing"]
    )
    team_services.membership_add(
        patient=world.patient,
        user=second_nurse,
        discipline=f.discipline("nursing"),
        start_date=timezone.localdate() - dt.timedelta(days=1),
    )
    handoff = _handoff(world, to_discipline=f.discipline("nursing"))
    url = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    _login(client, world.nurse)
    assert _answer(client, url, handoff, {"action": "accept"}).status_code == 302
    _login(client, second_nurse)
    # the second nurse opened the page before the first accepted it
    response = client.post(url, {"action": "accept", "expected_version": 1})
    assert response.status_code == 409
    assert f"already accepted by {world.nurse.display_name}" in response.content.decode()
    handoff.refresh_from_db()
    assert handoff.accepted_by == world.nurse


def test_rejecting_needs_a_reason(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    _login(client, world.nurse)
    url = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    response = _answer(client, url, handoff, {"action": "reject", "reason": " "})
    assert response.status_code == 422
    assert "Give a reason" in response.content.decode()
    handoff.refresh_from_db()
    assert handoff.status == "requested"
    assert (
        _answer(client, url, handoff, {"action": "reject", "reason": "Not a nursing task"}).status_code == 302
    )
    handoff.refresh_from_db()
    assert (handoff.status, handoff.status_reason) == ("rejected", "Not a nursing task")


def test_only_sender_or_case_manager_can_cancel(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    url = reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    _login(client, world.pharmacist)
    assert _answer(client, url, handoff, {"action": "cancel"}).status_code == 409
    _login(client, world.case_manager)
    assert _answer(client, url, handoff, {"action": "cancel"}).status_code == 302
    handoff.refresh_from_db()
    assert handoff.status == "cancelled"


# ---------------------------------------------------------------------------
# Inbox and the case manager's view
# ---------------------------------------------------------------------------
def test_inbox_lists_handoffs_to_me_and_my_queues_and_my_notifications(client, world):
    mine = _handoff(world, to_user=world.nurse)
    queue = _handoff(world, to_discipline=f.discipline("nursing"))
    not_mine = _handoff(world, to_user=world.pharmacist)
    _login(client, world.nurse)
    response = client.get(reverse("team:inbox"))
    assert response.status_code == 200
    ids = [h.pk for h in response.context["handoffs"]]
    assert ids == [mine.pk, queue.pk] or sorted(ids) == sorted([mine.pk, queue.pk])
    assert not_mine.pk not in ids
    assert {n.object_id for n in response.context["notifications"]} == {mine.pk, queue.pk}


def test_inbox_shows_nothing_of_a_patient_the_user_cannot_see(client, world):
    _handoff(world, to_discipline=f.discipline("nursing"))
    _login(client, world.other_team_nurse)
    response = client.get(reverse("team:inbox"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Alice" not in html and "Team, Alice" not in html
    assert response.context["handoffs"] == [] and response.context["notifications"] == []


def test_notification_of_a_patient_no_longer_visible_disappears_from_the_inbox(client, world):
    _handoff(world, to_user=world.nurse)
    team_services.membership_end(membership=world.nurse.memberships.get(patient=world.patient))
    _login(client, world.nurse)
    response = client.get(reverse("team:inbox"))
    assert response.context["notifications"] == []
    n = Notification.objects.get(recipient=world.nurse)
    assert (
        client.get(reverse("team:notification_detail", kwargs={"notification_id": n.pk})).status_code == 404
    )


def test_inbox_query_count_does_not_grow_with_rows(client, world, django_assert_max_num_queries):
    _login(client, world.nurse)
    _handoff(world, to_user=world.nurse)
    client.get(reverse("team:inbox"))
    for _ in range(15):
        _handoff(world, to_user=world.nurse)
        _handoff(world, to_discipline=f.discipline("nursing"))
    with django_assert_max_num_queries(12):
        response = client.get(reverse("team:inbox"))
    assert len(response.context["handoffs"]) == 31


def test_opening_a_notification_marks_it_read_and_another_users_is_404(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    n = Notification.objects.get(recipient=world.nurse)
    url = reverse("team:notification_detail", kwargs={"notification_id": n.pk})
    _login(client, world.pharmacist)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    n.refresh_from_db()
    assert n.read_at is None
    _login(client, world.nurse)
    # the link opens what it is about directly and marks itself read
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})
    n.refresh_from_db()
    assert n.read_at is not None


def test_mark_all_read_touches_only_my_notifications(client, world):
    _handoff(world, to_user=world.nurse)
    _handoff(world, to_user=world.pharmacist)
    _login(client, world.nurse)
    assert client.post(reverse("team:inbox")).status_code == 302
    assert not Notification.objects.filter(recipient=world.nurse, read_at__isnull=True).exists()
    assert Notification.objects.filter(recipient=world.pharmacist, read_at__isnull=True).exists()


def test_case_manager_sees_all_open_handoffs_of_their_patients_with_overdue_marked(client, world):
    late = _handoff(world, to_user=world.nurse, due_in_hours=-2)
    open_ = _handoff(world, to_discipline=f.discipline("pharmacy"))
    done = _handoff(world, to_user=world.nurse)
    handoff_services.handoff_accept(
        access=patient_access(world.nurse, done.patient), handoff=done, by=world.nurse
    )
    handoff_services.handoff_set_status(
        access=patient_access(world.nurse, done.patient), handoff=done, by=world.nurse, status="completed"
    )
    other = handoff_services.handoff_create(
        by=world.other_team_nurse,
        access=patient_access(world.other_team_nurse, world.other_patient),
        to_discipline=f.discipline("nursing"),
        due_at=timezone.now() + dt.timedelta(hours=1),
        situation="s",
        background="b",
        assessment="a",
        recommendation="r",
    )
    _login(client, world.case_manager)
    response = client.get(reverse("team:open_handoffs"))
    ids = {h.pk for h in response.context["handoffs"]}
    assert ids == {late.pk, open_.pk}
    assert other.pk not in ids and done.pk not in ids
    assert "Overdue" in response.content.decode()
    _login(client, world.nurse)  # not a case manager: sees none
    assert client.get(reverse("team:open_handoffs")).context["handoffs"] == []


def test_empty_answer_is_a_form_error_and_changes_nothing(client, world):
    handoff = _handoff(world, to_user=world.nurse)
    _login(client, world.nurse)
    response = client.post(
        reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk}), {"expected_version": 1}
    )
    assert response.status_code == 422
    assert "Choose one of the answers" in response.content.decode()
    handoff.refresh_from_db()
    assert (handoff.status, handoff.version) == ("requested", 1)


def test_empty_handoff_form_post_answers_with_every_required_field(client, world):
    _login(client, world.lead)
    response = client.post(reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk}), {})
    assert response.status_code == 422
    html = response.content.decode()
    for name in ("situation", "background", "assessment", "recommendation", "due_at", "to_user"):
        assert f'id="{name}-error"' in html
    assert not Handoff.objects.exists()


def test_answering_a_handoff_through_access_to_another_patient_changes_nothing(world):
    """The services take the caller's access: a handoff of another patient is missing
    there, whatever the caller may do on the patient they hold access to."""
    handoff = _handoff(world, to_user=world.nurse)
    elsewhere = patient_access(world.nurse, world.other_patient)
    for answer in (
        lambda: handoff_services.handoff_accept(access=elsewhere, by=world.nurse, handoff=handoff),
        lambda: handoff_services.handoff_reject(
            access=elsewhere, by=world.nurse, handoff=handoff, reason="No"
        ),
        lambda: handoff_services.handoff_set_status(
            access=elsewhere, by=world.nurse, handoff=handoff, status="cancelled"
        ),
    ):
        with pytest.raises(Handoff.DoesNotExist):
            answer()
    handoff.refresh_from_db()
    assert (handoff.status, handoff.version) == ("requested", 1)
