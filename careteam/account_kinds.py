"""Which paths each kind of account may reach (settings.ACCOUNT_KIND_PATHS): asked by
`careteam.middleware.AccountKindMiddleware` for sessions and by the API's token
authentication for token calls (a token call is not signed in when the middleware runs)."""

from __future__ import annotations

from django.conf import settings


def kind_may_reach(user, path: str) -> bool:
    """Whether the account may reach this path: staff always; any other kind only the
    common paths and its own."""
    if getattr(user, "kind", "staff") == "staff":
        return True
    allowed = settings.ACCOUNT_COMMON_PATHS + settings.ACCOUNT_KIND_PATHS.get(user.kind, ())
    return path.startswith(allowed)
