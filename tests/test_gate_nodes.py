"""gate/nodes.py: a node of the archive must measure as the baseline as it did when accepted,
and whatever slowdown its drift check tolerates is never its child's gain. Pure, table-tested."""

from __future__ import annotations

import pytest

from selfcode.gate.nodes import baseline_drift, lent_gain
from selfcode.gate.stats import instruction_decision
from selfcode.gate.verdict import BenchVerdict

ACCEPTED = 1_000_000.0  # the node's instruction count when it was accepted (its candidate side)


def counted(baseline: float, candidate: float) -> BenchVerdict:
    ratio = candidate / baseline
    return BenchVerdict(name="b", metric="instructions", baseline=[baseline],
                        candidate=[candidate], ratio=ratio, stage="instructions",
                        verdict="faster" if ratio <= 0.99 else "same")


@pytest.mark.parametrize(("now", "child", "lends"), [
    # A node 1.4 % slower as the baseline than when accepted (within the drift tolerance of
    # half of 3 %) and a child that is the node unchanged: 0.986x, which the count calls a gain.
    (1.014 * ACCEPTED, ACCEPTED, True),
    # A child with a real 0.6 % gain on such a node: 0.98x against now, 0.994x against then.
    (1.014 * ACCEPTED, 0.994 * ACCEPTED, True),
    # A child with a real 3 % gain keeps it whatever its parent lends.
    (1.014 * ACCEPTED, 0.97 * ACCEPTED, False),
    # A node that measures as it did: the gain is the child's.
    (ACCEPTED, 0.985 * ACCEPTED, False),
    # A node faster now than then: judged against now, as ever (never an easier bar).
    (0.99 * ACCEPTED, 0.985 * ACCEPTED, False),
])
def test_what_the_drift_tolerance_lets_pass_is_never_the_childs_gain(now, child, lends):
    verdict = counted(now, child)
    gained = instruction_decision({"b": verdict.ratio or 1.0}).improved
    assert not baseline_drift([verdict], {"b/instructions": [ACCEPTED]}, 0.03), "within the tolerance"
    reasons = lent_gain([verdict], {"b/instructions": [ACCEPTED]}, 0.01)
    assert bool(reasons) == (lends and gained), reasons
    if reasons:
        assert reasons[0].startswith("its gain is its parent's slowdown as the baseline")


def test_a_node_without_figures_and_a_child_without_gain_get_no_reason():
    assert lent_gain([counted(1.014 * ACCEPTED, ACCEPTED)], {}, 0.01) == []
    assert lent_gain([counted(ACCEPTED, ACCEPTED)], {"b/instructions": [ACCEPTED]}, 0.01) == []


def timed(baseline: list[float], candidate: list[float]) -> BenchVerdict:
    return BenchVerdict(name="t", metric="cpu_time", baseline=baseline, candidate=candidate,
                        ratio=0.96, delta=0.03, stage="confirm", verdict="faster")


def test_a_cpu_time_gain_is_judged_again_against_the_node_as_accepted():
    """A node 2.5 % slower in CPU time as the baseline (within the tolerance of the whole
    3 %): a child 4 % faster than that is 1.5 % faster than the node was."""
    now = [1.0 + 0.001 * (i % 5) for i in range(20)]
    child = [x * 0.96 for x in now]
    then = [x / 1.025 for x in now]
    assert not baseline_drift([timed(now, child)], {"t/cpu_time": then}, 0.03)
    assert lent_gain([timed(now, child)], {"t/cpu_time": then}, 0.01)
    assert lent_gain([timed(now, child)], {"t/cpu_time": now}, 0.01) == []
    real = [x * 0.94 for x in now]  # 6 % against now, 3.6 % against then
    assert lent_gain([timed(now, real)], {"t/cpu_time": then}, 0.01) == []


def test_figures_of_another_measure_are_not_compared() -> None:
    """A resumed run may judge a benchmark by CPU time that the node was accepted on by
    instruction counts (or the reverse): seconds are never compared with counts."""
    from selfcode.gate.verdict import Verdict
    from selfcode.search.lineage import node_figures

    accepted = Verdict(accepted=True, status="accepted", goal="speed",
                       benchmarks=[counted(2 * ACCEPTED, ACCEPTED)])
    figures = node_figures(accepted)
    assert figures == {"b/instructions": [ACCEPTED]}
    slow_now = counted(3 * ACCEPTED, 3 * ACCEPTED)
    assert baseline_drift([slow_now], figures, 0.03)  # the same measure: compared
    seconds = BenchVerdict(name="b", metric="cpu_time", baseline=[0.5], candidate=[0.4],
                           ratio=0.8, verdict="faster")
    assert baseline_drift([seconds], figures, 0.03) == []
