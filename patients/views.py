"""Pages of the patients app: enrolment, the record's own pages (demographics, caregivers,
consents, programmes) and the case manager's team tools. The worklist, My work and the
chart compose several domains and live in `workspace`. Thin: parse, call a selector or
service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from careteam import services as team_services
from careteam.audit import AuditAction, audit, note_refusal
from careteam.concurrency import STALE_PAGE_MESSAGE, VERSION_REQUIRED, StaleVersionError
from careteam.models import TeamMembership, TeamRole
from careteam.permissions import EMERGENCY_ACCESS_READ_ONLY, access_patient_by_id, patient_access
from careteam.selectors import DIRECTORY_LIMIT, clinician_directory
from careteam.viewhelpers import add_service_errors, forbidden

from . import services as patient_services
from .forms import (
    AcuityForm,
    CaregiverEditForm,
    CaregiverEndForm,
    CaregiverForm,
    ClinicianSearchForm,
    ConsentForm,
    ConsentRevokeForm,
    EnrolmentExitForm,
    EnrolmentForm,
    MembershipAddForm,
    MembershipEndForm,
    PatientEditForm,
    PatientEnrolForm,
)
from .models import Caregiver, Consent, ConsentDocument, ProgrammeEnrolment

ROLE_LABELS = dict(TeamRole.choices)


# ---------------------------------------------------------------------------
# Enrolment
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def patient_new(request: HttpRequest) -> HttpResponse:
    """Enrol a patient: possible duplicates are shown before anything is created; the
    enrolling clinician joins the team (case manager or lead) and lands on the chart."""
    try:
        discipline, role = patient_services.enrolment_role(request.user)
    except PermissionDenied as exc:
        # administrators without a discipline land back on their (empty) worklist
        messages.error(request, str(exc))
        return redirect("worklist")
    form = PatientEnrolForm(request.POST or None)
    duplicates = None
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                patient, membership = patient_services.patient_register(
                    by=request.user,
                    data=form.patient_data(),
                    not_a_duplicate=form.cleaned_data["not_a_duplicate"],
                    request=request,
                )
            except patient_services.PossibleDuplicates as exc:
                duplicates = exc.check
                if duplicates.mrn_taken:
                    add_service_errors(form, exc)
                else:  # the page lists the candidates: ask for the tick next to them
                    form.add_error(
                        "not_a_duplicate",
                        "Check the possible duplicates below; tick this box if none of them is this patient.",
                    )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"{patient.full_name} is enrolled (MRN {patient.mrn}); you are on the team as "
                    f"{membership.get_role_display()}.",
                )
                return redirect("patient_chart", patient_id=patient.pk)
    context = {
        "form": form,
        "duplicates": duplicates,
        "role_label": ROLE_LABELS[role],
        "discipline": discipline,
    }
    return render(request, "patients/patient_new.html", context, status=status)


# ---------------------------------------------------------------------------
# Team tools (case manager and plan lead)
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def team_role_add(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The team picker: search the directory of active clinicians (name, username,
    discipline; each with their caseload) and give one a role on this team."""
    access = access_patient_by_id(request.user, patient_id)
    if not access.can_manage_team:
        return forbidden(request, "Only the patient's case manager or plan lead can change the care team.")
    search = ClinicianSearchForm(request.GET if request.method == "GET" else request.POST)
    form = None
    if request.method == "POST":
        form = MembershipAddForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                membership = team_services.membership_add(
                    patient=access.patient,
                    user=data["user"],
                    discipline=data["discipline"],
                    role=data["role"],
                    start_date=data["start_date"],
                    end_date=data["end_date"],
                    by=request.user,
                )
            except PermissionDenied as exc:
                return forbidden(request, str(exc))
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"{membership.user.display_name} joined the team as {membership.get_role_display()}.",
                )
                return redirect(
                    reverse("patient_chart", kwargs={"patient_id": access.patient.pk}) + "#team-h"
                )
    results, more = [], False
    if search.is_valid() and (search.cleaned_data["q"] or search.cleaned_data["discipline"]):
        found = list(
            clinician_directory(
                q=search.cleaned_data["q"],
                discipline=search.cleaned_data["discipline"],
                patient=access.patient,
            )[: DIRECTORY_LIMIT + 1]
        )
        results, more = found[:DIRECTORY_LIMIT], len(found) > DIRECTORY_LIMIT
    context = {
        "patient": access.patient,
        "search": search,
        "results": results,
        "more": more,
        "form": form,
        "roles": TeamRole.choices,
        "today": timezone.localdate(),
    }
    if request.htmx and request.method == "GET":
        return render(request, "patients/_clinician_results.html", context)
    return render(request, "patients/team_picker.html", context, status=422 if form is not None else 200)


