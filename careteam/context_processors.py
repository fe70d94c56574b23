"""Template context every page gets."""

from __future__ import annotations

from django.http import HttpRequest


def unread_notifications(request: HttpRequest) -> dict:
    """The unread count in the nav's Inbox link: one query, only on pages that show it.
    (The Conversations link's count loads by itself: `views_conversations.unread_count`.)"""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def count() -> int:
        from .notifications import unread_count

        return unread_count(user)

    # a callable: the template calls it where the nav uses it, not on pages without one
    return {"unread_notifications": count}
