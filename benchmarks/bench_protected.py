"""Protected-path matching: every path of every candidate against the gate's protected globs.

The judge checks each path a patch touches (both readings, old and new names) against some
eighty default globs plus the repository's own; a run with many candidates of many files does
this thousands of times. Here: 4,000 realistic paths against the default `GateConfig` globs
plus selfcode's own `protect_also`, repeated as a run would.

stdout carries only the evidence (how many paths matched, and a hash of which), the same on
every run and for every correct implementation.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.gate.config import GateConfig
from selfcode.gate.protected import protected_violations

_DIRS = ("src/pkg", "src/pkg/sub", "tests", "tests/unit", "docs", "benchmarks", "lib/x/tests",
         "scripts", ".github/workflows", "src/pkg/_vendor", "examples", "tools")
_NAMES = ("core.py", "test_core.py", "conftest.py", "setup.cfg", "util_test.py", "README.md",
          "requirements-dev.txt", "main.yml", "__init__.py", "data.json", "x.pth", "api.py")


def paths(count: int) -> list[str]:
    return [f"{_DIRS[i % len(_DIRS)]}/m{i % 97}/{_NAMES[(i * 7) % len(_NAMES)]}"
            for i in range(count)]


def main() -> None:
    config = GateConfig(protect_also=["src/selfcode/sandbox/**", "sandbox/**", "Dockerfile",
                                      "scripts/**", ".ci/**"])
    candidates = [paths(4000)[i:i + 40] for i in range(0, 4000, 40)]
    digest = hashlib.sha256()
    matched = 0
    for _ in range(3):
        for touched in candidates:
            hits = protected_violations(touched, config.protected)
            matched += len(hits)
            digest.update("\n".join(hits).encode())
    print(matched, digest.hexdigest()[:16])


if __name__ == "__main__":
    main()
