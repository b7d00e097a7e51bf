"""Tests for selfcode.search.bandit: the cost-aware UCB1 that picks each request's model."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from selfcode.search.bandit import ModelStats, choose, ucb_indices


def _stats(requests: int, accepted: int, cost_usd: float, unpriced: int = 0) -> ModelStats:
    return ModelStats(requests=requests, accepted=accepted, cost_usd=cost_usd,
                      unpriced=unpriced)


def _simulate(rates: dict[str, float], costs: dict[str, float], rounds: int,
              seed: int, floor: float = 0.1) -> Counter[str]:
    """A seeded run: each request costs its model's price and is accepted at its rate."""
    rng = random.Random(seed)
    world = random.Random(seed + 1)
    stats = {name: ModelStats() for name in rates}
    late: Counter[str] = Counter()
    for step in range(rounds):
        name = choose(stats, rng, floor)
        record = stats[name].with_request(costs[name])
        if world.random() < rates[name]:
            record = record.with_acceptance()
        stats[name] = record
        if step >= rounds // 2:
            late[name] += 1
    return late


# =============================================================================================
# Tables
# =============================================================================================

def test_untried_models_go_first_in_the_callers_order() -> None:
    # Even when the floor would always draw uniformly, an untried model goes first.
    rng = random.Random(0)
    stats = {"a": _stats(5, 5, 0.01), "b": ModelStats(), "c": ModelStats()}
    assert {choose(stats, rng, floor=1.0) for _ in range(50)} == {"b"}
    stats["b"] = _stats(1, 0, 1.0)
    assert {choose(stats, rng, floor=1.0) for _ in range(50)} == {"c"}
    assert ucb_indices({"a": _stats(1, 0, 1.0), "z": ModelStats()})["z"] == math.inf


def test_a_model_that_wins_at_the_same_cost_is_preferred() -> None:
    stats = {"weak": _stats(100, 10, 1.0), "strong": _stats(100, 30, 1.0)}
    assert choose(stats, random.Random(0), floor=0.0) == "strong"
    late = _simulate({"weak": 0.1, "strong": 0.4}, {"weak": 0.01, "strong": 0.01},
                     rounds=600, seed=3)
    assert late["strong"] > 3 * late["weak"]


def test_a_ten_times_cheaper_model_with_the_same_acceptance_is_preferred() -> None:
    stats = {"dear": _stats(50, 10, 5.0), "cheap": _stats(50, 10, 0.5)}
    indices = ucb_indices(stats)
    assert indices["cheap"] == pytest.approx(10 * indices["dear"])
    assert choose(stats, random.Random(0), floor=0.0) == "cheap"
    late = _simulate({"dear": 0.2, "cheap": 0.2}, {"dear": 0.1, "cheap": 0.01},
                     rounds=600, seed=5)
    assert late["cheap"] > 3 * late["dear"]


def test_the_index_is_scale_free() -> None:
    dollars = {"a": _stats(40, 8, 2.0), "b": _stats(30, 3, 0.3), "c": _stats(10, 0, 0.0)}
    cents = {name: _stats(s.requests, s.accepted, s.cost_usd * 100) for name, s in
             dollars.items()}
    for name, value in ucb_indices(dollars).items():
        assert ucb_indices(cents)[name] == pytest.approx(value)


def test_the_formula() -> None:
    stats = {"a": _stats(10, 4, 1.0), "b": _stats(30, 3, 1.0, unpriced=20)}
    # Pool mean per priced request: 2.0 / 20 = 0.1. a: 0.1/req (r=1); b: (1.0 + 20·0.1)/30 = 0.1.
    total = 40
    expected_a = (0.4 + math.sqrt(2 * math.log(total) / 10)) / 1.0
    expected_b = (0.1 + math.sqrt(2 * math.log(total) / 30)) / 1.0
    got = ucb_indices(stats)
    assert got["a"] == pytest.approx(expected_a)
    assert got["b"] == pytest.approx(expected_b)


