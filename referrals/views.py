"""Pages of closed-loop referrals: catalog search, a referral started from a plan or one
of its needs, the referral with its lifecycle, the team's turnaround dashboard, and the
catalog administrators' HSDS import and export. Thin: rules live in `services` and
reads in `selectors`.

The service a referral goes to is usually not on CareTeam, so by default the referrer
records its answers on its behalf (`Referral.tracked_by_referrer`). A later portal for
partner organizations would authenticate a service's staff and call the same
`referral_set_status` with their own user; the lifecycle, the log and the metrics stay
as they are.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import EmptyPage, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from careplans.models import CarePlan, Need
from careteam.audit import AuditAction, audit, audit_list, note_refusal
from careteam.concurrency import StaleVersionError
from careteam.permissions import access_item
from careteam.printing import pdf_response
from careteam.viewhelpers import add_service_errors

from . import charts, hsds, links, partners, selectors, services
from .forms import (
    CatalogSearchForm,
    DateRangeForm,
    HsdsImportForm,
    MeasuresPeriodForm,
    ReferralForm,
    ReferralMessageForm,
    ReferralStatusForm,
)
from .models import ReferralMessage, ReferralStatus, Service, ServiceStatus, TaxonomyTerm

PAGE_SIZE = 20
STATUS_LABELS = dict(ReferralStatus.choices)


def _search_page(data, *, page_size: int = PAGE_SIZE):
    """The catalog search form and the page of results (None when the filters are invalid)."""
    form = CatalogSearchForm(data)
    if not form.is_valid():
        return form, None, None
    paginator = Paginator(selectors.service_search(form.filters()), page_size)
    try:
        page = paginator.page(form.cleaned_data.get("page") or 1)
    except EmptyPage:
        form.add_error(
            "page", f"There is no page {form.cleaned_data['page']}; the last is {paginator.num_pages}."
        )
        return form, None, None
    return form, page, paginator


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# ---------------------------------------------------------------------------
# Catalog (no patient data)
# ---------------------------------------------------------------------------
@login_required
@require_GET
def service_list(request: HttpRequest) -> HttpResponse:
    form, page, _ = _search_page(request.GET)
    context = {"form": form, "page": page, "query": _query_without_page(request)}
    return render(request, "referrals/service_list.html", context, status=200 if page is not None else 400)


@login_required
@require_GET
def service_detail(request: HttpRequest, service_id) -> HttpResponse:
    try:
        service = (
            Service.objects.select_related("organization")
            .prefetch_related("categories", "service_at_locations__location")
            .get(pk=service_id)
        )
    except (Service.DoesNotExist, ValidationError, ValueError):
        raise Http404("No such service.") from None
    context = {
        "service": service,
        "details": service.details or {},
        "catalog_admin": services.is_catalog_admin(request.user),
    }
    return render(request, "referrals/service_detail.html", context)


# ---------------------------------------------------------------------------
# A new referral, from a plan or one of its needs
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def referral_new_for_need(request: HttpRequest, need_id: int) -> HttpResponse:
    """Start a referral from a need: the plan's referral page, searching the need's category."""
    need, access = access_item(
        request.user,
        Need.objects.select_related("care_plan__patient"),
        need_id,
        patient_path="care_plan__patient",
    )
    access.require_edit()
    query = request.GET.copy()
    query["need"] = str(need.pk)
    if not query.get("category") and need.category:
        query["category"] = need.category
    url = reverse("referrals:new", kwargs={"plan_id": need.care_plan_id})
    return redirect(f"{url}?{query.urlencode()}")


@login_required
@require_http_methods(["GET", "POST"])
def referral_new(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan, access = access_item(
        request.user, CarePlan.objects.select_related("patient"), plan_id, patient_path="patient"
    )
    access.require_edit()
    needs = list(plan.needs.filter(access.sensitivity_q()).order_by("id"))
    need_ids = {n.pk for n in needs}
    raw_need = request.POST.get("need") if request.method == "POST" else request.GET.get("need")
    if raw_need:
        try:
            if int(raw_need) not in need_ids:
                raise Http404("Not found.")
        except ValueError:
            raise Http404("Not found.") from None
    search_data = request.GET.copy()
    if search_data.get("category") and not TaxonomyTerm.objects.filter(code=search_data["category"]).exists():
        search_data.pop("category")  # a need's category may have no catalog term: search everything
    search_form, page, _ = _search_page(search_data, page_size=10)
    status = 200 if page is not None else 400
    consent = services.referral_consent(patient=plan.patient)
    chosen = None
    if request.method == "POST":
        form = ReferralForm(request.POST, needs=needs)
        if form.is_valid():
            data = form.cleaned_data
            chosen = Service.objects.select_related("organization").filter(pk=data["service"]).first()
            need = next((n for n in needs if n.pk == data["need"]), None)
            if chosen is None:
                form.add_error("service", "That service is not in the catalog.")
            elif chosen.is_full and data["send"] and not data["send_to_full"]:
                # a warning, not a rule: the capacity may be out of date, the referrer decides
                form.add_error(
                    "send_to_full",
                    f"{chosen.name} says it is full. Tick to send anyway, or save a draft.",
                )
            else:
                try:
                    referral = services.referral_create(
                        access=access,
                        by=request.user,
                        plan=plan,
                        service=chosen,
                        reason=data["reason"],
                        need=need,
                        priority=data["priority"],
                        send=data["send"],
                        request=request,
                    )
                except ValidationError as exc:
                    add_service_errors(form, exc)
                else:
                    messages.success(
                        request,
                        f"Referral to {chosen.name} {'sent' if referral.status != 'draft' else 'saved as a draft'}.",
                    )
                    return redirect("referrals:detail", referral_id=referral.pk)
        status = 422  # the project's status for a form with errors (htmx swaps it in)
    else:
        form = ReferralForm(
            initial={"need": raw_need or "", "service": request.GET.get("service") or None}, needs=needs
        )
        if request.GET.get("service"):
            chosen = (
                Service.objects.select_related("organization")
                .filter(pk=_uuid_or_none(request.GET["service"]))
                .first()
            )
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=plan,
            patient=plan.patient,
            request=request,
            detail="new referral",
        )
    duplicate = None
    patient = plan.patient
    if page is not None:
        for service in page:  # what the catalog says this patient may not meet, per result
            service.eligibility = selectors.eligibility_warnings(service, patient)
    warnings = []
    if chosen is not None:
        warnings = selectors.eligibility_warnings(chosen, patient)
        chosen_need = next((n for n in needs if str(n.pk) == str(form["need"].value() or "")), None)
        duplicate = services.open_duplicate(patient=plan.patient, service=chosen, need=chosen_need)
    context = {
        "plan": plan,
        "patient": plan.patient,
        "form": form,
        "duplicate": duplicate,
        "search_form": search_form,
        "page": page,
        "query": _query_without_page(request),
        "consent": consent,
        "chosen": chosen,
        "capacity_warning": selectors.capacity_warning(chosen) if chosen is not None else "",
        "eligibility_warnings": warnings,
        "inactive": ServiceStatus.ACTIVE,
    }
    return render(request, "referrals/referral_new.html", context, status=status)


def _uuid_or_none(value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# One referral and its lifecycle
# ---------------------------------------------------------------------------
@login_required
@require_GET
def referral_list(request: HttpRequest) -> HttpResponse:
    """Referrals of the caller's patients, newest first (open ones by default)."""
    scope = request.GET.get("scope", "open")
    if scope not in ("open", "closed", "all"):
        return render(
            request, "referrals/referral_list.html", {"error": "scope is open, closed or all."}, status=400
        )
    qs = selectors.referrals_for(request.user).select_related("patient", "service__organization", "need")
    if scope == "open":
        qs = qs.exclude(status__in=selectors.REFERRAL_CLOSED_STATUSES)
    elif scope == "closed":
        qs = qs.filter(status__in=selectors.REFERRAL_CLOSED_STATUSES)
    paginator = Paginator(qs.order_by("-created_at", "-id"), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    audit_list(
        request,
        list_name="referrals.referral_list",
        patient_ids=[r.patient_id for r in page.object_list],
        query={"scope": scope, "page": page.number},
        detail=f"referrals, {paginator.count} results",
    )
    return render(request, "referrals/referral_list.html", {"page": page, "scope": scope})


def _render_detail(
    request,
    referral,
    access,
    *,
    form=None,
    status: int = 200,
    error: str = "",
    message_form=None,
    link_error="",
) -> HttpResponse:
    events = list(referral.events.select_related("by").order_by("at", "id"))
    if form is None and access.on_team:
        form = ReferralStatusForm(referral=referral)
    context = {
        "referral": referral,
        "patient": referral.patient,
        "access": access,
        "events": events,
        "form": form,
        "error": error,
        "thread": list(ReferralMessage.objects.filter(referral=referral).select_related("author")),
        "message_form": message_form or ReferralMessageForm(),
        "link_error": link_error,
        "service_email": referral.service.email or referral.service.organization.email,
    }
    return render(request, "referrals/referral_detail.html", context, status=status)


@login_required
@require_GET
def referral_detail(request: HttpRequest, referral_id: int) -> HttpResponse:
    referral, access = selectors.referral_for_user(request.user, referral_id)
    audit(user=request.user, action=AuditAction.VIEW, obj=referral, patient=referral.patient, request=request)
    return _render_detail(request, referral, access)


@login_required
@require_http_methods(["GET", "POST"])
def referral_status(request: HttpRequest, referral_id: int) -> HttpResponse:
    """POST a status change; GET shows the referral (the form lives on its page)."""
    referral, access = selectors.referral_for_user(request.user, referral_id)
    if request.method == "GET":
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=referral,
            patient=referral.patient,
            request=request,
        )
        return _render_detail(request, referral, access)
    access.require_edit()
    form = ReferralStatusForm(request.POST, referral=referral)
    if not form.is_valid():
        return _render_detail(request, referral, access, form=form, status=form.invalid_status)
    data = form.cleaned_data
    try:
        updated = services.referral_set_status(
            access=access,
            referral=referral,
            by=request.user,
            status=data["status"],
            outcome=data["outcome"],
            note=data["note"],
            expected_version=data["expected_version"],
            request=request,
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _render_detail(request, referral, access, form=form, status=422)
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        fresh, _ = selectors.referral_for_user(request.user, referral_id)
        return _render_detail(request, fresh, access, status=409, error=f"{exc} Review it and try again.")
    messages.success(request, f"Referral is now {updated.get_status_display().lower()}.")
    return redirect("referrals:detail", referral_id=updated.pk)


@login_required
@require_http_methods(["POST"])
def referral_message(request: HttpRequest, referral_id: int) -> HttpResponse:
    """The team's side of the thread with the receiving service."""
    referral, access = selectors.referral_for_user(request.user, referral_id)
    access.require_edit()
    form = ReferralMessageForm(request.POST)
    if form.is_valid():
        try:
            partners.referral_message_add(
                access=access,
                by=request.user,
                referral=referral,
                text=form.cleaned_data["text"],
                request=request,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Message sent to the service.")
            return redirect("referrals:detail", referral_id=referral.pk)
    return _render_detail(request, referral, access, message_form=form, status=400)


@login_required
@require_http_methods(["POST"])
def referral_link(request: HttpRequest, referral_id: int) -> HttpResponse:
    """Email the service a signed link to this referral (services without an account)."""
    referral, access = selectors.referral_for_user(request.user, referral_id)
    access.require_edit()
    try:
        link = links.referral_link_create(
            access=access,
            by=request.user,
            referral=referral,
            email=request.POST.get("email", ""),
            request=request,
        )
    except ValidationError as exc:
        return _render_detail(request, referral, access, link_error=" ".join(exc.messages), status=400)
    messages.success(request, f"The referral was emailed to {link.email}.")
    return redirect("referrals:detail", referral_id=referral.pk)


@login_required
@require_GET
def referral_letter(request: HttpRequest, referral_id: int) -> HttpResponse:
    """The referral as a printable letter (PDF) for services reached by fax or by hand:
    the same minimum view the service would see on CareTeam."""
    referral, access = selectors.referral_for_user(request.user, referral_id)
    if referral.sent_at is None:
        raise Http404("Send the referral before printing its letter.")
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=referral,
        patient=referral.patient,
        request=request,
        detail="referral letter",
    )
    context = {"view": partners.minimum_view(referral), "printed_at": timezone.now(), "by": request.user}
    html = render(request, "referrals/letter.html", context).content.decode()
    return pdf_response(html, filename=f"referral-{referral.pk}.pdf")


# ---------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------
DASHBOARD_TOP = 10  # services and organizations charted on the dashboard; the rest on their pages
BREAKDOWN_PAGE_SIZE = 50
BREAKDOWNS = {"services": "Turnaround per service", "organizations": "Turnaround per organization"}


def _range_query(form: DateRangeForm) -> str:
    """The date range as query parameters, for the links between the dashboard's pages."""
    return urlencode({k: v for k, v in form.cleaned_data.items() if v})


@login_required
@require_GET
def dashboard_breakdown(request: HttpRequest, group: str) -> HttpResponse:
    """Every service (or organization) of the dashboard's turnaround, busiest first, a page
    at a time: aggregated in SQL, each page renders its own rows only."""
    if group not in BREAKDOWNS:
        raise Http404("No such page.")
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "group": group, "title": BREAKDOWNS[group]}
        return render(request, "referrals/dashboard_breakdown.html", context, status=400)
    rows = selectors.turnaround_by(
        request.user, group, start=form.cleaned_data["start"], end=form.cleaned_data["end"]
    )
    page = Paginator(rows, BREAKDOWN_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "group": group,
        "title": BREAKDOWNS[group],
        "page": page,
        "rows": page.object_list,
        "query": query.urlencode(),
        "range_query": _range_query(form),
    }
    return render(request, "referrals/dashboard_breakdown.html", context)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    form = DateRangeForm(request.GET)
    period_form = MeasuresPeriodForm(request.GET)
    if not (form.is_valid() & period_form.is_valid()):  # both validated, both errors shown
        context = {"form": form, "period_form": period_form}
        return render(request, "referrals/dashboard.html", context, status=400)
    measures = selectors.screening_measures(
        request.user, start=period_form.cleaned_data["start"], end=period_form.cleaned_data["end"]
    )
    metrics = selectors.dashboard_metrics(
        request.user, start=form.cleaned_data["start"], end=form.cleaned_data["end"], top=DASHBOARD_TOP
    )
    context: dict[str, Any] = {
        "form": form,
        "period_form": period_form,
        "measures": measures,
        "metrics": metrics,
        "top": DASHBOARD_TOP,
        "range_query": _range_query(form),
        "status_chart": charts.bar_chart(
            [(STATUS_LABELS.get(r["status"], r["status"]), r["n"]) for r in metrics.by_status],
            unit="",
            title="Referrals by status",
        ),
        "service_chart": charts.paired_bar_chart(
            [(r["service__name"], r["accept_p50"], r["close_p50"]) for r in metrics.by_service],
            labels=("Median hours sent → accepted", "Median hours sent → closed"),
            title="Turnaround per service (median hours)",
        ),
        "organization_chart": charts.paired_bar_chart(
            [
                (r["service__organization__name"], r["accept_p90"], r["close_p90"])
                for r in metrics.by_organization
            ],
            labels=("90th percentile hours sent → accepted", "90th percentile hours sent → closed"),
            title="Turnaround per organization (90th percentile hours)",
        ),
        "handoff_chart": charts.paired_bar_chart(
            [(r["priority"], r["ack_p50"], r["ack_p90"]) for r in metrics.handoffs_by_priority],
            labels=("Median hours to acknowledge", "90th percentile hours to acknowledge"),
            title="Handoff acknowledgement by priority (hours)",
        ),
    }
    return render(request, "referrals/dashboard.html", context)


