"""The permission matrix: every URL the project serves x every role x objects inside and
outside the team and in a sensitive category, checked against tests/permission_rules.py.

Nothing here is hand-listed per URL: the URL resolver is walked, each URL name's rule is
looked up, and its keyword arguments are filled by name (patient_id, plan_id, goal_id, ...)
with objects of each scenario. A URL without a rule, or with a keyword the matrix cannot
fill, fails with a message naming it. Besides the status code, every response body is
searched for things the role may not see (the other patient's MRN and name, the team
patient's for non-members, sensitive item texts for disciplines the policy does not
allow), every refused POST is checked to have written nothing (PostgreSQL's
per-transaction tuple counters, audit and session tables excepted), every read of patient
data must leave an audit event and every refusal a denial event, and list pages must
not change at all when items the role may not see are added (counts).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from careplans.models import Note, ProposedNeed
from careteam import services as team_services
from careteam.models import AuditEvent, EmergencyAccess, Notification, TeamMembership
from patients.models import Patient
from referrals.models import Referral
from tests import factories as f
from tests.permission_rules import PREFIX_RULES, RULES

pytestmark = pytest.mark.django_db

# partner accounts: staff of the organisation behind the matrix's service (its referral of
# the team patient is sent), and staff of a second organisation
PARTNER_ROLES = ("partner", "other_partner")
# the portal's own matrix (patient and caregiver personas) is tests/test_portal.py
SKIPPED_RULES = {"api", "admin-site", "portal"}
# huddles: the current team only (emergency access included in "everyone else")
HUDDLE_RULES = {"huddle-read", "huddle-answer", "huddle-manage"}
PARTNER_PATHS = (*settings.ACCOUNT_COMMON_PATHS, *settings.ACCOUNT_KIND_PATHS["partner"])
KNOWN_RULES = {
    "public",
    "login",
    "self",
    "patient-read",
    "patient-write",
    "item-write",
    "author-write",
    "team-manage",
    "team-leave",
    "patient-audit",
    "reconcile",
    "catalog-admin",
    "audit-admin",
    "superuser",
    "feed",
    *HUDDLE_RULES,
    "partner",
    *SKIPPED_RULES,
}
PATIENT_RULES = {
    "patient-read",
    "patient-write",
    "item-write",
    "author-write",
    "team-manage",
    "team-leave",
    "patient-audit",
    "reconcile",
    *HUDDLE_RULES,
}
WRITE_RULES = {
    "patient-write",
    "item-write",
    "author-write",
    "team-manage",
    "team-leave",
    "reconcile",
    "huddle-answer",
    "huddle-manage",
}
# who may sign a medication reconciliation (the default policy: pharmacy)
RECONCILERS = {"pharmacist"}
# URL keywords naming patient data, most specific first: the first present is the target
PATIENT_KWARGS = (
    "huddle_id",
    "message_id",
    "conversation_id",
    "visit_id",
    "authorisation_id",
    "screening_id",
    "note_id",
    "activity_id",
    "need_id",
    "goal_id",
    "referral_id",
    "handoff_id",
    "consent_id",
    "membership_id",
    "transition_id",
    "plan_id",
    "patient_id",
)
SENSITIVE_KWARGS = {"need_id", "activity_id", "note_id", "screening_id", "conversation_id", "message_id"}
# members of this team are interchangeable for another team's objects: a few of them do
OTHER_SCENARIO_ROLES = {"anonymous", "outsider", "emergency_access", "nurse", "case_manager", *PARTNER_ROLES}
# rules that show no patient data: a few roles suffice
NON_PATIENT_ROLES = ("anonymous", "admin", "outsider", "nurse", *PARTNER_ROLES)
NON_PATIENT_RULES = {"public", "catalog-admin", "audit-admin", "superuser", "feed"}
CATALOG_KWARGS = {"service_id", "organization_id"}

MEMBERS = ("nurse", "pharmacist", "behavioural", "case_manager", "lead")
ROLES = ("anonymous", "admin", "outsider", "former_member", "future_member", "emergency_access", *MEMBERS)
MANAGERS = {"case_manager", "lead"}
ROLE_DISCIPLINE = {
    "nurse": "nursing",
    "pharmacist": "pharmacy",
    "behavioural": "behavioural-health",
    "case_manager": "case-management",
    "lead": "physician",
}
# who may see items flagged behavioural health: the policy allows behavioural health and
# physicians (the lead); the case manager always sees them
SENSITIVE_VIEWERS = {"behavioural", "case_manager", "lead"}
# tables a refused request may write to: the audit trail records the denial
WRITE_EXEMPT_TABLES = {"careteam_auditevent", "django_session"}

TEAM_MRN, TEAM_NAME = "MRN-TEAM-4711", "Amalthea Quistorp"
OTHER_MRN, OTHER_NAME = "MRN-OTHER-9044", "Zebulon Farquharson"
SENSITIVE_TEXTS = ("SENSITIVE-NEED-Q7", "SENSITIVE-ACTIVITY-Q7", "SENSITIVE-NOTE-Q7")
OTHER_TEXTS = ("OTHERTEAM-GOAL-Z9", "OTHERTEAM-NEED-Z9", "OTHERTEAM-ACTIVITY-Z9", "OTHERTEAM-NOTE-Z9")
# a conversation about each bag's need and its message (subject and text carry the prefix)
CONVERSATION_TEXTS = {"SENSITIVE": "SENSITIVE-TALK-Q7", "OTHERTEAM": "OTHERTEAM-TALK-Z9"}


# ---------------------------------------------------------------------------
# The URLs
# ---------------------------------------------------------------------------
@dataclass
class Route:
    route: str
    name: str | None
    kwargs: list[str]
    rule: str | None = None


def routes() -> list[Route]:
    found: list[Route] = []

    def walk(patterns, prefix: str, namespaces: tuple[str, ...]):
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = namespaces + ((p.namespace,) if p.namespace else ())
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                name = ":".join((*namespaces, p.name)) if p.name else None
                found.append(Route(prefix + str(p.pattern), name, list(p.pattern.regex.groupindex)))

    walk(get_resolver().url_patterns, "", ())
    for r in found:
        r.rule = RULES.get(r.name) if r.name else None
        if r.rule is None:
            r.rule = next((rule for pre, rule in PREFIX_RULES.items() if r.route.startswith(pre)), None)
    return found


def test_every_url_has_a_known_permission_rule():
    problems = []
    for r in routes():
        if r.rule is None:
            problems.append(
                f"URL {r.name or '(unnamed)'} ({r.route}) has no rule in tests/permission_rules.py"
            )
        elif r.rule not in KNOWN_RULES:
            problems.append(f"URL {r.name} ({r.route}) has unknown rule {r.rule!r}")
    assert not problems, "\n".join(problems)


def test_every_rule_in_the_table_names_a_url_that_exists():
    names = {r.name for r in routes()}
    stale = sorted(set(RULES) - names)
    assert not stale, f"rules for URLs that no longer exist: {stale}"


# ---------------------------------------------------------------------------
# The world: one team patient, one patient elsewhere, items of each kind
# ---------------------------------------------------------------------------
@dataclass
class Matrix:
    users: dict
    team: dict
    other: dict
    sensitive: dict
    catalog: dict
    notifications: dict
    clients: dict = field(default_factory=dict)


def build(world) -> Matrix:
    today = timezone.localdate()
    Patient.objects.filter(pk=world.patient.pk).update(
        mrn=TEAM_MRN, given_name=TEAM_NAME.split()[0], family_name=TEAM_NAME.split()[1]
    )
    Patient.objects.filter(pk=world.other_patient.pk).update(
        mrn=OTHER_MRN, given_name=OTHER_NAME.split()[0], family_name=OTHER_NAME.split()[1]
    )
    world.patient.refresh_from_db()
    world.other_patient.refresh_from_db()
    d = f.discipline
    bh = world.behavioural_health

    former = f.UserFactory(username="former1", disciplines=["nursing"])
    m = team_services.membership_add(
        patient=world.patient, user=former, discipline=d("nursing"), start_date=today - dt.timedelta(days=60)
    )
    # ended yesterday, and the nightly sweep has not run yet: the guardian row is still there
    TeamMembership.objects.filter(pk=m.pk).update(end_date=today - dt.timedelta(days=1))
    future = f.UserFactory(username="future1", disciplines=["nursing"])
    team_services.membership_add(
        patient=world.patient, user=future, discipline=d("nursing"), start_date=today + dt.timedelta(days=1)
    )
    glass = f.UserFactory(username="glass1", disciplines=["nursing"])
    team_services.emergency_access_open(
        by=glass, patient=world.patient, reason="Unconscious in the emergency room"
    )

    users = {
        "anonymous": AnonymousUser(),
        "admin": world.admin,
        "outsider": world.outsider,
        "former_member": former,
        "future_member": future,
        "emergency_access": glass,
        "nurse": world.nurse,
        "pharmacist": world.pharmacist,
        "behavioural": world.behavioural,
        "case_manager": world.case_manager,
        "lead": world.lead,
    }

    def items(patient, plan, prefix: str, sensitivity=None, owner="nursing"):
        goal = f.GoalFactory(care_plan=plan, description=f"{prefix}-GOAL", owner_discipline=d(owner))
        need = f.NeedFactory(care_plan=plan, description=f"{prefix}-NEED", sensitivity=sensitivity)
        activity = f.ActivityFactory(
            care_plan=plan, title=f"{prefix}-ACTIVITY", owner_discipline=d(owner), sensitivity=sensitivity
        )
        author = world.nurse if patient == world.patient else world.other_team_nurse
        note = Note.objects.create(
            care_plan=plan, text=f"{prefix}-NOTE", author=author, sensitivity=sensitivity
        )
        screening = _screening(patient, plan, author, sensitivity)
        talker = world.behavioural if sensitivity is not None else author
        conversation, message = _conversation(patient, need, talker, CONVERSATION_TEXTS.get(prefix, prefix))
        return {
            "goal_id": goal,
            "need_id": need,
            "activity_id": activity,
            "note_id": note,
            "screening_id": screening,
            "conversation_id": conversation,
            "message_id": message,
        }

    service = f.ServiceFactory(name="Matrix Meals on Wheels")
    team = {
        "patient_id": world.patient,
        "plan_id": world.plan,
        **items(world.patient, world.plan, "TEAMITEM"),
    }
    team["membership_id"] = TeamMembership.objects.get(patient=world.patient, user=world.pharmacist)
    team["consent_id"] = _consent(world.patient, world.nurse)
    team["handoff_id"] = f.HandoffFactory(
        patient=world.patient, from_user=world.nurse, to_user=world.pharmacist
    )
    team["referral_id"] = f.ReferralFactory(
        patient=world.patient, care_plan=world.plan, service=service, referred_by=world.nurse
    )
    team["transition_id"] = _transition(world.patient, world.nurse)
    # sent, so that the partner of the service's organisation sees it
    Referral.objects.filter(pk=team["referral_id"].pk).update(
        status="requested", sent_at=timezone.now(), consent=team["consent_id"], tracked_by_referrer=False
    )
    users["partner"] = f.partner_user(service.organization, "partner1")
    users["other_partner"] = f.partner_user(f.OrganizationFactory(name="Second Org"), "partner2")
    other = {
        "patient_id": world.other_patient,
        "plan_id": world.other_plan,
        **items(world.other_patient, world.other_plan, "OTHERTEAM", owner="nursing"),
    }
    for key, text in zip(("goal_id", "need_id", "activity_id", "note_id"), OTHER_TEXTS, strict=True):
        obj = other[key]
        type(obj).objects.filter(pk=obj.pk).update(**{_text_field(obj): text})
    other["membership_id"] = TeamMembership.objects.get(patient=world.other_patient)
    other["transition_id"] = _transition(world.other_patient, world.other_team_nurse)
    other["consent_id"] = _consent(world.other_patient, world.other_team_nurse)
    other["handoff_id"] = f.HandoffFactory(
        patient=world.other_patient,
        from_user=world.other_team_nurse,
        to_user=None,
        to_discipline=d("nursing"),
    )
    other["referral_id"] = f.ReferralFactory(
        patient=world.other_patient,
        care_plan=world.other_plan,
        service=service,
        referred_by=world.other_team_nurse,
    )
    for bag, clinician in ((team, world.nurse), (other, world.other_team_nurse)):
        bag["authorisation_id"] = _authorisation(bag["patient_id"], clinician)
        bag["visit_id"] = f.VisitFactory(
            patient=bag["patient_id"], clinician=clinician, authorisation=bag["authorisation_id"]
        )
    sensitive = items(world.patient, world.plan, "SENSITIVE", sensitivity=bh, owner="behavioural-health")
    team["huddle_id"] = _huddle(world.patient, world.case_manager)
    other["huddle_id"] = _huddle(world.other_patient, world.other_team_nurse)
    for key, text in zip(("need_id", "activity_id", "note_id"), SENSITIVE_TEXTS, strict=True):
        obj = sensitive[key]
        type(obj).objects.filter(pk=obj.pk).update(**{_text_field(obj): text})
    for key in ("patient_id", "plan_id"):
        sensitive[key] = team[key]
    catalog = {"service_id": service, "organization_id": service.organization}
    notifications = {}
    for role, user in users.items():
        if role == "anonymous":
            continue
        notifications[role] = Notification.objects.create(
            recipient=user,
            kind="handoff-received",
            object_type="careteam.handoff",
            object_id=team["handoff_id"].pk,
            due_moment=timezone.now(),
            title="A handoff for you",
        )
    sensitive_author = world.behavioural
    type(sensitive["screening_id"]).objects.filter(pk=sensitive["screening_id"].pk).update(
        author=sensitive_author
    )
    for bag in (team, other, sensitive):
        for obj in bag.values():
            obj.refresh_from_db()
    matrix = Matrix(users, team, other, sensitive, catalog, notifications)
    for role, user in users.items():
        client = Client()
        if role != "anonymous":
            client.force_login(user)
        matrix.clients[role] = client
    return matrix


def _transition(patient, recorder):
    """A discharge of last week (its checklist is not needed for access)."""
    from transitions.models import Transition

    when = timezone.now() - dt.timedelta(days=8)
    return Transition.objects.create(
        patient=patient, kind="discharge", occurred_at=when, discharged_at=when, recorded_by=recorder
    )


def _consent(patient, recorder):
    """A referral consent with its scanned form."""
    from patients.models import Consent, ConsentDocument

    consent = Consent.objects.create(patient=patient, scope="referral", recorded_by=recorder)
    ConsentDocument.objects.create(
        consent=consent,
        name="form.pdf",
        content_type="application/pdf",
        size=8,
        data=b"%PDF-1.4",
        uploaded_by=recorder,
    )
    return consent


def _authorisation(patient, recorder):
    """An approved authorisation with its payer's letter."""
    from visits.models import AuthorisationDocument

    auth = f.AuthorisationFactory(patient=patient, created_by=recorder)
    AuthorisationDocument.objects.create(
        authorisation=auth, name="letter.pdf", content_type="application/pdf", size=8, data=b"%PDF-1.4",
        uploaded_by=recorder,
    )  # fmt: skip
    return auth


