"""Time one full reminder sweep over a large handoff table.

Builds a fresh database (dropped and recreated, then migrated), loads care teams and
N handoffs with ``INSERT ... SELECT`` over ``generate_series`` (nothing crosses the wire
row by row), and times ``careteam.reminders.reminders_sweep`` at two sizes: first with 1%
of the handoffs loaded, then with all of them (notifications emptied in between, so the
second sweep is a full one), then once more (the next minute: nothing new is due, every
candidate row conflicts). Prints seconds, queries and reminders created at each size: the
query count must be the same at both, because every rule is one set-based statement.

    DEBUG=true REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/sweep.py          # 1,000,000
    DEBUG=true REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/sweep.py --small  # 10,000

The database (default ``careteam_bench_sweep``, on the server of DATABASE_URL) is
dropped and recreated on every run. Email tasks the sweep enqueues go to a queue of their
own on REDIS_URL, which is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# share of handoffs in each state (per 1,000): the rest are completed, or open and not yet due
TEAM_DISCIPLINES = ["case-management", "physician", "nursing", "pharmacy", "social-work"]
HANDOFFS_PER_PATIENT = 500
PATIENTS_PER_CLINICIAN = 50


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1_000_000, help="handoffs to load (default 1,000,000)")
    p.add_argument("--small", action="store_true", help="10,000 handoffs")
    p.add_argument("--db", default="careteam_bench_sweep", help="database to (re)create")
    p.add_argument(
        "--due-share",
        type=float,
        default=0.10,
        help="share of handoffs with a reminder due (a third each: unacknowledged, due soon, overdue)",
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="full sweeps to time (notifications emptied between)"
    )
    args = p.parse_args()
    if args.small:
        args.size = 10_000
    if args.db in ("careteam", "postgres", "template0", "template1"):
        p.error(f"refusing to drop database {args.db!r}")
    return args


def recreate_database(name: str) -> str:
    """Drop and create `name` on the server of DATABASE_URL; return its URL."""
    import psycopg

    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careteam"))
    admin_url = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(base._replace(path=f"/{name}"))


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def load_teams(cursor, patients: int) -> None:
    """`patients` patients, each with a case manager, a physician lead, a nurse, a
    pharmacist and a social worker; every clinician is on ~50 teams. Guardian grants as
    membership_add would make them."""
    per_discipline = max(1, patients // PATIENTS_PER_CLINICIAN)
    cursor.execute(
        """
        INSERT INTO careteam_user (password, is_superuser, username, first_name, last_name, email,
                                   is_staff, is_active, date_joined, title, phone)
        SELECT '!', false, 'bench-' || d.code || '-' || i, 'Bench', d.code || ' ' || i,
               'bench-' || d.code || '-' || i || '@example.org', false, true, now(), '', ''
        FROM careteam_discipline d, generate_series(1, %(n)s) i
        WHERE d.code = ANY(%(codes)s)""",
        {"n": per_discipline, "codes": TEAM_DISCIPLINES},
    )
    cursor.execute(
        """
        INSERT INTO careteam_user_disciplines (user_id, discipline_id)
        SELECT u.id, d.id FROM careteam_user u JOIN careteam_discipline d
          ON u.username LIKE 'bench-' || d.code || '-%%'
        WHERE d.code = ANY(%(codes)s)""",
        {"codes": TEAM_DISCIPLINES},
    )
    cursor.execute(
        """
        INSERT INTO patients_patient (mrn, given_name, family_name, preferred_name, birth_date, gender,
            preferred_language, interpreter_needed, phone, email, address_line, city, state,
            postal_code, status, preferences, created_at, updated_at, version)
        SELECT 'BENCH' || lpad(i::text, 8, '0'), 'Given' || i, 'Family' || i, '',
               date '1950-01-01' + (i %% 20000), 'unknown', 'en', false, '', '', '', '', '', '',
               'active', '', now(), now(), 1
        FROM generate_series(1, %(n)s) i""",
        {"n": patients},
    )
    cursor.execute(
        """
        WITH p AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM patients_patient),
             u AS (SELECT u.id, ud.discipline_id,
                          row_number() OVER (PARTITION BY ud.discipline_id ORDER BY u.id) - 1 AS j
                   FROM careteam_user u JOIN careteam_user_disciplines ud ON ud.user_id = u.id
                   WHERE u.username LIKE 'bench-%%')
        INSERT INTO careteam_teammembership (patient_id, user_id, discipline_id, role, status,
                                             start_date, end_date, created_at, updated_at, version)
        SELECT p.id, u.id, d.id,
               CASE d.code WHEN 'case-management' THEN 'case-manager' WHEN 'physician' THEN 'lead'
                           ELSE 'member' END,
               'active', current_date - 30, NULL, now(), now(), 1
        FROM p CROSS JOIN careteam_discipline d
        JOIN u ON u.discipline_id = d.id AND u.j = p.i %% %(per)s
        WHERE d.code = ANY(%(codes)s)""",
        {"per": per_discipline, "codes": TEAM_DISCIPLINES},
    )
    cursor.execute(
        """
        INSERT INTO careteam_patientuserobjectpermission (permission_id, user_id, content_object_id)
        SELECT ap.id, m.user_id, m.patient_id
        FROM careteam_teammembership m
        JOIN auth_permission ap ON ap.codename = 'view_patient'
        JOIN django_content_type ct ON ct.id = ap.content_type_id AND ct.app_label = 'patients'"""
    )


def load_handoffs(cursor, *, first: int, last: int, due_share: float) -> None:
    """Handoffs `first`..`last` of the series, spread over every patient. Per 1,000: a
    third of the due share unacknowledged past the threshold, a third accepted and due
    within the hour, a third in progress and overdue; of the rest 85% completed and 15%
    open and not yet due. One in five goes to the nursing queue instead of a person."""
    third = max(1, round(due_share * 1000 / 3))
    cursor.execute(
        """
        WITH p AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM patients_patient),
             n AS (SELECT count(*) AS c FROM patients_patient),
             team AS (
                SELECT m.patient_id,
                       max(m.user_id) FILTER (WHERE d.code = 'physician') AS lead_id,
                       max(m.user_id) FILTER (WHERE d.code = 'nursing') AS nurse_id,
                       max(d.id) FILTER (WHERE d.code = 'nursing') AS nursing_id
                FROM careteam_teammembership m JOIN careteam_discipline d ON d.id = m.discipline_id
                GROUP BY m.patient_id),
             g AS (SELECT g, g %% 1000 AS b FROM generate_series(%(first)s, %(last)s) g)
        INSERT INTO careteam_handoff (patient_id, care_plan_id, activity_id, kind, from_user_id, to_user_id,
            to_discipline_id, situation, background, assessment, recommendation, priority, due_at,
            status, status_reason, accepted_by_id, acknowledged_at, completed_at, created_at,
            updated_at, version)
        SELECT t.patient_id, NULL, NULL, 'patient', t.lead_id,
               CASE WHEN g.g %% 5 = 0 AND g.b < %(t1)s THEN NULL ELSE t.nurse_id END,
               CASE WHEN g.g %% 5 = 0 AND g.b < %(t1)s THEN t.nursing_id ELSE NULL END,
               'Situation ' || g.g, 'Background', 'Assessment', 'Recommendation', 'routine',
               CASE WHEN g.b < %(t1)s THEN now() + interval '2 days'
                    WHEN g.b < %(t2)s THEN now() + interval '30 minutes'
                    WHEN g.b < %(t3)s THEN now() - interval '1 hour'
                    ELSE now() + interval '2 days' END,
               CASE WHEN g.b < %(t1)s THEN 'requested'
                    WHEN g.b < %(t2)s THEN 'accepted'
                    WHEN g.b < %(t3)s THEN 'in-progress'
                    WHEN g.b %% 100 < 85 THEN 'completed'
                    ELSE 'requested' END,
               '',
               CASE WHEN g.b >= %(t1)s AND (g.b < %(t3)s OR g.b %% 100 < 85) THEN t.nurse_id END,
               CASE WHEN g.b >= %(t1)s AND (g.b < %(t3)s OR g.b %% 100 < 85)
                    THEN now() - interval '2 hours' END,
               CASE WHEN g.b >= %(t3)s AND g.b %% 100 < 85 THEN now() - interval '1 hour' END,
               CASE WHEN g.b < %(t3)s THEN now() - interval '3 hours'
                    WHEN g.b %% 100 < 85 THEN now() - interval '3 days'
                    ELSE now() - interval '5 minutes' END,
               now(), 1
        FROM g CROSS JOIN n JOIN p ON p.i = g.g %% n.c JOIN team t ON t.patient_id = p.id""",
        {"first": first, "last": last, "t1": third, "t2": 2 * third, "t3": 3 * third},
    )


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------
def measure(label: str, handoffs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from careteam.reminders import reminders_sweep

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        result = reminders_sweep()
        seconds = time.perf_counter() - start
    row = {
        "label": label,
        "handoffs": handoffs,
        "seconds": seconds,
        "queries": len(queries),
        "reminders": result.total,
        "by_kind": {k: v for k, v in result.created.items() if v},
    }
    print(
        f"{label:>6}: {handoffs:>9,} handoffs  sweep {seconds:6.2f} s  {len(queries):2d} queries  "
        f"{result.total:>7,} reminders  {row['by_kind']}",
        flush=True,
    )
    return row


def main() -> None:
    args = parse_args()
    os.environ["DATABASE_URL"] = recreate_database(args.db)
    os.environ.setdefault("DEBUG", "true")
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue = f"bench-sweep-{os.getpid()}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction

    from careteam.reference import ensure_reference_data

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    ensure_reference_data()
    patients = max(20, args.size // HANDOFFS_PER_PATIENT)
    small = max(1_000, args.size // 100)
    with transaction.atomic(), connection.cursor() as cursor:
        load_teams(cursor, patients)
        load_handoffs(cursor, first=1, last=small, due_share=args.due_share)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")
    print(f"database {args.db}: migrated and loaded {small:,} handoffs in {time.perf_counter() - t0:.1f} s")
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"PostgreSQL {connection.pg_version // 10000}, Python {platform.python_version()}"
    )
    rows = [measure("small", small)]

    t1 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE careteam_notification")
        load_handoffs(cursor, first=small + 1, last=args.size, due_share=args.due_share)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        # write the loader's dirty pages out now, so the timed sweep does not pay for them
        cursor.execute("CHECKPOINT")
    print(f"loaded {args.size - small:,} more handoffs in {time.perf_counter() - t1:.1f} s")
    fulls = [measure("full", args.size)]
    for _ in range(args.repeat - 1):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE careteam_notification")
        fulls.append(measure("full", args.size))
    rows.append(fulls[0])
    times = sorted(r["seconds"] for r in fulls)
    if len(times) > 1:
        print(
            f"full sweep over {len(times)} runs: best {times[0]:.2f} s, median {times[len(times) // 2]:.2f} s"
        )
    # the next minute's sweep: everything due already has its reminder, nothing is created
    measure("again", args.size)

    same = rows[0]["queries"] == rows[1]["queries"]
    print(
        f"query count {'constant' if same else 'GREW'}: {rows[0]['queries']} at {rows[0]['handoffs']:,} "
        f"handoffs ({rows[0]['reminders']:,} due), {rows[1]['queries']} at {rows[1]['handoffs']:,} "
        f"({rows[1]['reminders']:,} due)"
    )
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete(queue)


if __name__ == "__main__":
    main()
