"""`{{ value|overdue_tag }}`: the red "Overdue 2 days" tag for a past due date or time
(dates are overdue from the day after; times from the moment), "Due today" on the day,
nothing otherwise. One filter for the worklist, chart, plan, handoffs and My work."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def overdue_text(value, now: dt.datetime | None = None) -> str:
    """'Overdue 2 days', 'Overdue 3 hours', 'Due today' or '' for a date or datetime."""
    if not value:
        return ""
    now = now or timezone.now()
    if isinstance(value, dt.datetime):
        late = now - value
        if late.total_seconds() <= 0:
            return ""
        if late.days >= 1:
            return f"Overdue {_plural(late.days, 'day')}"
        hours = int(late.total_seconds() // 3600)
        return f"Overdue {_plural(hours, 'hour')}" if hours else "Overdue"
    today = timezone.localdate(now)
    if value == today:
        return "Due today"
    if value < today:
        return f"Overdue {_plural((today - value).days, 'day')}"
    return ""


@register.filter
def overdue_tag(value) -> str:
    text = overdue_text(value)
    if not text:
        return ""
    css = "tag due-today" if text == "Due today" else "tag overdue"
    return format_html('<span class="{}">{}</span>', css, text)