def _conversation(patient, need, author, text: str):
    """A conversation about the need (so as hidden as it) with one message by `author`."""
    from careteam.models import Conversation, Message

    conversation = Conversation.objects.create(
        patient=patient, need=need, subject=f"{text}-SUBJECT", started_by=author, sensitivity=need.sensitivity
    )
    message = Message.objects.create(conversation=conversation, author=author, text=f"{text}-MESSAGE")
    Conversation.objects.filter(pk=conversation.pk).update(last_message=message)
    return conversation, message


def _huddle(patient, starter):
    """An open huddle started now (so the items above are among its changes), inviting
    the patient's current team but its starter."""
    from careteam.models import Conversation, Huddle, HuddleInvitation
    from careteam.permissions import team_members_who_may_see

    now = timezone.now()
    conversation = Conversation.objects.create(patient=patient, subject="Huddle", started_by=starter)
    huddle = Huddle.objects.create(
        patient=patient,
        started_by=starter,
        since=now - dt.timedelta(days=7),
        started_at=now,
        deadline=now + dt.timedelta(hours=8),
        conversation=conversation,
    )
    for user in team_members_who_may_see(patient.pk).exclude(pk=starter.pk):
        HuddleInvitation.objects.create(huddle=huddle, user=user)
    return huddle