@login_required
@require_http_methods(["GET", "POST"])
def team_role_end(request: HttpRequest, patient_id: int, membership_id: int) -> HttpResponse:
    """Confirm the end of a role (GET), then end it (POST) with a reason; the last case
    manager names who takes over; someone leaving the team is told where they land."""
    access = access_patient_by_id(request.user, patient_id)
    membership = (
        TeamMembership.objects.select_related("user", "discipline")
        .filter(pk=membership_id, patient=access.patient)
        .first()
    )
    if membership is None:
        raise Http404("No such team role.")
    own = membership.user_id == request.user.pk
    try:
        if own:
            access.require_edit()
        else:
            access.require_manage_team()
        team_services.membership_end_check(membership=membership, by=request.user)
    except PermissionDenied as exc:
        return forbidden(request, str(exc))
    if request.method == "GET":
        form = MembershipEndForm(membership=membership, initial={"expected_version": membership.version})
        return _team_role_end_page(request, access, membership, form)
    form = MembershipEndForm(request.POST, membership=membership)
    status = 422
    if form.is_valid():
        try:
            team_services.membership_end(
                membership=membership,
                end_date=form.cleaned_data["end_date"],
                by=request.user,
                expected_version=form.cleaned_data["expected_version"],
                reason=form.cleaned_data["reason"],
                successor=form.cleaned_data.get("successor"),
            )
        except StaleVersionError as exc:
            status = _stale(request, form, exc, "role")
        except PermissionDenied as exc:
            return forbidden(request, str(exc))
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if own and not patient_access(request.user, access.patient).can_view:
                messages.success(
                    request,
                    f"You left {access.patient.full_name}'s care team; the record is no longer on your worklist.",
                )
                return redirect("worklist")
            messages.success(
                request, f"{membership.user.display_name}'s role as {membership.get_role_display()} ended."
            )
            return redirect(reverse("patient_chart", kwargs={"patient_id": access.patient.pk}) + "#team-h")
    else:
        status = form.invalid_status
    return _team_role_end_page(request, access, membership, form, status=status)


def _team_role_end_page(request, access, membership, form, status: int = 200) -> HttpResponse:
    own = membership.user_id == request.user.pk
    other_roles = (
        TeamMembership.objects.current()
        .filter(patient=access.patient, user=request.user)
        .exclude(pk=membership.pk)
        .exists()
    )
    context = {
        "patient": access.patient,
        "membership": membership,
        "form": form,
        "own": own,
        "keeps_access": other_roles,
        "needs_successor": "successor" in form.fields
        and not TeamMembership.objects.current()
        .filter(patient=access.patient, role=TeamRole.CASE_MANAGER)
        .exclude(pk=membership.pk)
        .exists(),
    }
    return render(request, "patients/team_role_end.html", context, status=status)


def _stale(request, form, exc: StaleVersionError, what: str) -> int:
    """Someone saved after this user opened the page: say so on the form, audit the
    refusal, answer 409 (nothing was written)."""
    note_refusal(request, exc.audit_reason)
    form.add_error(None, f"Someone changed this {what} after you opened the page; check it and try again.")
    return 409


def _flat_errors(form) -> list[str]:
    return [str(e) for errors in form.errors.values() for e in errors]


