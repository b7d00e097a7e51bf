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

from selfcode.gate.verdict import BenchVerdict

# How much slower a node may measure as the baseline than when it was accepted, as a share of
# the smallest gain a benchmark may claim: half of it for instruction counts (deterministic up
# to the machine's noise), all of it for CPU time (measured at another time).
DRIFT_SHARE = {"instructions": 0.5, "cpu_time": 1.0}


def baseline_drift(verdicts: Sequence[BenchVerdict], accepted: Mapping[str, Sequence[float]],
                   min_improvement: float) -> list[str]:
    """The benchmarks whose baseline side measured slower than the node's `accepted` figures
    (benchmark -> its candidate-side samples when it was accepted), one phrase each."""
    drifted = []
    for bench in verdicts:
        then = accepted.get(bench.name)
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
