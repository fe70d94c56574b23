"""Latency of CareTeam's main operations through the real Django stack, beside the floor.

For every operation: p50/p95/p99 over many requests made in-process with Django's test
``Client`` (``force_login``; the full middleware, session, auth, view, template and audit
path), the number of queries (``CaptureQueriesContext``), and beside it the *floor*: the
time of the minimal raw SQL that fetches the same rows, measured in the same run on the
same connection, and the ratio of the two medians; the *framework floor*: the same
templates rendered with the same context, or the endpoint's serializer over the same rows,
without the database, and the median over the sum of both floors; and where one request's
time goes (SQL, template or serializer, the rest). Operations whose URL or function does
not exist yet are reported as "not available yet".

    DEBUG=true .venv/bin/python bench/run.py --db careteam_bench          # one size
    DEBUG=true .venv/bin/python bench/run.py --db careteam_bench_small --db careteam_bench
        # both sizes, one child process each, then the growth ratio per operation
    DEBUG=true .venv/bin/python bench/run.py --compare small.json big.json
    DEBUG=true .venv/bin/python bench/run.py --anchors     # the framework alone, no database

Targets checked: every page and API call p95 < 50 ms; API reads within 5x their floor;
the query count of every operation is the same at both sizes; no operation's median grows
more than 1.5x from the small to the big database.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
P95_TARGET_MS = 50.0
FLOOR_RATIO_TARGET = 5.0
GROWTH_TARGET = 1.5


# ---------------------------------------------------------------------------
# Result records
# ---------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    kind: str  # page | api | write | function | sweep
    available: bool = True
    note: str = ""
    n: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    queries_min: int = 0
    queries_max: int = 0
    floor_p50: float | None = None
    floor_p95: float | None = None
    # EXPLAIN (ANALYZE, BUFFERS) of one request's read queries: the work PostgreSQL does,
    # in 8 kB pages touched, which unlike time does not depend on the machine's load
    buffers: int | None = None
    db_ms: float | None = None
    # CPU time of this (benchmark) process per request, median: the Python side's own cost,
    # which waiting for a busy CPU does not inflate
    cpu_p50: float | None = None
    slowest_sql: str = ""
    statuses: dict[str, int] = field(default_factory=dict)
    # framework floor: the same template rendered with the same context, or the endpoint's
    # serializer over the same rows (and its JSON), without the database; None and a reason
    # in fw_note where the view cannot be reproduced offline
    fw_p50: float | None = None
    fw_p95: float | None = None
    fw_note: str = ""
    # where one request's time goes (medians): SQL (query durations), template rendering,
    # serializer .data (both without the SQL they trigger), and the rest: middleware, view
    # code, forms, session, audit, the test client
    sql_ms: float | None = None
    render_ms: float | None = None
    serialize_ms: float | None = None
    python_ms: float | None = None

    @property
    def ratio(self) -> float | None:
        if not self.floor_p50:
            return None
        return self.p50 / self.floor_p50

    @property
    def fw_ratio(self) -> float | None:
        """The measured median over the sum of both floors (SQL and framework)."""
        if not self.floor_p50 or self.fw_p50 is None:
            return None
        return self.p50 / (self.floor_p50 + self.fw_p50)

    def verdicts(self) -> list[str]:
        """Which targets this operation misses (empty: all met)."""
        misses = []
        if not self.available:
            return misses
        if self.kind in ("page", "api", "write") and self.p95 >= P95_TARGET_MS:
            misses.append(f"p95 {self.p95:.1f} ms >= {P95_TARGET_MS:.0f}")
        if self.kind == "api" and self.ratio is not None and self.ratio > FLOOR_RATIO_TARGET:
            misses.append(f"{self.ratio:.1f}x floor > {FLOOR_RATIO_TARGET:.0f}x")
        bad = {s: c for s, c in self.statuses.items() if not s.startswith("2") and s != "ok"}
        if bad:
            misses.append(f"statuses {bad}")
        return misses


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# ---------------------------------------------------------------------------
# Where a request's time goes: SQL, template rendering, serializers
# ---------------------------------------------------------------------------
class Probe:
    """Times the SQL, the outermost template renders and serializer `.data` calls of one
    request, and keeps those templates (with their context) and serializers, so that the
    framework floor can redo exactly that work without the database."""

    def __init__(self) -> None:
        self.active = False
        self.start()

    def start(self) -> None:
        self.sql = self.render = self.serialize = 0.0
        self.depth = 0  # inside an outermost render or .data: nested ones belong to it
        self.templates: list[tuple[Any, Any, Any]] = []
        self.serializers: list[Any] = []

    def execute(self, execute, sql, params, many, context):  # connection.execute_wrapper
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.sql += time.perf_counter() - t

    def _timed(self, kind: str, keep: Callable[[], None], run: Callable[[], Any]) -> Any:
        if not self.active or self.depth:
            return run()
        self.depth += 1
        sql0, t = self.sql, time.perf_counter()
        try:
            return run()
        finally:
            self.depth -= 1
            spent = time.perf_counter() - t - (self.sql - sql0)
            setattr(self, kind, getattr(self, kind) + spent)
            keep()

    def install(self) -> None:
        """Wrap Django's template backend render and DRF's `BaseSerializer.data` (which
        `Serializer.data` and `ListSerializer.data` reach through `super().data`)."""
        from django.template.backends import django as backend
        from rest_framework import serializers

        probe = self
        render = backend.Template.render
        data = serializers.BaseSerializer.data.fget

        def timed_render(tpl, context=None, request=None):
            return probe._timed(
                "render",
                lambda: probe.templates.append((tpl, context, request)),
                lambda: render(tpl, context, request),
            )

        def timed_data(ser):
            return probe._timed("serialize", lambda: probe.serializers.append(ser), lambda: data(ser))

        backend.Template.render = timed_render
        serializers.BaseSerializer.data = property(timed_data)


def offline_work(templates: list, serializers: list) -> tuple[Callable[[], Any] | None, str]:
    """One callable that redoes a request's rendering and serializing from what the probe
    kept, without the database, or None and why it cannot be."""
    import inspect

    from rest_framework.renderers import JSONRenderer
    from rest_framework.serializers import ListSerializer

    if not templates and not serializers:
        return None, "no template or serializer: the view builds its response itself"
    jobs: list[Callable[[], Any]] = []
    for tpl, context, request in templates:
        # the context built once: the context processors' output (their callables, such
        # as the nav's unread count, called now), under the view's own context
        flat: dict[str, Any] = {}
        if request is not None:
            for processor in tpl.backend.engine.template_context_processors:
                flat.update({k: (v() if inspect.isfunction(v) else v) for k, v in processor(request).items()})
        flat.update(context or {})
        jobs.append(lambda tpl=tpl, flat=flat: tpl.render(flat))
    renderer = JSONRenderer()
    for ser in serializers:
        many = isinstance(ser, ListSerializer)
        cls = type(ser.child) if many else type(ser)
        if getattr(ser, "instance", None) is None:
            return None, f"{cls.__name__} serializes input, not rows"
        ctx = getattr(ser, "_context", {})
        jobs.append(
            lambda cls=cls, inst=ser.instance, many=many, ctx=ctx: renderer.render(
                cls(inst, many=many, context=ctx).data
            )
        )

    def run() -> None:
        for job in jobs:
            job()

    return run, ""


# ---------------------------------------------------------------------------
# In-process measurement (runs after django.setup())
# ---------------------------------------------------------------------------
class Bench:
    def __init__(self, requests: int, warmup: int, only: set[str] | None):
        from django.db import connection
        from django.test import Client

        self.connection = connection
        self.requests = requests
        self.warmup = warmup
        self.only = only
        self.clients: dict[int, Client] = {}
        self.results: list[Result] = []
        self.explain = True
        self.exclude: set[str] = set()
        self.sweep_runs = 3
        self.probe = Probe()
        self.probe.install()

    def explain_queries(self, res: Result, captured: list[dict]) -> None:
        """Sum pages touched and execution time over the read queries of one request."""
        buffers, db_ms, slowest = 0, 0.0, (0.0, "")
        for q in captured:
            sql = q["sql"] or ""
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")) or "FOR UPDATE" in sql.upper():
                continue
            try:
                with self.connection.connection.cursor() as cur:
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
                    plan = cur.fetchone()[0][0]
            except Exception:  # noqa: BLE001 - a statement EXPLAIN cannot take is simply not counted
                self.connection.connection.rollback()
                continue
            top = plan["Plan"]
            pages = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
            buffers += pages
            db_ms += plan["Execution Time"]
            if plan["Execution Time"] > slowest[0]:
                slowest = (plan["Execution Time"], " ".join(sql.split())[:400])
        res.buffers, res.db_ms, res.slowest_sql = buffers, round(db_ms, 2), slowest[1]

    # -- helpers ----------------------------------------------------------------
    def client(self, user):
        from django.test import Client

        if user.pk not in self.clients:
            c = Client(raise_request_exception=False)  # a 500 is a result, not the end of the run
            c.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
            self.clients[user.pk] = c
        return self.clients[user.pk]

    def raw(self, sql: str, params: Any = None) -> list[tuple]:
        """Run SQL on the same connection, bypassing Django's cursor wrapper."""
        self.connection.ensure_connection()
        with self.connection.connection.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def skip(self, name: str, kind: str, why: str) -> None:
        print(f"  {name}: not available yet ({why})", flush=True)
        self.results.append(Result(name=name, kind=kind, available=False, note=why))

    def measure(
        self,
        name: str,
        kind: str,
        call: Callable[[int], Any],
        floor: Callable[[int], Any] | None = None,
        *,
        before: Callable[[int], None] | None = None,
        requests: int | None = None,
        note: str = "",
    ) -> Result | None:
        """Time `call(i)` (warm-up first), count its queries, then time `floor(i)` for the
        same i. `before(i)` runs untimed (e.g. to read the version an edit will send)."""
        from django.test.utils import CaptureQueriesContext

        if (self.only and name not in self.only) or name in self.exclude:
            return None
        n = requests or self.requests
        res = Result(name=name, kind=kind, note=note)
        times: list[float] = []
        cpus: list[float] = []
        queries: list[int] = []
        parts: dict[str, list[float]] = {"sql": [], "render": [], "serialize": [], "python": []}
        probe = self.probe
        for i in range(-self.warmup, n):
            try:
                if before is not None:
                    before(i)
                self.connection.queries_log.clear()  # the capture indexes into a 9,000-entry log
                probe.start()
                with (
                    CaptureQueriesContext(self.connection) as ctx,
                    self.connection.execute_wrapper(probe.execute),
                ):
                    probe.active = True
                    c0, t = time.process_time(), time.perf_counter()
                    try:
                        out = call(i)
                    finally:
                        elapsed = (time.perf_counter() - t) * 1000
                        cpu = (time.process_time() - c0) * 1000
                        probe.active = False
            except Exception as exc:  # noqa: BLE001 - code under construction must not stop the run
                print(f"  {name}: failed: {exc!r}", flush=True)
                res.available, res.note = False, f"failed: {exc!r}"[:200]
                res.statuses["exception"] = 1
                self.results.append(res)
                return res
            status = str(getattr(out, "status_code", "ok"))
            if i >= 0:
                times.append(elapsed)
                cpus.append(cpu)
                queries.append(len(ctx.captured_queries))
                spent = {"sql": probe.sql * 1000, "render": probe.render * 1000}
                spent["serialize"] = probe.serialize * 1000
                spent["python"] = elapsed - sum(spent.values())
                for part, ms in spent.items():
                    parts[part].append(ms)
                res.statuses[status] = res.statuses.get(status, 0) + 1
            elif status.startswith(("4", "5")) and i == -self.warmup:
                body = getattr(out, "content", b"")[:300]
                print(f"    first {name} answered {status}: {body!r}", flush=True)
        res.n = len(times)
        res.p50, res.p95, res.p99 = pct(times, 50), pct(times, 95), pct(times, 99)
        res.queries_min, res.queries_max = min(queries), max(queries)
        res.cpu_p50 = round(pct(cpus, 50), 2)
        res.sql_ms, res.render_ms, res.serialize_ms, res.python_ms = (
            round(pct(parts[p], 50), 2) for p in ("sql", "render", "serialize", "python")
        )
        if self.explain:
            self.explain_queries(res, ctx.captured_queries)
        if floor is not None:
            ftimes = []
            for i in range(-self.warmup, n):
                t = time.perf_counter()
                floor(i)
                if i >= 0:
                    ftimes.append((time.perf_counter() - t) * 1000)
            res.floor_p50, res.floor_p95 = pct(ftimes, 50), pct(ftimes, 95)
        if kind in ("page", "api", "write"):
            self.framework_floor(res, n)
        else:
            res.fw_note = "not an HTTP request"
        self.results.append(res)
        ratio = f"{res.ratio:5.1f}x" if res.ratio is not None else "   - "
        fw_ratio = f"{res.fw_ratio:.1f}x" if res.fw_ratio is not None else "-"
        print(
            f"  {name:<26} p50 {res.p50:7.2f}  p95 {res.p95:7.2f}  p99 {res.p99:7.2f} ms  "
            f"q {res.queries_min}-{res.queries_max}  floor {res.floor_p50 or 0:6.2f} ms {ratio}  "
            f"pages {res.buffers} db {res.db_ms} ms cpu {res.cpu_p50} ms  "
            f"{dict(res.statuses)}  fw {fmt(res.fw_p50, '.2f').strip()} ms {fw_ratio}  "
            f"sql {res.sql_ms} render {(res.render_ms or 0) + (res.serialize_ms or 0):.2f} "
            f"python {res.python_ms} ms{'  (' + res.fw_note + ')' if res.fw_note else ''}",
            flush=True,
        )
        return res

    def framework_floor(self, res: Result, n: int) -> None:
        """Redo the last request's rendering and serializing `n` times (after the warm-up),
        from the context and rows it used. A template that still queries the database (a
        method or relation it calls) is timed without those queries' SQL, and the note says
        which: the floor is then an underestimate, and those queries are a finding."""
        probe = self.probe
        work, why = offline_work(probe.templates, probe.serializers)
        probe.start()  # drop the references to the last request's objects
        if work is None:
            res.fw_note = why
            return
        seen: list[str] = []
        sql = [0.0]

        def timed(execute, sql_text, params, many, context):
            seen.append(sql_text)
            t = time.perf_counter()
            try:
                return execute(sql_text, params, many, context)
            finally:
                sql[0] += time.perf_counter() - t

        ftimes: list[float] = []
        try:
            with self.connection.execute_wrapper(timed):
                for i in range(-self.warmup, n):
                    seen.clear()
                    sql[0] = 0.0
                    t = time.perf_counter()
                    work()
                    if i >= 0:
                        ftimes.append((time.perf_counter() - t - sql[0]) * 1000)
        except Exception as exc:  # noqa: BLE001 - a view that needs its request cannot be redone
            res.fw_note = f"cannot be redone offline: {exc!r}"[:160]
            return
        res.fw_p50, res.fw_p95 = round(pct(ftimes, 50), 3), round(pct(ftimes, 95), 3)
        if seen:
            first = " ".join(seen[0].split())[:70]
            res.fw_note = f"{len(seen)} queries from the template itself, their SQL excluded: {first}"


