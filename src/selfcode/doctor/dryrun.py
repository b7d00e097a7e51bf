"""The dry run: HEAD in the sandbox as `improve` starts it, timed, before any model is paid.

Through the run's own path: `open_sandbox` (the image from HEAD's declarations), a `Judge`
whose `set_baseline` seals and installs the baseline and runs its tests once, `calibrate` (the
A/A runs that choose each benchmark's metric, on fewer pairs than a run), one instruction count
of each counted benchmark, and, with `--profile`, the hotspot table. Every failure becomes a
failed check with its sentence; nothing here raises for the repository's or the engine's fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from selfcode.config import Settings
from selfcode.doctor.checks import Check, Report, Stopwatch, seconds_text
from selfcode.doctor.estimate import BenchCost, Estimate, Measured, estimate
from selfcode.errors import SelfcodeError
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.gate.measure import BenchSetting, Calibration
from selfcode.git.store import GitStore
from selfcode.run.events import Observer
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.deps import DependencySet
from selfcode.sandbox.results import ProfileRun, TestsRun

DOCTOR_PAIRS = 3
"""A/A pairs the doctor calibrates on: enough to choose each metric; a run measures more."""


@dataclass
class DryRun:
    estimate: Estimate | None = None
    profile: ProfileRun | None = None


@dataclass
class _Baseline:
    """What loading and testing the baseline took."""

    load_s: float
    tests_s: float
    tests: TestsRun


def dry_run(store: GitStore, settings: Settings, deps: DependencySet | None,
            observer: Observer, report: Report, profile: bool = False) -> DryRun:
    """Open the sandbox and judge nothing but HEAD: install, tests, benchmarks, estimate."""
    from selfcode.history.db import new_run_id
    from selfcode.sandbox.factory import open_sandbox

    result, add = DryRun(), report
    if deps is not None and not _image(store, settings, deps, observer, add):
        return result
    observer.event("phase", f"opening the {settings.sandbox.backend} sandbox")
    watch = Stopwatch()
    try:
        opened = open_sandbox(settings.sandbox, store.state_dir(), "doctor-" + new_run_id(),
                              deps, observer)
    except SelfcodeError as exc:
        add(Check(name="sandbox", ok=False, detail=str(exc), seconds=watch.seconds))
        return result
    with opened as sandbox:
        sandbox_s = watch.seconds
        add(Check(name="sandbox", ok=True, seconds=sandbox_s,
                  detail=f"the {sandbox.kind} sandbox started in {seconds_text(sandbox_s)}"))
        _judge_head(sandbox, store, settings, observer, add, result, sandbox_s, profile)
    return result


def _image(store: GitStore, settings: Settings, deps: DependencySet, observer: Observer,
           add: Report) -> bool:
    """The docker image from HEAD's declarations, found or built as a run would; timed apart
    from the container's start, since it is built once and reused."""
    from selfcode.sandbox.image import ensure_image

    observer.event("phase", "finding or building the sandbox image")
    watch = Stopwatch()
    try:
        tag = ensure_image(settings.sandbox, store.state_dir(), deps,
                           progress=lambda message: observer.event("phase", message))
    except SelfcodeError as exc:
        add(Check(name="sandbox image", ok=False, detail=str(exc), seconds=watch.seconds))
        return False
    add(Check(name="sandbox image", ok=True, seconds=watch.seconds,
              detail=f"{tag} is ready in {seconds_text(watch.seconds)} (built once, then "
                     "reused while the declarations and the base image stay the same)"))
    return True


