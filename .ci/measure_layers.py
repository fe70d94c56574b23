"""Print the numbers docs/architecture.md quotes: direct imports between packages (module
pairs, migrations and tests left out) and lines of Python per package.

    .venv/bin/python .ci/measure_layers.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [
    "config", "careteam", "workspace", "patients", "careplans", "referrals",
    "transitions", "visits", "portal",
]  # fmt: skip


def main() -> None:
    sys.path.insert(0, str(ROOT))
    packages = [p for p in CANDIDATES if (ROOT / p / "__init__.py").exists()]
    graph = grimp.build_graph(*packages, cache_dir=None)
    counts = {(a, b): 0 for a in packages for b in packages if a != b}
    for importer in graph.modules:
        if ".migrations" in importer:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = importer.split(".")[0], imported.split(".")[0]
            if a != b:
                counts[a, b] += 1
    print("| from \\ to | " + " | ".join(packages) + " |")
    print("|---" * (len(packages) + 1) + "|")
    for a in packages:
        cells = ["-" if a == b else str(counts[a, b]) for b in packages]
        print(f"| {a} | " + " | ".join(cells) + " |")
    print()
    for p in packages:
        lines = sum(
            len(f.read_text().splitlines()) for f in (ROOT / p).rglob("*.py") if "migrations" not in f.parts
        )
        print(f"{p}: {lines:,} lines of Python")


if __name__ == "__main__":
    main()
