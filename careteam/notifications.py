"""Creating notifications. One row per (recipient, kind, object, due moment): a second
attempt for the same reminder finds the row and does nothing."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from .models import Notification, NotificationKind, TeamMembership, TeamRole


def notify(
    *,
    recipient,
    kind: str,
    obj,
    patient_id: int | None,
    due_moment: dt.datetime,
    title: str,
    body: str = "",
    url: str = "",
) -> Notification | None:
    """Create the notification unless it exists. Returns it if created now, else None."""
    with transaction.atomic():
        notification, created = Notification.objects.get_or_create(
            recipient=recipient,
            kind=kind,
            object_type=obj._meta.label_lower,
            object_id=obj.pk,
            due_moment=due_moment,
            defaults={"patient_id": patient_id, "title": title[:200], "body": body, "url": url},
        )
    return notification if created else None


def notify_break_glass(*, grant) -> None:
    for m in TeamMembership.objects.current().filter(patient_id=grant.patient_id, role=TeamRole.CASE_MANAGER):
        notify(
            recipient=m.user,
            kind=NotificationKind.BREAK_GLASS,
            obj=grant,
            patient_id=grant.patient_id,
            due_moment=grant.started_at,
            title=f"Emergency access to {grant.patient} by {grant.user.display_name}",
            body=f"Reason given: {grant.reason}. Read-only until {grant.expires_at:%Y-%m-%d %H:%M}.",
        )
