"""Export the catalog as Open Referral HSDS 3.0: organizations.json, services.json,
service_at_locations.json (one JSON array each) and the CSV package, into one folder."""

from django.core.management.base import BaseCommand

from referrals.hsds import write_export


class Command(BaseCommand):
    help = "Write the catalog as HSDS JSON documents and the HSDS CSV package into DIR."

    def add_arguments(self, parser):
        parser.add_argument("dir")

    def handle(self, *args, dir, **options):  # noqa: A002 - the argument's name
        counts = write_export(dir)
        summary = ", ".join(f"{n} in {name}" for name, n in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Exported {summary} (and the CSV package) to {dir}."))
