"""bench_search's figures, computed from what a run recorded: its events and its candidates.

Pure functions over the history's `events` rows (kind, candidate number, message, time) and
`selfcode show RUN --json`'s candidates, so they can be checked on hand-made rows. Times are
the history's own timestamps: the judge's clock, not the benchmark's.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JUDGED = ("accepted", "rejected")
# Setup charged once to the first verdict (ARCHITECTURE: the verdict's timings); not the
# candidate's own cost.
SETUP_TIMINGS = {"precheck", "image", "sandbox_start", "baseline_load", "baseline_tests",
                 "calibration", "coverage_map"}


@dataclass(frozen=True)
class Event:
    kind: str
    candidate: int | None
    message: str
    at: datetime

    @classmethod
    def of(cls, row: Sequence[Any]) -> Event:
        kind, candidate, message, at = row
        return cls(str(kind), candidate, str(message), datetime.fromisoformat(str(at)))


@dataclass
class RunFigures:
    """One `selfcode improve` run, measured."""

    label: str
    wall_s: float = 0.0  # the process, start to exit
    setup_s: float = 0.0  # run start to the first model request
    loop_s: float = 0.0  # first model request to the last candidate's end
    finished: int = 0  # candidates with an outcome (malformed ones included)
    judged: int = 0  # candidates with a verdict (accepted or rejected)
    accepted: int = 0
    first_accept_s: float | None = None  # run start to the first accepted candidate's end
    candidate_walls: list[float] = field(default_factory=list)  # request to outcome, each
    gaps: list[float] = field(default_factory=list)  # between consecutive outcomes
    break_tests_s: list[float] = field(default_factory=list)  # test stages of one-test breaks
    break_total_s: list[float] = field(default_factory=list)  # their whole verdict
    full_suite_s: list[float] = field(default_factory=list)  # test stage of full-suite passes
    best_speedup: float = 1.0
    best_at: int | None = None  # the candidate number that reached best_speedup
    lineage: list[int] = field(default_factory=list)  # accepted candidates to the best node
    exit_code: int = 0
    note: str = ""

    @property
    def judged_per_hour(self) -> float | None:
        return self.judged * 3600 / self.loop_s if self.loop_s > 0 else None

    @property
    def finished_per_hour(self) -> float | None:
        return self.finished * 3600 / self.loop_s if self.loop_s > 0 else None

    @property
    def break_fraction(self) -> float | None:
        if not self.break_tests_s or not self.full_suite_s:
            return None
        return statistics.median(self.break_tests_s) / statistics.median(self.full_suite_s)


def timeline(figures: RunFigures, events: Iterable[Event]) -> None:
    """Setup, loop, per-candidate walls and the first win, from the run's events."""
    ordered = sorted(events, key=lambda e: e.at)
    if not ordered:
        return
    start = ordered[0].at
    asked: dict[int, datetime] = {}
    outcomes: list[tuple[datetime, int, str]] = []
    for event in ordered:
        if event.candidate is None:
            continue
        asked.setdefault(event.candidate, event.at)
        if event.kind == "candidate":
            outcomes.append((event.at, event.candidate, event.message))
    if not asked:
        return
    first_ask = min(asked.values())
    figures.setup_s = (first_ask - start).total_seconds()
    figures.finished = len(outcomes)
    if outcomes:
        figures.loop_s = (outcomes[-1][0] - first_ask).total_seconds()
    times = [at for at, _, _ in outcomes]
    figures.gaps = [(b - a).total_seconds() for a, b in zip([first_ask, *times], times,
                                                             strict=False)]
    figures.candidate_walls = [(at - asked[n]).total_seconds() for at, n, _ in outcomes]
    wins = [at for at, _, message in outcomes if message.startswith("accepted")]
    if wins:
        figures.first_accept_s = (wins[0] - start).total_seconds()


def _stage_seconds(timings: dict[str, Any], names: Iterable[str]) -> float:
    return sum(float(timings[name]) for name in names if isinstance(timings.get(name), int | float))


def verdict_costs(figures: RunFigures, candidates: Iterable[dict[str, Any]]) -> None:
    """How long the judge took to reject a one-test break, against a full suite's run."""
    for candidate in candidates:
        verdict = candidate.get("verdict") or {}
        if candidate.get("status") in JUDGED:
            figures.judged += 1
        figures.accepted += candidate.get("status") == "accepted"
        timings = verdict.get("timings") or {}
        tests = verdict.get("tests") or {}
        test_stages = [name for name in timings if name.startswith("tests")]
        if candidate.get("status") == "rejected" and len(tests.get("newly_failing") or []) == 1:
            figures.break_tests_s.append(_stage_seconds(timings, test_stages))
            own = [name for name in timings if name not in SETUP_TIMINGS and name != "total"]
            figures.break_total_s.append(_stage_seconds(timings, own))
        elif not tests.get("newly_failing") and isinstance(timings.get("tests"), int | float):
            figures.full_suite_s.append(float(timings["tests"]))


def best_lineage(figures: RunFigures, base_commit: str, candidates: Sequence[dict[str, Any]]
                 ) -> None:
    """The best node's speedup over the base: its verdict's speedup times its parent's."""
    speedup: dict[str, float] = {base_commit: 1.0}
    path: dict[str, list[int]] = {base_commit: []}
    for candidate in sorted(candidates, key=lambda c: int(c.get("n") or 0)):
        parent = candidate.get("parent_commit") or base_commit
        if candidate.get("status") != "accepted" or parent not in speedup:
            continue
        total = speedup[parent] * float(candidate.get("speedup") or 1.0)
        for commit in {candidate.get("commit"), candidate.get("candidate_commit")} - {None}:
            speedup[str(commit)] = total
            path[str(commit)] = [*path[parent], int(candidate["n"])]
    best = max(speedup, key=lambda commit: speedup[commit])
    figures.best_speedup = speedup[best]
    figures.lineage = path[best]
    figures.best_at = path[best][-1] if path[best] else None


def spread(values: Sequence[float]) -> str:
    """Median with the interquartile range, or the range for fewer than four values."""
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) < 4:
        low, high = min(values), max(values)
    else:
        quartiles = statistics.quantiles(values, n=4)
        low, high = quartiles[0], quartiles[2]
    return f"{median:.1f} [{low:.1f}-{high:.1f}]"


def rate_spread(gaps: Sequence[float]) -> str:
    """Outcomes per hour from the median gap between outcomes, with the gaps' quartiles."""
    positive = [gap for gap in gaps if gap > 0]
    if not positive:
        return "-"
    if len(positive) < 4:
        low, high = min(positive), max(positive)
    else:
        quartiles = statistics.quantiles(positive, n=4)
        low, high = quartiles[0], quartiles[2]
    median = statistics.median(positive)
    return f"{3600 / median:.0f} [{3600 / high:.0f}-{3600 / low:.0f}]"
