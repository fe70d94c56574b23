"""Endpoints for operators and machines: liveness, readiness (careteam/health.py) and
Prometheus metrics (careteam/metrics.py).

Both are answered by `careteam.middleware.ProbeMiddleware` before any other middleware,
so they need no session, no sign-in, no allowed host and no TLS redirect, are never
audited, and /healthz runs no query. The URL patterns (careteam/urls_ops.py) name them
for `reverse()` and route them the same way if that middleware is ever left out.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from . import health
from . import metrics as metrics_module


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and answering. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: database, migrations and broker, each reported; 503 if any fails."""
    ready, checks = health.readiness()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def may_scrape(request: HttpRequest) -> bool:
    """A scraper sending `Authorization: Bearer <METRICS_TOKEN>`, or a signed-in superuser
    with staff status. Nobody when METRICS_TOKEN is empty and nobody is signed in."""
    token = settings.METRICS_TOKEN
    scheme, _, sent = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
        return True
    user = request.user
    return bool(user.is_authenticated and user.is_active and user.is_staff and user.is_superuser)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics; the same 404 as an unknown URL for anyone else, whatever the method."""
    if not may_scrape(request):
        raise Http404("Not found.")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(metrics_module.render(), content_type=CONTENT_TYPE_LATEST)
