# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The reminder sweep: finds what is due and creates one Notification per (recipient,
kind, object, due moment), then enqueues the emails; it also creates the end-of-day
digests whose recipients' local send time has come (careteam/digest.py).

Why it is built this way:
- Every rule is ONE set-based statement, `INSERT ... SELECT ... ON CONFLICT DO NOTHING`,
  so the sweep runs a fixed number of queries however many reminders are due, and the
  database's uniqueness key (`one_notification_per_reminder`) is what guarantees a
  reminder exists once, whether two sweeps overlap, a beat fires twice or a worker dies.
- The due moment is computed from the object (created_at + threshold, due_at, due_date,
  review_due, sent_at + expected response days), never from "now", so a sweep that was
  down for an hour creates exactly the reminders it missed, each once.
- Objects already reminded for this due moment are skipped before anything is locked
  (an index probe per due object), so a sweep's cost follows what became due, not the
  backlog of overdue objects in the whole database.
- Source rows are claimed with `FOR UPDATE ... SKIP LOCKED`: a concurrent sweep (or a
  clinician accepting that very handoff) is not waited for; whatever is skipped is
  picked up by the next minute's sweep.
- A reminder goes only to people who can see the patient right now: the access layer's
  SQL form of its own rule (`careteam.permissions.team_member_may_see_sql`: an active
  account, a guardian view grant AND a current membership; sensitive items only to the
  disciplines their category allows, and the case manager), which
  tests/test_access_sql_agrees.py holds equal to `team_member_q`. The email task checks
  again when it sends.
- Each app registers its own rules (`register_rule`, from its AppConfig.ready: care plans,
  referrals, transitions, visits, the portal); a rule's own parameters travel with it (`Rule.params`).
- Emails are enqueued after commit by a background publisher thread, so no request or
  sweep waits on Redis; if Redis is down or hung the failure is logged, the notification
  stays unsent (the row is the outbox), and the sweep enqueues it again after a grace period.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import digest
from .cover import receiver_sql
from .models import HANDOFF_OPEN_STATUSES, Notification, NotificationKind
from .notifications import enqueue_emails
from .permissions import (
    case_manager_sql,
    current_member_sql,
    sql_params,
    team_member_may_see_sql,
)

logger = logging.getLogger(__name__)

# At most this many unsent emails are re-enqueued per sweep (the rest next minute).
REQUEUE_LIMIT = 20_000

# how a message is published (on the background publisher thread, careteam/publisher.py)


# ---------------------------------------------------------------------------
# SQL building blocks (who is on a team, who may see what: careteam.permissions)
# ---------------------------------------------------------------------------
# "Can recipient t.recipient_id see patient t.patient_id (and the item's category) now?"
_CAN_SEE = team_member_may_see_sql("t.recipient_id", "t.patient_id", "t.sensitivity_id")

PATIENT_NAME = "pt.family_name || ', ' || pt.given_name"
# how a title names the item: a handoff by its situation, quoted and cut at 60 characters
_SITUATION = (
    "'“' || CASE WHEN length(h.situation) > 60 THEN left(h.situation, 59) || '…' ELSE h.situation END || '”'"
)


def _handoff_due(columns: str, title: str, where: str) -> str:
    """The due-objects SELECT of a handoff rule: the handoff and its patient, `columns`
    (the recipients' inputs and the due moment), the notification's title (SQL, with
    `_SITUATION` and `PATIENT_NAME` at hand) and the rule's condition."""
    return f"""
            SELECT h.id AS object_id, h.patient_id, {columns},
                   {title} AS title,
                   '/team/handoffs/' || h.id || '/' AS url, NULL::bigint AS sensitivity_id
            FROM careteam_handoff h JOIN patients_patient pt ON pt.id = h.patient_id
            WHERE {where}"""


def days(expr: str) -> str:
    """'1 day' / '3 days' for an integer SQL expression."""
    return f"({expr})::text || CASE WHEN ({expr}) = 1 THEN ' day' ELSE ' days' END"


# Who gets each reminder: each block selects the due rows `d` with a `recipient_id`. Plain
# joins (no LATERAL), so the planner can hash-join a hundred thousand due rows.
_HANDOFF_RECEIVERS = f"""
    SELECT d.*, d.to_user_id AS recipient_id FROM d WHERE d.to_user_id IS NOT NULL
    UNION ALL
    SELECT d.*, m.user_id FROM d JOIN careteam_teammembership m
      ON {current_member_sql("d.patient_id", "m.discipline_id = d.to_discipline_id")}
    WHERE d.to_user_id IS NULL"""

CASE_MANAGER = f"""
    SELECT d.*, m.user_id AS recipient_id FROM d JOIN careteam_teammembership m
      ON {current_member_sql("d.patient_id", case_manager_sql("m"))}"""


