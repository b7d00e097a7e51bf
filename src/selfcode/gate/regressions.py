"""Regressions outside the counted metric: CPU time, wall time and peak memory of every win.

A benchmark judged by instruction counts can hide what valgrind does not count (kernel time,
sleeping, waiting on a child), and one judged by CPU time can hide sleeping or memory. So before
a candidate is accepted, every benchmark's paired samples of all three resources are compared
with the same paired test as the time gate: a significant regression beyond the resource's
tolerance rejects, and the verdict shows all three either way.

Pure functions: the samples come from the harness (`BenchSamples.resources`). Peak memory
("rss", KiB) is the whole process tree's: in the docker sandbox the growth of the container's
memory cgroup while the benchmark runs (sandbox/selfcode_memory.py), so memory spread over
forked children counts; the local sandbox only has the largest single process's ru_maxrss.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel

from selfcode.gate.stats import compare

Resource = Literal["cpu", "wall", "rss"]
RESOURCES: tuple[Resource, ...] = ("cpu", "wall", "rss")
_WORDS: dict[Resource, str] = {
    "cpu": "CPU time (user + system, every process)",
    "wall": "wall time",
    "rss": "peak memory",
}


class ResourceCheck(BaseModel):
    """One resource of one benchmark: baseline against candidate, paired."""

    resource: Resource
    baseline_median: float
    candidate_median: float
    ratio: float
    p_slower: float
    tolerance: float
    regressed: bool


class Tolerances(BaseModel):
    """The growth each resource may show before a significant change counts as a regression."""

    cpu: float
    wall: float
    rss: float

    def of(self, resource: Resource) -> float:
        value: float = getattr(self, resource)
        return value


def check_resources(samples: Mapping[Resource, tuple[Sequence[float], Sequence[float]]],
                    tolerances: Tolerances, alpha: float) -> list[ResourceCheck]:
    """Compare each resource's paired samples; a regression is p < alpha/2 and beyond tolerance.

    Two-sided at alpha like the time gate's regression rule, so the false-rejection rate of an
    unchanged tree stays where the A/A calibration put it.
    """
    checks = []
    for resource in RESOURCES:
        pair = samples.get(resource)
        if not pair or not pair[0] or len(pair[0]) != len(pair[1]):
            continue
        base, cand = pair
        tolerance = tolerances.of(resource)
        cmp = compare(base, cand, alpha, tolerance)
        checks.append(ResourceCheck(
            resource=resource, baseline_median=statistics.median(base),
            candidate_median=statistics.median(cand), ratio=cmp.ratio, p_slower=cmp.p_slower,
            tolerance=tolerance,
            regressed=cmp.p_slower < alpha / 2 and cmp.ratio >= 1 + tolerance))
    return checks


def regression_reasons(name: str, checks: Sequence[ResourceCheck]) -> list[str]:
    return [f"benchmark {name} regresses in {_WORDS[c.resource]}: {c.ratio:.2f}x the "
            f"baseline's (p={c.p_slower:.2g}, tolerance {c.tolerance:.0%})"
            for c in checks if c.regressed]


def missing_resources(checks: Sequence[ResourceCheck]) -> list[Resource]:
    """Resources the harness did not report: the judge refuses to accept without them."""
    seen = {c.resource for c in checks}
    return [r for r in RESOURCES if r not in seen]
