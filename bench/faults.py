"""Fault injection: do handoff reminders and their emails survive workers killed with
kill -9, Redis hung and killed, and database connections cut?

Starts, as its own subprocesses: a private redis-server on a free loopback port (no
persistence: a killed Redis loses its whole queue, the worst case), one Celery worker
(prefork) and exactly one beat, against a scratch database (dropped, created and
migrated; default `careteam_bench_faults`). Emails go to the file backend in a temporary
directory, so every email any process sent is a file counted afterwards. Reminders fire
within minutes: HANDOFF_ACK_REMINDER_MINUTES=1, HANDOFF_DUE_SOON_MINUTES=1, and unsent
emails are enqueued again after NOTIFICATION_EMAIL_GRACE_SECONDS (`--grace`, 60).

Then, over `--duration` seconds, this process creates `--handoffs` handoffs through the
service (`careteam.handoffs.handoff_create`, as the page and the API do) in the first
third, each due 2 minutes to the end of the run after its creation and nobody answering,
so each one owes five notifications and five emails: "new handoff" and "waiting for you"
to the receiver, "due soon" (or, when a sweep gap spans that moment, "overdue") to the
receiver, the escalation to the case manager and "your handoff is overdue" to the sender.
Meanwhile it kills worker pool processes with kill -9 (every `--kill-every` seconds on
average), and in two episodes of outages (at a quarter and at three fifths of the run)
hangs Redis with SIGSTOP for `--hang` seconds, cuts every database connection once with
pg_terminate_backend (this process's own too: its next save reconnects), kills Redis
with kill -9 and restarts it empty after `--down` seconds, and kills the whole worker
(parent and pool, kill -9) twice, restarting it after `--restart-delay` seconds. After the last due moment it waits until every email is out (or
the last due moment + grace + 3 minutes) and prints: handoffs created, notifications
expected, reminder rows, emails sent, lost, duplicated (by notification id, with their
Message-IDs), and lateness (email file time minus the moment it was due) p50/p99/max, of
all and of those due outside the outages (Redis hung or down, worker down, connections
cut; each padded by one sweep period on both sides); also how long each handoff_create
took, during the Redis faults too.

    DEBUG=true .venv/bin/python bench/faults.py                                  # 1,000 handoffs, 10 min
    DEBUG=true .venv/bin/python bench/faults.py --handoffs 100 --duration 180    # quick

Talks to PostgreSQL at DATABASE_URL's server (default 127.0.0.1:5432) and to its own
Redis only; stops only the processes it started.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACK_MINUTES = 1
SOON_MINUTES = 1
SWEEP_PERIOD = 60  # the beat schedule of careteam.reminders_sweep
MIN_LEAD = 120  # seconds from creation to due time: both early reminders fall before it
SEPARATOR = b"\n" + b"-" * 79 + b"\n"  # the file backend's line between two messages


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass
class Fault:
    kind: str
    start: float  # time.time()
    end: float
    note: str = ""


class Bench:
    """The subprocesses, their environment and the faults done to them."""

    def __init__(self, args, workdir: Path, env: dict):
        self.args = args
        self.workdir = workdir
        self.env = env
        self.redis_port = int(urlsplit(env["REDIS_URL"]).port)
        self.redis: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.beat: subprocess.Popen | None = None
        self.faults: list[Fault] = []
        self.unexpected_exits: list[str] = []
        self.worker_starts = 0
        self.lock = threading.Lock()

    # -- Redis ---------------------------------------------------------------
    def redis_start(self) -> None:
        log = (self.workdir / "redis.log").open("a")
        self.redis = subprocess.Popen(  # noqa: S603
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.redis_ping():
                return
            time.sleep(0.1)
        raise SystemExit("redis-server did not start; see redis.log")

    def redis_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    # -- Celery ----------------------------------------------------------------
    def _celery(self, *argv: str, log: str) -> subprocess.Popen:
        out = (self.workdir / log).open("a")
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "config", *argv],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def worker_start(self) -> None:
        log = self.workdir / "worker.log"
        offset = log.stat().st_size if log.exists() else 0
        self.worker_starts += 1
        self.worker = self._celery(
            "worker",
            "-l",
            "info",
            "-c",
            str(self.args.concurrency),
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"faults{self.worker_starts}@%h",
            log="worker.log",
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with log.open("rb") as f:
                f.seek(offset)
                if b" ready." in f.read():
                    return
            if self.worker.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit("the Celery worker did not become ready; see worker.log")

    def beat_start(self) -> None:
        schedule = self.workdir / "beat-schedule"
        self.beat = self._celery("beat", "-l", "info", "-s", str(schedule), log="beat.log")

    def supervise(self) -> None:
        """A process that exited by itself is a finding: note it and start it again."""
        if self.beat is not None and self.beat.poll() is not None:
            self.unexpected_exits.append(f"beat exited ({self.beat.returncode}) at {time.time():.0f}")
            self.beat_start()
        if self.worker is not None and self.worker.poll() is not None:
            self.unexpected_exits.append(f"worker exited ({self.worker.returncode}) at {time.time():.0f}")
            self.worker_start()

    # -- Faults ----------------------------------------------------------------
    def kill_pool_process(self, rng: random.Random) -> None:
        kids = children_of(self.worker.pid)
        if not kids:
            return
        victim = rng.choice(kids)
        now = time.time()
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.faults.append(Fault("pool-kill", now, now, f"pid {victim}"))

    def kill_worker(self) -> None:
        start = time.time()
        kids = children_of(self.worker.pid)
        self.worker.send_signal(signal.SIGKILL)
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.wait()
        time.sleep(self.args.restart_delay)
        self.worker_start()
        self.faults.append(Fault("worker-kill", start, time.time(), f"{len(kids)} pool processes"))

    def hang_redis(self) -> None:
        start = time.time()
        self.redis.send_signal(signal.SIGSTOP)
        time.sleep(self.args.hang)
        self.redis.send_signal(signal.SIGCONT)
        self.faults.append(Fault("redis-hang", start, time.time()))

    def kill_redis(self) -> None:
        start = time.time()
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait()
        time.sleep(self.args.down)
        self.redis_start()
        self.faults.append(Fault("redis-kill", start, time.time()))

    def cut_database(self) -> None:
        """Cut every connection to the database, at a moment when one of them is in the
        middle of a query or transaction (a worker at work), waiting up to two sweeps."""
        import psycopg

        others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            deadline = time.monotonic() + 2 * SWEEP_PERIOD
            while time.monotonic() < deadline:
                (busy,) = conn.execute(
                    f"SELECT count(*) {others} AND state IN ('active', 'idle in transaction')"  # noqa: S608
                ).fetchone()
                if busy:
                    break
                time.sleep(0.05)
            start = time.time()
            (count,) = conn.execute(f"SELECT count(pg_terminate_backend(pid)) {others}").fetchone()  # noqa: S608
        self.faults.append(Fault("db-cut", start, time.time(), f"{count} connections, {busy} busy"))

    def stop(self) -> None:
        kids = children_of(self.worker.pid) if self.worker is not None else []
        for proc in (self.beat, self.worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.beat, self.worker):
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in kids:  # pool processes a killed parent left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.redis is not None and self.redis.poll() is None:
            self.redis.send_signal(signal.SIGCONT)
            self.redis.terminate()
            self.redis.wait(timeout=30)


def fault_plan(args, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds after the start, fault). The outages come in two episodes, so that the
    run also has stretches without one: at a quarter of the run Redis hangs, then the
    database connections are cut and the worker is killed; at three fifths Redis is
    killed, then the worker again. Pool-process kills happen at random all along (they
    are not outages: the worker replaces the process and goes on)."""
    d = args.duration
    first, second = d * 0.25 * rng.uniform(0.95, 1.05), d * 0.6 * rng.uniform(0.97, 1.03)
    plan = [
        (first, "redis-hang"),
        (first + args.hang + 10, "db-cut"),
        (first + args.hang + 20, "worker-kill"),
        (second, "redis-kill"),
        (second + args.down + 15, "worker-kill"),
    ]
    t = 10.0
    while True:
        t += rng.expovariate(1 / args.kill_every)
        if t >= d:
            break
        plan.append((t, "pool-kill"))
    return sorted(plan)