def _screening(patient, plan, author, sensitivity):
    """An in-progress screening: a sensitive one uses the PHQ-9 (behavioural health)."""
    from careplans.models import Questionnaire, QuestionnaireResponse
    from careplans.screening import ensure_shipped_questionnaires

    ensure_shipped_questionnaires()
    name = "PHQ_9" if sensitivity is not None else "HUNGER_VITAL_SIGN"
    return QuestionnaireResponse.objects.create(
        patient=patient,
        care_plan=plan,
        questionnaire=Questionnaire.objects.filter(name=name).latest("id"),
        author=author,
        sensitivity=sensitivity,
    )


def _text_field(obj) -> str:
    return {"Goal": "description", "Need": "description", "Activity": "title", "Note": "text"}[
        type(obj).__name__
    ]


# ---------------------------------------------------------------------------
# Expectations
# ---------------------------------------------------------------------------
def visible(role: str, scenario: str) -> bool:
    if scenario == "team":
        return role in MEMBERS or role == "emergency_access"
    if scenario == "sensitive":
        return role in SENSITIVE_VIEWERS
    return False  # other team, missing, or a child of another patient under this one


def may_edit(role: str, target) -> bool:
    if role in MANAGERS:
        return True
    owner = getattr(target, "owner_discipline", None)
    return owner is None or owner.code == ROLE_DISCIPLINE[role]


