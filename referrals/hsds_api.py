"""The catalog as an Open Referral HSDS 3.0 read API under /hsds/ (docs/hsds.md).

Every answer is built by the same mapping as the export (`referrals.hsds`), so the API,
the JSON and CSV exports and the import agree. Lists use the HSDS Page envelope
(total_items, total_pages, page_number, size, first_page, last_page, empty, contents);
a bad parameter answers 400 naming it. Access follows HSDS_API_ACCESS: "signed-in" (a
session or an API token) or "public". The catalog holds no patient data.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from careteam.api.base import ApiViewMixin

from . import hsds, selectors
from .models import Organization, Service, ServiceAtLocation, Taxonomy, TaxonomyTerm

HSDS_VERSION = "3.0"
PROFILE_URL = "https://docs.openreferral.org/en/v3.0/"
SPEC_URL = "https://raw.githubusercontent.com/openreferral/specification/3.0/schema/openapi.json"


class HsdsAccess(permissions.BasePermission):
    """HSDS_API_ACCESS: "public" lets anyone read; otherwise a signed-in user (session or token)."""

    def has_permission(self, request, view) -> bool:
        if settings.HSDS_API_ACCESS == "public":
            return True
        return bool(request.user and request.user.is_authenticated)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HsdsQuery:
    page: int = 1
    per_page: int = 50
    search: str = ""
    modified_after: dt.datetime | None = None
    taxonomy_term_id: uuid.UUID | None = None
    taxonomy_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    full: bool = False
    full_service: bool = False


def _int(params, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"{name} must be a whole number from {low} to {high}."]})
    return int(raw)


def _bool(params, name: str) -> bool:
    raw = (params.get(name) or "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise exceptions.ValidationError({name: [f"{name} is true or false."]})


def _uuid(params, name: str) -> uuid.UUID | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise exceptions.ValidationError({name: [f"{name} must be an HSDS id (a UUID)."]}) from None


def _datetime(params, name: str) -> dt.datetime | None:
    """An ISO 8601 date-time (a time zone or UTC) or a date (from its start, UTC)."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = parse_datetime(raw.replace(" ", "+"))  # a '+' sent unescaped arrives as a space
        if value is None and (day := parse_date(raw)) is not None:
            value = dt.datetime.combine(day, dt.time.min)
    except ValueError:
        value = None
    if value is not None:
        try:  # PostgreSQL takes offsets up to 16 h only; near years 1 and 9999 UTC may not exist
            value = value.astimezone(dt.UTC) if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)
        except (OverflowError, ValueError):
            value = None
    if value is None:
        raise exceptions.ValidationError(
            {name: [f"{name} must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z, or a date."]}
        )
    return value


def parse_query(params) -> HsdsQuery:
    fmt = (params.get("format") or "json").lower()
    if fmt != "json":
        raise exceptions.ValidationError({"format": ["Only json is served."]})
    search = params.get("search") or ""
    if len(search) > 200:
        raise exceptions.ValidationError({"search": ["search is at most 200 characters."]})
    return HsdsQuery(
        page=_int(params, "page", 1, 1, 1_000_000),
        per_page=_int(params, "per_page", settings.HSDS_API_PAGE_SIZE, 1, settings.HSDS_API_MAX_PER_PAGE),
        search=search.strip(),
        modified_after=_datetime(params, "modified_after"),
        taxonomy_term_id=_uuid(params, "taxonomy_term_id"),
        taxonomy_id=_uuid(params, "taxonomy_id"),
        organization_id=_uuid(params, "organization_id"),
        full=_bool(params, "full"),
        full_service=_bool(params, "full_service"),
    )


def page_envelope(queryset, query: HsdsQuery, render) -> dict:
    """The HSDS Page: a page past the last is empty (200), not an error."""
    total = queryset.count()
    total_pages = max(1, math.ceil(total / query.per_page))
    start = (query.page - 1) * query.per_page
    rows = list(queryset[start : start + query.per_page]) if start < total else []
    contents = [render(row) for row in rows]
    return {
        "total_items": total,
        "total_pages": total_pages,
        "page_number": query.page,
        "size": len(contents),
        "first_page": query.page == 1,
        "last_page": query.page >= total_pages,
        "empty": not contents,
        "contents": contents,
    }


# ---------------------------------------------------------------------------
# Querysets (catalog reads, prefetched so the queries do not grow with the page)
# ---------------------------------------------------------------------------
def _sal_prefetch() -> Prefetch:
    return Prefetch(
        "service_at_locations",
        queryset=ServiceAtLocation.objects.select_related("location").order_by("id"),
    )


