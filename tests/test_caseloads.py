"""Acuity, programme enrolment, caseloads, cover and bulk reassignment."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from careteam import caseloads
from careteam import handoffs as handoff_services
from careteam import services as team_services
from careteam.cover import receiver_for
from careteam.models import AuditEvent, Cover, Handoff, Notification, TeamMembership
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from patients.models import Patient, Programme, ProgrammeEnrolment
from tests import factories as f

pytestmark = pytest.mark.django_db


def _login(client, user):
    client.force_login(user)
    return client


def _supervisor():
    user = f.UserFactory(username="super1", disciplines=["case-management"])
    user.user_permissions.add(Permission.objects.get(codename="supervise_caseloads"))
    return type(user).objects.get(pk=user.pk)


# ---------------------------------------------------------------------------
# Acuity and programmes
# ---------------------------------------------------------------------------
def test_a_team_member_sets_acuity_from_the_version_they_read_and_it_is_kept_in_history(client, world):
    _login(client, world.nurse)
    url = reverse("patient_programmes", kwargs={"patient_id": world.patient.pk})
    assert client.get(url).status_code == 200
    v = world.patient.version
    r = client.post(url, {"form": "acuity", "acuity": "high", "expected_version": v})
    assert r.status_code == 302
    p = Patient.objects.get(pk=world.patient.pk)
    assert (p.acuity, p.version) == ("high", v + 1)
    assert p.history.filter(acuity="high").exists()
    assert AuditEvent.objects.filter(patient_id=p.pk, detail__contains="acuity").exists()
    # a stale page is refused and changes nothing
    r = client.post(url, {"form": "acuity", "acuity": "low", "expected_version": v})
    assert r.status_code == 409
    assert Patient.objects.get(pk=p.pk).acuity == "high"
    # no version: 428, nothing written
    r = client.post(url, {"form": "acuity", "acuity": "low"})
    assert r.status_code == 428
    assert Patient.objects.get(pk=p.pk).acuity == "high"


def test_enrolment_and_exit_with_reasons_and_bad_inputs_write_nothing(client, world):
    _login(client, world.case_manager)
    url = reverse("patient_programmes", kwargs={"patient_id": world.patient.pk})
    programme = Programme.objects.get(code="complex-care")
    today = timezone.localdate()
    r = client.post(url, {"form": "enrol", "programme": programme.pk, "entered_on": today, "reason": ""})
    assert r.status_code == 422
    assert not ProgrammeEnrolment.objects.exists()
    r = client.post(
        url, {"form": "enrol", "programme": programme.pk, "entered_on": today, "reason": "Two admissions"}
    )
    assert r.status_code == 302
    r = client.post(url, {"form": "enrol", "programme": programme.pk, "entered_on": today, "reason": "Again"})
    assert r.status_code == 422 and b"already enrolled" in r.content
    e = ProgrammeEnrolment.objects.get()
    r = client.post(
        url,
        {
            "form": "exit",
            "enrolment": e.pk,
            "expected_version": e.version,
            "exited_on": today - dt.timedelta(days=5),
            "exit_reason": "goals-met",
        },
    )
    assert r.status_code == 422 and b"before the patient entered" in r.content
    r = client.post(
        url,
        {
            "form": "exit",
            "enrolment": e.pk,
            "expected_version": e.version,
            "exited_on": today,
            "exit_reason": "goals-met",
        },
    )
    assert r.status_code == 302
    e.refresh_from_db()
    assert (e.exit_reason, e.exited_on) == ("goals-met", today)
    page = client.get(reverse("patient_chart", kwargs={"patient_id": world.patient.pk}))
    assert b"Acuity" in page.content


def test_an_outsider_cannot_see_or_change_acuity(client, world):
    _login(client, world.outsider)
    url = reverse("patient_programmes", kwargs={"patient_id": world.patient.pk})
    assert client.get(url).status_code == 404
    r = client.post(url, {"form": "acuity", "acuity": "high", "expected_version": world.patient.version})
    assert r.status_code == 404
    assert Patient.objects.get(pk=world.patient.pk).acuity == ""


# ---------------------------------------------------------------------------
# Caseloads
# ---------------------------------------------------------------------------
def _caseload(cm, n, *, acuity="medium"):
    start = timezone.localdate() - dt.timedelta(days=40)
    out = []
    for _ in range(n):
        p = f.PatientFactory(acuity=acuity)
        team_services.membership_add(
            patient=p,
            user=cm,
            discipline=f.discipline("case-management"),
            role="case-manager",
            start_date=start,
        )
        out.append(p)
    return out


def test_my_caseload_counts_weighted_load_open_and_overdue_work(client, world):
    Patient.objects.filter(pk=world.patient.pk).update(acuity="high")
    f.ActivityFactory(care_plan=world.plan, due_date=timezone.localdate() - dt.timedelta(days=2))
    f.ActivityFactory(care_plan=world.plan, due_date=timezone.localdate() + dt.timedelta(days=2))
    _caseload(world.case_manager, 2, acuity="low")
    fresh = f.PatientFactory()
    team_services.membership_add(
        patient=fresh,
        user=world.case_manager,
        discipline=f.discipline("case-management"),
        role="case-manager",
    )
    (s,) = caseloads.caseload_summaries(user_ids=[world.case_manager.pk])
    # high 3 + low 1 + low 1 + not assessed 1; one overdue and one open activity
    assert (s.patients, s.load, s.open_work, s.overdue) == (4, 6, 2, 1)
    assert s.new_this_month == 1 + (
        world.patient.memberships.filter(
            start_date__gte=timezone.localdate().replace(day=1), role="case-manager"
        ).count()
    )
    _login(client, world.case_manager)
    r = client.get(reverse("team:caseload"))
    assert r.status_code == 200 and b"Team, Alice" in r.content
    assert AuditEvent.objects.filter(
        object_type="caseload", patient_ids__contains=[world.patient.pk]
    ).exists()


def test_someone_elses_caseload_is_404_unless_supervisor(client, world):
    _login(client, world.nurse)
    r = client.get(reverse("team:caseload") + f"?case_manager={world.case_manager.pk}")
    assert r.status_code == 404
    assert client.get(reverse("team:caseload") + "?case_manager=99999999999999999999").status_code == 404


def test_a_supervisor_sees_counts_for_everyone_but_names_only_of_their_own_patients(client, world):
    sup = _supervisor()
    hidden = _caseload(world.case_manager, 2)
    Patient.objects.filter(pk=hidden[0].pk).update(given_name="Zorbanella", family_name="Hiddenkamp")
    # the supervisor is on one team of the caseload only
    team_services.membership_add(patient=world.patient, user=sup, discipline=f.discipline("case-management"))
    _login(client, sup)
    r = client.get(reverse("team:caseload") + f"?case_manager={world.case_manager.pk}")
    body = r.content.decode()
    assert r.status_code == 200
    assert "Team, Alice" in body
    assert "Hiddenkamp" not in body and "Zorbanella" not in body and hidden[0].mrn not in body
    assert "2 more patients" in body
    summaries = {s.user_id: s for s in caseloads.caseload_summaries()}
    assert summaries[world.case_manager.pk].patients == 3
    assert world.outsider.pk not in summaries


# ---------------------------------------------------------------------------
# Cover
# ---------------------------------------------------------------------------
def test_cover_bad_inputs_give_form_errors_and_write_nothing(client, world):
    colleague = f.UserFactory(username="nurse9", disciplines=["nursing"])
    _login(client, world.nurse)
    url = reverse("team:cover")
    nursing = f.discipline("nursing").pk
    today = timezone.localdate()
    cases = [
        (
            {"colleague": "nurse9", "start_date": today + dt.timedelta(days=3), "end_date": today},
            b"cannot be before",
        ),
        (
            {"colleague": world.pharmacist.username, "start_date": today, "end_date": today},
            b"same discipline",
        ),
        ({"colleague": world.nurse.username, "start_date": today, "end_date": today}, b"someone else"),
        ({"colleague": "nobody-here", "start_date": today, "end_date": today}, b"No active clinician"),
    ]
    for data, message in cases:
        r = client.post(url, {**data, "discipline": nursing})
        assert r.status_code == 422, data
        assert message in r.content, (data, r.content[:3000])
    assert not Cover.objects.exists()
    assert not TeamMembership.objects.filter(user=colleague).exists()


def test_cover_routes_handoffs_reminders_and_my_work_to_the_colleague_and_back(client, world, settings):
    settings.HANDOFF_ACK_REMINDER_MINUTES = 30
    colleague = f.UserFactory(username="nurse9", disciplines=["nursing"])
    today = timezone.localdate()
    cover = caseloads.cover_create(
        by=world.nurse,
        absent=world.nurse,
        colleague=colleague,
        discipline=f.discipline("nursing"),
        start_date=today,
        end_date=today + dt.timedelta(days=2),
    )
    m = TeamMembership.objects.get(user=colleague, patient=world.patient)
    assert (m.start_date, m.end_date, m.cover_id) == (cover.start_date, cover.end_date, cover.pk)
    assert AuditEvent.objects.filter(
        object_type="careteam.cover", patient_ids__contains=[world.patient.pk]
    ).exists()
    h = handoff_services.handoff_create(
        by=world.case_manager,
        access=patient_access(world.case_manager, world.patient),
        to_user=world.nurse,
        due_at=timezone.now() + dt.timedelta(hours=5),
        situation="S",
        background="B",
        assessment="A",
        recommendation="R",
    )
    # the new-handoff notification and the inbox are the colleague's
    assert Notification.objects.filter(recipient=colleague, object_id=h.pk, kind="handoff-received").exists()
    assert not Notification.objects.filter(recipient=world.nurse, object_id=h.pk).exists()
    assert handoff_services.handoff_inbox(colleague).filter(pk=h.pk).exists()
    _login(client, colleague)
    assert h.situation.encode() in client.get(reverse("my_work")).content
    # the sweep reminds the colleague, not the absent nurse
    reminders_sweep(now=timezone.now() + dt.timedelta(minutes=31), send_emails=False)
    assert Notification.objects.filter(
        recipient=colleague, object_id=h.pk, kind="handoff-unacknowledged"
    ).exists()
    assert not Notification.objects.filter(recipient=world.nurse, object_id=h.pk).exists()
    # after the dates: back to the nurse, the colleague's membership ends
    after = today + dt.timedelta(days=3)
    assert receiver_for(world.nurse.pk, after) == world.nurse.pk
    team_services.memberships_sync(today=after)
    m.refresh_from_db()
    assert m.status == "inactive"
    assert not TeamMembership.objects.current(after).filter(user=colleague, patient=world.patient).exists()


def test_cancelling_cover_sends_work_back_at_once(world):
    colleague = f.UserFactory(username="nurse9", disciplines=["nursing"])
    today = timezone.localdate()
    cover = caseloads.cover_create(
        by=world.nurse,
        absent=world.nurse,
        colleague=colleague,
        discipline=f.discipline("nursing"),
        start_date=today,
        end_date=today + dt.timedelta(days=5),
    )
    assert receiver_for(world.nurse.pk) == colleague.pk
    caseloads.cover_cancel(by=world.nurse, cover=cover)
    assert receiver_for(world.nurse.pk) == world.nurse.pk
    assert not TeamMembership.objects.current().filter(user=colleague, patient=world.patient).exists()
    from careteam.permissions import patients_for

    assert not patients_for(colleague).filter(pk=world.patient.pk).exists()


def test_mentions_of_someone_away_reach_the_colleague_covering_them(world):
    from careplans import services as plan_services
    from careteam import conversations as conv
    from careteam.permissions import patient_access

    colleague = f.UserFactory(username="nurse9", disciplines=["nursing"])
    today = timezone.localdate()
    caseloads.cover_create(
        by=world.nurse,
        absent=world.nurse,
        colleague=colleague,
        discipline=f.discipline("nursing"),
        start_date=today,
        end_date=today,
    )
    access = patient_access(world.lead, world.patient)
    plan_services.note_add(
        access=access, plan=world.plan, by=world.lead, text="@nurse1 please check the wound"
    )
    conv.conversation_start(access=access, by=world.lead, subject="Wound", text="@nurse1 can you look today?")
    kinds = set(Notification.objects.filter(recipient=colleague).values_list("kind", flat=True))
    assert kinds == {"note-mention", "conversation-mention"}
    assert not Notification.objects.filter(recipient=world.nurse).exists()


# ---------------------------------------------------------------------------
# Bulk reassignment
# ---------------------------------------------------------------------------
def test_bulk_reassignment_of_200_patients_creates_200_handoffs_and_one_audit_event(
    world, django_assert_max_num_queries
):
    other_cm = f.UserFactory(username="cm2", disciplines=["case-management"])
    patients = _caseload(world.case_manager, 199)
    plan = f.CarePlanFactory(patient=patients[0], title="Heart failure plan")
    f.ActivityFactory(care_plan=plan, title="Weigh daily", due_date=timezone.localdate())
    ids = sorted([world.patient.pk, *[p.pk for p in patients]])
    with django_assert_max_num_queries(40):
        done = caseloads.caseload_reassign(
            by=world.case_manager, from_user=world.case_manager, to_user=other_cm
        )
    assert done.patient_ids == ids
    assert Handoff.objects.filter(to_user=other_cm, from_user=world.case_manager).count() == 200
    assert (
        TeamMembership.objects.current()
        .filter(user=other_cm, role="case-manager", patient_id__in=ids)
        .count()
        == 200
    )
    assert not TeamMembership.objects.current().filter(user=world.case_manager, role="case-manager").exists()
    event = AuditEvent.objects.get(object_type="caseload-reassignment")
    assert sorted(event.patient_ids) == ids
    h = Handoff.objects.get(patient=patients[0])
    assert "Heart failure plan" in h.background and "Weigh daily" in h.recommendation
    from careteam.permissions import patients_for

    assert patients_for(other_cm).filter(pk__in=ids).count() == 200
    assert not patients_for(world.case_manager).filter(pk__in=ids).exists()


def test_reassigning_to_a_non_case_manager_or_to_oneself_is_refused_with_nothing_written(client, world):
    _login(client, world.case_manager)
    url = reverse("team:caseload_reassign")
    assert client.get(url).status_code == 200
    for to_user, message in (
        (world.nurse, b"does not practise case management"),
        (world.case_manager, b"already theirs"),
    ):
        for step in ("preview", "confirm"):
            r = client.post(
                url, {"step": step, "from_user": world.case_manager.pk, "to_user": to_user.pk, "scope": "all"}
            )
            assert r.status_code == 422 and message in r.content
    assert not Handoff.objects.exists()
    assert TeamMembership.objects.current().filter(user=world.case_manager, role="case-manager").count() == 1


def test_reassignment_page_confirms_then_moves(client, world):
    other_cm = f.UserFactory(username="cm2", disciplines=["case-management"])
    _login(client, world.case_manager)
    url = reverse("team:caseload_reassign")
    data = {
        "from_user": world.case_manager.pk,
        "to_user": other_cm.pk,
        "scope": "chosen",
        "patients": [world.patient.pk],
    }
    r = client.post(url, {**data, "step": "preview"})
    assert r.status_code == 200 and b"Team, Alice" in r.content
    assert not Handoff.objects.exists()
    r = client.post(url, {**data, "step": "confirm"})
    assert r.status_code == 302
    assert Handoff.objects.filter(to_user=other_cm, patient=world.patient).count() == 1


def test_nobody_reassigns_someone_elses_caseload_without_supervising(client, world):
    other_cm = f.UserFactory(username="cm2", disciplines=["case-management"])
    _login(client, world.nurse)
    r = client.post(
        reverse("team:caseload_reassign"),
        {"step": "confirm", "from_user": world.case_manager.pk, "to_user": other_cm.pk, "scope": "all"},
    )
    assert r.status_code == 404
    assert not Handoff.objects.exists()


def test_a_supervisor_moves_a_whole_caseload_seeing_only_names_of_their_own_patients(client, world):
    sup = _supervisor()
    other_cm = f.UserFactory(username="cm2", disciplines=["case-management"])
    hidden = _caseload(world.case_manager, 2)
    Patient.objects.filter(pk=hidden[0].pk).update(family_name="Hiddenkamp")
    team_services.membership_add(patient=world.patient, user=sup, discipline=f.discipline("case-management"))
    _login(client, sup)
    url = reverse("team:caseload_reassign")
    page = client.get(url, {"from_user": world.case_manager.pk})
    assert page.status_code == 200 and b"Hiddenkamp" not in page.content
    data = {"from_user": world.case_manager.pk, "to_user": other_cm.pk, "scope": "all"}
    confirm = client.post(url, {**data, "step": "preview"})
    body = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Team, Alice" in body and "Hiddenkamp" not in body and hidden[0].mrn not in body
    assert "and 2 patients whose teams you are not on" in body
    assert client.post(url, {**data, "step": "confirm"}).status_code == 302
    assert Handoff.objects.filter(to_user=other_cm).count() == 3
    event = AuditEvent.objects.get(object_type="caseload-reassignment")
    assert event.user_id == sup.pk and len(event.patient_ids) == 3


def test_a_heavy_caseload_pages_fifty_at_a_time_and_counts_them_all(client, world):
    from careteam.views_caseload import CASELOAD_PAGE_SIZE

    discipline = f.discipline("case-management")
    for _ in range(CASELOAD_PAGE_SIZE + 5):
        team_services.membership_add(
            patient=f.PatientFactory(), user=world.case_manager, discipline=discipline, role="case-manager"
        )
    _login(client, world.case_manager)
    first = client.get(reverse("team:caseload"))
    total = first.context["summary"].patients
    assert total > CASELOAD_PAGE_SIZE
    assert len(first.context["patients"]) == CASELOAD_PAGE_SIZE
    assert first.context["hidden"] == 0
    second = client.get(reverse("team:caseload") + "?page=2")
    assert len(second.context["patients"]) == total - CASELOAD_PAGE_SIZE
    shown = {p.pk for p in first.context["patients"]} | {p.pk for p in second.context["patients"]}
    assert len(shown) == total
    assert 'rel="next"' in first.content.decode()
    assert client.get(reverse("team:caseload") + "?page=x").status_code == 200
