"""The run's tree of candidates: the baseline at the root, each candidate under the node it
was built on (the archive's search builds on any accepted candidate, run/loop.py).

Pure: derived from what the history holds of each candidate, its `parent_commit` against the
baseline's commit and every candidate's commits. `history/views.py` puts the result in the
run's view (`RunView.tree`, `CandidateView.parent`), which `show`, its `--json` and the
reports render.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from selfcode.history.views import CandidateView

BASELINE = 0
"""The root's number: candidates are numbered from 1."""


class TreeNode(BaseModel):
    """One node of the tree: the baseline (n 0, status "baseline") or a candidate."""

    n: int
    status: str
    title: str
    parent: int | None = None
    """The candidate number it was built on (0: the baseline); None for the root, and for a
    candidate whose parent commit is none of the run's (it is then shown under the root)."""
    commit: str | None = None
    """The baseline's commit, an accepted candidate's commit, else the candidate's ref's."""
    gain: str = ""
    """An accepted candidate's gain as people say it (the verdict's `gain()`)."""
    on_branch: bool = False
    """On the run's branch: the root, and the accepted candidates its head holds."""
    children: list[TreeNode] = Field(default_factory=list)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TreeNode]]:
        """(depth, node) for this node and every node under it, parents before children."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


def parent_numbers(base_commit: str,
                   candidates: Sequence[CandidateView]) -> dict[int, int | None]:
    """Each candidate's parent as a candidate number: 0 when it was built on the run's base
    commit, `m` when it was built on candidate m's commit (its ref's, or the one on the
    branch, which a review's rebuild may have replaced), None when neither.

    Only an earlier candidate can be a parent (a candidate is numbered when it starts, on a
    node recorded before), so whatever the history holds the result has no cycle.
    """
    by_commit: dict[str, int] = {base_commit: BASELINE}
    for cand in sorted(candidates, key=lambda c: c.n):
        for sha in (cand.candidate_commit, cand.commit):
            if sha:
                by_commit.setdefault(sha, cand.n)
    parents: dict[int, int | None] = {}
    for cand in candidates:
        parent = by_commit.get(cand.parent_commit) if cand.parent_commit else None
        parents[cand.n] = parent if parent is not None and parent < cand.n else None
    return parents


def build_tree(base_commit: str, candidates: Sequence[CandidateView]) -> TreeNode:
    """The tree of `candidates` under the baseline; each one's `parent` as `parent_numbers`
    gives it when the view has not set it."""
    derived = parent_numbers(base_commit, candidates)
    root = TreeNode(n=BASELINE, status="baseline", title="the baseline", commit=base_commit,
                    on_branch=True)
    nodes = {BASELINE: root}
    for cand in sorted(candidates, key=lambda c: c.n):
        parent = cand.parent if cand.parent is not None else derived.get(cand.n)
        node = TreeNode(n=cand.n, status=cand.status, title=cand.title, parent=parent,
                        commit=cand.commit or cand.candidate_commit,
                        gain=cand.verdict.gain() if cand.verdict and cand.status == "accepted"
                        else "",
                        on_branch=cand.on_branch)
        nodes[cand.n] = node
        holder = nodes.get(parent) if parent is not None and parent < cand.n else None
        (holder or root).children.append(node)
    return root