def _judge_head(sandbox: Sandbox, store: GitStore, settings: Settings, observer: Observer,
                add: Report, result: DryRun, sandbox_s: float, profile: bool) -> None:
    from selfcode.sandbox.trees import Trees

    benchmarks = discover_benchmarks(store.list_files("HEAD"), settings.gate, sandbox.python)
    tests_started: list[float] = []

    def progress(message: str) -> None:
        if message.startswith("testing") and not tests_started:
            tests_started.append(time.perf_counter())
        observer.event("phase", message)

    judge = Judge(Trees(sandbox, settings.sandbox.timeout), settings.gate, benchmarks,
                  progress=progress)
    baseline = _baseline(judge, store.tracked_tar("HEAD"), tests_started, add, settings)
    if baseline is None:
        return
    costs: list[BenchCost] = []
    if judge.goal == "speed" and benchmarks:
        measured = _benchmarks(judge, add)
        if measured is None:
            return
        costs = measured
    result.estimate = estimate(Measured(goal=judge.goal, sandbox_s=sandbox_s,
                                        load_s=baseline.load_s, tests_s=baseline.tests_s,
                                        benchmarks=costs), settings.gate)
    add(Check(name="time per candidate", ok=True, detail=result.estimate.sentence()))
    if profile:
        result.profile = _profile(judge, observer, add)


def _baseline(judge: Judge, tar: bytes, tests_started: list[float], add: Report,
              settings: Settings) -> _Baseline | None:
    """Install (seal) the baseline and run its tests once, through `Judge.set_baseline`.

    Where loading ends and testing starts is the judge's "testing ..." progress message; were
    it ever worded otherwise, the harness's own duration of the tests splits the time."""
    start = time.perf_counter()
    try:
        tests = judge.set_baseline(tar)
    except SelfcodeError as exc:
        now = time.perf_counter()
        if not tests_started:  # it failed before its tests: loading or installing it
            add(Check(name="install", ok=False, detail=str(exc), seconds=round(now - start, 3)))
            return None
        add(_install_check(judge, tests_started[0] - start))
        add(Check(name="tests", ok=False, detail=str(exc),
                  seconds=round(now - tests_started[0], 3)))
        return None
    end = time.perf_counter()
    split = tests_started[0] if tests_started else max(start, end - tests.duration)
    load_s, tests_s = split - start, end - split
    add(_install_check(judge, load_s))
    add(Check(name="tests", ok=True, seconds=round(tests_s, 3),
              detail=tests_sentence(tests, tests_s, settings.gate.flaky_runs)))
    return _Baseline(load_s=load_s, tests_s=tests_s, tests=tests)


def _install_check(judge: Judge, load_s: float) -> Check:
    installed = judge.trees.install_seconds
    if installed is None:
        detail = (f"not a package (no setup.py, no [project] or [build-system]): its code is "
                  f"imported from the tree; sealing the baseline took {seconds_text(load_s)}")
    else:
        detail = (f"installs as its users would (pip install --no-deps --no-build-isolation) "
                  f"in {seconds_text(installed)}; sealing and installing the baseline took "
                  f"{seconds_text(load_s)}")
    return Check(name="install", ok=True, detail=detail, seconds=round(load_s, 3))


def tests_sentence(tests: TestsRun, seconds: float, flaky_runs: int) -> str:
    collected = len(tests.collected) if tests.collected is not None else len(
        tests.outcomes or {})
    counts = tests.summary()
    # The verdict counts an expected failure as skipped; said apart, the numbers match pytest's.
    xfailed = tests.count("xfailed")
    skipped = f"{counts['skipped'] - xfailed} skipped" + (
        f", {xfailed} xfailed (expected to fail)" if xfailed else "")
    return (f"{collected} test(s) collected: {counts['passed']} passed, {counts['failed']} "
            f"failed, {skipped}, in {seconds_text(seconds)}; a run tests "
            f"the baseline {flaky_runs} time(s) before its first candidate")


