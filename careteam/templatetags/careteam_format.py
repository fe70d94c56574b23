"""How the pages write durations: turnaround in days, acknowledgement in hours."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def days(hours) -> str:
    """Hours as days, one decimal: 30.0 -> "1.3 days"; nothing -> "–"."""
    if hours in (None, ""):
        return "–"
    value = float(hours) / 24
    return "1 day" if round(value, 1) == 1 else f"{value:.1f} days"


@register.filter
def hours(value) -> str:
    """Hours, one decimal: 2.25 -> "2.3 h"; nothing -> "–"."""
    if value in (None, ""):
        return "–"
    return f"{float(value):.1f} h"


def _status_labels() -> dict[str, str]:
    from careplans.models import ActivityStatus, CarePlanStatus, GoalLifecycle, NeedCategory, NeedStatus
    from careteam.models import HandoffStatus, Priority
    from referrals.models import ReferralOutcome, ReferralStatus

    labels: dict[str, str] = {}
    for choices in (
        CarePlanStatus,
        GoalLifecycle,
        NeedStatus,
        ActivityStatus,
        HandoffStatus,
        ReferralStatus,
        ReferralOutcome,
        Priority,
        NeedCategory,
    ):
        for code, label in choices.choices:
            labels.setdefault(code, str(label))
    return labels


_LABELS: dict[str, str] = {}


@register.filter
def status_label(code) -> str:
    """A status code (FHIR or Gravity, as the API speaks) in plain words: 'in-progress' ->
    'In progress'. Unknown codes are shown with their dashes turned into spaces."""
    if not _LABELS:
        _LABELS.update(_status_labels())
    if code in (None, ""):
        return ""
    return _LABELS.get(code, str(code).replace("-", " ").capitalize())
