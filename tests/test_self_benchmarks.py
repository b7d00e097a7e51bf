"""selfcode's own fitness under `--self`: the benchmarks of `[tool.selfcode.benchmarks]`.

The judge requires a benchmark's stdout to be the same on every run and for baseline and
candidate alike, so each one is run twice here, in different temporary directories and with
different hash seeds, and must print the same non-empty result both times.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def declared() -> dict[str, list[str]]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    commands = table["tool"]["selfcode"]["benchmarks"]
    return {name: shlex.split(command) for name, command in commands.items()}


def test_every_declared_benchmark_is_a_script_of_the_tree():
    benchmarks = declared()
    assert benchmarks, "[tool.selfcode.benchmarks] declares no benchmark"
    for name, argv in benchmarks.items():
        assert argv[0] in ("python", "python3") and len(argv) >= 2, f"{name}: {argv}"
        assert (ROOT / argv[1]).is_file(), f"{name}: {argv[1]} does not exist"


def run(argv: list[str], tmp: Path, seed: str) -> subprocess.CompletedProcess[str]:
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONHASHSEED": seed}
    return subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(declared()))
def test_a_fitness_benchmark_prints_the_same_result_every_time(name, tmp_path):
    argv = declared()[name]
    first = run(argv, tmp_path / "first", "0")
    second = run(argv, tmp_path / "second", "4242")
    assert first.returncode == 0, first.stderr[-2_000:]
    assert second.returncode == 0, second.stderr[-2_000:]
    assert first.stdout.strip(), f"{name} printed nothing: the judge would compare nothing"
    assert first.stdout == second.stdout
    assert str(tmp_path) not in first.stdout


def test_reading_and_rendering_verdicts_does_not_load_scipy():
    # scipy takes most of a second to import; only the statistics of a judgement need it.
    code = ("import sys\nimport selfcode.history.views, selfcode.report.html, "
            "selfcode.report.markdown, selfcode.gate.verdict\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
