"""The loop: propose → validate → evaluate → decide → record, until a stop condition fires.

Each stop condition is an exception of the small `StopRun` tree, so the loop reads straight
and every way out goes through the same bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from selfcode.archive import Archive
from selfcode.config import Settings
from selfcode.context import Attempt, editable_sources, repo_map
from selfcode.edits import apply_edits, parse_reply, read_tree, render_diff, touched_paths
from selfcode.errors import EditError
from selfcode.evaluate import Judge
from selfcode.gate import Verdict, protected_violations
from selfcode.gitstore import RunWorktree
from selfcode.history import History
from selfcode.llm import LLM, Message, Reply
from selfcode.prompts import render


class StopRun(Exception):
    """Ends the run; the message says why."""


class IterationsDone(StopRun):
    pass


class BudgetExhausted(StopRun):
    pass


class Observer(Protocol):
    def event(self, kind: str, message: str, **data: object) -> None: ...


@dataclass
class Proposal:
    rationale: str = ""
    diff: str = ""
    error: str | None = None


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

    def run(self) -> str:
        """Iterate until a stop condition; returns the reason the run stopped."""
        try:
            self._check_budget()
            for n in range(self.start, self.settings.agent.iterations + 1):
                self.step(n)
                self._check_budget()
            raise IterationsDone(f"all {self.settings.agent.iterations} iterations done")
        except StopRun as stop:
            return str(stop)

    def _check_budget(self) -> None:
        budget = self.settings.agent.budget_usd
        if budget is not None and self.tally.cost_usd >= budget:
            raise BudgetExhausted(f"budget of ${budget:.2f} reached")

    def step(self, n: int) -> None:
        parent = self.worktree.head()
        self.history.add_candidate(self.run_id, n, parent)
        self.tally.candidates += 1
        self.observer.event("phase", "asking the model", n=n)
        proposal = self.propose(n)
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

    def _messages(self, n: int) -> list[Message]:
        root = self.worktree.path
        files = self.worktree.list_files()
        protected = self.settings.gate.protected
        sources = editable_sources(root, files, self.entry_points, protected,
                                   self.settings.agent.max_context_chars)
        user = render(
            "propose", goal=self.settings.agent.goal, judge_goal=self.judge.goal,
            min_improvement_pct=round(self.settings.gate.min_improvement * 100, 1),
            alpha=self.settings.gate.alpha, benchmarks=sorted(self.judge.benchmarks),
            repo_map=repo_map(root, files), files=sources,
            readonly=protected_violations(sources, protected), attempts=self.tally.attempts,
        )
        return [{"role": "system", "content": render("system")},
                {"role": "user", "content": user}]

    def propose(self, n: int) -> Proposal:
        """Ask, parse and apply on the host side; format errors go back to the model."""
        messages = self._messages(n)
        error = "no reply"
        rationale = ""
        for turn in range(self.settings.agent.repair_turns + 1):
            reply = self._ask(n, turn, messages)
            try:
                parsed = parse_reply(reply.text)
                rationale = parsed.rationale
                paths = touched_paths(parsed.edits)
                # Read from disk with the policy: a symlinked path is refused, not followed.
                old = read_tree(self.worktree.path, paths)
                new = apply_edits(old, parsed.edits)
                diff = render_diff(old, new)
                if not diff.strip():
                    raise EditError("Your edits change nothing; propose a real change.")
                return Proposal(rationale=rationale, diff=diff)
            except EditError as exc:
                error = str(exc)
                self.history.add_event(self.run_id, "edit-error", error, candidate_n=n)
                self.observer.event("repair", error, n=n, turn=turn)
                messages = [*messages, {"role": "assistant", "content": reply.text},
                            {"role": "user", "content": render("repair", error=error)}]
        return Proposal(rationale=rationale, error=f"no usable edit after repairs: {error}")

    def _ask(self, n: int, turn: int, messages: list[Message]) -> Reply:
        started = time.perf_counter()
        try:
            reply = self.llm.complete(messages)
        except Exception as exc:
            self.history.add_exchange(self.run_id, n, turn, self.llm.model, messages, "", 0, 0,
                                      0.0, time.perf_counter() - started, error=str(exc))
            raise
        self.history.add_exchange(self.run_id, n, turn, reply.model, messages, reply.text,
                                  reply.usage.prompt_tokens, reply.usage.completion_tokens,
                                  reply.cost_usd, reply.latency_s)
        self.tally.cost_usd += reply.cost_usd
        self.tally.tokens += reply.usage.prompt_tokens + reply.usage.completion_tokens
        self.tally.unpriced |= not reply.priced
        self.observer.event("spend", f"${self.tally.cost_usd:.4f}", cost=self.tally.cost_usd,
                            tokens=self.tally.tokens)
        return reply
