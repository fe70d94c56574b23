"""The portal's pages (/portal/): thin views over portal.access, portal.selectors and
portal.services. Every page is in the patient's language (their preferred language, or
the one they chose), and every read and write is audited with the patient."""

from __future__ import annotations

import functools
from typing import cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_str
from django.utils.http import url_has_allowed_host_and_scheme, urlsafe_base64_decode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careplans import screening
from careteam.audit import audit, note_refusal
from careteam.concurrency import StaleVersionError
from careteam.models import AuditAction, User
from careteam.printing import pdf_response
from patients.models import Caregiver, Consent, ConsentScope
from transitions.selectors import medication_schedule

from . import selectors, services
from .access import ACT, MANAGE_CAREGIVERS, MESSAGE, PortalAccess, access_portal_patient, portal_patients
from .forms import (
    ACHIEVEMENT_LABELS,
    ANSWER_ERROR_DEFAULT,
    ANSWER_ERRORS,
    CAREGIVER_ACCESS_LABELS,
    CONSENT_SCOPE_LABELS,
    ActivityDoneForm,
    CaregiverGrantForm,
    CaregiverRevokeForm,
    ConsentConfirmForm,
    GoalProgressForm,
    GoalProposeForm,
    LanguageForm,
    MessageForm,
    QuestionnaireAnswerForm,
    SetPasswordForm,
    WhatMattersForm,
)

PORTAL_CODES = {code for code, _name in settings.PORTAL_LANGUAGES}


# ---------------------------------------------------------------------------
# Language and access
# ---------------------------------------------------------------------------
def portal_language(request: HttpRequest, patient=None) -> str:
    """The language chosen on the portal (a cookie), else the patient's preferred
    language when the portal speaks it, else English."""
    chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
    if chosen in PORTAL_CODES:
        return chosen
    if patient is not None:
        primary = (patient.preferred_language or "").split("-")[0].lower()
        if primary in PORTAL_CODES:
            return primary
    return "en"


def _localised(request, patient, build) -> HttpResponse:
    language = portal_language(request, patient)
    with translation.override(language):
        response = build()
    response["Content-Language"] = language
    return response


