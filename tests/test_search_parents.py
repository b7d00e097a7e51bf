"""Tests for selfcode.search.parents: the archive's parent choice (greedy and the DGM rule)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from selfcode.search.parents import Node, ParentRule, choose_parent, probabilities


def _node(n: int, score: float, children: int = 0) -> Node:
    return Node(n=n, sha=f"{n:040x}", parent=None if n == 0 else 0, score=score,
                children=children)


# =============================================================================================
# Tables
# =============================================================================================

GREEDY_CASES = [
    # (scores by n, expected n)
    ({0: 1.0}, 0),
    ({0: 1.0, 1: 1.2, 2: 1.1}, 1),
    ({0: 1.0, 1: 1.2, 2: 1.2}, 2),  # a tie goes to the newest
    ({3: 1.5, 0: 1.0, 1: 1.5}, 3),  # whatever the caller's order
    ({0: 1.0, 1: 0.9}, 0),
]


@pytest.mark.parametrize(("scores", "expected"), GREEDY_CASES)
def test_greedy_is_the_best_score_ties_newest(scores: dict[int, float], expected: int) -> None:
    nodes = [_node(n, s) for n, s in scores.items()]
    assert choose_parent(nodes, "greedy", random.Random(0)).n == expected


def test_archive_probabilities_follow_the_dgm_formula() -> None:
    # top-3 scores 1.3, 1.2, 1.1: median 1.2.
    nodes = [_node(0, 1.0, children=3), _node(1, 1.1), _node(2, 1.2, children=1), _node(3, 1.3)]
    sig = [1 / (1 + math.exp(-10 * (s - 1.2))) for s in (1.0, 1.1, 1.2, 1.3)]
    weights = [sig[0] / 4, sig[1] / 1, sig[2] / 2, sig[3] / 1]
    expected = {n: w / sum(weights) for n, w in enumerate(weights)}
    got = probabilities(nodes)
    assert got.keys() == expected.keys()
    for n in expected:
        assert got[n] == pytest.approx(expected[n], rel=1e-12)


def test_fewer_nodes_than_k_take_the_median_of_all() -> None:
    got = probabilities([_node(0, 1.0), _node(1, 2.0)], ParentRule(sharpness=1.0))
    # median 1.5: sigmoid(-0.5) against sigmoid(0.5)
    ratio = (1 / (1 + math.exp(0.5))) / (1 / (1 + math.exp(-0.5)))
    assert got[0] / got[1] == pytest.approx(ratio)


def test_the_draw_is_deterministic_given_the_rng_and_ignores_the_callers_order() -> None:
    nodes = [_node(n, 1.0 + n / 10, children=n % 2) for n in range(6)]
    a = [choose_parent(nodes, "archive", rng).n for rng in [random.Random(7)] for _ in range(50)]
    b = [choose_parent(list(reversed(nodes)), "archive", rng).n
         for rng in [random.Random(7)] for _ in range(50)]
    assert a == b
    assert len(set(a)) > 1  # it really draws


def test_archive_draws_match_the_probabilities() -> None:
    nodes = [_node(0, 1.0, children=2), _node(1, 1.15), _node(2, 1.25, children=5)]
    rng = random.Random(1)
    draws = 20000
    counts = Counter(choose_parent(nodes, "archive", rng).n for _ in range(draws))
    for n, p in probabilities(nodes).items():
        assert counts[n] / draws == pytest.approx(p, abs=0.015)


def test_a_far_behind_node_keeps_a_positive_chance() -> None:
    got = probabilities([_node(0, 1.0), _node(1, 500.0, children=0)])
    assert 0 < got[0] < 1e-20


@pytest.mark.parametrize("bad", [
    [],
    [_node(1, 1.0), _node(1, 1.2)],
])
def test_bad_archives_are_refused(bad: list[Node]) -> None:
    with pytest.raises(ValueError):
        choose_parent(bad, "archive", random.Random(0))


@pytest.mark.parametrize(("score", "children"), [(math.nan, 0), (math.inf, 0), (1.0, -1)])
def test_bad_nodes_are_refused(score: float, children: int) -> None:
    with pytest.raises(ValueError):
        _node(1, score, children)


@pytest.mark.parametrize("fields", [{"sharpness": 0}, {"top_k": 0}, {"lam": 3}])
def test_bad_rules_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ParentRule.model_validate(fields)


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parent strategy"):
        choose_parent([_node(0, 1.0), _node(1, 1.1)], "best", random.Random(0))  # type: ignore[arg-type]


# =============================================================================================
# Properties
# =============================================================================================

_scores = st.floats(min_value=0.01, max_value=100.0, allow_nan=False)
_children = st.integers(min_value=0, max_value=1000)
_archives = st.lists(st.tuples(_scores, _children), min_size=1, max_size=12).map(
    lambda rows: [_node(n, s, c) for n, (s, c) in enumerate(rows)])
_rules = st.builds(ParentRule, sharpness=st.floats(min_value=0.1, max_value=50.0),
                   top_k=st.integers(min_value=1, max_value=5))


@settings(max_examples=300)
@given(_archives, _rules)
def test_every_node_has_a_positive_chance_and_they_sum_to_one(nodes: list[Node],
                                                               rule: ParentRule) -> None:
    got = probabilities(nodes, rule)
    assert all(p > 0 for p in got.values())
    assert math.fsum(got.values()) == pytest.approx(1.0)


@settings(max_examples=300)
@given(_archives, _rules, st.data())
def test_more_children_never_raise_a_nodes_chance(nodes: list[Node], rule: ParentRule,
                                                  data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(nodes) - 1))
    extra = data.draw(st.integers(min_value=1, max_value=100))
    before = probabilities(nodes, rule)[i]
    more = [*nodes[:i], _node(i, nodes[i].score, nodes[i].children + extra), *nodes[i + 1:]]
    assert probabilities(more, rule)[i] <= before * (1 + 1e-12)


@settings(max_examples=300)
@given(_archives, _rules, st.data())
def test_a_higher_score_never_lowers_a_nodes_chance(nodes: list[Node], rule: ParentRule,
                                                    data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(nodes) - 1))
    gain = data.draw(st.floats(min_value=0.0, max_value=50.0))
    before = probabilities(nodes, rule)[i]
    better = [*nodes[:i], _node(i, nodes[i].score + gain, nodes[i].children), *nodes[i + 1:]]
    assert probabilities(better, rule)[i] >= before * (1 - 1e-12)


@given(_archives)
def test_greedy_is_the_argmax(nodes: list[Node]) -> None:
    chosen = choose_parent(nodes, "greedy", random.Random(0))
    assert chosen.score == max(node.score for node in nodes)
    assert chosen.n == max(node.n for node in nodes if node.score == chosen.score)


@given(_scores, _children, st.sampled_from(["greedy", "archive"]), st.integers())
def test_a_single_node_is_always_chosen(score: float, children: int, strategy: str,
                                        seed: int) -> None:
    node = _node(0, score, children)
    assert choose_parent([node], strategy, random.Random(seed)) == node  # type: ignore[arg-type]
