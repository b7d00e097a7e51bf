"""What the judge decides, as data: the `Verdict` and its parts (stable JSON field names).

Every other part of selfcode reads verdicts; only the judge (gate/judge.py) makes them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from selfcode.gate.regressions import ResourceCheck

Goal = Literal["speed", "fix", "metric"]


Status = Literal["accepted", "rejected", "unusable"]


BenchOutcome = Literal["faster", "slower", "same", "failed", "output differs"]


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
    selected: int | None = None
    """How many tests the cascade ran first, alone (gate/cascade.py); None: that stage was
    skipped. A verdict it rejected has only those tests' comparison."""
    failures: dict[str, str] = Field(default_factory=dict)
    """Newly failing test -> the first lines of its assertion message (the candidate's text,
    clipped by the harness: for the next prompt, never for deciding)."""


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
    resources: list[ResourceCheck] = Field(default_factory=list)
    """CPU time, wall time and peak memory against the baseline, checked before acceptance."""
    pairs: int | None = None
    """CPU time: every pair measured for this verdict, screen and confirmation looks together
    (`baseline`/`candidate` hold the last stage's)."""


class Counterexample(BaseModel):
    """One input on which the candidate behaved otherwise than the baseline."""

    function: str
    input: str
    candidate: str
    baseline: str


class EquivalenceVerdict(BaseModel):
    """The changed functions, called out of process on both trees with recorded and new inputs."""

    functions: list[str] = Field(default_factory=list)
    inputs_tried: int = 0
    not_checked: dict[str, str] = Field(default_factory=dict)
    """Function -> why it could not be compared (no calls seen, a generator, side effects...)."""
    counterexample: Counterexample | None = None


class CanaryOutcome(BaseModel):
    """One canary case as a self-candidate's own judge decided it (gate/canary.py)."""

    name: str
    expected: str
    got: str
    """accepted / rejected / unusable, or error (no readable verdict, a timeout)."""
    ok: bool
    seconds: float = 0.0
    reasons: list[str] = Field(default_factory=list)


class CanaryVerdict(BaseModel):
    """The promotion stage: did the candidate's judge reproduce every known verdict?"""

    passed: bool
    cases: list[CanaryOutcome] = Field(default_factory=list)


class Verdict(BaseModel):
    accepted: bool
    status: Status
    goal: Goal
    reasons: list[str] = Field(default_factory=list)
    patch: PatchSummary = Field(default_factory=PatchSummary)
    tests: TestsVerdict | None = None
    benchmarks: list[BenchVerdict] = Field(default_factory=list)
    equivalence: EquivalenceVerdict | None = None
    canary: CanaryVerdict | None = None
    """Self-candidates only: the candidate's judge on the canary corpus (promotion)."""
    timings: dict[str, float] = Field(default_factory=dict)
    sandbox: str = ""
    integrity_gaps: list[str] = Field(default_factory=list)
    """What the sandbox could not rule out (the local one: forged reports, hidden work...)."""
    baseline_drift: list[str] = Field(default_factory=list)
    """Judged against a node of the search's archive: the benchmarks on which the node
    measured slower as the baseline than when it was accepted (gate/nodes.py)."""

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
