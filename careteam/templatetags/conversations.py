"""How a message's plain text is shown: escaped, links made clickable, line breaks kept."""

from __future__ import annotations

from django import template

from careteam.display import message_html

register = template.Library()


@register.filter
def message_text(value) -> str:
    """Plain text as HTML: everything escaped, then http(s) addresses, www. names and
    email addresses made links (rel="nofollow"); no other markup can get through."""
    return message_html(value)
