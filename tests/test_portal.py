"""The patient and family portal: who sees which patient (every portal URL with the
patient, a caregiver, a former caregiver, another patient, staff and anonymous), only
the shared subset of the plan on every page, the PDF, the API and FHIR, consent revoked
mid-session, the actions and their audit, invitations, Spanish."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from careplans.models import Goal
from careteam.models import AuditEvent, Message, Notification
from careteam.reminders import reminders_sweep
from patients.models import Consent
from portal import services as portal_services
from portal.access import access_portal_patient

from .portal_world import NEVER, PASSWORD, SHOWN, build_portal
from .test_permission_matrix import routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def portal(world, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return build_portal(world)


def client_for(user) -> Client:
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


OTHER_PATIENTS_OWN = ("OTHER-PATIENT-GOAL-P5", "OTHER-PATIENT-MED-P5", "P-OTHER-1", "Elsewhere")
TEAM_PATIENT = ("P-TEAM-1", "SHARED-GOAL-P5", "Alice Team")


def leaks(response, *, other_patient: bool = False) -> list[str]:
    if getattr(response, "streaming", False) or response.get("Content-Type", "").startswith(
        "application/pdf"
    ):
        return []
    text = response.content.decode("utf-8", "replace")
    never = [t for t in NEVER if t not in OTHER_PATIENTS_OWN] + list(TEAM_PATIENT) if other_patient else NEVER
    return [t for t in never if t in text]


# ---------------------------------------------------------------------------
# The matrix: every portal URL x persona x patient
# ---------------------------------------------------------------------------
PORTAL_ROUTES = [r for r in routes() if r.name and r.name.startswith("portal:")]
# what a caregiver with "message" access may not do (needs "act", or is the patient's own)
ACT_ONLY = {
    "portal:what_matters",
    "portal:goal_new",
    "portal:goal_progress",
    "portal:activity_done",
    "portal:consent_confirm",
}
# a caregiver who may only view or message sees these pages but may not post them
ACT_TO_POST = {"portal:questionnaire"}
PATIENT_ONLY = {"portal:caregivers", "portal:caregiver_revoke"}
POST_ONLY = {
    "portal:what_matters",
    "portal:goal_progress",
    "portal:activity_done",
    "portal:caregiver_revoke",
    "portal:consent_confirm",
    "portal:language",
}
EXEMPT_TABLES = {"careteam_auditevent", "django_session"}


def test_every_portal_url_is_in_the_rules_table():
    from tests.permission_rules import RULES

    assert PORTAL_ROUTES, "no portal URLs found"
    for route in PORTAL_ROUTES:
        assert route.rule == "portal", route.name
    for name in (
        "portal_preview",
        "portal_invite",
        "portal_goal_share",
        "portal_need_share",
        "portal_activity_share",
    ):
        assert name in RULES


def _writes() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables")
        return {
            n: v
            for n, v in cursor.fetchall()
            if v and n not in EXEMPT_TABLES and not n.startswith(("axes_", "careteam_auditevent_"))
        }


def _kwargs(route, portal, patient):
    items = portal.items
    values = {
        "patient_id": patient.pk,
        "goal_id": items["goal"].pk,
        "activity_id": items["activity"].pk,
        "consent_id": portal.consent.pk,
        "assignment_id": portal.assignment.pk,
        "uidb64": "MQ",
        "token": "bad-token",
    }
    return {k: values[k] for k in route.kwargs}


CHILD_KWARGS = {"goal_id", "activity_id", "consent_id", "assignment_id"}


def _expected(name: str, persona: str, scenario: str, method: str, kwargs=()) -> set:
    """Acceptable answers: "login" is a redirect to the sign-in page; "bad" a 4xx form
    error (400, 405, 409, 422, 428) that writes nothing."""
    if name == "portal:welcome":
        return {404}  # a bad token, whoever asks
    if name == "portal:language":
        return {405} if method == "GET" else {400}
    if name == "portal:home":
        if method == "POST":
            return {405}
        if persona == "anonymous":
            return {"login"}
        return {404} if persona in ("staff", "outsider") else {200, 302}
    if persona == "anonymous":
        return {"login", 405}
    sees = (persona in ("patient", "caregiver") and scenario == "own") or (
        persona == "other_patient" and scenario == "other"
    )
    if scenario == "other" and CHILD_KWARGS & set(kwargs):
        sees = False  # their own record with the team patient's goal, activity or consent
    if not sees:
        return {404, 405}
    if persona == "caregiver" and (name in ACT_ONLY or name in PATIENT_ONLY):
        return {403, 405}
    if persona == "caregiver" and name in ACT_TO_POST and method == "POST":
        return {403}
    if method == "GET":
        return {405} if name in POST_ONLY else {200}
    return {400, 405, 409, 422, 428}


def test_portal_permission_matrix(portal):
    w = portal.world
    personas = {
        "anonymous": None,
        "patient": portal.patient_user,
        "caregiver": portal.caregiver_user,
        "former_caregiver": portal.former_user,
        "other_patient": portal.other_patient_user,
        "staff": w.case_manager,
        "outsider": w.outsider,
    }
    clients = {k: client_for(u) for k, u in personas.items()}
    scenarios = {"own": w.patient, "other": w.other_patient}
    failures, cases = [], 0
    for route in PORTAL_ROUTES:
        for persona, c in clients.items():
            for scenario, patient in scenarios.items():
                if "patient_id" not in route.kwargs and scenario == "other":
                    continue
                url = reverse(route.name, kwargs=_kwargs(route, portal, patient))
                for method in ("GET", "POST"):
                    allowed = _expected(route.name, persona, scenario, method, route.kwargs)
                    with transaction.atomic():
                        before = _writes()
                        response = c.post(url, {}) if method == "POST" else c.get(url)
                        wrote = {t: v for t, v in _writes().items() if v != before.get(t)}
                        transaction.set_rollback(True)
                    cases += 1
                    code = response.status_code
                    ok = code in allowed or (
                        "login" in allowed
                        and code == 302
                        and response["Location"].startswith(reverse("login"))
                    )
                    where = f"{method} {url} [{route.name}] as {persona} ({scenario})"
                    if not ok:
                        failures.append(f"{where}: got {code}, expected {sorted(map(str, allowed))}")
                    if method == "POST" and wrote:
                        failures.append(f"{where}: wrote to {sorted(wrote)}")
                    if leaked := leaks(response, other_patient=persona == "other_patient"):
                        failures.append(f"{where}: shows {leaked}")
    assert not failures, f"{len(failures)} of {cases} cases failed:\n" + "\n".join(failures)
    assert cases > 150


def test_portal_reads_and_refusals_are_audited_with_the_patient(portal):
    patient = portal.world.patient
    c = client_for(portal.patient_user)
    assert c.get(reverse("portal:plan", kwargs={"patient_id": patient.pk})).status_code == 200
    event = AuditEvent.objects.filter(user=portal.patient_user, action="view").latest("pk")
    assert event.patient_id == patient.pk and event.outcome == "allowed"
    other = portal.world.other_patient
    assert c.get(reverse("portal:plan", kwargs={"patient_id": other.pk})).status_code == 404
    denied = AuditEvent.objects.filter(user=portal.patient_user, outcome="denied").latest("pk")
    assert denied.patient_id == other.pk


# ---------------------------------------------------------------------------
# Only the shared subset, everywhere
# ---------------------------------------------------------------------------
def _pages(patient_id: int) -> list[str]:
    return [
        reverse(name, kwargs={"patient_id": patient_id})
        for name in (
            "portal:plan",
            "portal:plan_print",
            "portal:messages",
            "portal:caregivers",
            "portal:medicines",
            "portal:medicines_print",
        )
    ]


def test_the_patient_sees_shared_items_and_never_unshared_or_sensitive_ones(portal):
    c = client_for(portal.patient_user)
    plan_page = c.get(reverse("portal:plan", kwargs={"patient_id": portal.world.patient.pk}))
    text = plan_page.content.decode()
    for shown in SHOWN:
        assert shown in text, shown
    assert "12 Harbour Road" in text and "555-0100" in text
    for url in _pages(portal.world.patient.pk):
        response = c.get(url)
        assert response.status_code == 200, url
        assert not leaks(response), (url, leaks(response))
    messages = c.get(
        reverse("portal:messages", kwargs={"patient_id": portal.world.patient.pk})
    ).content.decode()
    assert "REPLY-TO-PATIENT-P5" in messages


def test_the_pdf_is_a_pdf_of_the_same_shared_plan(portal):
    c = client_for(portal.patient_user)
    response = c.get(reverse("portal:plan_pdf", kwargs={"patient_id": portal.world.patient.pk}))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf" and response.content.startswith(b"%PDF-")
    assert AuditEvent.objects.filter(
        user=portal.patient_user, action="export", detail="portal: plan pdf"
    ).exists()


# ---------------------------------------------------------------------------
# The medication schedule (issue 22)
# ---------------------------------------------------------------------------
def test_the_patient_sees_the_medication_schedule_by_time_of_day_linked_from_the_plan(portal, world):
    c = client_for(portal.patient_user)
    url = reverse("portal:medicines", kwargs={"patient_id": world.patient.pk})
    plan_page = c.get(reverse("portal:plan", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert f'href="{url}"' in plan_page
    body = c.get(url).content.decode()
    # active lines of the reconciled list only: never a stopped line, a source list, the
    # prescriber or the reconciliation's note (portal_world.NEVER, checked on every page)
    assert body.index("Morning") < body.index("SCHEDULED-MED-P5</strong> 500 mg · with breakfast")
    assert "Checked by" in body
    event = AuditEvent.objects.filter(user=portal.patient_user, action="view").latest("pk")
    assert event.patient_id == world.patient.pk and event.detail == "portal: medication schedule"


def test_the_medication_schedule_prints_and_is_a_pdf_in_the_patients_language(portal, world):
    world.patient.preferred_language = "es"
    world.patient.save()
    c = client_for(portal.patient_user)
    kwargs = {"patient_id": world.patient.pk}
    printed = c.get(reverse("portal:medicines_print", kwargs=kwargs))
    assert printed["Content-Language"] == "es"
    body = printed.content.decode()
    assert "Mañana" in body and "Cuándo tomar cada medicamento" in body and "SCHEDULED-MED-P5" in body
    assert not leaks(printed)
    pdf = c.get(reverse("portal:medicines_pdf", kwargs=kwargs))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    details = set(
        AuditEvent.objects.filter(user=portal.patient_user, action="export").values_list("detail", flat=True)
    )
    assert {"portal: medication schedule print", "portal: medication schedule pdf"} <= details


def test_a_caregiver_with_view_access_sees_the_schedule_and_others_get_404(portal, world):
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="view")
    kwargs = {"patient_id": world.patient.pk}
    url = reverse("portal:medicines", kwargs=kwargs)
    page = client_for(portal.caregiver_user).get(url)
    assert page.status_code == 200 and "SCHEDULED-MED-P5" in page.content.decode()
    for user in (portal.former_user, portal.other_patient_user, world.case_manager, world.outsider):
        for name in ("portal:medicines", "portal:medicines_print", "portal:medicines_pdf"):
            response = client_for(user).get(reverse(name, kwargs=kwargs))
            assert response.status_code == 404, (user, name)
            assert b"SCHEDULED-MED-P5" not in response.content


def test_no_reconciled_list_yet_says_so(portal, world):
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="view")
    portal.items["reconciliation"].delete()
    body = (
        client_for(portal.caregiver_user)
        .get(reverse("portal:medicines", kwargs={"patient_id": world.patient.pk}))
        .content.decode()
    )
    assert "has not checked a list of your medicines yet" in body and "SCHEDULED-MED-P5" not in body


def test_a_sensitive_item_shared_then_refiled_is_hidden_again(portal, world):
    from careteam.models import SensitivityCategory

    need = portal.items["explicit_need"]
    other_category = SensitivityCategory.objects.exclude(pk=world.behavioural_health.pk).first()
    assert other_category is not None
    need.sensitivity = other_category
    need.save()
    c = client_for(portal.patient_user)
    page = c.get(reverse("portal:plan", kwargs={"patient_id": world.patient.pk})).content.decode()
    assert "EXPLICIT-SHARED-NEED-P5" not in page


def test_only_a_clinician_the_policy_allows_shares_a_sensitive_item(portal, world):
    need = portal.items["sensitive_need"]
    url = reverse("portal_need_share", kwargs={"need_id": need.pk})
    # the pharmacist may not see behavioural-health items: the same 404 as a missing one
    assert (
        client_for(world.pharmacist).post(url, {"shared": "1", "expected_version": need.version}).status_code
        == 404
    )
    response = client_for(world.behavioural).post(url, {"shared": "1", "expected_version": need.version})
    assert response.status_code == 302
    need.refresh_from_db()
    assert need.shared_with_patient and need.shared_sensitivity_id == need.sensitivity_id
    page = client_for(portal.patient_user).get(
        reverse("portal:plan", kwargs={"patient_id": world.patient.pk})
    )
    assert "SENSITIVE-NEED-P5" in page.content.decode()
    assert AuditEvent.objects.filter(user=world.behavioural, detail="shared with the patient").exists()


def test_staff_preview_shows_exactly_what_the_patient_sees(portal, world):
    response = client_for(world.case_manager).get(
        reverse("portal_preview", kwargs={"patient_id": world.patient.pk})
    )
    assert response.status_code == 200
    text = response.content.decode()
    for shown in SHOWN:
        assert shown in text
    assert not leaks(response)
    assert (
        client_for(world.outsider)
        .get(reverse("portal_preview", kwargs={"patient_id": world.patient.pk}))
        .status_code
        == 404
    )


# ---------------------------------------------------------------------------
# Caregivers and consent
# ---------------------------------------------------------------------------
def test_a_consent_revoked_mid_session_ends_access_on_the_next_request(portal, world):
    c = client_for(portal.caregiver_user)
    url = reverse("portal:plan", kwargs={"patient_id": world.patient.pk})
    assert c.get(url).status_code == 200
    access = access_portal_patient(portal.patient_user, world.patient.pk)
    portal_services.caregiver_access_revoke(
        access=access,
        by=portal.patient_user,
        consent_id=portal.consent.pk,
        expected_version=portal.consent.version,
    )
    assert c.get(url).status_code == 404
    assert c.get(reverse("portal:home")).status_code == 200  # "nothing is shared with you"
    assert Notification.objects.filter(recipient=world.case_manager, kind="portal-caregiver-access").exists()


def test_an_expired_consent_ends_access(portal, world):
    Consent.objects.filter(pk=portal.consent.pk).update(
        expires_on=timezone.localdate() - dt.timedelta(days=1)
    )
    c = client_for(portal.caregiver_user)
    assert c.get(reverse("portal:plan", kwargs={"patient_id": world.patient.pk})).status_code == 404


def test_the_patient_grants_and_revokes_caregiver_access_in_the_portal(portal, world):
    c = client_for(portal.patient_user)
    url = reverse("portal:caregivers", kwargs={"patient_id": world.patient.pk})
    former = portal.former_consent.caregiver
    response = c.post(url, {"caregiver": former.pk, "level": "view"})
    assert response.status_code == 302
    consent = Consent.objects.filter(caregiver=former, status="active").get()
    assert consent.method == "portal" and consent.caregiver_access == "view"
    fc = client_for(portal.former_user)
    assert fc.get(reverse("portal:plan", kwargs={"patient_id": world.patient.pk})).status_code == 200
    # view only: no messages
    assert fc.get(reverse("portal:messages", kwargs={"patient_id": world.patient.pk})).status_code == 403
    revoke = reverse(
        "portal:caregiver_revoke", kwargs={"patient_id": world.patient.pk, "consent_id": consent.pk}
    )
    assert c.post(revoke, {"expected_version": consent.version}).status_code == 302
    assert fc.get(reverse("portal:plan", kwargs={"patient_id": world.patient.pk})).status_code == 404
    assert (
        AuditEvent.objects.filter(
            user=portal.patient_user, detail__startswith="portal: caregiver access"
        ).count()
        == 2
    )
    # bad input: another patient's caregiver or a made-up level writes nothing
    before = Consent.objects.count()
    assert c.post(url, {"caregiver": 987654, "level": "view"}).status_code == 422
    assert c.post(url, {"caregiver": former.pk, "level": "everything"}).status_code == 422
    assert Consent.objects.count() == before


# ---------------------------------------------------------------------------
# Staff pages and the API refuse portal accounts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["patient_user", "caregiver_user"])
def test_portal_accounts_get_404_on_staff_pages(portal, world, who):
    c = client_for(getattr(portal, who))
    pid = world.patient.pk
    for url in (
        f"/patients/{pid}/",
        f"/plans/{world.plan.pk}/",
        f"/plans/{world.plan.pk}/print/?version=family",
        f"/patients/{pid}/portal-preview/",
        f"/patients/{pid}/conversations/",
        "/work/",
        "/admin/",
        f"/api/v1/goals/{portal.items['goal'].pk}/",
        f"/fhir/Goal/{portal.items['goal'].pk}",
        f"/fhir/Patient/{pid}",
        f"/api/v1/care-plans/?patient={pid}",
    ):
        assert c.get(url).status_code == 404, url
    assert c.get("/").status_code == 302


def _token(user) -> str:
    response = Client().post(
        "/api/v1/auth/token/",
        {"username": user.username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def test_the_api_lists_only_the_portal_accounts_own_patients(portal, world):
    for user, expected in (
        (portal.patient_user, [world.patient.pk]),
        (portal.caregiver_user, [world.patient.pk]),
        (portal.former_user, []),
        (portal.other_patient_user, [world.other_patient.pk]),
    ):
        auth = {"HTTP_AUTHORIZATION": f"Token {_token(user)}"}
        c = Client()
        listed = c.get("/api/v1/patients/", **auth)
        assert listed.status_code == 200
        assert [row["id"] for row in listed.json()["results"]] == expected
        for pid in {world.patient.pk, world.other_patient.pk} - set(expected):
            assert c.get(f"/api/v1/patients/{pid}/", **auth).status_code == 404
            assert c.get(f"/fhir/Patient/{pid}/$everything", **auth).status_code == 404
        for pid in expected:
            assert c.get(f"/api/v1/patients/{pid}/", **auth).status_code == 200
            patch = c.patch(
                f"/api/v1/patients/{pid}/",
                {"phone": "1"},
                content_type="application/json",
                HTTP_IF_MATCH='W/"1"',
                **auth,
            )
            assert patch.status_code in (403, 404)
        created = c.post(
            "/api/v1/patients/",
            {"given_name": "X", "family_name": "Y", "birth_date": "1950-01-01"},
            content_type="application/json",
            **auth,
        )
        assert created.status_code in (403, 404)
        assert c.post("/api/v1/goals/", {}, content_type="application/json", **auth).status_code == 404


def test_fhir_everything_for_a_portal_account_holds_only_the_shared_subset(portal, world):
    auth = {"HTTP_AUTHORIZATION": f"Token {_token(portal.patient_user)}"}
    response = Client().get(f"/fhir/Patient/{world.patient.pk}/$everything", **auth)
    assert response.status_code == 200
    body = response.content.decode()
    assert not [t for t in NEVER if t in body]
    bundle = response.json()
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds <= {"Patient", "CarePlan", "Goal", "CareTeam", "ServiceRequest"}
    assert "SHARED-GOAL-P5" in body and "SHARED-ACTIVITY-P5" in body
    # linked objects: the shared activity works towards an unshared goal: no reference to it
    assert f'Goal/{portal.items["unshared_goal"].pk}"' not in body
    assert "Communication" not in kinds and "Task" not in kinds
    assert AuditEvent.objects.filter(
        user=portal.patient_user, action="export", patient_id=world.patient.pk
    ).exists()


# ---------------------------------------------------------------------------
# What the patient and family do
# ---------------------------------------------------------------------------
def test_a_proposed_goal_arrives_as_a_patient_expressed_proposal(portal, world):
    c = client_for(portal.patient_user)
    url = reverse("portal:goal_new", kwargs={"patient_id": world.patient.pk})
    assert c.post(url, {"description": "Walk to the market on my own"}).status_code == 302
    goal = Goal.objects.get(description="Walk to the market on my own")
    assert (
        goal.lifecycle_status == "proposed"
        and goal.expressed_by == "patient"
        and goal.care_plan == world.plan
    )
    assert Notification.objects.filter(recipient=world.case_manager, kind="portal-goal-proposed").exists()
    assert AuditEvent.objects.filter(
        user=portal.patient_user, action="create", patient_id=world.patient.pk
    ).exists()
    before = Goal.objects.count()
    assert c.post(url, {"description": "  "}).status_code == 422
    assert c.post(url, {"description": "x" * 2001}).status_code == 422
    assert Goal.objects.count() == before


def test_progress_and_done_are_marked_from_the_portal(portal, world):
    c = client_for(portal.patient_user)
    goal, activity = portal.items["goal"], portal.items["activity"]
    url = reverse("portal:goal_progress", kwargs={"patient_id": world.patient.pk, "goal_id": goal.pk})
    assert c.post(url, {"achievement": "improving", "expected_version": goal.version}).status_code == 302
    goal.refresh_from_db()
    assert goal.achievement_status == "improving"
    assert c.post(url, {"achievement": "improving", "expected_version": 1}).status_code == 409
    assert c.post(url, {"achievement": "flying", "expected_version": goal.version}).status_code == 422
    assert c.post(url, {"achievement": "achieved"}).status_code == 428
    hidden = reverse(
        "portal:goal_progress",
        kwargs={"patient_id": world.patient.pk, "goal_id": portal.items["unshared_goal"].pk},
    )
    assert c.post(hidden, {"achievement": "improving", "expected_version": 1}).status_code == 404
    done = reverse(
        "portal:activity_done", kwargs={"patient_id": world.patient.pk, "activity_id": activity.pk}
    )
    assert c.post(done, {"expected_version": activity.version}).status_code == 302
    activity.refresh_from_db()
    assert activity.status == "completed"
    not_theirs = portal.items["unshared_activity"]
    url = reverse(
        "portal:activity_done", kwargs={"patient_id": world.patient.pk, "activity_id": not_theirs.pk}
    )
    assert c.post(url, {"expected_version": 1}).status_code == 404


def test_what_matters_is_added_in_the_patients_words(portal, world):
    c = client_for(portal.patient_user)
    url = reverse("portal:what_matters", kwargs={"patient_id": world.patient.pk})
    assert c.post(url, {"text": "Staying in my own home"}).status_code == 302
    world.patient.refresh_from_db()
    assert "Staying in my own home" in world.patient.preferences
    assert c.post(url, {"text": ""}).status_code == 422


def test_ask_the_team_reaches_the_case_manager_and_replies_come_back(portal, world, settings):
    settings.PORTAL_MESSAGE_REMINDER_HOURS = 1
    c = client_for(portal.caregiver_user)
    url = reverse("portal:messages", kwargs={"patient_id": world.patient.pk})
    assert c.post(url, {"text": "Can the nurse come on Friday?"}).status_code == 302
    message = Message.objects.get(text="Can the nurse come on Friday?")
    assert message.conversation_id == portal.items["thread"].pk
    assert Notification.objects.filter(recipient=world.case_manager, kind="portal-message").count() == 1
    # the case manager sees it in the team's thread, with the sender shown as caregiver
    cm = client_for(world.case_manager)
    thread = reverse(
        "conversations:detail",
        kwargs={"patient_id": world.patient.pk, "conversation_id": message.conversation_id},
    )
    page = cm.get(thread).content.decode()
    assert "Can the nurse come on Friday?" in page and "caregiver" in page
    # unanswered: reminded once, however many sweeps
    later = timezone.now() + dt.timedelta(hours=2)
    reminders_sweep(now=later, send_emails=False)
    reminders_sweep(now=later + dt.timedelta(minutes=5), send_emails=False)
    assert Notification.objects.filter(kind="portal-message-unanswered", object_id=message.pk).count() == 1
    # a reply marked "to patient" comes back to the portal; a team-only reply does not
    assert cm.post(thread, {"text": "Yes, Friday at 10.", "to_patient": "on"}).status_code == 302
    assert cm.post(thread, {"text": "TEAM-ONLY-AFTER-P5"}).status_code == 302
    portal_page = c.get(url).content.decode()
    assert "Yes, Friday at 10." in portal_page and "TEAM-ONLY-AFTER-P5" not in portal_page
    assert c.post(url, {"text": ""}).status_code == 422


def test_a_view_only_caregiver_cannot_write(portal, world):
    Consent.objects.filter(pk=portal.consent.pk).update(caregiver_access="view")
    c = client_for(portal.caregiver_user)
    assert (
        c.post(
            reverse("portal:messages", kwargs={"patient_id": world.patient.pk}), {"text": "hi"}
        ).status_code
        == 403
    )
    assert not Message.objects.filter(text="hi").exists()


# ---------------------------------------------------------------------------
# Invitation, sign-in, language
# ---------------------------------------------------------------------------
def _link_from_mail() -> str:
    body = mail.outbox[-1].body
    return re.search(r"https?://\S+/portal/welcome/\S+/", body).group(0).split("://", 1)[1].split("/", 1)[1]


def test_an_invitation_sets_a_password_once(portal, world):
    from careteam.models import User

    caregiver = portal.former_consent.caregiver
    caregiver.account = None
    caregiver.save()
    cm = client_for(world.case_manager)
    url = reverse("portal_invite", kwargs={"patient_id": world.patient.pk})
    assert cm.get(url).status_code == 200
    response = cm.post(url, {"who": f"caregiver-{caregiver.pk}", "email": "fred@example.org"})
    assert response.status_code == 200, response.content
    user = User.objects.get(email="fred@example.org")
    assert user.kind == "caregiver" and not user.has_usable_password()
    link = "/" + _link_from_mail()
    anon = Client()
    assert anon.get(link).status_code == 200
    assert anon.post(link, {"password1": "short", "password2": "short"}).status_code == 400
    assert (
        anon.post(
            link, {"password1": "a-Long-enough-pass-42", "password2": "a-Long-enough-pass-42"}
        ).status_code
        == 200
    )
    assert anon.get(link).status_code == 404  # single use
    assert (
        anon.post(
            reverse("login"), {"username": user.username, "password": "a-Long-enough-pass-42"}
        ).status_code
        == 302
    )
    # members who do not manage the team may not invite
    assert client_for(world.nurse).post(url, {"who": "patient", "email": "p@example.org"}).status_code == 403


def test_an_invitation_link_expires_after_72_hours(portal, world):
    from careteam.models import User

    user = User.objects.create(username="late", kind="patient")
    user.set_unusable_password()
    user.save()
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    tokens = portal_services.invitation_tokens
    uid = urlsafe_base64_encode(force_bytes(user.pk))

    def path(hours_ago: int) -> str:
        ts = tokens._num_seconds(tokens._now()) - hours_ago * 3600
        token = tokens._make_token_with_timestamp(user, ts, tokens.secret)
        return reverse("portal:welcome", kwargs={"uidb64": uid, "token": token})

    assert Client().get(path(71)).status_code == 200
    assert Client().get(path(73)).status_code == 404


def test_the_portal_speaks_the_patients_language_and_can_switch(portal, world):
    world.patient.preferred_language = "es"
    world.patient.save()
    c = client_for(portal.patient_user)
    url = reverse("portal:plan", kwargs={"patient_id": world.patient.pk})
    page = c.get(url)
    assert page["Content-Language"] == "es"
    assert "Mis metas" in page.content.decode()
    assert c.post(reverse("portal:language"), {"language": "en", "next": url}).status_code == 302
    page = c.get(url)
    assert page["Content-Language"] == "en" and "My goals" in page.content.decode()
    assert c.post(reverse("portal:language"), {"language": "xx"}).status_code == 400


def test_the_spanish_catalog_is_complete_and_compiled():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "portal" / "locale" / "es" / "LC_MESSAGES"
    po = (folder / "django.po").read_text(encoding="utf-8")
    entries = po.split("\n\n")[1:]
    untranslated = [e for e in entries if e.rstrip().endswith('msgstr ""')]
    assert entries and not untranslated, untranslated[:3]
    assert "#, fuzzy" not in po
    mo = folder / "django.mo"
    assert mo.exists() and mo.stat().st_size > 1000
