"""The one rule for links that CareTeam stores and shows (catalog websites, service and
location pages, logos, taxonomy URIs): http(s), mailto or tel only. A `javascript:` or
`data:` link in an imported catalog would otherwise run in a clinician's browser."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

LINK_SCHEMES = ("http", "https", "mailto", "tel")


def link_allowed(value: str) -> bool:
    if not value:
        return True
    if any(ord(c) < 33 or ord(c) == 127 for c in value):  # browsers drop controls and blanks
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme.lower() not in LINK_SCHEMES:
        return False
    return bool(parts.netloc) if parts.scheme.lower() in ("http", "https") else bool(parts.path)


@deconstructible
class LinkValidator:
    message = "Enter a link starting with http://, https://, mailto: or tel:."
    code = "invalid_link"

    def __call__(self, value) -> None:
        if not link_allowed(str(value)):
            raise ValidationError(self.message, code=self.code, params={"value": value})

    def __eq__(self, other) -> bool:
        return isinstance(other, LinkValidator)


validate_link = LinkValidator()
