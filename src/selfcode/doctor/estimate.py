"""How long one candidate will take to judge, from what the doctor measured: an estimate.

The counts follow the gate (gate/judge.py, gate/measure.py, run/workflows.py):
- every candidate: apply and install (about a baseline's load), its tests (about the
  baseline's), for speed the behaviour comparison of changed functions (bounded by
  `equivalence_seconds`), then the benchmarks: one instruction count per side of each counted
  benchmark, `screen_pairs` timed pairs of each timed one;
- a candidate that looks faster, on top: `confirm_pairs` fresh pairs of each timed benchmark,
  `screen_pairs` timed pairs of each counted one (the CPU, wall and memory check), then the
  whole judgement again in a fresh sandbox (its start, the baseline's load and tests first);
- once per run: the sandbox, `flaky_runs` baseline test runs (the second on an identical
  candidate copy, reset first) and the calibration, `calibration_pairs` A/A pairs of each.
The model's reply time comes on top of all of it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from selfcode.doctor.checks import seconds_text
from selfcode.gate.config import GateConfig


class BenchCost(BaseModel):
    name: str
    metric: Literal["cpu_time", "instructions"]
    run_s: float
    """One timed run of it, as the harness runs it (wall seconds, its start included)."""
    count_s: float = 0.0
    """Counting its instructions on both sides (valgrind), for counted benchmarks."""


class Measured(BaseModel):
    goal: str
    sandbox_s: float
    load_s: float
    """Sealing and installing the baseline: what applying a candidate costs too."""
    tests_s: float
    benchmarks: list[BenchCost] = []


class Estimate(BaseModel):
    typical_s: float
    """A candidate that passes its tests and is not faster (most of them)."""
    accepted_s: float
    """A candidate that looks faster: confirmation, resource checks and the re-check."""
    once_s: float
    """Once per run, before the first candidate."""
    parts: dict[str, float]
    """What `typical_s` is made of, by step."""
    note: str = ""
    """What the figures leave out, in words ("; " between notes)."""

    def sentence(self) -> str:
        parts = ", ".join(f"{name} {seconds_text(s)}" for name, s in self.parts.items() if s)
        return (f"about {seconds_text(self.typical_s)} per candidate that is not faster "
                f"({parts}), about {seconds_text(self.accepted_s)} for one that is accepted "
                "(confirmation, resource checks and the re-check in a fresh sandbox), and "
                f"{seconds_text(self.once_s)} once per run before the first; an estimate from "
                "the times measured here, without the model's reply time"
                + (f"; {self.note}" if self.note else ""))


def estimate(measured: Measured, config: GateConfig) -> Estimate:
    load, tests = measured.load_s, measured.tests_s
    timed = sum(b.run_s for b in measured.benchmarks if b.metric == "cpu_time")
    counted = [b for b in measured.benchmarks if b.metric == "instructions"]
    speed = measured.goal == "speed" and bool(measured.benchmarks)
    parts = {"apply and install": load, "tests": tests}
    extra = 0.0  # what a candidate that looks faster costs more, in its own judgement
    calibration = 0.0
    if speed:
        if config.equivalence:
            parts["behaviour check (up to)"] = config.equivalence_seconds
        parts["instruction counts"] = sum(b.count_s for b in counted)
        parts["timed benchmark runs"] = 2 * config.screen_pairs * timed
        extra = 2 * config.confirm_pairs * timed + 2 * config.screen_pairs * sum(
            b.run_s for b in counted)
        calibration = 2 * config.calibration_pairs * sum(b.run_s for b in measured.benchmarks)
    typical = sum(parts.values())
    judged_accepted = typical + extra
    recheck = measured.sandbox_s + load + tests + judged_accepted
    reset = load if config.flaky_runs > 1 else 0.0
    once = measured.sandbox_s + load + config.flaky_runs * tests + reset + calibration
    notes = []
    if measured.goal == "metric":
        notes.append("plus two runs of the metric command, not measured here")
    if speed and config.equivalence:
        notes.append("the first candidate to change a function also records its inputs from "
                     "the tests and benchmarks")
    if speed and config.sentinel_every:
        sentinel = load + parts["instruction counts"] + parts["timed benchmark runs"]
        notes.append(f"every {config.sentinel_every} candidates an A/A sentinel adds "
                     f"{seconds_text(sentinel)}")
    if config.canary:
        notes.append("an accepted candidate of selfcode's own source also runs the canary")
    note = "; ".join(notes)
    return Estimate(typical_s=round(typical, 2), accepted_s=round(judged_accepted + recheck, 2),
                    once_s=round(once, 2), parts={k: round(v, 2) for k, v in parts.items()},
                    note=note)
