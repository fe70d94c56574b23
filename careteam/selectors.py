"""Reads of the team domain that pages compose: the clinician directory."""

from __future__ import annotations

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from .models import Discipline, TeamMembership, User

DIRECTORY_LIMIT = 25


def clinician_directory(*, q: str = "", discipline: Discipline | None = None, patient=None) -> QuerySet:
    """Active clinicians (accounts holding a discipline), matched on every word of `q`
    against name, username and title, optionally of one discipline; each with `caseload`
    (patients whose team they are on today) and, given a patient, `on_team`. Names and
    counts only: the directory shows no patient."""
    through = User.disciplines.through
    has_discipline = through.objects.filter(user_id=OuterRef("pk"))
    users = User.objects.filter(is_active=True).filter(Exists(has_discipline))
    if discipline is not None:
        users = users.filter(Exists(has_discipline.filter(discipline_id=discipline.pk)))
    for word in (q or "").split()[:5]:
        users = users.filter(
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(username__icontains=word)
            | Q(title__icontains=word)
        )
    caseload = (
        TeamMembership.objects.current()
        .filter(user_id=OuterRef("pk"))
        .order_by()
        .values("user_id")
        .annotate(n=Count("patient_id", distinct=True))
        .values("n")
    )
    users = users.annotate(caseload=Coalesce(Subquery(caseload, output_field=IntegerField()), Value(0)))
    if patient is not None:
        users = users.annotate(
            on_team=Exists(TeamMembership.objects.current().filter(user_id=OuterRef("pk"), patient=patient))
        )
    return users.prefetch_related("disciplines").order_by("last_name", "first_name", "username")