def services_for(query: HsdsQuery) -> QuerySet[Service]:
    qs = selectors.service_search(
        selectors.CatalogFilters(text=query.search, category_id=query.taxonomy_term_id, status="")
    ).prefetch_related(_sal_prefetch())
    if query.organization_id:
        qs = qs.filter(organization_id=query.organization_id)
    if query.taxonomy_id:
        qs = qs.filter(categories__taxonomy_id_ref=query.taxonomy_id).distinct()
    if query.modified_after:
        qs = qs.filter(updated_at__gte=query.modified_after)
    return qs


def organizations_for(query: HsdsQuery) -> QuerySet[Organization]:
    qs = Organization.objects.prefetch_related("locations")
    if query.search:
        qs = qs.filter(Q(name__icontains=query.search) | Q(alternate_name__icontains=query.search))
    if query.modified_after:
        qs = qs.filter(updated_at__gte=query.modified_after)
    services = Service.objects.order_by("name", "id")
    if query.full_service:
        services = services.select_related("organization").prefetch_related("categories", _sal_prefetch())
    return qs.prefetch_related(Prefetch("services", queryset=services)).order_by("name", "id")


def service_at_locations_for(query: HsdsQuery) -> QuerySet[ServiceAtLocation]:
    qs = ServiceAtLocation.objects.select_related("location", "service__organization").prefetch_related(
        "service__categories"
    )
    if query.search or query.taxonomy_term_id:
        matching = selectors.service_search(
            selectors.CatalogFilters(text=query.search, category_id=query.taxonomy_term_id, status="")
        )
        qs = qs.filter(service__in=matching.values("pk"))
    if query.organization_id:
        qs = qs.filter(service__organization_id=query.organization_id)
    if query.taxonomy_id:
        qs = qs.filter(service__categories__taxonomy_id_ref=query.taxonomy_id).distinct()
    if query.modified_after:
        qs = qs.filter(service__updated_at__gte=query.modified_after)
    return qs.order_by("service__name", "id")


def taxonomy_terms_for(query: HsdsQuery) -> QuerySet[TaxonomyTerm]:
    qs = TaxonomyTerm.objects.all()
    if query.search:
        qs = qs.filter(Q(name__icontains=query.search) | Q(code__iexact=query.search))
    if query.taxonomy_id:
        qs = qs.filter(taxonomy_id_ref=query.taxonomy_id)
    return qs.order_by("name", "id")


def taxonomies_for(query: HsdsQuery) -> QuerySet[Taxonomy]:
    qs = Taxonomy.objects.all()
    if query.search:
        qs = qs.filter(name__icontains=query.search)
    return qs.order_by("name", "id")


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
def render_service(service: Service, *, full: bool) -> dict:
    obj = hsds.service_json(service, with_organization=full)
    return obj if full else hsds.one_to_one("service", obj)


def render_organization(org: Organization, *, full: bool, full_service: bool = False) -> dict:
    obj = hsds.organization_json(org, sorted(org.locations.all(), key=lambda loc: str(loc.pk)))
    if not full:
        return hsds.one_to_one("organization", obj)
    services = org.services.all()
    obj["services"] = [
        hsds.service_json(s) if full_service else hsds.one_to_one("service", hsds.service_json(s))
        for s in services
    ]
    return obj


def render_service_at_location(sal: ServiceAtLocation, *, full: bool) -> dict:
    obj = hsds.service_at_location_json(sal, with_location=full)
    if not full:
        return hsds.one_to_one("service_at_location", obj)
    obj["service"] = hsds.service_json(sal.service, with_locations=False, with_organization=True)
    return obj


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------
P = OpenApiParameter
LIST_PARAMETERS = [
    P("search", OpenApiTypes.STR, description="Full-text search (at most 200 characters)."),
    P("page", OpenApiTypes.INT, description="Page number, from 1 (default 1)."),
    P(
        "per_page",
        OpenApiTypes.INT,
        description="Results per page, from 1 to HSDS_API_MAX_PER_PAGE (default HSDS_API_PAGE_SIZE).",
    ),
    P("format", OpenApiTypes.STR, enum=["json"], description="Only json."),
]
SERVICE_PARAMETERS = [
    *LIST_PARAMETERS,
    P("modified_after", OpenApiTypes.DATETIME, description="Changed on or after (ISO 8601, or a date)."),
    P("taxonomy_term_id", OpenApiTypes.UUID),
    P("taxonomy_id", OpenApiTypes.UUID),
    P("organization_id", OpenApiTypes.UUID),
    P("full", OpenApiTypes.BOOL, description="Fully nested objects instead of their one-to-one fields."),
]
PAGE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description=f"An HSDS Page whose contents are HSDS {HSDS_VERSION} objects ({SPEC_URL}).",
)
OBJECT = OpenApiResponse(OpenApiTypes.OBJECT, description=f"An HSDS {HSDS_VERSION} object ({SPEC_URL}).")


