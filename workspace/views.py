"""Pages that compose several domains: the worklist, My work and the patient chart (with
starting a plan from it). The domains below know nothing of these pages. Thin: parse,
call a selector or service, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import get_language_info
from django.views.decorators.http import require_GET, require_http_methods

from careplans import services as plan_services
from careplans.forms import CarePlanCreateForm
from careplans.models import CarePlanStatus
from careplans.screening import screenings_for
from careteam.audit import AuditAction, audit, audit_list
from careteam.conversations import conversations_for_patient
from careteam.huddles import huddles_for_patient
from careteam.models import TeamRole
from careteam.permissions import EMERGENCY_ACCESS_READ_ONLY, access_patient_by_id
from careteam.viewhelpers import add_service_errors, forbidden

from . import selectors
from .forms import WorklistFilterForm

PAGE_SIZE = 25
WORK_PAGE_SIZE = 50  # My work: the most urgent first, the rest on the next pages
PLAN_STATUS_LABELS = dict(CarePlanStatus.choices)
ROLE_LABELS = dict(TeamRole.choices)


def _language(code: str) -> str:
    """'es' -> 'Spanish (es)'; unknown codes are shown as they are."""
    try:
        return f"{get_language_info(code)['name']} ({code})"
    except KeyError:
        return code


# Pages of other areas the chart links to, when those areas provide them.
HANDOFF_PAGES = ("team:handoff_detail", "team:handoff")
REFERRAL_PAGES = ("referrals:detail", "referrals:referral_detail")


def _first_url_name(names: tuple[str, ...], **kwargs) -> str | None:
    for name in names:
        try:
            reverse(name, kwargs=kwargs)
        except NoReverseMatch:
            continue
        return name
    return None


def _links() -> dict[str, str | None]:
    return {
        "handoff_link": _first_url_name(HANDOFF_PAGES, handoff_id=1),
        "referral_link": _first_url_name(REFERRAL_PAGES, referral_id=1),
    }


# ---------------------------------------------------------------------------
# Worklist
# ---------------------------------------------------------------------------
@login_required
@require_GET
def worklist(request: HttpRequest) -> HttpResponse:
    """My patients only (team members; emergency access never lists), searchable and filterable."""
    form = WorklistFilterForm(request.GET or None)
    status = 200
    filters = {}
    if form.is_bound:
        if form.is_valid():
            filters = {
                "search": form.cleaned_data["q"],
                "plan_status": form.cleaned_data["plan_status"],
                "waiting": form.cleaned_data["waiting"],
            }
        else:
            status = 400
    rows = selectors.worklist(request.user, **filters)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    for row in page.object_list:
        row.plan_status_label = PLAN_STATUS_LABELS.get(row.plan_status, row.plan_status)
        row.my_role_label = ROLE_LABELS.get(row.my_role, "")
    audit_list(
        request,
        list_name="patients.worklist",
        patient_ids=[row.pk for row in page.object_list],
        query={**filters, "page": page.number},
        detail=f"worklist, {page.paginator.count} results" if status == 200 else "worklist, invalid filter",
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "filtered": bool(filters)}
    template = "workspace/_worklist_results.html" if request.htmx else "workspace/worklist.html"
    return render(request, template, context, status=status)


# ---------------------------------------------------------------------------
# My work
# ---------------------------------------------------------------------------
@login_required
@require_GET
def my_work(request: HttpRequest) -> HttpResponse:
    """What needs me across my patients, sorted by due time, filterable by kind and to
    the overdue; each row with its one-click action."""
    kind = request.GET.get("kind", "")
    status = 200
    if kind and kind not in selectors.WORK_KINDS:
        kind, status = "", 400
    overdue_only = request.GET.get("overdue") in ("1", "on", "true")
    page = Paginator(
        selectors.my_work(request.user, kind=kind, overdue_only=overdue_only), WORK_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    rows = page.object_list
    audit_list(
        request,
        list_name="patients.my_work",
        patient_ids=[row.patient.pk for row in rows],
        query={"kind": kind, "overdue": "1" if overdue_only else "", "page": str(page.number)},
        detail=f"My work, {len(rows)} rows of {page.paginator.count}",
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "rows": rows,
        "page": page,
        "query": query.urlencode(),
        "kinds": selectors.WORK_KINDS,
        "kind": kind,
        "overdue_only": overdue_only,
        "bad_filter": status == 400,
    }
    return render(request, "workspace/my_work.html", context, status=status)


# ---------------------------------------------------------------------------
# Chart
# ---------------------------------------------------------------------------
@login_required
@require_GET
def chart(request: HttpRequest, patient_id: int) -> HttpResponse:
    access = access_patient_by_id(request.user, patient_id)
    chart = selectors.chart_for(access)
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
    )
    return render(request, "workspace/chart.html", _chart_context(access, chart))


# the newest conversations the chart lists (all of them: the patient's conversations page)
CHART_CONVERSATIONS = 5
# the newest huddles and their summaries (all of them: the patient's huddles page)
CHART_HUDDLES = 3


def _chart_context(access, chart) -> dict:
    context = {
        "chart": chart,
        "patient": access.patient,
        "access": access,
        "language": _language(access.patient.preferred_language),
        "screenings": list(screenings_for(access)[:5]),
        "conversations": list(conversations_for_patient(access)[:CHART_CONVERSATIONS]),
        "huddles": list(huddles_for_patient(access)[:CHART_HUDDLES]),
        **_links(),
    }
    if not access.read_only:
        context["plan_form"] = CarePlanCreateForm()
    return context


# ---------------------------------------------------------------------------
# Start a care plan
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def plan_create(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Any team member may start the patient's plan (as a draft, or active if none is)."""
    access = access_patient_by_id(request.user, patient_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    if request.method == "GET":
        return redirect(reverse("patient_chart", kwargs={"patient_id": access.patient.pk}) + "#plan-h")
    form = CarePlanCreateForm(request.POST)
    if form.is_valid():
        try:
            plan = plan_services.careplan_create(
                access=access, by=request.user, request=request, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PermissionDenied as exc:
            return forbidden(request, str(exc))
        else:
            return redirect("careplans:plan_editor", plan_id=plan.pk)
    context = _chart_context(access, selectors.chart_for(access))
    context["plan_form"] = form
    return render(request, "workspace/chart.html", context, status=422)
