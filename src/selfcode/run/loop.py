"""The loop: up to `jobs` candidates in flight, each built on a parent drawn from the archive,
recorded in the order they finish, until a stop condition fires.

Each candidate runs on a worker thread (run/candidate.py: propose → dedupe → judge →
re-check); everything that writes git and settles the ledger happens here, on the loop's own
thread, one outcome at a time, so that the history, the refs, the notes and the commit order
are consistent whatever finishes first. Each stop condition is an exception of the small
`StopRun` tree: once one fires no candidate is started, the ones in flight are finished and
recorded, and the run ends with its reason. With `jobs = 1` this is the sequential loop.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

from selfcode.gate.verdict import Verdict
from selfcode.llm import LLM
from selfcode.prompt.context import Attempt
from selfcode.run.candidate import Outcome, Pipeline
from selfcode.run.context import Run
from selfcode.run.nodes import Nodes


class StopRun(Exception):
    """Ends the run; the message says why."""


class IterationsDone(StopRun):
    pass


class BudgetExhausted(StopRun):
    pass


class Models(Protocol):
    """Chooses the model of each candidate and learns from its outcome (llm/pool.py)."""

    def choose(self) -> LLM: ...

    def settle(self, model: str, accepted: bool) -> None: ...


def budget_stop(run: Run) -> BudgetExhausted | None:
    """The stop condition of the first cap the run's ledger has reached, if any."""
    reason = run.ledger.exceeded()
    return BudgetExhausted(reason) if reason else None


def check_budget(run: Run) -> None:
    """Between a candidate's turns: stop there once a cap is reached."""
    stop = budget_stop(run)
    if stop is not None:
        raise stop


def attempt(n: int, rationale: str | None, status: str, reasons: list[str]) -> Attempt:
    """How a finished candidate is shown to the model: its rationale's first line."""
    return Attempt.of(n, rationale, status, reasons)


