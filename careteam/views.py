"""Pages of the care-team app."""

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect


def home(request: HttpRequest) -> HttpResponse:
    return redirect("worklist" if request.user.is_authenticated else "login")


def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers. Reveals no data."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
