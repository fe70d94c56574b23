"""Run once on a database just restored from a backup, before the app starts:
everything due up to now counts as handled, so no reminder or email is sent twice."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from careteam.services import database_restore_record


class Command(BaseCommand):
    help = (
        "After restoring a backup: mark unsent emails as skipped and record the reminders "
        "due by now as handled (in the inbox, no email), so nothing is sent again; end every "
        "session and API token. Audited; a second run changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--backup", default="", help="the backup restored (recorded in the audit event)")
        parser.add_argument(
            "--handled-until",
            default="",
            help=(
                "ISO date-time up to which the old system sent its emails (default: now); "
                "what fell due after it, during an outage, is still sent"
            ),
        )

    def handle(self, *args, backup: str, handled_until: str, **options):
        until = None
        if handled_until:
            until = parse_datetime(handled_until)
            if until is None:
                raise CommandError(f"--handled-until: not an ISO date-time: {handled_until!r}")
            if timezone.is_naive(until):
                until = timezone.make_aware(until)
        try:
            result = database_restore_record(backup=backup, handled_until=until)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        restore = result.restore
        if not result.created:
            self.stdout.write(
                f"Nothing to do: nothing has happened since the restore recorded at {restore.restored_at:%Y-%m-%d %H:%M:%S %Z}."
            )
            return
        self.stdout.write(
            f"Restore recorded; everything due by {restore.handled_until:%Y-%m-%d %H:%M:%S %Z} counts as handled."
        )
        self.stdout.write(f"Unsent emails marked skipped: {restore.emails_skipped}")
        for kind, n in sorted(result.emails_skipped.items()):
            self.stdout.write(f"  {kind}: {n}")
        self.stdout.write(f"Reminders due by then, recorded without email: {restore.reminders_handled}")
        for kind, n in sorted(result.reminders_handled.items()):
            self.stdout.write(f"  {kind}: {n}")
        self.stdout.write(
            f"Everyone signs in again: {result.sessions_ended} session(s) and "
            f"{result.tokens_revoked} API token(s) ended."
        )