def portal_view(fn):
    """A portal page of one patient (`patient_id` in the URL): signed-in portal accounts
    that may see the patient (404 otherwise, as for a missing one), in their language."""

    @functools.wraps(fn)
    def wrapper(request, *args, patient_id, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        access = access_portal_patient(request.user, patient_id)
        request.portal_access = access
        return _localised(request, access.patient, lambda: fn(request, access, *args, **kwargs))

    return wrapper


def _context(request, access: PortalAccess, **extra) -> dict:
    return {
        "access": access,
        "patient": access.patient,
        "languages": settings.PORTAL_LANGUAGES,
        "current_language": translation.get_language(),
        "may_act": access.may(ACT),
        "may_message": access.may(MESSAGE),
        "may_manage_caregivers": access.may(MANAGE_CAREGIVERS),
        "preview": False,
        **extra,
    }


def _errors_into(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _plan_context(access: PortalAccess) -> dict:
    return {
        "portal": selectors.portal_plan(access),
        "achievement_labels": ACHIEVEMENT_LABELS,
        "progress_choices": list(ACHIEVEMENT_LABELS.items()),
        "progress_statuses": selectors.PROGRESS_GOAL_STATUSES,
    }


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The portal's front door: the patient's own plan; a caregiver's patients (or the
    plan, when there is one)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if request.user.kind not in ("patient", "caregiver"):
        raise Http404("No such page.")
    patients = list(portal_patients(request.user).order_by("family_name", "given_name", "id"))
    if len(patients) == 1:
        return redirect("portal:plan", patient_id=patients[0].pk)
    return _localised(
        request,
        patients[0] if patients else None,
        lambda: render(
            request,
            "portal/home.html",
            {
                "patients": patients,
                "languages": settings.PORTAL_LANGUAGES,
                "current_language": translation.get_language(),
            },
        ),
    )


@require_POST
def language(request: HttpRequest) -> HttpResponse:
    """Switch the portal's language (kept in Django's language cookie)."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        return HttpResponse(_("Choose a language."), status=400, content_type="text/plain; charset=utf-8")
    target = form.cleaned_data["next"] or reverse("portal:home")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("portal:home")
    response = redirect(target)
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        form.cleaned_data["language"],
        max_age=365 * 24 * 3600,
        samesite="Lax",
        secure=request.is_secure(),
        httponly=True,
    )
    return response


@portal_view
@require_GET
def plan(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """The plan in plain language."""
    context = _context(request, access, **_plan_context(access))
    context["what_matters_form"] = WhatMattersForm()
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail="portal: plan",
    )
    return render(request, "portal/plan.html", context)


def _printed_context(request, access: PortalAccess, as_pdf: bool) -> dict:
    context = _context(request, access, **_plan_context(access))
    context.update(printed_at=timezone.now(), as_pdf=as_pdf)
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail=f"portal: plan {'pdf' if as_pdf else 'print'}",
    )
    return context


@portal_view
@require_GET
def plan_print(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    return render(request, "portal/print.html", _printed_context(request, access, as_pdf=False))


@portal_view
@require_GET
def plan_pdf(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """The same plain-language plan as a PDF (WeasyPrint, the plan print's stylesheet)."""
    html = render(
        request, "portal/print.html", _printed_context(request, access, as_pdf=True)
    ).content.decode()
    return pdf_response(html, filename=f"my-care-plan-{access.patient.pk}.pdf")


def _schedule_context(request, access: PortalAccess, *, printed: str = "") -> dict:
    """The patient's medication schedule (transitions.selectors, as the chart prints it),
    in the portal's language; a read audited as a view, a print or PDF as an export."""
    context = _context(
        request,
        access,
        schedule=medication_schedule(access.patient, language=translation.get_language()),
        printed_at=timezone.now(),
        as_pdf=printed == "pdf",
    )
    audit(
        user=request.user,
        action=AuditAction.EXPORT if printed else AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail=f"portal: medication schedule {printed}".rstrip(),
    )
    return context


@portal_view
@require_GET
def medicines(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """The plain-language medication schedule by time of day (view access is enough)."""
    return render(request, "portal/medicines.html", _schedule_context(request, access))


@portal_view
@require_GET
def medicines_print(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    return render(request, "portal/medicines_print.html", _schedule_context(request, access, printed="print"))


@portal_view
@require_GET
def medicines_pdf(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    html = render(
        request, "portal/medicines_print.html", _schedule_context(request, access, printed="pdf")
    ).content.decode()
    return pdf_response(html, filename=f"my-medicines-{access.patient.pk}.pdf")


@portal_view
@require_POST
def what_matters(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    access.require(ACT)
    form = WhatMattersForm(request.POST)
    if form.is_valid():
        try:
            services.what_matters_add(
                access=access, by=request.user, text=form.cleaned_data["text"], request=request
            )
        except ValidationError as exc:
            _errors_into(form, exc)
        else:
            return redirect(
                reverse("portal:plan", kwargs={"patient_id": access.patient.pk}) + "#what-matters"
            )
    context = _context(request, access, **_plan_context(access))
    context["what_matters_form"] = form
    return render(request, "portal/plan.html", context, status=422)


@portal_view
@require_http_methods(["GET", "POST"])
def goal_new(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """Propose a goal in the patient's own words."""
    access.require(ACT)
    form = GoalProposeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.goal_propose(
                    access=access,
                    by=request.user,
                    description=form.cleaned_data["description"],
                    request=request,
                )
            except ValidationError as exc:
                _errors_into(form, exc)
            else:
                return redirect(reverse("portal:plan", kwargs={"patient_id": access.patient.pk}) + "#goals")
        status = 422
    return render(request, "portal/goal_new.html", _context(request, access, form=form), status=status)


def _versioned_post(request, access, form, action, anchor: str) -> HttpResponse:
    if not form.is_valid():
        status = 428 if "expected_version" in form.errors else 422
        return render(request, "portal/refused.html", _context(request, access, form=form), status=status)
    try:
        action(form.cleaned_data)
    except StaleVersionError:
        form.add_error(None, _("This page is out of date; reload and try again."))
        return render(request, "portal/refused.html", _context(request, access, form=form), status=409)
    except ValidationError as exc:
        _errors_into(form, exc)
        return render(request, "portal/refused.html", _context(request, access, form=form), status=422)
    except PermissionDenied:
        raise Http404("No such item.") from None
    return redirect(reverse("portal:plan", kwargs={"patient_id": access.patient.pk}) + anchor)


@portal_view
@require_POST
def goal_progress(request: HttpRequest, access: PortalAccess, goal_id: int) -> HttpResponse:
    access.require(ACT)
    if selectors.portal_goal(access, goal_id) is None:
        raise Http404("No such goal.")
    return _versioned_post(
        request,
        access,
        GoalProgressForm(request.POST),
        lambda data: services.goal_progress(
            access=access,
            by=request.user,
            goal_id=goal_id,
            achievement=data["achievement"],
            expected_version=data["expected_version"],
            request=request,
        ),
        f"#goal-{goal_id}",
    )


@portal_view
@require_POST
def activity_done(request: HttpRequest, access: PortalAccess, activity_id: int) -> HttpResponse:
    access.require(ACT)
    activity = selectors.portal_activity(access, activity_id)
    if activity is None or not activity.for_patient:
        raise Http404("No such activity.")
    return _versioned_post(
        request,
        access,
        ActivityDoneForm(request.POST),
        lambda data: services.activity_done(
            access=access,
            by=request.user,
            activity_id=activity_id,
            expected_version=data["expected_version"],
            request=request,
        ),
        "#next",
    )


@portal_view
@require_http_methods(["GET", "POST"])
def messages(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """ "Ask the team": the patient's thread (their messages and the replies to them)."""
    access.require(MESSAGE)
    form = MessageForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.message_send(
                    access=access, by=request.user, text=form.cleaned_data["text"], request=request
                )
            except ValidationError as exc:
                _errors_into(form, exc)
            else:
                return redirect(
                    reverse("portal:messages", kwargs={"patient_id": access.patient.pk}) + "#sent"
                )
        status = 422
    else:
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=access.patient,
            patient=access.patient,
            request=request,
            detail="portal: messages",
        )
    context = _context(request, access, form=form, rows=selectors.portal_messages(access.patient))
    return render(request, "portal/messages.html", context, status=status)


def _caregiver_rows(access: PortalAccess):
    today = timezone.localdate()
    caregivers = list(
        Caregiver.objects.filter(patient_id=access.patient.pk)
        .exclude(end_date__lt=today)
        .order_by("name", "id")
    )
    consents = list(
        Consent.objects.filter(patient_id=access.patient.pk, scope=ConsentScope.CAREGIVER)
        .select_related("caregiver")
        .order_by("-date_given", "-id")
    )
    return caregivers, consents


@portal_view
@require_http_methods(["GET", "POST"])
def caregivers(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """The patient's caregivers and who may see the plan; give or end access."""
    access.require(MANAGE_CAREGIVERS)
    people, consents = _caregiver_rows(access)
    form = CaregiverGrantForm(request.POST or None, caregivers=people)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.caregiver_access_grant(
                    access=access,
                    by=request.user,
                    caregiver_id=form.cleaned_data["caregiver"],
                    level=form.cleaned_data["level"],
                    request=request,
                )
            except ValidationError as exc:
                _errors_into(form, exc)
            else:
                return redirect("portal:caregivers", patient_id=access.patient.pk)
        status = 422
    else:
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=access.patient,
            patient=access.patient,
            request=request,
            detail="portal: caregivers",
        )
    context = _context(
        request,
        access,
        form=form,
        caregivers=people,
        consents=consents,
        access_labels=CAREGIVER_ACCESS_LABELS,
    )
    return render(request, "portal/caregivers.html", context, status=status)


@portal_view
@require_POST
def caregiver_revoke(request: HttpRequest, access: PortalAccess, consent_id: int) -> HttpResponse:
    access.require(MANAGE_CAREGIVERS)
    if not Consent.objects.filter(
        patient_id=access.patient.pk, pk=consent_id, scope=ConsentScope.CAREGIVER
    ).exists():
        raise Http404("No such consent.")
    response = _versioned_post(
        request,
        access,
        CaregiverRevokeForm(request.POST),
        lambda data: services.caregiver_access_revoke(
            access=access,
            by=request.user,
            consent_id=consent_id,
            expected_version=data["expected_version"],
            request=request,
        ),
        "",
    )
    if response.status_code == 302:
        return redirect("portal:caregivers", patient_id=access.patient.pk)
    return response


# ---------------------------------------------------------------------------
# Questions from the team, and consents
# ---------------------------------------------------------------------------
def _answer_errors(errors: dict) -> dict:
    return {
        link: ANSWER_ERRORS.get(" ".join(e) if isinstance(e, list) else str(e), ANSWER_ERROR_DEFAULT)
        for link, e in errors.items()
    }


@portal_view
@require_http_methods(["GET", "POST"])
def questionnaire(request: HttpRequest, access: PortalAccess, assignment_id: int) -> HttpResponse:
    """A questionnaire the team asked the patient to answer: the form while it waits
    (the patient, or a caregiver acting for them, answers it once), a thank-you after."""
    assignment = selectors.portal_assignment(access, assignment_id)
    if assignment is None:
        raise Http404("No such questionnaire.")
    q = assignment.questionnaire
    context = _context(request, access, assignment=assignment, questionnaire=q, message="")
    if request.method == "GET":
        audit(
            user=request.user,
            action=AuditAction.VIEW,
            obj=assignment,
            patient=access.patient,
            request=request,
            detail="portal: questionnaire",
        )
        context["fields"] = screening.form_fields(q, {})
        return render(request, "portal/questionnaire.html", context)
    access.require(ACT)
    version = QuestionnaireAnswerForm(request.POST)
    if not version.is_valid():
        return render(request, "portal/refused.html", _context(request, access, form=version), status=428)
    status = 422
    try:
        services.questionnaire_answer(
            access=access,
            by=cast(User, request.user),
            assignment_id=assignment.pk,
            data=request.POST,
            expected_version=version.cleaned_data["expected_version"],
            request=request,
        )
    except screening.AlreadyAnswered:
        context["message"] = _("You already answered this questionnaire; your team has your answers.")
        status = 409
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        context["message"] = _("This page is out of date; reload and try again.")
        status = 409
    except PermissionDenied:
        raise Http404("No such questionnaire.") from None
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        answers, _errors = screening.parse_answers(q, request.POST, complete=False)
        context["fields"] = screening.form_fields(q, answers, _answer_errors(errors))
        context["message"] = _("Some answers need attention; see the questions marked below.")
    else:
        return redirect("portal:questionnaire", patient_id=access.patient.pk, assignment_id=assignment.pk)
    context["assignment"] = selectors.portal_assignment(access, assignment.pk) or assignment
    context.setdefault("fields", screening.form_fields(q, {}))
    return render(request, "portal/questionnaire.html", context, status=status)


def _consent_rows(access: PortalAccess) -> list[dict]:
    rows = []
    for consent in selectors.portal_consents(access):
        what = CONSENT_SCOPE_LABELS.get(consent.scope, consent.get_scope_display())
        if consent.scope == ConsentScope.CAREGIVER:
            what = what % {"name": consent.caregiver.name if consent.caregiver_id else _("a caregiver")}
        state = consent.state
        rows.append(
            {
                "consent": consent,
                "what": what,
                "state": state,
                "may_confirm": state == "awaiting the patient's confirmation"
                and access.may(ACT)
                and (consent.scope != ConsentScope.CAREGIVER or access.may(MANAGE_CAREGIVERS)),
                "may_revoke": consent.scope == ConsentScope.CAREGIVER
                and state in ("in force", "not yet in force")
                and access.may(MANAGE_CAREGIVERS),
            }
        )
    return rows


@portal_view
@require_GET
def consents(request: HttpRequest, access: PortalAccess) -> HttpResponse:
    """What the patient agreed to, in plain words: scope, who it names, from when until
    when, and where it stands; confirm one the team recorded as awaiting confirmation."""
    audit(
        user=request.user,
        action=AuditAction.VIEW,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail="portal: consents",
    )
    context = _context(request, access, rows=_consent_rows(access), access_labels=CAREGIVER_ACCESS_LABELS)
    return render(request, "portal/consents.html", context)


@portal_view
@require_POST
def consent_confirm(request: HttpRequest, access: PortalAccess, consent_id: int) -> HttpResponse:
    access.require(ACT)
    if selectors.portal_consent(access, consent_id) is None:
        raise Http404("No such consent.")
    response = _versioned_post(
        request,
        access,
        ConsentConfirmForm(request.POST),
        lambda data: services.consent_confirm(
            access=access,
            by=cast(User, request.user),
            consent_id=consent_id,
            expected_version=data["expected_version"],
            request=request,
        ),
        "",
    )
    if response.status_code == 302:
        return redirect(
            reverse("portal:consents", kwargs={"patient_id": access.patient.pk}) + f"#consent-{consent_id}"
        )
    return response


# ---------------------------------------------------------------------------
# The invitation link: set a password (72 hours, once)
# ---------------------------------------------------------------------------
def _invited_user(uidb64: str):
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError):
        return None
    return get_user_model().objects.filter(pk=pk, kind__in=("patient", "caregiver"), is_active=True).first()


@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def welcome(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    user = _invited_user(uidb64)
    patient = getattr(user, "patient_record", None) if user is not None else None
    if patient is None and user is not None:
        link = Caregiver.objects.filter(account_id=user.pk).select_related("patient").first()
        patient = link.patient if link else None

    def build():
        if user is None or not services.invitation_tokens.check_token(user, token):
            return render(
                request, "portal/welcome_invalid.html", {"languages": settings.PORTAL_LANGUAGES}, status=404
            )
        form = SetPasswordForm(request.POST or None, user=user)
        if request.method == "POST" and form.is_valid():
            services.invitation_accept(user=user, password=form.cleaned_data["password1"], request=request)
            return render(request, "portal/welcome_done.html", {"username": user.username})
        status = 400 if request.method == "POST" else 200
        return render(
            request,
            "portal/welcome.html",
            {
                "form": form,
                "username": user.username,
                "languages": settings.PORTAL_LANGUAGES,
                "current_language": translation.get_language(),
            },
            status=status,
        )

    return _localised(request, patient, build)
