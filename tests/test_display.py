"""Display strings made before rendering are exactly what the filters they replace render."""

from __future__ import annotations

import datetime as dt
import itertools

from django.template.defaultfilters import date as date_filter
from django.utils import timezone, translation
from django.utils.html import urlize

from careteam.display import message_html, moment, moment_label

PIECES = [
    "http://a.example/c?d=1&e=<x>",
    "https://x.org/",
    "www.foo.com",
    "foo.com.",
    "a@b.org",
    "(see",
    "http://x.org).",
    "[www.a.net]",
    "'q'",
    '"dq"',
    "<b>",
    "&amp;",
    "\n",
    "\r\n",
    " ",
    "@nurse1",
    "@pharmacy.",
    "word.",
    "x:y",
    "HTTP://UP.COM",
    "é",
    "user@example.com.",
    "mailto:a@b.com",
]


def _urlized(text) -> str:
    html = urlize(str(text or ""), nofollow=True, autoescape=True)
    return html.replace("\r\n", "\n").replace("\n", "<br>")


def test_a_message_renders_as_urlize_renders_it():
    for n in (1, 2, 3):
        for parts in itertools.permutations(PIECES, n):
            text = "".join(parts)
            assert message_html(text) == _urlized(text), text
    for text in (None, "", "plain words only", "a\nb\r\nc & <d>"):
        assert message_html(text) == _urlized(text)


def test_a_moment_is_what_the_date_filter_shows_in_the_current_zone_and_language():
    value = dt.datetime(2026, 12, 2, 6, 32, 5, 123456, tzinfo=dt.UTC)
    for zone in ("UTC", "America/Chicago", "Asia/Kolkata"):
        for language in ("en", "es"):
            with timezone.override(zone), translation.override(language):
                local = timezone.localtime(value)
                assert moment(value) == (date_filter(local, "c"), date_filter(local, "DATETIME_FORMAT"))
                assert moment_label(value) == date_filter(local, "DATETIME_FORMAT")
    assert moment(None) == ("", "")
    assert moment_label(None) == ""
