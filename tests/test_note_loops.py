"""Every comment and proposal loop closes: the item's owner and assignee are told,
@mentions reach team members who may see the item (and refuse the note otherwise), and a
proposal is accepted through the normal item update, or declined with a reason, and its
proposer told."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from careplans import services as plan_services
from careplans.models import Note
from careteam.models import AuditEvent, Notification
from careteam.permissions import patient_access
from tests import factories as f

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _access(world, user):
    return patient_access(user, world.patient)


def _kinds(user) -> list[str]:
    return sorted(Notification.objects.filter(recipient=user).values_list("kind", flat=True))


def _post_note(client, world, **data):
    return client.post(
        reverse("careplans:note_create", kwargs={"plan_id": world.plan.pk}),
        {f"note-{k}": v for k, v in data.items()},
        **HX,
    )


# ---------------------------------------------------------------------------
# Owners and assignees
# ---------------------------------------------------------------------------
def test_a_comment_notifies_the_assignee_and_names_the_item_but_not_its_author(client, world):
    act = f.ActivityFactory(care_plan=world.plan, title="Arrange rides to clinic", assigned_to=world.nurse)
    client.force_login(world.pharmacist)
    response = _post_note(client, world, text="The bus pass ran out", kind="comment", activity=act.pk)
    assert response.status_code == 200
    note = Note.objects.get(activity=act)
    told = Notification.objects.get(recipient=world.nurse)
    assert told.kind == "note-comment"
    assert told.title.startswith("Comment on activity 'Arrange rides to clinic' by ")
    assert told.object_type == "careplans.note" and told.object_id == note.pk
    assert told.url == f"/plans/activities/{act.pk}/#note-{note.pk}"
    assert told.body == "The bus pass ran out"
    assert not Notification.objects.filter(recipient=world.pharmacist).exists()


def test_without_an_assignee_the_owning_disciplines_members_are_told(world):
    second_nurse = f.UserFactory(username="nurse3", disciplines=["nursing"])
    from careteam import services as team_services

    team_services.membership_add(patient=world.patient, user=second_nurse, discipline=f.discipline("nursing"))
    act = f.ActivityFactory(
        care_plan=world.plan, title="Wound check", owner_discipline=f.discipline("nursing")
    )
    plan_services.note_add(
        access=_access(world, world.nurse),
        plan=world.plan,
        by=world.nurse,
        text="Dressing is lifting",
        kind="proposal",
        target=act,
    )
    # the author is a nurse too: only the other nurse is told
    assert _kinds(second_nurse) == ["note-proposal"]
    assert _kinds(world.nurse) == []
    assert Notification.objects.get(recipient=second_nurse).title.startswith(
        "Change proposed to activity 'Wound check'"
    )
    assert not Notification.objects.exclude(recipient=second_nurse).exists()


def test_a_goal_comment_notifies_its_owning_discipline_and_a_need_comment_its_filer(world):
    goal = f.GoalFactory(
        care_plan=world.plan, description="Walk 200 m", owner_discipline=f.discipline("pharmacy")
    )
    need = f.NeedFactory(care_plan=world.plan, description="No ride", created_by=world.lead)
    access = _access(world, world.nurse)
    plan_services.note_add(access=access, plan=world.plan, by=world.nurse, text="Progress?", target=goal)
    plan_services.note_add(access=access, plan=world.plan, by=world.nurse, text="Still?", target=need)
    assert _kinds(world.pharmacist) == ["note-comment"]
    assert _kinds(world.lead) == ["note-comment"]
    assert "goal 'Walk 200 m'" in Notification.objects.get(recipient=world.pharmacist).title
    assert "need 'No ride'" in Notification.objects.get(recipient=world.lead).title


def test_an_owner_no_longer_on_the_team_is_not_told(world):
    act = f.ActivityFactory(care_plan=world.plan, assigned_to=world.outsider)
    plan_services.note_add(
        access=_access(world, world.nurse), plan=world.plan, by=world.nurse, text="Hello", target=act
    )
    assert not Notification.objects.exists()


def test_a_sensitive_items_comment_does_not_notify_an_excluded_discipline(world):
    bh = world.behavioural_health
    act = f.ActivityFactory(
        care_plan=world.plan, title="Counselling", owner_discipline=f.discipline("nursing"), sensitivity=bh
    )
    plan_services.note_add(
        access=_access(world, world.case_manager),
        plan=world.plan,
        by=world.case_manager,
        text="Next session Tuesday",
        target=act,
    )
    # the owning discipline (nursing) may not see behavioural-health items
    assert not Notification.objects.filter(recipient=world.nurse).exists()
    note = Note.objects.get(activity=act)
    assert note.sensitivity_id == bh.pk


def test_a_sensitive_item_cannot_mention_an_excluded_discipline(client, world):
    act = f.ActivityFactory(
        care_plan=world.plan,
        title="Counselling",
        owner_discipline=f.discipline("behavioural-health"),
        sensitivity=world.behavioural_health,
    )
    client.force_login(world.case_manager)
    response = _post_note(client, world, text="@nurse1 please help", kind="comment", activity=act.pk)
    assert response.status_code == 422
    assert "@nurse1 may not see this item" in response.content.decode()
    assert not Note.objects.exists()
    assert not Notification.objects.exists()
    # the behavioural-health clinician may be mentioned
    response = _post_note(client, world, text="@BH1 please help", kind="comment", activity=act.pk)
    assert response.status_code == 200
    assert _kinds(world.behavioural) == ["note-mention"]


# ---------------------------------------------------------------------------
# Mentions
# ---------------------------------------------------------------------------
def test_mentions_are_parsed_once_each_ignoring_emails_and_full_stops():
    text = "Ask @nurse1 and @Pharm1. Cc @nurse1, not mail@example.org; @a.b-c_d."
    assert plan_services.mentions_in(text) == ["nurse1", "Pharm1", "a.b-c_d"]
    assert plan_services.mentions_in("no handles here, just @") == []


def test_a_mention_notifies_that_team_member(client, world):
    client.force_login(world.nurse)
    response = _post_note(client, world, text="@PHARM1 can you check the doses?", kind="comment")
    assert response.status_code == 200
    told = Notification.objects.get(recipient=world.pharmacist)
    assert told.kind == "note-mention"
    assert told.title.startswith(f"{world.nurse.display_name} mentioned you on care plan 'Team plan'")
    assert told.url.startswith(f"/plans/{world.plan.pk}/#note-")
    assert Notification.objects.count() == 1


def test_a_mentioned_owner_is_told_once(world):
    act = f.ActivityFactory(care_plan=world.plan, assigned_to=world.pharmacist)
    plan_services.note_add(
        access=_access(world, world.nurse), plan=world.plan, by=world.nurse, text="@pharm1 see", target=act
    )
    assert _kinds(world.pharmacist) == ["note-mention"]


@pytest.mark.parametrize("handle", ["outsider1", "nurse2", "nobody-at-all", "admin1"])
def test_a_mention_of_anyone_off_the_team_refuses_the_note_and_writes_nothing(client, world, handle):
    client.force_login(world.nurse)
    events = AuditEvent.objects.filter(action="create").count()
    response = _post_note(client, world, text=f"Loop in @{handle} and @pharm1", kind="comment")
    assert response.status_code == 422
    assert f"@{handle} is not on this patient&#x27;s team" in response.content.decode()
    assert not Note.objects.exists()
    assert not Notification.objects.exists()
    assert AuditEvent.objects.filter(action="create").count() == events


def test_a_former_member_cannot_be_mentioned(world):
    import datetime as dt

    from django.utils import timezone

    from careteam.models import TeamMembership

    TeamMembership.objects.filter(patient=world.patient, user=world.pharmacist).update(
        end_date=timezone.localdate() - dt.timedelta(days=1)
    )
    with pytest.raises(ValidationError) as exc:
        plan_services.note_add(
            access=_access(world, world.nurse), plan=world.plan, by=world.nurse, text="@pharm1 hi"
        )
    assert exc.value.message_dict["text"] == ["@pharm1 is not on this patient's team."]
    assert not Note.objects.exists()


# ---------------------------------------------------------------------------
# Proposals: accepted through the normal update, or declined with a reason
# ---------------------------------------------------------------------------
def _propose(client, act, **values):
    prefix = f"propose-activity-{act.pk}"
    data = {
        "title": act.title,
        "description": act.description,
        "owner_discipline": act.owner_discipline_id,
        "assigned_to": act.assigned_to_id or "",
        "due_date": act.due_date.isoformat() if act.due_date else "",
        "status": "",
        "status_reason": "",
        "text": "Please move it",
        "expected_version": act.version,
    }
    data.update(values)
    return client.post(
        reverse("careplans:activity_propose", kwargs={"activity_id": act.pk}),
        {f"{prefix}-{k}": v for k, v in data.items()},
        **HX,
    )


def _decide(client, note, action: str, **data):
    return client.post(reverse(f"careplans:note_{action}", kwargs={"note_id": note.pk}), data, **HX)


@pytest.fixture
def rides(world):
    return f.ActivityFactory(
        care_plan=world.plan,
        title="Arrange rides to clinic",
        owner_discipline=f.discipline("nursing"),
        assigned_to=world.nurse,
    )


def test_a_proposal_records_only_the_fields_changed_as_stored_values(client, world, rides):
    client.force_login(world.pharmacist)
    response = _propose(client, rides, due_date="2031-05-06", status="in-progress", text="Start now @nurse1")
    assert response.status_code == 200, response.content.decode()
    note = Note.objects.get(activity=rides)
    assert note.kind == "proposal" and note.status == "open" and note.target_version == 1
    assert note.changes == {
        "due_date": {"from": None, "to": "2031-05-06"},
        "status": {"from": "not-started", "to": "in-progress"},
    }
    # the assignee is mentioned too: told once
    assert _kinds(world.nurse) == ["note-mention"]
    rides.refresh_from_db()
    assert rides.due_date is None and rides.version == 1


def test_a_proposal_is_checked_like_a_save(client, world, rides):
    client.force_login(world.pharmacist)
    illegal = _propose(client, rides, status="completed")
    assert illegal.status_code == 422
    no_reason = _propose(client, rides, status="cancelled")
    assert no_reason.status_code == 422
    assert "Say why" in no_reason.content.decode()
    outsider = _propose(client, rides, assigned_to=world.other_team_nurse.pk)
    assert outsider.status_code == 422
    assert not Note.objects.exists()
    with pytest.raises(ValidationError):
        plan_services.note_add(
            access=_access(world, world.pharmacist),
            plan=world.plan,
            by=world.pharmacist,
            text="Hide it",
            kind="proposal",
            target=rides,
            changes={"sensitivity": world.behavioural_health},
        )
    assert not Note.objects.exists()


def test_accepting_a_proposal_applies_it_with_history_naming_the_proposer(client, world, rides):
    client.force_login(world.pharmacist)
    _propose(client, rides, due_date="2031-05-06", status="scheduled")
    note = Note.objects.get(activity=rides)
    client.force_login(world.nurse)
    response = _decide(client, note, "accept")
    assert response.status_code == 200, response.content.decode()
    rides.refresh_from_db()
    assert str(rides.due_date) == "2031-05-06" and rides.status == "scheduled" and rides.version == 2
    row = rides.history.latest("history_date")
    assert row.history_user == world.nurse
    assert world.pharmacist.display_name in row.history_change_reason
    assert AuditEvent.objects.filter(
        action="update", object_type="careplans.activity", detail__contains=world.pharmacist.display_name
    ).exists()
    note.refresh_from_db()
    assert note.status == "accepted" and note.decided_by == world.nurse and note.decided_at
    told = Notification.objects.get(recipient=world.pharmacist, kind="proposal-decided")
    assert told.title.startswith("Your proposal on activity 'Arrange rides to clinic' was accepted by ")
    # the history page names the proposer
    history = client.get(reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}))
    assert f"Proposed by {world.pharmacist.display_name}" in history.content.decode()
    # decided once
    again = _decide(client, note, "accept")
    assert again.status_code == 422
    assert Notification.objects.filter(kind="proposal-decided").count() == 1


def test_accepting_a_proposal_made_before_the_item_changed_is_a_conflict(client, world, rides):
    client.force_login(world.pharmacist)
    _propose(client, rides, due_date="2031-05-06")
    note = Note.objects.get(activity=rides)
    plan_services.item_update(
        access=_access(world, world.nurse),
        item=rides,
        by=world.nurse,
        changes={"description": "Taxi voucher"},
        expected_version=1,
    )
    client.force_login(world.case_manager)
    response = _decide(client, note, "accept")
    assert response.status_code == 409
    assert "was changed after this proposal was made" in response.content.decode()
    rides.refresh_from_db()
    assert rides.due_date is None and rides.description == "Taxi voucher" and rides.version == 2
    note.refresh_from_db()
    assert note.status == "open" and note.decided_by is None
    assert not Notification.objects.filter(kind="proposal-decided").exists()
    assert AuditEvent.objects.filter(outcome="denied", detail__contains="stale version").exists()


def test_declining_a_proposal_needs_a_reason_and_tells_the_proposer(client, world, rides):
    client.force_login(world.pharmacist)
    _propose(client, rides, due_date="2031-05-06")
    note = Note.objects.get(activity=rides)
    client.force_login(world.nurse)
    response = _decide(client, note, "decline", reason="   ")
    assert response.status_code == 422
    assert "Say why you decline" in response.content.decode()
    note.refresh_from_db()
    assert note.status == "open"
    response = _decide(client, note, "decline", reason="The clinic moved the appointment")
    assert response.status_code == 200
    note.refresh_from_db()
    assert note.status == "declined" and note.decision_reason == "The clinic moved the appointment"
    rides.refresh_from_db()
    assert rides.due_date is None and rides.version == 1
    told = Notification.objects.get(recipient=world.pharmacist, kind="proposal-decided")
    assert told.title.endswith(": The clinic moved the appointment")


def test_who_may_not_edit_the_item_gets_403_and_off_the_team_404(client, world, rides):
    client.force_login(world.pharmacist)
    _propose(client, rides, due_date="2031-05-06")
    note = Note.objects.get(activity=rides)
    for action in ("accept", "decline"):
        client.force_login(world.behavioural)
        assert _decide(client, note, action, reason="No").status_code == 403
        for user in (world.outsider, world.other_team_nurse, world.admin):
            client.force_login(user)
            assert _decide(client, note, action, reason="No").status_code == 404
    note.refresh_from_db()
    rides.refresh_from_db()
    assert note.status == "open" and rides.version == 1
    assert not Notification.objects.filter(kind="proposal-decided").exists()


def test_a_sensitive_items_proposal_is_hidden_from_excluded_disciplines(client, world):
    act = f.ActivityFactory(
        care_plan=world.plan, owner_discipline=f.discipline("nursing"), sensitivity=world.behavioural_health
    )
    note = plan_services.note_add(
        access=_access(world, world.behavioural),
        plan=world.plan,
        by=world.behavioural,
        text="Later",
        kind="proposal",
        target=act,
        changes={"due_date": __import__("datetime").date(2031, 1, 2)},
    )
    client.force_login(world.nurse)
    assert _decide(client, note, "accept").status_code == 404
    client.force_login(world.lead)
    assert _decide(client, note, "accept").status_code == 200
    act.refresh_from_db()
    assert str(act.due_date) == "2031-01-02"


def test_the_owner_sees_accept_and_decline_on_the_item_page_and_the_editor(client, world, rides):
    client.force_login(world.pharmacist)
    _propose(client, rides, due_date="2031-05-06")
    note = Note.objects.get(activity=rides)
    page = reverse("careplans:activity_detail", kwargs={"activity_id": rides.pk})
    editor = reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})
    accept = reverse("careplans:note_accept", kwargs={"note_id": note.pk})
    for url in (page, editor):
        body = client.get(url).content.decode()
        assert f'id="note-{note.pk}"' in body and "Due date" in body
        assert accept not in body
    client.force_login(world.nurse)
    for url in (page, editor):
        body = client.get(url).content.decode()
        assert accept in body and "Reason to decline" in body
    # accepting from the item page returns to it
    response = client.post(accept, {"next": "item"})
    assert response.status_code == 302 and response["Location"] == f"{page}#note-{note.pk}"


def test_the_editor_query_count_does_not_grow_with_notes(client, world, django_assert_max_num_queries):
    def add_notes():
        act = f.ActivityFactory(care_plan=world.plan, assigned_to=world.pharmacist)
        goal = f.GoalFactory(care_plan=world.plan, owner_discipline=f.discipline("pharmacy"))
        access = _access(world, world.nurse)
        plan_services.note_add(access=access, plan=world.plan, by=world.nurse, text="See @pharm1", target=act)
        plan_services.note_add(
            access=access,
            plan=world.plan,
            by=world.nurse,
            text="Sooner",
            kind="proposal",
            target=act,
            changes={"due_date": __import__("datetime").date(2031, 1, 2), "assigned_to": world.lead},
        )
        plan_services.note_add(
            access=access,
            plan=world.plan,
            by=world.nurse,
            text="Higher",
            kind="proposal",
            target=goal,
            changes={"priority": "high-priority", "owner_discipline": f.discipline("nursing")},
        )

    add_notes()
    editor = reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})
    client.force_login(world.case_manager)
    client.get(editor)
    with django_assert_max_num_queries(60) as few:
        client.get(editor)
    for _ in range(6):
        add_notes()
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(editor)
    assert len(response.context["editor"].notes) == 21
    assert response.content.decode().count("Reason to decline") == 14


def test_a_goal_hidden_with_its_sensitive_needs_reaches_no_excluded_owner(world):
    goal = f.GoalFactory(
        care_plan=world.plan, description="Fewer panic attacks", owner_discipline=f.discipline("nursing")
    )
    need = f.NeedFactory(care_plan=world.plan, sensitivity=world.behavioural_health, domain="behavioural")
    need.goals.add(goal)
    access = _access(world, world.case_manager)
    plan_services.note_add(
        access=access, plan=world.plan, by=world.case_manager, text="Progress?", target=goal
    )
    assert not Notification.objects.filter(recipient=world.nurse).exists()
    with pytest.raises(ValidationError) as exc:
        plan_services.note_add(
            access=access, plan=world.plan, by=world.case_manager, text="@nurse1?", target=goal
        )
    assert "@nurse1 may not see this item" in str(exc.value)
    plan_services.note_add(access=access, plan=world.plan, by=world.case_manager, text="@bh1 ?", target=goal)
    assert _kinds(world.behavioural) == ["note-mention"]


def test_the_owners_proposal_notification_is_read_once_decided(client, world, rides):
    client.force_login(world.pharmacist)
    _propose(client, rides, due_date="2031-05-06")
    note = Note.objects.get(activity=rides)
    waiting = Notification.objects.get(recipient=world.nurse, kind="note-proposal")
    assert waiting.read_at is None
    client.force_login(world.nurse)
    assert _decide(client, note, "decline", reason="Not needed").status_code == 200
    waiting.refresh_from_db()
    assert waiting.read_at is not None


def test_the_proposal_form_works_without_javascript(client, world, rides):
    client.force_login(world.pharmacist)
    url = reverse("careplans:activity_propose", kwargs={"activity_id": rides.pk})
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Propose a change to this activity" in body and "Send proposal" in body
    assert "<html" in body.lower()
    fragment = client.get(url, **HX).content.decode()
    assert "<html" not in fragment.lower() and "Send proposal" in fragment
    prefix = f"propose-activity-{rides.pk}"
    response = client.post(
        url,
        {
            f"{prefix}-title": "Arrange rides and escort",
            f"{prefix}-owner_discipline": rides.owner_discipline_id,
            f"{prefix}-assigned_to": world.nurse.pk,
            f"{prefix}-text": "An escort is needed",
            f"{prefix}-expected_version": 1,
        },
    )
    note = Note.objects.get(activity=rides)
    assert response.status_code == 302
    assert response["Location"] == f"/plans/activities/{rides.pk}/#note-{note.pk}"
    assert note.changes == {"title": {"from": "Arrange rides to clinic", "to": "Arrange rides and escort"}}
    # a post without the version it was made on is refused
    stale = client.post(url, {f"{prefix}-text": "again", f"{prefix}-title": "X"})
    assert stale.status_code == 428
    assert Note.objects.count() == 1


def test_a_proposal_is_made_on_an_item_not_on_the_plan(world):
    with pytest.raises(ValidationError):
        plan_services.note_add(
            access=_access(world, world.nurse), plan=world.plan, by=world.nurse, text="x", kind="proposal"
        )
    assert not Note.objects.exists()


def test_a_comment_from_the_item_page_answers_with_that_items_notes(client, world, rides):
    other = f.ActivityFactory(care_plan=world.plan, title="Other errand")
    plan_services.note_add(
        access=_access(world, world.nurse),
        plan=world.plan,
        by=world.nurse,
        text="ELSEWHERE-NOTE",
        target=other,
    )
    client.force_login(world.pharmacist)
    response = _post_note(client, world, text="Bus pass?", kind="comment", activity=rides.pk, scope="item")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Comments and proposals on this activity" in body and "Bus pass?" in body
    assert "ELSEWHERE-NOTE" not in body


# ---------------------------------------------------------------------------
# My work: open proposals on items I own
# ---------------------------------------------------------------------------
def test_my_work_lists_open_proposals_on_my_items_only(client, world, rides):
    hidden = f.ActivityFactory(
        care_plan=world.plan,
        title="HIDDEN-COUNSELLING",
        owner_discipline=f.discipline("nursing"),
        sensitivity=world.behavioural_health,
    )
    goal = f.GoalFactory(
        care_plan=world.plan, description="Walk to the shop", owner_discipline=f.discipline("nursing")
    )
    plan_services.note_add(
        access=_access(world, world.pharmacist),
        plan=world.plan,
        by=world.pharmacist,
        text="Sooner",
        kind="proposal",
        target=rides,
        changes={"due_date": __import__("datetime").date(2031, 1, 2)},
    )
    plan_services.note_add(
        access=_access(world, world.pharmacist),
        plan=world.plan,
        by=world.pharmacist,
        text="Later",
        kind="proposal",
        target=goal,
    )
    plan_services.note_add(
        access=_access(world, world.case_manager),
        plan=world.plan,
        by=world.case_manager,
        text="x",
        kind="proposal",
        target=hidden,
    )
    client.force_login(world.nurse)
    body = client.get(reverse("my_work"), {"kind": "proposal"}).content.decode()
    assert "Proposal by" in body and "activity &#x27;Arrange rides to clinic&#x27;" in body
    assert "goal &#x27;Walk to the shop&#x27;" in body
    assert "HIDDEN-COUNSELLING" not in body
    note = Note.objects.get(activity=rides)
    assert f"/plans/activities/{rides.pk}/#note-{note.pk}" in body
    # the proposer and other disciplines are not asked
    client.force_login(world.pharmacist)
    assert "Proposal by" not in client.get(reverse("my_work")).content.decode()
    # answered: gone
    client.force_login(world.nurse)
    _decide(client, note, "decline", reason="Keep the date")
    body = client.get(reverse("my_work"), {"kind": "proposal"}).content.decode()
    assert "Arrange rides to clinic" not in body and "Walk to the shop" in body


def test_my_work_query_count_does_not_grow_with_proposals(client, world, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def propose():
        act = f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse)
        plan_services.note_add(
            access=_access(world, world.pharmacist),
            plan=world.plan,
            by=world.pharmacist,
            text="p",
            kind="proposal",
            target=act,
        )

    propose()
    client.force_login(world.nurse)
    with CaptureQueriesContext(connection) as small:
        assert client.get(reverse("my_work")).status_code == 200
    for _ in range(10):
        propose()
    with django_assert_max_num_queries(len(small.captured_queries)):
        body = client.get(reverse("my_work")).content.decode()
    assert body.count(">Answer<") == 11
