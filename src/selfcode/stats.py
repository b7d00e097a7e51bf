"""Pure statistics for paired A/B benchmark samples. No I/O, no randomness.

Samples come in pairs (baseline run, candidate run) measured back to back in random order, so
each pair shares the machine's state at that moment; the tests work on per-pair log ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats as sps

Direction = Literal["faster", "slower", "same"]


@dataclass(frozen=True)
class Comparison:
    ratio: float
    """Median of candidate/baseline over the pairs: 0.8 means the candidate takes 20 % less."""
    p_faster: float
    """One-sided Wilcoxon signed-rank p-value for 'the candidate is faster'."""
    p_slower: float
    """One-sided Wilcoxon signed-rank p-value for 'the candidate is slower'."""
    verdict: Direction


def log_ratios(baseline: Sequence[float], candidate: Sequence[float]) -> list[float]:
    if len(baseline) != len(candidate):
        raise ValueError("paired samples must have the same length")
    if any(x <= 0 for x in (*baseline, *candidate)):
        raise ValueError("samples must be positive")
    return [math.log(c / b) for b, c in zip(baseline, candidate, strict=True)]


def wilcoxon_p(diffs: Sequence[float], alternative: Literal["less", "greater"]) -> float:
    """p-value of the signed-rank test that the median difference is below/above zero."""
    if not diffs or all(d == 0 for d in diffs):
        return 1.0
    return float(sps.wilcoxon(diffs, alternative=alternative).pvalue)


def compare(
    baseline: Sequence[float],
    candidate: Sequence[float],
    alpha: float,
    min_improvement: float,
) -> Comparison:
    """Faster only when significant AND at least `min_improvement` better; slower likewise."""
    diffs = log_ratios(baseline, candidate)
    ratio = math.exp(statistics.median(diffs))
    p_faster = wilcoxon_p(diffs, "less")
    p_slower = wilcoxon_p(diffs, "greater")
    verdict: Direction = "same"
    if p_faster < alpha and ratio <= 1 - min_improvement:
        verdict = "faster"
    elif p_slower < alpha and ratio >= 1 + min_improvement:
        verdict = "slower"
    return Comparison(ratio=ratio, p_faster=p_faster, p_slower=p_slower, verdict=verdict)
