"""The partner pages under /partner/: the inbox of the organisation's referrals, one
referral's minimum view with the actions, the organisation's services (capacity at
once, listing edits for review), the invitation's set-password page and the claim of a
listing. Thin: who may and what changes are in `partners` and `services`."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from careteam.concurrency import StaleVersionError
from careteam.notifications import notifications_for
from careteam.viewhelpers import add_service_errors

from . import links, partners, services
from .forms import (
    CapacityForm,
    ListingClaimForm,
    PartnerActionForm,
    PartnerListingForm,
    ReferralMessageForm,
    SetPasswordForm,
)
from .models import REFERRAL_OPEN_STATUSES, ReferralMessage
from .views_catalog import capacity_set_from_form

INBOX_SIZE = 100


def _partner(request: HttpRequest):
    """The signed-in partner's staff row; anyone else: the sign-in page or a 404."""
    if not request.user.is_authenticated:
        return None
    staff = partners.partner_staff_of(request.user)
    if staff is None:
        raise Http404("No such page.")
    return staff


def _service_of(staff, service_id):
    service = (
        partners.partner_services(staff.user).filter(pk=service_id).select_related("organization").first()
    )
    if service is None:
        raise Http404("No such service.")
    return service


# ---------------------------------------------------------------------------
# The inbox
# ---------------------------------------------------------------------------
@never_cache
def inbox(request: HttpRequest) -> HttpResponse:
    staff = _partner(request)
    if staff is None:
        return redirect_to_login(request.get_full_path())
    tab = request.GET.get("tab", "new")
    if tab not in partners.INBOX_TABS:
        tab = "new"
    own_services = list(partners.partner_services(request.user).order_by("name").only("id", "name"))
    service_id = request.GET.get("service", "")
    if service_id and service_id not in {str(s.pk) for s in own_services}:
        service_id = ""
    base = partners.partner_referrals_for(request.user)
    if service_id:
        base = base.filter(service_id=service_id)
    now = timezone.now()
    counts = {
        f"tab_{name.replace('-', '_')}": Count(
            "id", filter=Q(pk__in=partners.inbox_filter(base, name).values("pk"))
        )
        for name in partners.INBOX_TABS
    }
    stale = {
        f"stale_{days}": Count(
            "id",
            filter=Q(status__in=REFERRAL_OPEN_STATUSES, updated_at__lt=now - dt.timedelta(days=days)),
        )
        for days in settings.PARTNER_NOT_UPDATED_DAYS
    }
    totals = base.order_by().aggregate(**counts, **stale)
    rows = list(
        partners.inbox_filter(base, tab)
        .select_related(*partners.VIEW_RELATED)
        .order_by("sent_at", "id")[:INBOX_SIZE]
    )
    context = {
        "staff": staff,
        "tab": tab,
        "tabs": [
            (name, partners.TAB_LABELS[name], totals[f"tab_{name.replace('-', '_')}"])
            for name in partners.INBOX_TABS
        ],
        "stale": [(days, totals[f"stale_{days}"]) for days in settings.PARTNER_NOT_UPDATED_DAYS],
        "services": own_services,
        "service_id": service_id,
        "rows": [(r, partners.minimum_view(r)) for r in rows],
        "unread": notifications_for(request.user).filter(read_at__isnull=True).count(),
    }
    return render(request, "partner/inbox.html", context)


# ---------------------------------------------------------------------------
# One referral
# ---------------------------------------------------------------------------
def _detail_context(request, referral, **extra) -> dict:
    return {
        "referral": referral,
        "view": partners.minimum_view(referral),
        "thread": list(ReferralMessage.objects.filter(referral=referral).select_related("author")),
        "form": PartnerActionForm(initial={"expected_version": referral.version}),
        "message_form": ReferralMessageForm(),
        "open": referral.status in REFERRAL_OPEN_STATUSES,
        **extra,
    }


