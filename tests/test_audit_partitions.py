"""The audit trail is partitioned by month: rows land in their month's partition, every
partition refuses UPDATE, DELETE and TRUNCATE, partitions are made ahead once however
often the task runs, a search by date range reads only its months, and archiving writes
old months to files and drops them."""

from __future__ import annotations

import datetime as dt
import gzip

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from careteam import audit_partitions as ap
from careteam.models import AuditEvent

pytestmark = pytest.mark.django_db


def _event(at: dt.datetime) -> AuditEvent:
    return AuditEvent.objects.create(at=at, username="u", action="view", object_type="x", path="/")


def _partition_of(event: AuditEvent) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM careteam_auditevent WHERE id = %s", [event.pk])
        return cursor.fetchone()[0]


def test_rows_land_in_their_month_and_no_partition_can_be_changed():
    now = timezone.now()
    event = _event(now)
    assert _partition_of(event) == ap.partition_name(now.astimezone(dt.UTC).date().replace(day=1))
    old = _event(dt.datetime(2001, 5, 5, tzinfo=dt.UTC))
    assert _partition_of(old) == ap.DEFAULT
    for sql in (
        "UPDATE {t} SET username = 'x'",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
    ):
        for table in ("careteam_auditevent", _partition_of(event), ap.DEFAULT):
            with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL careteam.allow_audit_truncate = off")
                cursor.execute(sql.format(t=table))
    assert AuditEvent.objects.filter(pk__in=[event.pk, old.pk]).count() == 2


def test_partitions_are_made_ahead_once():
    made = ap.partitions_ensure(months_ahead=5)
    assert ap.partitions_ensure(months_ahead=5) == []
    with connection.cursor() as cursor:
        names = ap.partitions(cursor)
    month = timezone.now().astimezone(dt.UTC).date().replace(day=1)
    for _ in range(5):
        month = ap.next_month(month)
    assert ap.partition_name(month) in names
    assert set(made) <= set(names)


def test_a_search_by_date_reads_only_its_months():
    ap.partitions_ensure(start=dt.date(2026, 1, 1), months_ahead=3)
    qs = AuditEvent.objects.filter(
        patient_id=7,
        at__gte=dt.datetime(2026, 2, 3, tzinfo=dt.UTC),
        at__lt=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    plan = qs.explain()
    assert "careteam_auditevent_2026_02" in plan
    assert "careteam_auditevent_2026_01" not in plan and ap.DEFAULT not in plan


def test_archive_writes_old_months_to_files_and_drops_them(tmp_path):
    ap.partitions_ensure(start=dt.date(2019, 1, 1), months_ahead=1)
    kept = _event(timezone.now())
    _event(dt.datetime(2019, 1, 15, tzinfo=dt.UTC))
    call_command("audit_archive", "--months", "24", "--dir", str(tmp_path))
    archive = tmp_path / "careteam_auditevent_2019_01.csv.gz"
    with gzip.open(archive, "rt") as archived:
        lines = archived.read().splitlines()
    assert lines[0].startswith("id,at,") and len(lines) == 2
    with connection.cursor() as cursor:
        assert "careteam_auditevent_2019_01" not in ap.partitions(cursor)
    assert AuditEvent.objects.filter(pk=kept.pk).exists()
    assert not AuditEvent.objects.filter(at__year=2019).exists()
