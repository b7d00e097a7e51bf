"""The exclusive timing slot: CPU-time measurement never shares the machine with another judge.

With several candidates judged at once (`--jobs N`, one sandbox each), anything another judge
runs beside a CPU-time run measures into it: another CPU-time run, and as much a test suite, an
instruction count under valgrind, an equivalence check or an install. A candidate can even time
such load on purpose (its tests run in one sandbox while its twin's benchmark is timed in
another), which no A/A calibration ever sees. So the slot is a readers-writer lock: every
CPU-time run (calibration, screen, confirmation, the CPU/wall/memory check) holds it alone
(`hold`), and every other harness run of a judge holds it shared (`share`, sandbox/trees.py):
instruction counts, tests and the rest still run side by side with each other, never beside a
timing run. A waiting timing run goes first: no new shared holder starts until it has run.
Each Trees that is given no slot gets a private one, which no one else can hold, so a lone judge
never waits.
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
    """A re-entrant readers-writer lock with a record of who holds it alone and how long
    those holders waited. The thread holding it alone may hold it again, either way; a
    thread holding it shared may hold it shared again, never alone (that would wait for
    itself)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None  # the thread holding it alone
        self._depth = 0  # how many times the owner holds it
        self._shared: dict[int, int] = {}  # thread -> how many shared holds
        self._waiting = 0  # threads waiting to hold it alone
        self._holders: list[str] = []
        self.waited_seconds = 0.0
        """Total time every hold of this slot alone spent waiting for it."""
        self.holds = 0
        """How many times it was held alone."""

    @property
    def holder(self) -> str | None:
        """Why the slot is held alone right now (the outermost hold), or None."""
        with self._cond:
            return self._holders[0] if self._holders else None

    @contextmanager
    def hold(self, reason: str) -> Iterator[Hold]:
        """Wait until no one else holds it (alone or shared), hold it alone for the block."""
        me = threading.get_ident()
        held = Hold(reason)
        start = time.monotonic()
        with self._cond:
            if self._owner != me:
                if me in self._shared:
                    raise RuntimeError("a shared holder of the timing slot cannot hold it alone")
                self._waiting += 1
                try:
                    while self._owner is not None or self._shared:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
            self._owner, self._depth = me, self._depth + 1
            held.waited = time.monotonic() - start
            self._holders.append(reason)
            self.waited_seconds += held.waited
            self.holds += 1
        try:
            yield held
        finally:
            with self._cond:
                self._holders.pop()
                self._depth -= 1
                if not self._depth:
                    self._owner = None
                self._cond.notify_all()

    @contextmanager
    def share(self) -> Iterator[None]:
        """Wait until no one else holds it alone (and no one waits to), hold it shared."""
        me = threading.get_ident()
        with self._cond:
            if self._owner != me and me not in self._shared:
                while self._owner is not None or self._waiting:
                    self._cond.wait()
            self._shared[me] = self._shared.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._shared[me] -= 1
                if not self._shared[me]:
                    del self._shared[me]
                self._cond.notify_all()


_PROCESS_SLOT = TimingSlot()


def process_timing_slot() -> TimingSlot:
    """The one slot every judge of this process shares (`--jobs N`)."""
    return _PROCESS_SLOT