def url_or_none(*names: str, **kwargs) -> str | None:
    from django.urls import NoReverseMatch, reverse

    for name in names:
        try:
            return reverse(name, kwargs=kwargs or None)
        except NoReverseMatch:
            continue
    return None


def url_named_like(fragment: str, **kwargs) -> str | None:
    """The first URL whose name contains `fragment` and takes these kwargs (FHIR routes
    are named by their own module; this finds them without guessing the exact name)."""
    from django.urls import get_resolver

    names: list[str] = []

    def walk(resolver, prefix=""):
        for p in resolver.url_patterns:
            if hasattr(p, "url_patterns"):
                ns = f"{prefix}{p.namespace}:" if getattr(p, "namespace", None) else prefix
                walk(p, ns)
            elif p.name and fragment in p.name:
                names.append(prefix + p.name)

    walk(get_resolver())
    return url_or_none(*names, **kwargs)


# ---------------------------------------------------------------------------
# The personas and the rows each operation works on (same rule at every size)
# ---------------------------------------------------------------------------
def next_link(response) -> str | None:
    """The query of a page's rel="next" link (the keyset pager's "Older"), or None."""
    import html
    import re

    found = re.search(r'<a href="(\?[^"]*)" rel="next"', response.content.decode())
    return html.unescape(found.group(1)) if found else None


