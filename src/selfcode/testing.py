"""Fake models for tests, yours included: no network, no cost, full control over the replies.

`ScriptedLLM(["first reply", "second reply"])` answers in order; `FunctionLLM(fn)` answers
`fn(messages)`. Both keep the messages of every request in `.calls`, so a test can assert
what the code under test asked, e.g. `assert "goal" in llm.calls[0][-1]["content"]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from selfcode.llm import Message, ReplayExhausted, Reply, Usage

__all__ = ["FunctionLLM", "ScriptedLLM"]


def _reply(text: str, model: str, started: float) -> Reply:
    return Reply(
        text=text,
        usage=Usage(),
        cost_usd=0.0,
        model=model,
        latency_s=time.monotonic() - started,
        priced=True,
    )


class FunctionLLM:
    """Answers every request with `fn(messages)`; records each request's messages in `.calls`."""

    def __init__(self, fn: Callable[[list[Message]], str], model: str = "function") -> None:
        self.fn = fn
        self.model: str = model
        self.calls: list[list[Message]] = []

    def complete(self, messages: Sequence[Message]) -> Reply:
        started = time.monotonic()
        copied = [dict(message) for message in messages]
        self.calls.append(copied)
        return _reply(self.fn([dict(message) for message in copied]), self.model, started)


class ScriptedLLM:
    """Returns `replies` in order and records each request's messages in `.calls`.

    Asking for more replies than were scripted raises `selfcode.llm.ReplayExhausted`.
    """

    def __init__(self, replies: Sequence[str], model: str = "scripted") -> None:
        self.replies: list[str] = list(replies)
        self.model: str = model
        self.calls: list[list[Message]] = []

    def complete(self, messages: Sequence[Message]) -> Reply:
        started = time.monotonic()
        self.calls.append([dict(message) for message in messages])
        index = len(self.calls) - 1
        if index >= len(self.replies):
            raise ReplayExhausted(
                f"ScriptedLLM was asked for reply {index + 1} but holds only "
                f"{len(self.replies)}; script more replies."
            )
        return _reply(self.replies[index], self.model, started)
