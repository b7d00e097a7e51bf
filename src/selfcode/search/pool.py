"""Warm sandboxes for candidates in flight: one judge per sandbox, lent one candidate at a time.

The first judge is the run's own (its baseline tested `flaky_runs` times and calibrated); the
others are its forks, opened when more candidates are in flight than judges are free, up to
`--jobs`. A judge keeps the tree it last judged against loaded, and is lent first to a
candidate of the same parent: loading another parent costs a seal and an install, never a
test run (`Judge.adopt_baseline`: each node's tests are the ones its re-check ran).

Every judge's `Trees` shares one `TimingSlot`: CPU-time measurements take turns, so that a
time verdict never sees another candidate's load; instruction counts run side by side.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from selfcode.gate.judge import Judge
from selfcode.gate.verdict import Goal
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.results import TestsRun

MAX_DEFAULT_JOBS = 4


def default_jobs(backend: str, replaying: bool, cores: int | None = None) -> int:
    """What the machine can measure honestly: the local backend has no isolation between
    candidates (their processes share the host), and a replay is a recorded sequence; with
    Docker, one candidate per core up to four."""
    if backend != "docker" or replaying:
        return 1
    return max(1, min(MAX_DEFAULT_JOBS, cores if cores is not None else os.cpu_count() or 1))


@dataclass(frozen=True)
class Baseline:
    """What a judge needs to judge against a node: its tree and its full suite's run."""

    key: str
    tar: bytes
    tests: TestsRun | None  # None: not known (a run from before m005); run when lent
    figures: Mapping[str, Sequence[float]] | None = None
    """A node's benchmark figures when it was accepted: it must measure so as the baseline."""


class JudgePool:
    """Up to `size` judges; `lend(baseline)` gives one with that baseline loaded."""

    def __init__(self, first: Judge, size: int, open_sandbox: Callable[[], Sandbox],
                 first_key: str) -> None:
        self.size = max(1, size)
        self._open = open_sandbox
        self._first = first
        self._idle: list[tuple[Judge, str]] = [(first, first_key)]
        self._count = 1
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._ready.set()
        self._failure: BaseException | None = None

    def confirm_in_background(self, baseline: Baseline, runs: int,
                              then: Callable[[], None]) -> None:
        """The baseline's remaining test runs, on the first judge, while the first model
        requests are out; no candidate is lent a judge before they are in (they settle the
        quarantine every judge copies). A baseline they refuse fails every lend."""
        self._ready.clear()

        def confirm() -> None:
            try:
                with self.lend(baseline, early=True) as judge:
                    judge.confirm_baseline(runs)
                then()
            except BaseException as exc:  # handed to the candidates waiting for a judge
                self._failure = exc
            finally:
                self._ready.set()

        threading.Thread(target=confirm, name="selfcode-baseline-runs", daemon=True).start()

    @property
    def goal(self) -> Goal:
        return self._first.goal

    @property
    def first(self) -> Judge:
        """The run's own judge (its baseline tested and calibrated before any candidate)."""
        return self._first

    def settle(self) -> None:
        """Wait for the baseline's remaining runs (a run ends only once they are in: what
        they found is reported, and a baseline they refuse fails the run)."""
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    @contextlib.contextmanager
    def lend(self, baseline: Baseline, early: bool = False) -> Iterator[Judge]:
        """A judge whose baseline is `baseline`, for one candidate; back to the pool after.
        Only the baseline's own setup (`early`) is lent one before its runs are in."""
        if not early:
            self.settle()
        judge, key = self._take(baseline.key)
        try:
            if key != baseline.key:
                if baseline.tests is None:
                    judge.set_baseline(baseline.tar)
                else:
                    judge.adopt_baseline(baseline.tar, baseline.tests, baseline.figures)
                key = baseline.key
            yield judge
        finally:
            with self._cond:
                self._idle.append((judge, key))
                self._cond.notify()

    def _take(self, key: str) -> tuple[Judge, str]:
        with self._cond:
            while True:
                for i, (_, loaded) in enumerate(self._idle):
                    if loaded == key:
                        return self._idle.pop(i)
                if self._count < self.size:
                    self._count += 1
                    break
                if self._idle:
                    return self._idle.pop(0)
                self._cond.wait()
        try:  # outside the lock: opening a sandbox takes seconds
            twin = self._first.fork(self._open())
            twin.promote = self._first.promote  # promotion stays the re-check's
            return twin, ""
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
