"""API authentication: expiring, per-client, revocable tokens (django-rest-knox).

Each sign-in (POST /api/v1/auth/token/) issues a new token for that client only; only a
digest is stored. A token lapses after REST_KNOX["TOKEN_TTL"] without use (idle expiry)
and at the latest REST_KNOX["AUTO_REFRESH_MAX_TTL"] after it was issued (absolute
expiry). Changing a password or deactivating an account deletes all of its tokens
(careteam/signals.py).
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from knox.settings import knox_settings
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

from careteam.account_kinds import kind_may_reach
from careteam.audit import audit
from careteam.models import AuditAction

# "Token" is DRF's and knox's word; "Bearer" is what OAuth-style clients send
SCHEMES = (b"token", b"bearer")


class ApiTokenAuthentication(TokenAuthentication):
    """A knox token sent as `Authorization: Token <t>` or `Authorization: Bearer <t>`."""

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in SCHEMES:
            return None  # another scheme, or none: the session may still authenticate
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed(_("Invalid token header: expected '<scheme> <token>'."))
        try:
            auth[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        user, token = self.authenticate_credentials(auth[1])
        if not kind_may_reach(user, request.path_info):
            # a portal or partner account's token opens only the paths of its kind
            raise exceptions.NotFound()
        return user, token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "careteam.api.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")  # noqa: S106 - the scheme name


def token_issue(*, user, request) -> tuple[AuthToken, str]:
    """A new token for one client of `user` (audited); the account's oldest tokens go
    when it holds more than API_TOKENS_PER_USER."""
    token, key = AuthToken.objects.create(user=user)
    token.max_expiry = token.created + knox_settings.AUTO_REFRESH_MAX_TTL
    keep = (
        AuthToken.objects.filter(user=user)
        .order_by("-created")
        .values("digest")[: settings.API_TOKENS_PER_USER]
    )
    AuthToken.objects.filter(user=user).exclude(digest__in=keep).delete()
    audit(
        user=user,
        action=AuditAction.LOGIN,
        request=request,
        object_type="careteam.user",
        object_id=user.pk,
        detail="API token issued",
    )
    return token, key


def tokens_revoke_all(user_id: int) -> int:
    """Delete every API token of the account (password changed, account deactivated)."""
    deleted, _ = AuthToken.objects.filter(user_id=user_id).delete()
    return deleted
