"""How a message's plain text is shown: escaped, links made clickable, line breaks kept."""

from __future__ import annotations

from django import template
from django.utils.html import urlize
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def message_text(value) -> str:
    """Plain text as HTML: everything escaped, then http(s) addresses, www. names and
    email addresses made links (rel="nofollow"); no other markup can get through."""
    html = urlize(str(value or ""), nofollow=True, autoescape=True)
    return mark_safe(html.replace("\r\n", "\n").replace("\n", "<br>"))  # noqa: S308 - escaped by urlize
