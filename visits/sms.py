"""Text messages to patients, behind one pluggable backend chosen by `SMS_BACKEND`:
"console" (the log, for development), "file" (one JSON line per message in
`SMS_FILE_PATH`) or the dotted path of a class with `send(to, body)` (a provider).

Nothing sends yet: patient reminders wait for the patient portal, where the patient opts
in (`patient_reminders_enabled`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class ConsoleBackend:
    def send(self, to: str, body: str) -> None:
        logger.info("SMS to %s: %s", to, body)


class FileBackend:
    def __init__(self, path: str | None = None):
        self.path = Path(path or settings.SMS_FILE_PATH)

    def send(self, to: str, body: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"at": timezone.now().isoformat(), "to": to, "body": body}) + "\n")


BACKENDS = {"console": ConsoleBackend, "file": FileBackend}


def backend():
    name = settings.SMS_BACKEND
    cls = BACKENDS.get(name)
    if cls is None:
        try:
            cls = import_string(name)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"SMS_BACKEND {name!r} is neither console, file nor a class path."
            ) from exc
    return cls()


def send_sms(to: str, body: str) -> None:
    backend().send(to, body)


def patient_reminders_enabled(patient) -> bool:
    """Whether this patient asked for visit reminders: only the portal can record that, and
    there is none yet."""
    return False
