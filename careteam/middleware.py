"""Request-level safeguards: idle session timeout, and automatic auditing of patient URLs
(denials always; reads that no view audited itself)."""

from __future__ import annotations

import time

from django.apps import apps
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers

from . import metrics, requestid, twofactor
from .account_kinds import kind_may_reach
from .audit import REFUSED_EDIT_STATUSES, audit_refused_edit, audit_request, patient_url_target
from .permissions import EMERGENCY_ACCESS_READ_ONLY, SAFE_METHODS, emergency_access_only, patient_access


class RequestIdMiddleware:
    """Every request gets an id (careteam/requestid.py): the caller's `X-Request-ID` when it
    is a plain token, else a new one. It is answered in `X-Request-ID`, logged with every
    line and stored on audit events and enqueued tasks. Comes first in MIDDLEWARE.

    The id stays set until the response is closed (`request_finished`): Django logs a 4xx
    answer ("Not Found: ...") after the last middleware has returned."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = requestid.from_header(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        requestid.REQUEST_ID.set(request_id)
        response = self.get_response(request)
        response[requestid.HEADER] = request_id
        return response


class NotFoundFloorMiddleware:
    """Every 404 takes at least NOT_FOUND_FLOOR_MS: a record hidden on another team and
    no record at all cost almost the same work (permissions._as_if_hidden), and the floor
    hides what difference is left, so the answer's timing tells nothing either."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.floor = settings.NOT_FOUND_FLOOR_MS / 1000

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        if response.status_code == 404 and self.floor > 0:
            left = self.floor - (time.perf_counter() - started)
            if left > 0:
                time.sleep(left)
        return response


class ProbeMiddleware:
    """/healthz and /readyz (careteam/views_ops.py), answered first of all middleware: a
    load balancer or orchestrator probes by address, over plain HTTP, without a cookie,
    so the host check, the TLS redirect, the session, sign-in and the audit are all
    skipped, and the liveness answer costs no query. Must come first in MIDDLEWARE."""

    def __init__(self, get_response):
        from . import views_ops

        self.get_response = get_response
        self.probes = {"/healthz": views_ops.healthz, "/readyz": views_ops.readyz}

    def __call__(self, request):
        view = self.probes.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)


