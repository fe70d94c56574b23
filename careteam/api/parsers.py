"""JSON bodies as the API accepts them: at most MAX_DEPTH levels of nesting and no NUL
character anywhere (PostgreSQL text cannot hold one). Anything else is a 400 before any
view or serializer sees it; Python's own parser would raise RecursionError (a 500) on a
body of a thousand '['."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


def check_json(data) -> None:
    """Raise ParseError for nesting deeper than MAX_DEPTH or a NUL in a key or string
    (iteratively: the check itself must not recurse)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ParseError("JSON parse error - NUL characters are not allowed.")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None and "\x00" in key:
                    raise ParseError("JSON parse error - NUL characters are not allowed.")
                stack.append((item, depth + 1))


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        check_json(data)
        return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")
