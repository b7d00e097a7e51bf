"""Judging on this machine: a judge lent by the pool of warm sandboxes, and an accepted
candidate re-checked in a fresh sandbox (`Recheck`, opened by the run's workflow)."""

from __future__ import annotations

from collections.abc import Callable

from selfcode.executors.base import Judged, rechecked
from selfcode.gate.verdict import Goal, Verdict
from selfcode.run.events import Observer
from selfcode.sandbox.results import TestsRun
from selfcode.search.pool import Baseline, JudgePool

Recheck = Callable[[Baseline, str], tuple[Verdict, TestsRun | None]]


class LocalExecutor:
    def __init__(self, pool: JudgePool, recheck: Recheck, observer: Observer) -> None:
        self.pool, self.recheck, self.observer = pool, recheck, observer

    @property
    def goal(self) -> Goal:
        return self.pool.goal

    def judge(self, n: int, baseline: Baseline, diff: str) -> Judged:
        with self.pool.lend(baseline) as judge:
            verdict = judge.judge(diff)
        if not verdict.accepted:
            return Judged(verdict)
        self.observer.event("phase", "re-checking in a fresh sandbox", n=n)
        verdict, tests = self.recheck(baseline, diff)
        return Judged(rechecked(verdict), tests if verdict.accepted else None)

    def close(self) -> None:
        pass