# a huddle's reminder: HUDDLE_REMINDER_MINUTES before its deadline, or halfway between its
# start and its deadline when that is later (a deadline set close)
_HUDDLE_DUE = "GREATEST(h.deadline - %(huddle_soon)s, h.started_at + (h.deadline - h.started_at) / 2)"


@dataclass(frozen=True)
class Rule:
    """One kind of reminder: `due_sql` selects the due objects (object_id, patient_id,
    due_moment, title, url, sensitivity_id and whatever `recipients_sql` needs), locking
    the source alias `lock`; `recipients_sql` selects `d.*` and a `recipient_id` from them."""

    kind: str
    object_type: str
    lock: str
    due_sql: str
    recipients_sql: str
    # the due moment as an expression over the source row (also selected as due_moment)
    due_moment: str
    # who may receive it: the team rule by default; a rule for partner staff (who see no
    # chart, only their organisation's referrals) says its own in its recipients_sql
    can_see: str = _CAN_SEE
    # the rule's own bound parameters, beside the sweep's (now, today, tz, ...)
    params: Mapping[str, Any] = field(default_factory=dict)


RULES: tuple[Rule, ...] = (
    Rule(
        kind=NotificationKind.HANDOFF_UNACKNOWLEDGED,
        due_moment="h.created_at + %(ack)s",
        object_type="careteam.handoff",
        lock="h",
        due_sql=_handoff_due(
            "h.to_user_id, h.to_discipline_id, h.created_at + %(ack)s AS due_moment",
            f"'Handoff ' || {_SITUATION} || ' is waiting for you to accept it (' || {PATIENT_NAME} || ')'",
            "h.status = 'requested' AND h.created_at <= %(now)s - %(ack)s",
        ),
        recipients_sql=_HANDOFF_RECEIVERS,
    ),
    Rule(
        kind=NotificationKind.HANDOFF_DUE_SOON,
        due_moment="h.due_at - %(soon)s",
        object_type="careteam.handoff",
        lock="h",
        # Only while it is still before the due time; a handoff that passed its due time
        # without one gets HANDOFF_OVERDUE_RECEIVER instead.
        due_sql=_handoff_due(
            "h.to_user_id, h.to_discipline_id, h.due_at - %(soon)s AS due_moment",
            f"'Handoff ' || {_SITUATION} || ' is due soon (' || {PATIENT_NAME} || ')'",
            "h.status = ANY(%(handoff_open)s) AND h.due_at > %(now)s AND h.due_at <= %(now)s + %(soon)s",
        ),
        recipients_sql=_HANDOFF_RECEIVERS,
    ),
    Rule(
        kind=NotificationKind.HANDOFF_OVERDUE_RECEIVER,
        due_moment="h.due_at",
        object_type="careteam.handoff",
        lock="h",
        # The catch-up of "due soon": a sweep gap (beat down, rows skipped while locked)
        # that spans the due time leaves the receiver untold. Once past due, a handoff with
        # no "due soon" reminder for this due time (to anyone: a queue's is sent to every
        # member) tells its receiver it is overdue, once. The probe skips the handoffs that
        # had theirs before they are locked, as the INSERT's own probe does.
        due_sql=_handoff_due(
            "h.to_user_id, h.to_discipline_id, h.due_at AS due_moment",
            f"'Handoff ' || {_SITUATION} || ' is overdue (' || {PATIENT_NAME} || ')'",
            f"""h.status = ANY(%(handoff_open)s) AND h.due_at <= %(now)s
              AND (
                  SELECT 1 FROM careteam_notification n
                  WHERE n.object_id = h.id AND n.object_type = 'careteam.handoff'
                    AND n.kind = '{NotificationKind.HANDOFF_DUE_SOON.value}' AND n.due_moment = h.due_at - %(soon)s
                  LIMIT 1
              ) IS NULL""",
        ),
        recipients_sql=_HANDOFF_RECEIVERS,
    ),
    Rule(
        kind=NotificationKind.HANDOFF_OVERDUE_ESCALATION,
        due_moment="h.due_at",
        object_type="careteam.handoff",
        lock="h",
        due_sql=_handoff_due(
            "h.due_at AS due_moment",
            f"'Handoff ' || {_SITUATION} || ' is overdue, escalated to you (' || {PATIENT_NAME} || ')'",
            "h.status = ANY(%(handoff_open)s) AND h.due_at <= %(now)s",
        ),
        recipients_sql=CASE_MANAGER,
    ),
    Rule(
        kind=NotificationKind.HANDOFF_SENT_OVERDUE,
        due_moment="h.due_at",
        object_type="careteam.handoff",
        lock="h",
        # the sender's loop: what they handed on is past its due time and not completed
        due_sql=_handoff_due(
            "h.from_user_id, h.due_at AS due_moment",
            f"""'Handoff ' || {_SITUATION} || ' you sent is overdue, '
                   || CASE WHEN h.status = 'requested' THEN 'not accepted yet' ELSE 'not completed yet' END
                   || ' (' || {PATIENT_NAME} || ')'""",
            "h.status = ANY(%(handoff_open)s) AND h.due_at <= %(now)s",
        ),
        recipients_sql="SELECT d.*, d.from_user_id AS recipient_id FROM d",
    ),
    Rule(
        kind=NotificationKind.HUDDLE_ANSWER_DUE,
        due_moment=_HUDDLE_DUE,
        object_type="careteam.huddleinvitation",
        lock="i",
        # An invited member who has not answered an open huddle is reminded once: a set
        # time before its deadline, or halfway to it when the deadline was set nearer.
        due_sql=f"""
            SELECT i.id AS object_id, h.patient_id, i.user_id, {_HUDDLE_DUE} AS due_moment,
                   'Your huddle update is due by ' || to_char(h.deadline AT TIME ZONE %(tz)s, 'DD Mon HH24:MI')
                       || ' (' || {PATIENT_NAME} || ')' AS title,
                   '/patients/' || h.patient_id || '/huddles/' || h.id || '/' AS url,
                   NULL::bigint AS sensitivity_id
            FROM careteam_huddleinvitation i
            JOIN careteam_huddle h ON h.id = i.huddle_id
            JOIN patients_patient pt ON pt.id = h.patient_id
            WHERE i.answered_at IS NULL AND h.status = 'open' AND {_HUDDLE_DUE} <= %(now)s""",
        recipients_sql="SELECT d.*, d.user_id AS recipient_id FROM d",
    ),
)


