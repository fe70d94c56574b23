"""Sign-in pages: the password step, then the second factor (careteam/twofactor.py)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from . import twofactor
from .twofactor import Refusal


class CodeForm(forms.Form):
    code = forms.CharField(max_length=32, label="Code", strip=True)


class SignInView(auth_views.LoginView):
    """Username and password; accounts with a second factor go on to the code page
    without being signed in yet."""

    def form_valid(self, form):
        user = form.get_user()
        self.signing_in = user
        if not twofactor.needs_second_factor(user):
            return super().form_valid(form)
        twofactor.begin(self.request, user, next_url=self.get_success_url())
        return redirect("two_factor_verify" if twofactor.is_enrolled(user) else "two_factor_setup")

    def get_default_redirect_url(self):
        """Partner accounts land on their inbox (every staff page is a 404 to them)."""
        user = getattr(self, "signing_in", None) or self.request.user
        if getattr(user, "kind", "") == "partner":
            return "/partner/"
        return super().get_default_redirect_url()


def _refused(request, form, refusal: Refusal, template: str, context: dict) -> HttpResponse:
    if refusal.status == 429:
        request.session.pop(twofactor.PENDING_KEY, None)
        return render(request, "registration/lockout.html", status=429)
    form.add_error("code", refusal.message)
    return render(request, template, {**context, "form": form}, status=400)


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The code of the authenticator app, or one recovery code."""
    user = twofactor.pending_user(request)
    if user is None or not twofactor.is_enrolled(user):
        messages.info(request, "Please sign in again.")
        return redirect("login")
    form = CodeForm(request.POST or None)
    context = {"form": form}
    if request.method == "POST" and form.is_valid():
        result = twofactor.verify(user, form.cleaned_data["code"], request=request)
        if isinstance(result, Refusal):
            return _refused(request, form, result, "registration/two_factor_verify.html", context)
        next_url = twofactor.pending_next(request)
        twofactor.complete(request, user, result)
        if result.name == twofactor.RECOVERY_NAME:
            left = twofactor.recovery_codes_left(user)
            messages.warning(
                request,
                f"You signed in with a recovery code; {left} left. Make new ones under Two-factor sign-in.",
            )
        return redirect(next_url)
    return render(request, "registration/two_factor_verify.html", context, status=400 if form.errors else 200)


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Enrolment: scan the QR code (or type the secret), confirm with a first code, and
    get the recovery codes once. For a pending sign-in that must enrol, or a signed-in
    user replacing their authenticator."""
    user = twofactor.pending_user(request)
    signed_in = request.user.is_authenticated and (
        request.user.is_verified() or not twofactor.needs_second_factor(request.user)
    )
    if user is None and signed_in:
        user = request.user
    if user is None or (not signed_in and twofactor.is_enrolled(user)):
        messages.info(request, "Please sign in again.")
        return redirect("login")
    device = twofactor.totp_device_for_setup(user)
    form = CodeForm(request.POST or None)
    context = {"form": form, "qr": twofactor.qr_svg(device), "secret": twofactor.secret_of(device)}
    if request.method == "POST" and form.is_valid():
        result = twofactor.verify(user, form.cleaned_data["code"], request=request, device=device)
        if isinstance(result, Refusal):
            return _refused(request, form, result, "registration/two_factor_setup.html", context)
        codes = twofactor.enrol_confirm(user=user, device=device)
        next_url = twofactor.pending_next(request) if not signed_in else "two_factor"
        if signed_in:
            otp_login(request, device)
        else:
            twofactor.complete(request, user, device)
        return render(
            request, "registration/two_factor_codes.html", {"codes": codes, "next_url": resolve_url(next_url)}
        )
    return render(request, "registration/two_factor_setup.html", context, status=400 if form.errors else 200)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest) -> HttpResponse:
    """The signed-in user's second factor: status, new recovery codes, new authenticator."""
    enrolled = twofactor.is_enrolled(request.user)
    if request.method == "POST":
        if not enrolled:
            return redirect("two_factor_setup")
        codes = twofactor.recovery_codes_renew(user=request.user)
        return render(
            request,
            "registration/two_factor_codes.html",
            {"codes": codes, "next_url": resolve_url("two_factor")},
        )
    return render(
        request,
        "registration/two_factor.html",
        {
            "enrolled": enrolled,
            "required": twofactor.required_for(request.user),
            "codes_left": twofactor.recovery_codes_left(request.user),
        },
    )
