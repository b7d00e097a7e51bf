"""The cascade's figure (issue 13 item 3): how long a candidate that breaks one test takes to be
rejected, as a share of a full-suite run, without the cascade (today's judge: the full suite)
and with it (gate/cascade.py: the changed modules' import, then the tests that exercise the
changed files, alone with -x).

Run from the repository root, with a Docker engine and a base image:

    SELFCODE_BASE_IMAGE=selfcode-base:bookworm python benchmarks/bench_cascade.py
    python benchmarks/bench_cascade.py --sandbox local --modules 8 --tests 30 --work-ms 10

The fixture is generated: a package of `--modules` modules, each with `--tests` tests of its
own (parametrised, each spending about `--work-ms` of CPU in the module's function), so the
suite's time is in its tests, as in real suites, not in pytest's start. Each break makes one
module's function wrong for one input (one test fails); every module is broken twice, at two
positions, so the second break of a module meets the baseline's run of its selection cached.
`--biglib` judges benchmarks/fixtures/biglib instead (a few hundred quick tests: pytest's
start dominates there; each break makes a module's first function raise).

Figures, not asserts; stdout carries what is the same on every run (the verdicts), the timing
table goes to stderr.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from selfcode.gate.cascade import Outcome  # noqa: E402
from selfcode.gate.config import GateConfig  # noqa: E402
from selfcode.gate.judge import Judge  # noqa: E402
from selfcode.gate.verdict import Verdict  # noqa: E402
from selfcode.sandbox.base import Sandbox  # noqa: E402
from selfcode.sandbox.trees import Trees  # noqa: E402

MODULE = '''def work(x):
    total = 0
    for i in range({loops}):
        total += i * x
    return total


def f{i}(x):
    work(x)
    return 3 * x + {i}
'''
TESTS = '''import pytest

from slowlib.m{i} import f{i}


@pytest.mark.parametrize("x", range({tests}))
def test_f{i}(x):
    assert f{i}(x) == 3 * x + {i}
'''
LOOPS_PER_MS = 12_000  # CPython 3.11, one core of the sandbox: a rough figure


def fixture(modules: int, tests: int, work_ms: float) -> dict[str, str]:
    loops = int(work_ms * LOOPS_PER_MS)
    files = {"slowlib/__init__.py": "", "pyproject.toml": '[tool.pytest.ini_options]\n'
             'testpaths = ["tests"]\n'}
    for i in range(modules):
        files[f"slowlib/m{i}.py"] = MODULE.format(i=i, loops=loops)
        files[f"tests/test_m{i}.py"] = TESTS.format(i=i, tests=tests)
    return files


def breaks(files: dict[str, str], modules: int, tests: int) -> list[tuple[str, str]]:
    """(label, diff): each module broken for one input, twice, at two positions."""
    out = []
    for i in range(modules):
        path = f"slowlib/m{i}.py"
        for x in (tests // 3 + i % 3, (2 * tests) // 3 - i % 3):
            old = files[path]
            wrong = f"    work(x)\n    if x == {x}:\n        return -1\n"
            new = old.replace("    work(x)\n", wrong)
            out.append((f"m{i}[{x}]", _diff(path, old, new)))
    return out


def _diff(path: str, old: str, new: str) -> str:
    import difflib
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    return "".join(lines)


def biglib() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """H5's fixture as it is; each module's first function made to raise (more than one test
    fails there, the first failure stops the selected run all the same)."""
    base = ROOT / "benchmarks" / "fixtures" / "biglib"
    files = {str(p.relative_to(base)): p.read_text("utf-8") for p in sorted(base.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts}
    out = []
    for path in sorted(p for p in files
                       if p.startswith("src/biglib/") and not p.endswith("__init__.py")):
        text = files[path]
        first = next(line for line in text.splitlines() if line.startswith("def "))
        body = text.index(first) + len(first) + 1
        broken = text[:body] + "    raise ValueError('broken')\n" + text[body:]
        out.append((path, _diff(path, text, broken)))
    return files, out


def tar_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in sorted(files.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def open_sandbox(kind: str, timeout: float) -> Sandbox:
    if kind == "local":
        from selfcode.resources import harness_dir
        from selfcode.sandbox.local import LocalSandbox
        return LocalSandbox(harness_dir())
    from selfcode.config import SandboxConfig
    from selfcode.sandbox.docker import DockerSandbox, docker_available, docker_client

    reason = docker_available()
    if reason is not None:
        print(f"no Docker engine ({reason}); nothing measured")
        raise SystemExit(0)
    from selfcode.git.store import GitStore
    from selfcode.sandbox.deps import dependencies_at
    from selfcode.sandbox.image import build_image

    client = docker_client()
    with GitStore(ROOT) as store:
        deps = dependencies_at(store, "HEAD")
    # The wheelhouse the Docker tests cached, when there is one (else a fresh download).
    state = ROOT / ".pytest_cache" / "d" / "selfcode-docker-state"
    if not state.is_dir():
        state = Path(tempfile.gettempdir()) / "selfcode-bench-cascade"
    import os
    base = os.environ.get("SELFCODE_BASE_IMAGE", "selfcode-base:bookworm")
    image = build_image(deps, state, base, client=client).tag
    config = SandboxConfig(timeout=timeout)
    return DockerSandbox.start(config, image, f"bench-cascade-{os.getpid()}",
                               ROOT / "sandbox", client=client)


def judge_all(box: Sandbox, files: dict[str, str], cases: list[tuple[str, str]],
              cascade: bool, timeout: float) -> tuple[list[tuple[str, Verdict, float]], Judge]:
    judge = Judge(Trees(box, timeout), GateConfig(judge="fix"), {})
    judge.set_baseline(tar_of(files))
    if not cascade:  # today's judge: nothing before the full suite
        judge.cascade.run = lambda step, changed, timings: Outcome()
    out = []
    for label, diff in cases:
        t0 = time.perf_counter()
        verdict = judge.judge(diff)
        out.append((label, verdict, time.perf_counter() - t0))
    return out, judge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", choices=("docker", "local"), default="docker")
    parser.add_argument("--modules", type=int, default=8)
    parser.add_argument("--tests", type=int, default=30)
    parser.add_argument("--work-ms", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--biglib", action="store_true")
    args = parser.parse_args(argv)
    if args.biglib:
        files, cases = biglib()
    else:
        files = fixture(args.modules, args.tests, args.work_ms)
        cases = breaks(files, args.modules, args.tests)
    with open_sandbox(args.sandbox, args.timeout) as box:
        trees = Trees(box, args.timeout)
        trees.load_baseline(tar_of(files))
        plain = [trees.run_tests("a").duration for _ in range(3)]
        before, _ = judge_all(box, files, cases, False, args.timeout)
        after, judge = judge_all(box, files, cases, True, args.timeout)
    report(plain, before, after, judge)
    return 0


def report(plain: list[float], before: list[tuple[str, Verdict, float]],
           after: list[tuple[str, Verdict, float]], judge: Judge) -> None:
    full = statistics.median(plain)
    for (label, v0, _), (_, v1, _) in zip(before, after, strict=True):
        print(f"{label}: {v0.status} / {v1.status}: {'; '.join(v1.reasons)[:120]}")
    coverage = next((v.timings["coverage_map"] for _, v, _ in after
                     if "coverage_map" in v.timings), None)
    # The map's recording is charged once per baseline: left out of each candidate's time.
    times_before = [s for _, _, s in before]
    times_after = [s - v.timings.get("coverage_map", 0.0) for _, v, s in after]
    first = [s for (_, v, _), s in zip(after, times_after, strict=True)
             if "tests_selected_baseline" in v.timings]
    cached = [s for (_, v, _), s in zip(after, times_after, strict=True)
              if "tests_selected_baseline" not in v.timings]
    tests = judge.baseline_tests
    n = len(tests.collected or []) if tests else 0
    selected = [v.tests.selected for _, v, _ in after if v.tests and v.tests.selected]
    err = sys.stderr
    print(f"suite: {n} tests; full-suite run (harness, median of 3): {full:.2f}s", file=err)
    if coverage is not None:
        print(f"coverage map, recorded once per baseline: {coverage:.2f}s "
              f"({coverage / full:.0%} of a plain run)", file=err)
    print(f"tests selected per break: {statistics.median(selected) if selected else '-'}",
          file=err)
    print(f"{'':34}{'before':>10}{'after':>10}", file=err)
    b, a = statistics.median(times_before), statistics.median(times_after)
    print(f"{'median time to reject a 1-test break':34}{b:>9.2f}s{a:>9.2f}s", file=err)
    print(f"{'  as a share of a full-suite run':34}{b / full:>10.0%}{a / full:>10.0%}", file=err)
    stages = ("apply", "install", "import", "tests_selected", "tests_selected_baseline", "tests")
    for name, verdicts in (("before", before), ("after", after)):
        parts = []
        for stage in stages:
            seen = [v.timings[stage] for _, v, _ in verdicts if stage in v.timings]
            if seen:
                parts.append(f"{stage} {statistics.median(seen):.2f}s")
        print(f"  {name}, median by stage: {', '.join(parts)}", file=err)
    if first and cached:
        print(f"  after, first break of a selection {statistics.median(first):.2f}s "
              f"({statistics.median(first) / full:.0%}); selection cached "
              f"{statistics.median(cached):.2f}s ({statistics.median(cached) / full:.0%})",
              file=err)


if __name__ == "__main__":
    sys.exit(main())