# Rules other apps add (visits/: visit reminders, authorisation warnings), registered once
# from their AppConfig.ready(); the sweep runs them after its own, the same way.
_REGISTERED: list[Rule] = []


def register_rule(rule: Rule) -> None:
    """Add an app's reminder rule to the sweep (idempotent per kind)."""
    if all(r.kind != rule.kind for r in (*RULES, *_REGISTERED)):
        _REGISTERED.append(rule)


def all_rules() -> tuple[Rule, ...]:
    return (*RULES, *_REGISTERED)


# Steps other apps run at the start of every sweep, before the rules (visits/: an
# authorisation whose end date has passed becomes expired), registered once from their
# AppConfig.ready(). Each takes `now`, is idempotent (a second sweep finds nothing left
# to do) and returns how many objects it moved; one failing never stops the reminders.
_STEPS: dict[str, Callable[..., int]] = {}


def register_step(name: str, step: Callable[..., int]) -> None:
    """Add an app's state-moving step to the sweep (idempotent per name)."""
    _STEPS.setdefault(name, step)


def _insert_sql(rule: Rule) -> str:
    """The rule's INSERT. Objects whose reminder for this due moment already exists (for
    anyone) are skipped before they are locked, by the `notification_object_idx` probe: the
    steady-state sweep then reads only what became due since the last one, instead of
    re-locking the whole backlog of overdue objects every minute and letting the unique
    key discard it. The probe leads with the object id, so it never visits the rows this
    statement inserts for other objects. It is written as a scalar subquery, not NOT
    EXISTS, so that it stays one index probe per due object whatever the statistics say:
    right after a large catch-up the table's statistics still say "empty", and an anti-join
    planned on them rescans the whole notification table for every due object. (Consequence: a colleague who joins the team
    after a reminder went out is not sent it; the unique key still decides the rest.)"""
    return f"""
        WITH d AS MATERIALIZED (
            {rule.due_sql}
              AND (
                  SELECT 1 FROM careteam_notification n
                  WHERE n.object_id = {rule.lock}.id AND n.object_type = %(object_type)s
                    AND n.kind = %(kind)s AND n.due_moment = {rule.due_moment}
                  LIMIT 1
              ) IS NULL
            FOR UPDATE OF {rule.lock} SKIP LOCKED
        ), r AS (
            {rule.recipients_sql}
        ), t AS (
            -- whoever is away is reminded through the colleague covering them (careteam.cover)
            SELECT r.object_id, r.patient_id, r.due_moment, r.title, r.url, r.sensitivity_id,
                   {receiver_sql("r.recipient_id")} AS recipient_id
            FROM r
        )
        INSERT INTO careteam_notification
            (recipient_id, kind, patient_id, object_type, object_id, due_moment,
             title, body, url, sensitivity_id, created_at, email_sent_at, email_skipped_at, read_at)
        SELECT t.recipient_id, %(kind)s, t.patient_id, %(object_type)s, t.object_id, t.due_moment,
               left(t.title, 200), '', t.url, t.sensitivity_id, %(now)s, NULL, %(email_skipped_at)s, NULL
        FROM t JOIN careteam_user u ON u.id = t.recipient_id AND u.is_active
        WHERE {rule.can_see}
        ON CONFLICT ON CONSTRAINT one_notification_per_reminder DO NOTHING
        RETURNING id"""


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------
@dataclass
class SweepResult:
    created: dict[str, int] = field(default_factory=dict)
    requeued: int = 0
    moved: dict[str, int] = field(default_factory=dict)  # by the registered steps

    @property
    def total(self) -> int:
        return sum(self.created.values())


