"""Time one bulk reassignment of a case manager's whole caseload (200 patients by default).

Sets up, inside one transaction of the database of DATABASE_URL (migrated), two case
managers and N patients on the first one's caseload, each with an active care plan and a
few activities, then times `careteam.caseloads.caseload_reassign` moving all of them to
the second: roles ended and given, one handoff per patient with the SBAR from the plan,
the notifications and the one audit event. Prints seconds and queries, then rolls
everything back (the audit table's trigger refuses nothing that is never committed).

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/careteam_x \\
        REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/caseload_reassign.py --patients 200

The issue asks for under 10 s at 200 patients.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Rollback(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from careplans.models import Activity, CarePlan
    from careteam import caseloads
    from careteam.caseloads import _grant_bulk
    from careteam.models import Discipline, Handoff, TeamMembership, User
    from careteam.permissions import ROLE_PERMISSIONS
    from careteam.reference import ensure_reference_data
    from patients.models import Patient

    result = {}
    try:
        with transaction.atomic():
            ensure_reference_data()
            cm_discipline = Discipline.objects.get(code="case-management")
            tag = f"bench{int(time.time())}"
            old, new = (
                User.objects.create(username=f"{tag}-{n}", first_name=n, last_name="Bench")
                for n in ("a", "b")
            )
            for u in (old, new):
                u.disciplines.add(cm_discipline)
            today = timezone.localdate()
            patients = Patient.objects.bulk_create(
                [
                    Patient(
                        mrn=f"{tag}-{i}",
                        given_name=f"Given{i}",
                        family_name=f"Family{i}",
                        birth_date=dt.date(1950, 1, 1),
                        acuity=("low", "medium", "high")[i % 3],
                    )
                    for i in range(args.patients)
                ]
            )
            TeamMembership.objects.bulk_create(
                [
                    TeamMembership(
                        patient=p, user=old, discipline=cm_discipline, role="case-manager", start_date=today
                    )
                    for p in patients
                ]
            )
            _grant_bulk(old.pk, [p.pk for p in patients], ROLE_PERMISSIONS["case-manager"])
            plans = CarePlan.objects.bulk_create(
                [CarePlan(patient=p, title=f"Plan {p.pk}", status="active") for p in patients]
            )
            Activity.objects.bulk_create(
                [
                    Activity(
                        care_plan=plan,
                        title=f"Activity {k}",
                        owner_discipline=cm_discipline,
                        due_date=today + dt.timedelta(days=k),
                    )
                    for plan in plans
                    for k in range(3)
                ]
            )
            started = time.monotonic()
            with CaptureQueriesContext(connection) as queries:
                done = caseloads.caseload_reassign(by=old, from_user=old, to_user=new)
            result["seconds"] = time.monotonic() - started
            result["queries"] = len(queries.captured_queries)
            result["handoffs"] = Handoff.objects.filter(pk__in=done.handoff_ids).count()
            raise Rollback
    except Rollback:
        pass
    print(
        f"caseload reassignment: {args.patients} patients, {result['handoffs']} handoffs, "
        f"{result['queries']} queries, {result['seconds']:.2f} s (rolled back)"
    )
    return 0 if result["seconds"] < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
