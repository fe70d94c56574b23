"""Move the audit trail's months older than the retention period out of the database:
each month partition is detached, written to `<dir>/careteam_auditevent_YYYY_MM.csv.gz`
(CSV with a header) and dropped. Store the files where your records policy says."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from careteam.audit_partitions import month_start, partitions_archive


class Command(BaseCommand):
    help = "Archive and drop audit partitions older than AUDIT_RETENTION_MONTHS."

    def add_arguments(self, parser):
        parser.add_argument("--months", type=int, default=settings.AUDIT_RETENTION_MONTHS)
        parser.add_argument("--dir", default=settings.AUDIT_ARCHIVE_DIR)

    def handle(self, *args, months: int, dir: str, **options):
        if months < 1:
            raise CommandError("--months must be at least 1.")
        cutoff = month_start(timezone.now().astimezone(dt.UTC).date())
        for _ in range(months):
            cutoff = (cutoff - dt.timedelta(days=1)).replace(day=1)
        written = partitions_archive(before=cutoff, directory=Path(dir))
        for path in written:
            self.stdout.write(f"archived {path}")
        self.stdout.write(f"{len(written)} month(s) archived, keeping {months} month(s) from {cutoff:%Y-%m}.")
