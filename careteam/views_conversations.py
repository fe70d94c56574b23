"""Pages of conversations: a patient's list and a new conversation, one conversation with
its messages (polled by htmx while open), editing and retracting one's own message, and
the inbox tab across my patients. Thin: look up through careteam.permissions, call a
service or selector from careteam.conversations, render."""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case, Value, When
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careplans import services as plan_services
from careplans.forms import ActivityForm
from careplans.models import CarePlan

from . import conversations as services
from . import display
from .audit import AuditAction, audit, audit_list, note_refusal
from .concurrency import StaleVersionError
from .forms import ConversationStartForm, MessageEditForm, MessageForm
from .models import CONVERSATION_ABOUT_FIELDS, Message
from .permissions import EMERGENCY_ACCESS_READ_ONLY, PatientAccess, access_conversation, access_patient_by_id
from .viewhelpers import add_service_errors, forbidden

INBOX_LIMIT = services.INBOX_PAGE  # the inbox tab shows this many, newest first
PATIENT_LIST_LIMIT = 100
# how often an open conversation and the inbox ask for news (htmx polling, plain HTTP)
POLL_SECONDS = 3
# a thread shows its newest messages; the rest behind "show the whole conversation"
THREAD_MESSAGES = 50


def _conversation(request: HttpRequest, patient_id: int, conversation_id: int):
    """The conversation and the user's access; 404 when hidden, missing, or not this
    patient's (the same answer)."""
    conversation, access = access_conversation(request.user, conversation_id)
    if conversation.patient_id != int(patient_id):
        raise Http404("Not found.")
    return conversation, access


def _message_rows(access: PatientAccess, conversation, *, everything: bool) -> tuple[list[Message], int]:
    """The newest THREAD_MESSAGES messages (all with `everything`), oldest first, each with
    what this viewer may do, who it mentions and the work made from it that they may see
    (an activity in a hidden category is left out); and how many earlier ones are not shown."""
    qs = services.conversation_messages(conversation)
    if everything:
        rows, earlier = list(qs), 0
    else:
        rows = list(qs.reverse()[: THREAD_MESSAGES + 1])[::-1]
        earlier = 0
        if len(rows) > THREAD_MESSAGES:
            rows = rows[1:]
            earlier = qs.filter(id__lt=rows[0].pk).count()
    now = timezone.now()
    thread_url = services.conversation_url(conversation)
    for m in rows:
        m.can_edit = not access.read_only and m.can_be_edited_by(access.user, now)
        m.can_retract = not access.read_only and m.author_id == access.user.pk and not m.is_retracted
        m.visible_activity = m.activity if m.activity_id and access.can_see(m.activity) else None
        m.mention_names = [
            x.user.display_name if x.user_id else f"the {x.discipline} queue" for x in m.mentions.all()
        ]
        # what the row shows, made here once rather than by filters per row
        m.html = "" if m.is_retracted else display.message_html(m.text)
        m.when_iso, m.when_label = display.moment(m.created_at)
        m.url = f"{thread_url}messages/{m.pk}/"
    return rows, earlier


def _detail_context(access: PatientAccess, conversation, form=None, *, everything: bool = False) -> dict:
    rows, earlier = _message_rows(access, conversation, everything=everything)
    return {
        "patient": access.patient,
        "access": access,
        "conversation": conversation,
        "about": conversation.about,
        "about_label": services.about_label(conversation.about),
        "rows": rows,
        "earlier": earlier,
        "thread_url": services.conversation_url(conversation),
        "handoff_url": reverse("team:handoff_create", kwargs={"patient_id": conversation.patient_id}),
        "form": form if form is not None else MessageForm(),
        "poll_seconds": POLL_SECONDS,
        "state": _state(conversation),
    }


def _state(conversation) -> str:
    """What an open page last saw: changes when a message is posted, edited or retracted."""
    return str(int(conversation.messages_changed_at.timestamp() * 1_000_000))


# ---------------------------------------------------------------------------
# One patient's conversations
# ---------------------------------------------------------------------------
@login_required
@require_GET
def patient_conversations(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The patient's conversations the user may see, newest first."""
    access = access_patient_by_id(request.user, patient_id)
    rows = list(services.conversations_for_patient(access)[:PATIENT_LIST_LIMIT])
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail=f"conversations, {len(rows)} shown",
    )
    return render(
        request,
        "conversations/patient_list.html",
        {"patient": access.patient, "access": access, "rows": rows},
    )


