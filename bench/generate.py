"""Build a realistic CareTeam database at scale, entirely inside PostgreSQL.

Default size (``--patients 100000``): 5,000 clinicians across every discipline, team
memberships giving each clinician about 20-200 patients (and the guardian object
permissions a membership grants), one active care plan per patient (plus older completed
plans), 1,000,000 plan items (goals, needs, activities; some sensitive), 200,000 handoffs,
300,000 referrals, 400,000 conversations with 2,000,000 messages (some 200-message
threads), 50,000 catalog services, 5,000,000 audit events and a creation history
row for every patient, plan and plan item, plus 1,000 saved versions of one plan's
activities (``--history-versions``, for the plan history benchmark; it does not scale).
``--patients 10000`` scales every count by the
same factor, so one clinician's caseload is the same at every size: that is what lets the
benchmark compare sizes.

Rows are made with ``INSERT ... SELECT`` over ``generate_series`` so nothing crosses the
wire row by row; secondary indexes of the biggest tables are dropped during the load and
rebuilt after, and foreign-key triggers are off while loading (the generator builds the
references itself). Ends with VACUUM ANALYZE, as autovacuum would have on a live system.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/careteam_bench \\
        .venv/bin/python bench/generate.py --patients 100000 [--reset]

Refuses to touch a database that already holds patients unless ``--reset`` is given, which
drops the whole public schema and migrates it afresh.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

# clinicians per discipline, as a share of all clinicians; case managers, physicians
# (plan leads) and nurses sit on every team, the others on two or three teams in seven
OTHER_DISCIPLINES = [
    "social-work",
    "pharmacy",
    "physical-therapy",
    "occupational-therapy",
    "dietetics",
    "behavioural-health",
    "home-health",
]
PASSWORD = "bench-password-1"  # noqa: S105 - synthetic benchmark users only

GIVEN = [
    "Alice",
    "Amir",
    "Ana",
    "Andre",
    "Aisha",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Daniel",
    "Dara",
    "Diego",
    "Elena",
    "Emeka",
    "Emma",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ibrahim",
    "Ines",
    "Isaac",
    "Jade",
    "James",
    "Jin",
    "Julia",
    "Kai",
    "Kenji",
    "Lena",
    "Leo",
    "Lucia",
    "Luis",
    "Maya",
    "Mei",
    "Mohamed",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Pablo",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sami",
    "Sara",
    "Sofia",
    "Tariq",
    "Thu",
    "Tom",
    "Uma",
    "Victor",
    "Vera",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
    "Zara",
    "Ravi",
    "Ines",
    "Marta",
    "Pavel",
    "Oksana",
    "Kofi",
    "Abena",
    "Linh",
    "Minh",
    "Ngozi",
]
FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Okafor",
    "Mensah",
    "Kowalski",
    "Novak",
    "Ivanova",
    "Petrov",
    "Haddad",
    "Nasser",
    "Tanaka",
    "Sato",
    "Kim",
    "Park",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Singh",
    "Patel",
    "Shah",
    "Khan",
    "Ali",
    "Hussain",
    "Ahmed",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Muller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Dubois",
    "Moreau",
    "Laurent",
    "Bernard",
    "Silva",
    "Santos",
    "Oliveira",
    "Costa",
]
CITIES = [
    "Springfield",
    "Riverside",
    "Fairview",
    "Franklin",
    "Greenville",
    "Bristol",
    "Clinton",
    "Georgetown",
    "Salem",
    "Madison",
]
AREAS = [
    "Northside",
    "Southside",
    "Eastside",
    "Westside",
    "Downtown",
    "Uptown",
    "Riverside",
    "Lakeside",
    "Hillcrest",
    "Midtown",
]
SERVICE_KINDS = [
    ("food", "Food Pantry", "Free groceries and emergency food boxes for families"),
    ("food", "Meals on Wheels", "Hot meals delivered at home for older adults and people with disabilities"),
    ("housing", "Housing Assistance", "Rental assistance, eviction prevention and shelter placement"),
    ("housing", "Emergency Shelter", "Overnight shelter beds and case management"),
    ("transportation", "Medical Rides", "Free transportation to medical appointments"),
    ("transportation", "Bus Pass Program", "Reduced fare transit passes for low-income residents"),
    ("financial", "Utility Assistance", "Help paying electricity, gas and water bills"),
    ("financial", "Tax Help", "Free tax preparation and benefits enrolment"),
    ("mental-health", "Counseling Center", "Individual and group counseling, sliding scale fees"),
    ("substance-use", "Recovery Support", "Peer recovery coaching and outpatient treatment"),
    ("caregiver-support", "Caregiver Respite", "Respite care and support groups for family caregivers"),
    ("social-isolation", "Senior Center", "Activities, friendly visitors and social groups for seniors"),
    ("language", "Interpreter Services", "Medical interpretation in many languages"),
    ("safety", "Domestic Violence Hotline", "Safety planning, shelter and legal advocacy"),
    ("mobility", "Home Modification", "Grab bars, ramps and fall prevention home visits"),
    ("medication", "Prescription Assistance", "Help with medication costs and pharmacy programs"),
]
NEED_ROWS = [
    ("medical", "clinical", "Uncontrolled diabetes, HbA1c above target"),
    ("medical", "medication", "Takes 12 medications, missed doses reported"),
    ("medical", "mobility", "Two falls in the last three months"),
    ("behavioural", "mental-health", "Low mood and poor sleep since discharge"),
    ("behavioural", "substance-use", "Alcohol use affecting medication adherence"),
    ("social", "transportation", "No car; misses clinic appointments"),
    ("social", "food", "Runs out of food before the end of the month"),
    ("social", "housing", "Facing eviction next month"),
    ("social", "financial", "Cannot afford copays"),
    ("social", "caregiver-support", "Daughter is the only caregiver and is exhausted"),
    ("social", "social-isolation", "Lives alone, few visitors"),
    ("social", "language", "Prefers Spanish; needs an interpreter at visits"),
]
GOAL_ROWS = [
    ("Keep HbA1c below 7.5 %", "HbA1c", "< 7.5 %"),
    ("Walk to the corner shop without help", "walking distance", "200 m"),
    ("No emergency visits for three months", "ED visits", "0"),
    ("Take every medication as prescribed", "adherence", "> 90 %"),
    ("Stay in my own home", "", ""),
    ("Sleep through the night most days", "nights slept", "5 / week"),
    ("Lose five kilos before summer", "weight", "-5 kg"),
    ("Get to every clinic appointment", "appointments kept", "100 %"),
]
ACTIVITY_ROWS = [
    "Medication reconciliation",
    "Home safety visit",
    "Diabetes education session",
    "Arrange transportation to clinic",
    "Refer to food pantry",
    "Physical therapy twice weekly",
    "Depression screening (PHQ-9)",
    "Call patient after discharge",
    "Nutrition counselling",
    "Caregiver respite planning",
    "Review blood pressure log",
    "Apply for housing assistance",
]


def log(msg: str, t0: float) -> None:
    print(f"[{time.monotonic() - t0:7.1f}s] {msg}", flush=True)


def sql_array(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


# ---------------------------------------------------------------------------
# Schema-tolerant INSERT ... SELECT
# ---------------------------------------------------------------------------
_TYPE_FILL = {
    "text": "''",
    "character varying": "''",
    "integer": "0",
    "smallint": "0",
    "bigint": "0",
    "boolean": "false",
    "numeric": "0",
    "double precision": "0",
    "date": "current_date",
    "timestamp with time zone": "now()",
    "jsonb": "'{}'::jsonb",
    "json": "'{}'::json",
    "ARRAY": "'{}'",
    "uuid": "gen_random_uuid()",
    "tsvector": "''::tsvector",
}


def _required_columns(cur, table: str) -> dict[str, str]:
    cur.execute(
        """SELECT column_name, data_type FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = %s AND is_nullable = 'NO'
             AND column_default IS NULL AND is_identity = 'NO' AND is_generated = 'NEVER'""",
        [table],
    )
    return dict(cur.fetchall())


def insert(cur, table: str, cols: dict[str, str], from_sql: str) -> int:
    """INSERT INTO table (cols) SELECT exprs FROM ...; NOT NULL columns the generator does
    not know about (added by a later migration) get a neutral value of their type, so the
    generator keeps working while the schema grows."""
    cols = dict(cols)
    for name, dtype in _required_columns(cur, table).items():
        if name not in cols and name != "id":
            if dtype not in _TYPE_FILL:
                raise RuntimeError(f"{table}.{name}: no filler for type {dtype}")
            cols[name] = _TYPE_FILL[dtype]
    names = ", ".join(cols)
    exprs = ",\n       ".join(f"{expr} AS {name}" for name, expr in cols.items())
    cur.execute(f"INSERT INTO {table} ({names})\nSELECT {exprs}\n{from_sql}")
    return cur.rowcount


def drop_secondary_indexes(cur, table: str) -> list[str]:
    """Drop indexes not backing a constraint; return their definitions to rebuild."""
    cur.execute(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
           WHERE i.schemaname = 'public' AND i.tablename = %s
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
        [table],
    )
    defs = []
    for name, definition in cur.fetchall():
        cur.execute(f'DROP INDEX "{name}"')
        defs.append(definition)
    return defs


def history_copy(cur, base: str, hist: str, where: str = "", user_col: str | None = "created_by_id") -> int:
    """One '+' history row per base row, copying every column the two tables share."""
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema='public' AND table_name=%s",
        [base],
    )
    base_cols = {r[0] for r in cur.fetchall()}
    cur.execute(
        """SELECT column_name FROM information_schema.columns WHERE table_schema='public'
           AND table_name=%s ORDER BY ordinal_position""",
        [hist],
    )
    cols: dict[str, str] = {}
    for (name,) in cur.fetchall():
        if name in base_cols:
            cols[name] = f"b.{name}"
    cols["history_date"] = "b.created_at"
    cols["history_type"] = "'+'"
    cols["history_change_reason"] = "NULL"
    cols["history_user_id"] = f"b.{user_col}" if user_col else "NULL"
    return insert(cur, hist, cols, f"FROM {base} b {where} ORDER BY b.id")


LONG_HISTORY_REASON = "bench: long history"


def history_versions(cur, versions: int) -> int:
    """`versions` saved changes of one plan's activities (the first active plan, by patient
    id, with an activity not filed as sensitive), an hour apart, each retitling the
    activity: the plan history page at that length. bench/run.py finds the plan by
    LONG_HISTORY_REASON."""
    cur.execute(
        """SELECT p.id FROM careplans_careplan p WHERE p.status = 'active' AND EXISTS
             (SELECT 1 FROM careplans_activity a WHERE a.care_plan_id = p.id AND a.sensitivity_id IS NULL)
           ORDER BY p.patient_id, p.id LIMIT 1"""
    )
    row = cur.fetchone()
    if row is None or versions <= 0:
        return 0
    plan_id = row[0]
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema='public' AND table_name=%s",
        ["careplans_activity"],
    )
    base_cols = {r[0] for r in cur.fetchall()}
    cur.execute(
        """SELECT column_name FROM information_schema.columns WHERE table_schema='public'
           AND table_name='careplans_historicalactivity' ORDER BY ordinal_position"""
    )
    cols = {name: f"b.{name}" for (name,) in cur.fetchall() if name in base_cols}
    cols["title"] = "left(b.title, 180) || ' (revision ' || g.i || ')'"
    cols["version"] = "1 + g.i"
    cols["history_date"] = "b.created_at + g.i * interval '1 minute'"
    cols["history_type"] = "'~'"
    cols["history_change_reason"] = f"'{LONG_HISTORY_REASON}'"
    cols["history_user_id"] = "b.created_by_id"
    return insert(
        cur,
        "careplans_historicalactivity",
        cols,
        f"""FROM (SELECT a.*, row_number() OVER (ORDER BY a.id) - 1 AS k, count(*) OVER () AS n
                  FROM careplans_activity a WHERE a.care_plan_id = {plan_id} AND a.sensitivity_id IS NULL) b
            JOIN generate_series(1, {versions}) g(i) ON (g.i - 1) % b.n = b.k
            ORDER BY g.i""",
    )


# ---------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------
def generate(
    patients: int, seed: float, with_history: bool, t0: float, history_versions_n: int = 1000
) -> dict[str, int]:
    scale = patients / 100_000
    n_users = max(60, round(5000 * scale))
    n_services = max(200, round(50_000 * scale))
    n_orgs = max(40, n_services // 5)
    n_handoffs = round(200_000 * scale)
    n_audit = round(5_000_000 * scale)
    counts: dict[str, int] = {}

    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK triggers while loading
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SET work_mem = '256MB'")
        cur.execute("SELECT setseed(%s)", [seed])

        cur.execute("SELECT code, id FROM careteam_discipline")
        disc = dict(cur.fetchall())
        cur.execute("SELECT code, id FROM careteam_sensitivitycategory ORDER BY id")
        sens = [r[1] for r in cur.fetchall()]
        cur.execute(
            """SELECT p.codename, p.id FROM auth_permission p JOIN django_content_type ct
               ON ct.id = p.content_type_id WHERE ct.app_label = 'patients' AND ct.model = 'patient'"""
        )
        perm = dict(cur.fetchall())
        cur.execute(
            """SELECT p.id FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
               WHERE ct.app_label = 'careteam' AND p.codename = 'view_audit_log'"""
        )
        audit_perm = cur.fetchone()[0]

        big_tables = [
            "careteam_auditevent",
            "careteam_patientuserobjectpermission",
            "careteam_teammembership",
            "careplans_goal",
            "careplans_need",
            "careplans_activity",
            "careplans_historicalgoal",
            "careplans_historicalneed",
            "careplans_historicalactivity",
            "careteam_handoff",
            "referrals_referral",
            "referrals_referralevent",
            "visits_visit",
            "visits_authorisation",
            "careteam_conversation",
            "careteam_message",
            "careteam_messagemention",
            "careteam_conversationread",
        ]
        rebuild: list[str] = []
        for t in big_tables:
            rebuild += drop_secondary_indexes(cur, t)

        # -- users: clinicians in contiguous id ranges per discipline -----------------
        shares = [("case-management", 2), ("physician", 2), ("nursing", 2)] + [
            (c, 5 / 7) for c in OTHER_DISCIPLINES
        ]
        total_share = sum(s for _, s in shares)
        cur.execute(
            "CREATE TEMP TABLE bench_group (disc_id bigint, code text, first_id int, size int, wsum int)"
        )
        first = 1
        for i, (code, share) in enumerate(shares):
            size = max(3, round(n_users * share / total_share)) if i < len(shares) - 1 else 0
            if i == len(shares) - 1:
                size = max(3, n_users - (first - 1))
            cur.execute("INSERT INTO bench_group VALUES (%s, %s, %s, %s, 0)", [disc[code], code, first, size])
            first += size
        n_clin = first - 1
        password = make_password(PASSWORD)
        counts["users"] = insert(
            cur,
            "careteam_user",
            {
                "id": "u.id",
                "password": f"'{password}'",
                "is_superuser": "false",
                "username": "'bench_' || g.code || '_' || (u.id - g.first_id + 1)",
                "first_name": f"({sql_array(GIVEN)})[1 + (u.id * 7) % {len(GIVEN)}]",
                "last_name": f"({sql_array(FAMILY)})[1 + (u.id * 13) % {len(FAMILY)}]",
                "email": "'bench' || u.id || '@example.org'",
                "is_staff": "false",
                "kind": "'staff'",
                "is_active": "true",
                "date_joined": "now() - interval '2 years'",
                "title": "CASE g.code WHEN 'physician' THEN 'MD' WHEN 'nursing' THEN 'RN' "
                "WHEN 'social-work' THEN 'MSW' WHEN 'pharmacy' THEN 'PharmD' ELSE '' END",
                "phone": "'555-' || lpad(u.id::text, 4, '0')",
            },
            "FROM bench_group g, generate_series(g.first_id, g.first_id + g.size - 1) u(id)",
        )
        counts["users"] += insert(
            cur,
            "careteam_user",
            {
                "id": f"{n_clin} + s.i",
                "password": f"'{password}'",
                "is_superuser": "s.i = 1",
                "username": "CASE s.i WHEN 1 THEN 'bench_admin' ELSE 'bench_auditor' END",
                "first_name": "'Bench'",
                "last_name": "CASE s.i WHEN 1 THEN 'Admin' ELSE 'Auditor' END",
                "email": "''",
                "is_staff": "true",
                "kind": "'staff'",
                "is_active": "true",
                "date_joined": "now() - interval '2 years'",
            },
            "FROM generate_series(1, 2) s(i)",
        )
        cur.execute(
            "INSERT INTO careteam_user_user_permissions (user_id, permission_id) VALUES (%s, %s)",
            [n_clin + 2, audit_perm],
        )
        insert(
            cur,
            "careteam_user_disciplines",
            {"user_id": "u.id", "discipline_id": "g.disc_id"},
            "FROM bench_group g, generate_series(g.first_id, g.first_id + g.size - 1) u(id)",
        )
        log(f"users: {counts['users']} ({n_clin} clinicians)", t0)

        # -- patients ------------------------------------------------------------------
        counts["patients"] = insert(
            cur,
            "patients_patient",
            {
                "id": "p.id",
                "mrn": "'MRN' || lpad(p.id::text, 8, '0')",
                "given_name": f"({sql_array(GIVEN)})[1 + floor(random() * {len(GIVEN)})::int]",
                "family_name": f"({sql_array(FAMILY)})[1 + floor(random() * {len(FAMILY)})::int]",
                "preferred_name": "''",
                "birth_date": "date '1930-01-01' + floor(random() * 32000)::int",
                "gender": "(ARRAY['female','male','female','male','other','unknown'])[1 + floor(random() * 6)::int]",
                "preferred_language": "(ARRAY['en','en','en','en','en','en','es','es','vi','zh'])[1 + floor(random() * 10)::int]",
                "interpreter_needed": "random() < 0.1",
                "phone": "'555-01' || lpad((p.id % 10000)::text, 4, '0')",
                "email": "''",
                "address_line": "(p.id % 999 + 1) || ' Main Street'",
                "city": f"({sql_array(CITIES)})[1 + p.id % {len(CITIES)}]",
                "state": "'IL'",
                "postal_code": "lpad((60000 + p.id % 900)::text, 5, '0')",
                "status": "CASE WHEN random() < 0.97 THEN 'active' ELSE 'inactive' END",
                "preferences": "'Wants to stay at home; family dinner on Sundays matters.'",
                "created_at": "now() - (random() * interval '700 days')",
                "updated_at": "now()",
                "version": "1",
            },
            f"FROM generate_series(1, {patients}) p(id)",
        )
        log(f"patients: {counts['patients']}", t0)

        # -- team memberships: weighted picks so caseloads spread over ~20-200 ---------
        # one row per unit of weight: a uniform pick over the pool favours heavy users
        cur.execute(
            """CREATE TEMP TABLE bench_pool AS
               SELECT disc_id, user_id,
                      (row_number() OVER (PARTITION BY disc_id ORDER BY user_id, w) - 1)::int AS k
               FROM (SELECT g.disc_id, u.id AS user_id, generate_series(1, 1 + (u.id * 7919) % 10) AS w
                     FROM bench_group g, generate_series(g.first_id, g.first_id + g.size - 1) u(id)) x"""
        )
        cur.execute("CREATE UNIQUE INDEX ON bench_pool (disc_id, k)")
        cur.execute(
            "UPDATE bench_group g SET wsum = (SELECT count(*) FROM bench_pool p WHERE p.disc_id = g.disc_id)"
        )
        cur.execute("ANALYZE bench_pool")
        others = sql_array(OTHER_DISCIPLINES)
        cur.execute(
            f"""CREATE TEMP TABLE bench_slot AS
               SELECT s.patient_id, g.disc_id, s.role, floor(random() * g.wsum)::int AS k
               FROM (
                 SELECT p.id AS patient_id, 'case-management' AS code, 'case-manager' AS role
                   FROM generate_series(1, {patients}) p(id)
                 UNION ALL SELECT p.id, 'physician', 'lead' FROM generate_series(1, {patients}) p(id)
                 UNION ALL SELECT p.id, 'nursing', 'member' FROM generate_series(1, {patients}) p(id)
                 UNION ALL SELECT p.id, ({others})[1 + (p.id + j * 3) % 7], 'member'
                   FROM generate_series(1, {patients}) p(id), generate_series(0, 1 + p.id % 2) j
               ) s JOIN bench_group g ON g.code = s.code"""
        )
        counts["memberships"] = insert(
            cur,
            "careteam_teammembership",
            {
                "patient_id": "s.patient_id",
                "user_id": "b.user_id",
                "discipline_id": "s.disc_id",
                "role": "s.role",
                "status": "'active'",
                "start_date": "current_date - (30 + floor(random() * 600)::int)",
                "end_date": "CASE WHEN random() < 0.03 THEN current_date + 90 ELSE NULL END",
                "created_at": "now() - interval '1 year'",
                "updated_at": "now() - interval '1 year'",
                "version": "1",
            },
            "FROM bench_slot s JOIN bench_pool b ON b.disc_id = s.disc_id AND b.k = s.k "
            "ORDER BY s.patient_id",
        )
        # roles that ended: no grants any more, but the rows stay (the permission filter must skip them)
        counts["memberships"] += insert(
            cur,
            "careteam_teammembership",
            {
                "patient_id": "p.id",
                "user_id": "b.user_id",
                "discipline_id": "g.disc_id",
                "role": "'member'",
                "status": "'inactive'",
                "start_date": "current_date - 800",
                "end_date": "current_date - 100",
                "created_at": "now() - interval '800 days'",
                "updated_at": "now() - interval '100 days'",
                "version": "2",
            },
            f"""FROM generate_series(1, {patients}, 10) p(id)
                JOIN bench_group g ON g.code = 'nursing'
                JOIN bench_pool b ON b.disc_id = g.disc_id AND b.k = (p.id * 31) % g.wsum""",
        )
        cur.execute(
            """CREATE TEMP TABLE bench_team AS
               SELECT patient_id, user_id, discipline_id, role,
                      row_number() OVER (PARTITION BY patient_id ORDER BY id) AS rn,
                      count(*) OVER (PARTITION BY patient_id) AS n
               FROM careteam_teammembership WHERE status = 'active'"""
        )
        cur.execute("CREATE INDEX ON bench_team (patient_id, rn)")
        cur.execute("ANALYZE bench_team")
        log(f"memberships: {counts['memberships']}", t0)

        # -- guardian grants a current membership gives ----------------------------------
        counts["object_permissions"] = insert(
            cur,
            "careteam_patientuserobjectpermission",
            {"content_object_id": "t.patient_id", "permission_id": "x.perm", "user_id": "t.user_id"},
            f"""FROM bench_team t
                CROSS JOIN LATERAL (VALUES ({perm["view_patient"]}, true),
                                           ({perm["edit_plan"]}, t.role <> 'member'),
                                           ({perm["manage_team"]}, t.role <> 'member')) x(perm, ok)
                WHERE x.ok""",
        )
        log(f"guardian object permissions: {counts['object_permissions']}", t0)

        # -- consents, caregivers --------------------------------------------------------
        counts["consents"] = insert(
            cur,
            "patients_consent",
            {
                "patient_id": "p.id",
                "scope": "s.scope",
                "status": "'active'",
                "date_given": "current_date - 200",
                "expires_on": "NULL",
                "given_by": "'patient'",
                "recorded_by_id": "NULL",
                "note": "''",
                "created_at": "now() - interval '200 days'",
            },
            f"""FROM generate_series(1, {patients}) p(id),
                (VALUES ('information-sharing'), ('referral')) s(scope) ORDER BY p.id, s.scope""",
        )
        counts["caregivers"] = insert(
            cur,
            "patients_caregiver",
            {
                "patient_id": "p.id",
                "name": f"({sql_array(GIVEN)})[1 + (p.id * 3) % {len(GIVEN)}] || ' ' || "
                f"({sql_array(FAMILY)})[1 + (p.id * 5) % {len(FAMILY)}]",
                "relationship": "(ARRAY['spouse','child','friend','neighbour'])[1 + p.id % 4]",
                "phone": "'555-0200'",
                "email": "''",
                "is_primary": "true",
                "lives_with_patient": "p.id % 3 = 0",
                "may_receive_information": "true",
                "notes": "''",
            },
            f"FROM generate_series(1, {patients}, 2) p(id)",
        )
        log(f"consents {counts['consents']}, caregivers {counts['caregivers']}", t0)

        # -- care plans: one active per patient (id = patient id), some older ones ------
        counts["care_plans"] = insert(
            cur,
            "careplans_careplan",
            {
                "id": "p.id",
                "patient_id": "p.id",
                "title": "'Care plan ' || extract(year FROM now())",
                "description": "'Whole-person plan agreed with the patient and family.'",
                "status": "'active'",
                "intent": "'plan'",
                "period_start": "current_date - (floor(random() * 300)::int)",
                "period_end": "NULL",
                "review_due": "current_date + (floor(random() * 120)::int - 20)",
                "author_id": "t.user_id",
                "created_at": "now() - interval '300 days'",
                "updated_at": "now()",
                "version": "1",
            },
            f"""FROM generate_series(1, {patients}) p(id)
                JOIN bench_team t ON t.patient_id = p.id AND t.rn = 1""",
        )
        counts["care_plans"] += insert(
            cur,
            "careplans_careplan",
            {
                "id": f"{patients} + p.id",
                "patient_id": "p.id",
                "title": "'Previous care plan'",
                "description": "''",
                "status": "'completed'",
                "intent": "'plan'",
                "period_start": "current_date - 900",
                "period_end": "current_date - 400",
                "review_due": "NULL",
                "author_id": "NULL",
                "created_at": "now() - interval '900 days'",
                "updated_at": "now() - interval '400 days'",
                "version": "3",
            },
            f"FROM generate_series(1, {patients}, 5) p(id)",
        )
        log(f"care plans: {counts['care_plans']}", t0)

        # -- plan items: ~3 goals, ~3 needs, ~4 activities per active plan (1,000,000) --
        goals = sql_array([g[0] for g in GOAL_ROWS])
        measures = sql_array([g[1] for g in GOAL_ROWS])
        targets = sql_array([g[2] for g in GOAL_ROWS])
        counts["goals"] = insert(
            cur,
            "careplans_goal",
            {
                "care_plan_id": "p.id",
                "description": f"({goals})[1 + (p.id + j) % {len(GOAL_ROWS)}]",
                "expressed_by": "(ARRAY['patient','family','clinician'])[1 + (p.id + j) % 3]",
                "priority": "(ARRAY['high-priority','medium-priority','low-priority'])[1 + j % 3]",
                "owner_discipline_id": "t.discipline_id",
                "target_measure": f"({measures})[1 + (p.id + j) % {len(GOAL_ROWS)}]",
                "target_value": f"({targets})[1 + (p.id + j) % {len(GOAL_ROWS)}]",
                "target_due": "current_date + floor(random() * 180)::int",
                "lifecycle_status": "(ARRAY['active','active','active','accepted','proposed','on-hold','completed'])[1 + floor(random() * 7)::int]",
                "achievement_status": "(ARRAY['in-progress','improving','no-change','worsening',''])[1 + floor(random() * 5)::int]",
                "created_by_id": "t.user_id",
                "created_at": "now() - (random() * interval '300 days')",
                "updated_at": "now()",
                "version": "1",
            },
            f"""FROM generate_series(1, {patients}) p(id), generate_series(0, (p.id * 13) % 5) j,
                bench_team t WHERE t.patient_id = p.id AND t.rn = 1 + j % t.n ORDER BY p.id, j""",
        )
        need_dom = sql_array([n[0] for n in NEED_ROWS])
        need_cat = sql_array([n[1] for n in NEED_ROWS])
        need_txt = sql_array([n[2] for n in NEED_ROWS])
        sens_arr = "ARRAY[" + ",".join(str(s) for s in sens) + "]::bigint[]"
        counts["needs"] = insert(
            cur,
            "careplans_need",
            {
                "care_plan_id": "p.id",
                "domain": f"({need_dom})[1 + (p.id * 5 + j) % {len(NEED_ROWS)}]",
                "category": f"({need_cat})[1 + (p.id * 5 + j) % {len(NEED_ROWS)}]",
                "description": f"({need_txt})[1 + (p.id * 5 + j) % {len(NEED_ROWS)}]",
                "is_barrier": "random() < 0.3",
                "status": "(ARRAY['active','active','active','inactive','resolved'])[1 + floor(random() * 5)::int]",
                "sensitivity_id": f"CASE WHEN random() < 0.06 THEN ({sens_arr})[1 + floor(random() * {len(sens)})::int] END",
                "created_by_id": "t.user_id",
                "created_at": "now() - (random() * interval '300 days')",
                "updated_at": "now()",
                "version": "1",
            },
            f"""FROM generate_series(1, {patients}) p(id), generate_series(0, (p.id * 7) % 5) j,
                bench_team t WHERE t.patient_id = p.id AND t.rn = 1 + (j + 1) % t.n ORDER BY p.id, j""",
        )
        acts = sql_array(ACTIVITY_ROWS)
        counts["activities"] = insert(
            cur,
            "careplans_activity",
            {
                "care_plan_id": "p.id",
                "title": f"({acts})[1 + (p.id + j * 5) % {len(ACTIVITY_ROWS)}]",
                "description": "'Agreed at the team meeting.'",
                "owner_discipline_id": "t.discipline_id",
                "assigned_to_id": "CASE WHEN random() < 0.8 THEN t.user_id END",
                "status": "(ARRAY['not-started','scheduled','in-progress','in-progress','on-hold','completed','completed','cancelled'])[1 + floor(random() * 8)::int]",
                "status_reason": "''",
                "due_date": "current_date + (floor(random() * 90)::int - 30)",
                "sensitivity_id": f"CASE WHEN random() < 0.03 THEN ({sens_arr})[1 + floor(random() * {len(sens)})::int] END",
                "created_by_id": "t.user_id",
                "created_at": "now() - (random() * interval '300 days')",
                "updated_at": "now()",
                "version": "1",
            },
            f"""FROM generate_series(1, {patients}) p(id), generate_series(0, (p.id * 3) % 7) j,
                bench_team t WHERE t.patient_id = p.id AND t.rn = 1 + (j + 2) % t.n ORDER BY p.id, j""",
        )
        log(
            f"plan items: goals {counts['goals']}, needs {counts['needs']}, activities {counts['activities']} "
            f"= {counts['goals'] + counts['needs'] + counts['activities']}",
            t0,
        )
        cur.execute(
            """CREATE TEMP TABLE bench_first_goal AS
               SELECT care_plan_id, min(id) AS goal_id FROM careplans_goal GROUP BY care_plan_id"""
        )
        cur.execute(
            """CREATE TEMP TABLE bench_first_need AS
               SELECT care_plan_id, min(id) AS need_id FROM careplans_need GROUP BY care_plan_id"""
        )
        counts["activity_goals"] = insert(
            cur,
            "careplans_activity_goals",
            {"activity_id": "a.id", "goal_id": "g.goal_id"},
            "FROM careplans_activity a JOIN bench_first_goal g USING (care_plan_id)",
        )
        counts["activity_needs"] = insert(
            cur,
            "careplans_activity_needs",
            {"activity_id": "a.id", "need_id": "n.need_id"},
            "FROM careplans_activity a JOIN bench_first_need n USING (care_plan_id) WHERE a.id % 2 = 0",
        )
        counts["need_goals"] = insert(
            cur,
            "careplans_need_goals",
            {"need_id": "n.id", "goal_id": "g.goal_id"},
            "FROM careplans_need n JOIN bench_first_goal g USING (care_plan_id)",
        )
        counts["notes"] = insert(
            cur,
            "careplans_note",
            {
                "care_plan_id": "p.id",
                "kind": "CASE WHEN p.id % 7 = 0 THEN 'proposal' ELSE 'comment' END",
                "status": "CASE WHEN p.id % 7 = 0 THEN 'open' ELSE '' END",
                "text": "'Spoke with the patient and daughter; agreed to try the new schedule.'",
                "created_at": "now() - (random() * interval '200 days')",
                "activity_id": "NULL",
                "author_id": "t.user_id",
                "goal_id": "NULL",
                "need_id": "NULL",
                "sensitivity_id": "NULL",
            },
            f"""FROM generate_series(1, {patients}) p(id), generate_series(1, 2) j,
                bench_team t WHERE t.patient_id = p.id AND t.rn = 1 + j % t.n""",
        )
        log(f"links and notes: {counts['notes']} notes", t0)

        # -- handoffs (SBAR, FHIR Task statuses) --------------------------------------
        counts["handoffs"] = insert(
            cur,
            "careteam_handoff",
            {
                "patient_id": "x.patient_id",
                "care_plan_id": "x.patient_id",
                "activity_id": "NULL",
                "kind": "'patient'",
                "from_user_id": "f.user_id",
                "to_user_id": "CASE WHEN x.r < 0.85 OR x.st <> 'requested' THEN t.user_id END",
                "to_discipline_id": "t.discipline_id",
                "situation": "'Discharged home yesterday after a fall.'",
                "background": "'Lives alone; daughter visits weekly; on warfarin.'",
                "assessment": "'Unsteady on feet, bruising on left hip.'",
                "recommendation": "'Home visit within 48 hours and review the medicines.'",
                "priority": "(ARRAY['routine','routine','routine','urgent','asap','stat'])[1 + floor(x.r * 6)::int]",
                "due_at": "CASE WHEN x.st IN ('requested','accepted','in-progress') "
                "THEN now() + (x.r * interval '6 days') - interval '2 days' "
                "ELSE now() - (x.r * interval '300 days') END",
                "status": "x.st",
                "status_reason": "''",
                "accepted_by_id": "CASE WHEN x.st IN ('accepted','in-progress','completed') THEN t.user_id END",
                "acknowledged_at": "CASE WHEN x.st IN ('requested','cancelled') THEN NULL "
                "ELSE now() - (x.r * interval '300 days') - interval '1 day' END",
                "completed_at": "CASE WHEN x.st = 'completed' THEN now() - (x.r * interval '300 days') END",
                "created_at": "now() - (x.r * interval '300 days') - interval '2 days'",
                "updated_at": "now()",
                "version": "CASE WHEN x.st = 'requested' THEN 1 ELSE 2 END",
            },
            f"""FROM (
                  SELECT 1 + (h.i * 7919) % {patients} AS patient_id, random() AS r,
                         (ARRAY['completed','completed','completed','completed','completed','completed',
                                'completed','cancelled','rejected','requested','requested','accepted',
                                'in-progress'])[1 + floor(random() * 13)::int] AS st
                  FROM generate_series(1::bigint, {n_handoffs}) h(i)
                ) x
                JOIN bench_team f ON f.patient_id = x.patient_id AND f.rn = 1
                JOIN bench_team t ON t.patient_id = x.patient_id AND t.rn = 2""",
        )
        log(f"handoffs: {counts['handoffs']}", t0)

        # -- conversations: four per patient (in general, about its first goal, about its
        #    first need (in that need's category), about the patient again), four messages
        #    each; one patient in 50 has a 200-message thread: 20 messages per patient ------
        counts["conversations"] = insert(
            cur,
            "careteam_conversation",
            {
                "patient_id": "p.id",
                "goal_id": "CASE WHEN k = 1 THEN g.goal_id END",
                "need_id": "CASE WHEN k = 2 THEN n.need_id END",
                "subject": "CASE WHEN k = 0 AND p.id % 50 = 0 THEN 'Weekly check-in' "
                "ELSE (ARRAY['Rides to clinic','About the goal','About the need','Medicines'])[k + 1] END",
                "sensitivity_id": "CASE WHEN k = 2 THEN nn.sensitivity_id END",
                "started_by_id": "t.user_id",
                "created_at": "now() - ((p.id * 13 + k * 7) % 300) * interval '1 day' - interval '2 days'",
                "last_message_at": "now()",
                "messages_changed_at": "now()",
            },
            """FROM patients_patient p CROSS JOIN generate_series(0, 3) k
                JOIN bench_team t ON t.patient_id = p.id AND t.rn = 1 + k % t.n
                LEFT JOIN bench_first_goal g ON g.care_plan_id = p.id
                LEFT JOIN bench_first_need n ON n.care_plan_id = p.id
                LEFT JOIN careplans_need nn ON nn.id = n.need_id""",
        )
        counts["messages"] = insert(
            cur,
            "careteam_message",
            {
                "conversation_id": "c.id",
                "author_id": "t.user_id",
                "text": "'Update ' || j || ' on the plan; details at https://example.org/notes/' || c.id",
                "created_at": "c.created_at + j * interval '37 minutes'",
                "version": "1",
            },
            """FROM careteam_conversation c
                CROSS JOIN LATERAL generate_series(1, CASE WHEN c.subject = 'Weekly check-in' THEN 200 ELSE 4 END) j
                JOIN bench_team t ON t.patient_id = c.patient_id AND t.rn = 1 + j % t.n""",
        )
        cur.execute(
            """UPDATE careteam_conversation c SET last_message_id = m.mid, last_message_at = m.at,
                      messages_changed_at = m.at
               FROM (SELECT conversation_id, max(id) AS mid, max(created_at) AS at
                     FROM careteam_message GROUP BY conversation_id) m
               WHERE m.conversation_id = c.id"""
        )
        counts["mentions"] = insert(
            cur,
            "careteam_messagemention",
            {"message_id": "m.id", "user_id": "t.user_id", "discipline_id": "NULL"},
            """FROM careteam_message m JOIN careteam_conversation c ON c.id = m.conversation_id
                JOIN bench_team t ON t.patient_id = c.patient_id AND t.rn = 1
                WHERE m.id % 10 = 0""",
        )
        # the first two members have read two conversations in three to the end
        counts["conversation_reads"] = insert(
            cur,
            "careteam_conversationread",
            {
                "conversation_id": "x.cid",
                "user_id": "x.uid",
                "last_read_message_id": "x.mid",
                "read_at": "now()",
            },
            """FROM (SELECT DISTINCT ON (c.id, t.user_id) c.id AS cid, t.user_id AS uid, c.last_message_id AS mid
                     FROM careteam_conversation c
                     JOIN bench_team t ON t.patient_id = c.patient_id AND t.rn IN (1, 2)
                     WHERE c.id % 3 <> 0) x""",
        )
        log(f"conversations: {counts['conversations']}, messages {counts['messages']}", t0)

        # -- catalog ------------------------------------------------------------------
        cur.execute("DELETE FROM referrals_taxonomyterm WHERE code LIKE 'bench-%'")
        cats = sorted({k[0] for k in SERVICE_KINDS})
        cur.execute(
            f"""CREATE TEMP TABLE bench_term AS
                SELECT row_number() OVER () AS n, gen_random_uuid() AS id, c AS code
                FROM unnest({sql_array(cats)}) c"""
        )
        insert(
            cur,
            "referrals_taxonomyterm",
            {
                "id": "t.id",
                "code": "'bench-' || t.code",
                "name": "initcap(replace(t.code, '-', ' '))",
                "description": "''",
                "taxonomy": "'careteam'",
                "parent_id": "NULL",
            },
            "FROM bench_term t",
        )
        cur.execute(
            f"""CREATE TEMP TABLE bench_org AS
                SELECT n, gen_random_uuid() AS id FROM generate_series(1, {n_orgs}) n"""
        )
        counts["organizations"] = insert(
            cur,
            "referrals_organization",
            {
                "id": "o.id",
                "name": f"({sql_array(AREAS)})[1 + o.n % {len(AREAS)}] || ' Community Services ' || o.n",
                "alternate_name": "''",
                "description": "'Non-profit serving the county since 1987.'",
                "email": "'info' || o.n || '@example.org'",
                "website": "'https://example.org/org' || o.n",
                "phone": "'555-0300'",
                "tax_id": "''",
                "year_incorporated": "1950 + o.n % 70",
                "legal_status": "'non-profit'",
                "created_at": "now() - interval '3 years'",
                "updated_at": "now()",
            },
            "FROM bench_org o",
        )
        kinds = sql_array([k[1] for k in SERVICE_KINDS])
        kdesc = sql_array([k[2] for k in SERVICE_KINDS])
        kcat = sql_array([k[0] for k in SERVICE_KINDS])
        cur.execute(
            f"""CREATE TEMP TABLE bench_svc AS
                SELECT n, gen_random_uuid() AS id, 1 + (n * 7) % {len(SERVICE_KINDS)} AS kind
                FROM generate_series(1, {n_services}) n"""
        )
        counts["services"] = insert(
            cur,
            "referrals_service",
            {
                "id": "s.id",
                "organization_id": "o.id",
                "name": f"({sql_array(AREAS)})[1 + s.n % {len(AREAS)}] || ' ' || ({kinds})[s.kind] || ' ' || s.n",
                "alternate_name": "''",
                "description": f"({kdesc})[s.kind]",
                "url": "'https://example.org/service' || s.n",
                "email": "''",
                "phone": "'555-0400'",
                "status": "CASE WHEN s.n % 20 = 0 THEN 'inactive' ELSE 'active' END",
                "eligibility_description": "'County residents; income under 200 % of the poverty line.'",
                "minimum_age": "CASE WHEN s.n % 4 = 0 THEN 60 END",
                "maximum_age": "NULL",
                "languages": "CASE WHEN s.n % 3 = 0 THEN ARRAY['en','es'] ELSE ARRAY['en'] END",
                "fees_description": "''",
                "is_free": "s.n % 2 = 0",
                "hours_description": "'Mon-Fri 9-5'",
                "application_process": "'Call or walk in.'",
                "service_area": f"({sql_array(CITIES)})[1 + s.n % {len(CITIES)}]",
                "accessibility": "''",
                "interpretation_services": "''",
                "expected_response_days": "1 + s.n % 7",
                "last_verified": "current_date - (s.n % 365)",
                "created_at": "now() - interval '2 years'",
                "updated_at": "now()",
            },
            f"FROM bench_svc s JOIN bench_org o ON o.n = 1 + s.n % {n_orgs}",
        )
        insert(
            cur,
            "referrals_service_categories",
            {"service_id": "s.id", "taxonomyterm_id": "t.id"},
            f"FROM bench_svc s JOIN bench_term t ON t.code = ({kcat})[s.kind]",
        )
        counts["locations"] = insert(
            cur,
            "referrals_location",
            {
                "id": "gen_random_uuid()",
                "organization_id": "o.id",
                "location_type": "'physical'",
                "name": "'Main office'",
                "description": "''",
                "address_1": "(o.n % 500 + 1) || ' Oak Avenue'",
                "city": f"({sql_array(CITIES)})[1 + o.n % {len(CITIES)}]",
                "state_province": "'IL'",
                "postal_code": "lpad((60000 + o.n % 900)::text, 5, '0')",
                "country": "'US'",
                "latitude": "41.8 + (o.n % 100) / 1000.0",
                "longitude": "-87.6 - (o.n % 100) / 1000.0",
            },
            "FROM bench_org o",
        )
        insert(
            cur,
            "referrals_serviceatlocation",
            {"id": "gen_random_uuid()", "service_id": "s.id", "location_id": "l.id", "description": "''"},
            f"""FROM bench_svc s JOIN bench_org o ON o.n = 1 + s.n % {n_orgs}
                JOIN referrals_location l ON l.organization_id = o.id""",
        )
        log(f"catalog: {counts['organizations']} organizations, {counts['services']} services", t0)

        # -- referrals ----------------------------------------------------------------
        cur.execute(
            """CREATE TEMP TABLE bench_consent AS
               SELECT patient_id, id FROM patients_consent WHERE scope = 'referral'"""
        )
        counts["referrals"] = insert(
            cur,
            "referrals_referral",
            {
                "patient_id": "x.patient_id",
                "care_plan_id": "x.patient_id",
                "need_id": "n.need_id",
                "service_id": "s.id",
                "reason": "'Needs help with food and transport to appointments.'",
                "priority": "(ARRAY['routine','routine','urgent','asap'])[1 + floor(x.r * 4)::int]",
                "consent_id": "c.id",
                "status": "x.st",
                "status_reason": "''",
                "referred_by_id": "t.user_id",
                "tracked_by_referrer": "true",
                "sent_at": "CASE WHEN x.st <> 'draft' THEN now() - (x.r * interval '365 days') END",
                "responded_at": "CASE WHEN x.st NOT IN ('draft','requested') THEN now() - (x.r * interval '360 days') END",
                "accepted_at": "CASE WHEN x.st IN ('accepted','in-progress','completed') THEN now() - (x.r * interval '360 days') END",
                "closed_at": "CASE WHEN x.st IN ('completed','rejected','cancelled','failed') THEN now() - (x.r * interval '300 days') END",
                "outcome": "CASE WHEN x.st = 'completed' THEN 'got-help' WHEN x.st = 'failed' THEN 'could-not-contact' ELSE '' END",
                "outcome_note": "''",
                "created_at": "now() - (x.r * interval '365 days') - interval '1 day'",
                "updated_at": "now()",
                "version": "1",
            },
            f"""FROM (
                  SELECT 1 + (i * 104729) % {patients} AS patient_id, 1 + (i * 31) % {n_services} AS svc,
                         random() AS r,
                         (ARRAY['draft','requested','requested','accepted','in-progress','completed',
                                'completed','completed','completed','rejected','cancelled','failed'])
                           [1 + floor(random() * 12)::int] AS st
                  FROM generate_series(1::bigint, {3 * patients}) i
                ) x
                JOIN bench_svc s ON s.n = x.svc
                JOIN bench_consent c ON c.patient_id = x.patient_id
                JOIN bench_team t ON t.patient_id = x.patient_id AND t.rn = 1
                LEFT JOIN bench_first_need n ON n.care_plan_id = x.patient_id""",
        )
        counts["referral_events"] = insert(
            cur,
            "referrals_referralevent",
            {
                "referral_id": "r.id",
                "from_status": "'draft'",
                "to_status": "CASE WHEN r.status = 'draft' THEN 'draft' ELSE 'requested' END",
                "by_id": "r.referred_by_id",
                "at": "coalesce(r.sent_at, r.created_at)",
                "note": "''",
            },
            "FROM referrals_referral r",
        )
        log(f"referrals: {counts['referrals']}, events {counts['referral_events']}", t0)

        # -- visits and service authorisations ---------------------------------------------
        # one approved authorisation per 4 patients; 6 visits per patient over six weeks
        # (three back, three ahead) by the first three members of its team, at a quarter
        # past each hour from 8:00, the past ones mostly kept, some missed or cancelled
        cur.execute("SELECT id FROM careteam_discipline WHERE code = 'physical-therapy'")
        pt = cur.fetchone()[0]
        counts["authorisations"] = insert(
            cur,
            "visits_authorisation",
            {
                "patient_id": "p.id",
                "payer": "'Bench Health Plan'",
                "service": "'Physiotherapy at home'",
                "discipline_id": str(pt),
                "provider_name": "''",
                "unit_kind": "'visit'",
                "units_authorised": "12",
                "units_used": "0",
                "start_date": "current_date - 30",
                "end_date": "current_date + (p.id % 90)::int",
                "reference_number": "'BHP-' || p.id",
                "status": "(ARRAY['approved','approved','approved','requested'])[1 + p.id % 4]",
                "status_reason": "''",
                "requested_at": "now() - interval '40 days'",
                "created_by_id": "t.user_id",
                "created_at": "now() - interval '40 days'",
                "updated_at": "now()",
                "version": "1",
            },
            """FROM patients_patient p JOIN bench_team t ON t.patient_id = p.id AND t.rn = 1
               WHERE p.id % 4 = 0""",
        )
        counts["visits"] = insert(
            cur,
            "visits_visit",
            {
                "patient_id": "t.patient_id",
                "visit_type": "(ARRAY['home','home','clinic','telehealth','phone'])[1 + (t.patient_id + k) % 5]",
                "clinician_id": "t.user_id",
                "provider_name": "''",
                "discipline_id": "t.discipline_id",
                "start": "x.start",
                "duration_minutes": "45",
                "ends_at": "x.start + interval '45 minutes'",
                "time_zone": "'UTC'",
                "location": "''",
                "units": "1",
                "status": """CASE WHEN x.start > now() THEN 'booked'
                             ELSE (ARRAY['fulfilled','fulfilled','fulfilled','fulfilled','fulfilled','fulfilled',
                                         'noshow','cancelled'])[1 + (t.patient_id * 7 + k) % 8] END""",
                "status_reason": "''",
                "created_by_id": "t.user_id",
                "created_at": "x.start - interval '14 days'",
                "updated_at": "now()",
                "version": "1",
            },
            """FROM bench_team t CROSS JOIN generate_series(0, 1) k
               CROSS JOIN LATERAL (
                   SELECT date_trunc('week', now()) + ((t.patient_id * 3 + t.rn * 5 + k * 11) % 42 - 21) * interval '1 day'
                          + ((8 + (t.patient_id + t.rn + k) % 10) * interval '1 hour') + interval '15 minutes' AS start
               ) x
               WHERE t.rn <= 3""",
        )
        log(f"visits: {counts['visits']}, authorisations {counts['authorisations']}", t0)

        # -- audit: 50 events per patient over the past year ------------------------------
        from django.utils import timezone as tz

        from careteam.audit_partitions import partitions_ensure

        # the year's month partitions first: rows then land in their month, not the default
        partitions_ensure(start=(tz.now() - timedelta(days=366)).date())
        counts["audit_events"] = insert(
            cur,
            "careteam_auditevent",
            {
                "at": "now() - (random() * interval '365 days')",
                "user_id": "u.uid",
                "username": "'bench_' || u.uid",
                "action": "(ARRAY['view','view','view','view','view','view','view','view','update','create'])[1 + a.i % 10]",
                "outcome": "CASE WHEN a.i % 97 = 0 THEN 'denied' ELSE 'allowed' END",
                "object_type": "(ARRAY['patients.patient','careplans.careplan','careplans.activity','careplans.goal','careplans.need'])[1 + a.i % 5]",
                "object_id": "(1 + (a.i * 7) % 1000000)::text",
                "patient_id": f"1 + (a.i * 48271) % {patients}",
                "source_ip": "'127.0.0.1'::inet",
                "path": f"'/patients/' || (1 + (a.i * 48271) % {patients}) || '/'",
                "detail": "''",
            },
            f"""FROM generate_series(1::bigint, {n_audit}) a(i)
                CROSS JOIN LATERAL (SELECT 1 + (a.i * 16807) % {n_clin} AS uid) u""",
        )
        log(f"audit events: {counts['audit_events']}", t0)

        # -- history: the creation record simple-history keeps for every row ------------
        if with_history:
            h = 0
            h += history_copy(cur, "patients_patient", "patients_historicalpatient", user_col=None)
            h += history_copy(cur, "careplans_careplan", "careplans_historicalcareplan", user_col="author_id")
            h += history_copy(cur, "careplans_goal", "careplans_historicalgoal")
            h += history_copy(cur, "careplans_need", "careplans_historicalneed")
            h += history_copy(cur, "careplans_activity", "careplans_historicalactivity")
            counts["history_rows"] = h
            log(f"history rows: {h}", t0)
            counts["long_history_versions"] = history_versions(cur, history_versions_n)
            log(f"one plan's long history: {counts['long_history_versions']} versions", t0)

        # -- sequences, indexes, statistics ---------------------------------------------
        cur.execute(
            """SELECT c.relname, a.attname FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid
               JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
               WHERE c.relkind = 'r' AND a.attidentity <> '' """
        )
        for table, column in cur.fetchall():
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
            )
        for definition in rebuild:
            cur.execute(definition)
        log(f"rebuilt {len(rebuild)} indexes", t0)
        cur.execute("SET session_replication_role = origin")
    return counts


def create_database_if_missing() -> None:
    """A fresh machine has no benchmark database yet: create it from the maintenance database."""
    db = connection.settings_dict["NAME"]
    with connection._nodb_cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{db}"')


def reset_schema() -> None:
    with connection.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE")
        cur.execute("CREATE SCHEMA public")
    call_command("migrate", verbosity=0, interactive=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000, help="size; every count scales with it")
    parser.add_argument("--reset", action="store_true", help="drop everything in the database first")
    parser.add_argument("--no-history", action="store_true", help="skip the simple-history rows")
    parser.add_argument(
        "--history-versions",
        type=int,
        default=1000,
        help="saved versions of one plan's activities (the plan history benchmark); 0 for none",
    )
    parser.add_argument("--seed", type=float, default=0.42, help="PostgreSQL setseed() value")
    args = parser.parse_args(argv)
    if args.patients < 100:
        parser.error("--patients must be at least 100")
    t0 = time.monotonic()
    db = connection.settings_dict["NAME"]
    create_database_if_missing()
    if args.reset:
        log(f"resetting database {db}", t0)
        reset_schema()
    else:
        call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM (SELECT 1 FROM patients_patient LIMIT 1) x")
        if cur.fetchone()[0]:
            print(f"database {db} already holds patients; run with --reset to rebuild it", file=sys.stderr)
            return 2
    log(f"generating {args.patients} patients into {db}", t0)
    counts = generate(args.patients, args.seed, not args.no_history, t0, args.history_versions)
    with connection.cursor() as cur:  # Django runs in autocommit: VACUUM may run here
        cur.execute("VACUUM (ANALYZE)")
    log("VACUUM ANALYZE done", t0)
    width = max(len(k) for k in counts)
    for name, n in counts.items():
        print(f"  {name:<{width}} {n:>10,}")
    print(f"done in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
