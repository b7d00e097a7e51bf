"""What the harness reports, parsed as untrusted input: bounded, typed, or rejected."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfcode.errors import SandboxError

MAX_REPORT_BYTES = 4 * 1024 * 1024
T = TypeVar("T", bound=BaseModel)
Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "missing"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TestsRun(_Strict):
    __test__ = False  # not a pytest test class, despite the name

    exit_code: int
    timed_out: bool
    duration: float
    collected: list[str] | None = Field(default=None, max_length=200_000)
    outcomes: dict[str, Outcome] | None = None
    junit_cases: int | None = None
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


class BenchRun(_Strict):
    benchmarks: list[BenchSamples]


def parse_report(raw: bytes, model: type[T], what: str) -> T:
    if len(raw) > MAX_REPORT_BYTES:
        raise SandboxError(f"The harness's {what} report is larger than allowed; it was discarded.")
    lines = raw.strip().splitlines()
    if not lines:
        raise SandboxError(f"The harness printed no {what} report.")
    try:
        return model.model_validate_json(lines[-1])
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise SandboxError(f"The harness's {what} report is malformed: {problem}.") from exc
