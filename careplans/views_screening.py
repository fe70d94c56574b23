"""Pages of screening (start from the chart, answer, resume, results with proposed needs
and suggested services) and of plan templates (preview and apply from the plan editor).
Thin: the rules are in `careplans.screening` and `careplans.plan_templates`."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from careteam.audit import AuditAction, audit, note_refusal
from careteam.concurrency import STALE_PAGE_MESSAGE, VERSION_REQUIRED, StaleVersionError
from careteam.models import User
from careteam.permissions import EMERGENCY_ACCESS_READ_ONLY, access_item, access_patient_by_id
from careteam.viewhelpers import forbidden

from . import plan_templates, screening
from .forms import ScreeningSaveForm
from .models import AnsweredBy, CarePlan, PlanTemplate, ProposedNeed, Questionnaire, QuestionnaireResponse


def _response(request: HttpRequest, screening_id: int):
    return access_item(
        request.user,
        QuestionnaireResponse.objects.select_related("patient", "questionnaire", "author", "care_plan"),
        screening_id,
        patient_path="patient",
    )


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


# ---------------------------------------------------------------------------
# Screening
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def screening_start(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Choose an instrument and who answers; any team member may screen (sensitive
    instruments only those whose discipline may see them)."""
    access = access_patient_by_id(request.user, patient_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    instruments = _instruments(access)
    if request.method == "GET":
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=access.patient,
            patient=access.patient,
            request=request,
            detail="screenings",
        )
        return render(request, "careplans/screening_start.html", _start_context(access, instruments))
    chosen = next((q for q in instruments if str(q.pk) == request.POST.get("questionnaire")), None)
    if chosen is None:
        context = _start_context(access, instruments) | {"error": "Choose a questionnaire."}
        return render(request, "careplans/screening_start.html", context, status=422)
    try:
        response = screening.screening_start(
            access=access,
            by=request.user,
            questionnaire=chosen,
            answered_by=request.POST.get("answered_by") or "staff",
            answerer_name=request.POST.get("answerer_name") or "",
            request=request,
        )
    except ValidationError as exc:
        context = _start_context(access, instruments) | {"error": _messages(exc)}
        return render(request, "careplans/screening_start.html", context, status=422)
    return redirect("careplans:screening_detail", screening_id=response.pk)


def _instruments(access) -> list[Questionnaire]:
    return [q for q in screening.current_questionnaires() if access.can_see_sensitivity(q.sensitivity_id)]


def _start_context(access, instruments) -> dict:
    return {
        "patient": access.patient,
        "access": access,
        "instruments": instruments,
        "answered_by": AnsweredBy.choices,
        "screenings": list(screening.screenings_for(access)[:20]),
        "assignments": list(screening.assignments_for(access)[:20]),
    }


