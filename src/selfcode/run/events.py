"""What a run reports as it goes, and an observer that writes it into the history.

An event is a kind from the closed set `EventKind` (a typo is a type error, not an event
nobody shows) and one sentence, with data some kinds carry (`n`, the candidate; `reasons`,
`verdict`, `cost`, `tokens`, `turn`, `run_id`, `branch`).

Phases (asking, applying, testing, benchmarking, committing), verdicts, notes and warnings
become rows of the `events` table as they happen, so the history says where a run was when
it stopped, and a watcher (a test, a dashboard) can follow it.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Protocol

from selfcode.history.db import History

EventKind = Literal["start", "phase", "candidate", "note", "warning", "retry", "spend",
                    "repair"]
"""start: the run began or resumed; phase: what it is doing now; candidate: a candidate's
status (message) with its reasons and verdict; note, warning: a sentence for the user;
retry: the model's endpoint is retried; spend: the run's cost so far; repair: a reply was
unusable and the model is asked again."""

# The kinds kept in the history's events table, under the same kind string as here.
RECORDED: Final[frozenset[EventKind]] = frozenset(
    {"start", "phase", "candidate", "note", "warning", "retry"})


class Observer(Protocol):
    """Anything that shows or records what a run is doing; one event at a time."""

    def event(self, kind: EventKind, message: str, **data: Any) -> None: ...


class RecordingObserver:
    def __init__(self, inner: Observer, history: History, run_id: str) -> None:
        self.inner, self.history, self.run_id = inner, history, run_id
        self.n: int | None = None

    def event(self, kind: EventKind, message: str, **data: Any) -> None:
        if "n" in data:
            self.n = int(data["n"])
        if kind in RECORDED:
            self.history.add_event(self.run_id, kind, message, candidate_n=self.n)
        if kind == "candidate":
            self.n = None
        self.inner.event(kind, message, **data)
