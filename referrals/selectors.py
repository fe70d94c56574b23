"""Reads: catalog search (not patient data), referrals (always from the restricted
queryset) and the turnaround metrics of the team dashboard."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db.models import (
    Aggregate,
    Count,
    Exists,
    F,
    FloatField,
    Func,
    OuterRef,
    Q,
    QuerySet,
    TextField,
    Value,
)
from django.http import Http404
from django.utils import timezone

from careteam.models import HANDOFF_OPEN_STATUSES, Handoff
from careteam.permissions import PatientAccess, access_item, restrict, sensitivity_visible_q

from .models import REFERRAL_CLOSED_STATUSES, Referral, Service, ServiceStatus, TaxonomyTerm


# ---------------------------------------------------------------------------
# Catalog search
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogFilters:
    text: str = ""
    category: str = ""  # taxonomy term code
    category_id: object = None  # the term's id when the caller already knows it (the search form does)
    language: str = ""  # language code, e.g. "es"
    free_only: bool = False
    area: str = ""
    status: str = ServiceStatus.ACTIVE  # "" for every status


def service_search(filters: CatalogFilters) -> QuerySet[Service]:
    """Services matching the filters, best match first for a text search. Full-text search
    uses the generated `search_vector` column (GIN index); one query per page, plus one
    for the categories shown on each result."""
    qs = Service.objects.select_related("organization").prefetch_related("categories")
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.category_id:
        # a literal term id lets the planner use the statistics of the link table
        qs = qs.filter(categories=filters.category_id)
    elif filters.category:
        through = Service.categories.through
        qs = qs.filter(
            Exists(through.objects.filter(service_id=OuterRef("pk"), taxonomyterm__code=filters.category))
        )
    if filters.language:
        qs = qs.filter(languages__contains=[filters.language])
    if filters.free_only:
        qs = qs.filter(is_free=True)
    if filters.area:
        qs = qs.filter(service_area__icontains=filters.area)
    if filters.text:
        query = SearchQuery(filters.text, search_type="websearch", config="english")
        through = Service.categories.through
        in_matching_category = Exists(
            through.objects.filter(service_id=OuterRef("pk"), taxonomyterm_id__in=matching_terms(query))
        )
        return (
            qs.filter(Q(search_vector=query) | in_matching_category)
            .annotate(rank=SearchRank(F("search_vector"), query))
            .order_by("-rank", "name", "id")
        )
    return qs.order_by("name", "id")


def matching_terms(query: SearchQuery) -> QuerySet:
    """Ids of the taxonomy terms whose name, description or synonyms match a text search
    ("transport" finds Transportation, "rides" finds it through its synonyms)."""
    document = SearchVector(
        "name",
        "description",
        Func(F("synonyms"), Value(" "), function="array_to_string", output_field=TextField()),
        config="english",
    )
    return TaxonomyTerm.objects.annotate(document=document).filter(document=query).values("pk")


# ---------------------------------------------------------------------------
# Referrals (patient data)
# ---------------------------------------------------------------------------
def referrals_for(user) -> QuerySet[Referral]:
    """Referrals of patients the user may see, hiding those made from a need in a
    sensitivity category the user's discipline may not see."""
    user = _unwrap(user)
    qs = restrict(Referral.objects.all(), user, patient_path="patient")
    return qs.filter(sensitivity_visible_q(user, "patient", "need__sensitivity"))


def _unwrap(user):
    """request.user is a lazy proxy; sensitivity_visible_q needs the User class itself."""
    _ = user.pk  # evaluates the proxy
    return getattr(user, "_wrapped", user)


