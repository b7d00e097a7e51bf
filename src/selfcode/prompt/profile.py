"""The hotspot table: where each benchmark's time goes, as `doctor --profile` and the run's
reports show it. Pure: rows from a `ProfileRun`, and a plain-text rendering of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from selfcode.sandbox.results import ProfileRun

if TYPE_CHECKING:
    from selfcode.history.db import History

__all__ = ["HotspotRow", "hotspot_rows", "hotspot_text", "notes", "recorded_profile"]

COLUMNS = ("benchmark", "function", "where", "own", "with callees", "calls", "per call",
           "called from", "hottest line")


@dataclass(frozen=True)
class HotspotRow:
    bench: str
    function: str
    where: str
    own: str
    cumulative: str
    calls: str
    per_call: str
    caller: str
    line: str

    def cells(self) -> tuple[str, ...]:
        return (self.bench, self.function, self.where, self.own, self.cumulative, self.calls,
                self.per_call, self.caller, self.line)


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def hotspot_rows(profile: ProfileRun | None, per_bench: int = 8) -> list[HotspotRow]:
    """The top `per_bench` functions of each benchmark by own time (module bodies left out)."""
    rows: list[HotspotRow] = []
    for bench in profile.benchmarks if profile else []:
        spots = sorted((s for s in bench.hotspots if s.name != "<module>"),
                       key=lambda s: -s.own_share)[:per_bench]
        for s in spots:
            caller = s.callers[0] if s.callers else None
            total = sum(x.seconds for x in s.lines)
            hot = max(s.lines, key=lambda x: x.seconds, default=None)
            rows.append(HotspotRow(
                bench=bench.name, function=s.name, where=f"{s.file}:{s.line}",
                own=f"{s.own_share:.0%}", cumulative=f"{s.cum_share:.0%}",
                calls=f"{s.calls:,}", per_call=_seconds(s.cum_per_call_s),
                caller=f"{caller.name} ({caller.file}:{caller.line})" if caller else "",
                line=f"{hot.line} ({hot.seconds / total:.0%})" if hot and total > 0 else ""))
    return rows


def notes(profile: ProfileRun | None) -> list[str]:
    """One sentence per benchmark that could not be profiled, or has no line timings."""
    out = []
    for bench in profile.benchmarks if profile else []:
        if bench.failure:
            out.append(f"{bench.name}: {bench.failure}")
        elif bench.note:
            out.append(f"{bench.name}: {bench.note}")
    return out


def hotspot_text(profile: ProfileRun | None) -> str:
    """The table in aligned plain text, then its notes."""
    rows = [COLUMNS, *(r.cells() for r in hotspot_rows(profile))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    if len(rows) == 1:
        lines.append("(no function of the repository's own took measurable time)")
    return "\n".join([*lines, *notes(profile)])


def recorded_profile(history: History, run_id: str) -> ProfileRun | None:
    """The first profile run `run_id` recorded (its starting baseline's), if any."""
    for event in history.events(run_id):
        if event.kind == "profile":
            try:
                return ProfileRun.model_validate_json(event.message)
            except ValidationError:
                return None
    return None
