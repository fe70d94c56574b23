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
