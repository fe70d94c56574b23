"""Events that may hand on work: an app reports what happened (`emit`), whoever
registered for it acts (visits/rules.py runs the admin-managed hand-on rules). The
reporting app never imports the one that acts, so the layers keep pointing down."""

from __future__ import annotations

from django.dispatch import Signal

# sent with event (a code such as "referral.accepted"), obj (the model instance the event
# is about), by (the user who caused it) and access (their PatientAccess)
work_event = Signal()


def emit(event: str, *, obj, by, access=None) -> None:
    """Report `event` about `obj`, inside the caller's transaction: what the receivers
    write commits or rolls back with the change that caused it."""
    work_event.send(sender=type(obj), event=event, obj=obj, by=by, access=access)
