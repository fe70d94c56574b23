"""Hidden ids and missing ids, timed: can a clinician tell a record on another team from no
record at all by how long the 404 takes?

For each id-bearing page, alternates requests for objects of patients the clinician is not
on the team of and for ids that do not exist (interleaved, so drift hits both), through the
full Django stack, and prints the medians, their difference and the share of pairs in
which the hidden request was the slower (50 % is indistinguishable).

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/careteam_bench_small \\
        .venv/bin/python bench/hidden_missing.py [--pairs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db.models import Max  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from careplans.models import Activity, CarePlan  # noqa: E402
from careteam.models import User  # noqa: E402
from careteam.permissions import team_patients_for  # noqa: E402
from patients.models import Patient  # noqa: E402

ROUTES = [
    ("chart", "patient_chart", "patient_id", Patient, "pk"),
    ("plan editor", "careplans:plan_editor", "plan_id", CarePlan, "patient_id"),
    ("activity", "careplans:activity_detail", "activity_id", Activity, "care_plan__patient_id"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = ["*"]
    user = User.objects.filter(username__startswith="bench_nursing_").order_by("pk").first()
    if user is None:
        print("no bench_nursing_* user: build the database with bench/generate.py first")
        return 1
    client = Client()
    client.force_login(user)
    mine = team_patients_for(user).values("pk")
    print(f"user {user.username}; {args.pairs} interleaved pairs per page")
    print(f"{'page':<14} {'hidden p50':>10} {'missing p50':>11} {'diff ms':>8} {'hidden slower':>14}")
    for label, name, kwarg, model, patient_path in ROUTES:
        hidden_ids = list(
            model.objects.exclude(**{f"{patient_path}__in": mine})
            .order_by("?")
            .values_list("pk", flat=True)[: args.pairs]
        )
        top = model.objects.aggregate(m=Max("pk"))["m"] or 0
        hidden_t, missing_t, slower = [], [], 0
        for i, pk in enumerate(hidden_ids):
            urls = [reverse(name, kwargs={kwarg: pk}), reverse(name, kwargs={kwarg: top + 1000 + i})]
            times = []
            for url in urls if i % 2 else reversed(urls):
                t = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 404, (url, response.status_code)
            h, m = (times[0], times[1]) if i % 2 else (times[1], times[0])
            hidden_t.append(h)
            missing_t.append(m)
            slower += h > m
        hp, mp = statistics.median(hidden_t), statistics.median(missing_t)
        print(f"{label:<14} {hp:>10.2f} {mp:>11.2f} {hp - mp:>8.2f} {100 * slower / len(hidden_t):>13.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