class HsdsView(ApiViewMixin, APIView):
    permission_classes = [HsdsAccess]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        """JSON always: `format` is an HSDS parameter here (parse_query), not DRF's."""
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def query(self, request) -> HsdsQuery:
        return parse_query(request.query_params)

    @staticmethod
    def one(queryset, raw_id: str):
        try:
            pk = uuid.UUID(raw_id)
        except ValueError:
            raise exceptions.NotFound("Not found.") from None
        obj = queryset.filter(pk=pk).first()
        if obj is None:
            raise exceptions.NotFound("Not found.")
        return obj


class HsdsRootView(HsdsView):
    """HSDS API metadata."""

    @extend_schema(
        tags=["hsds"], responses={200: OBJECT}, summary="HSDS API metadata", operation_id="hsds_metadata"
    )
    def get(self, request):
        return Response(
            {
                "version": HSDS_VERSION,
                "profile": PROFILE_URL,
                "openapi_url": request.build_absolute_uri(reverse("api-schema")),
            }
        )


class HsdsServiceListView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        parameters=SERVICE_PARAMETERS,
        responses={200: PAGE},
        summary="HSDS services",
        operation_id="hsds_services_list",
    )
    def get(self, request):
        query = self.query(request)
        return Response(
            page_envelope(services_for(query), query, lambda s: render_service(s, full=query.full))
        )


class HsdsServiceView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        responses={200: OBJECT},
        summary="One HSDS service, fully nested",
        operation_id="hsds_services_retrieve",
    )
    def get(self, request, service_id: str):
        service = self.one(services_for(HsdsQuery()), service_id)
        return Response(render_service(service, full=True))


class HsdsOrganizationListView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        parameters=[
            *LIST_PARAMETERS,
            P("modified_after", OpenApiTypes.DATETIME),
            P("full", OpenApiTypes.BOOL),
            P("full_service", OpenApiTypes.BOOL),
        ],
        responses={200: PAGE},
        summary="HSDS organizations",
        operation_id="hsds_organizations_list",
    )
    def get(self, request):
        query = self.query(request)
        render = lambda o: render_organization(o, full=query.full, full_service=query.full_service)  # noqa: E731
        return Response(page_envelope(organizations_for(query), query, render))


class HsdsOrganizationView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        parameters=[P("full_service", OpenApiTypes.BOOL)],
        responses={200: OBJECT},
        summary="One HSDS organization with its locations and services",
        operation_id="hsds_organizations_retrieve",
    )
    def get(self, request, organization_id: str):
        query = self.query(request)
        org = self.one(organizations_for(HsdsQuery(full_service=query.full_service)), organization_id)
        return Response(render_organization(org, full=True, full_service=query.full_service))


class HsdsServiceAtLocationListView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        parameters=SERVICE_PARAMETERS,
        responses={200: PAGE},
        summary="HSDS services at locations",
        operation_id="hsds_service_at_locations_list",
    )
    def get(self, request):
        query = self.query(request)
        render = lambda sal: render_service_at_location(sal, full=query.full)  # noqa: E731
        return Response(page_envelope(service_at_locations_for(query), query, render))


class HsdsServiceAtLocationView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        responses={200: OBJECT},
        summary="One HSDS service at a location",
        operation_id="hsds_service_at_locations_retrieve",
    )
    def get(self, request, service_at_location_id: str):
        sal = self.one(service_at_locations_for(HsdsQuery()), service_at_location_id)
        return Response(render_service_at_location(sal, full=True))


class HsdsTaxonomyListView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        parameters=LIST_PARAMETERS,
        responses={200: PAGE},
        summary="HSDS taxonomies",
        operation_id="hsds_taxonomies_list",
    )
    def get(self, request):
        query = self.query(request)
        return Response(page_envelope(taxonomies_for(query), query, hsds.taxonomy_json))


class HsdsTaxonomyTermListView(HsdsView):
    @extend_schema(
        tags=["hsds"],
        parameters=[*LIST_PARAMETERS, P("taxonomy_id", OpenApiTypes.UUID)],
        responses={200: PAGE},
        summary="HSDS taxonomy terms",
        operation_id="hsds_taxonomy_terms_list",
    )
    def get(self, request):
        query = self.query(request)
        return Response(page_envelope(taxonomy_terms_for(query), query, hsds.term_json))
