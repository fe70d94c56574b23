"""Display strings a page shows once per row, computed in Python before rendering.

A template filter in a loop of 50 rows pays the template engine's variable resolution,
the filter's lookup and Django's localisation on every row (`|date:"DATETIME_FORMAT"`
costs ~30 µs, `{{ pk }}` ~6 µs through `number_format`); the selectors and views of long
lists fill these in beforehand. Each function gives exactly what the filter it replaces
would have rendered.
"""

from __future__ import annotations

import datetime as dt
import html

from django.utils import formats, timezone
from django.utils.html import urlizer
from django.utils.safestring import SafeString


def message_html(text) -> SafeString:
    """A message's plain text as HTML: everything escaped, then http(s) addresses, www.
    names and email addresses made links (rel="nofollow"), line breaks kept; no other
    markup can get through. The same as `urlize(text, nofollow=True, autoescape=True)`,
    which escapes each word by itself: here only the words that can be a link (with a
    ".", "@" or ":", as urlize decides) go through urlize's own word handler, and the
    text between them is escaped in one piece."""
    out: list[str] = []
    plain: list[str] = []
    for word in urlizer.word_split_re.split(str(text or "")):
        if "." in word or "@" in word or ":" in word:
            if plain:
                out.append(html.escape("".join(plain)))
                plain.clear()
            out.append(urlizer.handle_word(word, safe_input=False, nofollow=True, autoescape=True))
        else:
            plain.append(word)
    if plain:
        out.append(html.escape("".join(plain)))
    return SafeString("".join(out).replace("\r\n", "\n").replace("\n", "<br>"))


def moment(value: dt.datetime | None) -> tuple[str, str]:
    """(`|date:"c"`, `|date:"DATETIME_FORMAT"`) of an aware datetime, in the current
    time zone and language: the `datetime` attribute and the text of a <time>."""
    if value is None:
        return "", ""
    local = timezone.localtime(value)
    return local.isoformat(), formats.date_format(local, "DATETIME_FORMAT")


def moment_label(value: dt.datetime | None) -> str:
    """`|date:"DATETIME_FORMAT"` of an aware datetime (current time zone and language)."""
    if value is None:
        return ""
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")