@login_required
@require_http_methods(["GET", "POST"])
def conversation_new(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Start a conversation on the patient, about an item (`?about=need:12`) or in general."""
    access = access_patient_by_id(request.user, patient_id)
    if not access.can_contribute():
        return forbidden(
            request, "Emergency access is read-only: only the care team can start a conversation."
        )
    data = request.POST if request.method == "POST" else None
    form = ConversationStartForm(data, access=access, initial={"about": request.GET.get("about", "")})
    about, about_error = None, ""
    try:
        about = services.about_from_key(access, (data or request.GET).get("about", ""))
    except ValidationError as exc:
        about_error = " ".join(exc.messages)
    status = 200
    if request.method == "POST":
        if form.is_valid() and not about_error:
            d = form.cleaned_data
            try:
                conversation = services.conversation_start(
                    access=access,
                    by=request.user,
                    subject=d["subject"],
                    about=about,
                    sensitivity=d["sensitivity"],
                    text=d["text"],
                    request=request,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                return redirect(services.conversation_url(conversation))
        if about_error:
            form.add_error(None, about_error)
        status = 422
    elif about_error:
        raise Http404("Not found.")
    context = {
        "patient": access.patient,
        "access": access,
        "form": form,
        "about": about,
        "about_label": services.about_label(about) if about is not None else "",
    }
    return render(request, "conversations/new.html", context, status=status)


# ---------------------------------------------------------------------------
# One conversation
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def conversation_detail(request: HttpRequest, patient_id: int, conversation_id: int) -> HttpResponse:
    """The messages, oldest first, and the reply form; opening it marks it read. POST replies."""
    conversation, access = _conversation(request, patient_id, conversation_id)
    form = None
    status = 200
    if request.method == "POST":
        if access.read_only:
            return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
        form = MessageForm(request.POST)
        if form.is_valid():
            try:
                services.message_post(
                    access=access,
                    by=request.user,
                    conversation=conversation,
                    text=form.cleaned_data["text"],
                    to_patient=form.cleaned_data["to_patient"],
                    request=request,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                if request.htmx:
                    conversation.refresh_from_db()
                    return render(
                        request,
                        "conversations/_thread.html",
                        _detail_context(access, conversation),
                    )
                return redirect(services.conversation_url(conversation) + "#reply")
        status = 422
    else:
        services.conversation_read(access=access, by=request.user, conversation=conversation, request=request)
    template = (
        "conversations/_thread.html"
        if request.htmx and request.method == "POST"
        else "conversations/detail.html"
    )
    context = _detail_context(access, conversation, form, everything=request.GET.get("all") == "1")
    return render(request, template, context, status=status)


@login_required
@require_GET
def conversation_messages(request: HttpRequest, patient_id: int, conversation_id: int) -> HttpResponse:
    """The polled message list: 204 while nothing changed since `?state=`, otherwise the
    list (audited as a read, and marked read: the viewer is looking at it)."""
    conversation, access = _conversation(request, patient_id, conversation_id)
    if request.GET.get("state") == _state(conversation):
        return HttpResponse(status=204)
    services.conversation_read(access=access, by=request.user, conversation=conversation, request=request)
    return render(request, "conversations/_messages.html", _detail_context(access, conversation))


def _own_message(request: HttpRequest, patient_id: int, conversation_id: int, message_id: int):
    conversation, access = _conversation(request, patient_id, conversation_id)
    message = Message.objects.filter(pk=message_id, conversation_id=conversation.pk).first()
    if message is None:
        raise Http404("Not found.")
    message.conversation = conversation
    return conversation, access, message


@login_required
@require_http_methods(["GET", "POST"])
def message_edit(
    request: HttpRequest, patient_id: int, conversation_id: int, message_id: int
) -> HttpResponse:
    """The author corrects a message within minutes of posting it."""
    conversation, access, message = _own_message(request, patient_id, conversation_id, message_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    if message.author_id != request.user.pk:
        return forbidden(request, "Only the author can change a message.")
    if request.method == "POST":
        form = MessageEditForm(request.POST)
        if form.is_valid():
            try:
                services.message_edit(
                    access=access,
                    by=request.user,
                    message=message,
                    text=form.cleaned_data["text"],
                    expected_version=form.cleaned_data["expected_version"],
                    request=request,
                )
            except ValidationError as exc:
                if {e.code for e in exc.error_list} & {
                    services.EDIT_WINDOW_CLOSED,
                    services.ALREADY_RETRACTED,
                }:
                    note_refusal(request, f"conflict: {exc.error_list[0].code}")
                    form.add_error(None, exc)
                    return _edit_page(request, access, conversation, message, form, status=409)
                add_service_errors(form, exc)
            except StaleVersionError as exc:
                note_refusal(request, exc.audit_reason)
                form.add_error(
                    None, "Someone changed this message since you opened it; reload and try again."
                )
                return _edit_page(request, access, conversation, message, form, status=409)
            except PermissionDenied as exc:
                return forbidden(request, str(exc))
            else:
                messages.success(request, "Message edited.")
                return redirect(services.message_url(message))
        if form.version_refused:
            return _edit_page(request, access, conversation, message, form, status=form.invalid_status)
        return _edit_page(request, access, conversation, message, form, status=422)
    form = MessageEditForm(initial={"text": message.text, "expected_version": message.version})
    # an unbound form takes no errors: the page says it beside the form instead
    closed = not message.can_be_edited_by(request.user)
    return _edit_page(request, access, conversation, message, form, closed=closed)


def _edit_page(
    request, access, conversation, message, form, *, status: int = 200, closed: bool = False
) -> HttpResponse:
    context = {
        "patient": access.patient,
        "conversation": conversation,
        "message": message,
        "form": form,
        "closed": closed,
    }
    return render(request, "conversations/message_edit.html", context, status=status)


@login_required
@require_POST
def message_retract(
    request: HttpRequest, patient_id: int, conversation_id: int, message_id: int
) -> HttpResponse:
    """The author withdraws a message: it reads "retracted" from now on."""
    conversation, access, message = _own_message(request, patient_id, conversation_id, message_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    try:
        services.message_retract(access=access, by=request.user, message=message, request=request)
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except ValidationError as exc:
        note_refusal(request, f"conflict: {services.ALREADY_RETRACTED}")
        messages.error(request, " ".join(exc.messages))
        return redirect(services.conversation_url(conversation))
    messages.success(request, "Message retracted.")
    return redirect(services.message_url(message))


# ---------------------------------------------------------------------------
# The inbox tab: conversations across my patients
# ---------------------------------------------------------------------------
INBOX_FILTERS = ("unread", "mentions")


def _without_state(request: HttpRequest) -> str:
    """The filters of this request, for the poll's URL (which adds its own state)."""
    query = request.GET.copy()
    query.pop("state", None)
    return query.urlencode()


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """My patients' conversations, newest first; filters unread, mentions and item kind.
    Polled while open: 204 (nothing rendered, nothing audited) while the rows it would
    show are unchanged."""
    about = request.GET.get("about", "")
    if about not in (*CONVERSATION_ABOUT_FIELDS, "patient"):
        about = ""
    flags = {name: request.GET.get(name) == "1" for name in INBOX_FILTERS}
    rows = services.inbox_page(request.user, about=about, **flags)
    # what the list shows: which conversations, their last change and read state
    shown = ",".join(f"{c.pk}.{c.messages_changed_at.timestamp():.6f}.{int(c.is_read)}" for c in rows)
    state = hashlib.sha256(shown.encode()).hexdigest()[:16]
    if request.htmx and request.GET.get("state") == state:
        return HttpResponse(status=204)
    audit_list(
        request,
        list_name="team.conversations",
        patient_ids=[c.patient_id for c in rows],
        detail=f"conversations, {len(rows)} shown",
    )
    context = {
        "rows": rows,
        "about": about,
        "flags": flags,
        "about_choices": [
            ("", "Any"),
            ("patient", "The patient"),
            *[(a, a.capitalize()) for a in CONVERSATION_ABOUT_FIELDS],
        ],
        "state": state,
        "poll_seconds": POLL_SECONDS,
        "query": _without_state(request),
    }
    template = "conversations/_inbox_rows.html" if request.htmx else "conversations/inbox.html"
    return render(request, template, context)


# ---------------------------------------------------------------------------
# Turning a message into work
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def make_activity(
    request: HttpRequest, patient_id: int, conversation_id: int, message_id: int
) -> HttpResponse:
    """The activity form of the patient's care plan, filled in from a message; saving it
    links the two (the message shows the activity, the activity its message)."""
    conversation, access, message = _own_message(request, patient_id, conversation_id, message_id)
    if not access.can_contribute():
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    if message.is_retracted:
        raise Http404("Not found.")
    plan = (
        CarePlan.objects.filter(patient_id=access.patient.pk)
        .order_by(Case(When(status="active", then=Value(0)), default=Value(1)), "-created_at")
        .first()
    )
    if plan is None:
        messages.error(request, "Start a care plan on the chart first: an activity belongs to a plan.")
        return redirect(services.conversation_url(conversation))
    first_line = message.text.strip().splitlines()[0][:200]
    initial = {"title": first_line, "description": message.text}
    if request.method == "POST":
        form = ActivityForm(request.POST, access=access, plan=plan, prefix="from-message")
        if form.is_valid():
            data = form.changes()
            links = {name: data.pop(name) for name in ("goals", "needs") if name in data}
            try:
                with transaction.atomic():
                    activity = plan_services.activity_create(
                        access=access, plan=plan, by=request.user, request=request, **data, **links
                    )
                    services.message_link_work(
                        access=access, by=request.user, message=message, activity=activity, request=request
                    )
            except ValidationError as exc:
                add_service_errors(form, exc)
            except PermissionDenied as exc:
                return forbidden(request, str(exc))
            else:
                messages.success(request, "Activity added to the care plan from the message.")
                return redirect(services.message_url(message))
        status = 422
    else:
        form = ActivityForm(initial=initial, access=access, plan=plan, prefix="from-message")
        status = 200
    context = {
        "patient": access.patient,
        "conversation": conversation,
        "message": message,
        "form": form,
        "plan": plan,
    }
    return render(request, "conversations/make_activity.html", context, status=status)


@login_required
@require_GET
def unread_count(request: HttpRequest) -> HttpResponse:
    """The nav's unread-conversations number, loaded by the page itself (htmx, and again
    every 30 s), so that no page pays for it while rendering: one query."""
    n = services.unread_conversation_count(request.user)
    return render(request, "conversations/_unread_count.html", {"n": n})