def personas(bench: Bench) -> dict[str, Any]:
    from careteam.models import User

    def clinician(code: str, target: int) -> User:
        row = bench.raw(
            """SELECT m.user_id, count(*) AS c FROM careteam_teammembership m
               JOIN careteam_user_disciplines ud ON ud.user_id = m.user_id
               JOIN careteam_discipline d ON d.id = ud.discipline_id AND d.code = %s
               WHERE m.status = 'active' GROUP BY m.user_id ORDER BY abs(count(*) - %s), m.user_id LIMIT 1""",
            [code, target],
        )
        return User.objects.get(pk=row[0][0])

    cm = clinician("case-management", 200)  # a heavy caseload
    nurse = clinician("nursing", 110)  # a typical one
    auditor = User.objects.filter(username="bench_auditor").first()
    patients = [
        r[0]
        for r in bench.raw(
            """SELECT patient_id FROM careteam_teammembership
               WHERE user_id = %s AND status = 'active' ORDER BY patient_id LIMIT 50""",
            [cm.pk],
        )
    ]
    plans = [
        r[0]
        for r in bench.raw(
            "SELECT id FROM careplans_careplan WHERE patient_id = ANY(%s) AND status = 'active' ORDER BY id",
            [patients],
        )
    ]
    activities = [
        r[0]
        for r in bench.raw(
            """SELECT DISTINCT ON (care_plan_id) id FROM careplans_activity
               WHERE care_plan_id = ANY(%s) AND status IN ('not-started','scheduled','in-progress','on-hold')
                 AND sensitivity_id IS NULL ORDER BY care_plan_id, id""",
            [plans],
        )
    ]
    counts = bench.raw(
        """SELECT (SELECT count(*) FROM patients_patient), (SELECT count(*) FROM careplans_goal)
                  + (SELECT count(*) FROM careplans_need) + (SELECT count(*) FROM careplans_activity),
                  (SELECT count(*) FROM careteam_handoff), (SELECT count(*) FROM referrals_referral),
                  (SELECT count(*) FROM referrals_service), (SELECT count(*) FROM careteam_auditevent)"""
    )[0]
    caseload = {
        u.username: bench.raw(
            "SELECT count(*) FROM careteam_teammembership WHERE user_id = %s AND status = 'active'", [u.pk]
        )[0][0]
        for u in (cm, nurse)
    }
    return {
        "cm": cm,
        "nurse": nurse,
        "auditor": auditor,
        "patients": patients,
        "plans": plans,
        "activities": activities,
        "sizes": dict(
            zip(
                ["patients", "plan_items", "handoffs", "referrals", "services", "audit_events"],
                counts,
                strict=True,
            )
        ),
        "caseload": caseload,
    }


# ---------------------------------------------------------------------------
# Floors: the minimal SQL for the same rows
# ---------------------------------------------------------------------------
CURRENT = "m.status = 'active' AND m.start_date <= current_date AND (m.end_date IS NULL OR m.end_date >= current_date)"
VISIBLE = f"""EXISTS (SELECT 1 FROM careteam_patientuserobjectpermission g
                     WHERE g.user_id = %(u)s AND g.content_object_id = {{pid}} AND g.permission_id = %(perm)s)
          AND EXISTS (SELECT 1 FROM careteam_teammembership m
                      WHERE m.user_id = %(u)s AND m.patient_id = {{pid}} AND {CURRENT})"""

WORKLIST_FLOOR = f"""
WITH mine AS (
  SELECT p.id, p.mrn, p.given_name, p.family_name, p.birth_date, m.role
  FROM careteam_teammembership m JOIN patients_patient p ON p.id = m.patient_id
  WHERE m.user_id = %(u)s AND {CURRENT}
  ORDER BY p.family_name, p.given_name, p.id LIMIT %(limit)s)
SELECT mine.*, cp.id, cp.title, cp.status, cp.review_due,
  (SELECT count(*) FROM careteam_handoff h WHERE h.patient_id = mine.id AND h.status = 'requested'
     AND h.to_user_id = %(u)s),
  (SELECT count(*) FROM careplans_activity a WHERE a.care_plan_id = cp.id AND a.assigned_to_id = %(u)s
     AND a.status IN ('not-started','scheduled','in-progress','on-hold') AND a.due_date <= current_date),
  (SELECT count(*) FROM referrals_referral r WHERE r.patient_id = mine.id AND r.referred_by_id = %(u)s
     AND r.status = 'requested')
FROM mine LEFT JOIN careplans_careplan cp ON cp.patient_id = mine.id AND cp.status = 'active'
ORDER BY mine.family_name, mine.given_name, mine.id"""
WORKLIST_COUNT = f"SELECT count(*) FROM careteam_teammembership m WHERE m.user_id = %(u)s AND {CURRENT}"

