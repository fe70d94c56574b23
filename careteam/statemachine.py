"""Status machines: each model declares its legal transitions once; services check here."""

from collections.abc import Mapping

from django.core.exceptions import ValidationError


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
