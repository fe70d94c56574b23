"""Tokens (knox: per client, expiring, revocable, Bearer), two-factor sign-in (TOTP and
recovery codes, lockout), the Content-Security-Policy, the HttpOnly CSRF cookie and the
one rule for stored links."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken
from rest_framework.test import APIClient

from careteam.models import AuditEvent
from careteam.validators import validate_link

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-staple"


def sign_in_api(username="nurse1", **extra):
    return APIClient().post(
        "/api/v1/auth/token/", {"username": username, "password": PASSWORD, **extra}, format="json"
    )


# ---------------------------------------------------------------------------
# Item 8: tokens
# ---------------------------------------------------------------------------
def test_each_client_gets_its_own_token_accepted_as_bearer_and_audited(world):
    first, second = sign_in_api().json(), sign_in_api().json()
    assert first["token"] != second["token"] and first["expiry"] and first["max_expiry"]
    assert AuthToken.objects.filter(user=world.nurse).count() == 2
    assert AuditEvent.objects.filter(user=world.nurse, action="login", detail="API token issued").count() == 2
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {first['token']}")
    assert bearer.get("/api/v1/patients/").status_code == 200
    assert bearer.delete("/api/v1/auth/token/").status_code == 204
    assert bearer.get("/api/v1/patients/").status_code == 401
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {second['token']}")
    assert other.get("/api/v1/patients/").status_code == 200  # the other client keeps its token


def test_an_idle_or_old_token_stops_working(world):
    key = sign_in_api().json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    AuthToken.objects.update(expiry=timezone.now() - dt.timedelta(seconds=1))
    assert client.get("/api/v1/patients/").status_code == 401
    assert not AuthToken.objects.exists()


def test_a_password_change_or_deactivation_revokes_every_token(world):
    sign_in_api()
    sign_in_api()
    world.nurse.refresh_from_db()
    world.nurse.set_password("another-long-password-42")
    world.nurse.save()
    assert not AuthToken.objects.filter(user=world.nurse).exists()
    AuthToken.objects.create(user=world.case_manager)
    world.case_manager.is_active = False
    world.case_manager.save()
    assert not AuthToken.objects.filter(user=world.case_manager).exists()


# ---------------------------------------------------------------------------
# Item 9: two-factor sign-in
# ---------------------------------------------------------------------------
def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


def test_with_2fa_required_a_password_alone_does_not_sign_in_and_enrolment_does(world, client, settings):
    settings.REQUIRE_2FA = True
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # the wrong code below must not delay the right one
    response = client.post("/accounts/login/", {"username": "nurse1", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/two-factor/setup/"
    assert client.get("/patients/").status_code == 302  # not signed in yet
    page = client.get("/accounts/two-factor/setup/")
    assert page.status_code == 200 and b"<svg" in page.content
    device = TOTPDevice.objects.get(user=world.nurse, confirmed=False)
    wrong = client.post(
        "/accounts/two-factor/setup/", {"code": "000000" if _code(device) != "000000" else "111111"}
    )
    assert wrong.status_code == 400
    done = client.post("/accounts/two-factor/setup/", {"code": _code(device)})
    assert done.status_code == 200 and b"recovery codes" in done.content.lower()
    assert client.get("/patients/").status_code == 200
    # the API token needs the code too
    assert sign_in_api().status_code == 400
    device.refresh_from_db()
    device.last_t = -1
    device.save()
    assert sign_in_api(otp=_code(device)).status_code == 200


def test_wrong_second_factor_codes_lock_the_account_out(world, client, settings):
    settings.REQUIRE_2FA = True
    device = TOTPDevice.objects.create(user=world.nurse, name="Authenticator app", confirmed=True)
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # count through axes alone
    wrong = "000000" if _code(device) != "000000" else "111111"
    statuses = []
    for _ in range(6):
        client.post("/accounts/login/", {"username": "nurse1", "password": PASSWORD})
        statuses.append(client.post("/accounts/two-factor/verify/", {"code": wrong}).status_code)
    assert 429 in statuses
    assert AuditEvent.objects.filter(detail__startswith="wrong one-time code").exists()


def test_2fa_is_off_by_default_in_tests_and_demo(world, client, settings):
    response = client.post("/accounts/login/", {"username": "nurse1", "password": PASSWORD})
    # signed in at once: on to the landing page, which sends a clinician to My work
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/")["Location"] == "/work/"


# ---------------------------------------------------------------------------
# Item 7: CSP, HttpOnly CSRF cookie, links
# ---------------------------------------------------------------------------
def test_every_page_carries_a_csp_without_inline_script_and_a_httponly_csrf_cookie(world, client):
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert b"<script>" not in response.content and b"<style" not in response.content
    assert response.cookies["csrftoken"]["httponly"]
    client.force_login(world.nurse)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"<script>" not in docs.content and b"<style" not in docs.content
    assert client.get("/api/docs/?script").status_code == 200


@pytest.mark.parametrize(
    "bad", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "java\nscript:x", "ftp://x"]
)
def test_only_http_mailto_and_tel_links_are_stored(bad):
    with pytest.raises(ValidationError):
        validate_link(bad)
    for good in ("https://food.example.org/", "mailto:intake@example.org", "tel:+15555550100", ""):
        validate_link(good)