# ---------------------------------------------------------------------------
# Catalog administration: HSDS import and export
# ---------------------------------------------------------------------------
def _require_catalog_admin(user) -> None:
    if not (user.is_active and (user.is_superuser or user.has_perm("careteam.manage_catalog"))):
        raise PermissionDenied("Only catalog administrators can import or export the catalog.")


@login_required
@require_http_methods(["GET", "POST"])
def catalog_import(request: HttpRequest) -> HttpResponse:
    _require_catalog_admin(request.user)
    problems, warnings = [], []
    if request.method == "POST":
        form = HsdsImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                result = services.catalog_import_upload(
                    upload=form.cleaned_data["file"],
                    kind=form.cleaned_data["kind"],
                    by=request.user,
                    request=request,
                )
            except hsds.HsdsImportError as exc:
                problems = exc.problems
            else:
                messages.success(request, f"Imported {result.summary()}.")
                warnings = result.warnings
                if not warnings:
                    return redirect("referrals:catalog_import")
        status = 422 if (problems or form.errors) else 200
    else:
        form, status = HsdsImportForm(), 200
    context = {"form": form, "problems": problems, "warnings": warnings}
    return render(request, "referrals/catalog_import.html", context, status=status)


@login_required
@require_GET
def catalog_export(request: HttpRequest) -> HttpResponse:
    _require_catalog_admin(request.user)
    audit(user=request.user, action=AuditAction.EXPORT, object_type="referrals.catalog", request=request)
    response = HttpResponse(hsds.export_zip(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="hsds-{timezone.localdate().isoformat()}.zip"'
    return response