CHART_FLOOR = [
    "SELECT * FROM patients_patient WHERE id = %(p)s",
    "SELECT * FROM patients_caregiver WHERE patient_id = %(p)s",
    "SELECT * FROM patients_consent WHERE patient_id = %(p)s AND status = 'active'",
    f"""SELECT m.*, u.first_name, u.last_name, d.name FROM careteam_teammembership m
        JOIN careteam_user u ON u.id = m.user_id JOIN careteam_discipline d ON d.id = m.discipline_id
        WHERE m.patient_id = %(p)s AND {CURRENT}""",
    "SELECT * FROM careplans_careplan WHERE patient_id = %(p)s ORDER BY period_start DESC, id DESC",
    """SELECT (SELECT count(*) FROM careplans_goal g JOIN careplans_careplan c ON c.id = g.care_plan_id
               WHERE c.patient_id = %(p)s AND c.status = 'active'),
              (SELECT count(*) FROM careplans_need n JOIN careplans_careplan c ON c.id = n.care_plan_id
               WHERE c.patient_id = %(p)s AND c.status = 'active'),
              (SELECT count(*) FROM careplans_activity a JOIN careplans_careplan c ON c.id = a.care_plan_id
               WHERE c.patient_id = %(p)s AND c.status = 'active')""",
    """SELECT h.*, fu.last_name, tu.last_name FROM careteam_handoff h
        JOIN careteam_user fu ON fu.id = h.from_user_id LEFT JOIN careteam_user tu ON tu.id = h.to_user_id
        WHERE h.patient_id = %(p)s AND h.status IN ('requested','accepted','in-progress') ORDER BY h.due_at""",
    """SELECT r.*, s.name, o.name FROM referrals_referral r JOIN referrals_service s ON s.id = r.service_id
        JOIN referrals_organization o ON o.id = s.organization_id
        WHERE r.patient_id = %(p)s AND r.status IN ('requested','accepted','in-progress','on-hold')
        ORDER BY r.created_at DESC""",
]
PLAN_FLOOR = [
    "SELECT c.*, p.* FROM careplans_careplan c JOIN patients_patient p ON p.id = c.patient_id WHERE c.id = %(c)s",
    "SELECT * FROM careplans_goal WHERE care_plan_id = %(c)s ORDER BY id",
    "SELECT * FROM careplans_need WHERE care_plan_id = %(c)s ORDER BY id",
    """SELECT a.*, d.name, u.first_name, u.last_name FROM careplans_activity a
        JOIN careteam_discipline d ON d.id = a.owner_discipline_id
        LEFT JOIN careteam_user u ON u.id = a.assigned_to_id WHERE a.care_plan_id = %(c)s
        ORDER BY a.due_date, a.id""",
    """SELECT ag.* FROM careplans_activity_goals ag JOIN careplans_activity a ON a.id = ag.activity_id
        WHERE a.care_plan_id = %(c)s""",
    "SELECT * FROM careplans_note WHERE care_plan_id = %(c)s ORDER BY created_at",
]
API_PATIENTS_FLOOR = [
    "SELECT p.* FROM patients_patient p WHERE "
    + VISIBLE.format(pid="p.id")
    + " ORDER BY p.family_name, p.given_name, p.id LIMIT 50",
    "SELECT count(*) FROM patients_patient p WHERE " + VISIBLE.format(pid="p.id"),
]
API_ACTIVITIES_FLOOR = [
    "SELECT a.* FROM careplans_activity a JOIN careplans_careplan c ON c.id = a.care_plan_id WHERE "
    + VISIBLE.format(pid="c.patient_id")
    + " ORDER BY a.care_plan_id, a.due_date, a.id LIMIT 50",
    "SELECT count(*) FROM careplans_activity a JOIN careplans_careplan c ON c.id = a.care_plan_id WHERE "
    + VISIBLE.format(pid="c.patient_id"),
]
CONVERSATION_FLOOR = [
    "SELECT c.*, p.* FROM careteam_conversation c JOIN patients_patient p ON p.id = c.patient_id WHERE c.id = %(c)s",
    """SELECT m.*, u.first_name, u.last_name FROM careteam_message m JOIN careteam_user u ON u.id = m.author_id
       WHERE m.conversation_id = %(c)s ORDER BY m.created_at, m.id""",
    """SELECT x.* FROM careteam_messagemention x JOIN careteam_message m ON m.id = x.message_id
       WHERE m.conversation_id = %(c)s""",
]
CONVERSATION_INBOX_FLOOR = f"""
SELECT c.*, p.given_name, p.family_name, lm.text,
  EXISTS (SELECT 1 FROM careteam_conversationread r WHERE r.user_id = %(u)s AND r.conversation_id = c.id
          AND r.last_read_message_id >= c.last_message_id) AS is_read
FROM careteam_conversation c JOIN patients_patient p ON p.id = c.patient_id
LEFT JOIN careteam_message lm ON lm.id = c.last_message_id
WHERE c.patient_id IN (SELECT m.patient_id FROM careteam_teammembership m WHERE m.user_id = %(u)s AND {CURRENT})
ORDER BY c.last_message_at DESC, c.id DESC LIMIT 50"""
AUDIT_FLOOR = """SELECT * FROM careteam_auditevent WHERE patient_id = %(p)s
                 ORDER BY at DESC, id DESC LIMIT 51"""
HISTORY_FLOOR = [
    """SELECT * FROM careplans_historicalcareplan WHERE id = %(c)s
       ORDER BY history_date DESC, history_id DESC LIMIT 51""",
    *(
        f"""SELECT * FROM careplans_historical{t} WHERE care_plan_id = %(c)s
            ORDER BY history_date DESC, history_id DESC LIMIT 51"""
        for t in ("goal", "need", "activity")
    ),
]
PERMISSION_FLOOR = (
    "SELECT "
    + VISIBLE.format(pid="%(p)s")
    + f", (SELECT array_agg(m.role) FROM careteam_teammembership m WHERE m.user_id = %(u)s AND m.patient_id = %(p)s AND {CURRENT})"
)
SAVE_FLOOR = [
    "SELECT version FROM careplans_activity WHERE id = %(a)s FOR UPDATE",
    """UPDATE careplans_activity SET status_reason = %(text)s, version = version + 1, updated_at = now()
       WHERE id = %(a)s""",
    """INSERT INTO careplans_historicalactivity (id, title, description, status, status_reason, due_date,
         created_at, version, history_date, history_type, care_plan_id, owner_discipline_id, assigned_to_id,
         sensitivity_id, created_by_id, history_user_id, for_patient, shared_sensitivity_id,
         shared_with_patient)
       SELECT id, title, description, status, status_reason, due_date, created_at, version, now(), '~',
         care_plan_id, owner_discipline_id, assigned_to_id, sensitivity_id, created_by_id, %(u)s,
         for_patient, shared_sensitivity_id, shared_with_patient
       FROM careplans_activity WHERE id = %(a)s""",
    """INSERT INTO careteam_auditevent (at, user_id, username, action, outcome, object_type, object_id,
         patient_id, patient_ids, path, detail) VALUES (now(), %(u)s, 'bench', 'update', 'allowed',
         'careplans.activity', %(a)s::text, NULL, '{}', '', 'bench floor')""",
]