ANON = "anonymous-redirect"


def expected(rule: str, role: str, scenario: str, method: str, target, user=None) -> set:
    """Acceptable status codes (ANON: a redirect to the login page)."""
    if rule == "author-write":
        # a message: its author changes it; other members are refused, even the form
        author = user is not None and getattr(target, "author_id", None) == user.pk
        if method == "GET" and visible(role, scenario) and role != "emergency_access" and not author:
            return {403, 405}  # 405: retracting is POST only
        rule = "patient-write" if author else "team-manage"
        if not author and method == "POST" and visible(role, scenario) and role in MANAGERS:
            return {403}
    if rule == "team-leave":
        # ending a role: the team managers', or the role holder's own (leaving the team)
        own = user is not None and getattr(target, "user_id", None) == user.pk
        rule = "patient-write" if own and role != "emergency_access" else "team-manage"
    if rule == "partner":
        if role == "anonymous":
            return {ANON}
        if scenario == "none":  # the inbox: each partner its own organisation's
            return ({200} if method == "GET" else {200, 405}) if role in PARTNER_ROLES else {404}
        if role == "partner" and scenario == "team":
            return {200, 405} if method == "GET" else {"ok"}  # 405: the actions are POST only
        if role == "emergency_access" and method == "POST":
            return {403, 404}  # PatientAuditMiddleware refuses emergency writes before any view
        return {404}
    if rule == "public":
        return {200, 301, 302, 405, ANON} if method == "GET" else {200, 302, 400, 403, 405}
    if rule == "superuser":  # the same 404 as an unknown URL, also for anonymous
        return {200} if role == "admin" else {404}
    if rule == "feed":  # an unknown secret, whoever asks
        return {404}
    if role == "anonymous":
        return {ANON, 405} if method == "GET" and rule in (*WRITE_RULES, "login") else {ANON, 405}
    if rule == "login":
        return {200, 302, 405}  # 405: POST-only, e.g. logout
    if rule in HUDDLE_RULES:
        if scenario != "team" or role not in MEMBERS:
            return {404}
        if rule == "huddle-read":
            return {200}
        # the matrix's huddle was started by the case manager, who invited everyone else
        allowed = role == "case_manager" if rule == "huddle-manage" else role != "case_manager"
        if method == "GET":
            return {200, 302} if allowed else {403}
        return {"ok"} if allowed else {403}
    if rule == "self":
        if method == "POST":  # e.g. mark as read; 405 where the page only reads
            return {"ok"} if scenario == "own" else {404, 405}
        return {200, 302} if scenario == "own" else {404}
    if rule == "catalog-admin":
        return {200} if role == "admin" else {403, 404}
    if rule == "audit-admin":
        return {200} if role == "admin" else {403, 404}
    if rule == "patient-audit":
        return {200} if scenario == "team" and role in MANAGERS else {404}
    seen = visible(role, scenario)
    if rule == "patient-read":
        return {200} if seen else {404}
    # write rules
    if method == "GET":
        if not seen:
            return {404, 405}
        if role == "emergency_access":
            return {200, 403, 405}
        if rule == "team-manage" and role not in MANAGERS:
            return {200, 403, 405}
        return {200, 405}
    if not seen:
        return {404}
    if role == "emergency_access":
        return {403}
    allowed = (
        role in MANAGERS
        if rule == "team-manage"
        else may_edit(role, target)
        if rule == "item-write"
        else role in RECONCILERS
        if rule == "reconcile"
        else True
    )
    return {"ok"} if allowed else {403}


def forbidden_texts(role: str, m: Matrix) -> list[str]:
    texts = [OTHER_MRN, OTHER_NAME, *OTHER_TEXTS, OTHER_NAME.split()[1]]
    if role == "partner":  # the name of the patient its organisation's referral is for
        texts += [TEAM_MRN, "TEAMITEM-"]
    elif not visible(role, "team"):
        texts += [TEAM_MRN, TEAM_NAME, TEAM_NAME.split()[1], "TEAMITEM-"]
    texts.append(CONVERSATION_TEXTS["OTHERTEAM"])
    if role not in SENSITIVE_VIEWERS:
        texts += [*SENSITIVE_TEXTS, CONVERSATION_TEXTS["SENSITIVE"]]
    return texts


