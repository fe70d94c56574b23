"""Who wrote the next history row: django-simple-history reads the author (and the reason)
of a save from attributes set on the instance, which the type stubs do not know."""

from __future__ import annotations

from typing import Any

from django.db import models


def history_by(instance: models.Model, user: Any, *, reason: str = "") -> None:
    """Record `user` (and `reason`, cut to the column's 100 characters) as the author of
    the history row the next save of `instance` writes."""
    instance._history_user = user  # type: ignore[attr-defined]  # simple_history's per-save attribute
    if reason:
        instance._change_reason = reason[:100]  # type: ignore[attr-defined]  # likewise
