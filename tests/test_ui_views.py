"""The clinicians' pages as a user or an attacker sees them: the worklist, the chart, the
plan editor (inline edits, conflicts, status machine, discipline rights, sensitive items),
the history, and the team tools."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from careplans.models import Activity, Goal, Need, Note
from careteam import services as team_services
from careteam.models import AuditEvent, TeamMembership
from tests import factories as f

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _join(world, user, patient=None, code="nursing", role="member"):
    team_services.membership_add(
        patient=patient or world.patient,
        user=user,
        discipline=f.discipline(code),
        role=role,
        start_date=timezone.localdate() - dt.timedelta(days=1),
    )


# ---------------------------------------------------------------------------
# Worklist
# ---------------------------------------------------------------------------
def test_worklist_lists_only_my_patients(client, world):
    client.force_login(world.nurse)
    page = client.get(reverse("worklist")).content.decode()
    assert "P-TEAM-1" in page
    assert "P-OTHER-1" not in page


def test_outsider_sees_no_patient_on_the_worklist(client, world):
    client.force_login(world.outsider)
    response = client.get(reverse("worklist"))
    assert response.status_code == 200
    assert "P-TEAM-1" not in response.content.decode()
    assert response.context["page"].paginator.count == 0


def test_anonymous_is_sent_to_sign_in(client, world):
    response = client.get(reverse("worklist"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_worklist_finds_a_patient_by_name_and_by_mrn(client, world):
    extra = f.PatientFactory(mrn="P-TEAM-2", given_name="Zed", family_name="Quincy")
    _join(world, world.nurse, extra)
    client.force_login(world.nurse)
    by_name = client.get(reverse("worklist"), {"q": "quin"}).content.decode()
    assert "P-TEAM-2" in by_name and "P-TEAM-1" not in by_name
    by_mrn = client.get(reverse("worklist"), {"q": "p-team-1"}).content.decode()
    assert "P-TEAM-1" in by_mrn and "P-TEAM-2" not in by_mrn


def test_worklist_search_answers_htmx_with_the_results_only(client, world):
    client.force_login(world.nurse)
    response = client.get(reverse("worklist"), {"q": "Alice"}, **HX)
    body = response.content.decode()
    assert "P-TEAM-1" in body and "<html" not in body


def test_worklist_filters_by_plan_status(client, world):
    extra = f.PatientFactory(mrn="P-DRAFT-1")
    f.CarePlanFactory(patient=extra, status="draft")
    _join(world, world.nurse, extra)
    client.force_login(world.nurse)
    drafts = client.get(reverse("worklist"), {"plan_status": "draft"}).content.decode()
    assert "P-DRAFT-1" in drafts and "P-TEAM-1" not in drafts
    active = client.get(reverse("worklist"), {"plan_status": "active"}).content.decode()
    assert "P-TEAM-1" in active and "P-DRAFT-1" not in active


def test_worklist_rejects_an_unknown_plan_status_with_a_message(client, world):
    client.force_login(world.nurse)
    response = client.get(reverse("worklist"), {"plan_status": "bogus", "q": "Alice"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Select a valid choice" in body
    assert 'value="Alice"' in body  # the input is kept


def test_waiting_filter_shows_patients_with_a_handoff_an_activity_or_a_referral_for_me(client, world):
    quiet = f.PatientFactory(mrn="P-QUIET")
    _join(world, world.nurse, quiet)
    handoff_patient = f.PatientFactory(mrn="P-HANDOFF")
    _join(world, world.nurse, handoff_patient)
    f.HandoffFactory(
        patient=handoff_patient,
        from_user=world.case_manager,
        to_user=None,
        to_discipline=f.discipline("nursing"),
    )
    f.ActivityFactory(
        care_plan=world.plan, assigned_to=world.nurse, due_date=timezone.localdate() - dt.timedelta(days=1)
    )
    client.force_login(world.nurse)
    response = client.get(reverse("worklist"), {"waiting": "on"})
    body = response.content.decode()
    assert "P-HANDOFF" in body and "P-TEAM-1" in body
    assert "P-QUIET" not in body
    assert "1 handoff to accept" in body and "1 activity due" in body


def test_a_handoff_to_another_discipline_is_not_waiting_for_me(client, world):
    f.HandoffFactory(
        patient=world.patient,
        from_user=world.case_manager,
        to_user=None,
        to_discipline=f.discipline("pharmacy"),
    )
    client.force_login(world.nurse)
    response = client.get(reverse("worklist"), {"waiting": "on"})
    assert response.context["page"].paginator.count == 0


def test_worklist_is_paginated(client, world):
    for i in range(27):
        p = f.PatientFactory(mrn=f"P-PAGE-{i:02d}", family_name=f"Zz{i:02d}")
        _join(world, world.nurse, p)
    client.force_login(world.nurse)
    first = client.get(reverse("worklist"))
    assert len(first.context["page"].object_list) == 25
    second = client.get(reverse("worklist"), {"page": 2})
    assert len(second.context["page"].object_list) == 3


def test_worklist_query_count_does_not_grow_with_rows(client, world, django_assert_max_num_queries):
    client.force_login(world.nurse)
    client.get(reverse("worklist"))  # warm the session
    with django_assert_max_num_queries(8) as few:
        client.get(reverse("worklist"))
    for i in range(20):
        p = f.PatientFactory(mrn=f"P-MANY-{i:02d}")
        _join(world, world.nurse, p)
        plan = f.CarePlanFactory(patient=p)
        f.ActivityFactory(care_plan=plan, assigned_to=world.nurse, due_date=timezone.localdate())
        f.HandoffFactory(patient=p, from_user=world.case_manager, to_user=world.nurse)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("worklist"))
    assert len(response.context["page"].object_list) == 21


# ---------------------------------------------------------------------------
# Chart
# ---------------------------------------------------------------------------
def test_outsider_gets_404_for_the_chart_like_a_missing_patient(client, world):
    client.force_login(world.outsider)
    assert client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).status_code == 404
    assert client.get(reverse("patient_chart", kwargs={"patient_id": 999999})).status_code == 404


def test_chart_shows_summary_team_plan_and_open_work_and_is_audited(client, world):
    f.CaregiverFactory(patient=world.patient, name="Maria Team", relationship="spouse", is_primary=True)
    f.ConsentFactory(patient=world.patient, scope="referral")
    f.HandoffFactory(
        patient=world.patient,
        from_user=world.case_manager,
        to_user=world.nurse,
        situation="Wound check after discharge",
    )
    client.force_login(world.nurse)
    response = client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    body = response.content.decode()
    assert response.status_code == 200
    for text in (
        "Maria Team",
        "Sharing information with community services",
        "Case manager",
        "Team plan",
        "Wound check after discharge",
        "English (en)",
    ):
        assert text in body
    assert AuditEvent.objects.filter(user=world.nurse, action="view", patient_id=world.patient.pk).exists()


def test_chart_query_count_does_not_grow_with_team_and_open_work(
    client, world, django_assert_max_num_queries
):
    client.force_login(world.case_manager)
    url = reverse("patient_chart", kwargs={"patient_id": world.patient.pk})
    client.get(url)
    with django_assert_max_num_queries(30) as few:
        client.get(url)
    for i in range(8):
        f.CaregiverFactory(patient=world.patient, name=f"Carer {i}")
        f.HandoffFactory(patient=world.patient, from_user=world.case_manager, to_user=world.nurse)
        u = f.UserFactory(username=f"extra{i}", disciplines=["nursing"])
        _join(world, u)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url)


# ---------------------------------------------------------------------------
# Plan editor
# ---------------------------------------------------------------------------
def _editor(world):
    return reverse("careplans:plan_editor", kwargs={"plan_id": world.plan.pk})


def test_outsider_gets_404_for_the_plan_and_its_items(client, world):
    goal = f.GoalFactory(care_plan=world.plan)
    client.force_login(world.outsider)
    assert client.get(_editor(world)).status_code == 404
    assert client.get(reverse("careplans:goal_edit", kwargs={"goal_id": goal.pk})).status_code == 404
    response = client.post(
        reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk}), {"new-goal-description": "x"}
    )
    assert response.status_code == 404
    assert not Goal.objects.filter(description="x").exists()


def test_patient_and_family_goals_are_marked_and_shown_first(client, world):
    f.GoalFactory(
        care_plan=world.plan,
        description="Clinician goal HbA1c",
        expressed_by="clinician",
        priority="high-priority",
    )
    f.GoalFactory(
        care_plan=world.plan, description="Walk to church", expressed_by="patient", priority="low-priority"
    )
    client.force_login(world.nurse)
    body = client.get(_editor(world)).content.decode()
    assert body.index("Walk to church") < body.index("Clinician goal HbA1c")
    assert "Patient’s own goal" in body


def test_a_discipline_without_rights_does_not_see_a_sensitive_need(client, world):
    need = f.NeedFactory(
        care_plan=world.plan,
        description="Depression screening positive",
        domain="behavioural",
        category="mental-health",
        sensitivity=world.behavioural_health,
    )
    client.force_login(world.nurse)
    assert "Depression screening" not in client.get(_editor(world)).content.decode()
    assert client.get(reverse("careplans:need_detail", kwargs={"need_id": need.pk})).status_code == 404
    history = client.get(reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}))
    assert "Depression screening" not in history.content.decode()
    client.force_login(world.behavioural)
    assert "Depression screening" in client.get(_editor(world)).content.decode()


def _plan_items(world, i):
    goal = f.GoalFactory(care_plan=world.plan, owner_discipline=f.discipline("nursing"))
    need = f.NeedFactory(care_plan=world.plan)
    need.goals.add(goal)
    act = f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse)
    act.goals.add(goal)
    act.needs.add(need)
    Note.objects.create(care_plan=world.plan, author=world.nurse, text=f"note {i}", goal=goal)


def test_editor_query_count_does_not_grow_with_items(client, world, django_assert_max_num_queries):
    _plan_items(world, 0)  # one of each, so every prefetch runs in the baseline too
    client.force_login(world.nurse)
    client.get(_editor(world))
    with django_assert_max_num_queries(40) as few:
        client.get(_editor(world))
    for i in range(1, 10):
        _plan_items(world, i)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(_editor(world))
    assert len(response.context["editor"].activities) == 10


def test_the_add_forms_are_fetched_when_their_section_opens(client, world):
    client.force_login(world.nurse)
    url = reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk})
    page = client.get(_editor(world)).content.decode()
    assert 'name="new-goal-description"' not in page and f'hx-get="{url}"' in page
    fields = client.get(url, **HX)
    assert fields.status_code == 200 and 'name="new-goal-description"' in fields.content.decode()
    assert b"<html" not in fields.content
    # without JavaScript the same URL opens the editor with the form open
    assert 'name="new-goal-description"' in client.get(url).content.decode()
    # a reader with emergency access gets no form, a stranger not even the plan
    team_services.emergency_access_open(by=world.outsider, patient=world.patient, reason="Unconscious in ED")
    client.force_login(world.outsider)
    assert client.get(url, **HX).status_code == 403
    client.force_login(f.UserFactory())
    assert client.get(url, **HX).status_code == 404


def test_adding_a_goal_with_bad_input_shows_errors_by_the_field_and_keeps_the_input(client, world):
    client.force_login(world.nurse)
    url = reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk})
    response = client.post(
        url,
        {
            "new-goal-description": "",
            "new-goal-expressed_by": "patient",
            "new-goal-priority": "medium-priority",
            "new-goal-target_measure": "Walking distance kept",
            "new-goal-target_due": "not-a-date",
            "new-goal-lifecycle_status": "proposed",
        },
        **HX,
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "This field is required" in body
    assert "Enter a valid date" in body
    assert "Walking distance kept" in body
    assert not Goal.objects.filter(care_plan=world.plan).exists()


def test_adding_a_goal_puts_it_in_the_plan_with_history(client, world):
    client.force_login(world.nurse)
    url = reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk})
    response = client.post(
        url,
        {
            "new-goal-description": "Walk to the shop without a rest",
            "new-goal-expressed_by": "patient",
            "new-goal-priority": "high-priority",
            "new-goal-target_measure": "Walking distance",
            "new-goal-target_value": "400 m",
            "new-goal-target_due": (timezone.localdate() + dt.timedelta(days=60)).isoformat(),
            "new-goal-lifecycle_status": "active",
        },
        **HX,
    )
    assert response.status_code == 200
    assert "Walk to the shop without a rest" in response.content.decode()
    goal = Goal.objects.get(care_plan=world.plan)
    assert goal.created_by == world.nurse and goal.history.count() == 1


def test_a_pharmacist_cannot_edit_a_nursing_activity_and_is_told_why(client, world):
    act = f.ActivityFactory(care_plan=world.plan, title="Dressing change")
    client.force_login(world.pharmacist)
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    response = client.post(
        url,
        {
            f"activity-{act.pk}-title": "Hijacked",
            f"activity-{act.pk}-owner_discipline": act.owner_discipline_id,
            f"activity-{act.pk}-expected_version": 1,
        },
        **HX,
    )
    assert response.status_code == 403
    assert "owned by Nursing" in response.content.decode()
    status = client.post(
        reverse("careplans:activity_status", kwargs={"activity_id": act.pk}),
        {"status": "in-progress", "expected_version": 1},
        **HX,
    )
    assert status.status_code == 403
    act.refresh_from_db()
    assert act.title == "Dressing change" and act.status == "not-started"


def test_a_pharmacist_may_comment_on_a_nursing_activity(client, world):
    act = f.ActivityFactory(care_plan=world.plan, title="Dressing change")
    client.force_login(world.pharmacist)
    response = client.post(
        reverse("careplans:note_create", kwargs={"plan_id": world.plan.pk}),
        {"note-text": "Check allergy to the dressing", "note-kind": "proposal", "note-activity": act.pk},
        **HX,
    )
    assert response.status_code == 200
    note = Note.objects.get(activity=act)
    assert note.kind == "proposal" and note.author == world.pharmacist


def test_an_empty_comment_is_refused_with_a_message(client, world):
    client.force_login(world.pharmacist)
    response = client.post(
        reverse("careplans:note_create", kwargs={"plan_id": world.plan.pk}),
        {"note-text": "  ", "note-kind": "comment"},
        **HX,
    )
    assert response.status_code == 422
    assert not Note.objects.exists()


def test_status_control_offers_only_legal_next_statuses(client, world):
    act = f.ActivityFactory(care_plan=world.plan, status="not-started")
    client.force_login(world.nurse)
    body = client.get(
        reverse("careplans:activity_detail", kwargs={"activity_id": act.pk}), **HX
    ).content.decode()
    assert 'value="in-progress"' in body and 'value="completed"' not in body


def test_an_illegal_status_change_is_explained_and_not_saved(client, world):
    act = f.ActivityFactory(care_plan=world.plan, status="not-started")
    client.force_login(world.nurse)
    response = client.post(
        reverse("careplans:activity_status", kwargs={"activity_id": act.pk}),
        {"status": "completed", "expected_version": 1},
        **HX,
    )
    assert response.status_code == 422
    assert (
        "Cannot change status from &#x27;not-started&#x27; to &#x27;completed&#x27;"
        in response.content.decode()
    )
    act.refresh_from_db()
    assert act.status == "not-started"


def test_a_status_change_from_a_stale_page_is_refused_and_shows_the_current_state(client, world):
    act = f.ActivityFactory(care_plan=world.plan, status="not-started")
    url = reverse("careplans:activity_status", kwargs={"activity_id": act.pk})
    client.force_login(world.case_manager)
    assert client.post(url, {"status": "scheduled", "expected_version": 1}, **HX).status_code == 200
    client.force_login(world.nurse)
    response = client.post(url, {"status": "cancelled", "expected_version": 1}, **HX)
    assert response.status_code == 409
    body = response.content.decode()
    assert "Someone else changed this item" in body and "Scheduled" in body
    act.refresh_from_db()
    assert act.status == "scheduled" and act.version == 2


def test_a_legal_status_change_is_saved_and_shown_in_the_history_diff(client, world):
    act = f.ActivityFactory(care_plan=world.plan, status="not-started", title="Home visit")
    client.force_login(world.nurse)
    response = client.post(
        reverse("careplans:activity_status", kwargs={"activity_id": act.pk}),
        {"status": "in-progress", "expected_version": 1},
        **HX,
    )
    assert response.status_code == 200
    act.refresh_from_db()
    assert act.status == "in-progress" and act.version == 2
    history_url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    changes = client.get(history_url).context["changes"]
    newest, created = changes[0], next(c for c in changes if c.kind == "activity" and c.type == "created")
    assert newest.type == "changed" and ("Status", "Not started", "In progress") in newest.fields
    diff = client.get(history_url, {"from": created.token, "to": newest.token})
    body = diff.content.decode()
    assert "<del>Not started</del>" in body and "<ins>In progress</ins>" in body


def test_history_shows_the_plan_as_at_a_date_and_rejects_a_bad_date(client, world):
    f.GoalFactory(care_plan=world.plan, description="Goal before today")
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    yesterday = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    assert client.get(url, {"at": yesterday}).context["as_of"]["items"] == []
    today = client.get(url, {"at": timezone.localdate().isoformat()}).content.decode()
    assert "Goal before today" in today
    assert client.get(url, {"at": "31/12/2020"}).status_code == 400


def test_history_query_count_does_not_grow_with_changes(client, world, django_assert_max_num_queries):
    f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse)  # assignee names are loaded too
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    client.get(url)
    with django_assert_max_num_queries(30) as few:
        client.get(url)
    for _ in range(10):
        f.GoalFactory(care_plan=world.plan)
        f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url)


def _activity_post(act, version, **values):
    data = {
        "title": act.title,
        "description": "",
        "owner_discipline": act.owner_discipline_id,
        "assigned_to": "",
        "due_date": "",
        "sensitivity": "",
        "expected_version": version,
    }
    data.update(values)
    return {f"activity-{act.pk}-{k}": v for k, v in data.items()}


def test_a_stale_save_shows_both_versions_and_overwrites_nothing(client, world):
    act = f.ActivityFactory(care_plan=world.plan, title="Home visit")
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    client.force_login(world.case_manager)
    first = client.post(url, _activity_post(act, 1, title="Home visit on Monday"), **HX)
    assert first.status_code == 200
    client.force_login(world.nurse)
    stale = client.post(url, _activity_post(act, 1, title="Home visit with interpreter"), **HX)
    assert stale.status_code == 409
    body = stale.content.decode()
    assert "Home visit on Monday" in body and "Home visit with interpreter" in body
    assert "Someone else saved this activity" in body
    # the conflict says who saved the version now on record, and when
    assert f"saved by {world.case_manager.display_name}, " in body
    assert stale.context["conflict"]["saved_at"] is not None
    act.refresh_from_db()
    assert act.title == "Home visit on Monday" and act.version == 2
    # the merge form carries the new version: saving it again succeeds
    merged = client.post(url, _activity_post(act, 2, title="Home visit on Monday with interpreter"), **HX)
    assert merged.status_code == 200
    act.refresh_from_db()
    assert act.title == "Home visit on Monday with interpreter" and act.version == 3


def test_editing_an_activity_keeps_its_link_to_a_need_the_editor_may_not_see(client, world):
    hidden = f.NeedFactory(
        care_plan=world.plan,
        domain="behavioural",
        category="mental-health",
        sensitivity=world.behavioural_health,
    )
    act = f.ActivityFactory(care_plan=world.plan, title="Home visit")
    act.needs.add(hidden)
    client.force_login(world.nurse)
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    assert client.post(url, _activity_post(act, 1, title="Home visit, week 2"), **HX).status_code == 200
    act.refresh_from_db()
    assert act.title == "Home visit, week 2"
    assert list(act.needs.all()) == [hidden]


def test_saving_an_unchanged_item_writes_no_new_version(client, world):
    act = f.ActivityFactory(care_plan=world.plan, title="Home visit")
    client.force_login(world.nurse)
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    assert client.post(url, _activity_post(act, 1), **HX).status_code == 200
    act.refresh_from_db()
    assert act.version == 1 and act.history.count() == 1


def test_an_activity_cannot_be_assigned_to_someone_off_the_team(client, world):
    act = f.ActivityFactory(care_plan=world.plan)
    client.force_login(world.nurse)
    url = reverse("careplans:activity_edit", kwargs={"activity_id": act.pk})
    response = client.post(url, _activity_post(act, 1, assigned_to=world.outsider.pk), **HX)
    assert response.status_code == 422
    assert "Select a valid choice" in response.content.decode()
    act.refresh_from_db()
    assert act.assigned_to is None and act.version == 1


def test_a_nurse_cannot_add_an_activity_owned_by_pharmacy(client, world):
    client.force_login(world.nurse)
    url = reverse("careplans:activity_create", kwargs={"plan_id": world.plan.pk})
    response = client.post(
        url,
        {
            "new-activity-title": "Medication review",
            "new-activity-owner_discipline": f.discipline("pharmacy").pk,
        },
        **HX,
    )
    assert response.status_code == 422
    assert "own discipline" in response.content.decode()
    assert not Activity.objects.exists()


def test_a_nurse_cannot_file_a_need_in_a_category_she_may_not_see(client, world):
    client.force_login(world.nurse)
    url = reverse("careplans:need_create", kwargs={"plan_id": world.plan.pk})
    response = client.post(
        url,
        {
            "new-need-domain": "behavioural",
            "new-need-category": "mental-health",
            "new-need-description": "Low mood",
            "new-need-sensitivity": world.behavioural_health.pk,
        },
        **HX,
    )
    assert response.status_code == 422
    assert not Need.objects.exists()


def test_emergency_access_reader_cannot_write(client, world):
    outsider = world.outsider
    team_services.emergency_access_open(
        by=outsider, patient=world.patient, reason="Unconscious in ED, need plan"
    )
    client.force_login(outsider)
    assert client.get(_editor(world)).status_code == 200
    response = client.post(
        reverse("careplans:goal_create", kwargs={"plan_id": world.plan.pk}),
        {"new-goal-description": "Sneaky"},
    )
    assert response.status_code == 403
    assert not Goal.objects.exists()
    note = client.post(
        reverse("careplans:note_create", kwargs={"plan_id": world.plan.pk}), {"note-text": "From the ED"}
    )
    assert note.status_code == 403
    assert not Note.objects.exists()


# ---------------------------------------------------------------------------
# Team tools
# ---------------------------------------------------------------------------
def test_a_member_cannot_assign_team_roles(client, world):
    client.force_login(world.nurse)
    url = reverse("team_role_add", kwargs={"patient_id": world.patient.pk})
    response = client.post(
        url, {"user": world.outsider.pk, "discipline": f.discipline("nursing").pk, "role": "member"}
    )
    assert response.status_code == 403
    assert "case manager or plan lead" in response.content.decode()
    assert not TeamMembership.objects.filter(user=world.outsider).exists()


def test_case_manager_assigns_and_ends_a_role(client, world):
    client.force_login(world.case_manager)
    url = reverse("team_role_add", kwargs={"patient_id": world.patient.pk})
    response = client.post(
        url, {"user": world.outsider.pk, "discipline": f.discipline("nursing").pk, "role": "member"}
    )
    assert response.status_code == 302
    membership = TeamMembership.objects.get(user=world.outsider, patient=world.patient)
    end = reverse("team_role_end", kwargs={"patient_id": world.patient.pk, "membership_id": membership.pk})
    assert (
        client.post(end, {"expected_version": membership.version, "reason": "Visits finished"}).status_code
        == 302
    )
    membership.refresh_from_db()
    assert membership.status == "inactive"
    client.force_login(world.outsider)
    assert client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk})).status_code == 404


def test_assigning_a_discipline_the_clinician_does_not_hold_is_refused(client, world):
    client.force_login(world.case_manager)
    url = reverse("team_role_add", kwargs={"patient_id": world.patient.pk})
    response = client.post(
        url, {"user": world.outsider.pk, "discipline": f.discipline("pharmacy").pk, "role": "member"}
    )
    assert response.status_code == 422
    assert "does not practise" in response.content.decode()


def test_a_second_case_manager_is_refused_next_to_the_field(client, world):
    other_cm = f.UserFactory(username="cm2", disciplines=["case-management"])
    client.force_login(world.case_manager)
    url = reverse("team_role_add", kwargs={"patient_id": world.patient.pk})
    response = client.post(
        url, {"user": other_cm.pk, "discipline": f.discipline("case-management").pk, "role": "case-manager"}
    )
    assert response.status_code == 422
    assert "already has an active case manager" in response.content.decode()


def test_ending_a_role_of_another_patients_team_is_404(client, world):
    other_membership = TeamMembership.objects.get(patient=world.other_patient)
    client.force_login(world.case_manager)
    url = reverse(
        "team_role_end", kwargs={"patient_id": world.patient.pk, "membership_id": other_membership.pk}
    )
    assert client.post(url, {"expected_version": 1}).status_code == 404


# ---------------------------------------------------------------------------
# The plan itself
# ---------------------------------------------------------------------------
def test_a_team_member_starts_a_plan_and_bad_input_keeps_it_unsaved(client, world):
    fresh = f.PatientFactory(mrn="P-NEW-1")
    _join(world, world.nurse, fresh)
    client.force_login(world.nurse)
    url = reverse("plan_create", kwargs={"patient_id": fresh.pk})
    bad = client.post(url, {"title": "", "status": "draft", "review_due": "soon"})
    assert bad.status_code == 422
    assert "This field is required" in bad.content.decode() and "Enter a valid date" in bad.content.decode()
    assert not fresh.care_plans.exists()
    good = client.post(url, {"title": "Falls prevention", "status": "active"})
    assert good.status_code == 302
    assert fresh.care_plans.get().title == "Falls prevention"


def test_a_second_active_plan_is_refused_next_to_the_status(client, world):
    client.force_login(world.nurse)
    url = reverse("plan_create", kwargs={"patient_id": world.patient.pk})
    response = client.post(url, {"title": "Another", "status": "active"})
    assert response.status_code == 422
    assert "already has an active care plan" in response.content.decode()


def test_only_case_manager_or_lead_change_the_plans_status(client, world):
    url = reverse("careplans:plan_edit", kwargs={"plan_id": world.plan.pk})
    data = {
        "plan-title": "Team plan",
        "plan-period_start": world.plan.period_start.isoformat(),
        "plan-expected_version": 1,
    }
    client.force_login(world.nurse)
    form = client.get(url, **HX).content.decode()
    assert 'name="plan-status"' not in form
    assert client.post(url, {**data, "plan-title": "Renamed by nurse"}, **HX).status_code == 200
    client.force_login(world.case_manager)
    form = client.get(url, **HX).content.decode()
    assert 'value="on-hold"' in form and 'value="draft"' not in form
    stale = client.post(url, {**data, "plan-status": "on-hold"}, **HX)
    assert stale.status_code == 409 and "Renamed by nurse" in stale.content.decode()
    assert f"saved by {world.nurse.display_name}, " in stale.content.decode()
    ok = client.post(
        url,
        {**data, "plan-title": "Renamed by nurse", "plan-status": "on-hold", "plan-expected_version": 2},
        **HX,
    )
    assert ok.status_code == 200
    world.plan.refresh_from_db()
    assert world.plan.status == "on-hold" and world.plan.title == "Renamed by nurse"


def test_an_outsider_cannot_start_or_edit_a_plan(client, world):
    client.force_login(world.outsider)
    assert (
        client.post(
            reverse("plan_create", kwargs={"patient_id": world.patient.pk}), {"title": "x", "status": "draft"}
        ).status_code
        == 404
    )
    assert (
        client.post(
            reverse("careplans:plan_edit", kwargs={"plan_id": world.plan.pk}), {"plan-title": "x"}
        ).status_code
        == 404
    )
    world.plan.refresh_from_db()
    assert world.plan.title == "Team plan"


def test_history_is_paginated_newest_first(client, world):
    for i in range(55):
        f.GoalFactory(care_plan=world.plan, description=f"Goal number {i}")
    client.force_login(world.nurse)
    url = reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk})
    first = client.get(url)
    assert len(first.context["changes"]) == 50
    assert first.context["changes"][0].label == "Goal number 54"
    second = client.get(url + first.context["pager"].next_url)
    assert second.context["changes"][-1].kind == "plan"
    assert not second.context["pager"].has_next