class Agent:
    def __init__(self, run: Run, *, pipeline: Pipeline, jobs: int = 1, start: int = 1,
                 attempts: list[Attempt] | None = None, models: Models | None = None) -> None:
        """`start` is the next candidate's number and `attempts` what the model has been
        shown so far: 1 and none, unless the run is resumed."""
        self.ctx, self.pipeline, self.jobs, self.models = run, pipeline, max(1, jobs), models
        self.start = start
        self.attempts = attempts if attempts is not None else []
        self.nodes = Nodes(run, pipeline.lineage)
        self._results: queue.Queue[Outcome] = queue.Queue()
        self._in_flight: dict[int, LLM | None] = {}

    def run(self) -> str:
        """Iterate until a stop condition; returns the reason the run stopped."""
        iterations = self.ctx.settings.agent.iterations
        stop: StopRun | None = budget_stop(self.ctx)
        if stop is not None:
            return str(stop)
        n = self.start
        while True:
            while stop is None and len(self._in_flight) < self.jobs and n <= iterations:
                self._sentinel(n)
                self._dispatch(n)
                n += 1
            if not self._in_flight:
                break
            stop = self._record(self._next()) or stop
            if stop is None:
                stop = budget_stop(self.ctx)
        self.pipeline.pool.settle()
        if stop is None:
            self._combine(n)
        return str(stop or IterationsDone(f"all {iterations} iterations done"))

    def _combine(self, n: int) -> None:
        """Independent wins on other lineages, each brought onto the best node when its
        patch applies there, and judged like any candidate (numbered after the model's)."""
        for best, proposal in self.nodes.combinations(self.ctx.ledger.exceeded):
            self.ctx.history.add_candidate(self.ctx.run_id, n, best.sha)
            self.ctx.ledger.begin()
            self._in_flight[n] = None
            self.ctx.observer.event("phase", "combining another lineage's change with the "
                                    f"best so far (candidate {best.n})", n=n)
            stop = self._record(self.pipeline.judge_only(n, best, proposal))
            if stop is not None:
                return
            n += 1

    def _sentinel(self, n: int) -> None:
        """Every so often, judge the unchanged code against itself: noise must not pass."""
        every = self.ctx.settings.gate.sentinel_every
        if not every or n == 1 or (n - 1) % every:
            return
        lineage, pool = self.pipeline.lineage, self.pipeline.pool
        with pool.lend(lineage.baseline(lineage.best().n)) as judge:
            judged_faster = judge.sentinel()
        self.ctx.ledger.sentinel(judged_faster)
        if judged_faster:
            self.ctx.history.add_event(self.ctx.run_id, "aa-false-accept",
                                       "the A/A sentinel was judged faster", candidate_n=n)
            self.ctx.observer.event("warning", "An A/A sentinel (the unchanged code against "
                                    "itself) was judged faster: the machine is noisier than "
                                    "the calibration said.")

    def _dispatch(self, n: int) -> None:
        """Start candidate `n` on its own thread, built on a parent the archive chooses."""
        ctx = self.ctx
        parent = self.pipeline.lineage.choose()
        ctx.history.add_candidate(ctx.run_id, n, parent.sha)
        ctx.ledger.begin()
        llm = self.models.choose() if self.models is not None else None
        self._in_flight[n] = llm
        attempts = list(self.attempts)  # what has finished so far
        threading.Thread(target=lambda: self._results.put(
            self.pipeline.work(n, parent, attempts, llm)), name=f"selfcode-candidate-{n}",
            daemon=True).start()  # daemon: Ctrl-C must not wait for a model's reply

    def _next(self) -> Outcome:
        while True:  # a timed wait, so that Ctrl-C reaches this thread at once
            try:
                return self._results.get(timeout=0.2)
            except queue.Empty:
                continue

    def _record(self, outcome: Outcome) -> StopRun | None:
        """Record one finished candidate; a stop condition it met is returned, and an
        infrastructure error raised, as the sequential loop did."""
        llm = self._in_flight.pop(outcome.n)
        if isinstance(outcome.failure, StopRun):
            return outcome.failure
        if outcome.failure is not None:
            raise outcome.failure
        ctx, n, proposal, verdict = self.ctx, outcome.n, outcome.proposal, outcome.verdict
        if outcome.infrastructure is not None:
            ctx.history.add_event(ctx.run_id, "infrastructure", outcome.infrastructure, n)
            ctx.archive.keep(n, outcome.parent.sha, proposal.rationale, proposal.diff, None,
                             "infrastructure")
            self._finish(n, "infrastructure", proposal.rationale,
                         [f"infrastructure failure: {outcome.infrastructure}"])
            return None
        if proposal.error or verdict is None:
            self._finish(n, "malformed", proposal.rationale, [proposal.error or "no edit"])
            return None
        ctx.update(n, verdict=verdict.model_dump())
        self.pipeline.verdicts[n] = verdict
        if self.models is not None and llm is not None:
            self.models.settle(llm.model, verdict.accepted)
        if verdict.baseline_drift:
            self.nodes.retire(outcome.parent.n, n)
        if not verdict.accepted:
            ctx.archive.keep(n, outcome.parent.sha, proposal.rationale, proposal.diff, verdict,
                             "rejected")
            self._finish(n, "rejected", proposal.rationale, verdict.reasons, verdict)
            return None
        sha = self.nodes.commit(outcome, verdict)
        self._finish(n, "accepted", proposal.rationale, [], verdict, commit=sha)
        return None

    def _finish(self, n: int, status: str, rationale: str, reasons: list[str],
                verdict: Verdict | None = None, commit: str | None = None) -> None:
        self.ctx.update(n, status=status)
        self.ctx.ledger.settle(status, commit=commit,
                               speedup=verdict.speedup() if commit and verdict else None)
        self.attempts.append(Attempt.from_verdict(n, rationale, status, reasons, verdict))
        self.ctx.observer.event("candidate", status, n=n, reasons=reasons,
                                verdict=verdict.model_dump() if verdict else None)
