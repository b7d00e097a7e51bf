"""Plots of benchmark samples, baseline vs candidate: inline SVG for HTML, text for Markdown.

Every sample is drawn (a reviewer sees the evidence, not a number): one dot per run, a box
from the first to the third quartile with the median marked, and a faint line joining the
two runs of each pair, since they were measured back to back. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from selfcode.gate.verdict import BenchVerdict
from selfcode.report.units import fmt_sample, fmt_speedup, median

WIDTH, ROW_H, TOP, LEFT, RIGHT = 760, 52, 34, 92, 150
COLOURS = {"baseline": "#5b6b82", "faster": "#1a8a4a", "slower": "#c0392b", "other": "#b7791f"}


@dataclass(frozen=True)
class Series:
    """Baseline and candidate samples of one measurement, and what the gate made of them."""

    name: str
    metric: str
    baseline: list[float]
    candidate: list[float]
    ratio: float | None
    p_value: float | None
    verdict: str


def series_of(bench: BenchVerdict) -> list[Series]:
    """The benchmark's own samples, then those of its CPU-time confirmation, if it had one."""
    out = [Series(bench.name, bench.metric, list(bench.baseline), list(bench.candidate),
                  bench.ratio, bench.p_value, bench.verdict)]
    confirm = getattr(bench, "confirmation", None)
    if isinstance(confirm, dict) and confirm.get("baseline") and confirm.get("candidate"):
        out.append(Series(f"{bench.name} (CPU-time confirmation)",
                          str(confirm.get("metric", "cpu_time")),
                          [float(x) for x in confirm["baseline"]],
                          [float(x) for x in confirm["candidate"]],
                          _float(confirm.get("ratio")), _float(confirm.get("p_value")),
                          bench.verdict))
    return out


def single_run_note(bench: Series) -> str | None:
    """For a measurement of one run each, the numbers and why they suffice, instead of a
    plot of two dots; None when there are samples enough to draw."""
    base, cand = bench.baseline, bench.candidate
    if not base or not cand or len(base) > 1 or len(cand) > 1:
        return None
    change = fmt_speedup(bench.ratio) if bench.ratio else bench.verdict
    numbers = (f"baseline {fmt_sample(bench.metric, base[0])}, candidate "
               f"{fmt_sample(bench.metric, cand[0])} {bench.metric} ({change})")
    if bench.metric == "instructions":
        return (f"{bench.name}: {numbers}. One run each suffices: an instruction count is "
                "deterministic, the same on every run of the same code and input, so there "
                "is no spread to plot.")
    return f"{bench.name}: {numbers}; one run each, too few samples to plot."


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class Scale:
    """Maps values to x pixels; logarithmic when the samples span more than 8x."""

    def __init__(self, values: Sequence[float], x0: float, x1: float) -> None:
        positive = [v for v in values if v > 0]
        lo, hi = (min(positive), max(positive)) if positive else (1.0, 10.0)
        self.log = lo > 0 and hi / lo > 8
        if self.log:
            self.lo, self.hi = math.log10(lo) - 0.05, math.log10(hi) + 0.05
        else:
            pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
            self.lo, self.hi = max(0.0, lo - pad), hi + pad
        self.x0, self.x1 = x0, x1

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log and value > 0 else value
        if self.log and value <= 0:
            v = self.lo
        return self.x0 + (v - self.lo) / ((self.hi - self.lo) or 1.0) * (self.x1 - self.x0)

    def ticks(self) -> list[float]:
        if self.log:
            out = []
            for exp in range(math.floor(self.lo), math.ceil(self.hi) + 1):
                for m in (1, 2, 5):
                    v = m * 10.0**exp
                    if self.lo <= math.log10(v) <= self.hi:
                        out.append(v)
            return out
        span = self.hi - self.lo
        raw = span / 5
        step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
        for m in (1, 2, 5, 10):
            if span / (step * m) <= 6:
                step *= m
                break
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)]


def _jitter(i: int) -> float:
    """A fixed vertical offset per sample, so equal values do not hide each other."""
    return ((i * 7) % 11 - 5) * 2.0


def _colour(bench: Series) -> str:
    return COLOURS.get(bench.verdict, COLOURS["other"])


