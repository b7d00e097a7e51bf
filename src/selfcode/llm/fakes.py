"""Fake models for tests, yours included: no network, no cost, full control over the replies.

`ScriptedLLM(["first reply", "second reply"])` answers in order; an item that is an exception
(e.g. `ContextLengthError("too long", factor=0.5)`) is raised instead, and `usage`/`cost_usd`
make every reply count against a budget. `FunctionLLM(fn)` answers `fn(messages)`. Both keep the
messages of every request in `.calls`, so a test can assert what the code under test asked,
e.g. `assert "goal" in llm.calls[0][-1]["content"]`. `FakeClock` stands in for time.monotonic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from selfcode.llm.protocol import Message, Reply, Usage
from selfcode.llm.replay import ReplayExhausted

__all__ = ["FakeClock", "FunctionLLM", "ScriptedLLM"]

_NO_USAGE = Usage()


def _reply(text: str, model: str, started: float, usage: Usage = _NO_USAGE,
           cost_usd: float = 0.0) -> Reply:
    return Reply(
        text=text,
        usage=usage,
        cost_usd=cost_usd,
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
    """Returns `replies` in order (raising the ones that are exceptions) and records each
    request's messages in `.calls`; every reply reports `usage` and costs `cost_usd`.

    Asking for more replies than were scripted raises `selfcode.llm.ReplayExhausted`.
    """

    def __init__(self, replies: Sequence[str | BaseException], model: str = "scripted",
                 usage: Usage = _NO_USAGE, cost_usd: float = 0.0) -> None:
        self.replies: list[str | BaseException] = list(replies)
        self.model: str = model
        self.usage = usage
        self.cost_usd = cost_usd
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
        item = self.replies[index]
        if isinstance(item, BaseException):
            raise item
        return _reply(item, self.model, started, self.usage, self.cost_usd)


class FakeClock:
    """A clock for code that takes `clock=time.monotonic`: it moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
