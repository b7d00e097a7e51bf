"""The loop: propose → validate → evaluate → decide → record, until a stop condition fires.

Each stop condition is an exception of the small `StopRun` tree, so the loop reads straight
and every way out goes through the same bookkeeping. What the run has spent and found is
in its ledger (`Run.ledger`), the one place the caps are checked.
"""

from __future__ import annotations

from collections.abc import Callable

from selfcode.gate.judge import Judge
from selfcode.gate.verdict import Verdict
from selfcode.prompt.context import Attempt
from selfcode.run.context import Run
from selfcode.run.propose import Proposer


class StopRun(Exception):
    """Ends the run; the message says why."""


class IterationsDone(StopRun):
    pass


class BudgetExhausted(StopRun):
    pass


Recheck = Callable[[bytes, str], Verdict]


def attempt(n: int, rationale: str | None, status: str, reasons: list[str]) -> Attempt:
    """How a finished candidate is shown to the model: its rationale's first line."""
    return Attempt.of(n, rationale, status, reasons)


class Agent:
    def __init__(self, run: Run, *, judge: Judge, proposer: Proposer, recheck: Recheck,
                 start: int = 1, attempts: list[Attempt] | None = None) -> None:
        """`start` is the next candidate's number and `attempts` what the model has been
        shown so far: 1 and none, unless the run is resumed."""
        self.ctx, self.judge, self.proposer, self.recheck = run, judge, proposer, recheck
        self.start = start
        self.attempts = attempts if attempts is not None else []

    def run(self) -> str:
        """Iterate until a stop condition; returns the reason the run stopped."""
        iterations = self.ctx.settings.agent.iterations
        try:
            self._check_budget()
            for n in range(self.start, iterations + 1):
                self._sentinel(n)
                self.step(n)
                self._check_budget()
            raise IterationsDone(f"all {iterations} iterations done")
        except StopRun as stop:
            return str(stop)

    def _check_budget(self) -> None:
        reason = self.ctx.ledger.exceeded()
        if reason:
            raise BudgetExhausted(reason)

    def _sentinel(self, n: int) -> None:
        """Every so often, judge the unchanged code against itself: noise must not pass."""
        every = self.ctx.settings.gate.sentinel_every
        if not every or n == 1 or (n - 1) % every:
            return
        judged_faster = self.judge.sentinel()
        self.ctx.ledger.sentinel(judged_faster)
        if judged_faster:
            self.ctx.history.add_event(self.ctx.run_id, "aa-false-accept",
                                       "the A/A sentinel was judged faster", candidate_n=n)
            self.ctx.observer.event("warning", "An A/A sentinel (the unchanged code against "
                                    "itself) was judged faster: the machine is noisier than "
                                    "the calibration said.")

    def step(self, n: int) -> None:
        ctx = self.ctx
        parent = ctx.worktree.head()
        ctx.history.add_candidate(ctx.run_id, n, parent)
        ctx.ledger.begin()
        ctx.observer.event("phase", "asking the model", n=n)
        proposal = self.proposer.propose(n, self.attempts, self._check_budget)
        if proposal.error:
            ctx.update(n, rationale=proposal.rationale)  # kept: what the model meant
            self._finish(n, "malformed", proposal.rationale, [proposal.error])
            return
        ctx.update(n, rationale=proposal.rationale, diff=proposal.diff)
        verdict = self.judge.judge(proposal.diff)
        if verdict.accepted:
            ctx.observer.event("phase", "re-checking in a fresh sandbox", n=n)
            verdict = self._recheck(proposal.diff)
        ctx.update(n, verdict=verdict.model_dump())
        if not verdict.accepted:
            ctx.archive.keep(n, parent, proposal.rationale, proposal.diff, verdict, "rejected")
            self._finish(n, "rejected", proposal.rationale, verdict.reasons, verdict)
            return
        ctx.observer.event("phase", "committing", n=n)
        sha = ctx.archive.commit_accepted(ctx.worktree, n, proposal.rationale, proposal.diff,
                                          verdict)
        ctx.update(n, commit_sha=sha)
        self.judge.set_baseline(ctx.worktree.tracked_tar())
        self._finish(n, "accepted", proposal.rationale, [], verdict, commit=sha)

    def _recheck(self, diff: str) -> Verdict:
        verdict = self.recheck(self.ctx.worktree.tracked_tar(), diff)
        if verdict.accepted:
            return verdict
        if verdict.canary is not None and not verdict.canary.passed:
            # The gate passed it twice; it is the promotion stage that failed (gate/canary.py).
            verdict.reasons.insert(0, "passed the gate, but its own judge failed the canary")
        else:
            verdict.reasons.insert(0, "accepted at first, but not when re-checked in a fresh "
                                      "sandbox")
        return verdict

    def _finish(self, n: int, status: str, rationale: str, reasons: list[str],
                verdict: Verdict | None = None, commit: str | None = None) -> None:
        self.ctx.update(n, status=status)
        self.ctx.ledger.settle(status, commit=commit,
                               speedup=verdict.speedup() if commit and verdict else None)
        self.attempts.append(attempt(n, rationale, status, reasons))
        self.ctx.observer.event("candidate", status, n=n, reasons=reasons,
                                verdict=verdict.model_dump() if verdict else None)