# ---------------------------------------------------------------------------
# Filling the URL kwargs
# ---------------------------------------------------------------------------
def fill(route: Route, m: Matrix, role: str) -> list[tuple[str, dict, object]]:
    kws = route.kwargs
    unknown = [
        k
        for k in kws
        if k not in PATIENT_KWARGS
        and k not in CATALOG_KWARGS
        and k not in ("notification_id", "feed_token", "link_token", "uidb64", "token")
    ]
    if unknown:
        raise LookupError(f"URL {route.name} ({route.route}): the matrix cannot fill {unknown}")
    if not kws:
        return [("none", {}, None)]
    if kws == ["feed_token"]:
        return [("unknown", {"feed_token": "x" * 43}, None)]
    if kws == ["link_token"]:
        return [("unknown", {"link_token": "eyJyIjoxfQ:1vAbCd:" + "x" * 43}, None)]
    if kws == ["uidb64", "token"]:
        return [("unknown", {"uidb64": "MQ", "token": "cz1abc-" + "0" * 32}, None)]
    if "notification_id" in kws:
        own = m.notifications.get(role) or m.notifications["nurse"]
        others = m.notifications["pharmacist" if role != "pharmacist" else "nurse"]
        out = [("other", {"notification_id": others.pk}, others)]
        if role != "anonymous":
            out.insert(0, ("own", {"notification_id": own.pk}, own))
        return out
    if all(k in CATALOG_KWARGS for k in kws):
        return [("team", {k: m.catalog[k].pk for k in kws}, m.catalog[kws[0]])]
    target_key = next(k for k in PATIENT_KWARGS if k in kws)
    out = []
    bags = [("team", m.team)]
    if role in OTHER_SCENARIO_ROLES:
        bags.append(("other", m.other))
    for name, bag in bags:
        out.append((name, {k: (bag[k].pk if k in bag else m.catalog[k].pk) for k in kws}, bag[target_key]))
    if target_key in SENSITIVE_KWARGS:
        bag = m.sensitive
        out.append(
            ("sensitive", {k: (bag[k].pk if k in bag else m.catalog[k].pk) for k in kws}, bag[target_key])
        )
    if role in ("case_manager", "outsider"):
        missing = {k: (m.team[k].pk if k in m.team else m.catalog[k].pk) for k in kws}
        missing[target_key] = 987_654_321
        out.append(("missing", missing, None))
        if len([k for k in kws if k in PATIENT_KWARGS]) > 1:
            # the team's parent with another patient's child: never a way in
            mixed = dict(out[0][1])
            mixed[target_key] = m.other[target_key].pk
            out.append(("mismatch", mixed, m.other[target_key]))
    return out


# ---------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------
def _tuple_writes() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables")
        return {
            name: n
            for name, n in cursor.fetchall()
            if n
            and name not in WRITE_EXEMPT_TABLES
            and not name.startswith(("axes_", "careteam_auditevent_"))  # the audit's monthly partitions
        }


def _request(client: Client, method: str, url: str):
    """One request whose effects are rolled back: the response (or the crash), the tables
    a POST wrote to, and the outcomes of the audit events it wrote."""
    post = method == "POST"
    with transaction.atomic():
        before = _tuple_writes() if post else {}
        last_event = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        try:
            response = client.post(url, {}) if post else client.get(url)
        except Exception as exc:  # noqa: BLE001 - a crash is a finding, reported below
            transaction.set_rollback(True)
            return None, f"{type(exc).__name__}: {exc}", {}, set()
        after = _tuple_writes() if post else {}
        audited = set(AuditEvent.objects.filter(pk__gt=last_event).values_list("outcome", flat=True))
        transaction.set_rollback(True)
    wrote = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
    return response, None, wrote, audited


def _status_ok(response, allowed: set, login_url: str) -> bool:
    code = response.status_code
    to_login = code == 302 and response["Location"].startswith(login_url)
    if ANON in allowed and to_login:
        return True
    if "ok" in allowed:
        return code < 500 and code not in (403, 404) and not to_login
    if to_login:
        return False
    if code == 302 and 200 in allowed:
        return True  # an allowed page may send the user on (not to the login page)
    return code in allowed


COUNT_RULES = {"login", "patient-read"}
# not allowed to see the sensitive items, not on the team at all, emergency access
COUNT_ROLES = {"nurse", "emergency_access", "outsider"}
_CSRF = re.compile(rb'(X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+')


def _normalized(response) -> bytes:
    if response is None or getattr(response, "streaming", False):
        return b""
    return _CSRF.sub(rb"\1", response.content)


def _add_hidden_items(world, m: Matrix) -> None:
    """Items none of COUNT_ROLES may see: sensitive ones on the team's plan (open and
    overdue, so they would count), and a whole new patient on another team."""
    d = f.discipline
    bh = world.behavioural_health
    plan = m.team["plan_id"]
    overdue = timezone.localdate() - dt.timedelta(days=3)
    f.NeedFactory(care_plan=plan, description="HIDDEN-NEED", sensitivity=bh, is_barrier=True)
    f.ActivityFactory(
        care_plan=plan,
        title="HIDDEN-ACTIVITY",
        owner_discipline=d("behavioural-health"),
        sensitivity=bh,
        due_date=overdue,
    )
    Note.objects.create(care_plan=plan, text="HIDDEN-NOTE", author=world.behavioural, sensitivity=bh)
    # unread conversations about a hidden need, and marked sensitive: never in a count
    hidden_need = f.NeedFactory(care_plan=plan, description="HIDDEN-TALK-NEED", sensitivity=bh)
    _conversation(m.team["patient_id"], hidden_need, world.behavioural, "HIDDEN-TALK")
    from careteam.models import Conversation, Message

    marked = Conversation.objects.create(
        patient=m.team["patient_id"], subject="HIDDEN-MARKED", started_by=world.lead, sensitivity=bh
    )
    Conversation.objects.filter(pk=marked.pk).update(
        last_message=Message.objects.create(conversation=marked, author=world.lead, text="HIDDEN-MARKED-TEXT")
    )
    # a goal that exists only for a hidden need is hidden (and not counted) with it
    f.GoalFactory(care_plan=plan, description="HIDDEN-GOAL").needs.add(
        f.NeedFactory(care_plan=plan, description="HIDDEN-GOAL-NEED", sensitivity=bh)
    )
    patient = f.PatientFactory(mrn="MRN-HIDDEN-1", given_name="Hidden", family_name="Person")
    team_services.membership_add(patient=patient, user=world.other_team_nurse, discipline=d("nursing"))
    other_plan = f.CarePlanFactory(patient=patient, title="Hidden plan", review_due=overdue)
    f.NeedFactory(care_plan=other_plan, description="HIDDEN-OTHER-NEED")
    f.ActivityFactory(care_plan=other_plan, title="HIDDEN-OTHER-ACTIVITY", due_date=overdue)
    f.HandoffFactory(
        patient=patient, from_user=world.other_team_nurse, to_user=None, to_discipline=d("nursing")
    )
    # completed positive screenings (the dashboard's measures count them): a PHQ-9 on
    # the team's plan, and one on the other team's patient
    for screened, screened_plan, sensitivity in (
        (m.team["patient_id"], plan, bh),
        (patient, other_plan, None),
    ):
        response = _screening(screened, screened_plan, world.case_manager, sensitivity)
        response.status, response.completed_at = "completed", timezone.now() - dt.timedelta(days=1)
        response.save()
        rule = response.questionnaire.rules.first()
        ProposedNeed.objects.create(
            response=response,
            rule=rule,
            category=rule.category,
            domain=rule.domain,
            description="HIDDEN-PROPOSAL",
            sensitivity=sensitivity,
        )


