"""The archive's nodes as the loop's thread keeps them: an accepted candidate committed (on
the branch when built on its head, beside it otherwise) and added to the lineage; a node that
measured otherwise as a baseline retired; and, at the end, the other lineages' changes that
may be brought onto the best node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from selfcode.gate.verdict import Verdict
from selfcode.run.candidate import Outcome
from selfcode.run.context import Run
from selfcode.run.propose import Proposal
from selfcode.search.combine import merges
from selfcode.search.lineage import Lineage, node_figures
from selfcode.search.parents import Node


class Nodes:
    def __init__(self, run: Run, lineage: Lineage) -> None:
        self.ctx, self.lineage = run, lineage

    def commit(self, outcome: Outcome, verdict: Verdict) -> str:
        """An accepted candidate becomes a node: a commit on its parent, on the run's branch
        when its parent is the branch's head; the branch follows the best node."""
        ctx, n, parent = self.ctx, outcome.n, outcome.parent
        ctx.observer.event("phase", "committing", n=n)
        rationale, diff = outcome.proposal.rationale, outcome.proposal.diff
        worktree = ctx.worktree
        if parent.sha == worktree.head():
            sha = ctx.archive.commit_accepted(worktree, n, rationale, diff, verdict)
        else:
            sha = ctx.archive.commit_beside(n, parent.sha, rationale, diff, verdict)
        # Its re-check's full suite is what its children are judged against, kept so that a
        # resumed run never tests its code again as a baseline.
        ctx.update(n, commit_sha=sha,
                   node_tests=outcome.tests.model_dump() if outcome.tests else None)
        lineage = self.lineage
        lineage.add(Node(n=n, sha=sha, parent=parent.n,
                         score=parent.score * (verdict.speedup() or 1.0)),
                    ctx.store.tracked_tar(sha), outcome.tests, node_figures(verdict))
        if lineage.best().n == n and worktree.head() != sha:
            worktree.move_to(sha)  # a better lineage than the branch's: the branch follows
            ctx.observer.event("note", f"Candidate {n}, built on "
                               + (f"candidate {parent.n}" if parent.n else "the baseline")
                               + ", is the best so far; the run's branch now ends there.")
        return sha

    def retire(self, parent: int, n: int) -> None:
        """A node measured slower as the baseline than when it was accepted (gate/nodes.py):
        it and what was built on it are parents no more, and the branch leaves them."""
        lineage, worktree = self.lineage, self.ctx.worktree
        retired = lineage.retire(parent)
        if not retired:
            return
        names = ", ".join(map(str, retired))
        self.ctx.history.add_event(self.ctx.run_id, "node-retired",
                                   f"candidates {names} retired as parents", candidate_n=n)
        self.ctx.observer.event("warning", f"Candidate {parent} measured slower as the "
                                "baseline than when it was accepted; it and the candidates "
                                f"built on it ({names}) are no longer parents. Review it.")
        head = worktree.head()
        if any(lineage.node(k).sha == head for k in retired):
            worktree.move_to(lineage.best().sha)  # the best node no retirement touched

    def combinations(self, exceeded: Callable[[], str | None]) -> Iterator[tuple[Node, Proposal]]:
        """Each other lineage's change since it left the best node's, as a candidate built on
        the best node (counted as its child) when it applies there; none once a cap is hit."""
        lineage, store = self.lineage, self.ctx.store
        for merge in merges(lineage.nodes(), lineage.best().n):
            if exceeded():
                return
            best, tip, fork = lineage.best(), lineage.node(merge.tip), lineage.node(merge.fork)
            diff = store.diff(fork.sha, tip.sha)
            if not store.applies(best.sha, diff):
                continue
            chain = ", ".join(str(c) for c in lineage.lineage(tip.n)
                              if c not in lineage.lineage(fork.n))
            rationale = (f"Combination: the change of candidate(s) {chain} (built on "
                         + (f"candidate {fork.n}" if fork.n else "the baseline")
                         + f"), brought onto the best so far, candidate {best.n}.")
            yield lineage.choose_node(best.n), Proposal(rationale=rationale, diff=diff)
