"""Optimistic concurrency: every editable row carries a `version`; a save that started
from an older version is refused, never silently applied over someone else's change."""

from __future__ import annotations

from typing import Any

from django.db import models


class StaleVersionError(Exception):
    """Someone saved this object after the caller read it."""

    def __init__(self, current: models.Model, expected: int | None):
        self.current = current
        self.expected = expected
        super().__init__(
            f"{current._meta.verbose_name.capitalize()} was changed by someone else "
            f"(your version {expected}, now {current.version})."
        )

    @property
    def audit_reason(self) -> str:
        """The refusal as the audit trail records it: version numbers only."""
        return f"stale version: sent {self.expected}, current {self.current.version}"


def lock_for_update(instance: models.Model, expected_version: int | None) -> models.Model:
    """Re-read the row under a row lock and check its version (call inside atomic()).

    `expected_version=None` skips the check (used by internal services that hold no
    client copy). Returns the locked, fresh instance.
    """
    fresh = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
    if expected_version is not None and fresh.version != int(expected_version):
        raise StaleVersionError(fresh, expected_version)
    return fresh


def apply_changes(instance: models.Model, changes: dict[str, Any]) -> list[str]:
    """Set fields from `changes`; return the names that really changed."""
    changed = []
    for name, value in changes.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed.append(name)
    return changed
