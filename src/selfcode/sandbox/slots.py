"""The exclusive timing slot: CPU-time measurement never shares the machine with another.

With several candidates judged at once (`--jobs N`, one sandbox each), two CPU-time runs side by
side would measure each other: the paired test stays valid, but its noise would no longer be
the noise the A/A calibration measured. So every CPU-time run (calibration, screen, confirmation,
the CPU/wall/memory check) holds the one process-wide `TimingSlot` while it runs; instruction
counts are deterministic and take no slot. `Trees` holds it (sandbox/trees.py); each Trees that
is given no slot gets a private one, which no one else can hold, so a lone judge never waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Hold:
    """One holding of the slot: why, and how long it waited for it."""

    reason: str
    waited: float = 0.0


class TimingSlot:
    """A re-entrant lock with a record of who holds it and how long holders waited."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._guard = threading.Lock()  # for the statistics below, never held while waiting
        self._holders: list[str] = []
        self.waited_seconds = 0.0
        """Total time every hold of this slot spent waiting for it."""
        self.holds = 0

    @property
    def holder(self) -> str | None:
        """Why the slot is held right now (the outermost hold), or None."""
        with self._guard:
            return self._holders[0] if self._holders else None

    @contextmanager
    def hold(self, reason: str) -> Iterator[Hold]:
        """Wait for the slot, hold it for the block; the same thread may hold it again inside."""
        held = Hold(reason)
        start = time.monotonic()
        with self._lock:
            held.waited = time.monotonic() - start
            with self._guard:
                self._holders.append(reason)
                self.waited_seconds += held.waited
                self.holds += 1
            try:
                yield held
            finally:
                with self._guard:
                    self._holders.pop()


_PROCESS_SLOT = TimingSlot()


def process_timing_slot() -> TimingSlot:
    """The one slot every judge of this process shares (`--jobs N`)."""
    return _PROCESS_SLOT