class RequestMetricsMiddleware:
    """Times every request (but the probes) for /metrics, by URL name and method
    (careteam/metrics.py); a request no URL matched counts as view "unresolved"."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        metrics.observe_request(
            view=match.view_name if match is not None else "unresolved",
            method=request.method,
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


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


class HostileInputMiddleware:
    """A path or query parameters holding a NUL character (which no PostgreSQL text can
    hold, and no legitimate client sends) answer 400, in JSON for the API and FHIR: a NUL
    in a URL's id would otherwise reach the database in every view and admin page with
    a text key."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        message = ""
        if "\x00" in request.path_info or "\x00" in request.path:
            message = "Addresses may not contain NUL characters."
        elif (
            "%00" in query
            or "\x00" in query
            or any("\x00" in k or "\x00" in v for k, v in request.GET.items())
        ):
            message = "Query parameters may not contain NUL characters."
        if message:
            if request.path.startswith(("/api/", "/fhir/")):
                return JsonResponse({"detail": message}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain")
        return self.get_response(request)


class TwoFactorMiddleware:
    """A signed-in session whose account needs a second factor (REQUIRE_2FA) but which
    was not verified with one (a session from before the setting, or made by other means
    than the sign-in pages) is signed out. Costs no query while REQUIRE_2FA is off."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.REQUIRE_2FA:
            user = request.user
            if user.is_authenticated and not user.is_verified() and twofactor.required_for(user):
                logout(request)
        return self.get_response(request)


class AccountKindMiddleware:
    """Patients, caregivers and partners reach only the paths of their kind
    (ACCOUNT_KIND_PATHS) and the paths every signed-in account needs
    (ACCOUNT_COMMON_PATHS: sign-in, sign-out, settings, static files); anything else
    answers 404, the same as a missing page. Staff accounts pass untouched; the portal and
    partner views refuse staff themselves."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if user.is_authenticated and user.kind != "staff":
            path = request.path_info
            home = settings.ACCOUNT_KIND_HOME.get(user.kind)
            if path == "/" and home:
                return HttpResponseRedirect(home)
            if not kind_may_reach(user, path):
                self._audit_denial(request)
                raise Http404
        return self.get_response(request)

    @staticmethod
    def _audit_denial(request) -> None:
        """A refused URL that names patient data is a denial in the audit trail, as the
        views' own 404s are (PatientAuditMiddleware never sees this one)."""
        try:
            request.resolver_match = resolve(request.path_info)
        except Resolver404:
            return
        audit_request(request, status_code=404)


class PatientAuditMiddleware:
    """Every request to a URL naming patient data (patient_id, plan_id, goal_id, ...) is
    audited: a 403 or 404 answer as a denial, a 200 GET as a read unless the view wrote
    its own audit event with `request=`. Every change refused with 409, 412 or 428, on
    any URL, is an `edit-refused` denial. An audit write that fails fails the request.

    It also holds the line for emergency access: a write (any unsafe method) to a patient
    URL by someone whose only access to that patient is emergency access answers 403
    "Emergency access is read-only" before any view runs, whatever the view checks."""

    def __init__(self, get_response):
        self.get_response = get_response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method in SAFE_METHODS or not view_kwargs:
            return None
        if getattr(view_func, "cls", None) is not None:
            return None  # REST framework views authenticate later and answer in JSON themselves
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        match = getattr(request, "resolver_match", None)
        if match is not None and "admin" in (match.namespaces or []):
            return None
        target = patient_url_target(view_kwargs)
        if target is None or target[2] is None:
            return None
        object_type, object_id, patient_id = target
        if not emergency_access_only(user, patient_id):
            return None
        # an item hidden from this user by its sensitivity stays a 404, as in the views
        model = apps.get_model(object_type)
        if object_type == "careteam.huddle" or (match is not None and "huddles" in (match.namespaces or [])):
            # huddles are the current team's only: emergency access finds none (as its GET does)
            raise Http404("Not found.")
        if object_type in ("careteam.conversation", "careteam.message"):
            from patients.models import Patient

            obj = model._default_manager.filter(pk=object_id).first()
            if obj is not None and not patient_access(user, Patient.objects.get(pk=patient_id)).can_see(obj):
                raise Http404("Not found.")
        if any(f.name == "sensitivity" for f in model._meta.concrete_fields):
            from patients.models import Patient

            sensitivity_id = (
                model._default_manager.filter(pk=object_id).values_list("sensitivity_id", flat=True).first()
            )
            access = patient_access(user, Patient.objects.get(pk=patient_id))
            if not access.can_see_sensitivity(sensitivity_id):
                raise Http404("Not found.")
        raise PermissionDenied(EMERGENCY_ACCESS_READ_ONLY)

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code in (200, 403, 404):
            audit_request(request, status_code=response.status_code)
        elif response.status_code in REFUSED_EDIT_STATUSES and request.method not in SAFE_METHODS:
            audit_refused_edit(request, status_code=response.status_code)
        return response


class HtmxHistoryMiddleware:
    """Every htmx page restores as a full page.

    A page answers an htmx request with a fragment and a plain request with the whole
    page at the same URL (the worklist's search pushes its URL). Two things go wrong on
    Back without this: the browser's cache hands back the fragment it stored for the
    URL, and htmx's own history restore (`HX-History-Restore-Request`) asks with
    `HX-Request` and gets a fragment. So every response says it varies on `HX-Request`,
    and a history restore is answered as a plain request (django-htmx then sees no htmx
    request and every view renders the full page). Must come before HtmxMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.META.get("HTTP_HX_HISTORY_RESTORE_REQUEST") == "true":
            request.META.pop("HTTP_HX_REQUEST", None)
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        return response


class ProductErrorPagesMiddleware:
    """The product's own 404 and 500 pages while DEBUG is on (`TECHNICAL_ERROR_PAGES`
    false, as `./dev.py run` sets it): demo runs keep DEBUG's static files, dev secret and
    relaxed cookies but never show Django's debug pages, which list every URL or print a
    traceback and settings to whoever clicks. With DEBUG off Django renders these
    templates itself. An HTML 404 or 500 is answered with the product's page (JSON
    answers of the API are left alone); Django has already logged a 500."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.active = settings.DEBUG and not settings.TECHNICAL_ERROR_PAGES

    def __call__(self, request):
        response = self.get_response(request)
        if (
            self.active
            and response.status_code in (404, 500)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            template = f"{response.status_code}.html"
            return render(request, template, status=response.status_code)
        return response
