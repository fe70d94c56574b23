"""Import an Open Referral HSDS 3.0 catalog: a JSON file (organizations, services,
services-at-location, taxonomies or taxonomy terms; one object, an array or an API page)
or a folder holding the CSV package. A file of locations alone is refused."""

from django.core.management.base import BaseCommand, CommandError

from referrals.hsds import HsdsImportError, import_path


class Command(BaseCommand):
    help = (
        "Import HSDS JSON (file) or the HSDS CSV package (folder). Nothing is written if any row is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--type",
            choices=["organization", "service", "service_at_location", "taxonomy", "taxonomy_term"],
            help="What the JSON file holds (guessed from the objects when left out).",
        )

    def handle(self, *args, path, type=None, **options):  # noqa: A002 - the option's name
        try:
            result = import_path(path, table=type)
        except HsdsImportError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(exc.problems)} problem(s); nothing was imported.") from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(self.style.SUCCESS(f"Imported {result.summary()}."))
