"""Personas every test can use: a team with a case manager, a lead, discipline members,
an outsider clinician, and an administrator; plus a patient and plan on that team and
another patient on a different team."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.utils import timezone

from careteam import services as team_services
from careteam.models import SensitivityCategory, User
from careteam.reference import ensure_reference_data
from tests import factories as f


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Django empties the tables between transactional tests with TRUNCATE, which the audit
    table refuses (careteam/migrations/0005) unless the session says otherwise."""
    from django.conf import settings

    options = settings.DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c careteam.allow_audit_truncate=on".strip()


@pytest.fixture(autouse=True)
def _plain_http(settings):
    """Tests speak plain HTTP to the test server; production keeps the TLS settings."""
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.AXES_ENABLED = True
    settings.REQUIRE_2FA = False  # tests that need two-factor sign-in turn it on
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    settings.NOT_FOUND_FLOOR_MS = 0  # tests that need the 404 floor turn it on


@pytest.fixture
def reference_data(db):
    ensure_reference_data()


@dataclass
class World:
    patient: object
    plan: object
    other_patient: object
    other_plan: object
    case_manager: User
    lead: User
    nurse: User
    pharmacist: User
    behavioural: User
    outsider: User
    other_team_nurse: User
    admin: User
    behavioural_health: SensitivityCategory


@pytest.fixture
def world(reference_data) -> World:
    today = timezone.localdate()
    start = today - dt.timedelta(days=30)
    cm = f.UserFactory(username="cm", disciplines=["case-management"])
    lead = f.UserFactory(username="lead", disciplines=["physician"])
    nurse = f.UserFactory(username="nurse1", disciplines=["nursing"])
    pharmacist = f.UserFactory(username="pharm1", disciplines=["pharmacy"])
    behavioural = f.UserFactory(username="bh1", disciplines=["behavioural-health"])
    outsider = f.UserFactory(username="outsider1", disciplines=["nursing"])
    other_nurse = f.UserFactory(username="nurse2", disciplines=["nursing"])
    admin = f.UserFactory(username="admin1", is_staff=True, is_superuser=True)
    patient = f.PatientFactory(mrn="P-TEAM-1", given_name="Alice", family_name="Team")
    other = f.PatientFactory(mrn="P-OTHER-1", given_name="Bob", family_name="Elsewhere")
    d = f.discipline
    for user, code, role in [
        (cm, "case-management", "case-manager"),
        (lead, "physician", "lead"),
        (nurse, "nursing", "member"),
        (pharmacist, "pharmacy", "member"),
        (behavioural, "behavioural-health", "member"),
    ]:
        team_services.membership_add(
            patient=patient, user=user, discipline=d(code), role=role, start_date=start
        )
    team_services.membership_add(patient=other, user=other_nurse, discipline=d("nursing"), start_date=start)
    plan = f.CarePlanFactory(patient=patient, title="Team plan")
    other_plan = f.CarePlanFactory(patient=other, title="Other plan")
    return World(
        patient=patient,
        plan=plan,
        other_patient=other,
        other_plan=other_plan,
        case_manager=cm,
        lead=lead,
        nurse=nurse,
        pharmacist=pharmacist,
        behavioural=behavioural,
        outsider=outsider,
        other_team_nurse=other_nurse,
        admin=admin,
        behavioural_health=SensitivityCategory.objects.get(code="behavioural-health"),
    )
