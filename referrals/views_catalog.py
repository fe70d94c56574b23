"""Catalog administrators' pages: a service's capacity, the review of proposed listing
changes (publish or reject) and the stale listings. Thin: the rules are in `services`
(who may, what changes) and the reads in `selectors`."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from careteam.viewhelpers import add_service_errors

from . import partners, selectors, services
from .forms import AssureForm, CapacityForm, ListingReviewForm, PartnerInviteForm
from .models import ClaimStatus, ListingChange, ListingClaim, PartnerStaff, Service
from .views import _require_catalog_admin

PAGE_SIZE = 50


def _service_or_404(service_id) -> Service:
    service = Service.objects.select_related("organization").filter(pk=service_id).first()
    if service is None:
        raise Http404("No such service.")
    return service


def capacity_set_from_form(request: HttpRequest, form: CapacityForm, service) -> bool:
    """Record a bound capacity form's answer (catalog administrators and partner staff);
    False with the errors on the form when it or the service refuses it."""
    if not form.is_valid():
        return False
    data = form.cleaned_data
    try:
        services.service_capacity_set(
            by=request.user,
            service=service,
            status=data["capacity_status"],
            note=data["capacity_note"],
            available=data["capacity_available"],
            maximum=data["capacity_maximum"],
            request=request,
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return False
    messages.success(request, f"Capacity of {service.name} updated.")
    return True


@login_required
@require_http_methods(["GET", "POST"])
def service_capacity(request: HttpRequest, service_id) -> HttpResponse:
    _require_catalog_admin(request.user)
    service = _service_or_404(service_id)
    status = 200
    if request.method == "POST":
        form = CapacityForm(request.POST)
        if capacity_set_from_form(request, form, service):
            return redirect("referrals:service_detail", service_id=service.pk)
        status = 422
    else:
        form = CapacityForm(
            initial={
                "capacity_status": service.capacity_status,
                "capacity_note": service.capacity_note,
                "capacity_available": service.capacity_available,
                "capacity_maximum": service.capacity_maximum,
            }
        )
    return render(
        request, "referrals/service_capacity.html", {"service": service, "form": form}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def listing_changes(request: HttpRequest) -> HttpResponse:
    """Proposed listing changes waiting for review, oldest first, each with the value
    proposed, the value when proposed and the value now."""
    _require_catalog_admin(request.user)
    status, error = 200, ""
    if request.method == "POST":
        form = ListingReviewForm(request.POST)
        if not form.is_valid():
            error, status = "Choose a change and publish or reject it.", 422
        else:
            change = ListingChange.objects.filter(pk=form.cleaned_data["change"]).first()
            if change is None:
                raise Http404("No such change.")
            act = (
                services.listing_change_publish
                if form.cleaned_data["decision"] == "publish"
                else services.listing_change_reject
            )
            try:
                act(by=request.user, change=change, note=form.cleaned_data["note"], request=request)
            except ValidationError as exc:
                error, status = " ".join(exc.messages), 409 if "already" in " ".join(exc.messages) else 422
            else:
                messages.success(request, f"Change #{change.pk} {form.cleaned_data['decision']}ed.")
                return redirect("referrals:listing_changes")
    paginator = Paginator(selectors.pending_listing_changes(), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    rows = []
    for change in page:
        listing = change.listing
        rows.append(
            {
                "change": change,
                "listing": listing,
                "fields": [
                    {
                        "name": name,
                        "label": listing._meta.get_field(name).verbose_name,
                        "before": change.previous.get(name),
                        "now": getattr(listing, name),
                        "proposed": value,
                    }
                    for name, value in change.changes.items()
                ],
            }
        )
    context = {"page": page, "rows": rows, "error": error, "query": ""}
    return render(request, "referrals/listing_changes.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def stale_listings(request: HttpRequest) -> HttpResponse:
    """Services not assured for CATALOG_STALE_MONTHS months; "Still right" assures one."""
    _require_catalog_admin(request.user)
    if request.method == "POST":
        form = AssureForm(request.POST)
        if not form.is_valid():
            raise Http404("No such service.")
        service = _service_or_404(form.cleaned_data["service"])
        services.service_assure(by=request.user, service=service, request=request)
        messages.success(request, f"{service.name} assured today.")
        return redirect(reverse("referrals:stale_listings"))
    months = settings.CATALOG_STALE_MONTHS
    paginator = Paginator(selectors.stale_services(months=months), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "referrals/stale_listings.html", {"page": page, "months": months, "query": ""})


@login_required
@require_http_methods(["GET", "POST"])
def partner_staff(request: HttpRequest) -> HttpResponse:
    """Partner staff by organisation: invite someone, decide the claims of listings."""
    _require_catalog_admin(request.user)
    form = PartnerInviteForm()
    status = 200
    if request.method == "POST" and request.POST.get("claim"):
        claim = ListingClaim.objects.filter(pk=request.POST["claim"]).first()
        if claim is None:
            raise Http404("No such claim.")
        try:
            partners.listing_claim_decide(
                by=request.user,
                claim=claim,
                approve=request.POST.get("decision") == "approve",
                request=request,
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Claim by {claim.email} {ListingClaim.objects.get(pk=claim.pk).status}."
            )
            return redirect("referrals:partner_staff")
        status = 400
    elif request.method == "POST":
        form = PartnerInviteForm(request.POST)
        if form.is_valid():
            try:
                partners.partner_invite(by=request.user, **form.cleaned_data, request=request)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                return redirect("referrals:partner_staff")
        status = 400
    context = {
        "form": form,
        "staff": PartnerStaff.objects.select_related("user", "organization").order_by(
            "organization__name", "user__email"
        ),
        "claims": ListingClaim.objects.filter(status=ClaimStatus.PENDING).select_related("organization"),
    }
    return render(request, "referrals/partner_staff.html", context, status=status)