@login_required
@require_http_methods(["GET", "POST"])
def screening_assign(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Ask the patient to answer a questionnaire in the portal (`action=assign`), or
    withdraw a request not answered yet (`action=cancel`, with its version)."""
    user = cast(User, request.user)
    access = access_patient_by_id(user, patient_id)
    start = reverse("careplans:screening_start", kwargs={"patient_id": access.patient.pk}) + "#ask-h"
    if request.method == "GET":
        return redirect(start)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    instruments = _instruments(access)
    context = _start_context(access, instruments)
    action = request.POST.get("action", "assign")
    try:
        if action == "cancel":
            chosen = {str(a.pk): a for a in context["assignments"]}.get(request.POST.get("assignment", ""))
            version = ScreeningSaveForm(request.POST)
            if chosen is None:
                context["ask_error"] = "Choose a request to withdraw."
                return render(request, "careplans/screening_start.html", context, status=422)
            if not version.is_valid():
                context["ask_error"] = STALE_PAGE_MESSAGE
                return render(request, "careplans/screening_start.html", context, status=VERSION_REQUIRED)
            screening.assignment_cancel(
                access=access,
                by=user,
                assignment=chosen,
                expected_version=version.cleaned_data["expected_version"],
                request=request,
            )
            messages.success(request, "The request was withdrawn; the patient no longer sees it.")
            return redirect(start)
        questionnaire = next((q for q in instruments if str(q.pk) == request.POST.get("questionnaire")), None)
        if questionnaire is None:
            context["ask_error"] = "Choose a questionnaire for the patient to answer."
            return render(request, "careplans/screening_start.html", context, status=422)
        screening.assignment_create(access=access, by=user, questionnaire=questionnaire, request=request)
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        context = _start_context(access, instruments)
        context["ask_error"] = STALE_PAGE_MESSAGE
        return render(request, "careplans/screening_start.html", context, status=409)
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except ValidationError as exc:
        context["ask_error"] = _messages(exc)
        return render(request, "careplans/screening_start.html", context, status=422)
    messages.success(
        request,
        f"{questionnaire.title} is waiting for the patient in the portal, under “Questions from your team”.",
    )
    return redirect(start)


def _screening_context(access, response, *, fields=None, errors=None, message=""):
    proposals = screening.proposals_for(access, response)
    wanted = [p for p in proposals if p.status != "dismissed" and p.domain == "social"]
    services = screening.suggested_services(response.patient, {p.category for p in wanted})
    for proposal in proposals:
        proposal.services = services.get(proposal.category, []) if proposal in wanted else []
    return {
        "response": response,
        "patient": response.patient,
        "access": access,
        "questionnaire": response.questionnaire,
        "fields": fields
        if fields is not None
        else screening.form_fields(response.questionnaire, response.answers),
        "errors": errors or {},
        "message": message,
        "proposals": proposals,
        "open_proposals": [p for p in proposals if p.status == "proposed"],
    }


@login_required
@require_http_methods(["GET", "POST"])
def screening_detail(request: HttpRequest, screening_id: int) -> HttpResponse:
    """The form while in progress (save to resume later, or complete), the answers, score
    and proposed needs once completed."""
    response, access = _response(request, screening_id)
    if request.method == "GET":
        audit(
            user=request.user, action=AuditAction.VIEW, obj=response, patient=access.patient, request=request
        )
        return render(request, "careplans/screening.html", _screening_context(access, response))
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    complete = request.POST.get("action") == "complete"
    version = ScreeningSaveForm(request.POST)
    if not version.is_valid():
        context = _screening_context(access, response, message=STALE_PAGE_MESSAGE)
        return render(request, "careplans/screening.html", context, status=VERSION_REQUIRED)
    try:
        result = screening.screening_save(
            access=access,
            by=request.user,
            response=response,
            data=request.POST,
            complete=complete,
            expected_version=version.cleaned_data["expected_version"],
            request=request,
        )
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        fresh, _ = _response(request, screening_id)
        message = (
            "Someone saved this screening after you opened it; your answers were not saved. "
            "The saved answers are shown: enter yours again if they still apply."
        )
        return render(
            request,
            "careplans/screening.html",
            _screening_context(access, fresh, message=message),
            status=409,
        )
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        answers, _ = screening.parse_answers(response.questionnaire, request.POST, complete=False)
        errors = {k: " ".join(v) if isinstance(v, list) else v for k, v in errors.items()}
        fields = screening.form_fields(response.questionnaire, answers, errors)
        context = _screening_context(access, response, fields=fields, errors=errors)
        return render(request, "careplans/screening.html", context, status=422)
    if result.errors:
        fields = screening.form_fields(result.response.questionnaire, result.response.answers, result.errors)
        context = _screening_context(
            access,
            result.response,
            fields=fields,
            errors=result.errors,
            message="Saved what was valid; correct the answers marked below.",
        )
        return render(request, "careplans/screening.html", context, status=422)
    if complete:
        note = f"Screening completed; {len(result.proposals)} needs proposed."
        if result.handoff is not None:
            note += " An urgent handoff went to the case manager."
        messages.success(request, note)
    else:
        messages.success(request, "Answers saved; you can resume this screening later.")
    return redirect("careplans:screening_detail", screening_id=response.pk)


@login_required
@require_POST
def screening_proposals(request: HttpRequest, screening_id: int) -> HttpResponse:
    """Accept one proposed need, all of them, or dismiss one with a reason."""
    response, access = _response(request, screening_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    action = request.POST.get("action", "")
    chosen: list[ProposedNeed] = []
    if action in ("accept", "dismiss"):
        visible = {p.pk: p for p in screening.proposals_for(access, response)}
        try:
            chosen = [visible[int(request.POST.get("proposal", ""))]]
        except (KeyError, ValueError):
            chosen = []
    if action not in ("accept", "accept-all", "dismiss") or (action != "accept-all" and not chosen):
        context = _screening_context(access, response, message="")
        context["proposal_error"] = "Choose a proposed need and what to do with it."
        return render(request, "careplans/screening.html", context, status=422)
    try:
        if action == "accept-all":
            chosen = screening.proposals_accept_all(
                access=access, by=request.user, response=response, request=request
            )
        elif action == "dismiss":
            screening.proposal_dismiss(
                access=access,
                by=request.user,
                proposal=chosen[0],
                reason=request.POST.get("reason", ""),
                request=request,
            )
        else:
            screening.proposal_accept(access=access, by=request.user, proposal=chosen[0], request=request)
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    except ValidationError as exc:
        context = _screening_context(access, response)
        context["proposal_error"] = _messages(exc)
        return render(request, "careplans/screening.html", context, status=422)
    done = "dismissed" if action == "dismiss" else "added to the plan"
    messages.success(request, f"{len(chosen)} proposed need{'s' if len(chosen) != 1 else ''} {done}.")
    return redirect(
        reverse("careplans:screening_detail", kwargs={"screening_id": response.pk}) + "#proposals"
    )


# ---------------------------------------------------------------------------
# Plan templates
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def plan_templates_view(request: HttpRequest, plan_id: int) -> HttpResponse:
    """The library, a preview of what one template would add (and what the plan already
    has), and the apply button (case manager and plan lead)."""
    plan, access = access_item(
        request.user, CarePlan.objects.select_related("patient"), plan_id, patient_path="patient"
    )
    templates = plan_templates.current_templates()
    raw = request.POST.get("template") if request.method == "POST" else request.GET.get("template")
    template = None
    if raw:
        try:
            template = PlanTemplate.objects.get(pk=int(raw))
        except (PlanTemplate.DoesNotExist, ValueError):
            raise Http404("No such template.") from None
    context = {
        "plan": plan,
        "patient": plan.patient,
        "access": access,
        "templates": templates,
        "template": template,
    }
    if request.method == "POST":
        if access.read_only:
            return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
        if not access.can_edit_any:
            return forbidden(request, "Only the case manager or the plan lead can apply a template.")
        if template is None:
            context["error"] = "Choose a template."
            return render(request, "careplans/plan_templates.html", context, status=422)
        try:
            result = plan_templates.template_apply(
                access=access, plan=plan, template=template, by=request.user, request=request
            )
        except PermissionDenied as exc:
            return forbidden(request, str(exc))
        except ValidationError as exc:
            context["error"] = _messages(exc)
            context["preview"] = plan_templates.template_preview(plan=plan, template=template)
            return render(request, "careplans/plan_templates.html", context, status=422)
        messages.success(
            request,
            f"{result.count} items added from template {template.title} v{template.version}."
            if result.count
            else "The plan already has everything in this template; nothing was added.",
        )
        return redirect("careplans:plan_editor", plan_id=plan.pk)
    if template is not None:
        context["preview"] = plan_templates.template_preview(plan=plan, template=template)
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=plan,
        patient=access.patient,
        request=request,
        detail="plan templates",
    )
    return render(request, "careplans/plan_templates.html", context)


__all__ = [
    "screening_start",
    "screening_assign",
    "screening_detail",
    "screening_proposals",
    "plan_templates_view",
    "Questionnaire",
]
