"""Requests and sweeps of a working day, run in a process of its own whose database
connections go through a connection pooler (tests/test_pgbouncer.py starts PgBouncer in
transaction mode with fewer server connections than this process has threads).

    python -m tests.pooled_walk '<json: users, patient, activities>'

Each thread signs in as one clinician and reads the worklist, My work, the chart and the
API activity list, and saves its own activity through the API with If-Match, each save
from the version it read; one stale If-Match per thread must answer 412. The main thread
runs the reminder sweep, the membership sync (a QuerySet.iterator()) and the audit
partition task meanwhile. Prints one JSON line of what it saw; exits 1 on any surprise.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback

ROUNDS = 6


def _walk(user_id: int, patient_id: int, activity_id: int, seen: dict, errors: list) -> None:
    from django.db import connection
    from django.test import Client

    from careteam.models import User

    try:
        client = Client()
        client.force_login(User.objects.get(pk=user_id))
        for n in range(ROUNDS):
            for url in (
                "/patients/",
                "/work/",
                f"/patients/{patient_id}/",
                f"/api/v1/activities/?patient={patient_id}",
            ):
                response = client.get(url)
                if response.status_code != 200:
                    errors.append(f"GET {url}: {response.status_code}")
            url = f"/api/v1/activities/{activity_id}/"
            version = client.get(url).json()["version"]
            response = client.patch(
                url,
                {"title": f"Saved {n} by {user_id}"},
                content_type="application/json",
                HTTP_IF_MATCH=f'W/"{version}"',
            )
            seen["saved" if response.status_code == 200 else f"save {response.status_code}"] += 1
            stale = client.patch(
                url, {"title": "stale"}, content_type="application/json", HTTP_IF_MATCH=f'W/"{version}"'
            )
            seen["stale refused" if stale.status_code == 412 else f"stale {stale.status_code}"] += 1
    except Exception:
        errors.append(traceback.format_exc())
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    import django

    django.setup()
    from collections import Counter

    from django.conf import settings
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.SECURE_SSL_REDIRECT = False
    settings.REQUIRE_2FA = False
    settings.AXES_ENABLED = False

    from careteam import audit_partitions, services
    from careteam.reminders import reminders_sweep

    world = json.loads(argv[0])
    seen: Counter[str] = Counter()
    errors: list[str] = []  # list.append is atomic; each thread counts in its own Counter
    counters = [Counter() for _ in world["users"]]
    threads = [
        threading.Thread(target=_walk, args=(user, world["patient"], activity, counter, errors))
        for user, activity, counter in zip(world["users"], world["activities"], counters, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            reminders_sweep(send_emails=False)
            seen["memberships synced"] += services.memberships_sync()
            audit_partitions.partitions_ensure()
            seen["sweeps"] += 1
    except Exception:
        errors.append(traceback.format_exc())
    for thread in threads:
        thread.join()
    for counter in counters:
        seen.update(counter)
    print(json.dumps({"seen": seen, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
