"""Optimistic concurrency: every editable row carries a `version`; a save that started
from an older version is refused, never silently applied over someone else's change."""

from __future__ import annotations

from typing import Any, TypeVar

from django import forms
from django.db import models

M = TypeVar("M", bound=models.Model)

STALE_PAGE_MESSAGE = "This page is out of date; reload and try again."
# A change sent without the version it was made on, as the API answers a missing If-Match
# (and as the audit trail counts refused edits).
VERSION_REQUIRED = 428


class Versioned(models.Model):
    """A row edited from copies: each save from a page or the API carries the version it
    was read at, and `save_versioned` refuses one made over a newer change."""

    version = models.PositiveIntegerField(default=1)

    class Meta:
        abstract = True


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


def check_version(instance: Any, expected_version: int | None) -> None:
    """Raise StaleVersionError unless `instance` is at the version the caller read
    (`expected_version=None`: an internal service that holds no client copy)."""
    if expected_version is not None and instance.version != int(expected_version):
        raise StaleVersionError(instance, expected_version)


def lock_for_update(instance: M, expected_version: int | None) -> M:
    """Re-read the row under a row lock and check its version (call inside atomic()).

    `expected_version=None` skips the check (used by internal services that hold no
    client copy). Returns the locked, fresh instance.
    """
    fresh = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
    check_version(fresh, expected_version)
    return fresh


def save_versioned(
    instance: Any, *, expected_version: int | None, update_fields: list[str] | None = None
) -> None:
    """Check the version, count it up by one and save: the one way a versioned row is
    written. `update_fields` (when given) gets "version" added."""
    check_version(instance, expected_version)
    instance.version += 1
    if update_fields is not None and "version" not in update_fields:
        update_fields = [*update_fields, "version"]
    instance.save(update_fields=update_fields)


def apply_changes(instance: models.Model, changes: dict[str, Any]) -> list[str]:
    """Set fields from `changes`; return the names that really changed."""
    changed = []
    for name, value in changes.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed.append(name)
    return changed


class VersionedFormMixin(forms.Form):
    """Every page form that edits a versioned object posts back the version it was
    rendered from (`expected_version`), as the API requires `If-Match`. A post without it
    (or with a garbled one) is refused: the service could not tell a save made over a
    colleague's newer change from a fresh one. Mix in before the form's base class."""

    expected_version = forms.IntegerField(
        widget=forms.HiddenInput,
        min_value=1,
        error_messages={key: STALE_PAGE_MESSAGE for key in ("required", "invalid", "min_value")},
    )

    version_refused = False

    def clean(self):
        data = super().clean()
        if "expected_version" in self._errors:
            # a hidden field's error is invisible next to it: say it on top, once
            del self._errors["expected_version"]
            self.add_error(None, STALE_PAGE_MESSAGE)
            self.version_refused = True
        return data

    @property
    def invalid_status(self) -> int:
        """428 for a post that carried no usable version (only reloading helps), 422 for
        input the user can correct."""
        return VERSION_REQUIRED if self.version_refused else 422