# ---------------------------------------------------------------------------
# The operations
# ---------------------------------------------------------------------------
def run_all(bench: Bench, ctx: dict[str, Any]) -> None:
    from django.db import transaction

    from careplans.models import Activity
    from careteam import permissions
    from patients.models import Patient

    cm, nurse = ctx["cm"], ctx["nurse"]
    pats, plans, acts = ctx["patients"], ctx["plans"], ctx["activities"]
    view_perm = bench.raw(
        """SELECT p.id FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
           WHERE ct.app_label = 'patients' AND p.codename = 'view_patient'"""
    )[0][0]

    def with_params(sqls: list[str], **dyn: Callable[[int], Any]) -> Callable[[int], Any]:
        def run(i: int) -> None:
            params = {"perm": view_perm, **{k: v(i) for k, v in dyn.items()}}
            for sql in sqls:
                bench.raw(sql, params)

        return run

    # -- worklist ---------------------------------------------------------------
    url = url_or_none("worklist")
    try:
        from workspace.views import PAGE_SIZE as page_size
    except ImportError:
        page_size = 25
    for label, user in (("worklist (case manager)", cm), ("worklist (nurse)", nurse)):
        if url is None:
            bench.skip(label, "page", "no URL named 'worklist'")
            continue
        client = bench.client(user)
        bench.measure(
            label,
            "page",
            lambda i, c=client: c.get(url),
            with_params(
                [WORKLIST_FLOOR, WORKLIST_COUNT], u=lambda i, u=user: u.pk, limit=lambda i: page_size
            ),
        )

    # -- My work: what needs me across all my patients --------------------------------
    url = url_or_none("my_work")
    for label, user in (("My work (case manager)", cm), ("My work (nurse)", nurse)):
        if url is None:
            bench.skip(label, "page", "no URL named 'my_work'")
            continue
        client = bench.client(user)
        bench.measure(label, "page", lambda i, c=client: c.get(url), None)

    # -- caseload: the case manager's patients, counts aggregated in SQL ---------------
    url = url_or_none("team:caseload")
    if url is None:
        bench.skip("caseload view", "page", "no URL named 'team:caseload'")
    else:
        client = bench.client(cm)
        bench.measure("caseload view", "page", lambda i, c=client: c.get(url), None)

    # -- My week: a clinician's visits across their patients; the team's week ------------
    for label, name, user in (
        ("My week (nurse)", "visits:my_week", nurse),
        ("team week (case manager)", "visits:team_week", cm),
    ):
        url = url_or_none(name)
        if url is None:
            bench.skip(label, "page", f"no URL named '{name}'")
            continue
        client = bench.client(user)
        bench.measure(label, "page", lambda i, c=client, u=url: c.get(u), None)

    # -- patient chart, care plan ------------------------------------------------
    client = bench.client(cm)
    if url_or_none("patient_chart", patient_id=1):
        bench.measure(
            "patient chart",
            "page",
            lambda i: client.get(url_or_none("patient_chart", patient_id=pats[i % len(pats)])),
            with_params(CHART_FLOOR, p=lambda i: pats[i % len(pats)]),
        )
    else:
        bench.skip("patient chart", "page", "no URL named 'patient_chart'")
    if url_or_none("careplans:plan_editor", plan_id=1):
        bench.measure(
            "care plan view",
            "page",
            lambda i: client.get(url_or_none("careplans:plan_editor", plan_id=plans[i % len(plans)])),
            with_params(PLAN_FLOOR, c=lambda i: plans[i % len(plans)]),
        )
    else:
        bench.skip("care plan view", "page", "no URL named 'careplans:plan_editor'")

    # -- the patient portal: a patient's own plan page (portal.selectors) ------------------
    if url_or_none("portal:plan", patient_id=1):
        from careteam.models import AccountKind, User
        from patients.models import Patient

        portal_clients = []
        for pid in pats[:20]:
            user, _ = User.objects.get_or_create(
                username=f"bench_portal_{pid}", defaults={"kind": AccountKind.PATIENT}
            )
            Patient.objects.filter(pk=pid, account__isnull=True).update(account=user)
            if Patient.objects.filter(pk=pid, account=user).exists():
                portal_clients.append((bench.client(user), url_or_none("portal:plan", patient_id=pid)))
        bench.measure(
            "portal plan page",
            "page",
            lambda i: portal_clients[i % len(portal_clients)][0].get(
                portal_clients[i % len(portal_clients)][1]
            ),
            with_params(PLAN_FLOOR, c=lambda i: plans[i % len(plans)]),
            note="the patient's own plan, only what the team shares",
        )
    else:
        bench.skip("portal plan page", "page", "no URL named 'portal:plan'")

    # -- plan history: one plan with a long history (bench/generate.py --history-versions) --
    history_label = "plan history (1000 versions)"
    long_plan = bench.raw(
        """SELECT care_plan_id, count(*) FROM careplans_historicalactivity
           WHERE history_change_reason = 'bench: long history' GROUP BY care_plan_id LIMIT 1"""
    )
    if url_or_none("careplans:plan_history", plan_id=1) is None:
        bench.skip(history_label, "page", "no URL named 'careplans:plan_history'")
    elif not long_plan:
        bench.skip(history_label, "page", "no plan with a long history (generate with --history-versions)")
    else:
        from careteam.models import User

        history_plan, n_versions = long_plan[0]
        reader = User.objects.get(
            pk=bench.raw(
                """SELECT m.user_id FROM careteam_teammembership m
                   JOIN careplans_careplan p ON p.patient_id = m.patient_id AND p.id = %s
                   WHERE m.status = 'active' ORDER BY m.role = 'case-manager' DESC, m.user_id LIMIT 1""",
                [history_plan],
            )[0][0]
        )
        history_client = bench.client(reader)
        history_url = url_or_none("careplans:plan_history", plan_id=history_plan)
        history_floor = with_params(HISTORY_FLOOR, c=lambda i: history_plan)
        note = f"{n_versions:,} saved versions of one plan's activities"
        bench.measure(
            history_label, "page", lambda i: history_client.get(history_url), history_floor, note=note
        )
        deep = history_url
        for _ in range(10):  # ten pages back: a keyset page costs what the first one does
            link = next_link(history_client.get(deep))
            if link is None:
                break
            deep = history_url + link
        bench.measure(
            "plan history 10 pages back",
            "page",
            lambda i: history_client.get(deep),
            history_floor,
            note=note,
        )

    # -- referral dashboard: the case manager's turnaround over every service -----------
    dashboard_url = url_or_none("referrals:dashboard")
    if dashboard_url is None:
        bench.skip("referral dashboard (case manager)", "page", "no URL named 'referrals:dashboard'")
    else:
        cm_client = bench.client(cm)
        services_seen = bench.raw(
            """SELECT count(DISTINCT r.service_id) FROM referrals_referral r
               WHERE r.patient_id IN (SELECT m.patient_id FROM careteam_teammembership m
                                      WHERE m.user_id = %s AND m.status = 'active')""",
            [cm.pk],
        )[0][0]
        bench.measure(
            "referral dashboard (case manager)",
            "page",
            lambda i: cm_client.get(dashboard_url),
            None,
            note=f"referrals to {services_seen:,} services on the case manager's patients",
        )

    # -- save of a plan item (the inline editor's POST, and the API's PATCH) ------
    versions: dict[int, int] = {}

    def read_version(i: int) -> None:
        a = acts[i % len(acts)]
        versions[a] = Activity.objects.filter(pk=a).values_list("version", flat=True).get()

    def floor_save(i: int) -> None:
        with transaction.atomic():
            for sql in SAVE_FLOOR:
                bench.raw(sql, {"a": acts[i % len(acts)], "u": cm.pk, "text": f"floor {i}"})

    if url_or_none("careplans:activity_edit", activity_id=1):
        from careplans.views import KINDS

        def form_data(i: int) -> dict:
            item = Activity.objects.select_related("care_plan__patient").get(pk=acts[i % len(acts)])
            access = permissions.patient_access(cm, item.care_plan.patient)
            form = KINDS["activity"].edit_form(
                instance=item, access=access, plan=item.care_plan, prefix=f"activity-{item.pk}"
            )
            data = {}
            for bf in form:
                value = bf.value()
                if value is None:
                    continue
                data[bf.html_name] = (
                    [str(v) for v in value] if isinstance(value, list | tuple) else str(value)
                )
            data[f"activity-{item.pk}-status_reason"] = f"bench save {i}"
            data[f"activity-{item.pk}-expected_version"] = str(item.version)
            return data

        pending: dict[int, dict] = {}
        bench.measure(
            "save plan item (page)",
            "write",
            lambda i: client.post(
                url_or_none("careplans:activity_edit", activity_id=acts[i % len(acts)]),
                pending[i],
                headers={"HX-Request": "true"},
            ),
            floor_save,
            before=lambda i: pending.__setitem__(i, form_data(i)),
        )
    else:
        bench.skip("save plan item (page)", "write", "no URL named 'careplans:activity_edit'")

    def api_activity(pk: int) -> str | None:
        return url_or_none("api-activity-detail", activity_id=pk) or url_or_none("api-activity-detail", pk=pk)

    if api_activity(1):
        bench.measure(
            "save plan item (API)",
            "write",
            lambda i: client.patch(
                api_activity(acts[i % len(acts)]),
                {"status_reason": f"api save {i}"},
                content_type="application/json",
                headers={"If-Match": f'W/"{versions[acts[i % len(acts)]]}"'},
            ),
            floor_save,
            before=read_version,
        )
    else:
        bench.skip("save plan item (API)", "write", "no URL named 'api-activity-detail'")

    # -- API lists ---------------------------------------------------------------
    for label, name, floor in (
        ("API list patients", "api-patient-list", API_PATIENTS_FLOOR),
        ("API list activities", "api-activity-list", API_ACTIVITIES_FLOOR),
    ):
        url = url_or_none(name)
        if url is None:
            bench.skip(label, "api", f"no URL named '{name}'")
            continue
        bench.measure(label, "api", lambda i, u=url: client.get(u), with_params(floor, u=lambda i: cm.pk))

    # -- FHIR $everything ----------------------------------------------------------
    everything = url_named_like("everything", pk=1) or url_named_like("everything", patient_id=1)
    if everything is None:
        bench.skip("FHIR Patient/$everything", "api", "no URL named like 'everything'")
    else:

        def everything_url(i: int) -> str:
            pid = pats[i % len(pats)]
            return url_named_like("everything", pk=pid) or url_named_like("everything", patient_id=pid)

        bench.measure(
            "FHIR Patient/$everything",
            "api",
            lambda i: client.get(everything_url(i), headers={"Accept": "application/fhir+json"}),
            with_params(
                CHART_FLOOR + PLAN_FLOOR[1:4],
                p=lambda i: pats[i % len(pats)],
                c=lambda i: plans[i % len(plans)],
            ),
        )

    # -- catalog search ------------------------------------------------------------
    terms = [
        "food pantry",
        "housing",
        "transportation",
        "counseling",
        "meals",
        "utility",
        "respite",
        "senior",
    ]
    catalog = url_or_none(
        "referrals:catalog", "referrals:catalog_search", "referrals:service_search", "referrals:service_list"
    )
    api_services = url_or_none("api-service-list")
    search_floor = with_params(
        [
            """SELECT s.id, s.name, o.name FROM referrals_service s
               JOIN referrals_organization o ON o.id = s.organization_id
               WHERE s.search_vector @@ websearch_to_tsquery('english', %(q)s) AND s.status = 'active'
               ORDER BY ts_rank(s.search_vector, websearch_to_tsquery('english', %(q)s)) DESC, s.name
               LIMIT 20"""
        ],
        q=lambda i: terms[i % len(terms)],
    )
    has_vector = bench.raw(
        """SELECT 1 FROM information_schema.columns WHERE table_name = 'referrals_service'
           AND column_name = 'search_vector'"""
    )
    for label, url, kind in (
        ("catalog search (page)", catalog, "page"),
        ("catalog search (API)", api_services, "api"),
    ):
        if url is None:
            bench.skip(label, kind, "no catalog search URL")
            continue
        bench.measure(
            label,
            kind,
            lambda i, u=url: client.get(u, {"q": terms[i % len(terms)]}),
            search_floor if has_vector else None,
        )

    # -- audit search by patient --------------------------------------------------
    audit_floor = with_params([AUDIT_FLOOR], p=lambda i: pats[i % len(pats)])
    if url_or_none("security:patient_access_log", patient_id=1):
        bench.measure(
            "audit: patient access log",
            "page",
            lambda i: client.get(url_or_none("security:patient_access_log", patient_id=pats[i % len(pats)])),
            audit_floor,
        )
    else:
        bench.skip("audit: patient access log", "page", "no URL 'security:patient_access_log'")
    audit_url = url_or_none("security:audit_log")
    if audit_url and ctx["auditor"] is not None:
        auditor_client = bench.client(ctx["auditor"])
        bench.measure(
            "audit search by patient",
            "page",
            lambda i: auditor_client.get(audit_url, {"patient": str(pats[i % len(pats)])}),
            audit_floor,
        )
    else:
        bench.skip("audit search by patient", "page", "no URL 'security:audit_log'")
    if audit_url and ctx["auditor"] is not None:
        auditor_client = bench.client(ctx["auditor"])
        deep_audit = audit_url
        for _ in range(20):  # twenty pages into the whole trail, by keyset
            link = next_link(auditor_client.get(deep_audit))
            if link is None:
                break
            deep_audit = audit_url + link
        bench.measure(
            "audit search 20 pages deep",
            "page",
            lambda i: auditor_client.get(deep_audit),
            None,
        )
    if url_or_none("api-audit-event-list") and ctx["auditor"] is not None:
        auditor_client = bench.client(ctx["auditor"])
        bench.measure(
            "API audit events by patient",
            "api",
            lambda i: auditor_client.get(
                url_or_none("api-audit-event-list"), {"patient": pats[i % len(pats)]}
            ),
            audit_floor,
        )

    # -- conversations: a 200-message thread, its poll, the inbox tab ---------------
    thread = bench.raw(
        f"""SELECT c.id, c.patient_id FROM careteam_conversation c
            JOIN careteam_teammembership m ON m.patient_id = c.patient_id AND m.user_id = %s AND {CURRENT}
            WHERE c.sensitivity_id IS NULL
              AND (SELECT count(*) FROM careteam_message x WHERE x.conversation_id = c.id) >= 200
            ORDER BY c.id LIMIT 1""",
        [cm.pk],
    )
    detail_url = url_or_none("conversations:detail", patient_id=1, conversation_id=1)
    if detail_url is None or not thread:
        bench.skip(
            "conversation page with 200 messages", "page", "no conversations (URL or 200-message thread)"
        )
    else:
        cid, cpid = thread[0]
        page_url = url_or_none("conversations:detail", patient_id=cpid, conversation_id=cid)
        bench.measure(
            "conversation page with 200 messages",
            "page",
            lambda i: client.get(page_url),
            with_params(CONVERSATION_FLOOR, c=lambda i: cid),
        )
        poll_url = url_or_none("conversations:messages", patient_id=cpid, conversation_id=cid)
        page = client.get(page_url).content.decode()
        state = page.split("messages/?state=", 1)[1].split('"', 1)[0]
        bench.measure(
            "conversation poll, nothing new",
            "page",
            lambda i: client.get(poll_url, {"state": state}, HTTP_HX_REQUEST="true"),
            None,
        )
    inbox_url = url_or_none("team:conversations")
    if inbox_url is None:
        bench.skip("inbox", "page", "no URL named 'team:conversations'")
    else:
        for label, user in (("inbox (case manager)", cm), ("inbox (nurse)", nurse)):
            c = bench.client(user)
            bench.measure(
                label,
                "page",
                lambda i, c=c: c.get(inbox_url),
                with_params([CONVERSATION_INBOX_FLOOR], u=lambda i, u=user: u.pk),
            )
        api_url = url_or_none("api-conversation-list")
        if api_url:
            bench.measure(
                "API conversations (unread)",
                "api",
                lambda i: client.get(api_url, {"unread": "true"}),
                with_params([CONVERSATION_INBOX_FLOOR], u=lambda i: cm.pk),
            )

    # -- permission check for one object -------------------------------------------
    patient_objs = {p.pk: p for p in Patient.objects.filter(pk__in=pats)}
    perm_floor = with_params([PERMISSION_FLOOR], u=lambda i: cm.pk, p=lambda i: pats[i % len(pats)])
    bench.measure(
        "permission: patient_access",
        "function",
        lambda i: permissions.patient_access(cm, patient_objs[pats[i % len(pats)]]),
        perm_floor,
        requests=bench.requests * 2,
    )
    bench.measure(
        "permission: access_patient_by_id",
        "function",
        lambda i: permissions.access_patient_by_id(cm, pats[i % len(pats)]),
        perm_floor,
        requests=bench.requests * 2,
    )

    # -- reminder sweep ---------------------------------------------------------------
    # A freshly generated database has every reminder of the past year due at once; a live
    # one has sent them. The first run catches up once (committed, timed, reported); the
    # measured sweeps are the steady state, each rolled back so every run sees the same work.
    try:
        from careteam.models import Notification
        from careteam.reminders import reminders_sweep
    except ImportError as exc:
        bench.skip("reminder sweep", "sweep", str(exc))
    else:
        wanted = "reminder sweep" not in bench.exclude and (not bench.only or "reminder sweep" in bench.only)
        if wanted and not Notification.objects.exists():
            t = time.perf_counter()
            caught_up = reminders_sweep()
            ctx["sweep_catch_up"] = {
                "seconds": round(time.perf_counter() - t, 1),
                "created": caught_up.created,
            }
            print(f"  reminder sweep catch-up: {ctx['sweep_catch_up']}", flush=True)

        def sweep(i: int):
            with transaction.atomic():
                result = reminders_sweep()
                transaction.set_rollback(True)
            return result

        old = bench.warmup
        bench.warmup = 0  # a sweep of the whole database warms itself
        res = bench.measure("reminder sweep", "sweep", sweep, requests=bench.sweep_runs)
        bench.warmup = old
        if res is not None:
            res.note = f"steady state over {ctx['sizes']['handoffs']:,} handoffs, rolled back each time"


