"""Catalog search at 50,000 services: p50/p95 response time and queries per request.

Generates the services with bulk inserts in one transaction, runs VACUUM ANALYZE (as
autovacuum would on a live catalog), then runs the clinicians' search page (the full
Django stack: form, selector, paginator, template) and the selector's SQL alone, many
times per filter combination. The generated rows are deleted at the end (``--keep``
leaves them).

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/careteam_h6 \\
        .venv/bin/python bench/catalog_search.py [--services 50000] [--runs 60] [--write]

``--write`` puts the figures into bench/results.md, section "Catalog search".
"""

from __future__ import annotations

import argparse
import os
import random
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

from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from careteam.models import User  # noqa: E402
from referrals.models import Organization, Service, TaxonomyTerm  # noqa: E402
from referrals.selectors import CatalogFilters, service_search  # noqa: E402

CATEGORIES = [
    ("bench-transportation", "Transportation", "rides bus van medical appointments transport wheelchair"),
    ("bench-food", "Food", "groceries pantry meals nutrition fresh produce delivered"),
    ("bench-housing", "Housing", "rent shelter eviction housing repairs utilities"),
    ("bench-home-health", "Home health", "nursing visits home care bathing wound"),
    ("bench-behavioural", "Behavioural health", "counselling therapy depression anxiety support group"),
    ("bench-financial", "Financial aid", "benefits cash assistance bills tax money"),
    ("bench-caregiver", "Caregiver support", "respite caregiver training adult day"),
    ("bench-language", "Language/interpretation", "interpreter translation language access"),
    ("bench-equipment", "Medical equipment", "walker wheelchair oxygen equipment loan"),
]
LANGUAGES = ["en", "es", "vi", "zh", "ar", "ru", "ht", "pt", "so", "fr"]
AREAS = [
    f"{name} County"
    for name in [
        "Adams",
        "Baker",
        "Clark",
        "Dane",
        "Essex",
        "Fulton",
        "Grant",
        "Hayes",
        "Irwin",
        "Jasper",
        "Knox",
        "Lake",
    ]
]
FILLER = [
    "community",
    "local",
    "free",
    "weekly",
    "families",
    "seniors",
    "adults",
    "children",
    "help",
    "program",
    "service",
    "support",
    "access",
]

SCENARIOS = [
    ("no filter (page 1)", ""),
    ("text 'groceries'", "q=groceries"),
    ("text 'wheelchair transport'", "q=wheelchair+transport"),
    ("category", "category=bench-food"),
    ("category + language + free", "category=bench-transportation&language=es&free=on"),
    ("service area", "area=knox"),
    ("text + category + area", "q=counselling&category=bench-behavioural&area=adams"),
    ("deep page (page 200)", "page=200"),
]


