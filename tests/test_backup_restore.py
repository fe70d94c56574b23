"""Backups and restores: `manage.py after_restore` makes everything due by the restore count
as handled, so restoring an older backup sends no reminder or email twice; and a real
`pg_dump` / `pg_restore` round trip (dev.py's own functions, real processes) restores the
rows, the audit trigger, and a sweep that only reminds of what falls due afterwards."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from psycopg import sql

from careteam import handoffs as handoff_services
from careteam.models import AuditAction, AuditEvent, DatabaseRestore, Handoff, Notification, NotificationKind
from careteam.notifications import notification_email_send
from careteam.permissions import patient_access
from careteam.reminders import emails_requeue, reminders_sweep
from careteam.services import database_restore_record
from tests.processes import worker_database_url

ROOT = Path(__file__).resolve().parent.parent
ACK = NotificationKind.HANDOFF_UNACKNOWLEDGED
DUE_SOON = NotificationKind.HANDOFF_DUE_SOON


@pytest.fixture(autouse=True)
def _thresholds(settings):
    settings.HANDOFF_ACK_REMINDER_MINUTES = 30
    settings.HANDOFF_DUE_SOON_MINUTES = 60
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _handoff(
    world, *, to_user, created_ago: dt.timedelta, due_in: dt.timedelta, situation="Discharged today"
):
    h = handoff_services.handoff_create(
        by=world.lead,
        access=patient_access(world.lead, world.patient),
        to_user=to_user,
        due_at=timezone.now() + due_in,
        situation=situation,
        background="CHF, new diuretic",
        assessment="Stable",
        recommendation="Visit within 48h",
    )
    Handoff.objects.filter(pk=h.pk).update(created_at=timezone.now() - created_ago)
    h.refresh_from_db()
    return h


def _send_unsent() -> list[int]:
    """What a worker would do with every email still to send."""
    pending = Notification.objects.filter(email_sent_at__isnull=True).values_list("pk", flat=True)
    return [pk for pk in pending if notification_email_send(notification_id=pk)]


# ---------------------------------------------------------------------------
# after_restore, in the test database
# ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_unsent_emails_from_before_the_restore_are_skipped_and_never_sent(world):
    _handoff(world, to_user=world.nurse, created_ago=dt.timedelta(minutes=1), due_in=dt.timedelta(hours=10))
    received = Notification.objects.get(kind=NotificationKind.HANDOFF_RECEIVED)
    assert received.email_sent_at is None

    result = database_restore_record(backup="careteam-old.dump")

    received.refresh_from_db()
    assert received.email_skipped_at is not None and received.email_sent_at is None
    assert result.emails_skipped == {NotificationKind.HANDOFF_RECEIVED: 1}
    assert notification_email_send(notification_id=received.pk) is False
    assert emails_requeue(now=timezone.now() + dt.timedelta(minutes=10)) == 0
    assert mail.outbox == []
    event = AuditEvent.objects.get(action=AuditAction.RESTORE)
    assert event.object_type == "careteam.databaserestore" and "careteam-old.dump" in event.detail


@pytest.mark.django_db
def test_reminders_due_by_the_restore_are_in_the_inbox_without_email_and_later_sweeps_send_nothing(world):
    h = _handoff(
        world, to_user=world.nurse, created_ago=dt.timedelta(minutes=45), due_in=dt.timedelta(hours=10)
    )

    result = database_restore_record()

    reminder = Notification.objects.get(kind=ACK, object_id=h.pk)
    assert reminder.recipient_id == world.nurse.pk and reminder.read_at is None
    assert reminder.email_skipped_at is not None and reminder.email_sent_at is None
    assert result.reminders_handled == {ACK: 1}
    assert reminders_sweep().total == 0
    assert _send_unsent() == [] and mail.outbox == []


@pytest.mark.django_db
def test_what_falls_due_after_the_restore_is_reminded_and_emailed_once(world):
    h = _handoff(
        world, to_user=world.nurse, created_ago=dt.timedelta(minutes=5), due_in=dt.timedelta(minutes=90)
    )
    restore = database_restore_record().restore

    later = timezone.now() + dt.timedelta(minutes=45)
    reminders_sweep(now=later)
    reminders_sweep(now=later)

    due_soon = Notification.objects.get(kind=DUE_SOON, object_id=h.pk)
    assert due_soon.due_moment > restore.handled_until and due_soon.email_skipped_at is None
    sent = _send_unsent()
    due_after = Notification.objects.filter(due_moment__gt=restore.handled_until)
    assert due_soon.pk in sent and sorted(sent) == sorted(due_after.values_list("pk", flat=True))
    assert len(mail.outbox) == len(sent) and _send_unsent() == []


@pytest.mark.django_db
def test_handled_until_leaves_what_fell_due_during_the_outage_to_be_sent(world):
    # the old system stopped 20 minutes ago; this reminder fell due 15 minutes ago
    h = _handoff(
        world, to_user=world.nurse, created_ago=dt.timedelta(minutes=45), due_in=dt.timedelta(hours=10)
    )
    database_restore_record(handled_until=timezone.now() - dt.timedelta(minutes=20))
    assert not Notification.objects.filter(kind=ACK, object_id=h.pk).exists()

    reminders_sweep()
    reminder = Notification.objects.get(kind=ACK, object_id=h.pk)
    assert reminder.email_skipped_at is None
    assert notification_email_send(notification_id=reminder.pk) is True


@pytest.mark.django_db
def test_handled_until_in_the_future_is_refused(world):
    with pytest.raises(ValidationError):
        database_restore_record(handled_until=timezone.now() + dt.timedelta(minutes=5))
    assert not DatabaseRestore.objects.exists()


@pytest.mark.django_db
def test_second_run_with_nothing_new_changes_nothing(world, client):
    _handoff(world, to_user=world.nurse, created_ago=dt.timedelta(minutes=45), due_in=dt.timedelta(hours=10))
    client.force_login(world.nurse)
    AuthToken.objects.create(user=world.nurse)
    out = StringIO()
    call_command("after_restore", "--backup=careteam-x.dump", stdout=out)
    assert "Unsent emails marked skipped: 1" in out.getvalue()
    assert "handoff-unacknowledged: 1" in out.getvalue()
    assert "1 session(s) and 1 API token(s) ended" in out.getvalue()
    notifications = sorted(Notification.objects.values_list("pk", "email_skipped_at"))

    again = StringIO()
    call_command("after_restore", stdout=again)

    assert "Nothing to do" in again.getvalue()
    assert DatabaseRestore.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.RESTORE).count() == 1
    assert sorted(Notification.objects.values_list("pk", "email_skipped_at")) == notifications


# ---------------------------------------------------------------------------
# The round trip with real processes: pg_dump, pg_restore, migrate, after_restore, sweep
# ---------------------------------------------------------------------------
def _dev_module():
    spec = importlib.util.spec_from_file_location("careteam_dev_py", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dev_py_ready() -> bool:
    """./dev.py would run at once: the checkout's .venv is installed for this pyproject.toml
    (otherwise its first step would be a pip install)."""
    dev = _dev_module()
    try:
        return dev.STAMP.read_text().strip() == dev._install_digest()
    except OSError:
        return False


def _connect(dbname: str):
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


def _row_counts(conn) -> dict[str, int]:
    # tables and partitioned tables, not their partitions (their rows are the parent's)
    tables = [
        t
        for (t,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
    ]
    return {
        t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
        for t in tables
    }


@pytest.mark.django_db
def test_dev_py_backup_names_the_dump_by_utc_time_and_restore_asks_before_replacing():
    if not _dev_py_ready():
        pytest.skip("./dev.py would install .venv first")
    env = {**os.environ, "DATABASE_URL": worker_database_url(), "NO_COLOR": "1"}
    before = set((ROOT / "backups").glob("careteam-*.dump"))
    backup = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "backup"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    made = sorted(set((ROOT / "backups").glob("careteam-*.dump")) - before)
    try:
        assert backup.returncode == 0, backup.stderr
        assert len(made) == 1 and re.fullmatch(r"careteam-\d{8}T\d{6}Z\.dump", made[0].name)
        assert not list((ROOT / "backups").glob("*.partial"))

        restore = subprocess.run(
            [sys.executable, str(ROOT / "dev.py"), "restore", str(made[0])],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        assert restore.returncode == 1 and "pass --yes" in restore.stderr
    finally:
        for path in made:
            path.unlink()


SWEEP_AND_SEND = """
import datetime as dt, json, sys
import django
django.setup()
from django.utils import timezone
from careteam.models import Notification
from careteam.notifications import notification_email_send
from careteam.reminders import reminders_sweep
before = set(Notification.objects.values_list("pk", flat=True))
reminders_sweep(now=timezone.now() + dt.timedelta(minutes=int(sys.argv[1])))
created = list(Notification.objects.exclude(pk__in=before).values_list("pk", "kind", "object_id", "due_moment"))
pending = Notification.objects.filter(email_sent_at__isnull=True).values_list("pk", flat=True)
sent = [pk for pk in pending if notification_email_send(notification_id=pk)]
print(json.dumps({"created": created, "sent": sent}, default=str))
"""


@pytest.mark.django_db(transaction=True)
def test_restoring_an_older_backup_restores_every_row_and_the_audit_trigger_and_reminds_nothing_twice(
    world, tmp_path, client
):
    dev = _dev_module()
    started = time.monotonic()
    test_db = connection.settings_dict["NAME"]
    scratch = f"{test_db}_restore"
    scratch_url = worker_database_url().rsplit("/", 1)[0] + f"/{scratch}"

    # --- the state the backup holds: a due-soon reminder already emailed, and a handoff
    # whose acknowledgement reminder falls due a few seconds after the backup (6 s: time
    # enough for the sweep and the dump on a busy machine)
    soon = _handoff(
        world, to_user=world.nurse, created_ago=dt.timedelta(minutes=5), due_in=dt.timedelta(minutes=30)
    )
    later = _handoff(
        world, to_user=world.pharmacist, created_ago=dt.timedelta(minutes=5), due_in=dt.timedelta(minutes=90)
    )
    gap = _handoff(
        world,
        to_user=world.nurse,
        created_ago=dt.timedelta(minutes=30, seconds=-6),
        due_in=dt.timedelta(hours=10),
        situation="Falls risk",
    )
    reminders_sweep()
    due_soon = Notification.objects.get(kind=DUE_SOON, object_id=soon.pk)
    assert notification_email_send(notification_id=due_soon.pk) is True
    assert not Notification.objects.filter(object_id=gap.pk, kind=ACK).exists()
    client.force_login(world.nurse)  # a session and an API token the backup holds
    AuthToken.objects.create(user=world.lead)

    with _connect(test_db) as conn:
        dumped = _row_counts(conn)
    backup = dev.database_backup(worker_database_url(), tmp_path / "careteam-test.dump")
    assert backup.stat().st_size > 0

    # --- the timeline the restore throws away: more data and more reminders, emailed
    while timezone.now() <= gap.created_at + dt.timedelta(minutes=30):
        time.sleep(0.2)
    _handoff(
        world, to_user=world.pharmacist, created_ago=dt.timedelta(minutes=45), due_in=dt.timedelta(hours=2)
    )
    reminders_sweep()
    _send_unsent()
    lost = Notification.objects.filter(kind=ACK, object_id=gap.pk).get()
    assert lost.email_sent_at is not None
    assert Notification.objects.count() > dumped["careteam_notification"]

    # --- restore into a scratch database: pg_restore, migrate, after_restore
    with _connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(DATABASE_URL=scratch_url, DEBUG="true", EMAIL_URL="memorymail://", PYTHONUNBUFFERED="1")
    try:
        dev.database_restore(scratch_url, backup, env)

        with _connect(scratch) as conn:
            restored = _row_counts(conn)
            handled_until, handled = conn.execute(
                "SELECT handled_until, reminders_handled FROM careteam_databaserestore"
            ).fetchone()
            gap_rows = conn.execute(
                "SELECT email_sent_at, email_skipped_at FROM careteam_notification"
                " WHERE kind = %s AND object_id = %s",
                (str(ACK), gap.pk),
            ).fetchall()
            triggers = {
                name
                for (name,) in conn.execute(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'careteam_auditevent'::regclass"
                    " AND NOT tgisinternal"
                )
            }
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE careteam_auditevent SET detail = 'rewritten'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM careteam_auditevent")

        # every row of the backup, plus what after_restore recorded: one restore, its
        # audit event, and the reminder that fell due in the gap (without its email);
        # and everyone signs in again
        expected = dict(dumped)
        assert dumped["django_session"] == dumped["knox_authtoken"] == 1
        expected.update(django_session=0, knox_authtoken=0)
        expected["careteam_databaserestore"] += 1
        expected["careteam_auditevent"] += 1
        expected["careteam_notification"] += handled
        assert restored == expected
        assert handled == 1 and gap_rows == [(None, gap_rows[0][1])] and gap_rows[0][1] is not None
        assert {"careteam_auditevent_append_only", "careteam_auditevent_no_truncate"} <= triggers

        # --- the sweep on the restored database: now, and 45 minutes on
        def sweep(minutes: int) -> dict:
            proc = subprocess.run(
                [sys.executable, "-c", SWEEP_AND_SEND, str(minutes)],
                cwd=ROOT,
                env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout.strip().splitlines()[-1])

        now = sweep(0)
        assert now == {"created": [], "sent": []}  # nothing due by the restore is sent again

        on = sweep(45)
        created = {(kind, object_id): due for _pk, kind, object_id, due in on["created"]}
        assert (str(DUE_SOON), later.pk) in created and (str(ACK), soon.pk) in created
        assert (str(DUE_SOON), soon.pk) not in created and (str(ACK), gap.pk) not in created
        assert all(dt.datetime.fromisoformat(due) > handled_until for due in created.values())
        assert sorted(on["sent"]) == sorted(pk for pk, *_ in on["created"])  # each emailed once

        assert sweep(45) == {"created": [], "sent": []}
    finally:
        with _connect("postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    assert time.monotonic() - started < 60