# ---------------------------------------------------------------------------
# Child: one database
# ---------------------------------------------------------------------------
def run_one(
    db: str,
    requests: int,
    warmup: int,
    only: set[str] | None,
    out: Path | None,
    no_sweep: bool = False,
    nice: int = 0,
    sweep_runs: int = 3,
) -> dict:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    settings.SECURE_SSL_REDIRECT = False
    bench = Bench(requests, warmup, only)
    if nice:
        # a shared 2-core machine: give this process and the PostgreSQL backend serving
        # its connection a larger CPU share, so figures approach those of an idle machine
        os.nice(nice)
        backend = bench.raw("SELECT pg_backend_pid()")[0][0]
        os.setpriority(os.PRIO_PROCESS, backend, os.getpriority(os.PRIO_PROCESS, 0))
    if no_sweep:
        bench.exclude.add("reminder sweep")
    bench.sweep_runs = sweep_runs
    ctx = personas(bench)
    # as config/wsgi.py does in each worker once the app is loaded
    gc.freeze()
    load = os.getloadavg()
    print(
        f"database {db}: {ctx['sizes']}; case manager {ctx['cm'].username} "
        f"({ctx['caseload'][ctx['cm'].username]} patients), nurse {ctx['nurse'].username} "
        f"({ctx['caseload'][ctx['nurse'].username]} patients); load {load[0]:.2f}",
        flush=True,
    )
    t0 = time.monotonic()
    run_all(bench, ctx)
    report = {
        "database": db,
        "sizes": ctx["sizes"],
        "caseload": ctx["caseload"],
        "requests": requests,
        "debug": settings.DEBUG,
        "load_before": load[0],
        "nice": nice,
        "sweep_catch_up": ctx.get("sweep_catch_up"),
        "load_after": os.getloadavg()[0],
        "seconds": round(time.monotonic() - t0, 1),
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "results": [
            asdict(r) | {"ratio": r.ratio, "fw_ratio": r.fw_ratio, "misses": r.verdicts()}
            for r in bench.results
        ],
    }
    print_table(report)
    if out:
        out.write_text(json.dumps(report, indent=1))
    return report


