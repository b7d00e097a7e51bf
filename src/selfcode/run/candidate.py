"""One candidate's way from a parent to a verdict, run on a worker thread of the loop.

Propose (the model, with repairs) → skip it if its tree was judged before (search/dedupe.py) →
judge it against its parent where the executor judges (executors/: a judge lent by the pool,
or a node of a Ray cluster), an accepted one re-checked in a fresh sandbox. Nothing here
writes git or settles the ledger: the loop's own thread records each outcome, in the order
they finish, so the history, refs and notes stay consistent whatever finishes first. What is
written here (the rationale and diff, the exchanges) is written to the history before the
candidate goes on, as in a run of one candidate at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from selfcode.errors import EditError, InfrastructureFailure
from selfcode.executors.base import Executor
from selfcode.gate.verdict import PatchSummary, Verdict
from selfcode.llm import LLM
from selfcode.prompt.context import Attempt
from selfcode.run.context import Run
from selfcode.run.propose import Proposal, Proposer
from selfcode.sandbox.results import TestsRun
from selfcode.search.dedupe import Seen, baseline_fingerprint, fingerprint, touched_paths
from selfcode.search.lineage import Lineage
from selfcode.search.parents import Node
from selfcode.search.pool import JudgePool


@dataclass
class Outcome:
    """What a worker hands back to the loop for candidate `n`."""

    n: int
    parent: Node
    proposal: Proposal = field(default_factory=Proposal)
    verdict: Verdict | None = None
    tests: TestsRun | None = None  # an accepted candidate's full suite, from its re-check
    failure: BaseException | None = None  # a stop condition or an error that ends the run
    infrastructure: str | None = None  # what failed under it (neither accepted nor rejected)
    fingerprint: str | None = None  # its normalised tree's, claimed for it (search/dedupe.py)


@dataclass
class Pipeline:
    """The parts a candidate passes through; shared by every worker."""

    run: Run
    proposer: Proposer
    pool: JudgePool  # the run's own judges: the baseline, its profile, the sentinel
    executor: Executor  # where candidates are judged (executors/)
    lineage: Lineage
    seen: Seen
    between_turns: Callable[[], None]
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    """Finished candidates' verdicts, by number (written by the loop's thread)."""

    def work(self, n: int, parent: Node, attempts: list[Attempt], llm: LLM | None) -> Outcome:
        outcome = Outcome(n, parent)
        try:
            self._work(outcome, attempts, llm)
        except BaseException as exc:  # handed to the loop's thread, which decides
            outcome.failure = exc
        return outcome

    def _work(self, outcome: Outcome, attempts: list[Attempt], llm: LLM | None) -> None:
        ctx, n, parent = self.run, outcome.n, outcome.parent
        ctx.observer.event("phase", "asking the model", n=n)
        proposal = outcome.proposal = self.proposer.propose(
            n, attempts, self.between_turns, parent=self.lineage.parent_view(parent.n), llm=llm)
        if proposal.error:
            ctx.update(n, rationale=proposal.rationale)  # kept: what the model meant
            return
        ctx.update(n, rationale=proposal.rationale, diff=proposal.diff)
        self._judge(outcome)

    def judge_only(self, n: int, parent: Node, proposal: Proposal) -> Outcome:
        """A candidate no model proposed (a combination of lineages), judged like any."""
        outcome = Outcome(n, parent, proposal)
        try:
            self.run.update(n, rationale=proposal.rationale, diff=proposal.diff)
            self._judge(outcome)
        except BaseException as exc:
            outcome.failure = exc
        return outcome

    def _judge(self, outcome: Outcome) -> None:
        n, parent, diff = outcome.n, outcome.parent, outcome.proposal.diff
        repeated = self._repeated(outcome, diff)
        if repeated is not None:
            outcome.verdict = repeated
            return
        try:
            judged = self.executor.judge(n, self.lineage.baseline(parent.n), diff)
        except InfrastructureFailure as exc:
            outcome.infrastructure = str(exc)
            if outcome.fingerprint is not None:
                self.seen.release(outcome.fingerprint, n)  # never judged: not a repeat
            return
        outcome.verdict, outcome.tests = judged.verdict, judged.tests

    def _repeated(self, outcome: Outcome, diff: str) -> Verdict | None:
        """A verdict without judging when the candidate's tree, normalised, was seen before:
        its parent's own (nothing changed but comments or layout) or an earlier candidate's."""
        n, parent = outcome.n, outcome.parent
        view = self.lineage.parent_view(parent.n)
        try:
            touched = touched_paths(diff)
            texts = {p: _read(view.path / p) if p in view.files else None for p in touched}
            fp = fingerprint(parent.sha, texts, diff)
        except EditError:
            return None  # the judge will say why it does not apply
        same = 0 if fp == baseline_fingerprint(parent.sha) else self.seen.claim(fp, n)
        if same is None:
            outcome.fingerprint = fp
            return None
        what = "its parent's code" if same == 0 else f"candidate {same}'s code"
        reasons = [f"a repeat: normalised (comments and layout ignored) it is {what}, which "
                   "was judged already; try something different"]
        earlier = self.verdicts.get(same)
        if earlier is not None:
            reasons += [f"candidate {same} was {earlier.status}", *earlier.reasons]
        return Verdict(accepted=False, status="rejected", goal=self.pool.goal,
                       reasons=reasons, patch=PatchSummary(files=touched),
                       timings={"total": 0.0}, sandbox="none")

def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
