"""The gate: turns baseline and candidate harness results into a `Verdict`. Pure functions.

Hard constraints first (protected paths, the same tests with the same outcomes, benchmarks
that print the same result), then the objective: a paired statistical decision on benchmark
samples, or more tests passing when the goal is to fix.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, Field

from selfcode.gate.stats import InstructionDecision, compare, instruction_decision, screen
from selfcode.sandbox.results import BenchSamples, TestsRun

Goal = Literal["speed", "fix", "metric"]
Status = Literal["accepted", "rejected", "unusable"]
BenchOutcome = Literal["faster", "slower", "same", "failed", "output differs"]
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
    quarantined: list[str] = Field(default_factory=list)
    """Tests whose baseline outcome varied between runs: listed, and left out of the comparison."""


class BenchVerdict(BaseModel):
    name: str
    metric: str
    baseline: list[float]
    candidate: list[float]
    ratio: float | None = None
    p_value: float | None = None
    verdict: BenchOutcome
    delta: float | None = None
    """The smallest gain this benchmark may claim (from the A/A noise of the run)."""
    stage: Literal["instructions", "screen", "confirm"] | None = None
    confirmation: dict[str, Any] | None = None
    """CPU-time check of a large instruction-count win: ratio, p_value, samples."""


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

    def gain(self) -> str:
        """The accepted gain as people say it, naming the metric it was measured in."""
        best = min((b for b in self.benchmarks if b.verdict == "faster" and b.ratio),
                   key=lambda b: b.ratio or 1.0, default=None)
        if best is None or not best.ratio:
            return ""
        if best.metric == "instructions":
            text = f"{1 / best.ratio:.2f}x fewer instructions"
            cpu = (best.confirmation or {}).get("ratio")
            return text + (f", {1 / cpu:.2f}x less CPU time" if cpu else "")
        return f"{1 / best.ratio:.2f}x less CPU time"

    def speedup(self) -> float | None:
        """Baseline/candidate of the best faster benchmark (1.25 = 25 % faster)."""
        ratios = [b.ratio for b in self.benchmarks if b.verdict == "faster" and b.ratio]
        return 1 / min(ratios) if ratios else None


def protected_violations(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    return [p for p in paths if any(fnmatchcase(p, pattern) for pattern in patterns)]


def judge_tests(baseline: TestsRun, candidate: TestsRun,
                quarantined: Iterable[str] = ()) -> tuple[TestsVerdict, list[str]]:
    skip = set(quarantined)
    base = {t: o for t, o in (baseline.outcomes or {}).items() if t not in skip}
    verdict = TestsVerdict(
        baseline=TestCounts(**baseline.summary()), candidate=TestCounts(**candidate.summary()),
        quarantined=sorted(skip),
    )
    # Lost tests are named even when the report is broken: they say what the patch did.
    if candidate.collected is not None:
        verdict.lost = sorted(set(base) - set(candidate.collected))
    reasons = _report_problems(candidate)
    if reasons:
        if verdict.lost:
            reasons.insert(0, _listing("test lost", verdict.lost))
        return verdict, reasons
    cand = {t: o for t, o in (candidate.outcomes or {}).items() if t not in skip}
    verdict.lost = sorted(set(base) - set(cand))
    passed_before = [t for t, o in base.items() if o == "passed" and t in cand]
    verdict.newly_failing = sorted(t for t in passed_before if cand[t] in _FAILING)
    verdict.newly_skipped = sorted(t for t in passed_before if cand[t] in _SKIPPED)
    verdict.fixed = sorted(t for t, o in base.items() if o in _FAILING and cand.get(t) == "passed")
    for label, ids in (("test lost", verdict.lost), ("newly failing", verdict.newly_failing),
                       ("newly skipped", verdict.newly_skipped)):
        if ids:
            reasons.append(_listing(label, ids))
    return verdict, reasons


def _listing(label: str, ids: Sequence[str]) -> str:
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"{label}: {', '.join(ids[:3])}{more}"


def flaky_tests(runs: Sequence[TestsRun]) -> list[str]:
    """Tests whose outcome differs between runs of the same tree."""
    seen: dict[str, set[str]] = {}
    for run in runs:
        for test, outcome in (run.outcomes or {}).items():
            seen.setdefault(test, set()).add(outcome)
    return sorted(t for t, outcomes in seen.items()
                  if len(outcomes) > 1 or sum(t in (r.outcomes or {}) for r in runs) < len(runs))


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


def output_problem(bench: BenchSamples) -> tuple[BenchVerdict, str] | None:
    """A benchmark that failed, or printed another result than the baseline, rejects."""
    def verdict(kind: BenchOutcome) -> BenchVerdict:
        return BenchVerdict(name=bench.name, metric=bench.metric, baseline=bench.a,
                            candidate=bench.b, verdict=kind)

    if bench.failure or not bench.a or len(bench.a) != len(bench.b):
        return (verdict("failed"),
                f"benchmark {bench.name} failed: {bench.failure or 'no samples'}")
    a_out, b_out = bench.output.get("a"), bench.output.get("b")
    if a_out is None or b_out is None or a_out.sha256 != b_out.sha256:
        return (verdict("output differs"),
                f"benchmark {bench.name} printed a different result than the baseline")
    return None


def judge_time(bench: BenchSamples, delta: float, alpha: float,
               stage: Literal["screen", "confirm"]) -> tuple[BenchVerdict, str | None]:
    """Screen: p < 0.05 and half of delta earns a confirmation; confirm: p < alpha and delta."""
    problem = output_problem(bench)
    if problem:
        return problem
    cmp = screen(bench.a, bench.b, delta) if stage == "screen" else compare(
        bench.a, bench.b, alpha, delta)
    # Regressions are judged two-sided at alpha, at every stage.
    slower = cmp.p_slower < alpha / 2 and cmp.ratio >= 1 + delta
    verdict: BenchOutcome = "slower" if slower else (
        "faster" if cmp.verdict == "faster" else "same")
    result = BenchVerdict(name=bench.name, metric=bench.metric, baseline=bench.a,
                          candidate=bench.b, ratio=cmp.ratio, delta=delta, stage=stage,
                          p_value=cmp.p_slower if slower else cmp.p_faster, verdict=verdict)
    reason = (f"benchmark {bench.name} is slower: {cmp.ratio:.3f}x the baseline's CPU time "
              f"(p={cmp.p_slower:.2g})") if slower else None
    return result, reason


def judge_instructions(benches: Sequence[BenchSamples]) -> tuple[
        list[BenchVerdict], list[str], InstructionDecision]:
    verdicts: list[BenchVerdict] = []
    reasons: list[str] = []
    ratios: dict[str, float] = {}
    for bench in benches:
        problem = output_problem(bench)
        if problem:
            verdicts.append(problem[0])
            reasons.append(problem[1])
            continue
        ratio = statistics.median(bench.b) / statistics.median(bench.a)
        ratios[bench.name] = ratio
        verdict: BenchOutcome = (
            "faster" if ratio <= 0.99 else ("slower" if ratio > 1.01 else "same"))
        verdicts.append(BenchVerdict(name=bench.name, metric="instructions", baseline=bench.a,
                                     candidate=bench.b, ratio=ratio, verdict=verdict,
                                     stage="instructions"))
    decision = instruction_decision(ratios)
    reasons.extend(f"benchmark {name} runs {ratios[name]:.3f}x the baseline's instructions"
                   for name in decision.worse)
    return verdicts, reasons, decision


def fix_reason(tests: TestsVerdict) -> str | None:
    return None if tests.fixed else "no failing test was made to pass"
