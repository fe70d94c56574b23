"""The foundation: constraints hold in the database, services refuse illegal transitions
and write nothing, demo data loads twice without duplicates, configuration is sound."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from careplans import services as plan_services
from careplans.models import Activity, CarePlan, Goal
from careteam import services as team_services
from careteam.concurrency import StaleVersionError
from careteam.models import Discipline, Handoff, TeamMembership, User
from careteam.permissions import patient_access
from patients.models import Patient
from referrals.models import Referral
from tests import factories as f

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------------------
# Reference data and database constraints
# ---------------------------------------------------------------------------
def test_the_ten_disciplines_are_seeded_by_migration():
    assert set(Discipline.objects.values_list("code", flat=True)) >= {
        "physician",
        "nursing",
        "case-management",
        "social-work",
        "pharmacy",
        "physical-therapy",
        "occupational-therapy",
        "dietetics",
        "behavioural-health",
        "home-health",
    }


def test_database_refuses_a_second_active_case_manager(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        TeamMembership.objects.create(
            patient=world.patient,
            user=world.nurse,
            discipline=f.discipline("case-management"),
            role="case-manager",
            status="active",
        )


def test_service_refuses_a_second_case_manager_with_a_clear_message(world):
    before = TeamMembership.objects.count()
    with pytest.raises(ValidationError, match="already has an active case manager"):
        team_services.membership_add(
            patient=world.patient,
            user=world.nurse,
            discipline=f.discipline("case-management"),
            role="case-manager",
        )
    assert TeamMembership.objects.count() == before


def test_database_refuses_membership_ending_before_it_starts(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        f.TeamMembershipFactory(
            patient=world.patient, start_date=dt.date(2026, 5, 1), end_date=dt.date(2026, 4, 1)
        )


def test_database_refuses_duplicate_mrn(reference_data):
    f.PatientFactory(mrn="DUP-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        f.PatientFactory(mrn="DUP-1")


def test_database_refuses_a_handoff_without_receiver(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        f.HandoffFactory(patient=world.patient, from_user=world.nurse, to_user=None, to_discipline=None)


def test_database_refuses_unknown_status_codes(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        Goal.objects.create(care_plan=world.plan, description="x", lifecycle_status="done")


def test_database_refuses_two_active_plans_for_one_patient(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        f.CarePlanFactory(patient=world.patient, status="active")


def test_database_refuses_a_sent_referral_without_consent(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        f.ReferralFactory(
            patient=world.patient, care_plan=world.plan, status="requested", sent_at=timezone.now()
        )


# ---------------------------------------------------------------------------
# Services: transitions, validation, optimistic concurrency
# ---------------------------------------------------------------------------
def test_illegal_goal_transition_is_refused_and_nothing_changes(world):
    goal = f.GoalFactory(care_plan=world.plan, lifecycle_status="cancelled", description="Walk again")
    access = patient_access(world.case_manager, world.patient)
    with pytest.raises(ValidationError) as exc:
        plan_services.item_update(
            access=access,
            item=goal,
            by=world.case_manager,
            changes={"lifecycle_status": "active", "description": "Changed"},
            expected_version=goal.version,
        )
    assert "Cannot change lifecycle_status from 'cancelled' to 'active'" in str(exc.value)
    goal.refresh_from_db()
    assert (goal.lifecycle_status, goal.description, goal.version) == ("cancelled", "Walk again", 1)
    assert goal.history.count() == 1


def test_legal_activity_transition_bumps_version_and_keeps_history(world):
    activity = f.ActivityFactory(care_plan=world.plan, owner_discipline=f.discipline("nursing"))
    access = patient_access(world.nurse, world.patient)
    updated = plan_services.item_update(
        access=access, item=activity, by=world.nurse, changes={"status": "in-progress"}, expected_version=1
    )
    assert updated.version == 2 and updated.status == "in-progress"
    latest = updated.history.first()
    assert latest.history_user == world.nurse and latest.status == "in-progress"


def test_stale_version_is_refused(world):
    activity = f.ActivityFactory(care_plan=world.plan, owner_discipline=f.discipline("nursing"))
    access = patient_access(world.nurse, world.patient)
    plan_services.item_update(
        access=access, item=activity, by=world.nurse, changes={"title": "A"}, expected_version=1
    )
    with pytest.raises(StaleVersionError):
        plan_services.item_update(
            access=access, item=activity, by=world.nurse, changes={"title": "B"}, expected_version=1
        )
    activity.refresh_from_db()
    assert activity.title == "A"


def test_clinician_cannot_edit_another_disciplines_activity(world):
    from careteam.permissions import ReadOnlyAccess

    activity = f.ActivityFactory(care_plan=world.plan, owner_discipline=f.discipline("pharmacy"))
    access = patient_access(world.nurse, world.patient)
    with pytest.raises(ReadOnlyAccess, match="owned by"):
        plan_services.item_update(
            access=access, item=activity, by=world.nurse, changes={"title": "x"}, expected_version=1
        )
    cm_access = patient_access(world.case_manager, world.patient)
    plan_services.item_update(
        access=cm_access, item=activity, by=world.case_manager, changes={"title": "x"}, expected_version=1
    )


def test_handoff_requires_all_sbar_fields_and_writes_nothing(world):
    with pytest.raises(ValidationError) as exc:
        team_services.handoff_create(
            by=world.nurse,
            access=patient_access(world.nurse, world.patient),
            to_user=world.pharmacist,
            due_at=timezone.now() + dt.timedelta(hours=4),
            situation="Fell",
            background="",
            assessment="  ",
            recommendation="Review",
        )
    assert set(exc.value.message_dict) == {"background", "assessment"}
    assert not Handoff.objects.exists()


def test_handoff_to_someone_off_the_team_is_refused(world):
    with pytest.raises(ValidationError, match="not on this patient's care team"):
        team_services.handoff_create(
            by=world.nurse,
            access=patient_access(world.nurse, world.patient),
            to_user=world.outsider,
            due_at=timezone.now(),
            situation="s",
            background="b",
            assessment="a",
            recommendation="r",
        )


def test_discipline_queue_first_acceptance_wins(world):
    second_pharmacist = f.UserFactory(username="pharm2", disciplines=["pharmacy"])
    team_services.membership_add(
        patient=world.patient, user=second_pharmacist, discipline=f.discipline("pharmacy")
    )
    handoff = team_services.handoff_create(
        by=world.nurse,
        access=patient_access(world.nurse, world.patient),
        to_discipline=f.discipline("pharmacy"),
        due_at=timezone.now() + dt.timedelta(hours=2),
        situation="s",
        background="b",
        assessment="a",
        recommendation="r",
    )
    team_services.handoff_accept(
        access=patient_access(world.pharmacist, handoff.patient), handoff=handoff, by=world.pharmacist
    )
    with pytest.raises(ValidationError, match="already accepted by"):
        team_services.handoff_accept(
            access=patient_access(second_pharmacist, handoff.patient), handoff=handoff, by=second_pharmacist
        )
    handoff.refresh_from_db()
    assert handoff.accepted_by == world.pharmacist and handoff.acknowledged_at is not None


def test_illegal_handoff_transition_is_refused(world):
    handoff = team_services.handoff_create(
        by=world.nurse,
        access=patient_access(world.nurse, world.patient),
        to_user=world.pharmacist,
        due_at=timezone.now(),
        situation="s",
        background="b",
        assessment="a",
        recommendation="r",
    )
    with pytest.raises(ValidationError, match="Cannot change status from 'requested' to 'completed'"):
        team_services.handoff_set_status(
            access=patient_access(world.pharmacist, handoff.patient),
            handoff=handoff,
            by=world.pharmacist,
            status="completed",
        )
    handoff.refresh_from_db()
    assert handoff.status == "requested"


# ---------------------------------------------------------------------------
# Demo data, migrations, deploy checks
# ---------------------------------------------------------------------------
def test_seed_demo_is_idempotent():
    call_command("seed_demo", verbosity=0)
    counts = (
        Patient.objects.count(),
        CarePlan.objects.count(),
        Activity.objects.count(),
        TeamMembership.objects.count(),
        Referral.objects.count(),
        User.objects.count(),
    )
    call_command("seed_demo", verbosity=0)
    again = (
        Patient.objects.count(),
        CarePlan.objects.count(),
        Activity.objects.count(),
        TeamMembership.objects.count(),
        Referral.objects.count(),
        User.objects.count(),
    )
    assert counts == again
    assert counts[0] >= 8
    outsider = User.objects.get(username="outsider")
    from careteam.permissions import patients_for

    assert not patients_for(outsider).exists()
    assert not patients_for(User.objects.get(username="admin")).exists()
    for name in (
        "physician",
        "nurse",
        "casemanager",
        "socialworker",
        "pharmacist",
        "physio",
        "dietitian",
        "behavioral",
        "homehealth",
    ):
        visible = patients_for(User.objects.get(username=name)).count()
        assert 0 < visible < counts[0], name


def _manage(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG",)}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.django_db(transaction=False)
def test_models_and_migrations_agree():
    result = _manage("makemigrations", "--check", "--dry-run", env_extra={"DEBUG": "true"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_pass_check_deploy():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env_extra={
            "DEBUG": "false",
            "SECRET_KEY": "k" * 20 + "Zq8#vLp2@xR7!mN4$wB9%tY6^cF3&hJ1*",
            "ALLOWED_HOSTS": "careteam.example.org",
            "SITE_URL": "https://careteam.example.org",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_manage_py_in_a_bare_checkout_runs_with_development_settings():
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_web_server_refuses_to_start_without_a_secret_even_in_a_bare_checkout():
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_settings_refuse_to_start_without_a_secret_in_production():
    env = {"DEBUG": "false", "SECRET_KEY": ""}
    result = _manage("check", env_extra=env)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_settings_refuse_a_non_postgres_database():
    result = _manage("check", env_extra={"DEBUG": "true", "DATABASE_URL": "sqlite:///x.db"})
    assert result.returncode != 0 and "PostgreSQL only" in result.stderr


def test_settings_refuse_to_start_without_a_site_url_in_production():
    env = {"DEBUG": "false", "SECRET_KEY": "k" * 20 + "Zq8#vLp2@xR7!mN4$wB9%tY6^cF3&hJ1*", "SITE_URL": ""}
    result = _manage("check", env_extra=env)
    assert result.returncode != 0 and "SITE_URL must be set" in result.stderr


def test_settings_refuse_a_site_url_that_is_not_an_absolute_address():
    result = _manage("check", env_extra={"DEBUG": "true", "SITE_URL": "careteam.example.org"})
    assert result.returncode != 0 and "SITE_URL must be an absolute" in result.stderr
