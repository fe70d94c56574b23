"""Reads: catalog search (not patient data), referrals (always from the restricted
queryset) and the turnaround metrics of the team dashboard."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db.models import (
    Aggregate,
    Case,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.http import Http404
from django.utils import timezone

from careplans.models import NeedCategory, NeedDomain, ProposedNeed, QuestionnaireResponse
from careteam.models import HANDOFF_OPEN_STATUSES, Handoff
from careteam.permissions import PatientAccess, access_item, patients_for, restrict, sensitivity_visible_q

from .models import (
    HELP_RECEIVED_OUTCOMES,
    REFERRAL_CLOSED_STATUSES,
    Referral,
    Service,
    ServiceStatus,
    TaxonomyTerm,
)


# ---------------------------------------------------------------------------
# Catalog search
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogFilters:
    text: str = ""
    category: str = ""  # taxonomy term code
    category_id: uuid.UUID | None = (
        None  # the term's id when the caller already knows it (the search form does)
    )
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


def services_suggested(
    categories, *, language: str = "", area: str = "", limit: int = 3
) -> dict[str, list[Service]]:
    """Active services to suggest for each category code, in one query: those in the
    language and area; when none, those in the language; when none, any; `limit` per
    category, by name. The same answer as searching each category with those filters
    in turn, at one query for any number of categories."""
    categories = sorted({c for c in categories if c})
    if not categories:
        return {}
    in_language = Q(service__languages__contains=[language]) if language else None
    in_area = Q(service__service_area__icontains=area) if area else None
    tier: Case | Value
    if in_language is not None and in_area is not None:
        tier = Case(When(in_language & in_area, then=0), When(in_language, then=1), default=2)
    elif in_language is not None:
        tier = Case(When(in_language, then=0), default=2)
    elif in_area is not None:
        tier = Case(When(in_area, then=0), default=1)
    else:
        tier = Value(0)
    through = Service.categories.through
    category = F("taxonomyterm__code")
    rows = (
        # the plugin does not carry annotations across the auto-created through model
        through.objects.filter(  # type: ignore[misc]
            taxonomyterm__code__in=categories, service__status=ServiceStatus.ACTIVE
        )
        .annotate(tier=ExpressionWrapper(tier, output_field=IntegerField()))
        .annotate(
            best=Window(Min("tier"), partition_by=category),
            place=Window(
                RowNumber(), partition_by=category, order_by=[F("tier"), F("service__name"), F("service_id")]
            ),
        )
        .filter(tier=F("best"), place__lte=limit)
        .select_related("service__organization", "taxonomyterm")
        .order_by("taxonomyterm__code", "place")
    )
    found: dict[str, list[Service]] = {code: [] for code in categories}
    for row in rows:
        found[row.taxonomyterm.code].append(row.service)
    return found


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
        # answered by the service itself (partner staff or its emailed link), not recorded
        # on its behalf: the turnaround of those is the service's own
        "by_service": Count("id", filter=ACCEPTED & Q(tracked_by_referrer=False)),
        "provided": Count("id", filter=CLOSED & Q(outcome__in=HELP_RECEIVED_OUTCOMES)),
    }


def provided_share(row: dict) -> float | None:
    """The share of closed referrals closed with the service provided, in percent."""
    return round(100 * row["provided"] / row["closed"], 1) if row.get("closed") else None


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
    more_services: bool = False  # by_service is the top N of a longer list
    more_organizations: bool = False
    by_category: list[dict] = field(default_factory=list)


def _in_range(qs: QuerySet, field: str, start: dt.date | None, end: dt.date | None) -> QuerySet:
    tz = timezone.get_current_timezone()
    if start:
        qs = qs.filter(**{f"{field}__gte": dt.datetime.combine(start, dt.time.min, tzinfo=tz)})
    if end:
        qs = qs.filter(
            **{f"{field}__lt": dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)}
        )
    return qs


# what the turnaround is grouped by: the values of a row, and its order (busiest first)
TURNAROUND_GROUPS = {
    "services": (
        ("service_id", "service__name", "service__organization__name"),
        ("-sent", "service__name", "service_id"),
    ),
    "organizations": (
        ("service__organization_id", "service__organization__name"),
        ("-sent", "service__organization__name", "service__organization_id"),
    ),
    "categories": (("need__category",), ("-sent", "need__category")),
}


def turnaround_by(
    user,
    group: str,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    referrals: QuerySet | None = None,
) -> QuerySet:
    """Turnaround per service or per organization (`group`), aggregated in SQL over the
    referrals `user` may see (or `referrals`, already restricted and in range), busiest
    first: slice it for the top N or a page."""
    values, order = TURNAROUND_GROUPS[group]
    if referrals is None:
        referrals = _in_range(referrals_for(user), "created_at", start, end)
    return referrals.order_by().values(*values).annotate(**_turnaround()).order_by(*order)


def _top(qs: QuerySet, top: int | None) -> tuple[list[dict], bool]:
    if top is None:
        return list(qs), False
    rows = list(qs[: top + 1])  # one more than shown says whether there is more
    return rows[:top], len(rows) > top


def dashboard_metrics(
    user, *, start: dt.date | None = None, end: dt.date | None = None, top: int | None = None
) -> Metrics:
    """Turnaround of referrals and handoffs created in the date range, counted only over
    the patients (and sensitive needs) the user may see. A fixed number of queries; with
    `top`, only the busiest `top` services and organizations (the rest on
    `turnaround_by`'s pages), so the page does not grow with the catalog."""
    referrals = _in_range(referrals_for(user), "created_at", start, end)
    by_status = list(referrals.order_by().values("status").annotate(n=Count("id")).order_by("-n", "status"))
    overall = referrals.order_by().aggregate(**_turnaround())
    # the restricted queryset is built once: its permission filters cost more to build
    # and compile than the aggregates cost to run
    by_service, more_services = _top(turnaround_by(user, "services", referrals=referrals), top)
    by_organization, more_organizations = _top(turnaround_by(user, "organizations", referrals=referrals), top)
    by_category = list(turnaround_by(user, "categories", referrals=referrals))  # a fixed list
    for row in (overall, *by_service, *by_organization, *by_category):
        row["provided_share"] = provided_share(row)
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
    return Metrics(
        start,
        end,
        by_status,
        overall,
        by_service,
        by_organization,
        handoff_summary,
        by_priority,
        more_services=more_services,
        more_organizations=more_organizations,
        by_category=by_category,
    )


# ---------------------------------------------------------------------------
# Screening measures (the shape of CMS SDOH-1/SDOH-2 and MIPS 498)
# ---------------------------------------------------------------------------
SCREENING_DONE_STATUSES = ("completed", "amended")
LOOP_CLOSED_WITHIN = dt.timedelta(days=60)


@dataclass(frozen=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def percent(self) -> float | None:
        return round(100 * self.numerator / self.denominator, 1) if self.denominator else None

    def __str__(self) -> str:
        if not self.denominator:
            return "0 of 0"
        return f"{self.numerator} of {self.denominator} ({self.percent:g} %)"


@dataclass
class ScreeningMeasures:
    start: dt.date
    end: dt.date
    screening_rate: Rate  # caseload patients screened in the period / caseload
    responses: int  # completed screenings in the period
    positive_by_domain: list[tuple[str, Rate]]  # (domain, responses proposing one / responses)
    positive_by_category: list[tuple[str, str, Rate]]  # (domain, category, rate)
    loop_closed: Rate  # accepted needs with a referral closed within 60 days / accepted needs
    loop_pending: int  # of those not closed, accepted less than 60 days ago (may still close)


def screening_measures(user, *, start: dt.date, end: dt.date) -> ScreeningMeasures:
    """Screening rate, positive rate by domain and category, and the share of needs
    accepted from a screening whose referral closed within 60 days; over the patients
    `user` may see now, with screenings, proposals, needs and referrals in a category
    hidden from the user left out. A fixed number of queries (five)."""
    user = _unwrap(user)
    caseload = patients_for(user)
    screenings = _in_range(
        restrict(QuestionnaireResponse.objects.all(), user, patient_path="patient"),
        "completed_at",
        start,
        end,
    ).filter(status__in=SCREENING_DONE_STATUSES)
    totals = screenings.order_by().aggregate(
        responses=Count("id"), patients=Count("patient_id", distinct=True)
    )
    screening_rate = Rate(totals["patients"], caseload.count())

    visible_proposals = restrict(ProposedNeed.objects.all(), user, patient_path="response__patient")
    proposals = visible_proposals.filter(response__in=screenings.values("pk"))
    by_domain = {
        r["domain"]: r["n"]
        for r in proposals.order_by().values("domain").annotate(n=Count("response_id", distinct=True))
    }
    by_category = (
        proposals.order_by().values("domain", "category").annotate(n=Count("response_id", distinct=True))
    )
    responses = totals["responses"]
    domain_labels = dict(NeedDomain.choices)
    positive_by_domain = [
        (label, Rate(by_domain.get(code, 0), responses)) for code, label in NeedDomain.choices
    ]
    category_labels = dict(NeedCategory.choices)
    positive_by_category = sorted(
        (
            (
                domain_labels.get(r["domain"], r["domain"]),
                category_labels.get(r["category"], r["category"]),
                Rate(r["n"], responses),
            )
            for r in by_category
        ),
        key=lambda row: (-row[2].numerator, row[0], row[1]),
    )

    # needs accepted from a screening in the period, and whether a referral made from
    # the need reached a final answer (closed, not entered in error) within 60 days
    closed_in_time = Exists(
        Referral.objects.filter(
            need_id=OuterRef("need_id"),
            closed_at__isnull=False,
            closed_at__lte=ExpressionWrapper(
                OuterRef("decided_at") + Value(LOOP_CLOSED_WITHIN), output_field=DateTimeField()
            ),
        ).exclude(status="entered-in-error")
    )
    accepted_needs = (
        _in_range(visible_proposals, "decided_at", start, end)
        .filter(status="accepted", need__isnull=False)
        .exclude(need__status="entered-in-error")
        .filter(sensitivity_visible_q(user, "response__patient", "need__sensitivity"))
    )
    loop = accepted_needs.order_by().aggregate(
        needs=Count("id"),
        closed=Count("id", filter=Q(closed_in_time)),
        pending=Count(
            "id", filter=~Q(closed_in_time) & Q(decided_at__gt=timezone.now() - LOOP_CLOSED_WITHIN)
        ),
    )
    return ScreeningMeasures(
        start=start,
        end=end,
        screening_rate=screening_rate,
        responses=responses,
        positive_by_domain=positive_by_domain,
        positive_by_category=positive_by_category,
        loop_closed=Rate(loop["closed"], loop["needs"]),
        loop_pending=loop["pending"],
    )


__all__ = [
    "CatalogFilters",
    "service_search",
    "referrals_for",
    "referral_for_user",
    "dashboard_metrics",
    "screening_measures",
    "Percentile",
    "REFERRAL_CLOSED_STATUSES",
]


# ---------------------------------------------------------------------------
# Eligibility and capacity before a referral; stale listings
# ---------------------------------------------------------------------------
# words of a service area that mean "anyone may come"
AREA_EVERYWHERE = ("statewide", "nationwide", "anywhere", "all areas", "online", "national")


def eligibility_warnings(service: Service, patient, *, today: dt.date | None = None) -> list[str]:
    """What the catalog says that this patient may not meet (age range, service area):
    warnings to read before sending, never a refusal (the catalog may be out of date)."""
    warnings = []
    age = patient.age(today) if getattr(patient, "birth_date", None) else None
    low, high = service.minimum_age, service.maximum_age
    if age is not None and ((low is not None and age < low) or (high is not None and age > high)):
        span = (
            f"{low}–{high}"
            if low is not None and high is not None
            else (f"{low}+" if low is not None else f"up to {high}")
        )
        warnings.append(f"{service.name} is for ages {span}; the patient is {age}.")
    area = (service.service_area or "").strip()
    places = [p.strip() for p in (patient.city, patient.postal_code) if p and p.strip()]
    everywhere = any(w in area.lower() for w in AREA_EVERYWHERE)
    if area and places and not everywhere and not any(p.lower() in area.lower() for p in places):
        first_line = area.splitlines()[0][:80]
        warnings.append(
            f"{service.name} serves {first_line}; the patient's address is in {', '.join(places)}."
        )
    return warnings


def capacity_warning(service: Service) -> str:
    """A line about the service's capacity when it may not take the patient now."""
    if service.capacity_status == "full":
        when = (
            f" (updated {timezone.localtime(service.capacity_updated_at):%-d %b %Y})"
            if service.capacity_updated_at
            else ""
        )
        return f"{service.name} says it is full{when}. It may not be able to take the patient."
    if service.capacity_status == "waitlist":
        note = f": {service.capacity_note}" if service.capacity_note else ""
        return f"{service.name} has a waitlist{note}."
    return ""


def stale_services(*, months: int, today: dt.date | None = None) -> QuerySet[Service]:
    """Services in use (not defunct) that no catalog administrator assured within
    `months` months: never assured first, then the oldest."""
    today = today or timezone.localdate()
    year, month = divmod(today.month - 1 - months, 12)
    cutoff = today.replace(year=today.year + year, month=month + 1, day=min(today.day, 28))
    return (
        Service.objects.exclude(status=ServiceStatus.DEFUNCT)
        .filter(Q(last_verified__isnull=True) | Q(last_verified__lt=cutoff))
        .select_related("organization")
        .order_by(F("last_verified").asc(nulls_first=True), "name", "id")
    )


def pending_listing_changes() -> QuerySet:
    from .models import ListingChange

    return (
        ListingChange.objects.filter(status="pending")
        .select_related("service__organization", "organization", "proposed_by")
        .order_by("proposed_at", "id")
    )
