"""A database migrated forward from an older schema comes out equal to a fresh one.

Two scratch databases (created here, dropped at the end; neither is the test database):
- "old": migrated to the schema of main at a3c191d (OLD_STATE: careteam 0023, before the
  emergency-access rename of 0024), given rows through that state's historical models
  (a patient, a team membership with its grant, an emergency access grant, then still
  `careteam_breakglassaccess`, an audit event, a plan with a goal), then migrated to the
  latest migrations;
- "fresh": migrated from zero.
Their `pg_dump --schema-only` must be equal (comments, SET lines and statement order left
out) and the old rows must still be there, the emergency access grant under its new table.

Each migration runs in a subprocess (`python -c` with Django set up on the scratch
database), the "old" and "fresh" ones side by side, so the test takes about as long as one
migration from zero and a short forward step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

# The last migration of each app at a3c191d (`git show a3c191d:<app>/migrations/`).
# Apps not named here (Django's, guardian's, simple_history's...) go to their latest.
OLD_STATE = {
    "careteam": "0023_audit_partitions",
    "patients": "0009_caregiver_account_consent_caregiver_access_and_more",
    "careplans": "0010_activity_for_patient_activity_shared_sensitivity_and_more",
    "referrals": "0008_partner_organisations",
    "transitions": "0001_initial",
    "visits": "0001_initial",
}

# Runs in the subprocess: argv = [database name, "old" | "latest"].
CHILD = r"""
import sys
from django.conf import settings

name, mode = sys.argv[1], sys.argv[2]
settings.DATABASES = {"default": {**settings.DATABASES["default"], "NAME": name}}
import django

django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

if mode == "latest":
    # post_migrate runs too (shipped content), as in a deployment
    call_command("migrate", interactive=False, verbosity=0)
    sys.exit(0)

import datetime as dt
import json
from tests.test_migrations_forward import OLD_STATE

executor = MigrationExecutor(connection)
targets = [
    (app, OLD_STATE[app]) if app in OLD_STATE else (app, migration)
    for app, migration in executor.loader.graph.leaf_nodes()
]
executor.migrate(targets)
apps = executor.loader.project_state(targets).apps
now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