# ---------------------------------------------------------------------------
# Demographics and caregivers (any current team member)
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request: HttpRequest, patient_id: int) -> HttpResponse:
    access = access_patient_by_id(request.user, patient_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    patient = access.patient
    initial = {"expected_version": patient.version}
    form = PatientEditForm(
        request.POST or None, instance=patient if request.method == "GET" else None, initial=initial
    )
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                patient_services.patient_update(
                    by=request.user,
                    access=access,
                    data=form.patient_data(),
                    expected_version=form.cleaned_data["expected_version"],
                    request=request,
                )
            except StaleVersionError as exc:
                note_refusal(request, exc.audit_reason)
                status = 409
                form.add_error(None, "Someone saved this record after you opened it; check it and try again.")
                form.data = form.data.copy()
                form.data["expected_version"] = exc.current.version
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Demographics saved.")
                return redirect("patient_chart", patient_id=patient.pk)
        else:
            status = form.invalid_status
    elif request.method == "GET":
        audit(user=request.user, action=AuditAction.VIEW, obj=patient, patient=patient, request=request)
    return render(request, "patients/patient_edit.html", {"form": form, "patient": patient}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def caregivers(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Add (no `caregiver` field), edit, or end (`end=1`) a caregiver of this patient."""
    access = access_patient_by_id(request.user, patient_id)
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    patient = access.patient
    current = list(patient.caregivers.filter(end_date__isnull=True))
    if request.method == "GET":
        audit(user=request.user, action=AuditAction.VIEW, obj=patient, patient=patient, request=request)
        return _caregivers_page(request, patient, current)
    caregiver = None
    raw = request.POST.get("caregiver", "")
    if raw:
        caregiver = Caregiver.objects.filter(pk=int(raw) if raw.isdigit() else 0, patient=patient).first()
        if caregiver is None:
            raise Http404("No such caregiver.")
    if caregiver is not None and request.POST.get("end"):
        end_form = CaregiverEndForm(request.POST)
        if not end_form.is_valid():
            return _caregivers_page(
                request, patient, current, error=STALE_PAGE_MESSAGE, status=VERSION_REQUIRED
            )
        try:
            patient_services.caregiver_end(
                by=request.user,
                access=access,
                caregiver=caregiver,
                expected_version=end_form.cleaned_data["expected_version"],
                request=request,
            )
        except StaleVersionError as exc:
            note_refusal(request, exc.audit_reason)
            return _caregivers_page(
                request,
                patient,
                current,
                error="Someone changed this caregiver after you opened the page; check it and try again.",
                status=409,
            )
        else:
            messages.success(request, f"{caregiver.name} is no longer recorded as a caregiver.")
        return redirect("patient_caregivers", patient_id=patient.pk)
    if caregiver is None:
        form = CaregiverForm(request.POST)
    else:
        form = CaregiverEditForm(request.POST, prefix=f"c{caregiver.pk}")
    status = 422
    if form.is_valid():
        try:
            if caregiver is None:
                saved = patient_services.caregiver_add(
                    by=request.user, access=access, data=form.caregiver_data(), request=request
                )
            else:
                saved = patient_services.caregiver_update(
                    by=request.user,
                    access=access,
                    caregiver=caregiver,
                    data=form.caregiver_data(),
                    expected_version=form.cleaned_data["expected_version"],
                    request=request,
                )
        except StaleVersionError as exc:
            status = _stale(request, form, exc, "caregiver")
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{saved.name} saved.")
            return redirect("patient_caregivers", patient_id=patient.pk)
    elif caregiver is not None:
        status = form.invalid_status
    if caregiver is None:
        return _caregivers_page(request, patient, current, add_form=form, status=status)
    return _caregivers_page(request, patient, current, bound={caregiver.pk: form}, status=status)


def _caregivers_page(
    request, patient, current, *, add_form=None, bound=None, error: str = "", status: int = 200
) -> HttpResponse:
    """The caregivers page: each current caregiver's edit form (the posted one with its
    errors, the others fresh, carrying the version they show) and the add form."""
    bound = bound or {}
    if error:
        messages.error(request, error)
    forms_ = [
        (
            c,
            bound.get(c.pk)
            or CaregiverEditForm(instance=c, initial={"expected_version": c.version}, prefix=f"c{c.pk}"),
        )
        for c in current
    ]
    context = {
        "patient": patient,
        "caregivers": current,
        "add_form": add_form or CaregiverForm(),
        "forms": forms_,
    }
    return render(request, "patients/caregivers.html", context, status=status)


# ---------------------------------------------------------------------------
# Consent
# ---------------------------------------------------------------------------
def _consents_page(request, access, form, status=200, revoke_forms=None) -> HttpResponse:
    patient = access.patient
    consents = list(
        patient.consents.select_related("caregiver", "recorded_by", "revoked_by", "document").defer(
            "document__data"
        )
    )
    revoke_forms = revoke_forms or {}
    rows = [
        (
            c,
            revoke_forms.get(c.pk)
            or ConsentRevokeForm(initial={"expected_version": c.version}, prefix=f"r{c.pk}"),
        )
        for c in consents
    ]
    return render(
        request,
        "patients/consents.html",
        {"patient": patient, "rows": rows, "form": form, "read_only": access.read_only},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def consents(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The patient's consents (in force, expired, revoked) and the form to record one."""
    access = access_patient_by_id(request.user, patient_id)
    patient = access.patient
    if request.method == "GET":
        audit(user=request.user, action=AuditAction.VIEW, obj=patient, patient=patient, request=request)
        return _consents_page(request, access, ConsentForm(patient=patient))
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    form = ConsentForm(request.POST, request.FILES, patient=patient)
    if form.is_valid():
        try:
            consent = patient_services.consent_record(
                by=request.user,
                access=access,
                data=form.consent_data(),
                document=form.cleaned_data.get("document"),
                request=request,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Consent recorded: {consent.get_scope_display()}.")
            return redirect("patient_consents", patient_id=patient.pk)
    return _consents_page(request, access, form, status=422)


@login_required
@require_http_methods(["POST"])
def consent_revoke(request: HttpRequest, patient_id: int, consent_id: int) -> HttpResponse:
    access = access_patient_by_id(request.user, patient_id)
    patient = access.patient
    consent = Consent.objects.filter(pk=consent_id, patient=patient).first()
    if consent is None:
        raise Http404("No such consent.")
    if access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    form = ConsentRevokeForm(request.POST, prefix=f"r{consent.pk}")
    status = 422
    if form.is_valid():
        try:
            patient_services.consent_revoke(
                by=request.user,
                access=access,
                consent=consent,
                reason=form.cleaned_data["reason"],
                expected_version=form.cleaned_data["expected_version"],
                request=request,
            )
        except StaleVersionError as exc:
            status = _stale(request, form, exc, "consent")
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Consent revoked: {consent.get_scope_display()}.")
            return redirect("patient_consents", patient_id=patient.pk)
    else:
        status = form.invalid_status
    return _consents_page(
        request, access, ConsentForm(patient=patient), status=status, revoke_forms={consent.pk: form}
    )


@login_required
@require_GET
def consent_document(request: HttpRequest, patient_id: int, consent_id: int) -> HttpResponse:
    """The consent's scanned form, as an attachment (audited as an export)."""
    access = access_patient_by_id(request.user, patient_id)
    document = ConsentDocument.objects.filter(consent_id=consent_id, consent__patient=access.patient).first()
    if document is None:
        raise Http404("No such document.")
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=document.consent,
        patient=access.patient,
        request=request,
        detail="consent document",
    )
    response = HttpResponse(bytes(document.data), content_type=document.content_type)
    response["Content-Disposition"] = f'attachment; filename="consent-{document.consent_id}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------------------
# Acuity and programmes (any current team member; history kept, audited)
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def programmes(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The patient's acuity and programme enrolments: set the acuity, enrol, exit. Each
    POST names its form (`form=acuity|enrol|exit`); an unnamed one is the acuity form."""
    access = access_patient_by_id(request.user, patient_id)
    if request.method == "POST" and access.read_only:
        return forbidden(request, EMERGENCY_ACCESS_READ_ONLY)
    patient = access.patient
    which = request.POST.get("form", "acuity") if request.method == "POST" else ""
    acuity_form = AcuityForm(
        request.POST if which == "acuity" else None,
        initial={"acuity": patient.acuity, "expected_version": patient.version},
    )
    enrol_form = EnrolmentForm(
        request.POST if which == "enrol" else None, initial={"entered_on": timezone.localdate()}
    )
    exit_form = EnrolmentExitForm(request.POST) if which == "exit" else None
    status = 200
    if request.method == "POST":
        status, done = _programmes_post(request, access, which, acuity_form, enrol_form, exit_form)
        if done:
            messages.success(request, done)
            return redirect("patient_programmes", patient_id=patient.pk)
        patient = access.patient
    enrolments = list(
        ProgrammeEnrolment.objects.filter(patient=patient)
        .select_related("programme", "entered_by", "exited_by")
        .order_by("exited_on", "-entered_on", "-id")
    )
    exit_forms = {
        e.pk: (exit_form if exit_form is not None and str(e.pk) == request.POST.get("enrolment") else None)
        or EnrolmentExitForm(
            initial={"enrolment": e.pk, "expected_version": e.version, "exited_on": timezone.localdate()},
            auto_id=f"id_exit{e.pk}_%s",
        )
        for e in enrolments
        if e.is_open
    }
    history = list(
        patient.history.filter(id=patient.pk)
        .order_by("-history_date")
        .values("acuity", "history_date", "history_user__username", "version")
    )
    acuity_history = [
        h for i, h in enumerate(history) if i == len(history) - 1 or history[i + 1]["acuity"] != h["acuity"]
    ]
    return render(
        request,
        "patients/programmes.html",
        {
            "patient": patient,
            "access": access,
            "acuity_form": acuity_form,
            "enrol_form": enrol_form,
            "exit_forms": exit_forms,
            "enrolments": enrolments,
            "acuity_history": acuity_history,
            "form_errors": exit_form.errors if exit_form is not None and exit_form.errors else None,
        },
        status=status,
    )


def _programmes_post(request, access, which, acuity_form, enrol_form, exit_form) -> tuple[int, str]:
    """(status, success message or "") for one of the page's three forms."""
    if which == "enrol":
        form = enrol_form
        if not form.is_valid():
            return 422, ""
        try:
            patient_services.programme_enrol(
                by=request.user,
                access=access,
                programme=form.cleaned_data["programme"],
                entered_on=form.cleaned_data["entered_on"],
                reason=form.cleaned_data["reason"],
                request=request,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
            return 422, ""
        return 200, f"Enrolled in {form.cleaned_data['programme']}."
    if which == "exit":
        form = exit_form
        if not form.is_valid():
            return form.invalid_status, ""
        enrolment = ProgrammeEnrolment.objects.filter(
            pk=form.cleaned_data["enrolment"], patient_id=access.patient.pk
        ).first()
        if enrolment is None:
            form.add_error(None, "No such enrolment on this record.")
            return 422, ""
        try:
            patient_services.programme_exit(
                by=request.user,
                access=access,
                enrolment=enrolment,
                exited_on=form.cleaned_data["exited_on"],
                exit_reason=form.cleaned_data["exit_reason"],
                note=form.cleaned_data["note"],
                expected_version=form.cleaned_data["expected_version"],
                request=request,
            )
        except StaleVersionError as exc:
            return _stale(request, form, exc, "enrolment"), ""
        except ValidationError as exc:
            add_service_errors(form, exc)
            return 422, ""
        return 200, f"{enrolment.programme} ended."
    form = acuity_form
    if not form.is_valid():
        return form.invalid_status, ""
    try:
        patient_services.patient_set_acuity(
            by=request.user,
            access=access,
            acuity=form.cleaned_data["acuity"],
            expected_version=form.cleaned_data["expected_version"],
            request=request,
        )
    except StaleVersionError as exc:
        return _stale(request, form, exc, "record"), ""
    except ValidationError as exc:
        add_service_errors(form, exc)
        return 422, ""
    return 200, "Acuity saved."