def reminders_sweep(*, now: dt.datetime | None = None, send_emails: bool = True) -> SweepResult:
    """Create every reminder that is due (each once) and enqueue their emails; then
    re-enqueue emails that are still unsent after the grace period. A fixed number of
    statements (one INSERT per rule, one SELECT for the re-enqueue, and their SET and
    transaction bookkeeping): the query count does not depend on how much is due.

    With `send_emails=False` (after a restore) the reminders are created with their email
    marked skipped and nothing is enqueued: what was due before that moment counts as
    handled, and the next sweeps find the rows and send nothing for it again."""
    now = now or timezone.now()
    params = {
        "now": now,
        "email_skipped_at": None if send_emails else timezone.now(),
        "today": timezone.localdate(now),
        "tz": settings.TIME_ZONE,
        "ack": dt.timedelta(minutes=settings.HANDOFF_ACK_REMINDER_MINUTES),
        "soon": dt.timedelta(minutes=settings.HANDOFF_DUE_SOON_MINUTES),
        "handoff_open": list(HANDOFF_OPEN_STATUSES),
        "visit_soon": dt.timedelta(hours=settings.VISIT_REMINDER_HOURS),
        "huddle_soon": dt.timedelta(minutes=settings.HUDDLE_REMINDER_MINUTES),
        "auth_expiry": dt.timedelta(days=settings.AUTHORISATION_EXPIRY_WARNING_DAYS),
        "auth_units": settings.AUTHORISATION_UNITS_WARNING,
        "auth_request": dt.timedelta(days=settings.AUTHORISATION_REQUEST_WARNING_DAYS),
        "partner_grace": settings.PARTNER_REFERRER_REMINDER_DAYS,
        "portal_reply": dt.timedelta(hours=settings.PORTAL_MESSAGE_REMINDER_HOURS),
    }
    # today and the permission's id as values (not a join: the planner then estimates
    # the grants right), for the access fragments of careteam.permissions
    params.update(sql_params(now))
    result = SweepResult()
    for name, step in _STEPS.items():
        try:
            result.moved[name] = step(now=now)
        except Exception:  # a step's failure is logged; the reminders still go out
            logger.exception("reminder sweep step %s failed", name)
    for rule in all_rules():
        # One transaction per rule: source rows stay locked only while their rule runs.
        with transaction.atomic(), connection.cursor() as cursor:
            # JIT compiling these statements costs seconds and saves nothing: they are joins
            cursor.execute("SET LOCAL jit = off")
            cursor.execute(
                _insert_sql(rule),
                {**params, **rule.params, "kind": str(rule.kind), "object_type": rule.object_type},
            )
            ids = [row[0] for row in cursor.fetchall()]
            result.created[str(rule.kind)] = len(ids)
            if ids and send_emails:
                enqueue_emails(ids)
    # the end-of-day digests whose recipients' local send time has come
    result.created["digest"] = len(digest.digests_create(now=now, send_emails=send_emails))
    if send_emails:
        result.requeued = emails_requeue(now=now) + digest.digests_requeue(now=now)
    if not send_emails:
        logger.info("reminder sweep as of %s: created %s, emails skipped", now, result.created)
    elif result.total or result.requeued:
        logger.info("reminder sweep: created %s, re-enqueued %d emails", result.created, result.requeued)
    return result


def emails_requeue(*, now: dt.datetime | None = None, limit: int = REQUEUE_LIMIT) -> int:
    """Enqueue again the emails still unsent after the grace period (the broker may have
    lost them, or Redis was down when they were created). Rows a worker is sending right
    now are locked, and skipped."""
    now = now or timezone.now()
    grace = dt.timedelta(seconds=settings.NOTIFICATION_EMAIL_GRACE_SECONDS)
    window = dt.timedelta(hours=settings.NOTIFICATION_EMAIL_RETRY_HOURS)
    with transaction.atomic():
        ids = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(email_sent_at__isnull=True, created_at__lte=now - grace, created_at__gte=now - window)
            .filter(email_skipped_at__isnull=True)
            .exclude(recipient__email="")
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            enqueue_emails(ids)
    return len(ids)
