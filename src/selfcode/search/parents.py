"""The archive's parent choice: which judged node the next candidate is built on.

`greedy` always builds on the best node (ties: the newest), today's line. `archive` is the
Darwin Gödel Machine's rule, also ShinkaEvolve's: node i is drawn with probability
proportional to

    sigmoid(λ · (score_i − m)) × 1 / (1 + children_i)

where m is the median of the top-k scores (all of them when there are fewer than k) and
`children_i` counts the candidates already built on node i, accepted or not. The sigmoid
favours nodes near or above the best few; the children term spreads the effort so that a
node that has been tried often yields to one that has not. DGM uses λ = 10, k = 3.

Properties the tests hold it to: every node has a positive chance (the sigmoid's argument is
clamped to ±`_CLAMP`, so a far-behind node keeps a tiny one instead of underflowing to 0.0);
more children never raise a node's chance; a higher score never lowers it (raising s_i moves
the median by at most as much, so s_i − m never falls, and the others' weights never rise);
the draw is a function of the rng's state and the nodes alone (nodes are ordered by `n`
before drawing, so the caller's order does not matter).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Node", "ParentRule", "Strategy", "choose_parent", "probabilities"]

Strategy = Literal["greedy", "archive"]

# sigmoid(-50) ≈ 2e-22: far below any chance that matters, far above float underflow.
_CLAMP = 50.0


@dataclass(frozen=True)
class Node:
    """One judged state the search may build on."""

    n: int  # the candidate's number; 0 is the run's baseline
    sha: str  # its commit
    parent: int | None  # the node it was built on (None for the baseline)
    score: float  # speedup over the run's baseline (1.0 for the baseline); higher is better
    children: int = 0  # candidates already built on it, accepted or not

    def __post_init__(self) -> None:
        if not math.isfinite(self.score):
            raise ValueError(f"node {self.n}: score must be a finite number, not {self.score!r}")
        if self.children < 0:
            raise ValueError(f"node {self.n}: children must be >= 0, not {self.children}")


class ParentRule(BaseModel):
    """The archive rule's two knobs (defaults: the Darwin Gödel Machine's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sharpness: float = Field(default=10.0, gt=0)  # λ: how strongly score above m is favoured
    top_k: int = Field(default=3, ge=1)  # m is the median of this many best scores


def _sigmoid(x: float) -> float:
    x = max(-_CLAMP, min(_CLAMP, x))
    return 1.0 / (1.0 + math.exp(-x))


def _ordered(nodes: Sequence[Node]) -> list[Node]:
    if not nodes:
        raise ValueError("choose_parent needs at least one node (the baseline)")
    ordered = sorted(nodes, key=lambda node: node.n)
    if len({node.n for node in ordered}) != len(ordered):
        raise ValueError("node numbers must be distinct")
    return ordered


def _weights(nodes: Sequence[Node], rule: ParentRule) -> list[float]:
    top = sorted((node.score for node in nodes), reverse=True)[:rule.top_k]
    middle = statistics.median(top)
    return [_sigmoid(rule.sharpness * (node.score - middle)) / (1 + node.children)
            for node in nodes]


def probabilities(nodes: Sequence[Node], rule: ParentRule | None = None) -> dict[int, float]:
    """Each node's chance of being the next parent under the archive rule, keyed by `n`."""
    ordered = _ordered(nodes)
    weights = _weights(ordered, rule or ParentRule())
    total = math.fsum(weights)
    return {node.n: weight / total for node, weight in zip(ordered, weights, strict=True)}


def choose_parent(nodes: Sequence[Node], strategy: Strategy, rng: random.Random,
                  rule: ParentRule | None = None) -> Node:
    """The node the next candidate is built on. `greedy` ignores `rng`; `archive` draws once."""
    ordered = _ordered(nodes)
    if strategy == "greedy":
        return max(ordered, key=lambda node: (node.score, node.n))
    if strategy != "archive":
        raise ValueError(f"unknown parent strategy {strategy!r}; use 'greedy' or 'archive'")
    if len(ordered) == 1:
        return ordered[0]
    weights = _weights(ordered, rule or ParentRule())
    return rng.choices(ordered, weights=weights, k=1)[0]
