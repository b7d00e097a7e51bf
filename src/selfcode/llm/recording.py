"""`RecordingLLM`: wraps a model and appends every exchange to a JSONL file `ReplayLLM` replays.

Recording a real run and replaying it makes that run repeatable offline, at no cost.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfcode.errors import ConfigError, LLMError
from selfcode.llm.protocol import LLM, Message, Reply
from selfcode.llm.retry import ContextLengthError
from selfcode.llm.text import last_user_message, one_line

__all__ = ["RecordingLLM", "distinctive_substring"]

_EXPECT_CHARS = 60
_EXPECT_MIN_CHARS = 16


def distinctive_substring(prompt: str, seen: set[str]) -> str:
    """A short piece of `prompt` that earlier prompts (whose lines are in `seen`) lacked.

    The last new line of at least 16 characters (what changes between turns, such as an error
    message or the latest attempt, comes last), else the last new line, else the longest line;
    stripped and cut to 60 characters. "" for a blank prompt.
    """
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    if not lines:
        return ""
    fresh = [line for line in lines if line not in seen]
    long_fresh = [line for line in fresh if len(line) >= _EXPECT_MIN_CHARS]
    pick = long_fresh[-1] if long_fresh else fresh[-1] if fresh else max(lines, key=len)
    return pick[:_EXPECT_CHARS].strip()


_APPENDING = threading.Lock()


class RecordingLLM:
    """Wraps a model and appends every exchange to a JSONL file that `ReplayLLM` replays exactly.

    Each line holds the messages, the reply, its usage, cost, model, latency and finish reason,
    and an "expect" substring of the last user message, so that a replay whose prompts drift
    says so. An `LLMError` (a context-length error included) is recorded as an "error" line and
    raised again. Lines are appended and flushed to disk one exchange at a time, so a crash
    loses nothing; an existing file is appended to.
    """

    def __init__(self, inner: LLM, path: Path | str) -> None:
        self.inner = inner
        self.model: str = inner.model
        self.path = Path(path)
        self._seen: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as exc:
            raise ConfigError(f"Cannot write the record file {self.path}: "
                              f"{one_line(str(exc))}.") from None

    def __repr__(self) -> str:
        return f"RecordingLLM({self.inner!r}, path={str(self.path)!r})"

    def complete(self, messages: Sequence[Message]) -> Reply:
        prompt = last_user_message(messages)
        expect = distinctive_substring(prompt, self._seen)
        entry: dict[str, Any] = {"expect": [expect] if expect else []}
        try:
            reply = self.inner.complete(messages)
        except LLMError as exc:
            kind = "context-length" if isinstance(exc, ContextLengthError) else "llm"
            error: dict[str, Any] = {"kind": kind, "message": str(exc)}
            if isinstance(exc, ContextLengthError):
                error["factor"] = exc.factor
            entry.update(reply="", error=error, model=self.model)
            self._write(entry, messages, prompt)
            raise
        entry.update(
            reply=reply.text, prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens, model=reply.model,
            cost_usd=reply.cost_usd, priced=reply.priced, latency_s=round(reply.latency_s, 6),
            finish_reason=reply.finish_reason,
        )
        self._write(entry, messages, prompt)
        return reply

    def _write(self, entry: dict[str, Any], messages: Sequence[Message], prompt: str) -> None:
        entry["messages"] = [{"role": m.get("role", ""), "content": m.get("content", "")}
                             for m in messages]
        self._seen.update(line.strip() for line in prompt.splitlines() if line.strip())
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            # Candidates in flight record from their own threads: one whole line at a time.
            with _APPENDING, self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise ConfigError(f"Cannot append to the record file {self.path}: "
                              f"{one_line(str(exc))}.") from None
