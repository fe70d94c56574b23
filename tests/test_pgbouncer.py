"""CareTeam behind PgBouncer in transaction mode (issue 20): a real PgBouncer with two
server connections for four clinicians' threads, so consecutive transactions of one
thread land on different server connections. Any session state the app relied on (a
server-side cursor, a prepared statement, a SET without LOCAL, an advisory lock held
across transactions) would fail or leak here; every accepted save must be in the
database afterwards and every stale one refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection

from careteam.models import AuditEvent, TeamMembership
from tests import factories as f

RUN_AS = "embedded_postgres"  # PgBouncer refuses to run as root
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pgbouncer(tmp_path_factory):
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():  # pragma: no cover - .ci/run installs Debian's pgbouncer
        # PgBouncer is not on PyPI: a developer machine with only Python skips this test,
        # CI (which installs it) fails without it.
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    db = connection.settings_dict
    root = Path(tempfile.mkdtemp(prefix="careteam-pgbouncer-"))
    root.chmod(0o755)
    port = _free_port()
    (root / "users.txt").write_text(f'"{db["USER"]}" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 50\n"
        f"logfile = {root / 'pgbouncer.log'}\npidfile = {root / 'pgbouncer.pid'}\n"
    )
    cmd = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:
        if subprocess.run(["id", RUN_AS], capture_output=True).returncode:  # noqa: S603,S607
            subprocess.run(["useradd", "-s", "/bin/bash", RUN_AS], check=True, capture_output=True)  # noqa: S603,S607
        shutil.chown(root, RUN_AS)
        cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                pytest.fail(f"pgbouncer did not start: {process.stdout.read().decode()}")
            time.sleep(0.05)
        yield port, root
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.django_db(transaction=True)
def test_a_working_day_through_pgbouncer_in_transaction_mode(world, pgbouncer):
    port, root = pgbouncer
    clinicians = [world.case_manager, world.lead, world.nurse, world.pharmacist]
    activities = [
        f.ActivityFactory(
            care_plan=world.plan, title=f"Own activity {n}", owner_discipline=f.discipline(code)
        )
        for n, code in enumerate(["case-management", "physician", "nursing", "pharmacy"])
    ]
    # a membership whose end date passed: the sync walks it with QuerySet.iterator()
    expired = f.UserFactory(username="leaver", disciplines=["nursing"])
    f.TeamMembershipFactory(
        patient=world.patient, user=expired, start_date=dt.date(1999, 1, 1), end_date=dt.date(2000, 1, 1)
    )
    audit_before = AuditEvent.objects.count()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{port}/{db['NAME']}",
        "CONN_MAX_AGE": "0",
        "DISABLE_SERVER_SIDE_CURSORS": "true",
        "DEBUG": "true",
    }
    world_json = json.dumps(
        {
            "users": [u.pk for u in clinicians],
            "patient": world.patient.pk,
            "activities": [a.pk for a in activities],
        }
    )
    run = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "tests.pooled_walk", world_json],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = (root / "pgbouncer.log").read_text() if (root / "pgbouncer.log").exists() else ""
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{log[-2000:]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    rounds = 6
    assert report["seen"]["saved"] == 4 * rounds
    assert report["seen"]["stale refused"] == 4 * rounds
    assert report["seen"]["sweeps"] == 3
    assert report["seen"]["memberships synced"] >= 1
    # no lost update: each activity holds its last save, one version per accepted save
    for user, activity in zip(clinicians, activities, strict=True):
        activity.refresh_from_db()
        assert activity.title == f"Saved {rounds - 1} by {user.pk}"
        assert activity.version == 1 + rounds
    assert not TeamMembership.objects.filter(user=expired, status="active").exists()
    assert AuditEvent.objects.count() > audit_before
    assert "ERROR" not in log, log[-2000:]
