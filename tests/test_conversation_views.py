"""Conversation pages as a member, an outsider and an excluded discipline see them: the
chart's list, the thread and its polled messages, the inbox tab and the nav's count;
form errors for bad input with nothing written; turning a message into an activity or a
handoff, linked both ways."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careplans.models import Activity
from careteam import conversations as conv
from careteam.models import AuditEvent, Conversation, Handoff, Message
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _start(world, user, text="Is the new inhaler helping?", **kwargs):
    return conv.conversation_start(
        access=patient_access(user, world.patient),
        by=user,
        subject=kwargs.pop("subject", "Inhaler"),
        text=text,
        **kwargs,
    )


def _url(name, c, **extra):
    return reverse(
        f"conversations:{name}", kwargs={"patient_id": c.patient_id, "conversation_id": c.pk, **extra}
    )


def test_a_reply_from_the_page_appears_for_a_colleague_polling_the_thread(client, world):
    c = _start(world, world.nurse)
    client.force_login(world.pharmacist)
    page = client.get(_url("detail", c))
    assert page.status_code == 200 and "Is the new inhaler helping?" in page.content.decode()
    state = page.context["state"]
    assert client.get(_url("messages", c), {"state": state}, **HX).status_code == 204

    other = client.__class__()
    other.force_login(world.nurse)
    answer = other.post(_url("detail", c), {"text": "Yes, far fewer night wakings"}, **HX)
    assert answer.status_code == 200 and "far fewer night wakings" in answer.content.decode()

    poll = client.get(_url("messages", c), {"state": state}, **HX)
    assert poll.status_code == 200 and "far fewer night wakings" in poll.content.decode()


def test_opening_a_conversation_is_audited_and_marks_it_read(client, world):
    c = _start(world, world.nurse)
    client.force_login(world.pharmacist)
    assert conv.unread_conversation_count(world.pharmacist) == 1
    client.get(_url("detail", c))
    assert conv.unread_conversation_count(world.pharmacist) == 0
    assert AuditEvent.objects.filter(
        user=world.pharmacist, action="view", object_type="careteam.conversation", object_id=str(c.pk)
    ).exists()


def test_the_nav_loads_the_unread_count_in_one_query(client, world, django_assert_max_num_queries):
    _start(world, world.nurse, text="@pharm1 two unread things")
    _start(world, world.lead, subject="Second")
    url = reverse("team:conversations_unread")
    client.force_login(world.pharmacist)
    assert url in client.get(reverse("worklist")).content.decode()
    client.get(url)
    with django_assert_max_num_queries(3):  # session, user, the count
        body = client.get(url, **HX).content.decode()
    assert 'aria-label="2 unread">2</span>' in body
    client.force_login(world.outsider)
    assert "nav-count" not in client.get(url, **HX).content.decode()


def test_the_text_is_plain_with_safe_links(client, world):
    c = _start(
        world,
        world.nurse,
        text="<script>alert(1)</script> see https://example.org/a?b=1 and javascript:alert(2)",
    )
    client.force_login(world.lead)
    body = client.get(_url("detail", c)).content.decode()
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert '<a href="https://example.org/a?b=1" rel="nofollow">https://example.org/a?b=1</a>' in body
    assert 'href="javascript:' not in body


def test_the_chart_and_the_patient_list_show_the_conversation(client, world):
    c = _start(world, world.nurse, subject="Ride to dialysis")
    client.force_login(world.lead)
    for url in (
        reverse("patient_chart", kwargs={"patient_id": world.patient.pk}),
        reverse("conversations:patient_list", kwargs={"patient_id": world.patient.pk}),
        reverse("team:conversations"),
    ):
        body = client.get(url).content.decode()
        assert "Ride to dialysis" in body and _url("detail", c) in body


def test_the_inbox_filters_and_polls(client, world):
    need = f.NeedFactory(care_plan=world.plan)
    _start(world, world.nurse, subject="General talk")
    _start(world, world.nurse, subject="Need talk", about=need, text="@pharm1 about this need")
    client.force_login(world.pharmacist)
    url = reverse("team:conversations")
    both = client.get(url).content.decode()
    assert "General talk" in both and "Need talk" in both
    only = client.get(url, {"mentions": "1"}).content.decode()
    assert "Need talk" in only and "General talk" not in only
    about = client.get(url, {"about": "patient"}).content.decode()
    assert "General talk" in about and "Need talk" not in about
    state = client.get(url, **HX).context["state"]
    assert client.get(url, {"state": state}, **HX).status_code == 204
    _start(world, world.lead, subject="Newest")
    assert "Newest" in client.get(url, {"state": state}, **HX).content.decode()


# ---------------------------------------------------------------------------
# Who may see it
# ---------------------------------------------------------------------------
def test_an_outsider_gets_404_everywhere_and_no_count(client, world):
    c = _start(world, world.nurse, subject="OUTSIDER-MUST-NOT-SEE")
    m = c.messages.get()
    client.force_login(world.outsider)
    for url, method in [
        (_url("detail", c), "get"),
        (_url("detail", c), "post"),
        (_url("messages", c), "get"),
        (_url("message_edit", c, message_id=m.pk), "get"),
        (_url("message_retract", c, message_id=m.pk), "post"),
        (_url("make_activity", c, message_id=m.pk), "get"),
        (reverse("conversations:patient_list", kwargs={"patient_id": world.patient.pk}), "get"),
        (reverse("conversations:new", kwargs={"patient_id": world.patient.pk}), "post"),
    ]:
        assert (
            getattr(client, method)(url, {"text": "hi"} if method == "post" else None).status_code == 404
        ), url
    assert "OUTSIDER-MUST-NOT-SEE" not in client.get(reverse("team:conversations")).content.decode()
    assert Message.objects.count() == 1


def test_a_conversation_on_another_patients_url_is_404(client, world):
    c = _start(world, world.nurse)
    other = Conversation.objects.filter(pk=c.pk).first()
    client.force_login(world.nurse)
    url = reverse(
        "conversations:detail", kwargs={"patient_id": world.other_patient.pk, "conversation_id": other.pk}
    )
    assert client.get(url).status_code == 404


def test_a_conversation_about_a_sensitive_need_is_404_for_an_excluded_discipline(client, world):
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    c = _start(world, world.behavioural, subject="SENSITIVE-TALK-Q7", about=need)
    client.force_login(world.nurse)
    assert client.get(_url("detail", c)).status_code == 404
    assert client.get(_url("messages", c)).status_code == 404
    for url in (
        reverse("patient_chart", kwargs={"patient_id": world.patient.pk}),
        reverse("conversations:patient_list", kwargs={"patient_id": world.patient.pk}),
        reverse("team:conversations"),
        reverse("worklist"),
    ):
        body = client.get(url).content.decode()
        assert (
            "SENSITIVE-TALK-Q7" not in body
            and 'aria-label="1 unread">1</span></a> <a href="/referrals' not in body
        )
    assert conv.unread_conversation_count(world.nurse) == 0
    client.force_login(world.lead)
    assert client.get(_url("detail", c)).status_code == 200


def test_emergency_access_reads_but_cannot_post(client, world):
    from careteam import services as team_services

    c = _start(world, world.nurse)
    glass = f.UserFactory(username="glass9", disciplines=["nursing"])
    team_services.emergency_access_open(by=glass, patient=world.patient, reason="Found unresponsive")
    client.force_login(glass)
    assert client.get(_url("detail", c)).status_code == 200
    assert client.post(_url("detail", c), {"text": "hello"}).status_code == 403
    need = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    hidden = _start(world, world.behavioural, about=need)
    m = hidden.messages.get()
    for name in ("message_edit", "message_retract", "make_activity"):
        assert client.post(_url(name, hidden, message_id=m.pk)).status_code == 404
    assert client.post(_url("detail", hidden), {"text": "x"}).status_code == 404
    assert Message.objects.count() == 2


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "Write the message."),
        ("y" * 4001, "Ensure this value has at most 4000 characters (it has 4001)."),
        ("hello @outsider1", "@outsider1 is not on this patient&#x27;s team."),
    ],
)
def test_a_bad_reply_shows_a_form_error_and_writes_nothing(client, world, text, error):
    c = _start(world, world.nurse)
    client.force_login(world.pharmacist)
    response = client.post(_url("detail", c), {"text": text})
    assert response.status_code == 422
    assert error in response.content.decode()
    assert Message.objects.count() == 1


def test_a_bad_new_conversation_shows_errors_and_writes_nothing(client, world):
    client.force_login(world.nurse)
    url = reverse("conversations:new", kwargs={"patient_id": world.patient.pk})
    response = client.post(url, {"subject": "Hi", "text": "@nurse2 look"})
    assert response.status_code == 422 and "@nurse2 is not on this patient" in response.content.decode()
    response = client.post(url, {"subject": "", "text": "No subject"})
    assert response.status_code == 422 and "Give the conversation a subject." in response.content.decode()
    hidden = f.NeedFactory(care_plan=world.plan, domain="behavioural", sensitivity=world.behavioural_health)
    assert client.get(url, {"about": f"need:{hidden.pk}"}).status_code == 404
    response = client.post(url, {"subject": "x", "text": "y", "about": f"need:{hidden.pk}"})
    assert response.status_code == 422 and "No such item" in response.content.decode()
    assert not Conversation.objects.exists()
    response = client.post(url, {"subject": "Rides", "text": "Who books the rides?"})
    assert response.status_code == 302 and Conversation.objects.count() == 1


def test_editing_late_is_409_and_another_members_edit_403(client, world):
    c = _start(world, world.nurse, text="Original")
    m = c.messages.get()
    edit = _url("message_edit", c, message_id=m.pk)
    client.force_login(world.pharmacist)
    assert client.post(edit, {"text": "Hijack", "expected_version": 1}).status_code == 403
    assert client.post(_url("message_retract", c, message_id=m.pk)).status_code == 403
    client.force_login(world.nurse)
    assert client.post(edit, {"text": "Fixed"}).status_code == 428
    Message.objects.filter(pk=m.pk).update(created_at=timezone.now() - dt.timedelta(minutes=6))
    page = client.get(edit)  # the form, with the reason it can no longer be saved
    assert page.status_code == 200 and "can no longer be edited" in page.content.decode()
    response = client.post(edit, {"text": "Fixed", "expected_version": 1})
    assert response.status_code == 409 and "edited for 5 minutes" in response.content.decode()
    m.refresh_from_db()
    assert m.text == "Original" and m.version == 1


def test_the_author_edits_then_retracts_from_the_page(client, world):
    c = _start(world, world.nurse, text="Dose 5 mg")
    m = c.messages.get()
    client.force_login(world.nurse)
    response = client.post(
        _url("message_edit", c, message_id=m.pk), {"text": "Dose 50 mg", "expected_version": 1}
    )
    assert response.status_code == 302
    assert client.post(_url("message_retract", c, message_id=m.pk)).status_code == 302
    body = client.get(_url("detail", c)).content.decode()
    assert "Dose 50 mg" not in body and "Dose 5 mg" not in body and "<em>retracted</em>" in body


# ---------------------------------------------------------------------------
# Turning a message into work
# ---------------------------------------------------------------------------
def test_make_this_an_activity_prefills_the_form_and_links_both_ways(client, world):
    c = _start(world, world.nurse, text="Book a home visit next week\nShe prefers mornings")
    m = c.messages.get()
    client.force_login(world.nurse)
    url = _url("make_activity", c, message_id=m.pk)
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["form"].initial["title"] == "Book a home visit next week"
    response = client.post(
        url,
        {
            "from-message-title": "Book a home visit next week",
            "from-message-description": m.text,
            "from-message-owner_discipline": f.discipline("nursing").pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    activity = Activity.objects.get(title="Book a home visit next week")
    m.refresh_from_db()
    assert m.activity == activity and list(activity.from_messages.all()) == [m]
    assert "Book a home visit next week</a>" in client.get(_url("detail", c)).content.decode()


def test_hand_this_off_prefills_the_sbar_form_and_links_both_ways(client, world):
    c = _start(world, world.nurse, text="Needs a pharmacist review of the new doses")
    m = c.messages.get()
    client.force_login(world.nurse)
    url = reverse("team:handoff_create", kwargs={"patient_id": world.patient.pk})
    page = client.get(url, {"from_message": m.pk})
    assert page.status_code == 200 and page.context["form"].initial["situation"] == m.text
    due = (timezone.localtime() + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        url,
        {
            "from_message": m.pk,
            "to_user": world.pharmacist.pk,
            "situation": m.text,
            "background": "Started on Monday",
            "assessment": "Possible interaction",
            "recommendation": "Review today",
            "due_at": due,
            "priority": "routine",
            "kind": "patient",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    handoff = Handoff.objects.get()
    m.refresh_from_db()
    assert m.handoff == handoff
    detail = client.get(reverse("team:handoff_detail", kwargs={"handoff_id": handoff.pk})).content.decode()
    assert f"#message-{m.pk}" in detail
    other = f.UserFactory(username="sneaky", disciplines=["nursing"])
    client.force_login(other)
    assert client.get(url, {"from_message": m.pk}).status_code == 404
