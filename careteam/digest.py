# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The end-of-day digest: a person's opt-in email, at their chosen local time, that says
how much is waiting for them (counts and links, never a patient's name or clinical text).

How it is sent, and why so:
- The reminder sweep (careteam/reminders.py, `digests_create`) inserts one `Digest` row
  per recipient whose local send time has come today, in one set-based statement that
  claims their preference rows with SKIP LOCKED; the unique key (recipient, local day) is
  what makes two overlapping sweeps, a second beat or a retried task create it once.
  The local day and time come from the recipient's own time zone, computed by PostgreSQL:
  on the day clocks go forward a send time that does not exist goes out at the first
  minute after it, on the day they go back the first of the two occurrences sends it.
  A sweep that was down at the send time catches up later that same local day, never
  the next one (yesterday's counts are no use tomorrow).
- The email task counts at send time, as the recipient, through the same restricted
  querysets as My work (careteam.permissions): what they may not see is never counted.
  Nothing to say: no email, the row marked skipped. The row is locked and marked sent
  before the SMTP send, so a redelivered task finds it handled (at least once, with one
  Message-ID, as careteam.notifications does for reminders).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from careplans.selectors import my_activities

from . import publisher
from .handoffs import inbox_q, my_handoffs_to_do
from .models import Digest, User, UserPreference

logger = logging.getLogger(__name__)

# digests per email task message: each is a handful of count queries and one SMTP send
DIGEST_CHUNK = 50


# ---------------------------------------------------------------------------
# The preference
# ---------------------------------------------------------------------------
def preference_for(user) -> UserPreference:
    """The user's preferences, unsaved defaults (the site's time zone) when they never
    saved any."""
    user = getattr(user, "_wrapped", user)
    try:
        return UserPreference.objects.get(user_id=user.pk)
    except UserPreference.DoesNotExist:
        return UserPreference(user_id=user.pk, time_zone=settings.TIME_ZONE)


def time_zone_known(name: str) -> bool:
    """A zone both Python and PostgreSQL know: the page shows local times with the first,
    the sweep finds the local day with the second."""
    if name not in zoneinfo.available_timezones():
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_timezone_names WHERE name = %s", [name])
        return cursor.fetchone() is not None


@transaction.atomic
def preference_update(*, user, time_zone: str, digest_enabled: bool, digest_time: dt.time) -> UserPreference:
    """Save the user's time zone and digest choice (ValidationError, nothing saved, for a
    zone not known)."""
    user = getattr(user, "_wrapped", user)
    if not time_zone_known(time_zone):
        raise ValidationError({"time_zone": "Choose a time zone from the list (e.g. Europe/Paris)."})
    pref, _ = UserPreference.objects.select_for_update().get_or_create(user_id=user.pk)
    pref.time_zone = time_zone
    pref.digest_enabled = digest_enabled
    pref.digest_time = digest_time.replace(second=0, microsecond=0)
    pref.save()
    return pref


# ---------------------------------------------------------------------------
# What a digest says: counts, as the recipient may see them
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    key: str
    label: str
    count: int
    url: str


# every kind of count a digest may carry, in the order the email lists them; the
# conversations part adds its own through COUNTERS
COUNTERS: list = []


def counter(fn):
    """Register a function (user, today, now, since) -> [(key, label, count, path)]."""
    COUNTERS.append(fn)
    return fn


@counter
def _work_counts(user, *, today: dt.date, now: dt.datetime, since: dt.datetime) -> list[tuple]:
    """Handoffs waiting for me, items due tomorrow and overdue items: the kinds of My
    work, counted the way My work lists them (careplans.selectors, careteam.handoffs)."""
    tomorrow = today + dt.timedelta(days=1)
    day_after = _local_midnight(tomorrow + dt.timedelta(days=1), user)
    start_tomorrow = _local_midnight(tomorrow, user)
    handoffs = my_handoffs_to_do(user)
    activities = my_activities(user)
    waiting = handoffs.filter(inbox_q(user)).count()
    due_tomorrow = (
        activities.filter(due_date=tomorrow).count()
        + handoffs.filter(due_at__gte=start_tomorrow, due_at__lt=day_after).count()
    )
    overdue = activities.filter(due_date__lt=today).count() + handoffs.filter(due_at__lt=now).count()
    work = reverse("my_work")
    return [
        ("handoffs_waiting", "Handoffs waiting for you to accept", waiting, f"{work}?kind=handoff-to-accept"),
        ("due_tomorrow", "Items due tomorrow", due_tomorrow, work),
        ("overdue", "Overdue items", overdue, f"{work}?overdue=1"),
    ]


def _zone(user) -> zoneinfo.ZoneInfo:
    tz = getattr(user, "_digest_time_zone", None) or preference_for(user).time_zone
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _local_midnight(day: dt.date, user) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=_zone(user))


def digest_lines(user, *, today: dt.date, now: dt.datetime, since: dt.datetime) -> list[Line]:
    """Every count of the user's digest for their local day `today` (new things since
    `since`, the previous digest)."""
    lines: list[Line] = []
    for fn in COUNTERS:
        for key, label, count, path in fn(user, today=today, now=now, since=since):
            lines.append(Line(key, label, count, f"{settings.SITE_URL}{path}"))
    return lines


# ---------------------------------------------------------------------------
# Creating (a step of the reminder sweep)
# ---------------------------------------------------------------------------
# The recipient's wall clock now, in their own zone
_LOCAL_NOW = "(%(now)s::timestamptz AT TIME ZONE p.time_zone)"

# One statement: whose send time has come today (their today) and who has no digest for
# it yet; their preference rows are claimed with SKIP LOCKED (a concurrent sweep takes
# the others, or finds the row and inserts nothing), and the unique key decides the rest.
_DIGESTS_CREATE = f"""
    WITH due AS MATERIALIZED (
        SELECT p.user_id, {_LOCAL_NOW}::date AS local_date,
               (({_LOCAL_NOW}::date + p.digest_time)::timestamp AT TIME ZONE p.time_zone) AS due_moment
        FROM careteam_userpreference p
        JOIN careteam_user u ON u.id = p.user_id AND u.is_active AND u.email <> ''
        WHERE p.digest_enabled AND {_LOCAL_NOW}::time >= p.digest_time
          AND (
              SELECT 1 FROM careteam_digest g
              WHERE g.recipient_id = p.user_id AND g.local_date = {_LOCAL_NOW}::date
              LIMIT 1
          ) IS NULL
        FOR UPDATE OF p SKIP LOCKED
    )
    INSERT INTO careteam_digest
        (recipient_id, local_date, due_moment, created_at, counts, email_sent_at, email_skipped_at)
    SELECT user_id, local_date, due_moment, %(now)s, '{{}}'::jsonb, NULL, %(email_skipped_at)s FROM due
    ON CONFLICT ON CONSTRAINT one_digest_per_recipient_and_day DO NOTHING
    RETURNING id"""


def digests_create(*, now: dt.datetime, send_emails: bool = True) -> list[int]:
    """Create the digests whose local send time has come (each once) and enqueue their
    emails after commit; with `send_emails=False` (after a restore) they are recorded as
    skipped. Returns the ids created."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _DIGESTS_CREATE, {"now": now, "email_skipped_at": None if send_emails else timezone.now()}
        )
        ids = [row[0] for row in cursor.fetchall()]
        if ids and send_emails:
            enqueue_digests(ids)
    return ids


# ---------------------------------------------------------------------------
# Sending (the Celery task's body; idempotent)
# ---------------------------------------------------------------------------
def digest_message_id(digest: Digest) -> str:
    return f"<digest-{digest.recipient_id}.{digest.local_date:%Y%m%d}@{settings.EMAIL_MESSAGE_ID_DOMAIN}>"


def digest_email_send(*, digest_id: int, now: dt.datetime | None = None) -> bool:
    """Count and send one digest unless it was handled already. Returns True if an email
    went out. Nothing to say, the digest turned off since, or an account without email:
    the row is marked skipped and nothing is sent."""
    handled = Q(email_sent_at__isnull=False) | Q(email_skipped_at__isnull=False)
    if Digest.objects.filter(handled, pk=digest_id).exists():
        return False
    now = now or timezone.now()
    with transaction.atomic():
        digest = (
            Digest.objects.select_for_update(of=("self",))
            .select_related("recipient")
            .filter(pk=digest_id)
            .first()
        )
        if digest is None or digest.email_handled:
            return False
        user: User = digest.recipient
        pref = preference_for(user)
        if not (user.is_active and user.email and pref.digest_enabled):
            digest.email_skipped_at = now
            digest.save(update_fields=["email_skipped_at"])
            return False
        user._digest_time_zone = pref.time_zone
        previous = (
            Digest.objects.filter(recipient_id=user.pk, local_date__lt=digest.local_date)
            .order_by("-local_date")
            .values_list("due_moment", flat=True)
            .first()
        )
        since = previous or digest.due_moment - dt.timedelta(days=1)
        lines = digest_lines(user, today=digest.local_date, now=now, since=since)
        digest.counts = {line.key: line.count for line in lines}
        if not any(line.count for line in lines):
            digest.email_skipped_at = now
            digest.save(update_fields=["counts", "email_skipped_at"])
            return False
        message = EmailMessage(
            subject=f"CareTeam: your day, {digest.local_date:%-d %b %Y}",
            body=_body(lines, digest),
            to=[user.email],
            headers={"Message-ID": digest_message_id(digest), "X-CareTeam-Digest": str(digest.pk)},
        )
        # marked before the send, under the row lock: a failed send rolls the mark back
        digest.email_sent_at = now
        digest.save(update_fields=["counts", "email_sent_at"])
        message.send()
    return True


def _body(lines: list[Line], digest: Digest) -> str:
    """Counts and links only: the email names no patient and carries no clinical text."""
    shown = [line for line in lines if line.count]
    rows = "\n".join(f"- {line.label}: {line.count}\n  {line.url}" for line in shown)
    settings_url = f"{settings.SITE_URL}{reverse('account_settings')}"
    return (
        f"Your CareTeam end-of-day digest for {digest.local_date:%-d %b %Y}.\n\n{rows}\n\n"
        f"Sign in to see them. To change the time or stop these emails: {settings_url}\n"
    )


def digests_requeue(*, now: dt.datetime, limit: int = 20_000) -> int:
    """Enqueue again the digests still unsent after the grace period and still of their
    recipient's day (a lost broker message); rows a worker is sending are skipped."""
    grace = dt.timedelta(seconds=settings.NOTIFICATION_EMAIL_GRACE_SECONDS)
    with transaction.atomic():
        ids = list(
            Digest.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(email_sent_at__isnull=True, email_skipped_at__isnull=True)
            .filter(created_at__lte=now - grace, created_at__gte=now - dt.timedelta(hours=24))
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            enqueue_digests(ids)
    return len(ids)


def enqueue_digests(ids: list[int]) -> None:
    """After commit, enqueue the digests' emails on the background publisher (the caller
    never waits on the broker; a lost message is re-enqueued by `digests_requeue`)."""
    ids = list(ids)

    def publish() -> None:
        for start in range(0, len(ids), DIGEST_CHUNK):
            publisher.send_task("careteam.send_digest_emails", [ids[start : start + DIGEST_CHUNK]])

    transaction.on_commit(lambda: publisher.submit(publish, f"{len(ids)} digest email(s)"))