def test_permission_matrix(world, capsys):
    started = time.monotonic()
    m = build(world)
    login_url = reverse("login")
    pages: list[tuple[str, str, str, bytes]] = []
    controls = 0
    failures: list[str] = []
    cases = 0
    checked_urls = 0
    for route in routes():
        if route.rule in SKIPPED_RULES or route.rule is None or route.rule not in KNOWN_RULES:
            continue  # the rule test above names these
        checked_urls += 1
        methods = ("GET", "POST") if route.rule in (*WRITE_RULES, "self", "partner") else ("GET",)
        for role in NON_PATIENT_ROLES if route.rule in NON_PATIENT_RULES else (*ROLES, *PARTNER_ROLES):
            try:
                filled = fill(route, m, role)
            except LookupError as exc:
                failures.append(str(exc))
                break
            leaks = forbidden_texts(role, m)
            for scenario, kwargs, target in filled:
                url = reverse(route.name, kwargs=kwargs)
                for method in methods:
                    allowed = expected(route.rule, role, scenario, method, target, m.users.get(role))
                    if (
                        role in PARTNER_ROLES
                        and not url.startswith(PARTNER_PATHS)
                        and route.name not in ("healthz", "readyz")  # probes answer before sessions
                    ):
                        # careteam.middleware.AccountKindMiddleware: 404, but the site
                        # root sends a partner to its inbox
                        allowed = {302} if url == "/" else {404}
                    response, crash, wrote, audited = _request(m.clients[role], method, url)
                    cases += 1
                    where = f"{method} {url} [{route.name}: {route.rule}] as {role} ({scenario})"
                    if crash:
                        failures.append(f"{where}: raised {crash}")
                        continue
                    if response.status_code >= 500 or not _status_ok(response, allowed, login_url):
                        location = response.get("Location", "")
                        failures.append(
                            f"{where}: got {response.status_code} {location}, expected {sorted(map(str, allowed))}"
                        )
                    if method == "POST" and wrote and "ok" not in allowed:
                        failures.append(f"{where}: refused yet wrote to {sorted(wrote)}")
                    if route.rule in PATIENT_RULES and role != "anonymous":
                        code = response.status_code
                        if code in (403, 404) and "denied" not in audited:
                            failures.append(f"{where}: refused ({code}) but no denial was audited")
                        if code == 200 and method == "GET" and "allowed" not in audited:
                            failures.append(f"{where}: read but not audited")
                    body = b"" if getattr(response, "streaming", False) else response.content
                    text = body.decode("utf-8", "replace")
                    leaked = [t for t in leaks if t in text]
                    if leaked:
                        failures.append(f"{where}: response shows {leaked}")
                    if (
                        method == "GET"
                        and response.status_code == 200
                        and route.rule in COUNT_RULES
                        and role in COUNT_ROLES
                        and scenario in ("none", "team")
                    ):
                        pages.append((where, role, url, _normalized(response)))
    # counts: adding items the role may not see must not change the page at all
    for where, role, url, before in pages:
        client = m.clients[role]
        with transaction.atomic():
            _add_hidden_items(world, m)
            with_hidden = _normalized(_request(client, "GET", url)[0])
            transaction.set_rollback(True)
        cases += 1
        # a page that differs from itself a moment later (a clock on it) proves nothing
        if before != with_hidden and before == _normalized(_request(client, "GET", url)[0]):
            failures.append(f"{where}: the page changes when items hidden from {role} are added (counts?)")
        if role == "nurse":
            # control: the comparison does see items the nurse may see
            with transaction.atomic():
                f.NeedFactory(care_plan=m.team["plan_id"], description="VISIBLE-NEED", is_barrier=True)
                f.ActivityFactory(
                    care_plan=m.team["plan_id"], title="VISIBLE-ACTIVITY", due_date=dt.date(2020, 1, 1)
                )
                if _normalized(_request(client, "GET", url)[0]) != before:
                    controls += 1
                transaction.set_rollback(True)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\npermission matrix: {cases} cases over {checked_urls} URLs x {len(ROLES)} roles "
            f"({len(pages)} pages checked for hidden counts, {controls} controls) in {elapsed:.1f}s"
        )
    assert not failures, f"{len(failures)} of {cases} matrix cases failed:\n" + "\n".join(failures)
    assert controls > 0, "no page changed when visible items were added: the count check sees nothing"
    assert checked_urls >= 3
    assert cases > 100


def test_the_emergency_access_role_really_holds_a_grant(world):
    m = build(world)
    assert EmergencyAccess.objects.filter(
        user=m.users["emergency_access"], expires_at__gt=timezone.now()
    ).exists()
    assert not TeamMembership.objects.current().filter(user=m.users["former_member"]).exists()
    assert uuid.UUID(str(m.catalog["service_id"].pk))


