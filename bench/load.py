"""Load test: concurrent clinicians reading and editing care plans against gunicorn.

Starts gunicorn (4 workers by default) on 127.0.0.1 against the bench database, then runs
50 simulated clinicians for a bounded time. Each one loops: worklist, a patient's chart,
the care plan editor, and about half the time an edit of an activity they may edit, by
the inline editor (form POST carrying `expected_version`) or by the API (PATCH with
If-Match), alternately. The clinicians are the care teams of a handful of patients, so
several of them edit the same activities and real conflicts happen.

Every accepted edit is logged with the version it was based on and a unique text; at
the end the database is checked: each accepted edit left its history row at the next
version, no two accepted edits were based on the same version of one activity (that
would be a lost update), and each activity holds the text of its last accepted edit.
Refused edits (409 from the editor's conflict view, 412 from the API) are counted.

    DEBUG=true .venv/bin/python bench/load.py --db careteam_bench --duration 300

Traffic goes to loopback only; every loop is bounded by time and by a request cap.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_REQUESTS_PER_CLINICIAN = 20_000


# ---------------------------------------------------------------------------
# A tiny form reader: the inline editor's fields as the browser would post them
# ---------------------------------------------------------------------------
class FormReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.data.append((name, a.get("value") or "on"))
            elif kind not in ("submit", "button", "file"):
                self.data.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.data.append((self._select, a.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.data.append((self._textarea, "".join(self._text)))
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------
@dataclass
class Clinician:
    user_id: int
    username: str
    session: str
    token: str
    patients: list[int]
    plans: dict[int, int]  # patient -> active plan
    editable: list[int]  # activity ids on the shared patients this clinician may edit


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    errors: list[str] = field(default_factory=list)
    accepted: list[dict] = field(default_factory=list)
    refused: int = 0
    other_4xx: list[str] = field(default_factory=list)

    def record(self, label: str, status: int, ms: float) -> None:
        with self.lock:
            self.latencies[label].append(ms)
            self.statuses[label][status] += 1


class Client:
    """One simulated clinician's HTTP client (new connection per request: gunicorn's
    sync workers close after each response)."""

    def __init__(self, host: str, port: int, clinician: Clinician, stats: Stats):
        self.host, self.port, self.c, self.stats = host, port, clinician, stats
        self.csrf = secrets.token_hex(16)  # 32 characters: Django accepts an unmasked secret

    def request(self, label: str, method: str, path: str, *, body=None, headers=None, api=False):
        hdrs = {"Host": f"{self.host}:{self.port}"}
        if api:
            hdrs["Authorization"] = f"Token {self.c.token}"
            hdrs["Accept"] = "application/json"
        else:
            hdrs["Cookie"] = f"sessionid={self.c.session}; csrftoken={self.csrf}"
            hdrs["X-CSRFToken"] = self.csrf
        hdrs.update(headers or {})
        if isinstance(body, dict | list) and api:
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, list):
            body = urllib.parse.urlencode(body)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        t = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            with self.stats.lock:
                self.stats.errors.append(f"{label} {method} {path}: {exc!r}")
            self.stats.record(label, 599, (time.perf_counter() - t) * 1000)
            return None, b"", {}
        ms = (time.perf_counter() - t) * 1000
        self.stats.record(label, resp.status, ms)
        if resp.status >= 500:
            with self.stats.lock:
                self.stats.errors.append(f"{label} {method} {path}: {resp.status} {data[:300]!r}")
        return resp.status, data, dict(resp.getheaders())


def clinician_loop(
    client: Client, deadline: float, think: tuple[float, float], urls: dict, seed: int
) -> None:
    rnd = random.Random(seed)  # noqa: S311 - simulated behaviour, not security
    c = client.c
    n = 0
    while time.monotonic() < deadline and n < MAX_REQUESTS_PER_CLINICIAN:
        n += 1
        client.request("worklist", "GET", urls["worklist"])
        patient = rnd.choice(c.patients)
        client.request("chart", "GET", urls["chart"].format(patient))
        if patient in c.plans:
            client.request("plan editor", "GET", urls["plan"].format(c.plans[patient]))
        if c.editable and rnd.random() < 0.5:
            activity = rnd.choice(c.editable)
            if n % 2 and urls.get("api_activity"):
                edit_by_api(client, activity, urls, rnd, think)
            elif urls.get("activity_edit"):
                edit_by_form(client, activity, urls, rnd, think)
        time.sleep(rnd.uniform(*think))


def _log_edit(client: Client, status: int | None, activity: int, base: int, text: str, via: str, data: bytes):
    st = client.stats
    with st.lock:
        if status in (200, 201):
            st.accepted.append(
                {"activity": activity, "base": base, "text": text, "via": via, "user": client.c.user_id}
            )
        elif status in (409, 412):
            st.refused += 1
        elif status is not None and 400 <= status < 500:
            st.other_4xx.append(f"{via} {activity} {status} {data[:200]!r}")


def edit_by_api(client: Client, activity: int, urls: dict, rnd: random.Random, think) -> None:
    path = urls["api_activity"].format(activity)
    status, data, headers = client.request("API read activity", "GET", path, api=True)
    if status != 200:
        return
    etag = headers.get("ETag") or headers.get("etag") or ""
    m = re.search(r"(\d+)", etag)
    if not m:
        return
    base = int(m.group(1))
    time.sleep(rnd.uniform(0, think[0]))  # the clinician types
    text = f"load {client.c.user_id} {secrets.token_hex(6)}"
    status, data, _ = client.request(
        "API save activity", "PATCH", path, body={"description": text}, headers={"If-Match": etag}, api=True
    )
    _log_edit(client, status, activity, base, text, "api", data)


def edit_by_form(client: Client, activity: int, urls: dict, rnd: random.Random, think) -> None:
    path = urls["activity_edit"].format(activity)
    status, data, _ = client.request("editor open form", "GET", path, headers={"HX-Request": "true"})
    if status != 200:
        return
    reader = FormReader()
    reader.feed(data.decode("utf-8", "replace"))
    fields = [(k, v) for k, v in reader.data if k != "csrfmiddlewaretoken"]
    prefix = f"activity-{activity}-"
    base_values = [v for k, v in fields if k == prefix + "expected_version"]
    if not base_values or not base_values[0].isdigit():
        return
    base = int(base_values[0])
    time.sleep(rnd.uniform(0, think[0]))
    text = f"load {client.c.user_id} {secrets.token_hex(6)}"
    fields = [(k, v) for k, v in fields if k != prefix + "description"] + [(prefix + "description", text)]
    status, data, _ = client.request(
        "editor save activity", "POST", path, body=fields, headers={"HX-Request": "true"}
    )
    _log_edit(client, status, activity, base, text, "form", data)


# ---------------------------------------------------------------------------
# Setup and verification (in-process Django on the same database)
# ---------------------------------------------------------------------------
def django_setup(db: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_clinicians(count: int) -> list[Clinician]:
    """The care teams of the first patients with a full team, until `count` clinicians:
    every one of them shares patients (and so activities) with several others."""
    from django.test import Client as DjangoClient
    from knox.models import AuthToken

    from careplans.models import Activity, CarePlan
    from careteam.models import TeamMembership, User
    from careteam.permissions import patient_access

    chosen: dict[int, set[int]] = {}
    hot: list[int] = []
    memberships = TeamMembership.objects.current().order_by("patient_id").values_list("patient_id", "user_id")
    for patient_id, user_id in memberships.iterator(chunk_size=2000):
        if len(chosen) >= count and patient_id not in hot:
            break
        if patient_id not in hot:
            hot.append(patient_id)
        if user_id in chosen or len(chosen) < count:
            chosen.setdefault(user_id, set()).add(patient_id)
    clinicians = []
    for user in User.objects.filter(pk__in=chosen).order_by("pk"):
        caseload = list(
            TeamMembership.objects.current()
            .filter(user=user)
            .order_by("patient_id")
            .values_list("patient_id", flat=True)[:50]
        )
        patients = sorted(set(caseload) | chosen[user.pk])
        plans = dict(
            CarePlan.objects.filter(patient_id__in=patients, status="active").values_list("patient_id", "pk")
        )
        editable = []
        for patient_id in chosen[user.pk]:
            plan = (
                CarePlan.objects.filter(patient_id=patient_id, status="active")
                .select_related("patient")
                .first()
            )
            if plan is None:
                continue
            access = patient_access(user, plan.patient)
            for act in Activity.objects.filter(care_plan=plan, sensitivity__isnull=True):
                if access.can_edit_item(act):
                    editable.append(act.pk)
        web = DjangoClient()
        web.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        _, token_key = AuthToken.objects.create(user=user)
        clinicians.append(
            Clinician(
                user_id=user.pk,
                username=user.username,
                session=web.cookies["sessionid"].value,
                token=token_key,
                patients=patients,
                plans=plans,
                editable=editable,
            )
        )
    return clinicians


def verify(accepted: list[dict]) -> dict:
    """Every accepted edit is in the database; none was based on a version another
    accepted edit had already replaced; each activity ends with its last accepted text."""
    from careplans.models import Activity

    history = Activity.history.model
    problems: list[str] = []
    by_activity: dict[int, list[dict]] = defaultdict(list)
    for e in accepted:
        by_activity[e["activity"]].append(e)
    texts = [e["text"] for e in accepted]
    found = {
        (h["id"], h["description"]): h["version"]
        for h in history.objects.filter(description__in=texts).values("id", "description", "version")
    }
    for e in accepted:
        version = found.get((e["activity"], e["text"]))
        if version is None:
            problems.append(f"accepted edit missing from history: {e}")
        elif version != e["base"] + 1:
            problems.append(f"accepted edit saved at version {version}, expected {e['base'] + 1}: {e}")
    for activity, edits in by_activity.items():
        bases = [e["base"] for e in edits]
        if len(bases) != len(set(bases)):
            problems.append(f"activity {activity}: two accepted edits from the same version {sorted(bases)}")
        last = max(edits, key=lambda e: e["base"])
        current = Activity.objects.filter(pk=activity).values("description", "version").get()
        if current["description"] != last["text"] or current["version"] != last["base"] + 1:
            problems.append(f"activity {activity}: holds {current}, last accepted edit was {last}")
    return {"accepted": len(accepted), "activities": len(by_activity), "problems": problems}


# ---------------------------------------------------------------------------
# gunicorn
# ---------------------------------------------------------------------------
def start_server(db: str, host: str, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    env.setdefault("DEBUG", "true")
    cmd = [
        str(ROOT / ".venv/bin/gunicorn"),
        "config.wsgi",
        "-w",
        str(workers),
        "-b",
        f"{host}:{port}",
        "--timeout",
        "60",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
    for _ in range(120):
        time.sleep(0.5)
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/health/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
    proc.terminate()
    raise SystemExit(f"gunicorn did not come up; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="careteam_bench")
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--clinicians", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--url", help="use a server already running at http://127.0.0.1:PORT")
    parser.add_argument("--think", type=float, nargs=2, default=(0.5, 1.5), metavar=("MIN", "MAX"))
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if args.url:
        parsed = urllib.parse.urlparse(args.url)
        args.host, args.port = parsed.hostname, parsed.port or 80
    if args.host not in LOOPBACK:
        parser.error("load is sent to this machine's loopback address only")
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be between 0 and 3600 seconds")

    django_setup(args.db)
    from django.urls import NoReverseMatch, reverse

    def url(name, **kw):
        try:
            return reverse(name, kwargs=kw).replace("999999", "{}")
        except NoReverseMatch:
            return None

    urls = {
        "worklist": url("worklist"),
        "chart": url("patient_chart", patient_id=999999),
        "plan": url("careplans:plan_editor", plan_id=999999),
        "activity_edit": url("careplans:activity_edit", activity_id=999999),
        "api_activity": url("api-activity-detail", activity_id=999999)
        or url("api-activity-detail", pk=999999),
    }
    missing = [k for k in ("worklist", "chart", "plan") if urls[k] is None]
    if missing:
        raise SystemExit(f"pages not available: {missing}")
    print("setting up clinicians ...", flush=True)
    clinicians = make_clinicians(args.clinicians)
    shared = sum(len(c.editable) for c in clinicians)
    print(f"{len(clinicians)} clinicians, {shared} (clinician, editable activity) pairs", flush=True)
    from django.db import connections

    connections.close_all()

    server = None
    log = Path(tempfile.gettempdir()) / f"careteam-load-gunicorn-{os.getpid()}.log"
    if not args.url:
        print(f"starting gunicorn -w {args.workers} on {args.host}:{args.port} (log {log})", flush=True)
        server = start_server(args.db, args.host, args.port, args.workers, log)
    stats = Stats()
    load_before = os.getloadavg()[0]
    try:
        t0 = time.monotonic()
        deadline = t0 + args.duration
        threads = [
            threading.Thread(
                target=clinician_loop,
                args=(Client(args.host, args.port, c, stats), deadline, tuple(args.think), urls, i),
                daemon=True,
            )
            for i, c in enumerate(clinicians)
        ]
        for th in threads:
            th.start()
            time.sleep(0.05)  # ramp up over a few seconds
        for th in threads:
            th.join(timeout=args.duration + 120)
        elapsed = time.monotonic() - t0
    finally:
        if server is not None:
            stop_server(server)
    load_after = os.getloadavg()[0]

    result = verify(stats.accepted)
    all_lat = [v for vals in stats.latencies.values() for v in vals]
    total = len(all_lat)
    server_errors = sum(n for st in stats.statuses.values() for s, n in st.items() if s >= 500)
    report = {
        "database": args.db,
        "clinicians": len(clinicians),
        "workers": args.workers,
        "duration_s": round(elapsed, 1),
        "requests": total,
        "throughput_rps": round(total / elapsed, 1),
        "p50_ms": round(pct(all_lat, 50), 1),
        "p95_ms": round(pct(all_lat, 95), 1),
        "p99_ms": round(pct(all_lat, 99), 1),
        "server_errors": server_errors,
        "connection_errors": sum(1 for e in stats.errors if "599" in e or "Error(" in e),
        "edits_accepted": result["accepted"],
        "edits_refused_conflict": stats.refused,
        "edits_other_4xx": len(stats.other_4xx),
        "activities_edited": result["activities"],
        "lost_updates": len(result["problems"]),
        "load_before": load_before,
        "load_after": load_after,
        "by_request": {
            label: {
                "n": len(v),
                "p50_ms": round(pct(v, 50), 1),
                "p95_ms": round(pct(v, 95), 1),
                "statuses": dict(stats.statuses[label]),
            }
            for label, v in sorted(stats.latencies.items())
        },
    }
    print(json.dumps(report, indent=1))
    for p in result["problems"][:20]:
        print("LOST UPDATE:", p)
    for e in stats.errors[:20]:
        print("ERROR:", e)
    for e in stats.other_4xx[:10]:
        print("OTHER 4xx:", e)
    if args.json:
        args.json.write_text(
            json.dumps(report | {"problems": result["problems"], "errors": stats.errors[:100]}, indent=1)
        )
    ok = server_errors == 0 and not result["problems"] and not stats.errors
    print("PASS" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
