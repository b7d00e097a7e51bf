"""Run-wide caps on what a run may spend: USD, tokens and wall-clock minutes.

A `Budget` is charged with every reply and asked, between steps, whether a cap is reached:

    budget = Budget.from_config(settings.agent)
    budget.charge(reply)
    reason = budget.exceeded()   # None, or one sentence saying which cap and by how much

It keeps no global state and reads time only through the `clock` it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from selfcode.config import AgentConfig
from selfcode.llm.client import Reply

__all__ = ["Budget"]


@dataclass
class Budget:
    max_usd: float | None = None
    max_tokens: int | None = None  # prompt + completion tokens over the whole run
    max_minutes: float | None = None
    spent_usd: float = 0.0
    tokens: int = 0
    unpriced: bool = False  # some reply came from a model without a price: its cost is unknown
    elapsed_before: float = 0.0  # seconds spent before this process started (a resumed run)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started: float | None = None  # clock() when the budget was made, unless given

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    @classmethod
    def from_config(cls, agent: AgentConfig, *, spent_usd: float = 0.0, tokens: int = 0,
                    elapsed_minutes: float = 0.0,
                    clock: Callable[[], float] = time.monotonic) -> Budget:
        """The caps of `agent` (budget_usd, max_tokens_total, max_minutes), with what a resumed
        run had already spent."""
        return cls(max_usd=agent.budget_usd, max_tokens=agent.max_tokens_total,
                   max_minutes=agent.max_minutes, spent_usd=spent_usd, tokens=tokens,
                   elapsed_before=elapsed_minutes * 60, clock=clock)

    def charge(self, reply: Reply) -> None:
        """Count one reply's cost and tokens."""
        self.spent_usd += reply.cost_usd
        self.tokens += reply.usage.total_tokens
        self.unpriced |= not reply.priced

    @property
    def minutes(self) -> float:
        """Wall-clock minutes of the run so far."""
        assert self.started is not None
        return (self.elapsed_before + self.clock() - self.started) / 60

    def exceeded(self) -> str | None:
        """One sentence naming the cap that is reached, or None while every cap holds."""
        if self.max_usd is not None and self.spent_usd >= self.max_usd:
            return (f"The budget of ${self.max_usd:.2f} is spent "
                    f"(${self.spent_usd:.4f} used).")
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