# ---------------------------------------------------------------------------
# Anchors: what the framework costs on this machine with no database and no auth
# ---------------------------------------------------------------------------
ANCHOR_ROWS = [
    {
        "id": n,
        "mrn": f"MRN{n:06d}",
        "given_name": "Ada",
        "family_name": f"Lovelace {n}",
        "birth_date": "1950-01-01",
        "active": True,
        "status": "active",
        "version": n % 7,
        "created_at": "2026-01-01T12:00:00Z",
        "note": "Agreed at the team meeting.",
    }
    for n in range(50)
]
ANCHOR_TEMPLATE = """<table>{% for r in rows %}<tr><td>{{ r.id }}</td><td>{{ r.mrn }}</td>
<td>{{ r.given_name }}</td><td>{{ r.family_name }}</td><td>{{ r.birth_date }}</td><td>{{ r.active }}</td>
<td>{{ r.status }}</td><td>{{ r.version }}</td><td>{{ r.created_at }}</td><td>{{ r.note }}</td></tr>
{% endfor %}</table>"""


def run_anchors(requests: int, warmup: int) -> dict:
    """p50/p95 through Django's test client, the database refused, nobody signed in: a bare
    DRF list of 50 rows with 10 fields, a Django template of 50 rows, a JsonResponse; with
    no middleware and with the project's own middleware stack."""
    import types

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.http import HttpResponse, JsonResponse
    from django.template import engines
    from django.test import Client, override_settings
    from django.urls import path
    from rest_framework import serializers
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class RowSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        mrn = serializers.CharField()
        given_name = serializers.CharField()
        family_name = serializers.CharField()
        birth_date = serializers.DateField()
        active = serializers.BooleanField()
        status = serializers.CharField()
        version = serializers.IntegerField()
        created_at = serializers.DateTimeField()
        note = serializers.CharField()

    class RowList(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        def get(self, request):
            return Response(RowSerializer(ANCHOR_ROWS, many=True).data)

    import datetime as dt

    typed = [
        r
        | {
            "birth_date": dt.date(1950, 1, 1),
            "created_at": dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
        }
        for r in ANCHOR_ROWS
    ]
    template = engines["django"].from_string(ANCHOR_TEMPLATE)
    urls = types.ModuleType("bench_anchor_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("drf/", RowList.as_view()),
        path("template/", lambda request: HttpResponse(template.render({"rows": typed}, request))),
        path("json/", lambda request: JsonResponse({"ok": True})),
    ]
    sys.modules["bench_anchor_urls"] = urls

    def refuse(execute, sql, params, many, context):
        raise RuntimeError(f"an anchor touched the database: {sql[:80]}")

    anchors = {
        "DRF list, 50 rows x 10 fields": ("/drf/", 0.81),
        "Django template, 50 rows": ("/template/", 1.0),
        "JsonResponse": ("/json/", 0.22),
    }
    report: dict[str, dict] = {}
    print(f"anchors: load {os.getloadavg()[0]:.2f}, {requests} requests after {warmup} warm-up")
    print(f"{'anchor':<32}{'middleware':>12}{'p50':>8}{'p95':>8}{'issue p50':>11}")
    for stack, middleware in (("none", []), ("project", settings.MIDDLEWARE)):
        with (
            override_settings(
                ROOT_URLCONF="bench_anchor_urls",
                MIDDLEWARE=middleware,
                SECURE_SSL_REDIRECT=False,
                ALLOWED_HOSTS=["testserver"],
            ),
            connection.execute_wrapper(refuse),
        ):
            client = Client()
            for label, (url, stated) in anchors.items():
                times = []
                for i in range(-warmup, requests):
                    t = time.perf_counter()
                    response = client.get(url)
                    if i >= 0:
                        times.append((time.perf_counter() - t) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(
                            f"{label} answered {response.status_code}: {response.content[:200]!r}"
                        )
                p50, p95 = pct(times, 50), pct(times, 95)
                report[f"{label} ({stack} middleware)"] = {"p50": round(p50, 3), "p95": round(p95, 3)}
                print(f"{label:<32}{stack:>12}{p50:8.2f}{p95:8.2f}{stated:11.2f}")
    return report


# ---------------------------------------------------------------------------
# Printing and comparing
# ---------------------------------------------------------------------------
def fmt(v: float | None, spec: str = "7.2f") -> str:
    return format(v, spec) if v is not None else "-".rjust(len(format(0, spec)))


def print_table(report: dict) -> None:
    print(f"\n## {report['database']}: {report['sizes']}")
    print(
        f"{'operation':<32}{'p50':>8}{'p95':>8}{'p99':>8}{'queries':>9}{'pages':>8}{'db ms':>8}{'cpu ms':>8}"
        f"{'floor p50':>11}{'ratio':>7}  verdict"
    )
    for r in report["results"]:
        if not r["available"]:
            print(f"{r['name']:<32}  not available yet: {r['note']}")
            continue
        q = (
            f"{r['queries_min']}"
            if r["queries_min"] == r["queries_max"]
            else f"{r['queries_min']}-{r['queries_max']}"
        )
        ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "-"
        verdict = "; ".join(r["misses"]) or "ok"
        print(
            f"{r['name']:<32}{r['p50']:8.2f}{r['p95']:8.2f}{r['p99']:8.2f}{q:>9}{r.get('buffers') or 0:>8}"
            f"{fmt(r.get('db_ms'), '8.2f')}{fmt(r.get('cpu_p50'), '8.2f')}"
            f"{fmt(r['floor_p50'], '11.2f')}{ratio:>7}  {verdict}"
        )
    print_breakdown(report)


def print_breakdown(report: dict) -> None:
    """Per operation: both floors, the median over their sum, and where one request's
    time goes (a second table, so the first keeps the columns results.md quotes)."""
    print(f"\n## {report['database']}: floors and where the time goes (ms)")
    print(
        f"{'operation':<32}{'p50':>8}{'floor p50':>11}{'fw floor':>10}{'p50/sum':>9}"
        f"{'sql':>8}{'render':>8}{'python':>8}  note"
    )
    for r in report["results"]:
        if not r["available"]:
            continue
        fw_ratio = f"{r['fw_ratio']:.1f}x" if r.get("fw_ratio") else "-"
        render = None if r.get("render_ms") is None else r["render_ms"] + (r.get("serialize_ms") or 0)
        note = r.get("fw_note") or ""
        if r.get("fw_p50") is not None and not r["floor_p50"]:
            note = "no SQL floor for this operation"
        print(
            f"{r['name']:<32}{r['p50']:8.2f}{fmt(r['floor_p50'], '11.2f')}{fmt(r.get('fw_p50'), '10.2f')}"
            f"{fw_ratio:>9}{fmt(r.get('sql_ms'), '8.2f')}{fmt(render, '8.2f')}"
            f"{fmt(r.get('python_ms'), '8.2f')}  {note}"
        )


def compare(small: dict, big: dict) -> int:
    """Growth from the small to the big database per operation; returns the misses."""
    print(f"\n## growth {small['database']} -> {big['database']}")
    print(
        f"{'operation':<32}{'p50 small':>10}{'p50 big':>9}{'growth':>8}{'p95 growth':>11}{'queries':>12}"
        f"{'pages':>16}  verdict"
    )
    misses = 0
    by_name = {r["name"]: r for r in small["results"]}
    for r in big["results"]:
        s = by_name.get(r["name"])
        if not r["available"] or s is None or not s["available"]:
            continue
        growth = r["p50"] / s["p50"] if s["p50"] else 0
        growth95 = r["p95"] / s["p95"] if s["p95"] else 0
        # steady state: the first requests of a session may add a session save or two
        q_same = s["queries_min"] == r["queries_min"]
        verdict = []
        if growth > GROWTH_TARGET:
            verdict.append(f"grows {growth:.2f}x > {GROWTH_TARGET}")
        if not q_same:
            verdict.append("query count changes with size")
        misses += bool(verdict)
        q = f"{s['queries_min']}->{r['queries_min']}"
        pages = f"{s.get('buffers') or 0}->{r.get('buffers') or 0}"
        print(
            f"{r['name']:<32}{s['p50']:10.2f}{r['p50']:9.2f}{growth:7.2f}x{growth95:10.2f}x{q:>12}{pages:>16}  "
            f"{'; '.join(verdict) or 'ok'}"
        )
    return misses


def markdown(small: dict, big: dict) -> str:
    """The figures as the tables of bench/results.md."""
    by_name = {r["name"]: r for r in small["results"]}
    lines = [
        "| operation | queries | p50 | p95 | p99 | pages | db ms | cpu ms | floor p50 | ratio "
        "| p50 at 10k | growth | verdict | fw floor | p50/sum | sql | render | python | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in big["results"]:
        if not r["available"]:
            lines.append(f"| {r['name']} | not available: {r['note']} |" + " |" * 17)
            continue
        s = by_name.get(r["name"]) or {}
        growth = r["p50"] / s["p50"] if s.get("p50") else None
        verdict = list(r["misses"])
        if growth and growth > GROWTH_TARGET:
            verdict.append(f"grows {growth:.2f}x")
        if s.get("available") and s["queries_min"] != r["queries_min"]:
            verdict.append(f"queries {s['queries_min']} -> {r['queries_min']}")
        q = (
            f"{r['queries_min']}"
            if r["queries_min"] == r["queries_max"]
            else f"{r['queries_min']}-{r['queries_max']}"
        )
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "-"
        fw_ratio = f"{r['fw_ratio']:.1f}x" if r.get("fw_ratio") else "-"
        render = None if r.get("render_ms") is None else r["render_ms"] + (r.get("serialize_ms") or 0)
        note = (r.get("fw_note") or "").replace("|", "\\|")  # SQL may hold a || or a |
        lines.append(
            f"| {r['name']} | {q} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r.get('buffers') or 0} "
            f"| {fmt(r.get('db_ms'), '.1f').strip()} | {fmt(r.get('cpu_p50'), '.1f').strip()} "
            f"| {fmt(r.get('floor_p50'), '.2f').strip()} | {ratio} | {fmt(s.get('p50'), '.1f').strip()} "
            f"| {fmt(growth, '.2f').strip()}x | {'; '.join(verdict) or 'met'} "
            f"| {fmt(r.get('fw_p50'), '.2f').strip()} | {fw_ratio} | {fmt(r.get('sql_ms'), '.1f').strip()} "
            f"| {fmt(render, '.1f').strip()} | {fmt(r.get('python_ms'), '.1f').strip()} | {note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", help="database name (repeat to compare sizes, small first)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per operation")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--only", help="comma-separated operation names")
    parser.add_argument("--json", type=Path, help="write the results here (one database)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the reminder sweep")
    parser.add_argument("--sweep-runs", type=int, default=3, help="timed steady-state sweeps")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="renice this process and its database backend (e.g. -10; root only)",
    )
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("SMALL", "BIG"), help="compare two JSON results"
    )
    parser.add_argument(
        "--anchors",
        action="store_true",
        help="print what a bare DRF list, a template of 50 rows and a JsonResponse cost here, and stop",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if args.anchors:
        figures = run_anchors(max(args.requests, 200), args.warmup)
        if args.json:
            args.json.write_text(json.dumps({"anchors": figures, "load": os.getloadavg()[0]}, indent=1))
        return 0
    if args.compare:
        small, big = (json.loads(p.read_text()) for p in args.compare)
        print_table(small)
        print_table(big)
        misses = compare(small, big)
        print("\n" + markdown(small, big))
        return 1 if misses else 0
    dbs = args.db or ["careteam_bench"]
    if len(dbs) == 1:
        run_one(
            dbs[0], args.requests, args.warmup, only, args.json, args.no_sweep, args.nice, args.sweep_runs
        )
        return 0
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for db in dbs:
            out = Path(tmp) / f"{db}.json"
            cmd = [
                sys.executable,
                __file__,
                "--db",
                db,
                "--requests",
                str(args.requests),
                "--warmup",
                str(args.warmup),
                "--json",
                str(out),
            ]
            if args.only:
                cmd += ["--only", args.only]
            if args.no_sweep:
                cmd.append("--no-sweep")
            if args.nice:
                cmd += ["--nice", str(args.nice)]
            cmd += ["--sweep-runs", str(args.sweep_runs)]
            subprocess.run(cmd, check=True)  # noqa: S603 - our own script
            reports.append(json.loads(out.read_text()))
            if args.json:
                args.json.with_name(f"{args.json.stem}-{db}.json").write_text(out.read_text())
    misses = compare(reports[0], reports[-1])
    print("\n" + markdown(reports[0], reports[-1]))
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