def run_faults(bench: Bench, plan, t0: float, stop_at: float, rng: random.Random) -> None:
    actions = {
        "pool-kill": lambda: bench.kill_pool_process(rng),
        "worker-kill": bench.kill_worker,
        "redis-hang": bench.hang_redis,
        "redis-kill": bench.kill_redis,
        "db-cut": bench.cut_database,
    }
    for offset, kind in plan:
        while time.time() < t0 + offset:
            bench.supervise()
            time.sleep(0.5)
        if time.time() >= stop_at:
            break
        if kind == "pool-kill" and any(
            f.kind == "pool-kill" and time.time() - f.start < 2 for f in bench.faults
        ):
            continue
        actions[kind]()
    while time.time() < stop_at:
        bench.supervise()
        time.sleep(0.5)


# ---------------------------------------------------------------------------
# The scratch database and its care teams
# ---------------------------------------------------------------------------
def recreate_database(name: str) -> str:
    import psycopg

    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careteam"))
    admin_url = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(base._replace(path=f"/{name}"))


def make_teams(handoffs: int) -> list[tuple]:
    """One patient per ten handoffs, each with a case manager, a physician lead (who sends
    the handoffs) and a nurse (who receives them); every clinician has an email address.
    Returns (patient, sender, receiver) triples."""
    from careteam import services as team_services
    from careteam.models import Discipline, TeamRole, User
    from patients.models import Patient

    patients = max(5, handoffs // 10)
    from django.utils import timezone

    start = timezone.localdate() - dt.timedelta(days=30)
    pools = {}
    for code, n in (("case-management", max(2, patients // 25)), ("physician", max(3, patients // 12))):
        pools[code] = n
    pools["nursing"] = pools["physician"]
    people: dict[str, list] = {}
    for code, n in pools.items():
        discipline = Discipline.objects.get(code=code)
        people[code] = []
        for i in range(n):
            user = User(username=f"faults-{code}-{i}", first_name="Bench", last_name=f"{code} {i}")
            user.email = f"{user.username}@example.org"
            user.set_unusable_password()
            user.save()
            user.disciplines.add(discipline)
            people[code].append((user, discipline))
    triples = []
    for i in range(patients):
        patient = Patient.objects.create(
            mrn=f"FAULTS{i:06d}",
            given_name=f"Given{i}",
            family_name=f"Family{i}",
            birth_date=dt.date(1950, 1, 1) + dt.timedelta(days=i),
        )
        team = {}
        for code, role in (
            ("case-management", TeamRole.CASE_MANAGER),
            ("physician", TeamRole.LEAD),
            ("nursing", TeamRole.MEMBER),
        ):
            user, discipline = people[code][i % len(people[code])]
            team_services.membership_add(
                patient=patient, user=user, discipline=discipline, role=role, start_date=start
            )
            team[code] = user
        triples.append((patient, team["physician"], team["nursing"]))
    return triples


# ---------------------------------------------------------------------------
# Counting the emails
# ---------------------------------------------------------------------------
NOTIFICATION_HEADER = re.compile(rb"^X-CareTeam-Notification: *(\d+)\s*$", re.M)
MESSAGE_ID_HEADER = re.compile(rb"^Message-ID: *(\S+)\s*$", re.M | re.I)


def read_mail(maildir: Path) -> dict[int, list[tuple[float, str]]]:
    """notification id -> [(file time, Message-ID)] for every email in the directory."""
    sent: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for path in maildir.iterdir():
        try:
            data, mtime = path.read_bytes(), path.stat().st_mtime
        except OSError:
            continue
        for chunk in data.split(SEPARATOR):
            match = NOTIFICATION_HEADER.search(chunk)
            if match:
                mid = MESSAGE_ID_HEADER.search(chunk)
                sent[int(match.group(1))].append((mtime, mid.group(1).decode() if mid else ""))
    return sent


# ---------------------------------------------------------------------------
# What was owed, what arrived
# ---------------------------------------------------------------------------
def expected_keys(handoff_ids: list[int]) -> list[dict]:
    """Five per handoff, each with the moment it fell due and the kinds that satisfy it."""
    from careteam.models import Handoff, NotificationKind, TeamMembership, TeamRole

    cms = dict(
        TeamMembership.objects.current()
        .filter(role=TeamRole.CASE_MANAGER)
        .values_list("patient_id", "user_id")
    )
    ack, soon = dt.timedelta(minutes=ACK_MINUTES), dt.timedelta(minutes=SOON_MINUTES)
    keys = []
    for h in Handoff.objects.filter(pk__in=handoff_ids).only(
        "id", "patient_id", "from_user_id", "to_user_id", "created_at", "due_at"
    ):
        for name, kinds, recipient, moment in (
            ("received", [NotificationKind.HANDOFF_RECEIVED], h.to_user_id, h.created_at),
            ("unacknowledged", [NotificationKind.HANDOFF_UNACKNOWLEDGED], h.to_user_id, h.created_at + ack),
            (
                "due soon / overdue (receiver)",
                [NotificationKind.HANDOFF_DUE_SOON, NotificationKind.HANDOFF_OVERDUE_RECEIVER],
                h.to_user_id,
                h.due_at - soon,
            ),
            (
                "escalation (case manager)",
                [NotificationKind.HANDOFF_OVERDUE_ESCALATION],
                cms[h.patient_id],
                h.due_at,
            ),
            ("overdue (sender)", [NotificationKind.HANDOFF_SENT_OVERDUE], h.from_user_id, h.due_at),
        ):
            keys.append(
                {
                    "name": name,
                    "kinds": [str(k) for k in kinds],
                    "recipient": recipient,
                    "handoff": h.pk,
                    "moment": moment.timestamp(),
                }
            )
    return keys


def match_rows(keys: list[dict], handoff_ids: list[int]) -> None:
    from careteam.models import Notification

    rows = defaultdict(list)
    for n in Notification.objects.filter(object_type="careteam.handoff", object_id__in=handoff_ids).values(
        "id", "kind", "recipient_id", "object_id"
    ):
        rows[(n["object_id"], n["recipient_id"])].append(n)
    for key in keys:
        key["rows"] = [n["id"] for n in rows[(key["handoff"], key["recipient"])] if n["kind"] in key["kinds"]]


def pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def in_outage(moment: float, windows: list[Fault]) -> bool:
    return any(w.start - SWEEP_PERIOD <= moment <= w.end + SWEEP_PERIOD for w in windows)


def analyse(keys, sent, faults, handoff_ids) -> dict:
    outages = [f for f in faults if f.kind != "pool-kill"]
    rows_total = sum(len(k["rows"]) for k in keys)
    missing_rows = [k for k in keys if not k["rows"]]
    extra_rows = sum(len(k["rows"]) - 1 for k in keys if len(k["rows"]) > 1)
    bench_rows = {i for k in keys for i in k["rows"]}
    lost, duplicated, message_ids_differ = [], [], 0
    late_all, late_outside = [], []
    late_by_name: dict[str, list[float]] = defaultdict(list)
    for key in keys:
        copies = [c for i in key["rows"] for c in sent.get(i, [])]
        if not copies:
            lost.append(key)
            continue
        for i in key["rows"]:
            if len(sent.get(i, [])) > 1:
                mtimes = sorted(t for t, _ in sent[i])
                duplicated.append(
                    {"notification": i, "copies": len(sent[i]), "first": mtimes[0], "last": mtimes[-1]}
                )
                if len({m for _, m in sent[i]}) > 1:
                    message_ids_differ += 1
        lateness = min(t for t, _ in copies) - key["moment"]
        late_all.append(lateness)
        if not in_outage(key["moment"], outages):
            late_outside.append(lateness)
            late_by_name[key["name"]].append(lateness)
    for d in duplicated:
        nearest = min(faults, key=lambda f: abs(f.start - d["first"]), default=None)
        if nearest is not None:
            d["nearest_fault"] = f"{nearest.kind} {d['first'] - nearest.start:+.1f} s"
    emails = sum(len(v) for v in sent.values())
    foreign = sum(len(v) for i, v in sent.items() if i not in bench_rows)

    def figures(values):
        return {
            "n": len(values),
            "p50_s": round(pct(values, 50), 1) if values else None,
            "p99_s": round(pct(values, 99), 1) if values else None,
            "max_s": round(max(values), 1) if values else None,
        }

    by_name = Counter(k["name"] for k in lost)
    return {
        "handoffs": len(handoff_ids),
        "notifications_expected": len(keys),
        "reminder_rows": rows_total,
        "reminder_rows_missing": len(missing_rows),
        "reminder_rows_duplicated": extra_rows,
        "emails_sent": emails,
        "emails_lost": len(lost),
        "emails_lost_by_kind": dict(by_name),
        "emails_duplicated": sum(d["copies"] - 1 for d in duplicated),
        "duplicates": duplicated,
        "duplicates_with_differing_message_ids": message_ids_differ,
        "emails_for_other_notifications": foreign,
        "lateness_all": figures(late_all),
        "lateness_outside_outages": figures(late_outside),
        "lateness_outside_outages_by_kind": {name: figures(v) for name, v in sorted(late_by_name.items())},
        "outage_windows_s": round(sum(f.end - f.start for f in outages), 1),
    }


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--handoffs", type=int, default=1000)
    p.add_argument(
        "--duration", type=float, default=600, help="seconds of creating and falling due, with faults"
    )
    p.add_argument("--db", default="careteam_bench_faults", help="scratch database, dropped and recreated")
    p.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    p.add_argument("--kill-every", type=float, default=20, help="mean seconds between pool-process kills")
    p.add_argument("--hang", type=float, default=40, help="seconds Redis stays stopped (SIGSTOP)")
    p.add_argument("--down", type=float, default=20, help="seconds Redis stays killed")
    p.add_argument("--restart-delay", type=float, default=5, help="seconds before a killed worker restarts")
    p.add_argument("--grace", type=int, default=60, help="NOTIFICATION_EMAIL_GRACE_SECONDS")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, emails)")
    args = p.parse_args(argv)
    if not args.db.startswith("careteam_bench"):
        p.error("the scratch database's name must start with careteam_bench (it is dropped)")
    if args.duration < MIN_LEAD + 30:
        p.error(
            f"--duration must be at least {MIN_LEAD + 30} s (handoffs are due {MIN_LEAD} s or more after creation)"
        )
    if args.handoffs < 1:
        p.error("--handoffs must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="careteam-faults-"))
    maildir = workdir / "mail"
    maildir.mkdir()
    print(f"scratch database {args.db}, files in {workdir}", flush=True)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": recreate_database(args.db),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            # four slashes: django-environ drops the first one of a file path
            "EMAIL_URL": f"filemail:///{maildir}",
            "HANDOFF_ACK_REMINDER_MINUTES": str(ACK_MINUTES),
            "HANDOFF_DUE_SOON_MINUTES": str(SOON_MINUTES),
            "NOTIFICATION_EMAIL_GRACE_SECONDS": str(args.grace),
            "LOG_LEVEL": "WARNING",
        }
    )
    env.pop("CELERY_RESULT_BACKEND", None)
    os.environ.update(env)
    import django

    django.setup()
    # this process's warnings (publishes given up while Redis is away) go to a file
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.FileHandler(workdir / "bench.log"))
    from django.conf import settings
    from django.core.management import call_command
    from django.db import close_old_connections, connection, connections
    from django.utils import timezone

    if str(maildir) != settings.EMAIL_FILE_PATH:
        raise SystemExit(f"emails would go to {settings.EMAIL_FILE_PATH}, not {maildir}")
    from careteam import handoffs as handoff_services
    from careteam import publisher
    from careteam.permissions import patient_access
    from careteam.reference import ensure_reference_data

    call_command("migrate", verbosity=0)
    ensure_reference_data()
    print("care teams ...", flush=True)
    triples = make_teams(args.handoffs)
    connections.close_all()

    bench = Bench(args, workdir, env)
    bench.redis_start()
    bench.worker_start()
    bench.beat_start()
    print(
        f"redis :{bench.redis_port}, worker pid {bench.worker.pid} (-c {args.concurrency}), beat pid {bench.beat.pid}",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    t0 = time.time()
    stop_at = t0 + args.duration
    plan = fault_plan(args, rng)
    faults = threading.Thread(target=run_faults, args=(bench, plan, t0, stop_at, rng), daemon=True)
    handoff_ids: list[int] = []
    create_ms: list[tuple[float, float]] = []  # (time.time(), ms)
    create_errors: list[str] = []
    try:
        faults.start()
        window = args.duration / 3
        for i in range(args.handoffs):
            at = t0 + window * i / args.handoffs
            time.sleep(max(0.0, at - time.time()))
            patient, sender, receiver = triples[i % len(triples)]
            lead = rng.uniform(MIN_LEAD, max(MIN_LEAD, stop_at - time.time()))
            for attempt in (1, 2):  # a save refused by a cut connection is made again, as a user would
                close_old_connections()  # what Django does around each request (with its health check)
                started = time.perf_counter()
                try:
                    # as the page does: the sender's access to the patient, then the service
                    access = patient_access(sender, patient)
                    h = handoff_services.handoff_create(
                        access=access,
                        by=sender,
                        to_user=receiver,
                        due_at=timezone.now() + dt.timedelta(seconds=lead),
                        situation=f"Bench handoff {i}",
                        background="Fault injection run",
                        assessment="Nothing clinical",
                        recommendation="Nothing to do",
                    )
                except Exception as exc:  # noqa: BLE001 - a failed save is a finding, counted
                    create_errors.append(f"{time.time() - t0:.0f} s {type(exc).__name__}: {exc}"[:300])
                    connection.close()
                    if attempt == 2:
                        break
                    continue
                create_ms.append((time.time(), (time.perf_counter() - started) * 1000))
                handoff_ids.append(h.pk)
                break
        print(f"{len(handoff_ids)} handoffs created; faults continue until {args.duration:.0f} s", flush=True)
        faults.join()
        publisher.flush(timeout=30)
        connections.close_all()  # this process's own connection may have been cut too

        # every expected email should be out after the last due moment, a sweep, the grace
        keys = expected_keys(handoff_ids)
        last = max(k["moment"] for k in keys)
        deadline = last + SWEEP_PERIOD + args.grace + 180
        while True:
            time.sleep(5)
            bench.supervise()
            match_rows(keys, handoff_ids)
            sent = read_mail(maildir)
            missing = sum(1 for k in keys if not any(i in sent for i in k["rows"]))
            now = time.time()
            print(f"  +{now - t0:.0f} s: {missing} of {len(keys)} emails not out yet", flush=True)
            if (missing == 0 and now > last + 10) or now > deadline:
                break
            connections.close_all()
        time.sleep(5)  # a duplicate may still be on its way
        match_rows(keys, handoff_ids)
        sent = read_mail(maildir)
    finally:
        bench.stop()
    load_after = os.getloadavg()[0]

    report = analyse(keys, sent, bench.faults, handoff_ids)
    redis_faults = [f for f in bench.faults if f.kind in ("redis-hang", "redis-kill")]
    during = [ms for at, ms in create_ms if any(f.start <= at <= f.end for f in redis_faults)]
    all_ms = [ms for _, ms in create_ms]
    worker_log = (workdir / "worker.log").read_text(errors="replace")
    beat_log = (workdir / "beat.log").read_text(errors="replace")
    report.update(
        {
            "date": timezone.localdate().isoformat(),
            "command": "bench/faults.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
            "load_before": round(load_before, 1),
            "load_after": round(load_after, 1),
            "duration_s": round(time.time() - t0),
            "create_errors": len(create_errors),
            "create_ms": {
                "p50": round(pct(all_ms, 50), 1),
                "p99": round(pct(all_ms, 99), 1),
                "max": round(max(all_ms), 1),
                "during_redis_faults_n": len(during),
                "during_redis_faults_max": round(max(during), 1) if during else None,
            },
            "faults": dict(Counter(f.kind for f in bench.faults)),
            "fault_log": [
                {
                    "kind": f.kind,
                    "at_s": round(f.start - t0, 1),
                    "lasted_s": round(f.end - f.start, 1),
                    "note": f.note,
                }
                for f in bench.faults
                if f.kind != "pool-kill"
            ],
            "unexpected_exits": bench.unexpected_exits,
            "worker_starts": bench.worker_starts,
            "worker_log": {
                "task retries": worker_log.count("Retry in"),
                "tasks failed": worker_log.count("raised unexpected"),
                "worker lost": worker_log.count("WorkerLostError"),
                "error lines": worker_log.count(" ERROR "),
            },
            "beat_sweeps_sent": beat_log.count("careteam.reminders_sweep"),
            "publishes_given_up": {
                "this process": (workdir / "bench.log")
                .read_text(errors="replace")
                .count("could not enqueue"),
                "worker": worker_log.count("could not enqueue"),
            },
            "create_error_samples": create_errors[:5],
        }
    )
    print(json.dumps(report, indent=1, default=str))
    ok = (
        report["emails_lost"] == 0
        and report["reminder_rows_missing"] == 0
        and report["reminder_rows_duplicated"] == 0
    )
    summary = (
        f"{report['handoffs']} handoffs, {report['notifications_expected']} notifications expected, "
        f"{report['reminder_rows']} reminder rows ({report['reminder_rows_missing']} missing, "
        f"{report['reminder_rows_duplicated']} duplicated), {report['emails_sent']} emails: "
        f"{report['emails_lost']} lost, {report['emails_duplicated']} duplicated; lateness outside outages "
        f"p50 {report['lateness_outside_outages']['p50_s']} s, p99 {report['lateness_outside_outages']['p99_s']} s"
    )
    print(summary)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("PASS" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