@never_cache
def referral_detail(request: HttpRequest, referral_id: int) -> HttpResponse:
    staff = _partner(request)
    if staff is None:
        return redirect_to_login(request.get_full_path())
    referral = partners.access_partner_referral(request.user, referral_id)
    partners.audit_partner_read(by=request.user, referral=referral, request=request)
    return render(request, "partner/referral.html", _detail_context(request, referral))


ACTIONS = ("accept", "start", "decline", "complete", "message")


def referral_action(request: HttpRequest, referral_id: int, action: str) -> HttpResponse:
    staff = _partner(request)
    if staff is None:
        return redirect_to_login(request.get_full_path())
    referral = partners.access_partner_referral(request.user, referral_id)
    if request.method != "POST":  # after the checks: nobody else learns the URL exists
        return HttpResponseNotAllowed(["POST"])
    if action not in ACTIONS:
        raise Http404("No such action.")
    if action == "message":
        form = ReferralMessageForm(request.POST)
        if form.is_valid():
            try:
                partners.partner_referral_request_info(
                    by=request.user, referral=referral, text=form.cleaned_data["text"], request=request
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Message sent to the referrer.")
                return redirect("partner:referral", referral_id=referral.pk)
        context = _detail_context(request, referral, message_form=form)
        return render(request, "partner/referral.html", context, status=400)
    form = PartnerActionForm(request.POST)
    if not form.is_valid():
        context = _detail_context(request, referral, form=form, failed=action)
        return render(request, "partner/referral.html", context, status=form.invalid_status)
    data = form.cleaned_data
    common = {
        "by": request.user,
        "referral": referral,
        "expected_version": data["expected_version"],
        "request": request,
    }
    try:
        if action == "accept":
            partners.partner_referral_accept(**common)
        elif action == "start":
            partners.partner_referral_start(note=data["text"], **common)
        elif action == "decline":
            partners.partner_referral_decline(reason=data["reason"], text=data["text"], **common)
        else:
            partners.partner_referral_complete(outcome=data["outcome"], text=data["text"], **common)
    except StaleVersionError:
        fresh = partners.access_partner_referral(request.user, referral_id)
        context = _detail_context(
            request,
            fresh,
            error="Someone changed this referral after you opened it. Review it and try again.",
        )
        return render(request, "partner/referral.html", context, status=409)
    except ValidationError as exc:
        conflict = getattr(exc, "code", None) == "illegal_transition" or any(
            e.code == "illegal_transition"
            for errors in getattr(exc, "error_dict", {}).values()
            for e in errors
        )
        add_service_errors(form, exc)
        fresh = partners.access_partner_referral(request.user, referral_id)
        context = _detail_context(request, fresh, form=form, failed=action)
        return render(request, "partner/referral.html", context, status=409 if conflict else 400)
    messages.success(request, "Your answer was recorded and the referrer told.")
    return redirect("partner:referral", referral_id=referral.pk)


# ---------------------------------------------------------------------------
# The organisation's services: capacity at once, listing edits for review
# ---------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
def service_edit(request: HttpRequest, service_id) -> HttpResponse:
    staff = _partner(request)
    if staff is None:
        return redirect_to_login(request.get_full_path())
    service = _service_of(staff, service_id)
    capacity = CapacityForm(
        initial={
            "capacity_status": service.capacity_status,
            "capacity_note": service.capacity_note,
            "capacity_available": service.capacity_available,
            "capacity_maximum": service.capacity_maximum,
        }
    )
    listing = PartnerListingForm(
        initial={
            "phone": service.phone,
            "email": service.email,
            "hours_description": service.hours_description,
        }
    )
    status = 200
    if request.method == "POST" and request.POST.get("form") == "capacity":
        capacity = CapacityForm(request.POST)
        if capacity_set_from_form(request, capacity, service):
            return redirect("partner:service", service_id=service.pk)
        status = 400
    elif request.method == "POST":
        listing = PartnerListingForm(request.POST)
        if listing.is_valid():
            data = dict(listing.cleaned_data)
            note = data.pop("note")
            changes = {k: v for k, v in data.items() if v != getattr(service, k)}
            try:
                services.listing_change_propose(
                    by=request.user, service=service, changes=changes, note=note, request=request
                )
            except ValidationError as exc:
                add_service_errors(listing, exc)
            else:
                messages.success(request, "Your changes were sent for review; they publish once approved.")
                return redirect("partner:service", service_id=service.pk)
        status = 400
    context = {"service": service, "capacity": capacity, "listing": listing}
    return render(request, "partner/service.html", context, status=status)


# ---------------------------------------------------------------------------
# Invitations and claims (no account yet)
# ---------------------------------------------------------------------------
@never_cache
@require_http_methods(["GET", "POST"])
def welcome(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The invitation's one-time link: choose a password, then sign in."""
    user = partners.invited_user(uidb64, token)
    if user is None:
        return render(request, "partner/link_problem.html", {"problem": "invite"}, status=404)
    form = SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            partners.partner_password_set(
                uidb64=uidb64, token=token, password=form.cleaned_data["password"], request=request
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Your password is set. Sign in with your email address.")
            return redirect("login")
    status = 400 if request.method == "POST" else 200
    return render(request, "partner/welcome.html", {"form": form, "invited": user}, status=status)


@require_http_methods(["GET", "POST"])
def claim(request: HttpRequest) -> HttpResponse:
    """An organisation asks to answer its own referrals; a catalog administrator decides."""
    form = ListingClaimForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            partners.listing_claim_submit(**form.cleaned_data, request=request)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return render(request, "partner/claim.html", {"done": True})
    status = 400 if request.method == "POST" else 200
    return render(request, "partner/claim.html", {"form": form}, status=status)


# ---------------------------------------------------------------------------
# A referral through its emailed link (no account)
# ---------------------------------------------------------------------------
def _link_problem(request, problem: str) -> HttpResponse:
    status = {"expired": 410, "used": 409}.get(problem, 404)
    return render(request, "partner/link_problem.html", {"problem": problem}, status=status)


@never_cache
@require_http_methods(["GET"])
def link_page(request: HttpRequest, link_token: str) -> HttpResponse:
    try:
        link = links.link_open(link_token, request=request)
    except links.LinkProblem as exc:
        return _link_problem(request, exc.problem)
    links.audit_link_read(link, request=request)
    referral = link.referral
    context = {
        "view": partners.minimum_view(referral),
        "form": PartnerActionForm(),
        "open": referral.status in REFERRAL_OPEN_STATUSES,
        "used": set(link.uses.values_list("action", flat=True)),
        "action_base": f"/partner/link/{link_token}/",
    }
    return render(request, "partner/link.html", context)


@never_cache
def link_action(request: HttpRequest, link_token: str, action: str) -> HttpResponse:
    if request.method != "POST":  # an unknown link is a 404 whatever the method
        try:
            links.link_open(link_token, request=request)
        except links.LinkProblem as exc:
            return _link_problem(request, exc.problem)
        return HttpResponseNotAllowed(["POST"])
    form = PartnerActionForm(request.POST)
    form.fields["expected_version"].required = False
    form.is_valid()
    data = {k: form.cleaned_data.get(k, "") or "" for k in ("reason", "outcome", "text")}
    try:
        links.link_act(token=link_token, action=action, request=request, **data)
    except links.LinkProblem as exc:
        return _link_problem(request, exc.problem)
    except StaleVersionError:
        return _link_problem(request, "used")
    except ValidationError as exc:
        try:
            link = links.link_open(link_token)
        except links.LinkProblem as problem:
            return _link_problem(request, problem.problem)
        conflict = any(
            e.code == "illegal_transition"
            for errors in getattr(exc, "error_dict", {}).values()
            for e in errors
        )
        context = {
            "view": partners.minimum_view(link.referral),
            "form": PartnerActionForm(),
            "open": link.referral.status in REFERRAL_OPEN_STATUSES,
            "used": set(link.uses.values_list("action", flat=True)),
            "action_base": f"/partner/link/{link_token}/",
            "errors": exc.messages,
        }
        return render(request, "partner/link.html", context, status=409 if conflict else 400)
    return redirect("partner:link", link_token=link_token)
