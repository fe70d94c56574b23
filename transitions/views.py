"""Pages of care transitions and medications: thin views over `services` and `selectors`.
Access comes from `careteam.permissions` (hidden = missing = 404; emergency access
read-only); reads are audited by the patient-URL middleware, writes by the services,
prints as exports."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careplans.models import Activity, CarePlan
from careteam.audit import audit, audit_list, note_refusal
from careteam.concurrency import STALE_PAGE_MESSAGE, VERSION_REQUIRED, StaleVersionError
from careteam.models import AuditAction
from careteam.permissions import access_item, access_patient_by_id, visible_related
from careteam.printing import pdf_response
from careteam.viewhelpers import add_service_errors

from . import selectors, services
from .forms import SOURCE_CHOICES, CompareForm, DebriefForm, MedicationForm, StepDoneForm, TransitionForm
from .models import Decision, MedicationSource, Transition, TransitionStep


def _message_page(request, message: str, status: int, back: str = "") -> HttpResponse:
    return render(request, "transitions/message.html", {"message": message, "back": back}, status=status)


def _active_plan(patient) -> CarePlan | None:
    return CarePlan.objects.filter(patient=patient, status="active").first()


# ---------------------------------------------------------------------------
# A patient's transitions
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def patient_transitions(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The patient's admissions, discharges and transfers; a member records one."""
    access = access_patient_by_id(request.user, patient_id)
    form = TransitionForm(
        request.POST if request.method == "POST" else None,
        initial={"occurred_at": timezone.localtime().replace(second=0, microsecond=0)},
    )
    status = 200
    if request.method == "POST":
        access.require_edit()
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = services.transition_record(access=access, by=request.user, request=request, **data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                t = result.transition
                note = f"{t.get_kind_display()} recorded."
                if result.steps_added or result.steps_linked:
                    note += f" Checklist: {result.steps_added} steps added, {result.steps_linked} linked to open activities."
                if result.paused:
                    note += f" {result.paused} activities on hold while in hospital."
                if result.resumed:
                    note += f" {result.resumed} activities resumed."
                messages.success(request, note)
                return redirect("transitions:transition_detail", transition_id=t.pk)
        status = 400
    plan = _active_plan(access.patient)
    context = {
        "patient": access.patient,
        "access": access,
        "transitions": list(selectors.transitions_for(access)),
        "readmission": selectors.recent_readmission(access),
        "form": form,
        "plan": plan,
        "pausable": selectors.pausable_activities(access, plan),
    }
    return render(request, "transitions/patient.html", context, status=status)


@login_required
@require_POST
def hospital_pauses(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Mark which open activities cannot happen while the patient is in hospital."""
    access = access_patient_by_id(request.user, patient_id)
    access.require_edit()
    plan = _active_plan(access.patient)
    ids = [raw for raw in request.POST.getlist("activities") if raw.isdigit() and len(raw) < 19]
    chosen = list(
        visible_related(request.user, Activity).filter(care_plan=plan, pk__in=ids)
        if plan
        else Activity.objects.none()
    )
    try:
        changed = services.hospital_pauses_set(
            access=access, by=request.user, activities=chosen, request=request
        )
    except ValidationError as exc:
        return _message_page(request, " ".join(exc.messages), 400)
    messages.success(request, f"Saved ({changed} changed).")
    return redirect("transitions:patient_transitions", patient_id=access.patient.pk)


@login_required
@require_GET
def transition_detail(request: HttpRequest, transition_id: int) -> HttpResponse:
    """The transition with its checklist: per step who tells whom, owner, due, done."""
    transition, access = access_item(
        request.user,
        Transition.objects.select_related("patient", "recorded_by"),
        transition_id,
        patient_path="patient",
    )
    rows = selectors.step_rows(access, transition)
    context = {
        "patient": access.patient,
        "access": access,
        "transition": transition,
        "rows": rows,
        "done": sum(1 for r in rows if r.done),
        "debrief": getattr(transition, "debrief", None) if transition.is_discharge else None,
        "debrief_due": transition.debrief_due(),
        "reconciliations": list(transition.reconciliations.order_by("-number")),
    }
    return render(request, "transitions/detail.html", context)


@login_required
@require_POST
def step_done(request: HttpRequest, activity_id: int) -> HttpResponse:
    """Mark a checklist step's activity done (from the version the page showed)."""
    activity, access = access_item(
        request.user,
        visible_related(request.user, Activity).select_related("care_plan__patient"),
        activity_id,
        patient_path="care_plan__patient",
    )
    access.require_edit(activity)
    step = TransitionStep.objects.filter(activity=activity).order_by("-transition__occurred_at").first()
    back = (
        reverse("transitions:transition_detail", kwargs={"transition_id": step.transition_id})
        if step
        else reverse("careplans:activity_detail", kwargs={"activity_id": activity.pk})
    )
    form = StepDoneForm(request.POST)
    if not form.is_valid():
        if form.version_refused:
            note_refusal(request, "no version sent")
            return _message_page(request, STALE_PAGE_MESSAGE, VERSION_REQUIRED, back)
        return _message_page(request, "Check the form and try again.", 400, back)
    try:
        services.step_done(
            access=access,
            by=request.user,
            activity=activity,
            expected_version=form.cleaned_data["expected_version"],
            request=request,
        )
    except StaleVersionError as exc:
        note_refusal(request, exc.audit_reason)
        return _message_page(
            request,
            "Someone changed this activity after you opened the page; reload and try again.",
            409,
            back,
        )
    except ValidationError as exc:
        return _message_page(request, " ".join(exc.messages), 400, back)
    messages.success(request, f"“{activity.title}” done.")
    return redirect(back)


@login_required
@require_http_methods(["GET", "POST"])
def debrief(request: HttpRequest, transition_id: int) -> HttpResponse:
    """Record the team's debrief of a discharge: what went well, what to tighten, and
    follow-up actions that become activities."""
    transition, access = access_item(
        request.user, Transition.objects.select_related("patient"), transition_id, patient_path="patient"
    )
    existing = getattr(transition, "debrief", None)
    form = DebriefForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        access.require_edit()
        if form.is_valid():
            try:
                services.debrief_record(
                    access=access,
                    by=request.user,
                    transition=transition,
                    went_well=form.cleaned_data["went_well"],
                    tighten=form.cleaned_data["tighten"],
                    actions=form.actions(),
                    request=request,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Debrief recorded.")
                return redirect("transitions:transition_detail", transition_id=transition.pk)
        status = 400
    actions = []
    if existing is not None:
        actions = list(existing.actions.filter(access.sensitivity_q()).select_related("owner_discipline"))
    context = {
        "patient": access.patient,
        "access": access,
        "transition": transition,
        "form": form,
        "debrief": existing,
        "actions": actions,
    }
    return render(request, "transitions/debrief.html", context, status=status)


# ---------------------------------------------------------------------------
# Medications
# ---------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def medications(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The patient's source lists and the reconciled list; a member adds a line."""
    access = access_patient_by_id(request.user, patient_id)
    form = MedicationForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        access.require_edit()
        if form.is_valid():
            try:
                line = services.medication_add(
                    access=access, by=request.user, request=request, **form.cleaned_data
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"{line} added to the {line.get_source_display().lower()}.")
                return redirect("transitions:medications", patient_id=access.patient.pk)
        status = 400
    lines = list(selectors.source_lines(access))
    by_source = [(label, [ln for ln in lines if ln.source == value]) for value, label in SOURCE_CHOICES]
    context = {
        "patient": access.patient,
        "access": access,
        "form": form,
        "by_source": [(label, rows) for label, rows in by_source if rows],
        "reconciled": selectors.latest_reconciliation(access),
        "may_reconcile": services.may_reconcile(access),
    }
    return render(request, "transitions/medications.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def reconcile(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Two or more source lists side by side; every line marked; signed by a pharmacist
    (or a discipline the policy allows: anyone else 403 on POST)."""
    access = access_patient_by_id(request.user, patient_id)
    allowed = services.may_reconcile(access)
    data = request.POST if request.method == "POST" else (request.GET if "sources" in request.GET else None)
    compare = CompareForm(data)
    errors: list[str] = []
    status = 200
    transitions = list(
        Transition.objects.filter(patient=access.patient, kind="discharge").order_by("-occurred_at")[:5]
    )
    if request.method == "POST":
        access.require_edit()
        if not allowed:
            return _message_page(
                request,
                "Only a pharmacist (or a discipline the reconciliation policy allows) can reconcile medications.",
                403,
            )
        marks = {}
        for key, value in request.POST.items():
            if key.startswith("mark-") and key[5:].isdigit() and len(key) < 25:
                marks[int(key[5:])] = (value, request.POST.get(f"note-{key[5:]}", ""))
        transition = next((t for t in transitions if str(t.pk) == request.POST.get("transition")), None)
        if compare.is_valid():
            try:
                result = services.reconciliation_sign(
                    access=access,
                    by=request.user,
                    sources=compare.cleaned_data["sources"],
                    marks=marks,
                    transition=transition,
                    note=request.POST.get("note", "")[:5000],
                    request=request,
                )
            except ValidationError as exc:
                errors = exc.messages
            else:
                n = len(result.needs)
                messages.success(
                    request,
                    f"Reconciled list v{result.reconciliation.number} signed."
                    + (
                        f" {n} discrepanc{'y' if n == 1 else 'ies'} added to the plan as needs for pharmacy."
                        if n
                        else ""
                    ),
                )
                return redirect("transitions:medications", patient_id=access.patient.pk)
        else:
            errors = [str(e) for errs in compare.errors.values() for e in errs]
        status = 400
    sources = compare.cleaned_data.get("sources", []) if compare.is_bound and compare.is_valid() else []
    lines = list(selectors.source_lines(access, sources).filter(status="active")) if sources else []
    context = {
        "patient": access.patient,
        "access": access,
        "compare": compare,
        "sources": sources,
        "source_labels": [dict(MedicationSource.choices)[s] for s in sources],
        "rows": selectors.compare_rows(lines, sources),
        "decisions": Decision.choices,
        "posted": {k: v for k, v in request.POST.items() if k.startswith("mark-")},
        "errors": errors,
        "allowed": allowed,
        "transitions": transitions,
    }
    return render(request, "transitions/reconcile.html", context, status=status)


def _schedule_context(access) -> dict:
    language = access.patient.preferred_language or "en"
    return {
        "patient": access.patient,
        "schedule": selectors.medication_schedule(access.patient, language=language),
        "language": language,
        "printed_at": timezone.now(),
    }


@login_required
@require_GET
def schedule(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The plain-language schedule by time of day, for the patient and family, in the
    patient's language for the fixed words; printable (audited as an export)."""
    access = access_patient_by_id(request.user, patient_id)
    context = _schedule_context(access)
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail="medication schedule printed",
    )
    with translation.override(context["language"]):
        return render(request, "transitions/schedule.html", context)


@login_required
@require_GET
def schedule_pdf(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The same schedule as a PDF (WeasyPrint, as the plan print)."""
    access = access_patient_by_id(request.user, patient_id)
    context = _schedule_context(access)
    audit(
        user=request.user,
        action=AuditAction.EXPORT,
        obj=access.patient,
        patient=access.patient,
        request=request,
        detail="medication schedule PDF",
    )
    with translation.override(context["language"]):
        html = render(request, "transitions/schedule.html", {**context, "as_pdf": True}).content.decode()
    return pdf_response(html, filename=f"medication-schedule-{access.patient.pk}.pdf")


@login_required
@require_GET
def medication_history(request: HttpRequest, patient_id: int) -> HttpResponse:
    """Every signed version of the reconciled list (who, when) with what it changed."""
    access = access_patient_by_id(request.user, patient_id)
    versions = selectors.reconciliations(access)
    rows = []
    for i, rec in enumerate(versions):
        older = versions[i + 1] if i + 1 < len(versions) else None
        rows.append({"rec": rec, "diff": selectors.reconciliation_diff(older, rec)})
    return render(
        request, "transitions/history.html", {"patient": access.patient, "access": access, "rows": rows}
    )


# ---------------------------------------------------------------------------
# Dashboard (my own team patients only)
# ---------------------------------------------------------------------------
PERIODS = {"30": 30, "90": 90, "365": 365}


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    days = PERIODS.get(request.GET.get("days", "90"), 90)
    months, total = selectors.dashboard(request.user, days=days)
    audit_list(
        request,
        list_name="transitions.dashboard",
        query={"days": days},
        detail=f"{total.discharges} discharges",
    )
    return render(
        request,
        "transitions/dashboard.html",
        {"months": months, "total": total, "days": days, "periods": PERIODS},
    )