# ---------------------------------------------------------------------------
# Linked objects: a hidden item reached from items the role may see
# ---------------------------------------------------------------------------
# Every hidden item carries a marker text and an id no other row has, so a page that
# follows a relation the permissions module did not filter shows one or the other.
LINK_MARKS = {
    "need": "LINKED-BH-NEED-K4",
    "activity": "LINKED-BH-ACTIVITY-K4",
    "comment": "LINKED-COMMENT-K4",
    "relabelled": "LINKED-RELABELLED-NEED-K4",
    "referral": "LINKED-REFERRAL-K4",
    "referral_need": "LINKED-REFERRAL-NEED-K4",
    "goal": "LINKED-GOAL-K4",
    "goal_need": "LINKED-GOAL-NEED-K4",
    "goal_comment": "LINKED-GOAL-COMMENT-K4",
    "conversation": "LINKED-CONVERSATION-K4",
    "conversation_message": "LINKED-CONVERSATION-MESSAGE-K4",
    "conversation_need": "LINKED-CONVERSATION-NEED-K4",
}
LINK_IDS = {key: 7_340_011 + 97 * n for n, key in enumerate(LINK_MARKS)}
VISIBLE_LINKING = ("VISIBLE-LINKING-ACTIVITY-K4", "VISIBLE-LINKING-GOAL-K4", "VISIBLE-LINKING-NEED-K4")
HX = {"HTTP_HX_REQUEST": "true"}
# list and search endpoints: (route name, query string); {pid} is the team patient
LINK_QUERIES = {
    # the change list, the plan as it was on a day, and the difference between two moments
    "careplans:plan_history": ("", "?at={today}", "?from=1&to={later}"),
    "careplans:plan_print": ("", "?version=family", "?version=family&sensitive=1"),
    "fhir-careplan-search": ("?patient={pid}",),
    "fhir-careteam-search": ("?patient={pid}",),
    "fhir-goal-search": ("?patient={pid}", "?subject=Patient/{pid}"),
    "fhir-servicerequest-search": ("?patient={pid}",),
    "fhir-task-search": ("?patient={pid}",),
    "fhir-questionnaireresponse-search": ("?patient={pid}",),
    "fhir-patient-search": ("?_id={pid}",),
}
# a PDF is the print view's HTML rendered (its text is compressed); the print view is read
OFF_TEAM = {"anonymous", "admin", "outsider", "former_member", "future_member"}
LINK_SKIPPED = {"careplans:plan_pdf", "logout", "api-schema", "api-docs"}


def _seed_linked(world, m: Matrix) -> dict:
    """Hidden items (behavioural health: the nurse, the pharmacist and emergency access do
    not see them) linked from visible ones, and the visible ones to reach them from."""
    d, bh, plan = f.discipline, world.behavioural_health, world.plan
    ids = LINK_IDS

    def hidden_need(key: str):
        return f.NeedFactory(
            id=ids[key],
            care_plan=plan,
            domain="behavioural",
            category="mental-health",
            description=LINK_MARKS[key],
            sensitivity=bh,
        )

    need = hidden_need("need")
    visible_need = f.NeedFactory(care_plan=plan, description=VISIBLE_LINKING[2])
    visible_goal = f.GoalFactory(
        care_plan=plan, description=VISIBLE_LINKING[1], owner_discipline=d("nursing")
    )
    # a goal with a hidden need and a visible one stays visible (it has a visible link)
    need.goals.add(visible_goal)
    visible_need.goals.add(visible_goal)
    activity = f.ActivityFactory(
        care_plan=plan, title=VISIBLE_LINKING[0], owner_discipline=d("nursing"), assigned_to=world.nurse
    )
    activity.needs.set([need, visible_need])
    activity.goals.set([visible_goal])
    # a handoff the nurse receives about a hidden activity
    hidden_activity = f.ActivityFactory(
        id=ids["activity"],
        care_plan=plan,
        title=LINK_MARKS["activity"],
        owner_discipline=d("behavioural-health"),
        sensitivity=bh,
    )
    hidden_activity.needs.set([visible_need])
    handoff = f.HandoffFactory(
        patient=world.patient,
        care_plan=plan,
        activity=hidden_activity,
        from_user=world.case_manager,
        to_user=world.nurse,
        situation="Visible handoff K4",
    )
    # a comment written while its need was visible; the need is marked sensitive later
    relabelled = f.NeedFactory(id=ids["relabelled"], care_plan=plan, description=LINK_MARKS["relabelled"])
    Note.objects.create(
        id=ids["comment"], care_plan=plan, need=relabelled, author=world.nurse, text=LINK_MARKS["comment"]
    )
    relabelled.sensitivity = bh
    relabelled.save()
    activity.needs.add(relabelled)
    # a referral made from a hidden need
    referral_need = hidden_need("referral_need")
    f.ReferralFactory(
        id=ids["referral"],
        patient=world.patient,
        care_plan=plan,
        need=referral_need,
        service=m.catalog["service_id"],
        referred_by=world.behavioural,
        reason=LINK_MARKS["referral"],
        status="requested",
        sent_at=timezone.now(),
        consent=f.ConsentFactory(patient=world.patient),
    )
    visible_referral = f.ReferralFactory(
        patient=world.patient,
        care_plan=plan,
        need=visible_need,
        service=m.catalog["service_id"],
        referred_by=world.nurse,
        reason="Visible referral K4",
    )
    # a goal that exists only for a hidden need
    goal = f.GoalFactory(
        id=ids["goal"], care_plan=plan, description=LINK_MARKS["goal"], owner_discipline=None
    )
    hidden_need("goal_need").goals.add(goal)
    Note.objects.create(
        id=ids["goal_comment"],
        care_plan=plan,
        goal=goal,
        author=world.behavioural,
        text=LINK_MARKS["goal_comment"],
    )
    # a conversation about a hidden need (listed on the chart, the inbox, the nav count),
    # and a visible one whose message was made into the hidden activity
    from careteam.models import Conversation, Message

    hidden_talk = Conversation.objects.create(
        id=ids["conversation"],
        patient=world.patient,
        need=hidden_need("conversation_need"),
        subject=LINK_MARKS["conversation"],
        started_by=world.behavioural,
    )
    Conversation.objects.filter(pk=hidden_talk.pk).update(
        last_message=Message.objects.create(
            id=ids["conversation_message"],
            conversation=hidden_talk,
            author=world.behavioural,
            text=LINK_MARKS["conversation_message"],
        )
    )
    talk = Conversation.objects.create(
        patient=world.patient, need=visible_need, subject="Visible conversation K4", started_by=world.nurse
    )
    made_into = Message.objects.create(
        conversation=talk, author=world.case_manager, text="Visible message K4", activity=hidden_activity
    )
    Conversation.objects.filter(pk=talk.pk).update(last_message=made_into)
    return {
        "conversation_id": talk,
        "message_id": made_into,
        "patient_id": world.patient,
        "plan_id": plan,
        "activity_id": activity,
        "need_id": visible_need,
        "goal_id": visible_goal,
        "handoff_id": handoff,
        "referral_id": visible_referral,
        "membership_id": m.team["membership_id"],
        "screening_id": m.team["screening_id"],
        "note_id": m.team["note_id"],
        "visit_id": _linked_visit(world, m, hidden_activity),
        "authorisation_id": m.team["authorisation_id"],
    }


