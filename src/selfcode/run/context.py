"""One run's shared state, as one object that the loop and the proposer are given.

The settings, the git store, the history, the run's worktree and archive, the observer and
the ledger belong to the run, not to any one component: `improve` builds a `Run` once and
the parts take it instead of a dozen parameters each. The few helpers here are the ones
every part needs with the run id filled in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from selfcode.config import Settings
from selfcode.git.archive import Archive
from selfcode.git.store import GitStore
from selfcode.git.worktree import RunWorktree
from selfcode.history.db import History
from selfcode.llm import Reply
from selfcode.report.units import fmt_cost
from selfcode.run.events import Observer
from selfcode.run.ledger import Ledger

_CHARGING = threading.Lock()


@dataclass
class Run:
    settings: Settings
    store: GitStore
    history: History
    archive: Archive  # commits and keeps this run's candidates; it knows the run id
    worktree: RunWorktree
    observer: Observer
    ledger: Ledger

    @property
    def run_id(self) -> str:
        return self.archive.run_id

    def update(self, n: int, **fields: Any) -> None:
        """Record fields of candidate `n` (see `History.update_candidate`)."""
        self.history.update_candidate(self.run_id, n, **fields)

    def charge(self, reply: Reply) -> None:
        """Count a reply in the ledger and tell the observer what the run has spent."""
        with _CHARGING:  # replies of candidates in flight arrive on their own threads
            first_unpriced = not reply.priced and not self.ledger.unpriced
            self.ledger.charge(reply)
            warning = self.ledger.unenforced() if first_unpriced else None
        if warning:
            self.observer.event("warning", warning)
        spent = fmt_cost(self.ledger.cost_usd, known=not self.ledger.unpriced)
        self.observer.event("spend", spent, cost=self.ledger.cost_usd,
                            tokens=self.ledger.tokens)
