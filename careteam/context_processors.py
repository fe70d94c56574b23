"""Template context every page gets."""

from __future__ import annotations

from django.http import HttpRequest


def unread_notifications(request: HttpRequest) -> dict:
    """The unread counts in the nav's Inbox and Conversations links: both in one query,
    only on pages that show them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    counts: dict[str, int] = {}

    def loaded() -> dict[str, int]:
        if not counts:
            from .conversations import nav_unread_counts

            counts.update(nav_unread_counts(user))
        return counts

    # callables: the template calls them where the nav uses them, not on pages without one
    return {
        "unread_notifications": lambda: loaded()["notifications"],
        "unread_conversations": lambda: loaded()["conversations"],
    }