def _linked_visit(world, m: Matrix, hidden_activity):
    """A visit the nurse sees, booked for a visible activity and the hidden one."""
    visit = f.VisitFactory(
        patient=world.patient, clinician=world.nurse, authorisation=m.team["authorisation_id"]
    )
    visible = f.ActivityFactory(care_plan=world.plan, title="Visible visit activity K4")
    visit.activities.set([hidden_activity, visible])
    return visit


def _linked_urls(bag: dict, m: Matrix) -> list[tuple[str, str, dict]]:
    """(method, url, headers) for every route fillable from the visible linking items:
    pages (plain and htmx), forms posted empty (their error pages), API and FHIR."""
    pid = bag["patient_id"].pk
    today = timezone.localdate().isoformat()
    later = int((timezone.now() + dt.timedelta(days=1)).timestamp() * 1_000_000)
    api_objects = {
        "api-patient": "patient_id",
        "api-care-plan": "plan_id",
        "api-goal": "goal_id",
        "api-need": "need_id",
        "api-activity": "activity_id",
        "api-handoff": "handoff_id",
        "api-referral": "referral_id",
        "api-team-membership": "membership_id",
    }
    urls: list[tuple[str, str, dict]] = []
    for route in routes():
        if route.name is None or route.name in LINK_SKIPPED or route.rule in ("admin-site", "catalog-admin"):
            continue
        kwargs: dict = {}
        for k in route.kwargs:
            if k in bag:
                kwargs[k] = bag[k].pk
            elif k in m.catalog:
                kwargs[k] = m.catalog[k].pk
            elif k == "pk" and route.name.rsplit("-", 1)[0] in api_objects:
                kwargs[k] = bag[api_objects[route.name.rsplit("-", 1)[0]]].pk
            elif k == "task_id":
                kwargs[k] = f"handoff-{bag['handoff_id'].pk}"
            elif k == "response_id":
                kwargs[k] = bag["screening_id"].pk
            else:  # notifications are the caller's own: the matrix above covers them
                break
        else:
            url = reverse(route.name, kwargs=kwargs)
            for query in LINK_QUERIES.get(route.name, ("",)):
                full = url + query.format(pid=pid, today=today, later=later)
                urls.append(("GET", full, {}))
                if route.rule != "api":
                    urls.append(("GET", full, HX))
            if route.rule in WRITE_RULES:
                urls.append(("POST", url, HX))
                urls.append(("POST", url, {}))
    return urls


def test_hidden_items_linked_from_visible_ones_never_show(world, capsys):
    """For every role: no page, fragment, API answer, FHIR resource or print of the items
    the role may see shows the text or the id of a hidden item linked from them."""
    started = time.monotonic()
    m = build(world)
    bag = _seed_linked(world, m)
    urls = _linked_urls(bag, m)
    texts = list(LINK_MARKS.values())
    hidden_ids = [str(i) for i in LINK_IDS.values()]
    failures: list[str] = []
    seen_by_viewers: set[str] = set()
    seen_visible: set[str] = set()
    cases = 0
    for role in ROLES:
        sees_all = role in SENSITIVE_VIEWERS
        client = m.clients[role]
        for method, url, headers in urls:
            if role in OFF_TEAM and (method == "POST" or headers):
                continue  # refused at the door: the plain reads prove it
            if sees_all and role != "case_manager" and (method == "POST" or headers):
                continue  # sees every item: the case manager is the control
            with transaction.atomic():
                post = method == "POST"
                response = client.post(url, {}, **headers) if post else client.get(url, **headers)
                transaction.set_rollback(True)
            cases += 1
            where = f"{method} {url}{' (htmx)' if headers else ''} as {role} [{response.status_code}]"
            if response.status_code >= 500:
                failures.append(f"{where}: server error")
                continue
            body = _normalized(response).decode("utf-8", "replace")
            if sees_all:
                seen_by_viewers.update(t for t in texts if t in body)
                continue
            if role == "nurse":
                seen_visible.update(t for t in VISIBLE_LINKING if t in body)
            leaked = [t for t in texts if t in body] + [f"id {i}" for i in hidden_ids if i in body]
            if leaked:
                failures.append(f"{where}: shows {leaked}")
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nlinked hidden items: {cases} responses over {len(urls)} URLs x {len(ROLES)} roles in {elapsed:.1f}s"
        )
    assert not failures, f"{len(failures)} of {cases} responses leak hidden linked items:\n" + "\n".join(
        failures
    )
    # controls: the pages walked do reach every hidden item (for those who may see it)
    # and do show the visible items they are reached from
    assert seen_by_viewers == set(texts), f"never shown even to its viewers: {set(texts) - seen_by_viewers}"
    assert seen_visible == set(VISIBLE_LINKING), f"the nurse never saw {set(VISIBLE_LINKING) - seen_visible}"
