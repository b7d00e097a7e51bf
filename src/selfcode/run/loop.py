"""The loop: propose → validate → evaluate → decide → record, until a stop condition fires.

Each stop condition is an exception of the small `StopRun` tree, so the loop reads straight
and every way out goes through the same bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from selfcode.config import Settings
from selfcode.gate.judge import Judge
from selfcode.gate.verdict import Verdict
from selfcode.git.archive import Archive
from selfcode.git.worktree import RunWorktree
from selfcode.history.db import History
from selfcode.llm import LLM, Reply
from selfcode.prompt.context import Attempt
from selfcode.run.events import Observer
from selfcode.run.ledger import Budget
from selfcode.run.propose import Proposer


class StopRun(Exception):
    """Ends the run; the message says why."""


class IterationsDone(StopRun):
    pass


class BudgetExhausted(StopRun):
    pass




@dataclass
class Tally:
    candidates: int = 0
    accepted: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    unpriced: bool = False
    commits: list[str] = field(default_factory=list)
    best_speedup: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    aa_sentinels: int = 0
    aa_false_accepts: int = 0


Recheck = Callable[[bytes, str], Verdict]


class Agent:
    def __init__(self, *, settings: Settings, llm: LLM, judge: Judge, worktree: RunWorktree,
                 history: History, run_id: str, observer: Observer, recheck: Recheck,
                 entry_points: list[str], archive: Archive, start: int = 1,
                 tally: Tally | None = None) -> None:
        self.settings, self.llm, self.judge = settings, llm, judge
        self.worktree, self.history, self.run_id = worktree, history, run_id
        self.observer, self.recheck, self.entry_points = observer, recheck, entry_points
        self.archive, self.start = archive, start
        self.tally = tally or Tally()
        self.budget = Budget.from_config(settings.agent, spent_usd=self.tally.cost_usd,
                                         tokens=self.tally.tokens)
        self.proposer = Proposer(
            settings=settings, llm=llm, worktree=worktree, history=history, run_id=run_id,
            observer=observer, entry_points=entry_points, judge=judge,
            on_reply=self._charge)

    def run(self) -> str:
        """Iterate until a stop condition; returns the reason the run stopped."""
        try:
            self._check_budget()
            for n in range(self.start, self.settings.agent.iterations + 1):
                self._sentinel(n)
                self.step(n)
                self._check_budget()
            raise IterationsDone(f"all {self.settings.agent.iterations} iterations done")
        except StopRun as stop:
            return str(stop)

    def _check_budget(self) -> None:
        reason = self.budget.exceeded()
        if reason:
            raise BudgetExhausted(reason)

    def _charge(self, reply: Reply) -> None:
        self.budget.charge(reply)
        self.tally.cost_usd += reply.cost_usd
        self.tally.tokens += reply.usage.prompt_tokens + reply.usage.completion_tokens
        if not reply.priced and not self.tally.unpriced:
            warning = self.budget.unenforced()
            if warning:
                self.observer.event("warning", warning)
        self.tally.unpriced |= not reply.priced
        self.observer.event("spend", f"${self.tally.cost_usd:.4f}", cost=self.tally.cost_usd,
                            tokens=self.tally.tokens)

    def _sentinel(self, n: int) -> None:
        """Every so often, judge the unchanged code against itself: noise must not pass."""
        every = self.settings.gate.sentinel_every
        if not every or n == 1 or (n - 1) % every:
            return
        self.tally.aa_sentinels += 1
        if self.judge.sentinel():
            self.tally.aa_false_accepts += 1
            self.history.add_event(self.run_id, "aa-false-accept",
                                   "the A/A sentinel was judged faster", candidate_n=n)
            self.observer.event("warning", "An A/A sentinel (the unchanged code against "
                                "itself) was judged faster: the machine is noisier than the "
                                "calibration said.")

    def step(self, n: int) -> None:
        parent = self.worktree.head()
        self.history.add_candidate(self.run_id, n, parent)
        self.tally.candidates += 1
        self.observer.event("phase", "asking the model", n=n)
        proposal = self.proposer.propose(n, self.tally.attempts, self._check_budget)
        if proposal.error:
            self._finish(n, "malformed", proposal.rationale, [proposal.error])
            return
        self.history.update_candidate(self.run_id, n, rationale=proposal.rationale,
                                      diff=proposal.diff)
        verdict = self.judge.judge(proposal.diff)
        if verdict.accepted:
            self.observer.event("phase", "re-checking in a fresh sandbox", n=n)
            verdict = self._recheck(proposal.diff)
        self.history.update_candidate(self.run_id, n, verdict=verdict.model_dump())
        if not verdict.accepted:
            self.archive.keep(n, parent, proposal.rationale, proposal.diff, verdict, "rejected")
            self._finish(n, "rejected", proposal.rationale, verdict.reasons, verdict)
            return
        self.observer.event("phase", "committing", n=n)
        sha = self.archive.commit_accepted(self.worktree, n, proposal.rationale, proposal.diff,
                                           verdict)
        self.history.update_candidate(self.run_id, n, commit_sha=sha)
        self.judge.set_baseline(self.worktree.tracked_tar())
        self.tally.accepted += 1
        self.tally.commits.append(sha)
        speedup = verdict.speedup()
        if speedup and (self.tally.best_speedup or 0) < speedup:
            self.tally.best_speedup = speedup
        self._finish(n, "accepted", proposal.rationale, [], verdict)

    def _recheck(self, diff: str) -> Verdict:
        verdict = self.recheck(self.worktree.tracked_tar(), diff)
        if not verdict.accepted:
            verdict.reasons.insert(0, "accepted at first, but not when re-checked in a fresh "
                                      "sandbox")
        return verdict

    def _finish(self, n: int, status: str, rationale: str, reasons: list[str],
                verdict: Verdict | None = None) -> None:
        self.history.update_candidate(self.run_id, n, status=status)
        summary = rationale.strip().splitlines()[0][:200] if rationale.strip() else "(no rationale)"
        self.tally.attempts.append(Attempt(n=n, summary=summary, status=status, reasons=reasons))
        self.observer.event("candidate", status, n=n, reasons=reasons,
                            verdict=verdict.model_dump() if verdict else None)