def test_unpriced_replies_count_as_the_pools_mean_cost() -> None:
    priced = _stats(20, 5, 2.0)  # 0.1 per request
    unknown = _stats(20, 5, 0.0, unpriced=20)  # neither free nor dear
    indices = ucb_indices({"priced": priced, "unknown": unknown})
    assert indices["unknown"] == pytest.approx(indices["priced"])


def test_a_free_model_is_favoured_but_not_infinitely() -> None:
    indices = ucb_indices({"local": _stats(20, 0, 0.0), "paid": _stats(20, 5, 2.0)})
    assert math.isfinite(indices["local"])
    assert indices["local"] > indices["paid"]
    # Nothing in the pool has a known cost: plain UCB1 on the rate.
    indices = ucb_indices({"x": _stats(20, 2, 0.0, unpriced=20), "y": _stats(20, 6, 0.0)})
    assert indices["y"] > indices["x"]


def test_the_floor_keeps_every_model_chosen_sometimes() -> None:
    stats = {"best": _stats(1000, 500, 1.0), "bad": _stats(1000, 0, 1.0),
             "worse": _stats(1000, 0, 50.0)}
    rng = random.Random(11)
    counts = Counter(choose(stats, rng, floor=0.1) for _ in range(3000))
    # Each has a 0.1/3 chance per draw: about 100 of 3000.
    assert counts["bad"] > 60
    assert counts["worse"] > 60
    assert counts["best"] > 2600
    rng = random.Random(11)
    assert {choose(stats, rng, floor=0.0) for _ in range(300)} == {"best"}


def test_one_model_is_always_it() -> None:
    rng = random.Random(0)
    assert {choose({"only": ModelStats()}, rng, floor=1.0) for _ in range(20)} == {"only"}
    assert {choose({"only": _stats(9, 0, 9.0)}, rng, floor=1.0) for _ in range(20)} == {"only"}


def test_records_grow_by_request_and_acceptance() -> None:
    record = ModelStats().with_request(0.25).with_request(None).with_acceptance()
    assert record == _stats(2, 1, 0.25, unpriced=1)


@pytest.mark.parametrize("fields", [
    {"requests": 1, "accepted": 2},
    {"requests": 1, "unpriced": 2},
    {"requests": -1},
    {"cost_usd": -0.5},
    {"cost_usd": math.nan},
    {"tokens": 3},
])
def test_bad_records_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ModelStats.model_validate(fields)


@pytest.mark.parametrize(("stats", "floor"), [({}, 0.1), ({"a": ModelStats()}, 1.5)])
def test_bad_calls_are_refused(stats: dict[str, ModelStats], floor: float) -> None:
    with pytest.raises(ValueError):
        choose(stats, random.Random(0), floor)


# =============================================================================================
# Properties
# =============================================================================================

_records = st.integers(min_value=0, max_value=500).flatmap(
    lambda n: st.builds(ModelStats, requests=st.just(n),
                        accepted=st.integers(min_value=0, max_value=n),
                        cost_usd=st.floats(min_value=0, max_value=100),
                        unpriced=st.integers(min_value=0, max_value=n)))
_pools = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), _records, min_size=1)


@given(_pools, st.integers(), st.floats(min_value=0, max_value=1))
def test_the_choice_is_a_model_of_the_pool_and_deterministic(pool: dict[str, ModelStats],
                                                              seed: int, floor: float) -> None:
    first = choose(pool, random.Random(seed), floor)
    assert first in pool
    assert choose(pool, random.Random(seed), floor) == first


@given(_pools)
def test_without_the_floor_the_choice_is_the_best_index(pool: dict[str, ModelStats]) -> None:
    indices = ucb_indices(pool)
    chosen = choose(pool, random.Random(0), floor=0.0)
    assert indices[chosen] == max(indices.values())
    assert all(value >= 0 for value in indices.values())
