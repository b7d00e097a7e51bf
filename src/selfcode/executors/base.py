"""The executor seam: judge a candidate against a baseline, wherever that happens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from selfcode.gate.verdict import Goal, Verdict
from selfcode.sandbox.results import TestsRun
from selfcode.search.pool import Baseline


@dataclass
class Judged:
    """A candidate's verdict (re-checked when accepted), its full-suite run when accepted (its
    node's baseline from then on), and where it was judged."""

    verdict: Verdict
    tests: TestsRun | None = None
    where: str = "local"


class Executor(Protocol):
    """Judges candidates; thread-safe (the loop's workers call it at once).

    `judge` raises `InfrastructureFailure` when the machinery failed the candidate (then it
    is neither accepted nor rejected) and any other `SelfcodeError` to stop the run."""

    @property
    def goal(self) -> Goal: ...

    def judge(self, n: int, baseline: Baseline, diff: str) -> Judged: ...

    def close(self) -> None: ...


def rechecked(verdict: Verdict) -> Verdict:
    """A verdict the re-check in a fresh sandbox rejected, saying so first."""
    if verdict.accepted:
        return verdict
    if verdict.canary is not None and not verdict.canary.passed:
        # The gate passed it twice; it is the promotion stage that failed (gate/canary.py).
        verdict.reasons.insert(0, "passed the gate, but its own judge failed the canary")
    else:
        verdict.reasons.insert(0, "accepted at first, but not when re-checked in a fresh "
                                  "sandbox")
    return verdict
