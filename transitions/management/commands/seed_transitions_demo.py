from django.core.management.base import BaseCommand

from transitions.demo import seed


class Command(BaseCommand):
    help = "Demo data of care transitions (a recent discharge with its checklist half done); idempotent."

    def handle(self, *args, **options) -> None:
        added = seed()
        self.stdout.write("Care transitions demo ready" + (" (a discharge added)." if added else "."))
