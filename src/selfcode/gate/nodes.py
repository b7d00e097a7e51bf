"""A node of the search's archive, judged against: does it measure as it did when accepted?

A node is a former candidate, and its code runs whenever its children are judged against it.
Code that can tell it is the baseline (its tree's path, the judge's layout, the time) could be
slow only then, and an empty child would look faster. So the baseline side of every
measurement against a node is compared with the node's own figures from when it was accepted
(the candidate side of its verdict): slower beyond what noise allows, and the child is not
judged faster, the node is retired as a parent. Pure.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from selfcode.gate.stats import compare, instruction_decision
from selfcode.gate.verdict import BenchVerdict

# How much slower a node may measure as the baseline than when it was accepted, as a share of
# the smallest gain a benchmark may claim: half of it for instruction counts (deterministic up
# to the machine's noise), all of it for CPU time (measured at another time).
DRIFT_SHARE = {"instructions": 0.5, "cpu_time": 1.0}


def figure_key(name: str, metric: str) -> str:
    """A node's figures are kept per benchmark and measure: a benchmark judged by another
    measure now (a resumed run calibrated again) is not compared with counts of the other."""
    return f"{name}/{metric}"


def baseline_drift(verdicts: Sequence[BenchVerdict], accepted: Mapping[str, Sequence[float]],
                   min_improvement: float) -> list[str]:
    """The benchmarks whose baseline side measured slower than the node's `accepted` figures
    (benchmark -> its candidate-side samples when it was accepted), one phrase each."""
    drifted = []
    for bench in verdicts:
        then = accepted.get(figure_key(bench.name, bench.metric))
        if not then or not bench.baseline:
            continue
        allowed = (bench.delta or min_improvement) * DRIFT_SHARE.get(bench.metric, 1.0)
        before, now = statistics.median(then), statistics.median(bench.baseline)
        if before > 0 and now > before * (1 + allowed):
            drifted.append(f"{bench.name} ({bench.metric.replace('_', ' ')}: {now / before:.3g}x "
                           f"what it measured when accepted)")
    return drifted


def drift_reason(drifted: Sequence[str]) -> str:
    return ("its parent measures slower as the baseline than when it was accepted ("
            + "; ".join(drifted) + "): a node may not change how it behaves by where it runs, "
            "so nothing built on it is judged faster, and it is no longer a parent")



def lent_gain(verdicts: Sequence[BenchVerdict], accepted: Mapping[str, Sequence[float]],
              alpha: float) -> list[str]:
    """Why a gain would not stand against the node as it measured when accepted (one reason),
    or nothing.

    `baseline_drift` tolerates a node measuring a little slower as the baseline (noise must
    not retire an honest node), but what it tolerates must not count as its child's gain: a
    node slower only as the baseline by just under the tolerance would lend that to every
    child (half of 3 % is more than the 1 % an instruction count needs). So each benchmark's
    baseline side is taken at the faster of now and then, and the gain judged again."""
    def then_over_now(bench: BenchVerdict) -> float:
        then = accepted.get(figure_key(bench.name, bench.metric))
        if not then or not bench.baseline:
            return 1.0
        return min(1.0, statistics.median(then) / statistics.median(bench.baseline))

    counted = [b for b in verdicts if b.metric == "instructions" and b.ratio is not None]
    timed = [b for b in verdicts if b.metric == "cpu_time" and b.verdict == "faster"]
    against_then = {b.name: b.ratio / then_over_now(b) for b in counted if b.ratio is not None}
    gained = bool(counted) and instruction_decision(
        {b.name: b.ratio for b in counted if b.ratio is not None}).improved
    still = bool(counted) and instruction_decision(against_then).improved
    timed_still = [b.name for b in timed if compare(
        [x * then_over_now(b) for x in b.baseline], b.candidate, alpha,
        b.delta or 0.0).verdict == "faster"]
    if not (gained or timed) or still or timed_still:
        return []
    shown = [f"{name} {ratio:.3g}x" for name, ratio in against_then.items()]
    shown += [f"{b.name} not {1 - (b.delta or 0.0):.3g}x in CPU time" for b in timed]
    return ["its gain is its parent's slowdown as the baseline: against the parent as it "
            "measured when accepted it is no faster (" + "; ".join(shown) + ")"]