def _benchmarks(judge: Judge, add: Report) -> list[BenchCost] | None:
    """Calibrate (each benchmark's metric and noise), count the counted ones once; a check
    per benchmark. None when they cannot be measured."""
    watch = Stopwatch()
    try:
        calibration = judge.calibrate(DOCTOR_PAIRS)
    except SelfcodeError as exc:
        add(Check(name="benchmarks in the sandbox", ok=False, detail=str(exc),
                  seconds=watch.seconds))
        return None
    assert calibration is not None  # speed, with benchmarks
    run_s = per_run_seconds(calibration, watch.seconds)
    costs, ok = [], True
    for name, setting in calibration.benchmarks.items():
        count_s, failure = 0.0, None
        if setting.metric == "instructions":
            count_s, failure = _count(judge, name)
        ok = ok and failure is None
        add(Check(name=f"benchmark {name}", ok=failure is None, seconds=round(count_s, 3),
                  detail=failure or metric_sentence(name, setting, calibration, judge, count_s)))
        costs.append(BenchCost(name=name, metric=setting.metric, run_s=run_s[name],
                               count_s=count_s))
    return costs if ok else None


def per_run_seconds(calibration: Calibration, seconds: float) -> dict[str, float]:
    """One harness run of each benchmark, from the calibration's wall time: its CPU time plus
    an equal share of what the runs took beyond their CPU time (starts, fresh directories)."""
    settings = calibration.benchmarks
    if not settings:
        return {}
    rounds = 2 * calibration.pairs
    overhead = max(0.0, seconds / rounds - sum(s.native_s for s in settings.values()))
    return {name: s.native_s + overhead / len(settings) for name, s in settings.items()}


def _count(judge: Judge, name: str) -> tuple[float, str | None]:
    """Count one benchmark's instructions on both sides, as each candidate's count does."""
    judge.progress(f"counting the instructions of benchmark {name}")
    start = time.perf_counter()
    try:
        run = judge.trees.run_benchmarks({name: judge.benchmarks[name]}, 1, seed=0,
                                         metric="instructions", aa=True)
    except SelfcodeError as exc:
        return time.perf_counter() - start, f"counting its instructions failed: {exc}"
    seconds = time.perf_counter() - start
    (bench,) = run.benchmarks
    if bench.failure:
        return seconds, (f"it fails under valgrind ({bench.failure.strip()[-200:]}); judge it "
                         f"by CPU time: [tool.selfcode.gate] metrics = {{ {name} = "
                         '"cpu_time" }')
    return seconds, None


def metric_sentence(name: str, setting: BenchSetting, calibration: Calibration, judge: Judge,
                    count_s: float) -> str:
    config = judge.config
    native = (f"{seconds_text(setting.native_s)} CPU natively (median of "
              f"{2 * calibration.pairs} runs)")
    if setting.metric == "instructions":
        why = setting.note or (
            "as configured" if config.metrics.get(name) or config.metric != "auto" else
            f"under instruction_native_limit, {config.instruction_native_limit:g}s")
        return (f"{native}: judged by instruction counts ({why}); counting both sides, as "
                f"each candidate does, took {seconds_text(count_s)}")
    why = ("as configured" if config.metrics.get(name) or config.metric != "auto" else
           "valgrind is missing in the sandbox" if not calibration.valgrind else
           f"over instruction_native_limit, {config.instruction_native_limit:g}s")
    return (f"{native}: judged by CPU time ({why}); A/A noise {setting.cv:.1%}, smallest "
            f"claimable gain {setting.delta:.1%}")


def _profile(judge: Judge, observer: Observer, add: Report) -> ProfileRun | None:
    if not judge.benchmarks:
        add(Check(name="profile", ok=False, detail=(
            "this repository declares no benchmarks to profile: add benchmarks/bench_*.py "
            "scripts or [tool.selfcode.benchmarks] commands, and commit them.")))
        return None
    observer.event("phase", f"profiling {len(judge.benchmarks)} benchmark(s)")
    watch = Stopwatch()
    try:
        spots = judge.trees.profile(judge.benchmarks)
    except SelfcodeError as exc:
        add(Check(name="profile", ok=False, detail=str(exc), seconds=watch.seconds))
        return None
    add(Check(name="profile", ok=True, seconds=watch.seconds,
              detail=f"{len(spots.benchmarks)} benchmark(s) profiled"))
    return spots
