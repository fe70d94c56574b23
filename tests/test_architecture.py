"""The layering of pyproject.toml holds (import-linter: no circles between modules, the
domains in their order, see docs/architecture.md), and types only get better: mypy
(check_untyped_defs, django-stubs) finds no error in a module that had none, and no more
errors in the others than tests/data/mypy_baseline.json records."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASELINE = ROOT / "tests" / "data" / "mypy_baseline.json"
PACKAGES = [
    "config", "careteam", "patients", "careplans", "referrals", "transitions", "visits", "portal", "workspace",
]  # fmt: skip
ERROR = re.compile(r"^(?P<path>[\w/]+\.py):\d+: error:")
# the rules of every app (writes, reads, access decisions) type-check cleanly: no baseline
RULE_MODULES = re.compile(r"^\w+/(services|selectors|permissions)\.py$")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true")}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # noqa: S603


def test_the_import_contracts_hold():
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@functools.cache
def mypy_errors() -> Counter:
    cache = ROOT / "build" / "mypy_cache"
    result = _run(sys.executable, "-m", "mypy", "--cache-dir", str(cache), *PACKAGES)
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    return Counter(m["path"] for line in result.stdout.splitlines() if (m := ERROR.match(line)))


def test_mypy_finds_no_new_errors():
    baseline = json.loads(BASELINE.read_text())
    found = mypy_errors()
    worse = {path: (n, baseline.get(path, 0)) for path, n in found.items() if n > baseline.get(path, 0)}
    assert not worse, f"mypy errors (now, baseline) grew in: {worse}"


def test_services_selectors_and_permissions_have_no_mypy_errors():
    dirty = {path: n for path, n in mypy_errors().items() if RULE_MODULES.match(path)}
    assert not dirty, f"mypy errors in the rule modules: {dirty}"


if __name__ == "__main__":  # python tests/test_architecture.py: write the baseline afresh
    BASELINE.write_text(json.dumps(dict(sorted(mypy_errors().items())), indent=1) + "\n")