def generate(count: int) -> None:
    rng = random.Random(6)
    terms = [
        TaxonomyTerm.objects.get_or_create(code=code, defaults={"name": name})[0]
        for code, name, _ in CATEGORIES
    ]
    orgs = Organization.objects.bulk_create(
        [
            Organization(name=f"Bench organization {i:04d}", description="Benchmark data")
            for i in range(count // 25)
        ]
    )
    services, links = [], []
    for i in range(count):
        cat = rng.randrange(len(CATEGORIES))
        words = CATEGORIES[cat][2].split()
        description = " ".join(rng.choice(words + FILLER) for _ in range(25))
        services.append(
            Service(
                organization=orgs[i % len(orgs)],
                name=f"{rng.choice(FILLER).title()} {rng.choice(words)} {rng.choice(FILLER)} {i:05d}",
                description=description,
                eligibility_description="Residents of the service area.",
                status="active"
                if rng.random() < 0.85
                else rng.choice(["inactive", "defunct", "temporarily closed"]),
                languages=sorted({"en", *rng.sample(LANGUAGES, rng.randint(0, 3))}),
                is_free=rng.random() < 0.4,
                service_area=rng.choice(AREAS),
            )
        )
        links.append(cat)
    created = Service.objects.bulk_create(services, batch_size=5000)
    through = Service.categories.through
    through.objects.bulk_create(
        [
            through(service_id=s.pk, taxonomyterm_id=terms[cat].pk)
            for s, cat in zip(created, links, strict=True)
        ],
        batch_size=10000,
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(runs: int) -> list[dict]:
    from django.test.utils import setup_test_environment

    setup_test_environment()  # lets the test client report the template context
    user, _ = User.objects.get_or_create(username="bench-catalog-clinician")
    client = Client()
    client.force_login(user)
    client.get("/referrals/services/")  # the first request saves the session
    rows = []
    for label, query in SCENARIOS:
        page_ms, sql_ms, queries, count = [], [], set(), 0
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(f"/referrals/services/?{query}")
                page_ms.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (query, response.status_code)
            queries.add(len(captured))
            count = response.context["page"].paginator.count
        filters = _filters(query)
        for _ in range(runs):
            start = time.perf_counter()
            qs = service_search(filters)
            total = qs.count()
            list(qs[:20])
            sql_ms.append((time.perf_counter() - start) * 1000)
        rows.append(
            {
                "label": label,
                "matches": count,
                "page_p50": percentile(page_ms, 0.5),
                "page_p95": percentile(page_ms, 0.95),
                "sql_p50": percentile(sql_ms, 0.5),
                "sql_p95": percentile(sql_ms, 0.95),
                "queries": sorted(queries),
                "total": total,
            }
        )
    return rows


def _filters(query: str) -> CatalogFilters:
    from django.http import QueryDict

    from referrals.forms import CatalogSearchForm

    form = CatalogSearchForm(QueryDict(query))
    assert form.is_valid(), form.errors
    return form.filters()


def report(rows: list[dict], count: int, runs: int, seconds: float) -> str:
    import platform

    lines = [
        "## Catalog search",
        "",
        f"`bench/catalog_search.py --services {count} --runs {runs}`: {count:,} generated services "
        f"(inserted with bulk_create in {seconds:.1f} s, then VACUUM ANALYZE), PostgreSQL "
        f"{connection.cursor().connection.info.server_version // 10000}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Page = the whole request through Django's test client (session, "
        "form, selector, paginator count, page, categories prefetch, template); SQL = count + first page "
        "from the selector alone. Times in ms.",
        "",
        "| search | matches | page p50 | page p95 | SQL p50 | SQL p95 | queries per request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['matches']:,} | {r['page_p50']:.1f} | {r['page_p95']:.1f} | "
            f"{r['sql_p50']:.1f} | {r['sql_p95']:.1f} | {', '.join(map(str, r['queries']))} |"
        )
    all_p50 = statistics.median(r["page_p50"] for r in rows)
    lines += [
        "",
        f"Median over the searches of the page p50: {all_p50:.1f} ms; slowest page p95: "
        f"{max(r['page_p95'] for r in rows):.1f} ms. Queries per request do not grow with the result "
        "size: 6 (session, user, category choices, count, page, categories of the page), 9 when the "
        "idle-timeout middleware re-saves the session. Full-text search uses the generated "
        "`search_vector` column and its GIN index, the service area a trigram GIN index on "
        "UPPER(service_area), languages a GIN index on the array; the machine is shared (other "
        "test suites ran at the same time), so the p95 figures are pessimistic.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace (or add) the "Catalog search" section of bench/results.md, leaving the others."""
    path = ROOT / "bench" / "results.md"
    current = path.read_text() if path.exists() else "# Benchmark results\n\n"
    start = current.find("## Catalog search")
    if start == -1:
        new = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + 1)
        new = current[:start] + text + ("" if end == -1 else current[end + 1 :])
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="commit the generated services")
    parser.add_argument("--write", action="store_true", help="write the figures into bench/results.md")
    args = parser.parse_args()

    cleanup()
    start = time.perf_counter()
    with transaction.atomic():
        generate(args.services)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:  # what autovacuum does on a live catalog
        cursor.execute(
            "VACUUM ANALYZE referrals_service, referrals_service_categories, referrals_organization"
        )
    print(f"generated {args.services:,} services in {seconds:.1f} s")
    try:
        rows = measure(args.runs)
    finally:
        if not args.keep:
            cleanup()
            print("(benchmark services deleted)")
    text = report(rows, args.services, args.runs, seconds)
    print(text)
    if args.write:
        write_section(text)
        print("written to bench/results.md")


def cleanup() -> None:
    """Remove what an earlier run generated (organizations named "Bench organization ...")."""
    orgs = (
        "SELECT id FROM referrals_organization WHERE name LIKE 'Bench organization %%' AND description = %s"
    )
    with connection.cursor() as cursor:  # set-based: the ORM's cascade would load 50,000 rows
        cursor.execute(
            "DELETE FROM referrals_service_categories WHERE service_id IN "
            f"(SELECT id FROM referrals_service WHERE organization_id IN ({orgs}))",
            ["Benchmark data"],
        )
        cursor.execute(f"DELETE FROM referrals_service WHERE organization_id IN ({orgs})", ["Benchmark data"])
        cursor.execute(f"DELETE FROM referrals_organization WHERE id IN ({orgs})", ["Benchmark data"])
    TaxonomyTerm.objects.filter(code__startswith="bench-").delete()
    User.objects.filter(username="bench-catalog-clinician").delete()


if __name__ == "__main__":
    main()
