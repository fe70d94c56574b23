"""The audit trail is partitioned by month (PostgreSQL declarative partitioning on `at`).

- `partitions_ensure` creates the partitions of the coming months ahead of time (the
  periodic task `careteam.audit_partitions_ensure`, daily; idempotent). A DEFAULT
  partition catches a row outside every month created, so an insert never fails.
- Each partition refuses UPDATE, DELETE and TRUNCATE like the parent: the row trigger is
  cloned from the parent, the TRUNCATE trigger is created on each partition.
- `partitions_archive` (the `audit_archive` command) detaches the months older than
  AUDIT_RETENTION_MONTHS, writes each to a gzipped CSV file and drops it.
- A search with a date range (`at >= ...`) reads only the partitions of that range
  (partition pruning); the indexes on patient and user exist on every partition.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

PARENT = "careteam_auditevent"
DEFAULT = "careteam_auditevent_default"
PREFIX = "careteam_auditevent_"


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def partition_name(month: dt.date) -> str:
    return f"{PREFIX}{month:%Y_%m}"


def _bound(day: dt.date) -> str:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC).isoformat()


def is_partitioned(cursor) -> bool:
    cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [PARENT])
    row = cursor.fetchone()
    return bool(row and row[0] == "p")


def partitions(cursor) -> list[str]:
    cursor.execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname""",
        [PARENT],
    )
    return [r[0] for r in cursor.fetchall()]


def _guard_truncate(cursor, table: str) -> None:
    cursor.execute(
        f"""CREATE TRIGGER careteam_auditevent_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION careteam_audit_no_truncate()"""  # noqa: S608
    )


def create_partition(cursor, month: dt.date) -> bool:
    """The partition of `month` (first day); False when it exists, or when rows of that
    month already sit in the default partition (they stay there, and are logged)."""
    name = partition_name(month)
    cursor.execute("SELECT 1 FROM pg_class WHERE relname = %s", [name])
    if cursor.fetchone():
        return False
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {DEFAULT} WHERE at >= %s AND at < %s)",  # noqa: S608
        [_bound(month), _bound(next_month(month))],
    )
    if cursor.fetchone()[0]:
        logger.warning("audit rows of %s are in the default partition; no partition made", f"{month:%Y-%m}")
        return False
    cursor.execute(
        f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)",  # noqa: S608
        [_bound(month), _bound(next_month(month))],
    )
    _guard_truncate(cursor, name)
    return True


def partitions_ensure(*, start: dt.date | None = None, months_ahead: int | None = None) -> list[str]:
    """Partitions from `start`'s month (default: this month) to `months_ahead` months on."""
    today = timezone.now().astimezone(dt.UTC).date()
    months_ahead = settings.AUDIT_PARTITIONS_AHEAD if months_ahead is None else months_ahead
    month = month_start(start or today)
    last = month_start(today)
    for _ in range(months_ahead):
        last = next_month(last)
    made = []
    with transaction.atomic(), connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return []
        # one creator at a time (the daily task and a deploy's migrate may meet)
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('careteam_audit_partitions'))")
        while month <= last:
            if create_partition(cursor, month):
                made.append(partition_name(month))
            month = next_month(month)
    return made


def partitions_archive(*, before: dt.date, directory: Path) -> list[Path]:
    """Detach every month partition ending on or before `before`, write it to
    `directory/<name>.csv.gz` (with a header) and drop it. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return []
        names = [n for n in partitions(cursor) if n != DEFAULT]
    for name in names:
        month = dt.date(int(name[-7:-3]), int(name[-2:]), 1)
        if next_month(month) > before:
            continue
        path = directory / f"{name}.csv.gz"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")  # noqa: S608
            with (
                gzip.open(path, "wb") as out,
                cursor.copy(f"COPY {name} TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
            ):  # noqa: S608
                for chunk in copy:
                    out.write(chunk)
            cursor.execute(f"DROP TABLE {name}")  # noqa: S608
        logger.info("audit partition %s archived to %s", name, path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------
# The migration (careteam/migrations/0022_audit_partitions.py)
# ---------------------------------------------------------------------------
INDEXES = [
    "CREATE INDEX audit_patient_idx ON careteam_auditevent (patient_id, at DESC)",
    "CREATE INDEX audit_user_idx ON careteam_auditevent (user_id, at DESC)",
    "CREATE INDEX audit_patient_ids_gin ON careteam_auditevent USING gin (patient_ids)",
    "CREATE INDEX careteam_auditevent_at_61f06c8e ON careteam_auditevent (at)",
    "CREATE INDEX careteam_auditevent_patient_id_532cf061 ON careteam_auditevent (patient_id)",
    "CREATE INDEX careteam_auditevent_user_id_02ef078f ON careteam_auditevent (user_id)",
]


def _rebuild(cursor, *, partitioned: bool) -> None:
    """Move every row into a new careteam_auditevent, partitioned by month or plain, with
    the same columns, identity, indexes and append-only guards."""
    old = "careteam_auditevent_moving"
    cursor.execute(f"ALTER TABLE {PARENT} RENAME TO {old}")
    cursor.execute(f"ALTER TABLE {old} DROP CONSTRAINT careteam_auditevent_pkey")
    cursor.execute(
        f"""SELECT indexname FROM pg_indexes WHERE tablename = '{old}'"""  # noqa: S608
    )
    for (index,) in cursor.fetchall():
        cursor.execute(f"DROP INDEX {index}")
    tail = " PARTITION BY RANGE (at)" if partitioned else ""
    cursor.execute(
        f"CREATE TABLE {PARENT} (LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED){tail}"
    )
    key = "(id, at)" if partitioned else "(id)"
    cursor.execute(f"ALTER TABLE {PARENT} ADD CONSTRAINT careteam_auditevent_pkey PRIMARY KEY {key}")
    if partitioned:
        cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT")
        _guard_truncate(cursor, DEFAULT)
        cursor.execute(f"SELECT min(at) FROM {old}")  # noqa: S608
        first = cursor.fetchone()[0]
        today = timezone.now().astimezone(dt.UTC).date()
        month = month_start(first.astimezone(dt.UTC).date() if first else today)
        last = month_start(today)
        for _ in range(3):
            last = next_month(last)
        while month <= last:
            create_partition(cursor, month)
            month = next_month(month)
    cursor.execute(f"INSERT INTO {PARENT} OVERRIDING SYSTEM VALUE SELECT * FROM {old}")  # noqa: S608
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{PARENT}', 'id'), coalesce(max(id), 0) + 1, false) FROM {PARENT}"  # noqa: S608
    )
    cursor.execute(f"DROP TABLE {old}")
    for sql in INDEXES:
        cursor.execute(sql)
    cursor.execute(
        f"""CREATE TRIGGER careteam_auditevent_append_only BEFORE UPDATE OR DELETE ON {PARENT}
            FOR EACH ROW EXECUTE FUNCTION careteam_audit_append_only()"""
    )
    _guard_truncate(cursor, PARENT)


def migrate_forward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        _rebuild(cursor, partitioned=True)


def migrate_backward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        _rebuild(cursor, partitioned=False)
