"""The end-of-day digest: one per person and local day, at their local send time, counts
and links only, only what they may see, skipped when there is nothing to say."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from careteam import digest as digests
from careteam import handoffs as handoff_services
from careteam import services as team_services
from careteam.digest import digest_email_send, preference_update
from careteam.models import Digest, UserPreference
from careteam.permissions import patient_access
from careteam.reminders import reminders_sweep
from tests import factories as f

pytestmark = pytest.mark.django_db

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://careteam.example.org"


def _opt_in(user, *, at: dt.time = dt.time(17, 0), tz: str = "America/New_York"):
    return preference_update(user=user, time_zone=tz, digest_enabled=True, digest_time=at)


def _waiting_handoff(world, to_user, *, situation="Discharged today after a fall"):
    return handoff_services.handoff_create(
        by=world.lead,
        access=patient_access(world.lead, world.patient),
        to_user=to_user,
        due_at=timezone.now() + dt.timedelta(days=3),
        situation=situation,
        background="CHF, new diuretic",
        assessment="Stable",
        recommendation="Visit within 48h",
    )


def _local(y, m, d, h, mi, tz=NEW_YORK, fold=0):
    return dt.datetime(y, m, d, h, mi, tzinfo=tz, fold=fold).astimezone(dt.UTC)


# ---------------------------------------------------------------------------
# When it is created
# ---------------------------------------------------------------------------
def test_digest_is_created_once_at_the_local_send_time_and_again_the_next_day(world):
    _opt_in(world.nurse, at=dt.time(17, 0))
    reminders_sweep(now=_local(2026, 12, 3, 16, 59))
    assert not Digest.objects.exists()
    reminders_sweep(now=_local(2026, 12, 3, 17, 0))
    reminders_sweep(now=_local(2026, 12, 3, 23, 59))
    (d,) = Digest.objects.all()
    assert (d.recipient_id, d.local_date) == (world.nurse.pk, dt.date(2026, 12, 3))
    assert d.due_moment == _local(2026, 12, 3, 17, 0)
    # 00:30 on the 4th in New York: a new local day, but its send time has not come
    reminders_sweep(now=_local(2026, 12, 4, 0, 30))
    assert Digest.objects.count() == 1
    reminders_sweep(now=_local(2026, 12, 4, 18, 0))
    assert sorted(Digest.objects.values_list("local_date", flat=True)) == [
        dt.date(2026, 12, 3),
        dt.date(2026, 12, 4),
    ]


def test_local_day_is_the_recipients_own_not_the_sites(world, settings):
    settings.TIME_ZONE = "UTC"
    _opt_in(world.nurse, at=dt.time(8, 0), tz="Pacific/Auckland")
    _opt_in(world.pharmacist, at=dt.time(8, 0), tz="Pacific/Honolulu")
    # 2026-12-04 19:30 UTC: 08:30 on the 5th in Auckland, 09:30 on the 4th in Honolulu
    reminders_sweep(now=dt.datetime(2026, 12, 4, 19, 30, tzinfo=dt.UTC))
    got = dict(Digest.objects.values_list("recipient_id", "local_date"))
    assert got == {world.nurse.pk: dt.date(2026, 12, 5), world.pharmacist.pk: dt.date(2026, 12, 4)}


def test_send_time_skipped_by_the_clocks_going_forward_sends_once_at_the_first_minute_after(world):
    _opt_in(world.nurse, at=dt.time(2, 30))  # 2026-03-08 02:00 EST jumps to 03:00 EDT
    reminders_sweep(now=dt.datetime(2026, 3, 8, 6, 59, tzinfo=dt.UTC))  # 01:59 EST
    assert not Digest.objects.exists()
    reminders_sweep(now=dt.datetime(2026, 3, 8, 7, 0, tzinfo=dt.UTC))  # 03:00 EDT
    reminders_sweep(now=dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC))
    assert list(Digest.objects.values_list("local_date", flat=True)) == [dt.date(2026, 3, 8)]


def test_send_time_the_clocks_going_back_repeat_sends_only_the_first_time(world):
    _opt_in(world.nurse, at=dt.time(1, 30))  # 2026-11-01 01:00-02:00 happens twice
    first = _local(2026, 11, 1, 1, 30, fold=0)
    second = _local(2026, 11, 1, 1, 30, fold=1)
    assert second - first == dt.timedelta(hours=1)
    reminders_sweep(now=first)
    reminders_sweep(now=second)
    (d,) = Digest.objects.all()
    assert d.local_date == dt.date(2026, 11, 1)
    assert d.created_at == first


def test_sweep_down_at_the_send_time_catches_up_that_day_but_never_the_next(world):
    _opt_in(world.nurse, at=dt.time(17, 0))
    # down from 16:00 on the 3rd to 09:00 on the 4th: the 3rd's digest is not sent late
    reminders_sweep(now=_local(2026, 12, 4, 9, 0))
    assert not Digest.objects.exists()
    reminders_sweep(now=_local(2026, 12, 4, 21, 45))  # late the same day: caught up
    assert list(Digest.objects.values_list("local_date", flat=True)) == [dt.date(2026, 12, 4)]


def test_nobody_who_did_not_opt_in_or_has_no_email_or_is_inactive_gets_one(world):
    preference_update(user=world.pharmacist, time_zone="UTC", digest_enabled=False, digest_time=dt.time(0, 0))
    world.lead.email = ""
    world.lead.save()
    _opt_in(world.lead, at=dt.time(0, 0), tz="UTC")
    world.behavioural.is_active = False
    world.behavioural.save()
    _opt_in(world.behavioural, at=dt.time(0, 0), tz="UTC")
    reminders_sweep()
    assert not Digest.objects.exists()


def test_restore_records_due_digests_as_skipped_and_sends_none(world):
    _opt_in(world.nurse, at=dt.time(0, 0), tz="UTC")
    _waiting_handoff(world, world.nurse)
    team_services.database_restore_record(backup="nightly.dump")
    d = Digest.objects.get()
    assert d.email_skipped_at is not None
    assert digest_email_send(digest_id=d.pk) is False
    assert mail.outbox == []


# ---------------------------------------------------------------------------
# What it says
# ---------------------------------------------------------------------------
def test_digest_email_has_counts_and_links_and_never_a_patient_or_clinical_text(world):
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    yesterday = timezone.localdate() - dt.timedelta(days=3)
    _waiting_handoff(world, world.nurse)
    f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse, due_date=tomorrow, title="Wound check")
    f.ActivityFactory(
        care_plan=world.plan, assigned_to=world.nurse, due_date=yesterday, title="Insulin teaching"
    )
    _opt_in(world.nurse, at=dt.time(0, 0), tz="UTC")
    mail.outbox.clear()
    reminders_sweep()
    d = Digest.objects.get()
    assert digest_email_send(digest_id=d.pk) is True
    assert digest_email_send(digest_id=d.pk) is False  # sent once
    (message,) = mail.outbox
    assert message.to == [world.nurse.email]
    d.refresh_from_db()
    assert d.counts == {"handoffs_waiting": 1, "due_tomorrow": 1, "overdue": 1}
    text = message.subject + message.body
    assert "Handoffs waiting for you to accept: 1" in text
    assert "Items due tomorrow: 1" in text and "Overdue items: 1" in text
    assert f"https://careteam.example.org{reverse('my_work')}" in text
    for secret in ("Alice", "Team,", "P-TEAM-1", "Discharged", "fall", "Wound", "Insulin", "CHF"):
        assert secret not in text, secret
    assert message.extra_headers["Message-ID"].startswith(f"<digest-{world.nurse.pk}.")


def test_nothing_to_say_sends_no_email_and_marks_the_digest_skipped(world):
    _opt_in(world.pharmacist, at=dt.time(0, 0), tz="UTC")
    reminders_sweep()
    d = Digest.objects.get()
    assert digest_email_send(digest_id=d.pk) is False
    d.refresh_from_db()
    assert d.email_skipped_at is not None and d.email_sent_at is None
    assert set(d.counts.values()) == {0}
    assert mail.outbox == []


def test_digest_turned_off_after_it_was_created_is_not_sent(world):
    _waiting_handoff(world, world.nurse)
    _opt_in(world.nurse, at=dt.time(0, 0), tz="UTC")
    mail.outbox.clear()
    reminders_sweep()
    preference_update(user=world.nurse, time_zone="UTC", digest_enabled=False, digest_time=dt.time(0, 0))
    assert digest_email_send(digest_id=Digest.objects.get().pk) is False
    assert mail.outbox == []


def test_counts_leave_out_what_the_recipient_may_not_see(world):
    """A sensitive activity of the nurse's queue in a category nursing may not see, work
    on another team's patient, and a patient whose team the nurse left: none is counted,
    so a digest about nothing else is not sent at all."""
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    f.ActivityFactory(
        care_plan=world.plan,
        owner_discipline=f.discipline("nursing"),
        due_date=tomorrow,
        sensitivity=world.behavioural_health,
    )
    f.ActivityFactory(care_plan=world.other_plan, owner_discipline=f.discipline("nursing"), due_date=tomorrow)
    left = f.PatientFactory(mrn="P-LEFT-1")
    team_services.membership_add(
        patient=left,
        user=world.nurse,
        discipline=f.discipline("nursing"),
        start_date=timezone.localdate() - dt.timedelta(days=9),
    )
    left_plan = f.CarePlanFactory(patient=left)
    f.ActivityFactory(care_plan=left_plan, assigned_to=world.nurse, due_date=tomorrow)
    team_services.membership_end(membership=world.nurse.memberships.get(patient=left))
    _opt_in(world.nurse, at=dt.time(0, 0), tz="UTC")
    reminders_sweep()
    d = Digest.objects.get()
    assert digest_email_send(digest_id=d.pk) is False
    d.refresh_from_db()
    assert d.counts == {"handoffs_waiting": 0, "due_tomorrow": 0, "overdue": 0}
    # the behavioural-health clinician's queue does see its own sensitive work
    f.ActivityFactory(
        care_plan=world.plan,
        owner_discipline=f.discipline("behavioural-health"),
        due_date=tomorrow,
        sensitivity=world.behavioural_health,
    )
    _opt_in(world.behavioural, at=dt.time(0, 0), tz="UTC")
    reminders_sweep()
    bh = Digest.objects.get(recipient=world.behavioural)
    assert digest_email_send(digest_id=bh.pk) is True
    bh.refresh_from_db()
    assert bh.counts["due_tomorrow"] == 1


def test_counts_take_tomorrow_in_the_recipients_time_zone(world):
    """At 23:00 on the 3rd in New York (04:00 on the 4th UTC) "tomorrow" is the 4th."""
    now = _local(2026, 12, 3, 23, 0)
    f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse, due_date=dt.date(2026, 12, 4))
    _opt_in(world.nurse, at=dt.time(22, 0))
    reminders_sweep(now=now)
    d = Digest.objects.get()
    assert d.local_date == dt.date(2026, 12, 3)
    assert digest_email_send(digest_id=d.pk, now=now) is True
    d.refresh_from_db()
    assert d.counts["due_tomorrow"] == 1 and d.counts["overdue"] == 0


def test_digest_sends_a_fixed_number_of_queries_whatever_the_counts(world, django_assert_max_num_queries):
    _opt_in(world.nurse, at=dt.time(0, 0), tz="UTC")
    _waiting_handoff(world, world.nurse)
    reminders_sweep()
    with django_assert_max_num_queries(14):
        assert digest_email_send(digest_id=Digest.objects.get().pk)
    for i in range(20):
        _waiting_handoff(world, world.nurse, situation=f"Situation {i}")
        f.ActivityFactory(care_plan=world.plan, assigned_to=world.nurse, due_date=timezone.localdate())
    Digest.objects.all().delete()
    reminders_sweep()
    with django_assert_max_num_queries(14):
        assert digest_email_send(digest_id=Digest.objects.get().pk)


# ---------------------------------------------------------------------------
# The settings page
# ---------------------------------------------------------------------------
def test_settings_page_shows_and_saves_the_callers_own_choice(client, world):
    client.force_login(world.nurse)
    url = reverse("account_settings")
    page = client.get(url)
    assert page.status_code == 200
    assert b"end-of-day digest" in page.content
    response = client.post(url, {"time_zone": "Europe/Paris", "digest_enabled": "on", "digest_time": "18:30"})
    assert response.status_code == 302
    pref = UserPreference.objects.get(user=world.nurse)
    assert (pref.time_zone, pref.digest_enabled, pref.digest_time) == ("Europe/Paris", True, dt.time(18, 30))
    assert not UserPreference.objects.exclude(user=world.nurse).exists()


@pytest.mark.parametrize(
    "data",
    [
        {"time_zone": "Mars/Olympus_Mons", "digest_enabled": "on", "digest_time": "18:30"},
        {"time_zone": "Europe/Paris", "digest_enabled": "on", "digest_time": "25:99"},
        {"time_zone": "Europe/Paris", "digest_enabled": "on", "digest_time": ""},
    ],
)
def test_settings_page_refuses_a_bad_zone_or_time_and_saves_nothing(client, world, data):
    client.force_login(world.nurse)
    response = client.post(reverse("account_settings"), data)
    assert response.status_code == 400
    assert b"field-error" in response.content
    assert not UserPreference.objects.exists()


def test_preference_service_refuses_a_zone_postgresql_does_not_know(world):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        preference_update(
            user=world.nurse, time_zone="Nowhere/Else", digest_enabled=True, digest_time=dt.time(9)
        )
    assert not UserPreference.objects.exists()
    assert digests.preference_for(world.nurse).digest_enabled is False
