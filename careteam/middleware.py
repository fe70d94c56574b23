"""Request-level safeguards: idle session timeout, and automatic auditing of patient URLs
(denials always; reads that no view audited itself)."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpResponse
from django.shortcuts import resolve_url

from .audit import audit_request


class IdleSessionTimeoutMiddleware:
    """Sign a user out after SESSION_IDLE_TIMEOUT seconds without a request.

    The last-seen time is rewritten at most every RESOLUTION seconds so that a busy page
    does not save its session on every request; the timeout is exact to that resolution."""

    KEY = "_last_seen"
    RESOLUTION = 30

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            last = request.session.get(self.KEY)
            if last is not None and now - last > settings.SESSION_IDLE_TIMEOUT:
                logout(request)
                minutes = max(1, settings.SESSION_IDLE_TIMEOUT // 60)
                messages.info(request, f"You were signed out after {minutes} minutes without activity.")
                if getattr(request, "htmx", False):
                    # a fragment swap would paint the login page inside the page: reload
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = resolve_url(settings.LOGIN_URL)
                    return response
            elif last is None or now - last >= self.RESOLUTION:
                request.session[self.KEY] = now
        response = self.get_response(request)
        # a login in this request starts the idle clock now, not at the next request
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and self.KEY not in request.session:
            request.session[self.KEY] = int(time.time())
        return response


class PatientAuditMiddleware:
    """Every request to a URL naming patient data (patient_id, plan_id, goal_id, ...) is
    audited: a 403 or 404 answer as a denial, a 200 GET as a read unless the view wrote
    its own audit event with `request=`. An audit write that fails fails the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code in (200, 403, 404):
            audit_request(request, status_code=response.status_code)
        return response
