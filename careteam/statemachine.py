"""Status machines: each model declares its legal transitions once; services check here."""

from collections.abc import Mapping

from django.core.exceptions import ValidationError


def check_initial(
    allowed: frozenset[str] | set[str], value: str, *, label: str = "status", what: str
) -> None:
    """Raise ValidationError unless `value` is a status a new `what` may start as: later
    statuses are reached through the transitions, so the history shows how."""
    if value not in allowed:
        raise ValidationError(
            {
                label: f"A new {what} starts as {', '.join(sorted(allowed))}; '{value}' is reached "
                f"by changing it once it exists."
            },
            code="illegal_initial_status",
        )


def check_transition(
    transitions: Mapping[str, set[str] | frozenset[str]],
    current: str,
    target: str,
    *,
    label: str = "status",
) -> None:
    """Raise ValidationError (with the allowed targets) unless current -> target is legal."""
    if current == target:
        return
    allowed = transitions.get(current, frozenset())
    if target not in allowed:
        options = ", ".join(sorted(allowed)) or "none (final state)"
        raise ValidationError(
            {
                label: f"Cannot change {label} from '{current}' to '{target}'. Allowed from "
                f"'{current}': {options}."
            },
            code="illegal_transition",
        )
