"""Protected-path matching: every path of every candidate against the gate's protected globs.

The judge checks each path a patch touches (both readings, old and new names) against some
eighty default globs plus the repository's own; a run with many candidates of many files does
this thousands of times. Here: 4,000 realistic paths against the default `GateConfig` globs
plus selfcode's own `protect_also` (a copy, so that the benchmark measures the matching and not
pydantic's import), repeated as a run would.

stdout carries only the evidence (how many paths matched, and a hash of which), the same on
every run and for every correct implementation.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.gate.protected import protected_violations

# GateConfig().protected with selfcode's protect_also, as of this benchmark's writing.
PATTERNS = (
    'tests/**',
    'test/**',
    'testing/**',
    '**/tests/**',
    '**/test_*.py',
    '**/*_test.py',
    'test_*.py',
    '*_test.py',
    '**/conftest.py',
    'conftest.py',
    'pytest.ini',
    '**/pytest.ini',
    '.pytest.ini',
    '**/.pytest.ini',
    'pytest.toml',
    '**/pytest.toml',
    '.pytest.toml',
    '**/.pytest.toml',
    'tox.ini',
    '**/tox.ini',
    'setup.cfg',
    '**/setup.cfg',
    'pyproject.toml',
    '**/pyproject.toml',
    '**/sitecustomize.py',
    'sitecustomize.py',
    '**/usercustomize.py',
    'usercustomize.py',
    '**/*.pth',
    '*.pth',
    '*.dist-info/**',
    '**/*.dist-info/**',
    '*.egg-info/**',
    '**/*.egg-info/**',
    '*.egg-link',
    '**/*.egg-link',
    'benchmarks/**',
    '.github/**',
    '.gitlab-ci.yml',
    '.ci/**',
    '.git*',
    '**/.git*',
    '.lfsconfig',
    '**/.lfsconfig',
    'selfcode.toml',
    'requirements*.txt',
    '**/requirements*.txt',
    'requirements*.in',
    '**/requirements*.in',
    'requirements/**',
    '**/requirements/**',
    'constraints*.txt',
    '**/constraints*.txt',
    'setup.py',
    '**/setup.py',
    'Pipfile',
    '**/Pipfile',
    'Pipfile.lock',
    '**/Pipfile.lock',
    'poetry.lock',
    '**/poetry.lock',
    'uv.lock',
    '**/uv.lock',
    'pdm.lock',
    '**/pdm.lock',
    'pylock*.toml',
    '**/pylock*.toml',
    'environment.yml',
    '**/environment.yml',
    'environment.yaml',
    '**/environment.yaml',
    'conda-lock.yml',
    '**/conda-lock.yml',
    'MANIFEST.in',
    '**/MANIFEST.in',
    'hatch.toml',
    '**/hatch.toml',
    'pixi.toml',
    '**/pixi.toml',
    'pixi.lock',
    '**/pixi.lock',
    '.python-version',
    '**/.python-version',
    'src/selfcode/sandbox/**',
    'sandbox/**',
    'Dockerfile',
    'scripts/**',
)

_DIRS = ("src/pkg", "src/pkg/sub", "tests", "tests/unit", "docs", "benchmarks", "lib/x/tests",
         "scripts", ".github/workflows", "src/pkg/_vendor", "examples", "tools")
_NAMES = ("core.py", "test_core.py", "conftest.py", "setup.cfg", "util_test.py", "README.md",
          "requirements-dev.txt", "main.yml", "__init__.py", "data.json", "x.pth", "api.py")


def paths(count: int) -> list[str]:
    return [f"{_DIRS[i % len(_DIRS)]}/m{i % 97}/{_NAMES[(i * 7) % len(_NAMES)]}"
            for i in range(count)]


def main() -> None:
    candidates = [paths(4000)[i:i + 40] for i in range(0, 4000, 40)]
    digest = hashlib.sha256()
    matched = 0
    for _ in range(3):
        for touched in candidates:
            hits = protected_violations(touched, PATTERNS)
            matched += len(hits)
            digest.update("\n".join(hits).encode())
    print(matched, digest.hexdigest()[:16])


if __name__ == "__main__":
    main()
