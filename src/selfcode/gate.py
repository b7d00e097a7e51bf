"""The gate: turns baseline and candidate harness results into a `Verdict`. Pure functions.

Hard constraints first (protected paths, the same tests with the same outcomes, benchmarks
that print the same result), then the objective: a paired statistical decision on benchmark
samples, or more tests passing when the goal is to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, Field

from selfcode.sandbox.results import BenchRun, TestsRun
from selfcode.stats import compare

Goal = Literal["speed", "fix"]
Status = Literal["accepted", "rejected", "unusable"]
_FAILING = ("failed", "error", "missing")
_SKIPPED = ("skipped", "xfailed")


class PatchSummary(BaseModel):
    files: list[str] = Field(default_factory=list)
    added: int = 0
    removed: int = 0


class TestCounts(BaseModel):
    passed: int = 0
    failed: int = 0
    skipped: int = 0


class TestsVerdict(BaseModel):
    baseline: TestCounts
    candidate: TestCounts
    lost: list[str] = Field(default_factory=list)
    newly_failing: list[str] = Field(default_factory=list)
    newly_skipped: list[str] = Field(default_factory=list)
    fixed: list[str] = Field(default_factory=list)


class BenchVerdict(BaseModel):
    name: str
    metric: str
    baseline: list[float]
    candidate: list[float]
    ratio: float | None = None
    p_value: float | None = None
    verdict: Literal["faster", "slower", "same", "failed", "output differs"]


class Verdict(BaseModel):
    accepted: bool
    status: Status
    goal: Goal
    reasons: list[str] = Field(default_factory=list)
    patch: PatchSummary = Field(default_factory=PatchSummary)
    tests: TestsVerdict | None = None
    benchmarks: list[BenchVerdict] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    sandbox: str = ""

    def speedup(self) -> float | None:
        """Baseline/candidate of the best faster benchmark (1.25 = 25 % faster)."""
        ratios = [b.ratio for b in self.benchmarks if b.verdict == "faster" and b.ratio]
        return 1 / min(ratios) if ratios else None


def protected_violations(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    return [p for p in paths if any(fnmatchcase(p, pattern) for pattern in patterns)]


def judge_tests(baseline: TestsRun, candidate: TestsRun) -> tuple[TestsVerdict, list[str]]:
    base = baseline.outcomes or {}
    verdict = TestsVerdict(
        baseline=TestCounts(**baseline.summary()), candidate=TestCounts(**candidate.summary())
    )
    reasons = _report_problems(candidate)
    if reasons:
        return verdict, reasons
    cand = candidate.outcomes or {}
    verdict.lost = sorted(set(base) - set(cand))
    passed_before = [t for t, o in base.items() if o == "passed" and t in cand]
    verdict.newly_failing = sorted(t for t in passed_before if cand[t] in _FAILING)
    verdict.newly_skipped = sorted(t for t in passed_before if cand[t] in _SKIPPED)
    verdict.fixed = sorted(t for t, o in base.items() if o in _FAILING and cand.get(t) == "passed")
    for label, ids in (("test lost", verdict.lost), ("newly failing", verdict.newly_failing),
                       ("newly skipped", verdict.newly_skipped)):
        if ids:
            more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
            reasons.append(f"{label}: {', '.join(ids[:3])}{more}")
    return verdict, reasons


def _report_problems(run: TestsRun) -> list[str]:
    """A test run whose report cannot be trusted is a rejection, whatever it claims."""
    if run.timed_out:
        return ["the tests timed out"]
    if run.stderr_tail.startswith("killed: "):
        return [f"the tests were {run.stderr_tail}"]
    if run.collected is None or run.outcomes is None:
        return [f"the test run left no usable report (pytest exit code {run.exit_code})"]
    if run.junit_cases != len(run.collected):
        return [f"the JUnit report has {run.junit_cases} cases but pytest collected "
                f"{len(run.collected)} tests"]
    failing = run.count(*_FAILING)
    expected_exit = 5 if not run.collected else (1 if failing else 0)
    if run.exit_code != expected_exit:
        return [f"pytest exited with code {run.exit_code}, which does not match its report "
                f"({failing} failing of {len(run.collected)})"]
    return []


def judge_benchmarks(
    run: BenchRun, alpha: float, min_improvement: float
) -> tuple[list[BenchVerdict], list[str]]:
    verdicts: list[BenchVerdict] = []
    reasons: list[str] = []
    for bench in run.benchmarks:
        a_out, b_out = bench.output.get("a"), bench.output.get("b")
        common = {"name": bench.name, "metric": bench.metric,
                  "baseline": bench.a, "candidate": bench.b}
        if bench.failure or not bench.a or len(bench.a) != len(bench.b):
            verdicts.append(BenchVerdict(**common, verdict="failed"))
            reasons.append(f"benchmark {bench.name} failed: {bench.failure or 'no samples'}")
            continue
        if a_out is None or b_out is None or a_out.sha256 != b_out.sha256:
            verdicts.append(BenchVerdict(**common, verdict="output differs"))
            reasons.append(f"benchmark {bench.name} printed a different result than the baseline")
            continue
        cmp = compare(bench.a, bench.b, alpha, min_improvement)
        p_value = cmp.p_slower if cmp.verdict == "slower" else cmp.p_faster
        verdicts.append(BenchVerdict(**common, ratio=cmp.ratio, p_value=p_value,
                                     verdict=cmp.verdict))
        if cmp.verdict == "slower":
            reasons.append(f"benchmark {bench.name} is slower: {cmp.ratio:.3f}x the baseline's "
                           f"time (p={cmp.p_slower:.2g})")
    return verdicts, reasons


def objective_reason(goal: Goal, tests: TestsVerdict, benches: Sequence[BenchVerdict],
                     alpha: float, min_improvement: float) -> str | None:
    """Why the objective was not met, or None when it was."""
    if goal == "fix":
        return None if tests.fixed else "no failing test was made to pass"
    if any(b.verdict == "faster" for b in benches):
        return None
    measured = [b for b in benches if b.ratio is not None]
    if not measured:
        return "no benchmark could be measured"
    best = min(measured, key=lambda b: b.ratio or 1.0)
    return (f"no benchmark is at least {min_improvement:.0%} faster with p < {alpha:g} "
            f"(best: {best.name} at {best.ratio:.3f}x, p={best.p_value:.2g})")
