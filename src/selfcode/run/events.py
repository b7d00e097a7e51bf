"""An observer that writes what a run does into its history before passing it on.

Phases (asking, applying, testing, benchmarking, committing), verdicts, notes and warnings
become rows of the `events` table as they happen, so the history says where a run was when
it stopped, and a watcher (a test, a dashboard) can follow it.
"""

from __future__ import annotations

from typing import Any, Protocol

from selfcode.history.db import History

RECORDED = ("start", "phase", "candidate", "note", "warning", "retry")


class Observer(Protocol):
    """Anything that shows or records what a run is doing; one event at a time."""

    def event(self, kind: str, message: str, **data: Any) -> None: ...


class RecordingObserver:
    def __init__(self, inner: Observer, history: History, run_id: str) -> None:
        self.inner, self.history, self.run_id = inner, history, run_id
        self.n: int | None = None

    def event(self, kind: str, message: str, **data: Any) -> None:
        if "n" in data:
            self.n = int(data["n"])
        if kind in RECORDED:
            self.history.add_event(self.run_id, kind, message, candidate_n=self.n)
        if kind == "candidate":
            self.n = None
        self.inner.event(kind, message, **data)