def referral_for_user(user, referral_id) -> tuple[Referral, PatientAccess]:
    """One referral with the user's access; 404 when missing, not visible, or made from
    a need the user may not see (the same answer in every case)."""
    qs = Referral.objects.select_related(
        "patient", "care_plan", "need", "service__organization", "referred_by", "consent"
    )
    referral, access = access_item(user, qs, referral_id, patient_path="patient")
    if referral.need is not None and not access.can_see_sensitivity(referral.need.sensitivity_id):
        raise Http404("Not found.")
    return referral, access


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
class Percentile(Aggregate):
    """PostgreSQL's percentile_cont: the continuous percentile of an ordered set."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError("fraction is between 0 and 1")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def hours_between(start: str, end: str) -> Func:
    return Func(
        F(end) - F(start),
        template="EXTRACT(EPOCH FROM (%(expressions)s)) / 3600.0",
        output_field=FloatField(),
    )


ACCEPTED = Q(accepted_at__isnull=False, sent_at__isnull=False)
CLOSED = Q(closed_at__isnull=False, sent_at__isnull=False) & ~Q(status="entered-in-error")


def _turnaround() -> dict:
    to_accept = hours_between("sent_at", "accepted_at")
    to_close = hours_between("sent_at", "closed_at")
    return {
        "sent": Count("id", filter=Q(sent_at__isnull=False)),
        "accepted": Count("id", filter=ACCEPTED),
        "closed": Count("id", filter=CLOSED),
        "accept_p50": Percentile(to_accept, 0.5, filter=ACCEPTED),
        "accept_p90": Percentile(to_accept, 0.9, filter=ACCEPTED),
        "close_p50": Percentile(to_close, 0.5, filter=CLOSED),
        "close_p90": Percentile(to_close, 0.9, filter=CLOSED),
    }


@dataclass
class Metrics:
    start: dt.date | None
    end: dt.date | None
    by_status: list[dict]
    overall: dict
    by_service: list[dict]
    by_organization: list[dict]
    handoffs: dict
    handoffs_by_priority: list[dict]


def _in_range(qs: QuerySet, field: str, start: dt.date | None, end: dt.date | None) -> QuerySet:
    tz = timezone.get_current_timezone()
    if start:
        qs = qs.filter(**{f"{field}__gte": dt.datetime.combine(start, dt.time.min, tzinfo=tz)})
    if end:
        qs = qs.filter(
            **{f"{field}__lt": dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)}
        )
    return qs


def dashboard_metrics(user, *, start: dt.date | None = None, end: dt.date | None = None) -> Metrics:
    """Turnaround of referrals and handoffs created in the date range, counted only over
    the patients (and sensitive needs) the user may see. A fixed number of queries."""
    referrals = _in_range(referrals_for(user), "created_at", start, end)
    by_status = list(referrals.order_by().values("status").annotate(n=Count("id")).order_by("-n", "status"))
    overall = referrals.order_by().aggregate(**_turnaround())
    by_service = list(
        referrals.order_by()
        .values("service_id", "service__name", "service__organization__name")
        .annotate(**_turnaround())
        .order_by("-sent", "service__name")
    )
    by_organization = list(
        referrals.order_by()
        .values("service__organization_id", "service__organization__name")
        .annotate(**_turnaround())
        .order_by("-sent", "service__organization__name")
    )
    handoffs = _in_range(
        restrict(Handoff.objects.all(), user, patient_path="patient"), "created_at", start, end
    )
    now = timezone.now()
    to_ack = hours_between("created_at", "acknowledged_at")
    acknowledged = Q(acknowledged_at__isnull=False)
    handoff_aggregates = {
        "total": Count("id"),
        "acknowledged": Count("id", filter=acknowledged),
        "ack_p50": Percentile(to_ack, 0.5, filter=acknowledged),
        "ack_p90": Percentile(to_ack, 0.9, filter=acknowledged),
        "overdue": Count("id", filter=Q(status__in=HANDOFF_OPEN_STATUSES, due_at__lt=now)),
        "unacknowledged_overdue": Count("id", filter=Q(status="requested", due_at__lt=now)),
    }
    handoff_summary = handoffs.order_by().aggregate(**handoff_aggregates)
    by_priority = list(
        handoffs.order_by().values("priority").annotate(**handoff_aggregates).order_by("priority")
    )
    return Metrics(start, end, by_status, overall, by_service, by_organization, handoff_summary, by_priority)


__all__ = [
    "CatalogFilters",
    "service_search",
    "referrals_for",
    "referral_for_user",
    "dashboard_metrics",
    "Percentile",
    "REFERRAL_CLOSED_STATUSES",
]
