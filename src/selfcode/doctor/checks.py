"""One line of `selfcode doctor`: what was checked, whether it passed, one sentence, how long.

A failed check that `required` says `improve` cannot work (exit 1); a failed check that is not
required is a warning: `improve` works, but maybe not as the user expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    """One sentence: what was found, or what failed and the next step."""
    seconds: float = 0.0
    required: bool = True

    @property
    def failed(self) -> bool:
        """Whether this check stops `improve` from working."""
        return not self.ok and self.required


Report = Callable[[Check], None]
"""Receives each check as soon as it is made (the CLI prints it; a test collects it)."""


class Stopwatch:
    """Seconds since it started, rounded for a report."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def seconds_text(seconds: float) -> str:
    """"0.04s", "3.2s", "95s", "4.1 min": short, and as precise as an estimate deserves."""
    if seconds < 0.1:
        return f"{seconds:.2f}s"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f} min"
