"""The contract every model honours: `LLM.complete(messages) -> Reply`, and the types it speaks.

These are the small, stable names the rest of selfcode imports; nothing here talks to a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["LLM", "Message", "Reply", "Usage"]

Message = dict[str, str]
"""One chat message: {"role": "system" | "user" | "assistant", "content": "..."}."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage
    cost_usd: float  # 0.0 when the model is not in the price table
    model: str
    latency_s: float  # wall time of the whole complete() call, retries and waits included
    priced: bool  # False when the model had no price, so the UI can say "cost unknown"
    attempts: int = 1  # HTTP attempts it took (retries + 1)
    # Why the model stopped, as the endpoint says: "stop", or "length" when the reply hit
    # max_tokens and is cut off; None when unknown (replays, fakes, servers that do not say).
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    model: str

    def complete(self, messages: Sequence[Message]) -> Reply: ...
