"""How measured numbers are written for people: sample values, ratios, money."""

from __future__ import annotations

_TIME_METRICS = ("cpu_time", "wall_time", "time", "seconds")


def is_time(metric: str) -> bool:
    return metric in _TIME_METRICS or metric.endswith("_time") or metric.endswith("_s")


def fmt_sample(metric: str, value: float) -> str:
    """One sample in a unit that suits it: '412 ms', '1.23 s', '3.1 G instr'."""
    if is_time(metric):
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
            if abs(value) >= scale or unit == "µs":
                return f"{value / scale:.3g} {unit}"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g}"


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
    return f"${cost:.4f}" + ("" if known else " (some unpriced)")


def median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
