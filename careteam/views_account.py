"""The signed-in person's own settings: time zone and the end-of-day digest (beside the
two-factor sign-in page)."""

from __future__ import annotations

import zoneinfo

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import digest


def _zones() -> list[tuple[str, str]]:
    return [
        (z, z.replace("_", " ")) for z in sorted(zoneinfo.available_timezones()) if "/" in z or z == "UTC"
    ]


class PreferenceForm(forms.Form):
    time_zone = forms.ChoiceField(label="Time zone", choices=_zones)
    digest_enabled = forms.BooleanField(
        label="Email me an end-of-day digest", required=False,
        help_text="Counts and links only: how many handoffs wait for you, what is due tomorrow and "
        "what is overdue. It never names a patient, and is not sent on a day with nothing to say.",
    )  # fmt: skip
    digest_time = forms.TimeField(
        label="Send it at (your local time)",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        input_formats=["%H:%M", "%H:%M:%S"],
    )


@login_required
@require_http_methods(["GET", "POST"])
def account_settings(request: HttpRequest) -> HttpResponse:
    """Show and save the caller's time zone and digest choice."""
    pref = digest.preference_for(request.user)
    initial = {
        "time_zone": pref.time_zone,
        "digest_enabled": pref.digest_enabled,
        "digest_time": pref.digest_time,
    }
    form = PreferenceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            digest.preference_update(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                form.add_error(name if name in form.fields else None, errors)
        else:
            messages.success(request, "Your settings are saved.")
            return redirect("account_settings")
    return render(
        request, "registration/account_settings.html", {"form": form}, status=400 if form.errors else 200
    )
