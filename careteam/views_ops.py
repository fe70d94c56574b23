"""Endpoints for operators and machines: liveness, readiness (careteam/health.py).

Both are answered by `careteam.middleware.ProbeMiddleware` before any other middleware,
so they need no session, no sign-in, no allowed host and no TLS redirect, are never
audited, and /healthz runs no query. The URL patterns (careteam/urls_ops.py) name them
for `reverse()` and route them the same way if that middleware is ever left out.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import health


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
