"""Two-factor sign-in: a TOTP authenticator app (django-otp) plus single-use recovery codes.

Who needs the second factor: every account enrolled in it, and, when REQUIRE_2FA is on
(the production default), every staff account (clinicians, that is accounts holding a
discipline, and administrators) whether enrolled yet or not; those not yet enrolled must
enrol right after their password. The password step does not sign in: it leaves a
pending sign-in in the session (PENDING_KEY, valid PENDING_SECONDS), and only a correct
code signs the user in. Wrong codes count towards the same django-axes lockout
(username + IP) as wrong passwords, and each device also throttles itself (django-otp:
the delay doubles after every failure), so a known password does not open the door to
guessing codes.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import segno
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .models import User

PENDING_KEY = "_two_factor_pending"
PENDING_SECONDS = 5 * 60
RECOVERY_CODES = 10
TOTP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


# ---------------------------------------------------------------------------
# Who needs it
# ---------------------------------------------------------------------------
def required_for(user) -> bool:
    """Staff roles must use a second factor when REQUIRE_2FA is on."""
    if not settings.REQUIRE_2FA or not getattr(user, "is_authenticated", False):
        return False
    return user.is_staff or user.is_superuser or user.disciplines.exists()


def is_enrolled(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def needs_second_factor(user) -> bool:
    return required_for(user) or is_enrolled(user)


# ---------------------------------------------------------------------------
# Checking a code
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    message: str
    status: int = 400


LOCKED = Refusal("Too many failed attempts: sign-in is paused for a while.", 429)


def _device_for(user, code: str):
    """Six digits are a code of the authenticator app; anything else a recovery code."""
    model = TOTPDevice if code.isdigit() and len(code) <= 8 else StaticDevice
    return model.objects.filter(user=user, confirmed=True).first()


def _failed(user, request) -> None:
    # django-axes counts it towards the username + IP lockout; the audit receiver logs it
    user_login_failed.send(
        sender=__name__, credentials={"username": user.get_username(), "second_factor": True}, request=request
    )


def is_locked(user, request) -> bool:
    return AxesProxyHandler.is_locked(request, credentials={"username": user.get_username()})


def verify(user, code: str, *, request, device=None):
    """The device that accepted `code`, or a Refusal. Every wrong code is counted."""
    if is_locked(user, request):
        return LOCKED
    code = "".join(code.split()).lower()
    device = device or (_device_for(user, code) if code else None)
    if device is None:
        _failed(user, request)
        return LOCKED if is_locked(user, request) else Refusal("That code is not valid.")
    allowed, info = device.verify_is_allowed()
    if not allowed:
        return Refusal("Too many wrong codes: wait a few seconds and try again.")
    if device.verify_token(code):
        return device
    _failed(user, request)
    return LOCKED if is_locked(user, request) else Refusal("That code is not valid.")


def check_api_code(user, code: str, *, request) -> Refusal | None:
    """The API token sign-in's second factor: None when `code` is good."""
    if not is_enrolled(user):
        return Refusal("This account must set up two-factor sign-in in the web application first.", 403)
    if not code:
        return Refusal("This account signs in with a one-time code: send it as 'otp'.")
    result = verify(user, code, request=request)
    return result if isinstance(result, Refusal) else None


# ---------------------------------------------------------------------------
# The pending sign-in (between the password and the code)
# ---------------------------------------------------------------------------
def begin(request, user, *, next_url: str) -> None:
    request.session.cycle_key()
    request.session[PENDING_KEY] = {
        "user": user.pk,
        "backend": user.backend,
        "at": int(time.time()),
        "next": next_url,
    }


def pending_user(request) -> User | None:
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    if user is not None:
        user.backend = pending["backend"]
    return user


def pending_next(request) -> str:
    return (request.session.get(PENDING_KEY) or {}).get("next") or settings.LOGIN_REDIRECT_URL


def complete(request, user, device) -> None:
    """Sign in for real, remembering which device verified this session."""
    request.session.pop(PENDING_KEY, None)
    auth_login(request, user, backend=user.backend)
    otp_login(request, device)


# ---------------------------------------------------------------------------
# Enrolment and recovery codes
# ---------------------------------------------------------------------------
def totp_device_for_setup(user) -> TOTPDevice:
    """The unconfirmed authenticator being set up (the same secret until confirmed)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)


def secret_of(device: TOTPDevice) -> str:
    """The base32 secret people type into an authenticator app by hand."""
    return base64.b32encode(device.bin_key).decode()


def qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URL as an inline SVG (no script, no external image)."""
    return segno.make(device.config_url, error="m").svg_inline(scale=4, title="Authenticator set-up code")


@transaction.atomic
def enrol_confirm(*, user, device: TOTPDevice) -> list[str]:
    """The authenticator accepted a code: it replaces any earlier one; new recovery codes."""
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return recovery_codes_renew(user=user)


@transaction.atomic
def recovery_codes_renew(*, user) -> list[str]:
    """Ten new single-use recovery codes; the old ones stop working."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()
