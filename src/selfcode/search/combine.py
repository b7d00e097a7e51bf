"""Which accepted improvements on other lineages may be combined with the best node.

At the end of a run the archive may hold independent wins on different lineages (one made
`squares` faster, another `evens`). Each other lineage's change since it branched off the
best node's lineage is a patch; when that patch applies to the best node, the combination is
judged like any candidate (run/loop.py) before it can become the branch. Pure: the caller
makes the patches and applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from selfcode.search.parents import Node


@dataclass(frozen=True)
class Merge:
    """Bring `tip`'s lineage, from where it left the best node's (`fork`), onto `onto`."""

    tip: int
    fork: int
    onto: int


def ancestors(nodes: Sequence[Node], n: int) -> list[int]:
    """`n` and the nodes it was built on, down to the run's baseline (0)."""
    parent_of = {node.n: node.parent for node in nodes}
    chain: list[int] = []
    current: int | None = n
    while current is not None and current in parent_of:
        chain.append(current)
        current = parent_of[current]
    return chain


def merges(nodes: Sequence[Node], best: int, limit: int = 3) -> list[Merge]:
    """The other lineages worth combining with `best`, best-scoring first: the tips (nodes
    no other node was built on) off the best node's lineage, each with where it left it."""
    on_best = set(ancestors(nodes, best))
    has_child = {node.parent for node in nodes if node.parent is not None}
    tips = [node for node in nodes
            if node.n not in on_best and node.n not in has_child and node.score > 1.0]
    found = []
    for tip in sorted(tips, key=lambda node: (-node.score, node.n)):
        fork = next(n for n in ancestors(nodes, tip.n) if n in on_best)
        found.append(Merge(tip=tip.n, fork=fork, onto=best))
    return found[:limit]