User = apps.get_model("careteam", "User")
Discipline = apps.get_model("careteam", "Discipline")
Patient = apps.get_model("patients", "Patient")
nurse = User.objects.create(username="old-nurse", password="!", email="n@example.org", is_active=True)
outsider = User.objects.create(username="old-outsider", password="!", is_active=True)
nursing, _ = Discipline.objects.get_or_create(code="nursing", defaults={"name": "Nursing"})
patient = Patient.objects.create(
    mrn="OLD-1", given_name="Olga", family_name="Before", birth_date=dt.date(1950, 3, 1)
)
membership = apps.get_model("careteam", "TeamMembership").objects.create(
    patient=patient, user=nurse, discipline=nursing, role="member", status="active",
    start_date=dt.date(2026, 11, 1),
)
Permission = apps.get_model("auth", "Permission")
ContentType = apps.get_model("contenttypes", "ContentType")
ct, _ = ContentType.objects.get_or_create(app_label="patients", model="patient")
view, _ = Permission.objects.get_or_create(content_type=ct, codename="view_patient", defaults={"name": "view"})
apps.get_model("careteam", "PatientUserObjectPermission").objects.create(
    user=nurse, permission=view, content_object=patient
)
grant = apps.get_model("careteam", "BreakGlassAccess").objects.create(
    user=outsider, patient=patient, reason="Unconscious in the ED", started_at=now,
    expires_at=now + dt.timedelta(hours=4),
)
event = apps.get_model("careteam", "AuditEvent").objects.create(
    at=now, user=nurse, username="old-nurse", action="view", object_type="patients.patient",
    object_id=str(patient.pk), patient=patient, patient_ids=[patient.pk],
)
plan = apps.get_model("careplans", "CarePlan").objects.create(patient=patient, title="Old plan", status="active")
goal = apps.get_model("careplans", "Goal").objects.create(care_plan=plan, description="Walk to the shop")
print(json.dumps({
    "patient": patient.pk, "membership": membership.pk, "grant": grant.pk, "event": event.pk,
    "plan": plan.pk, "goal": goal.pk, "outsider": outsider.pk,
}))
"""


def _admin_params(dbname: str) -> dict:
    db = settings.DATABASES["default"]
    params = {
        "dbname": dbname,
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST"),
    }
    params["port"] = str(db["PORT"]) if db.get("PORT") else None
    return {k: v for k, v in params.items() if v}


def _run_child(name: str, mode: str) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, name, mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(proc: subprocess.Popen, what: str) -> str:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, f"{what} failed:\n{err[-4000:]}"
    return out


def _pg_dump() -> str:
    """A pg_dump not older than the server (Debian's versioned ones first, then PATH)."""
    with psycopg.connect(**_admin_params("postgres")) as c:
        major = int(c.execute("SHOW server_version_num").fetchone()[0]) // 10000
    found = sorted(
        (int(p.parent.parent.name), str(p))
        for p in Path("/usr/lib/postgresql").glob("*/bin/pg_dump")
        if p.parent.parent.name.isdigit()
    )
    for version, path in found:
        if version >= major:
            return path
    on_path = shutil.which("pg_dump")
    if on_path is None:
        pytest.fail("pg_dump is needed to compare schemas (apt-get install postgresql-client)")
    return on_path


def _schema(name: str) -> list[str]:
    """The schema as sorted statements, without comments, SET lines and pg_dump's
    per-run \\restrict key."""
    params = _admin_params(name)
    env = {**os.environ}
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD")):
        if key in params:
            env[var] = params[key]
    dump = subprocess.run(
        [_pg_dump(), "--schema-only", "--no-owner", "--no-privileges", name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [
        line
        for line in dump.splitlines()
        if line.strip()
        and not line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict"))
    ]
    return sorted(s.strip() for s in re.split(r";\n", "\n".join(lines) + "\n") if s.strip())


@pytest.fixture
def scratch_databases():
    names = [f"careteam_migr_{kind}_{uuid.uuid4().hex[:10]}" for kind in ("old", "fresh")]
    with psycopg.connect(**_admin_params("postgres"), autocommit=True) as c:
        for name in names:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield names
    finally:
        with psycopg.connect(**_admin_params("postgres"), autocommit=True) as c:
            for name in names:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_migrated_from_the_old_schema_equals_a_fresh_one_and_keeps_its_rows(scratch_databases):
    old, fresh = scratch_databases
    old_proc, fresh_proc = _run_child(old, "old"), _run_child(fresh, "latest")
    ids = json.loads(_wait(old_proc, "migrating to the old schema").strip().splitlines()[-1])
    _wait(_run_child(old, "latest"), "migrating the old schema forward")
    _wait(fresh_proc, "migrating from zero")

    old_schema, fresh_schema = _schema(old), _schema(fresh)
    assert len(fresh_schema) > 500  # tables, indexes, constraints, triggers, partitions
    only_old = [s for s in old_schema if s not in fresh_schema]
    only_fresh = [s for s in fresh_schema if s not in old_schema]
    assert (only_old, only_fresh) == ([], []), "schemas differ"

    with psycopg.connect(**_admin_params(old)) as c:

        def one(sql: str, *args):
            return c.execute(sql, args).fetchone()

        assert one("SELECT mrn, family_name FROM patients_patient WHERE id = %s", ids["patient"]) == (
            "OLD-1",
            "Before",
        )
        assert one(
            "SELECT patient_id, status FROM careteam_teammembership WHERE id = %s", ids["membership"]
        ) == (
            ids["patient"],
            "active",
        )
        assert one("SELECT to_regclass('careteam_breakglassaccess')") == (None,)
        assert one(
            "SELECT user_id, patient_id, reason FROM careteam_emergencyaccess WHERE id = %s", ids["grant"]
        ) == (ids["outsider"], ids["patient"], "Unconscious in the ED")
        assert one("SELECT action, patient_ids FROM careteam_auditevent WHERE id = %s", ids["event"]) == (
            "view",
            [ids["patient"]],
        )
        assert one("SELECT care_plan_id, description FROM careplans_goal WHERE id = %s", ids["goal"]) == (
            ids["plan"],
            "Walk to the shop",
        )
        # the model permissions followed the rename (0024), so their grants are kept
        assert one("SELECT count(*) FROM auth_permission WHERE codename LIKE %s", "%\\_breakglassaccess") == (
            0,
        )
