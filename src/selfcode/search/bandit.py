"""Which model the next request goes to: a cost-aware UCB1 over acceptances per dollar.

For model m, with n_m requests, a_m of them accepted, N = Σ n_m over the pool:

    index_m = (a_m / n_m + sqrt(2 · ln N / n_m)) / r_m

The numerator is UCB1's optimistic estimate of m's acceptance rate (a reward in [0, 1], so
UCB1's usual bonus applies unscaled). r_m is m's mean cost per request relative to the pool's:
r_m = c_m / c̄, where c̄ is the pool's known cost divided by its priced requests and c_m is m's
known cost, plus c̄ for each of its unpriced replies, divided by n_m. Dividing by r_m turns
"acceptances per request" into "acceptances per average request's dollar": a model ten times
cheaper at the same rate has ten times the index, one twice as good at the same price about
twice. The index is scale-free: prices in cents or dollars, cheap or dear pools, choose alike.

Edges, each a decision: an untried model (n_m = 0) is chosen first, in the caller's order. An
unpriced reply (its cost unknown, not $0) counts as the pool's mean cost, so it neither makes a
model look free nor dear. r_m is floored at `_CHEAPEST` (a free local model: 1000 times the
index of an average one, not infinity, so its acceptance rate still matters). When nothing in
the pool has a known positive cost, every r_m is 1 and the choice is plain UCB1 on rate.
With probability `floor` the choice is uniform over all models instead: the exploration floor,
so that a model that looked bad early is still retried now and then (models and their prices
change during a night).

The caller counts a request when it is sent (and its acceptance when judged), so parallel
draws spread over untried models instead of all going to the first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ModelStats", "choose", "ucb_indices"]

_CHEAPEST = 1e-3  # the lowest relative cost a model can have


class ModelStats(BaseModel):
    """One model's record in this run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int = Field(default=0, ge=0)  # requests sent
    accepted: int = Field(default=0, ge=0)  # candidates from them that were accepted
    cost_usd: float = Field(default=0.0, ge=0, allow_inf_nan=False)  # priced replies' cost
    unpriced: int = Field(default=0, ge=0)  # replies whose cost is unknown

    @model_validator(mode="after")
    def _counts_fit(self) -> ModelStats:
        if self.accepted > self.requests or self.unpriced > self.requests:
            raise ValueError(f"accepted ({self.accepted}) and unpriced ({self.unpriced}) "
                             f"cannot exceed requests ({self.requests})")
        return self

    def with_request(self, cost_usd: float | None) -> ModelStats:
        """This record after one more request costing `cost_usd` (None: unpriced)."""
        return ModelStats(requests=self.requests + 1, accepted=self.accepted,
                          cost_usd=self.cost_usd + (cost_usd or 0.0),
                          unpriced=self.unpriced + (cost_usd is None))

    def with_acceptance(self) -> ModelStats:
        """This record after one of its candidates was accepted."""
        return ModelStats(requests=self.requests, accepted=self.accepted + 1,
                          cost_usd=self.cost_usd, unpriced=self.unpriced)


def _relative_costs(stats: Mapping[str, ModelStats]) -> dict[str, float]:
    """r_m for every tried model (see the module docstring)."""
    priced = sum(s.requests - s.unpriced for s in stats.values())
    known = math.fsum(s.cost_usd for s in stats.values())
    mean = known / priced if priced else 0.0
    if mean <= 0:
        return {name: 1.0 for name, s in stats.items() if s.requests}
    return {name: max((s.cost_usd + s.unpriced * mean) / s.requests / mean, _CHEAPEST)
            for name, s in stats.items() if s.requests}


def ucb_indices(stats: Mapping[str, ModelStats]) -> dict[str, float]:
    """index_m for every model; an untried model's is infinite (it goes first)."""
    total = sum(s.requests for s in stats.values())
    relative = _relative_costs(stats)
    out: dict[str, float] = {}
    for name, s in stats.items():
        if not s.requests:
            out[name] = math.inf
            continue
        optimistic = s.accepted / s.requests + math.sqrt(2 * math.log(total) / s.requests)
        out[name] = optimistic / relative[name]
    return out


def choose(stats: Mapping[str, ModelStats], rng: random.Random, floor: float = 0.1) -> str:
    """The model for the next request (see the module docstring); deterministic given `rng`
    and the order of `stats`. Ties go to the model listed first."""
    if not stats:
        raise ValueError("choose needs at least one model")
    if not 0 <= floor <= 1:
        raise ValueError(f"the exploration floor must be within [0, 1], not {floor}")
    names = list(stats)
    untried = [name for name in names if not stats[name].requests]
    if untried:
        return untried[0]
    if len(names) > 1 and rng.random() < floor:
        return rng.choice(names)
    indices = ucb_indices(stats)
    return max(names, key=lambda name: indices[name])
