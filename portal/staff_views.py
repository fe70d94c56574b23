"""What staff do for the portal, from the chart and the plan: preview the portal as the
patient sees it, invite the patient or a caregiver, share an item with the patient."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careplans.models import Activity, Goal, Need
from careteam.audit import audit
from careteam.concurrency import StaleVersionError
from careteam.models import AuditAction
from careteam.permissions import EMERGENCY_ACCESS_READ_ONLY, access_item, audited_patient_view
from careteam.viewhelpers import forbidden
from patients.models import Caregiver

from . import selectors, services
from .access import portal_access_for_staff_preview
from .forms import ACHIEVEMENT_LABELS, InviteForm, ShareForm


@login_required
@audited_patient_view
@require_GET
def preview(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Exactly what the patient sees on their plan page (the same selector), read only."""
    access = portal_access_for_staff_preview(request.patient_access.patient)
    context = {
        "access": access,
        "patient": access.patient,
        "portal": selectors.portal_plan(access),
        "achievement_labels": ACHIEVEMENT_LABELS,
        "progress_choices": [],
        "progress_statuses": (),
        "preview": True,
        "may_act": False,
        "may_message": False,
        "may_manage_caregivers": False,
    }
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail="portal preview as patient",
    )
    return render(request, "portal/preview.html", context)


@login_required
@audited_patient_view
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Invite the patient or a caregiver to the portal (case manager or plan lead)."""
    access = request.patient_access
    try:
        access.require_manage_team()
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    patient = access.patient
    caregivers = list(Caregiver.objects.filter(patient=patient, end_date__isnull=True).order_by("name", "id"))
    form = InviteForm(request.POST or None, caregivers=caregivers)
    status = 200
    sent = None
    if request.method == "POST":
        if form.is_valid():
            who = form.cleaned_data["who"]
            caregiver = None
            if who.startswith("caregiver-"):
                caregiver = next((c for c in caregivers if f"caregiver-{c.pk}" == who), None)
            try:
                account, _url = services.portal_invite(
                    access=access,
                    by=request.user,
                    email=form.cleaned_data["email"],
                    caregiver=caregiver,
                    request=request,
                )
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
                status = 422
            else:
                sent = account
        else:
            status = 422
    context = {"patient": patient, "access": access, "form": form, "sent": sent, "caregivers": caregivers}
    return render(request, "portal/invite.html", context, status=status)


def _share(request: HttpRequest, model, pk: int) -> HttpResponse:
    item, access = access_item(
        request.user,
        model.objects.select_related("care_plan__patient"),
        pk,
        patient_path="care_plan__patient",
    )
    if not access.can_edit_item(item):
        message = EMERGENCY_ACCESS_READ_ONLY if access.read_only else "You cannot change this item."
        return forbidden(request, message)
    form = ShareForm(request.POST)
    if not form.is_valid():
        return render(
            request, "careplans/forbidden.html", {"message": "Say whether the item is shared."}, status=400
        )
    try:
        services.item_share(
            access=access,
            by=request.user,
            item=item,
            shared=form.cleaned_data["shared"],
            expected_version=form.cleaned_data["expected_version"],
            request=request,
        )
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except StaleVersionError:
        return render(
            request,
            "careplans/forbidden.html",
            {"message": "This page is out of date; reload and try again."},
            status=409,
        )
    return redirect("careplans:plan_editor", plan_id=item.care_plan_id)


@login_required
@require_POST
def goal_share(request: HttpRequest, goal_id: int) -> HttpResponse:
    return _share(request, Goal, goal_id)


@login_required
@require_POST
def need_share(request: HttpRequest, need_id: int) -> HttpResponse:
    return _share(request, Need, need_id)


@login_required
@require_POST
def activity_share(request: HttpRequest, activity_id: int) -> HttpResponse:
    return _share(request, Activity, activity_id)