def _row(values: Sequence[float], y: float, scale: Scale, colour: str, label: str,
         metric: str) -> list[str]:
    q1, q2, q3 = (quantile(values, q) for q in (0.25, 0.5, 0.75))
    lo, hi = min(values), max(values)
    parts = [
        f'<text x="{LEFT - 10}" y="{y + 4:.1f}" text-anchor="end" class="lbl">{label}</text>',
        f'<line x1="{scale(lo):.1f}" x2="{scale(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="{colour}" stroke-width="1.5"/>',
        f'<rect x="{scale(q1):.1f}" y="{y - 11:.1f}" width="{max(scale(q3) - scale(q1), 1.5):.1f}"'
        f' height="22" fill="{colour}" fill-opacity="0.18" stroke="{colour}"/>',
        f'<line x1="{scale(q2):.1f}" x2="{scale(q2):.1f}" y1="{y - 14:.1f}" y2="{y + 14:.1f}" '
        f'stroke="{colour}" stroke-width="3"/>',
    ]
    for i, v in enumerate(values):
        jitter = _jitter(i)
        parts.append(f'<circle cx="{scale(v):.1f}" cy="{y + jitter:.1f}" r="4" fill="{colour}" '
                     f'fill-opacity="0.75"><title>{label} run {i + 1}: '
                     f'{escape(fmt_sample(metric, v))}</title></circle>')
    parts.append(f'<text x="{WIDTH - RIGHT + 12}" y="{y + 4:.1f}" class="val">median '
                 f'{escape(fmt_sample(metric, q2))}</text>')
    return parts


def bench_svg(bench: Series) -> str:
    """One measurement's samples as a self-contained SVG element."""
    base, cand = list(bench.baseline), list(bench.candidate)
    height = TOP + 2 * ROW_H + 40
    if not base and not cand:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="40" '
                f'role="img"><text x="10" y="24">{escape(bench.name)}: no samples</text></svg>')
    scale = Scale(base + cand, LEFT, WIDTH - RIGHT)
    y_base, y_cand = TOP + ROW_H * 0.5, TOP + ROW_H * 1.5
    colour = _colour(bench)
    ratio = f"{fmt_speedup(bench.ratio)}" if bench.ratio else bench.verdict
    p = f", p = {bench.p_value:.2g}" if bench.p_value is not None else ""
    runs = f"{len(base)} paired runs" if len(base) > 1 else "1 run each"
    heading = f"{bench.name}: {ratio}{p} ({runs}, {bench.metric})"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(heading)}">',
        f'<title>{escape(heading)}</title>',
        '<style>.lbl{font:13px sans-serif;fill:#222}.val{font:12px sans-serif;fill:#444}'
        '.tick{font:11px sans-serif;fill:#666}.hd{font:bold 14px sans-serif;fill:#111}</style>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fcfcfd"/>',
        f'<text x="10" y="20" class="hd">{escape(heading)}</text>',
    ]
    axis_y = TOP + 2 * ROW_H + 6
    for tick in scale.ticks():
        x = scale(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{axis_y}" '
                     'stroke="#e3e6ea"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" class="tick">'
                     f'{escape(fmt_sample(bench.metric, tick))}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" y2="{axis_y}" '
                 'stroke="#999"/>')
    if scale.log:
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{axis_y + 30}" text-anchor="end" '
                     'class="tick">log scale</text>')
    for i, (a, b) in enumerate(zip(base, cand, strict=False)):
        ja = jb = _jitter(i)
        parts.append(f'<line x1="{scale(a):.1f}" y1="{y_base + ja:.1f}" x2="{scale(b):.1f}" '
                     f'y2="{y_cand + jb:.1f}" stroke="#8892a0" stroke-opacity="0.25"/>')
    if base:
        parts += _row(base, y_base, scale, COLOURS["baseline"], "baseline", bench.metric)
    if cand:
        parts += _row(cand, y_cand, scale, colour, "candidate", bench.metric)
    parts.append("</svg>")
    return "\n".join(parts)


_DOTS = " ·:⁝●"


def text_plot(bench: Series, width: int = 48) -> str:
    """The same picture in characters, for Markdown: dots per column, ┃ at the median."""
    base, cand = list(bench.baseline), list(bench.candidate)
    if not base or not cand:
        return f"{bench.name}: no samples"
    note = single_run_note(bench)
    if note is not None:
        return note
    scale = Scale(base + cand, 0, width - 1)

    def row(values: Sequence[float]) -> str:
        cells = [0] * width
        for v in values:
            cells[min(width - 1, max(0, round(scale(v))))] += 1
        line = [_DOTS[min(c, len(_DOTS) - 1)] for c in cells]
        m = min(width - 1, max(0, round(scale(median(list(values)) or 0.0))))
        line[m] = "┃"
        return "".join(line)

    lo, hi = (10**scale.lo, 10**scale.hi) if scale.log else (scale.lo, scale.hi)
    left, right = fmt_sample(bench.metric, lo), fmt_sample(bench.metric, hi)
    axis = left + " " * max(1, width - len(left) - len(right)) + right
    mb, mc = median(base) or 0.0, median(cand) or 0.0
    return "\n".join([
        f"{bench.name}, {bench.metric}, {len(base)} run(s) each:",
        f"baseline  |{row(base)}| median {fmt_sample(bench.metric, mb)}",
        f"candidate |{row(cand)}| median {fmt_sample(bench.metric, mc)}",
        f"           {axis}{'  (log scale)' if scale.log else ''}",
    ])
