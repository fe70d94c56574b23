"""Pages of handoffs, the inbox and notifications. Thin: look up through
careteam.permissions, call a service or selector from careteam.handoffs /
careteam.notifications, render."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from . import conversations as conversation_services
from . import handoffs as handoff_services
from .audit import AuditAction, audit, audit_list, note_refusal
from .concurrency import StaleVersionError
from .forms import HandoffActionForm, HandoffForm
from .models import HandoffStatus, Notification
from .notifications import notification_mark_read, notification_open, notifications_for
from .permissions import EMERGENCY_ACCESS_READ_ONLY, access_item, access_patient_by_id
from .viewhelpers import add_service_errors, forbidden

INBOX_LIMIT = 100


def _errors_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


# ---------------------------------------------------------------------------
# Handoffs
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def handoff_create(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The SBAR form: hand work on this patient to a team member or a discipline queue."""
    access = access_patient_by_id(request.user, patient_id)
    if not access.can_contribute():
        return forbidden(request, "Emergency access is read-only: only the care team can hand off work.")
    tomorrow = (timezone.localtime() + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    initial = {"due_at": tomorrow}
    # "hand this off" from a conversation: the message fills in the situation and is linked
    from_message = None
    raw_message = (request.POST if request.method == "POST" else request.GET).get("from_message")
    if raw_message:
        try:
            from_message = conversation_services.message_for_work(access, raw_message)
        except ValidationError:
            raise Http404("Not found.") from None
        initial["situation"] = from_message.text
    # bound on every POST, even an empty one, so it answers with its errors
    data = request.POST if request.method == "POST" else None
    form = HandoffForm(data, access=access, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    handoff = handoff_services.handoff_create(
                        by=request.user,
                        access=access,
                        request=request,
                        **{name: data[name] for name in HandoffForm.base_fields},
                    )
                    if from_message is not None:
                        conversation_services.message_link_work(
                            access=access,
                            by=request.user,
                            message=from_message,
                            handoff=handoff,
                            request=request,
                        )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Handoff sent.")
                return redirect("team:handoff_detail", handoff_id=handoff.pk)
        status = 422
    context = {"form": form, "patient": access.patient, "from_message": from_message}
    return render(request, "team/handoff_form.html", context, status=status)


ACTION_STATUS = {
    "accept": HandoffStatus.ACCEPTED,
    "reject": HandoffStatus.REJECTED,
    "start": HandoffStatus.IN_PROGRESS,
    "complete": HandoffStatus.COMPLETED,
    "cancel": HandoffStatus.CANCELLED,
}


@login_required
@require_http_methods(["GET", "POST"])
def handoff_detail(request: HttpRequest, handoff_id: int) -> HttpResponse:
    """The handoff and the buttons its legal transitions allow this user; POST answers it."""
    handoff, access = access_item(
        request.user, handoff_services.handoffs_visible(request.user), handoff_id, patient_path="patient"
    )
    action_form = HandoffActionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if access.read_only:
            return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
        if action_form.is_valid():
            data = action_form.cleaned_data
            try:
                handoff_services.handoff_set_status(
                    access=access,
                    handoff=handoff,
                    by=request.user,
                    status=ACTION_STATUS[data["action"]],
                    reason=data["reason"],
                    expected_version=data["expected_version"],
                    request=request,
                )
            except ValidationError as exc:
                messages.error(request, _errors_text(exc))
                status = 409
                handoff.refresh_from_db()
            except StaleVersionError as exc:
                note_refusal(request, exc.audit_reason)
                messages.error(
                    request,
                    "Someone answered or changed this handoff after you opened it; its current state "
                    "is shown. Answer again if it still applies.",
                )
                status = 409
                handoff.refresh_from_db()
            else:
                messages.success(request, f"Handoff {handoff_services.ACTION_DONE[data['action']]}.")
                return redirect("team:handoff_detail", handoff_id=handoff.pk)
        else:
            status = action_form.invalid_status
    else:
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=handoff,
            patient_id=handoff.patient_id,
            request=request,
        )
    activity = handoff.activity
    context = {
        "handoff": handoff,
        "access": access,
        "actions": handoff_services.handoff_actions(handoff=handoff, user=request.user)
        if access.on_team
        else [],
        "action_form": action_form,
        "activity": activity if activity and access.can_see_sensitivity(activity.sensitivity_id) else None,
        "from_messages": conversation_services.work_source_messages(access, handoff=handoff),
        "now": timezone.now(),
    }
    return render(request, "team/handoff_detail.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def open_handoffs(request: HttpRequest) -> HttpResponse:
    """The case manager's view: every open handoff of their patients, oldest first, a
    page at a time."""
    page = Paginator(handoff_services.handoffs_open_for_case_manager(request.user), OPEN_HANDOFFS_PAGE_SIZE)
    page = page.get_page(request.GET.get("page"))
    rows = list(page.object_list)
    audit_list(
        request,
        list_name="team.open_handoffs",
        patient_ids=[h.patient_id for h in rows],
        query={"page": str(page.number)},
        detail=f"open handoffs, {len(rows)} shown of {page.paginator.count}",
    )
    context = {"handoffs": rows, "page": page, "query": "", "now": timezone.now()}
    return render(request, "team/open_handoffs.html", context)


OPEN_HANDOFFS_PAGE_SIZE = 50


# ---------------------------------------------------------------------------
# Inbox and notifications
# ---------------------------------------------------------------------------
def target_url(n: Notification) -> str:
    """Where a notification leads, resolved now (pages of other areas may move)."""
    if n.url:
        return n.url
    names = {
        "careplans.activity": ("careplans:activity_detail", "activity_id"),
        "careplans.careplan": ("careplans:plan_editor", "plan_id"),
        "referrals.referral": ("referrals:detail", "referral_id"),
    }
    if n.object_type in names:
        name, kwarg = names[n.object_type]
        try:
            return reverse(name, kwargs={kwarg: n.object_id})
        except NoReverseMatch:
            pass
    return reverse("team:inbox")


@login_required
@require_http_methods(["GET", "POST"])
def inbox(request: HttpRequest) -> HttpResponse:
    """Handoffs waiting for my acknowledgement and my notifications; POST marks all read."""
    if request.method == "POST":
        changed = notification_mark_read(user=request.user)
        messages.success(request, f"{changed} notification{'s' if changed != 1 else ''} marked read.")
        return redirect("team:inbox")
    waiting = list(handoff_services.handoff_inbox(request.user)[:INBOX_LIMIT])
    notes = list(notifications_for(request.user).select_related("patient")[:INBOX_LIMIT])
    audit_list(
        request,
        list_name="team.inbox",
        patient_ids=[h.patient_id for h in waiting] + [n.patient_id for n in notes],
        detail=f"inbox, {len(waiting)} handoffs, {len(notes)} notifications",
    )
    context = {
        "handoffs": waiting,
        "notifications": notes,
        "unread": sum(1 for n in notes if n.read_at is None),
        "now": timezone.now(),
    }
    return render(request, "team/inbox.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def notification_detail(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Open one of my notifications: it marks itself read and leads to what it is about
    (the link in the inbox and in the email)."""
    try:
        n = notification_open(user=request.user, notification_id=notification_id)
    except (Notification.DoesNotExist, ValueError):
        raise Http404("No such notification.") from None
    return redirect(target_url(n))


@login_required
@require_GET
def handoffs_sent(request: HttpRequest) -> HttpResponse:
    """Handoffs I sent: open ones first by due time, then the answered ones."""
    rows = list(handoff_services.handoffs_sent_by(request.user)[:INBOX_LIMIT])
    audit_list(
        request,
        list_name="team.handoffs_sent",
        patient_ids=[h.patient_id for h in rows],
        detail=f"handoffs sent, {len(rows)} shown",
    )
    return render(request, "team/handoffs_sent.html", {"handoffs": rows, "now": timezone.now()})
