"""What the harness reports, parsed as untrusted input: authenticated, complete, or rejected.

A report counts only when the harness exited 0 and its last line is the expected JSON carrying
the nonce the host gave it (no candidate process can read that nonce); a benchmark report must
also be complete: every announced benchmark, as many samples as announced (fewer only up to a
failure), every sample finite and positive. Anything else raises `JudgeReportError`, which the
judge turns into a rejection of the candidate, never an acceptance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfcode.errors import JudgeReportError
from selfcode.sandbox.base import ExecResult

MAX_REPORT_BYTES = 4 * 1024 * 1024
T = TypeVar("T", bound="Report")
Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "missing"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Report(_Strict):
    """The envelope of every report: which command answered, with which nonce."""

    kind: str
    nonce: str


class TestsRun(_Strict):
    __test__ = False  # not a pytest test class, despite the name

    exit_code: int
    timed_out: bool
    duration: float
    collected: list[str] | None = Field(default=None, max_length=200_000)
    outcomes: dict[str, Outcome] | None = None
    junit_cases: int | None = None
    skipped_modules: list[str] = Field(default_factory=list, max_length=100_000)
    """Collectors skipped while collecting (a module-level `pytest.importorskip`): no test ids,
    one JUnit case each."""
    collection_errors: dict[str, str] = Field(default_factory=dict, max_length=100_000)
    """Collectors that failed while collecting (an import error), each with the line of
    pytest's report that names the exception."""
    failures: dict[str, Annotated[str, Field(max_length=1_000)]] = Field(
        default_factory=dict, max_length=100)
    """Failing test -> the first lines of its assertion message, as the candidate's pytest
    reported it (the harness keeps 3 lines, 300 characters, 20 tests): shown to the model,
    never used to decide."""
    tampered: str | None = Field(default=None, max_length=2_000)
    """Why the run's evidence contradicts itself (the harness then reports no outcomes)."""
    leftover_processes: int = 0
    """Processes the tests left running after pytest exited (killed by the harness)."""
    output_tail: str = Field(default="", max_length=20_000)
    stderr_tail: str = Field(default="", max_length=20_000)

    def count(self, *outcomes: str) -> int:
        return sum(1 for o in (self.outcomes or {}).values() if o in outcomes)

    def summary(self) -> dict[str, int]:
        return {
            "passed": self.count("passed"),
            "failed": self.count("failed", "error", "missing"),
            "skipped": self.count("skipped", "xfailed"),
        }


class BenchOutput(_Strict):
    sha256: str
    head: str = Field(default="", max_length=10_000)


class BenchSamples(_Strict):
    name: str
    metric: str
    a: list[float]
    b: list[float]
    output: dict[str, BenchOutput] = Field(default_factory=dict)
    failure: str | None = None
    tampered: str | None = Field(default=None, max_length=2_000)
    resources: dict[Literal["a", "b"], dict[Literal["cpu", "wall", "rss"], list[float]]] = Field(
        default_factory=dict)
    """Per side, per resource, one value per counted run (CPU s, wall s, peak RSS KiB)."""

    def resource_pairs(self) -> dict[Literal["cpu", "wall", "rss"],
                                     tuple[list[float], list[float]]]:
        """Each resource's paired samples (baseline, candidate), where both sides have them."""
        a, b = self.resources.get("a", {}), self.resources.get("b", {})
        return {r: (a[r], b[r]) for r in ("cpu", "wall", "rss") if r in a and r in b}


class Probe(_Strict):
    python: str
    valgrind: bool
    demoted: bool = False
    """True when candidate processes run as another uid than the harness."""
    cpu_meter: str = "rusage"


class TestsReport(Report, TestsRun):
    kind: Literal["tests"]


class BenchRun(_Strict):
    benchmarks: list[BenchSamples]


class BenchReport(Report, BenchRun):
    kind: Literal["bench"]


class ProbeReport(Report, Probe):
    kind: Literal["probe"]


class ProfiledCaller(_Strict):
    file: str = Field(max_length=500)
    line: int = Field(ge=0)
    name: str = Field(max_length=200)
    calls: int = Field(ge=0)


class HotLine(_Strict):
    line: int = Field(ge=0)
    hits: int = Field(ge=0)
    seconds: float = Field(ge=0, allow_inf_nan=False)
    """Inclusive wall time under line tracing: slowed by the tracing, compare lines only."""


class Hotspot(_Strict):
    """One of the tree's own functions, as cProfile saw it during one benchmark."""

    file: str = Field(max_length=500)
    line: int = Field(ge=0)
    name: str = Field(max_length=200)
    calls: int = Field(ge=0)
    primitive_calls: int = Field(default=0, ge=0)
    own_s: float = Field(ge=0, allow_inf_nan=False)
    cum_s: float = Field(ge=0, allow_inf_nan=False)
    own_share: float = Field(ge=0, le=1, allow_inf_nan=False)
    """Its own time over the benchmark's profiled time."""
    cum_share: float = Field(ge=0, le=1, allow_inf_nan=False)
    cum_per_call_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    rank_own: int = Field(default=0, ge=0)
    callers: list[ProfiledCaller] = Field(default_factory=list, max_length=20)
    lines: list[HotLine] = Field(default_factory=list, max_length=50)


