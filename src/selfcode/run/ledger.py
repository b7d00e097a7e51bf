"""A run's ledger: what it spent, what its candidates came to, and whether a cap is reached.

One object counts the cost, tokens and unpriced replies, the candidates by status, the
commits and the best speedup, so the loop, a resumed run and the summary read one set of
numbers. It is charged with every reply and asked, between steps, whether a cap is reached:

    ledger = Ledger.from_config(settings.agent)
    ledger.charge(reply)
    reason = ledger.exceeded()   # None, or one sentence saying which cap and by how much

It keeps no global state and reads time only through the `clock` it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from selfcode.config import AgentConfig
from selfcode.history.views import best_speedup
from selfcode.llm import Reply

__all__ = ["Ledger"]


@dataclass
class Ledger:
    max_usd: float | None = None
    max_tokens: int | None = None  # prompt + completion tokens over the whole run
    max_minutes: float | None = None
    cost_usd: float = 0.0
    tokens: int = 0
    unpriced: bool = False  # some reply came from a model without a price: its cost is unknown
    statuses: dict[str, int] = field(default_factory=dict)  # candidates by status
    commits: list[str] = field(default_factory=list)  # the accepted candidates' commits
    best_speedup: float | None = None
    aa_sentinels: int = 0  # A/A checks: the unchanged code judged against itself
    aa_false_accepts: int = 0  # how many of them the gate called faster
    elapsed_before: float = 0.0  # seconds spent before this process started (a resumed run)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started: float | None = None  # clock() when the ledger was made, unless given

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    @classmethod
    def from_config(cls, agent: AgentConfig, *, elapsed_minutes: float = 0.0,
                    clock: Callable[[], float] = time.monotonic) -> Ledger:
        """The caps of `agent` (budget_usd, max_tokens_total, max_minutes); a resumed run
        passes the minutes it had already run."""
        return cls(max_usd=agent.budget_usd, max_tokens=agent.max_tokens_total,
                   max_minutes=agent.max_minutes, elapsed_before=elapsed_minutes * 60,
                   clock=clock)

    # -- spending ---------------------------------------------------------------------------

    def charge(self, reply: Reply) -> None:
        """Count one reply's cost and tokens."""
        self.cost_usd += reply.cost_usd
        self.tokens += reply.usage.total_tokens
        self.unpriced |= not reply.priced

    @property
    def minutes(self) -> float:
        """Wall-clock minutes of the run so far."""
        assert self.started is not None
        return (self.elapsed_before + self.clock() - self.started) / 60

    def exceeded(self) -> str | None:
        """One sentence naming the cap that is reached, or None while every cap holds."""
        if self.max_usd is not None and self.cost_usd >= self.max_usd:
            return (f"The budget of ${self.max_usd:.2f} is spent "
                    f"(${self.cost_usd:.4f} used).")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return (f"The limit of {self.max_tokens:,} tokens is reached "
                    f"({self.tokens:,} used).")
        if self.max_minutes is not None:
            minutes = self.minutes
            if minutes >= self.max_minutes:
                return (f"The time limit of {self.max_minutes:g} minutes is reached "
                        f"({minutes:.1f} minutes).")
        return None

    def unenforced(self) -> str | None:
        """One sentence when the USD cap cannot hold because some model has no price."""
        if self.max_usd is not None and self.unpriced:
            return (f"The budget of ${self.max_usd:.2f} cannot be enforced: the model has no "
                    "price in the table, so its cost counts as $0; add its price under "
                    "[tool.selfcode.llm] prices, or cap tokens with --max-tokens.")
        return None

    # -- candidates -------------------------------------------------------------------------

    @property
    def candidates(self) -> int:
        """Every candidate counted, the one in flight included."""
        return sum(self.statuses.values())

    @property
    def accepted(self) -> int:
        return self.statuses.get("accepted", 0)

    def record(self, status: str, *, commit: str | None = None,
               speedup: float | None = None) -> None:
        """Count one candidate that ended with `status`; an accepted one brings its commit
        and its speedup."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if commit:
            self.commits.append(commit)
        self.note_speedup(speedup)

    def begin(self) -> None:
        """A new candidate is in flight; it counts as proposed until `settle`."""
        self.record("proposed")

    def settle(self, status: str, *, commit: str | None = None,
               speedup: float | None = None) -> None:
        """The candidate in flight ended with `status`."""
        self.statuses["proposed"] -= 1
        self.record(status, commit=commit, speedup=speedup)

    def note_speedup(self, speedup: float | None) -> None:
        """Keep the best speedup of the run's commits, by the rule the run's report uses."""
        self.best_speedup = best_speedup(self.best_speedup, speedup)

    def sentinel(self, judged_faster: bool) -> None:
        """Count one A/A sentinel, and whether the gate called the unchanged code faster."""
        self.aa_sentinels += 1
        self.aa_false_accepts += judged_faster
