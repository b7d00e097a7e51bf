"""How measured numbers are written for people: sample values, ratios, money."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

_TIME_METRICS = ("cpu_time", "wall_time", "time", "seconds")
# Largest first; the last one takes whatever is smaller than every scale.
_COUNT_UNITS = (("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0))
_TIME_UNITS = (("s", 0), ("ms", -3), ("µs", -6), ("ns", -9))
SIGNIFICANT = 3


def is_time(metric: str) -> bool:
    return metric in _TIME_METRICS or metric.endswith("_time") or metric.endswith("_s")


def _rounded(value: float) -> Decimal:
    """`value` to three significant digits, ties away from zero (999.5 -> 1.00E+3). The
    shortest repr is what is rounded, so 0.9995 is the tie people see, not a binary neighbour."""
    exact = Decimal(repr(value))
    step = Decimal(1).scaleb(exact.adjusted() - SIGNIFICANT + 1)
    return exact.quantize(step, rounding=ROUND_HALF_UP)


def _digits(value: Decimal) -> str:
    """A rounded value in fixed notation with three significant digits (more integer digits
    when it has them): '997', '1.00', '12.3', '0.0500', '1230'. Never an exponent."""
    decimals = max(0, SIGNIFICANT - 1 - value.adjusted())
    return f"{value:.{decimals}f}"


def fmt_sample(metric: str, value: float) -> str:
    """One sample in a unit that suits it: '412 ms', '1.23 s', '997 M', '1.00 G'.

    The unit is chosen after rounding, so 999.5 million reads '1.00 G', never '1e+03 M'."""
    units = _TIME_UNITS if is_time(metric) else _COUNT_UNITS
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return f"0 {next(u for u, p in units if p == 0)}".rstrip()
    rounded = _rounded(value)
    unit, power = next(((u, p) for u, p in units if rounded.adjusted() >= p), units[-1])
    text = _digits(rounded.scaleb(-power))
    return f"{text} {unit}" if unit else text


def fmt_speedup(ratio: float | None) -> str:
    """A candidate/baseline ratio as people say it: '16.4x faster', '3% slower'."""
    if ratio is None or ratio <= 0:
        return "n/a"
    if ratio < 1:
        speed = 1 / ratio
        return f"{speed:.2f}x faster" if speed >= 1.1 else f"{(1 - ratio) * 100:.1f}% faster"
    if ratio > 1:
        return f"{ratio:.2f}x slower" if ratio >= 1.1 else f"{(ratio - 1) * 100:.1f}% slower"
    return "no change"


def fmt_cost(cost: float, known: bool = True) -> str:
    """Money spent: '$0.0123', '$0' for a truly free run (a replay), 'unpriced' when no
    reply had a price, '$0.0123 (some unpriced)' when only some had."""
    if not known:
        return "unpriced" if cost == 0 else f"${cost:.4f} (some unpriced)"
    return "$0" if cost == 0 else f"${cost:.4f}"


def median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
