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
    # Imported here, not at the top: loading scipy takes most of a second, and every command
    # that reads a verdict (runs, show, report) imports this module without testing anything.
    from scipy import stats as sps

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


def screen(baseline: Sequence[float], candidate: Sequence[float], delta: float,
           alpha: float = 0.05) -> Comparison:
    """The cheap first stage: only a candidate that looks faster earns the confirmation run."""
    return compare(baseline, candidate, alpha, delta / 2)


def geomean(values: Sequence[float]) -> float:
    return float(math.exp(statistics.fmean(math.log(v) for v in values)))


@dataclass(frozen=True)
class InstructionDecision:
    geomean_ratio: float
    improved: bool
    worse: list[str]


def instruction_decision(ratios: dict[str, float], max_geomean: float = 0.99,
                         max_single: float = 1.01) -> InstructionDecision:
    """Counts are deterministic, so no test is needed: a 1 % gain overall, no 1 % loss anywhere."""
    worse = sorted(name for name, r in ratios.items() if r > max_single)
    gm = geomean(list(ratios.values())) if ratios else 1.0
    return InstructionDecision(geomean_ratio=gm, improved=gm <= max_geomean and not worse,
                               worse=worse)


@dataclass(frozen=True)
class Noise:
    cv: float
    """Spread of the per-pair log ratios (1.4826 x MAD, the standard deviation for normal data)."""
    p95_ratio: float
    """95th percentile of max(r, 1/r) over the pairs: how far one pair can stray."""
    pairs: int


def aa_noise(baseline: Sequence[float], candidate: Sequence[float]) -> Noise:
    diffs = log_ratios(baseline, candidate)
    # A robust spread (scaled median absolute deviation): one descheduled run on a busy machine
    # should not double the noise floor, just as it does not move the Wilcoxon test much.
    centre = statistics.median(diffs) if diffs else 0.0
    cv = 1.4826 * statistics.median(abs(d - centre) for d in diffs) if len(diffs) > 1 else 0.0
    spread = sorted(abs(d) for d in diffs)
    p95 = spread[min(len(spread) - 1, math.ceil(0.95 * len(spread)) - 1)] if spread else 0.0
    return Noise(cv=cv, p95_ratio=math.exp(p95), pairs=len(diffs))


def implied_delta(noise: Noise, min_improvement: float) -> float:
    """The smallest gain the gate will claim: never below what noise alone produces."""
    return max(min_improvement, 2 * noise.cv)


# Rules other tools use to call a change faster, for side-by-side comparison in benchmarks/.
def single_run_rule(baseline: Sequence[float], candidate: Sequence[float],
                    threshold: float = 0.05) -> bool:
    return candidate[0] < baseline[0] * (1 - threshold)


def min_of_runs_rule(baseline: Sequence[float], candidate: Sequence[float],
                     threshold: float = 0.05) -> bool:
    return min(candidate) < min(baseline) * (1 - threshold)


def median_rule(baseline: Sequence[float], candidate: Sequence[float],
                threshold: float = 0.05) -> bool:
    return statistics.median(candidate) < statistics.median(baseline) * (1 - threshold)
