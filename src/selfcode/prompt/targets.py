"""Which hot function each candidate is aimed at: pure functions over the baseline's profile.

`targets_of` turns the profile (sandbox/results.py `ProfileRun`) into a ranked list of the
repository's own editable functions, each at its largest share of some benchmark's time;
`choose_target` rotates the candidates over the top few and lets a target whose candidates keep
failing yield to the next. No I/O, no prompt text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from selfcode.sandbox.results import Hotspot, ProfileRun

__all__ = ["Target", "choose_target", "targets_of"]

MIN_SHARE = 0.01
"""A function under 1 % of every benchmark's time is not worth a candidate."""


@dataclass(frozen=True)
class Target:
    file: str
    line: int
    name: str
    bench: str
    share: float
    """Own time (with its comprehensions and lambdas) over `bench`'s profiled time."""
    cum_share: float
    calls: int
    callers: tuple[tuple[str, int, str, int], ...] = ()
    """(file, line, name, calls) of the functions that call it, most calls first."""
    lines: tuple[tuple[int, float], ...] = ()
    """(line, share of the function's traced time), hottest first; () without line timings."""

    @property
    def key(self) -> str:
        return f"{self.file}:{self.line}:{self.name}"


def _anonymous(name: str) -> bool:
    return name.startswith("<") and name != "<module>"


def _owner(spot: Hotspot) -> tuple[str, int, str] | None:
    """The function a comprehension, lambda or generator expression belongs to."""
    for c in spot.callers:
        if c.file == spot.file and not c.name.startswith("<"):
            return (c.file, c.line, c.name)
    return None


def _line_shares(spot: Hotspot) -> tuple[tuple[int, float], ...]:
    total = sum(x.seconds for x in spot.lines)
    if total <= 0:
        return ()
    return tuple((x.line, x.seconds / total) for x in spot.lines)


def _bench_targets(name: str, spots: Sequence[Hotspot]) -> dict[tuple[str, int, str], Target]:
    own: dict[tuple[str, int, str], float] = {}
    owners: dict[tuple[str, int, str], tuple[str, int, str]] = {}
    for spot in spots:
        key = (spot.file, spot.line, spot.name)
        if _anonymous(spot.name):
            owners[key] = _owner(spot) or key
            key = owners[key]
        own[key] = own.get(key, 0.0) + spot.own_share
    found = {}
    for spot in spots:
        key = (spot.file, spot.line, spot.name)
        if _anonymous(spot.name) or spot.name == "<module>" or key not in own:
            continue
        # A comprehension calling it stands for the function the comprehension is in.
        callers = tuple(sorted(((*owners.get((c.file, c.line, c.name), (c.file, c.line, c.name)),
                                 c.calls) for c in spot.callers), key=lambda c: -c[3]))
        found[key] = Target(file=spot.file, line=spot.line, name=spot.name, bench=name,
                            share=min(1.0, own[key]), cum_share=spot.cum_share,
                            calls=spot.calls, callers=callers, lines=_line_shares(spot))
    return found


def targets_of(profile: ProfileRun | None, editable: Callable[[str], bool],
               limit: int = 8) -> list[Target]:
    """The hottest editable functions, each at its largest share of one benchmark, hottest
    first (ties by path, so the order is stable)."""
    best: dict[tuple[str, int, str], Target] = {}
    for bench in profile.benchmarks if profile else []:
        for key, target in _bench_targets(bench.name, bench.hotspots).items():
            if editable(target.file) and (key not in best or target.share > best[key].share):
                best[key] = target
    ranked = sorted(best.values(), key=lambda t: (-t.share, t.file, t.line))
    return [t for t in ranked if t.share >= MIN_SHARE][:limit]


def choose_target(targets: Sequence[Target], history: Sequence[tuple[str, str]],
                  width: int = 3, patience: int = 2) -> Target | None:
    """The next candidate's target.

    `history`: (target key, status) of the earlier candidates, oldest first. A target whose
    last `patience` candidates all failed yields to the next ones (until every target has
    failed that often; then all are eligible again). Among the first `width` eligible
    targets worth a tenth of the hottest target's share, the least tried goes next, the hotter
    first on a tie.
    """
    if not targets:
        return None
    tries: dict[str, int] = {}
    failures: dict[str, int] = {}
    for key, status in history:
        tries[key] = tries.get(key, 0) + 1
        failures[key] = 0 if status == "accepted" else failures.get(key, 0) + 1
    floor = max(t.share for t in targets) / 10
    worthy = [t for t in targets if t.share >= floor]
    pool = ([t for t in worthy if failures.get(t.key, 0) < patience] or worthy)[:width]
    return min(pool, key=lambda t: (tries.get(t.key, 0), pool.index(t)))
