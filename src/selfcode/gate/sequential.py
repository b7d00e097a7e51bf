"""The CPU-time confirmation as a sequential paired test: it stops once the evidence is clear.

The screen looks once half-way: a candidate none of whose timed benchmarks shows any gain in
the median (and with no instruction-count win) stops there (`futile`). After the screen
(gate/stats.py `screen`), a candidate that looks faster is confirmed on fresh pairs in `looks`
equal groups, up to `confirm_pairs` in all. At every look but the last:

- accept ("faster") when the fresh pairs so far show a gain *beyond the claimed delta*: the
  one-sided exact Wilcoxon signed-rank test of log(c/b) - log(1 - delta) < 0 gives p < alpha_k,
  and the median ratio is at most 1 - delta;
- stop ("same") when they show no gain at all (median ratio >= 1): a futility stop;
- otherwise measure the next group.

The last look is the fixed rule on every fresh pair: Wilcoxon of log(c/b) < 0 with p < alpha_K
and a median ratio of at most 1 - delta.

Why the false acceptance stays at most alpha: alpha_1 + ... + alpha_K = alpha (the power-family
spending function alpha * t**RHO at the looks' information fractions t), and each look's exact
Wilcoxon p-value is valid on its own, so by the union bound the chance that ANY look accepts a
candidate whose log ratios are symmetric about zero (A/A, whatever the noise's shape or the
candidate's choice of magnitudes) is at most the sum, whatever the correlation between looks
and whatever the futility stops do (they only ever remove acceptances). An early look tests
against the claimed gain itself, so a candidate whose true gain is below delta gains at most
alpha_1 + ... + alpha_{K-1} over the fixed test by being allowed to stop early; the last look
is the old fixed test at a smaller level. Conservative (Bonferroni across correlated looks), but
exact at the small pair counts the gate uses, where normal-theory group-sequential boundaries
are not.

Pure functions; scipy is imported lazily by `stats.wilcoxon_p`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from selfcode.gate.stats import compare, wilcoxon_p

RHO = 1.5
"""The spending function's exponent: between Pocock-like (1) and O'Brien-Fleming-like (3). At
two looks it spends alpha_1 = 0.35 alpha, so at alpha = 0.01 ten fresh pairs all favouring the
candidate (exact p = 2**-10) can stop at the first look, and most of alpha is left for the last."""

Decision = Literal["faster", "same", "continue"]


@dataclass(frozen=True)
class Plan:
    """Where the confirmation looks, and the share of alpha each look may spend."""

    sizes: tuple[int, ...]
    """Cumulative fresh pairs at each look; the last is the cap."""
    alphas: tuple[float, ...]
    """alpha_k per look; they sum to the gate's alpha."""


def plan(alpha: float, cap: int, looks: int) -> Plan:
    """`looks` equal groups over `cap` pairs (fewer when the groups would be empty)."""
    if cap < 1 or looks < 1 or not 0 < alpha < 1:
        raise ValueError("a plan needs at least one pair, one look and 0 < alpha < 1")
    looks = min(looks, cap)
    sizes = tuple(math.ceil(cap * k / looks) for k in range(1, looks + 1))
    spent = [alpha * (size / cap) ** RHO for size in sizes]
    alphas = tuple(b - a for a, b in zip([0.0, *spent], spent, strict=False))
    # The last look spends exactly what is left, so rounding never adds up to more than alpha.
    alphas = (*alphas[:-1], alpha - sum(alphas[:-1]))
    return Plan(sizes=sizes, alphas=alphas)


@dataclass(frozen=True)
class Look:
    decision: Decision
    ratio: float
    """Median candidate/baseline over the fresh pairs so far."""
    p_value: float
    """The p-value the decision rests on (against the claimed gain at an early look)."""
    alpha: float
    pairs: int


def decide(diffs: Sequence[float], delta: float, alpha_k: float, final: bool) -> Look:
    """One look at the fresh pairs' log ratios `diffs` (log(candidate/baseline), all so far)."""
    ratio = math.exp(statistics.median(diffs)) if diffs else 1.0
    if final:
        p = wilcoxon_p(diffs, "less")
        decision: Decision = "faster" if p < alpha_k and ratio <= 1 - delta else "same"
        return Look(decision, ratio, p, alpha_k, len(diffs))
    shift = math.log(1 - delta)
    p = wilcoxon_p([d - shift for d in diffs], "less")
    if p < alpha_k and ratio <= 1 - delta:
        decision = "faster"
    elif ratio >= 1:
        decision = "same"
    else:
        decision = "continue"
    return Look(decision, ratio, p, alpha_k, len(diffs))


# --- the whole time rule over a stream of pairs, old and new, for simulations and benchmarks ---

Draw = Callable[[int], list[float]]
"""The next n pairs' log ratios log(candidate/baseline), in the order they are measured."""


@dataclass(frozen=True)
class Outcome:
    faster: bool
    pairs: int
    """Every pair measured: the screen's and the confirmation's."""


def futile(diffs: Sequence[float]) -> bool:
    """No gain at all in the median of these pairs: not worth more pairs (never an acceptance)."""
    return not diffs or statistics.median(diffs) >= 0


def screened(diffs: Sequence[float], delta: float) -> bool:
    """The screen's verdict (stats.screen) on log ratios: does it earn a confirmation?"""
    candidate = [math.exp(d) for d in diffs]
    return compare([1.0] * len(diffs), candidate, 0.05, delta / 2).verdict == "faster"


def fixed_rule(draw: Draw, screen_pairs: int, confirm_pairs: int, delta: float,
               alpha: float) -> Outcome:
    """The two fixed stages the gate used before: screen, then `confirm_pairs` fresh pairs."""
    if not screened(draw(screen_pairs), delta):
        return Outcome(False, screen_pairs)
    fresh = draw(confirm_pairs)
    look = decide(fresh, delta, alpha, final=True)
    return Outcome(look.decision == "faster", screen_pairs + confirm_pairs)


def sequential_rule(draw: Draw, screen_pairs: int, the_plan: Plan, delta: float) -> Outcome:
    """The screen with its half-way look, then the sequential confirmation of `the_plan` (what
    gate/measure.py runs)."""
    half = draw(screen_pairs // 2)
    if futile(half):
        return Outcome(False, len(half))
    if not screened(half + draw(screen_pairs - len(half)), delta):
        return Outcome(False, screen_pairs)
    fresh: list[float] = []
    last = len(the_plan.sizes) - 1
    for k, (size, alpha_k) in enumerate(zip(the_plan.sizes, the_plan.alphas, strict=True)):
        fresh += draw(size - len(fresh))
        look = decide(fresh, delta, alpha_k, final=k == last)
        if look.decision != "continue":
            return Outcome(look.decision == "faster", screen_pairs + len(fresh))
    raise AssertionError("the last look always decides")
