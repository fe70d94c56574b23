"""Pages of the care-team app."""

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect


def home(request: HttpRequest) -> HttpResponse:
    """Clinicians (users with a discipline) land on My work; others on the worklist."""
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("my_work" if request.user.disciplines.exists() else "worklist")


def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers. Reveals no data."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
