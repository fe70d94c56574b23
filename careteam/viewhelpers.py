"""Helpers every page view shares: a service's refusal shown on the form it came from,
and the 403 page. No project imports: any app's views may use them."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def add_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Put a service's ValidationError next to the fields it names; errors about fields
    the form does not have, and errors about no field, go on top."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    """The 403 page, saying why."""
    return render(request, "careplans/forbidden.html", {"message": message}, status=403)
