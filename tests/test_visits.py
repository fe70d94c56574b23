"""Visits and service authorisations: who sees them (the patient's access rules, in
calendars, feeds and counts too), the .ics feed, units used, the hand-on rules (once per
event, also concurrently), and bad inputs refused with nothing half-written."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from django.db import connections
from django.urls import reverse
from django.utils import timezone
from icalendar import Calendar

from careplans.models import Activity
from careteam import services as team_services
from careteam.models import AuditEvent, Notification, NotificationKind
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from tests import factories as f
from visits import rules, services
from visits.models import Authorisation, HandOnRule, RuleFiring, Visit

pytestmark = pytest.mark.django_db


def _physio(world):
    physio = f.UserFactory(username="physio1", disciplines=["physical-therapy"])
    team_services.membership_add(
        patient=world.patient, user=physio, discipline=f.discipline("physical-therapy"),
        start_date=timezone.localdate() - dt.timedelta(days=10),
    )  # fmt: skip
    return physio


def _at(days: int = 1, hour: int = 10) -> dt.datetime:
    day = timezone.localdate() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def _book(world, clinician, start=None, **kw):
    access = patient_access(world.case_manager, world.patient)
    return services.visit_book(
        access=access, by=world.case_manager, start=start or _at(), clinician=clinician, **kw
    ).visit


# ---------------------------------------------------------------------------
# Access: a visit outside the team
# ---------------------------------------------------------------------------
def test_visit_of_another_team_is_404_and_in_no_calendar_or_feed(world, client):
    other_visit = f.VisitFactory(patient=world.other_patient, clinician=world.other_team_nurse, start=_at())
    own = _book(world, world.nurse)
    client.force_login(world.nurse)
    assert client.get(reverse("visits:visit_detail", kwargs={"visit_id": other_visit.pk})).status_code == 404
    assert client.get(reverse("visits:visit_detail", kwargs={"visit_id": own.pk})).status_code == 200
    week = client.get(reverse("visits:my_week") + f"?week={own.start.date()}")
    assert f'data-visit="{own.pk}"' in week.text and f'data-visit="{other_visit.pk}"' not in week.text
    assert "Elsewhere" not in week.text
    api = client.get("/api/v1/visits/")
    assert [v["id"] for v in api.json()["results"]] == [own.pk]
    assert client.get(f"/api/v1/visits/{other_visit.pk}/").status_code == 404
    # the outsider: nothing, and the denial is audited
    client.force_login(world.outsider)
    assert client.get(reverse("visits:visit_detail", kwargs={"visit_id": own.pk})).status_code == 404
    assert AuditEvent.objects.filter(
        user=world.outsider, outcome="denied", object_type="visits.visit"
    ).exists()
    assert client.get("/api/v1/visits/").json()["count"] == 0


def test_a_visit_booked_for_me_on_a_team_i_left_leaves_my_week_and_feed(world, client):
    visit = _book(world, world.nurse)
    token = services.calendar_feed_issue(by=world.nurse)
    membership = world.patient.memberships.get(user=world.nurse)
    type(membership).objects.filter(pk=membership.pk).update(
        end_date=timezone.localdate() - dt.timedelta(days=1)
    )
    client.force_login(world.nurse)
    week = client.get(reverse("visits:my_week") + f"?week={visit.start.date()}")
    assert f'data-visit="{visit.pk}"' not in week.text
    feed = client.get(reverse("visits:calendar_feed_ics", kwargs={"feed_token": token}))
    assert f"visit-{visit.pk}@" not in feed.text


def test_the_team_week_shows_every_visit_of_the_case_managers_patients_only(world, client):
    mine = _book(world, world.nurse)
    f.VisitFactory(patient=world.other_patient, clinician=world.other_team_nurse, start=_at())
    client.force_login(world.case_manager)
    page = client.get(reverse("visits:team_week") + f"?week={mine.start.date()}")
    assert page.status_code == 200
    assert f'data-visit="{mine.pk}"' in page.text and page.text.count("data-visit=") == 1


def _team_day_visits(world, n: int, *, day_offset: int = 1, clinician=None):
    day = timezone.localdate() + dt.timedelta(days=day_offset)
    first = dt.datetime.combine(day, dt.time(7), tzinfo=timezone.get_current_timezone())
    return [
        f.VisitFactory(
            patient=world.patient,
            clinician=clinician or world.nurse,
            start=first + dt.timedelta(minutes=10 * i),
            duration_minutes=5,
        )
        for i in range(n)
    ]


def test_the_team_week_shows_one_day_fifty_visits_a_page_with_the_weeks_counts(world, client):
    visits = _team_day_visits(world, 60)
    f.VisitFactory(patient=world.other_patient, clinician=world.other_team_nurse, start=visits[0].start)
    day = timezone.localtime(visits[0].start).date()
    client.force_login(world.case_manager)
    page = client.get(reverse("visits:team_week"), {"day": day.isoformat()})
    assert page.status_code == 200
    shown = re.findall(r'data-visit="(\d+)"', page.text)
    assert shown == [str(v.pk) for v in visits[:50]]
    assert f'aria-current="page">{day:%a} {day.day} {day:%b} <span class="count">60</span>' in page.text
    later = re.search(r'href="([^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
    rest = client.get(reverse("visits:team_week") + later)
    assert re.findall(r'data-visit="(\d+)"', rest.text) == [str(v.pk) for v in visits[50:]]
    earlier = re.search(r'href="([^"]+)" rel="prev"', rest.text).group(1).replace("&amp;", "&")
    back = client.get(reverse("visits:team_week") + earlier)
    assert re.findall(r'data-visit="(\d+)"', back.text) == [str(v.pk) for v in visits[:50]]
    # the cursor belongs to that day: on another day it is refused
    cursor = dict(p.split("=", 1) for p in later.lstrip("?").split("&"))["cursor"]
    other_day = (day + dt.timedelta(days=1)).isoformat()
    assert client.get(reverse("visits:team_week"), {"day": other_day, "cursor": cursor}).status_code == 400


def test_the_team_week_filters_by_clinician(world, client):
    nurse_visits = _team_day_visits(world, 3)
    physio = _physio(world)
    physio_visits = _team_day_visits(world, 2, clinician=physio)
    day = timezone.localtime(nurse_visits[0].start).date().isoformat()
    client.force_login(world.case_manager)
    page = client.get(reverse("visits:team_week"), {"day": day, "clinician": physio.pk})
    assert re.findall(r'data-visit="(\d+)"', page.text) == [str(v.pk) for v in physio_visits]
    assert f'<option value="{physio.pk}" selected>' in page.text
    # a clinician of another team's patient: nothing of theirs, not even in the filter
    page = client.get(reverse("visits:team_week"), {"day": day, "clinician": world.other_team_nurse.pk})
    assert page.status_code == 200 and "data-visit=" not in page.text
    assert f'value="{world.other_team_nurse.pk}"' not in page.text


@pytest.mark.parametrize(
    "query",
    [
        {"day": "2026-13-01"},
        {"day": "yesterday"},
        {"clinician": "x"},
        {"clinician": "-1"},
        {"cursor": "forged"},
    ],
)
def test_bad_team_week_filters_answer_400_and_show_nothing(world, client, query):
    _team_day_visits(world, 2, day_offset=0)
    client.force_login(world.case_manager)
    visits_before = list(Visit.objects.values_list("pk", "version"))
    page = client.get(reverse("visits:team_week"), query)
    assert page.status_code == 400 and "data-visit=" not in page.text
    assert list(Visit.objects.values_list("pk", "version")) == visits_before


def test_the_team_week_of_someone_who_manages_nobody_is_empty(world, client):
    _team_day_visits(world, 2, day_offset=0)
    client.force_login(world.outsider)
    page = client.get(reverse("visits:team_week"))
    assert page.status_code == 200 and "data-visit=" not in page.text
    assert page.text.count('<span class="count">0</span>') == 8  # seven days and the day shown


# ---------------------------------------------------------------------------
# Calendar feed
# ---------------------------------------------------------------------------
def test_ics_feed_carries_times_and_a_link_but_no_names_and_stops_when_revoked(world, client):
    type(world.patient).objects.filter(pk=world.patient.pk).update(
        given_name="Quintessa", family_name="Vandermolen"
    )
    world.patient.refresh_from_db()
    visit = _book(world, world.nurse, location="7 Rosebank Lane")
    client.force_login(world.nurse)
    response = client.post(reverse("visits:calendar_feed"), {"action": "issue"})
    url = response.context["new_url"]
    client.logout()  # the calendar app has no session
    feed = client.get(url)
    assert feed.status_code == 200 and feed["Content-Type"].startswith("text/calendar")
    cal = Calendar.from_ical(feed.content)
    (event,) = cal.walk("VEVENT")
    assert event.decoded("dtstart") == visit.start
    assert str(event["summary"]) == "Home visit"
    assert str(event["url"]).endswith(f"/visits/{visit.pk}/")
    text = feed.content.decode()
    for secret in (world.patient.family_name, world.patient.given_name, world.patient.mrn, "Rosebank"):
        assert secret not in text
    assert AuditEvent.objects.filter(
        object_type="visits.calendarfeed", action="export", patient_ids__contains=[world.patient.pk]
    ).exists()
    client.force_login(world.nurse)
    client.post(reverse("visits:calendar_feed"), {"action": "revoke"})
    client.logout()
    assert client.get(url).status_code == 404
    assert client.get(reverse("visits:calendar_feed_ics", kwargs={"feed_token": "x" * 43})).status_code == 404


def test_a_new_feed_address_stops_the_old_one(world, client):
    old = services.calendar_feed_issue(by=world.nurse)
    new = services.calendar_feed_issue(by=world.nurse)
    assert client.get(reverse("visits:calendar_feed_ics", kwargs={"feed_token": old})).status_code == 404
    assert client.get(reverse("visits:calendar_feed_ics", kwargs={"feed_token": new})).status_code == 200


# ---------------------------------------------------------------------------
# Bad inputs: clear errors, nothing written
# ---------------------------------------------------------------------------
def test_a_double_booking_is_refused_with_the_times_only_unless_confirmed(world, client):
    f.VisitFactory(patient=world.other_patient, clinician=world.nurse, start=_at(hour=10))
    team_services.membership_add(
        patient=world.other_patient, user=world.nurse, discipline=f.discipline("nursing")
    )
    client.force_login(world.case_manager)
    body = {
        "patient": world.patient.pk,
        "clinician": world.nurse.pk,
        "start": _at(hour=10, days=1).replace(minute=30).isoformat(),
    }
    before = Visit.objects.count()
    response = client.post("/api/v1/visits/", body, content_type="application/json")
    assert response.status_code == 409, response.content
    assert "another visit" in response.json()["start"][0]
    assert "Elsewhere" not in response.text
    assert Visit.objects.count() == before
    response = client.post(
        "/api/v1/visits/", {**body, "allow_conflicts": True}, content_type="application/json"
    )
    assert response.status_code == 201
    # both show as a conflict in the nurse's week
    client.force_login(world.nurse)
    week = client.get(reverse("visits:my_week") + f"?week={_at().date()}")
    assert week.text.count('class="conflict"') == 2


def test_the_page_form_asks_to_confirm_a_double_booking(world, client):
    _book(world, world.nurse, start=_at(hour=9))
    client.force_login(world.case_manager)
    url = reverse("visits:patient_visits", kwargs={"patient_id": world.patient.pk})
    form = {
        "visit_type": "home", "clinician": world.nurse.pk, "start": _at(hour=9).strftime("%Y-%m-%dT%H:%M"),
        "time_zone": "UTC", "duration_minutes": 30, "units": 1,
    }  # fmt: skip
    response = client.post(url, form)
    assert response.status_code == 422
    assert "another visit at this time" in response.text and 'name="allow_conflicts"' in response.text
    assert Visit.objects.count() == 1
    assert client.post(url, {**form, "allow_conflicts": "on"}).status_code == 302
    assert Visit.objects.count() == 2


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"units_authorised": -3}, "units_authorised", "at least one"),
        ({"units_authorised": 0}, "units_authorised", "at least one"),
        ({"end_date": "2026-01-01", "start_date": "2026-02-01"}, "end_date", "cannot end before it starts"),
    ],
)
def test_bad_authorisations_are_refused_with_a_clear_error(world, client, change, field, message):
    client.force_login(world.case_manager)
    body = {
        "patient": world.patient.pk, "payer": "Acme", "service": "Physio", "discipline": "physical-therapy",
        "units_authorised": 6, "start_date": "2026-02-01", "end_date": "2026-03-01", **change,
    }  # fmt: skip
    response = client.post("/api/v1/authorisations/", body, content_type="application/json")
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    assert not Authorisation.objects.exists()
    page = client.post(
        reverse("visits:patient_authorisations", kwargs={"patient_id": world.patient.pk}),
        {
            **body,
            "discipline": f.discipline("physical-therapy").pk,
            "unit_kind": "visit",
            "status": "requested",
        },
    )
    assert page.status_code == 422 and message in page.text
    assert not Authorisation.objects.exists()


def test_a_visit_cannot_end_before_it_starts_or_draw_on_another_patients_authorisation(world, client):
    elsewhere = f.AuthorisationFactory(patient=world.other_patient, created_by=world.other_team_nurse)
    client.force_login(world.case_manager)
    body = {"patient": world.patient.pk, "clinician": world.nurse.pk, "start": _at().isoformat()}
    assert (
        client.post(
            "/api/v1/visits/", {**body, "duration_minutes": -30}, content_type="application/json"
        ).status_code
        == 400
    )
    response = client.post(
        "/api/v1/visits/", {**body, "authorisation": elsewhere.pk}, content_type="application/json"
    )
    assert response.status_code == 400 and "authorisation" in response.json()
    assert not Visit.objects.exists()


def test_api_changes_need_the_version_read(world, client):
    visit = _book(world, world.nurse)
    client.force_login(world.nurse)
    url = f"/api/v1/visits/{visit.pk}/"
    assert client.patch(url, {"status": "arrived"}, content_type="application/json").status_code == 428
    assert (
        client.patch(
            url, {"status": "arrived"}, content_type="application/json", HTTP_IF_MATCH='W/"9"'
        ).status_code
        == 412
    )
    response = client.patch(url, {"status": "noshow"}, content_type="application/json", HTTP_IF_MATCH='W/"1"')
    assert response.status_code == 400 and "status_reason" in response.json()
    ok = client.patch(
        url,
        {"status": "noshow", "status_reason": "Not at home"},
        content_type="application/json",
        HTTP_IF_MATCH='W/"1"',
    )
    assert ok.status_code == 200 and ok["ETag"] == 'W/"2"'
    again = client.patch(url, {"status": "fulfilled"}, content_type="application/json", HTTP_IF_MATCH='W/"2"')
    assert again.status_code == 409


# ---------------------------------------------------------------------------
# Rebooking keeps the chain
# ---------------------------------------------------------------------------
def test_rebooking_cancels_the_old_visit_and_keeps_the_chain(world):
    access = patient_access(world.case_manager, world.patient)
    first = _book(world, world.nurse)
    second = services.visit_rebook(
        access=access, visit=first, by=world.case_manager, start=_at(days=2), expected_version=1
    ).visit
    third = services.visit_rebook(
        access=access, visit=second, by=world.case_manager, start=_at(days=3), expected_version=1
    ).visit
    first.refresh_from_db()
    assert first.status == "cancelled" and first.status_reason.startswith("Rebooked")
    assert [v.pk for v in services.visit_chain(second)] == [first.pk, second.pk, third.pk]


# ---------------------------------------------------------------------------
# Units used, exhausted warning
# ---------------------------------------------------------------------------
def test_units_used_follow_completed_visits_and_the_exhausted_warning_is_sent_once(world):
    physio = _physio(world)
    access = patient_access(world.case_manager, world.patient)
    auth = services.authorisation_create(
        access=access, by=world.case_manager, payer="Acme", service="PT", discipline=f.discipline("physical-therapy"),
        units_authorised=2, start_date=timezone.localdate(), end_date=timezone.localdate() + dt.timedelta(days=30),
        status="approved",
    )  # fmt: skip
    visits = [_book(world, physio, start=_at(days=n), authorisation=auth) for n in (1, 2, 3)]
    services.visit_set_status(
        access=access, visit=visits[0], by=physio, status="fulfilled", expected_version=1
    )
    services.visit_set_status(
        access=access, visit=visits[1], by=physio, status="noshow", reason="Out", expected_version=1
    )
    auth.refresh_from_db()
    assert (auth.units_used, auth.status) == (1, "approved")
    reminders_sweep(send_emails=False)
    low = Notification.objects.filter(kind=NotificationKind.AUTHORISATION_UNITS_LOW)
    assert [n.recipient_id for n in low] == [world.case_manager.pk]
    services.visit_set_status(
        access=access, visit=visits[2], by=physio, status="fulfilled", expected_version=1
    )
    auth.refresh_from_db()
    assert (auth.units_used, auth.status) == (2, "exhausted")
    for _ in range(3):
        reminders_sweep(send_emails=False)
    exhausted = Notification.objects.filter(kind=NotificationKind.AUTHORISATION_EXHAUSTED)
    assert [n.recipient_id for n in exhausted] == [world.case_manager.pk]
    assert "used up" in exhausted[0].title
    assert Notification.objects.filter(kind=NotificationKind.AUTHORISATION_UNITS_LOW).count() == 1
    # a used-up authorisation takes no more visits
    with pytest.raises(Exception, match="exhausted"):
        _book(world, physio, start=_at(days=4), authorisation=auth)


def test_the_sweep_reminds_the_clinician_before_a_visit_and_warns_of_expiry_and_silence(world, settings):
    visit = _book(world, world.nurse, start=timezone.now() + dt.timedelta(hours=3))
    access = patient_access(world.case_manager, world.patient)
    ending = services.authorisation_create(
        access=access, by=world.case_manager, payer="Acme", service="Nursing", discipline=f.discipline("nursing"),
        units_authorised=10, start_date=timezone.localdate() - dt.timedelta(days=20),
        end_date=timezone.localdate() + dt.timedelta(days=3), status="approved",
    )  # fmt: skip
    silent = services.authorisation_create(
        access=access, by=world.case_manager, payer="Acme", service="OT", discipline=f.discipline("nursing"),
        units_authorised=10, start_date=timezone.localdate(), end_date=timezone.localdate() + dt.timedelta(days=90),
    )  # fmt: skip
    Authorisation.objects.filter(pk=silent.pk).update(requested_at=timezone.now() - dt.timedelta(days=8))
    f.VisitFactory(
        patient=world.other_patient,
        clinician=world.other_team_nurse,
        start=timezone.now() + dt.timedelta(hours=2),
    )
    for _ in range(2):
        reminders_sweep(send_emails=False)
    reminder = Notification.objects.get(kind=NotificationKind.VISIT_REMINDER, recipient=world.nurse)
    assert reminder.object_id == visit.pk and reminder.url == f"/visits/{visit.pk}/"
    assert Notification.objects.filter(kind=NotificationKind.VISIT_REMINDER).count() == 2  # one per clinician
    assert Notification.objects.get(kind=NotificationKind.AUTHORISATION_EXPIRING).object_id == ending.pk
    assert Notification.objects.get(kind=NotificationKind.AUTHORISATION_UNANSWERED).object_id == silent.pk


# ---------------------------------------------------------------------------
# Expiry: the sweep moves an authorisation past its end date to "expired", once
# ---------------------------------------------------------------------------
def _authorisation(world, *, ended_days_ago: int, status: str = "approved", patient=None):
    patient = patient or world.patient
    cm = world.case_manager if patient == world.patient else world.other_team_nurse
    access = patient_access(cm, patient)
    auth = services.authorisation_create(
        access=access, by=cm, payer="Acme", service=f"Nursing {ended_days_ago}", discipline=f.discipline("nursing"),
        units_authorised=5, start_date=timezone.localdate() - dt.timedelta(days=60),
        end_date=timezone.localdate() + dt.timedelta(days=30), status=status,
    )  # fmt: skip
    Authorisation.objects.filter(pk=auth.pk).update(
        end_date=timezone.localdate() - dt.timedelta(days=ended_days_ago)
    )
    auth.refresh_from_db()
    return auth


def test_the_sweep_expires_an_authorisation_past_its_end_date_once_with_history_and_one_warning(world):
    ended = _authorisation(world, ended_days_ago=1)
    used_up = _authorisation(world, ended_days_ago=3)
    Authorisation.objects.filter(pk=used_up.pk).update(status="exhausted", exhausted_at=timezone.now())
    last_day = _authorisation(world, ended_days_ago=0)  # the end date is still covered
    requested = _authorisation(world, ended_days_ago=2, status="requested")  # no answer: not expired
    audits = AuditEvent.objects.filter(object_type="visits.authorisation", detail__startswith="expired")
    for _ in range(3):  # a late beat, twice more
        result = reminders_sweep(send_emails=False)
    assert result.moved["authorisations-expired"] == 0
    statuses = dict(Authorisation.objects.values_list("pk", "status"))
    assert statuses == {
        ended.pk: "expired",
        used_up.pk: "expired",
        last_day.pk: "approved",
        requested.pk: "requested",
    }
    ended.refresh_from_db()
    assert ended.version == 2 and ended.expired_at is not None and "passed" in ended.status_reason
    version = ended.history.latest()
    assert version.status == "expired" and version.history_user is None
    assert version.history_change_reason == "expired by the reminder sweep: end date passed"
    assert ended.history.filter(status="expired").count() == 1
    assert sorted(audits.values_list("object_id", flat=True)) == sorted([str(ended.pk), str(used_up.pk)])
    assert {e.patient_id for e in audits} == {world.patient.pk}
    warnings = Notification.objects.filter(kind=NotificationKind.AUTHORISATION_EXPIRED)
    assert sorted((n.recipient_id, n.object_id) for n in warnings) == sorted(
        [(world.case_manager.pk, ended.pk), (world.case_manager.pk, used_up.pk)]
    )
    assert "expired" in warnings[0].title and warnings[0].url.startswith("/visits/authorisations/")
    # an expired authorisation takes no visits and cannot be approved again
    with pytest.raises(Exception, match="(?i)expired|approved"):
        _book(world, world.nurse, start=_at(days=1), authorisation=ended)


def test_an_authorisation_expired_by_hand_is_not_warned_about_and_not_moved_again(world):
    auth = _authorisation(world, ended_days_ago=1)
    access = patient_access(world.case_manager, world.patient)
    services.authorisation_set_status(
        access=access, authorisation=auth, by=world.case_manager, status="expired", expected_version=1
    )
    reminders_sweep(send_emails=False)
    auth.refresh_from_db()
    assert auth.version == 2 and auth.expired_at is None
    assert not Notification.objects.filter(kind=NotificationKind.AUTHORISATION_EXPIRED).exists()


def test_the_expiry_warning_goes_to_the_patients_case_manager_only(world):
    other = _authorisation(world, ended_days_ago=1, patient=world.other_patient)
    mine = _authorisation(world, ended_days_ago=1)
    reminders_sweep(send_emails=False)
    assert Authorisation.objects.get(pk=other.pk).status == "expired"
    warned = Notification.objects.filter(kind=NotificationKind.AUTHORISATION_EXPIRED)
    assert not warned.filter(object_id=other.pk, recipient=world.case_manager).exists()
    assert list(warned.filter(recipient=world.case_manager).values_list("object_id", flat=True)) == [mine.pk]


# ---------------------------------------------------------------------------
# Rules that hand on the work
# ---------------------------------------------------------------------------
def _pt_rule():
    return HandOnRule.objects.create(
        name="PT approved", event="authorisation.approved", condition_discipline=f.discipline("physical-therapy"),
        activity_title="Schedule PT visits", owner_discipline=f.discipline("physical-therapy"), due_in_days=2,
    )  # fmt: skip


def test_approving_a_physiotherapy_authorisation_creates_the_activity_once(world, client):
    world.plan.status = "active"
    world.plan.save()
    physio = _physio(world)
    _pt_rule()
    auth = f.AuthorisationFactory(patient=world.patient, status="requested", created_by=world.case_manager)
    client.force_login(world.nurse)  # any team member records the payer's answer
    url = f"/api/v1/authorisations/{auth.pk}/"
    response = client.patch(
        url, {"status": "approved"}, content_type="application/json", HTTP_IF_MATCH='W/"1"'
    )
    assert response.status_code == 200, response.content
    activity = Activity.objects.get(title="Schedule PT visits")
    assert activity.care_plan == world.plan and activity.assigned_to == physio
    assert activity.due_date == timezone.localdate() + dt.timedelta(days=2)
    assert activity.history.get().history_change_reason.startswith("by rule 'PT approved'")
    # the same event again fires nothing
    assert rules.rules_fire(event="authorisation.approved", obj=auth, by=world.nurse) == []
    assert Activity.objects.filter(title="Schedule PT visits").count() == 1
    # the plan history shows it
    client.force_login(world.case_manager)
    history = client.get(reverse("careplans:plan_history", kwargs={"plan_id": world.plan.pk}))
    assert "Schedule PT visits" in history.text


def test_a_referral_accepted_gives_the_referrer_the_activity(world):
    world.plan.status = "active"
    world.plan.save()
    HandOnRule.objects.create(
        name="Referral accepted", event="referral.accepted", activity_title="Confirm first appointment",
        assignee="referrer", due_in_days=1,
    )  # fmt: skip
    from referrals import services as referral_services

    referral = f.ReferralFactory(
        patient=world.patient,
        care_plan=world.plan,
        referred_by=world.nurse,
        status="requested",
        sent_at=timezone.now(),
        consent=f.ConsentFactory(patient=world.patient),
    )
    referral_services.referral_set_status(
        access=patient_access(world.nurse, world.patient),
        referral=referral,
        by=world.nurse,
        status="accepted",
    )
    activity = Activity.objects.get(title="Confirm first appointment")
    assert activity.assigned_to == world.nurse and activity.owner_discipline.code == "nursing"


@pytest.mark.django_db(transaction=True)
def test_a_rule_fires_once_when_the_event_is_saved_twice_concurrently(world):
    world.plan.status = "active"
    world.plan.save()
    _physio(world)
    rule = _pt_rule()
    auth = f.AuthorisationFactory(patient=world.patient, status="approved", created_by=world.case_manager)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def fire():
        try:
            barrier.wait()
            results.append(
                rules.rules_fire(
                    event="authorisation.approved",
                    obj=Authorisation.objects.get(pk=auth.pk),
                    by=world.case_manager,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 1]
    assert RuleFiring.objects.filter(rule=rule).count() == 1
    assert Activity.objects.filter(title="Schedule PT visits").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_of_one_request_fire_the_rule_once(world):
    world.plan.status = "active"
    world.plan.save()
    _physio(world)
    _pt_rule()
    auth = f.AuthorisationFactory(patient=world.patient, status="requested", created_by=world.case_manager)
    barrier = threading.Barrier(2)
    errors = []

    def approve():
        try:
            barrier.wait()
            services.authorisation_set_status(
                access=patient_access(world.case_manager, world.patient), authorisation=Authorisation.objects.get(pk=auth.pk),
                by=world.case_manager, status="approved", expected_version=None,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=approve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert Activity.objects.filter(title="Schedule PT visits").count() == 1


# ---------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------
def test_dashboard_counts_kept_and_missed_only_of_visible_patients(world, client):
    access = patient_access(world.case_manager, world.patient)
    kept = _book(world, world.nurse, start=_at(days=-2))
    missed = _book(world, world.nurse, start=_at(days=-1))
    services.visit_set_status(
        access=access, visit=kept, by=world.nurse, status="fulfilled", expected_version=1
    )
    services.visit_set_status(
        access=access, visit=missed, by=world.nurse, status="noshow", reason="Away", expected_version=1
    )
    hidden = f.VisitFactory(patient=world.other_patient, clinician=world.other_team_nurse, start=_at(days=-1))
    Visit.objects.filter(pk=hidden.pk).update(status="noshow")
    client.force_login(world.nurse)
    report = client.get(reverse("visits:dashboard")).context["report"]
    assert report["totals"] == {"booked": 2, "kept": 1, "missed": 1, "cancelled": 0, "accuracy": 50}
    client.force_login(world.outsider)
    assert client.get(reverse("visits:dashboard")).context["report"]["totals"]["booked"] == 0


# ---------------------------------------------------------------------------
# Query counts
# ---------------------------------------------------------------------------
def test_my_week_takes_the_same_queries_for_3_and_30_visits(world, client, django_assert_max_num_queries):
    client.force_login(world.nurse)
    activity = f.ActivityFactory(care_plan=world.plan, owner_discipline=f.discipline("nursing"))
    monday = timezone.localdate() - dt.timedelta(days=timezone.localdate().weekday())

    def add(n):
        for i in range(n):
            v = f.VisitFactory(patient=world.patient, clinician=world.nurse,
                               start=dt.datetime.combine(monday, dt.time(8), tzinfo=dt.UTC) + dt.timedelta(hours=3 * i))  # fmt: skip
            v.activities.add(activity)

    url = reverse("visits:my_week") + f"?week={monday}"
    add(3)
    client.get(url)  # warm the session and content types
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    add(27)
    with django_assert_max_num_queries(len(few)):
        page = client.get(url)
    assert page.text.count("data-visit=") == 30


# ---------------------------------------------------------------------------
# FHIR
# ---------------------------------------------------------------------------
def test_everything_holds_valid_appointments_and_an_encounter_for_a_completed_visit(world, client):
    from fhir.resources.R4B.appointment import Appointment
    from fhir.resources.R4B.encounter import Encounter

    access = patient_access(world.case_manager, world.patient)
    done = _book(world, world.nurse, start=_at(days=-1), location="Kitchen table")
    services.visit_set_status(
        access=access, visit=done, by=world.nurse, status="fulfilled", expected_version=1
    )
    missed = _book(world, world.nurse, start=_at(days=-2))
    services.visit_set_status(
        access=access, visit=missed, by=world.nurse, status="noshow", reason="Away", expected_version=1
    )
    f.VisitFactory(patient=world.other_patient, clinician=world.other_team_nurse)
    client.force_login(world.nurse)
    bundle = client.get(f"/fhir/Patient/{world.patient.pk}/$everything").json()
    resources = [e["resource"] for e in bundle["entry"]]
    appointments = [r for r in resources if r["resourceType"] == "Appointment"]
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]
    assert sorted(a["id"] for a in appointments) == sorted([f"visit-{done.pk}", f"visit-{missed.pk}"])
    assert [e["id"] for e in encounters] == [f"visit-{done.pk}"]
    for a in appointments:
        Appointment.model_validate(a)
    Encounter.model_validate(encounters[0])
    assert {a["status"] for a in appointments} == {"fulfilled", "noshow"}


def test_the_sms_file_backend_writes_one_line_per_message(settings, tmp_path):
    from visits import sms

    settings.SMS_BACKEND = "file"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.log")
    sms.send_sms("+15550100", "Your visit is tomorrow at 10:00")
    sms.send_sms("+15550101", "Another")
    lines = (tmp_path / "sms.log").read_text().splitlines()
    assert len(lines) == 2 and '"+15550100"' in lines[0]
    settings.SMS_BACKEND = "console"
    sms.send_sms("+15550100", "to the log")


# ---------------------------------------------------------------------------
# API access matrix (the careteam API's roles, on visits and authorisations)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["visits", "authorisations"])
def test_api_roles_see_only_their_teams_visits_and_authorisations(world, kind):
    from tests.test_api_matrix import ROLES, SEES_INSIDE, SEES_OUTSIDE, _client

    def make(patient, clinician):
        if kind == "visits":
            return f.VisitFactory(patient=patient, clinician=clinician)
        return f.AuthorisationFactory(patient=patient, created_by=clinician)

    inside, outside = make(world.patient, world.nurse), make(world.other_patient, world.other_team_nurse)
    for role in ROLES:
        client = _client(world, role)
        listing = client.get(f"/api/v1/{kind}/")
        if role == "anonymous":
            assert listing.status_code == 401
            continue
        ids = {row["id"] for row in listing.json()["results"]}
        assert (inside.pk in ids) == (role in SEES_INSIDE), role
        assert (outside.pk in ids) == (role in SEES_OUTSIDE), role
        for obj, sees in ((inside, role in SEES_INSIDE), (outside, role in SEES_OUTSIDE)):
            detail = client.get(f"/api/v1/{kind}/{obj.pk}/")
            assert detail.status_code == (200 if sees else 404), role
            changed = client.patch(f"/api/v1/{kind}/{obj.pk}/", {}, format="json", HTTP_IF_MATCH='W/"1"')
            expected = (404,) if not sees else (403,) if role == "emergency_access" else (200, 400)
            assert changed.status_code in expected, (role, changed.content)