class BenchProfile(_Strict):
    name: str = Field(max_length=200)
    total_s: float = Field(ge=0, allow_inf_nan=False)
    hotspots: list[Hotspot] = Field(default_factory=list, max_length=100)
    line_level: bool = False
    note: str | None = Field(default=None, max_length=2_000)
    """Why there are no line timings (an older Python in the sandbox), when there are none."""
    failure: str | None = Field(default=None, max_length=2_000)


class ProfileRun(_Strict):
    """Where each benchmark's time goes in the baseline: advisory, it decides no verdict."""

    python: str = Field(default="", max_length=100)
    benchmarks: list[BenchProfile] = Field(default_factory=list, max_length=200)


class ProfileReport(Report, ProfileRun):
    kind: Literal["profile"]


class TreeReport(Report):
    """`seal` and `apply`: whether the tree was made, what git said, and how its install went
    (sandbox/selfcode_install.py; no install fields: the tree is no package)."""

    kind: Literal["seal", "apply"]
    ok: bool
    message: str = Field(default="", max_length=10_000)
    install_seconds: float | None = Field(default=None, ge=0, le=86_400, allow_inf_nan=False)
    install_error: str | None = Field(default=None, min_length=1, max_length=2_000)
    """Why the tree does not install (pip's last words), or why its install cannot be kept."""



class EquivExample(_Strict):
    function: str = Field(max_length=500)
    input: str = Field(max_length=1_000)
    candidate: str = Field(max_length=2_000)
    baseline: str = Field(max_length=2_000)


class EquivRun(_Strict):
    """The changed functions called on both trees (`harness.py equiv`): what was compared."""

    functions: list[str] = Field(default_factory=list, max_length=1_000)
    inputs_tried: int = Field(default=0, ge=0)
    not_checked: dict[str, str] = Field(default_factory=dict)
    counterexample: EquivExample | None = None
    pytest_imported: bool = False
    """The candidate's modules loaded pytest when imported, and the baseline's did not."""


class EquivReport(Report, EquivRun):
    kind: Literal["equiv"]


class CanaryRun(_Strict):
    """A self-candidate's own `selfcode eval` of one canary case (`harness.py canary`): what it
    printed is the candidate's, read by gate/canary.py as untrusted text."""

    exit_code: int
    timed_out: bool = False
    duration: float = Field(default=0.0, ge=0)
    stdout: str = Field(default="", max_length=300_000)
    stderr_tail: str = Field(default="", max_length=100_000)
    problem: str | None = Field(default=None, max_length=2_000)


class CanaryReport(Report, CanaryRun):
    kind: Literal["canary"]

def parse_report(result: ExecResult, model: type[T], nonce: str) -> T:
    """The report of a harness run that exited 0 and carries `nonce`; else JudgeReportError."""
    raw = result.stdout
    if len(raw) > MAX_REPORT_BYTES:
        raise JudgeReportError("the report is larger than allowed")
    lines = raw.strip().splitlines()
    if result.exit_code != 0 or result.killed_reason:
        why = result.killed_reason or f"exit code {result.exit_code}"
        detail = result.stderr.decode("utf-8", "replace").strip()[-300:]
        raise JudgeReportError(f"the harness failed ({why}) {detail}".strip())
    if not lines:
        raise JudgeReportError("the harness printed no report")
    try:
        report = model.model_validate_json(lines[-1])
    except ValidationError as exc:
        raise JudgeReportError(f"the report is malformed ({exc.errors()[0]['msg']})") from exc
    if report.nonce != nonce:
        raise JudgeReportError("the report does not carry the nonce the harness was given")
    return report


def check_complete(run: BenchRun, names: Sequence[str], pairs: int, metric: str) -> None:
    """Every announced benchmark, every sample; raises JudgeReportError for any gap."""
    if [b.name for b in run.benchmarks] != list(names):
        raise JudgeReportError("the benchmark report does not list the benchmarks it was asked")
    for bench in run.benchmarks:
        if bench.tampered:
            raise JudgeReportError(f"benchmark {bench.name}: {bench.tampered}")
        problem = _samples_problem(bench, pairs, metric)
        if problem:
            raise JudgeReportError(f"benchmark {bench.name}: {problem}")


def _samples_problem(bench: BenchSamples, pairs: int, metric: str) -> str | None:
    if bench.metric != metric:
        return f"measured {bench.metric}, not {metric}"
    sides = (bench.a, bench.b)
    if bench.failure is None and any(len(s) != pairs for s in sides):
        return f"{len(bench.a)} and {len(bench.b)} samples where {pairs} pairs were announced"
    if any(len(s) > pairs for s in sides):
        return "more samples than announced"
    for side, samples in (("a", bench.a), ("b", bench.b)):
        used = bench.resources.get(side, {})  # type: ignore[call-overload]
        columns = [samples, *(used.get(r, []) for r in ("cpu", "wall", "rss"))]
        if any(len(c) != len(samples) for c in columns):
            return f"side {side} lacks CPU, wall time or memory for some samples"
        if not all(math.isfinite(x) and x > 0 for c in columns for x in c):
            return f"side {side} has a sample that is zero, negative or not finite"
    return None
