"""`ReplayLLM`: recorded replies played back in order, from a JSONL file (one object a line).

The file format is the one `recording.RecordingLLM` writes; a hand-written file needs no more
than a "reply" a line. A replay checks that the prompts still fit what it recorded
(`ReplayDiverged` if not) and says when it runs out (`ReplayExhausted`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfcode.errors import ConfigError, LLMError
from selfcode.llm.protocol import Message, Reply, Usage
from selfcode.llm.retry import ContextLengthError
from selfcode.llm.text import last_user_message, one_line

__all__ = ["ReplayDiverged", "ReplayExhausted", "ReplayLLM"]


class ReplayExhausted(LLMError):
    """A replay (or scripted fake) was asked for more replies than it holds."""


class ReplayDiverged(LLMError):
    """A prompt no longer contains what the replay file expects, so its replies no longer fit."""


_ERROR_KINDS = ("context-length", "llm")  # a ContextLengthError, or any other LLMError


@dataclass(frozen=True)
class _Turn:
    line: int
    reply: str
    expect: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    cost_usd: float = 0.0
    priced: bool = True
    latency_s: float | None = None
    finish_reason: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content), when recorded
    error: tuple[str, str, float] | None = None  # (kind, message, factor): raised, not returned


_TURN_KEYS = {
    "reply", "expect", "prompt_tokens", "completion_tokens", "comment", "model", "cost_usd",
    "priced", "latency_s", "finish_reason", "messages", "error",
}


# --------------------------------------------------------------------------------------------
# Reading a line
# --------------------------------------------------------------------------------------------


def _parse_messages(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str) for m in value
    ):
        raise ConfigError(f"Replay file {where}: 'messages' must be a list of objects with "
                          "'role' and 'content' strings.")
    return tuple((m["role"], m["content"]) for m in value)


def _parse_error(value: object, where: str) -> tuple[str, str, float]:
    if not isinstance(value, dict) or value.get("kind") not in _ERROR_KINDS \
            or not isinstance(value.get("message"), str):
        raise ConfigError(f"Replay file {where}: 'error' must be an object with 'kind' "
                          f"({' or '.join(_ERROR_KINDS)}) and a 'message' string.")
    factor = value.get("factor", 0.5)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= 1:
        raise ConfigError(f"Replay file {where}: the error's 'factor' must be a number in (0, 1].")
    return str(value["kind"]), str(value["message"]), float(factor)


def _check_keys(obj: object, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ConfigError(f"Replay file {where} must be a JSON object with a 'reply' string.")
    unknown = sorted(set(obj) - _TURN_KEYS)
    if unknown:
        raise ConfigError(
            f"Replay file {where} has unknown key '{unknown[0]}'; "
            f"allowed keys are {', '.join(sorted(_TURN_KEYS))}."
        )
    return obj


def _parse_expect(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"Replay file {where}: 'expect' must be a list of strings.")
    return tuple(value)


def _parse_tokens(obj: Mapping[str, Any], where: str) -> dict[str, int]:
    tokens: dict[str, int] = {}
    for key in ("prompt_tokens", "completion_tokens"):
        value = obj.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"Replay file {where}: '{key}' must be a non-negative integer.")
        tokens[key] = value
    return tokens


def _parse_numbers(obj: Mapping[str, Any], where: str) -> dict[str, float | None]:
    numbers: dict[str, float | None] = {}
    for key in ("cost_usd", "latency_s"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value < 0 or not math.isfinite(value)):
            raise ConfigError(f"Replay file {where}: '{key}' must be a non-negative number.")
        numbers[key] = None if value is None else float(value)
    return numbers


def _parse_texts(obj: Mapping[str, Any], where: str) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    for key in ("model", "finish_reason"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"Replay file {where}: '{key}' must be a string.")
        texts[key] = value
    return texts


def _parse_turn(raw: object, line: int, source: str) -> _Turn:
    where = f"{source} line {line}"
    obj = _check_keys(raw, where)
    error = _parse_error(obj["error"], where) if obj.get("error") is not None else None
    reply = obj.get("reply", "" if error else None)
    if not isinstance(reply, str):
        raise ConfigError(f"Replay file {where} needs a 'reply' string.")
    expect = _parse_expect(obj.get("expect", []), where)
    tokens = _parse_tokens(obj, where)
    numbers = _parse_numbers(obj, where)
    texts = _parse_texts(obj, where)
    priced = obj.get("priced", True)
    if not isinstance(priced, bool):
        raise ConfigError(f"Replay file {where}: 'priced' must be true or false.")
    messages = obj.get("messages")
    return _Turn(
        line=line, reply=reply, expect=expect, **tokens,
        model=texts["model"], cost_usd=numbers["cost_usd"] or 0.0, priced=priced,
        latency_s=numbers["latency_s"], finish_reason=texts["finish_reason"],
        messages=None if messages is None else _parse_messages(messages, where), error=error,
    )


def _read_turns(path: Path | str) -> list[_Turn]:
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"The replay file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the replay file {path}: {one_line(str(exc))}.") from None
    turns: list[_Turn] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"Replay file {path} line {number} is not valid JSON ({exc.msg})."
            ) from None
        turns.append(_parse_turn(obj, number, str(path)))
    return turns


# --------------------------------------------------------------------------------------------
# Playing it back
# --------------------------------------------------------------------------------------------


def _first_difference(recorded: tuple[tuple[str, str], ...],
                      messages: Sequence[Message]) -> str | None:
    """Where `messages` stop being the recorded conversation, in words; None if they are it."""
    now = tuple((m.get("role", ""), m.get("content", "")) for m in messages)
    if now == recorded:
        return None
    for index, (old, new) in enumerate(zip(recorded, now, strict=False), start=1):
        if old == new:
            continue
        if old[0] != new[0]:
            return f"message {index} is from the {new[0]} now, the {old[0]} when recorded"
        at = next((k for k, (a, b) in enumerate(zip(old[1], new[1], strict=False)) if a != b),
                  min(len(old[1]), len(new[1])))
        return (f"message {index} ({new[0]}) differs from character {at + 1}: recorded "
                f"{old[1][at:at + 40]!r}, now {new[1][at:at + 40]!r}")
    return f"the conversation has {len(now)} messages now, {len(recorded)} when recorded"


_TAKING = threading.Lock()


class ReplayLLM:
    """Plays recorded replies in order, from a JSONL file (one JSON object a line).

    Each line: {"reply": "...", "expect": ["substrings of the last user message"],
    "prompt_tokens": 0, "completion_tokens": 0}; blank lines are skipped and a "comment"
    key is allowed. What `RecordingLLM` writes is replayed exactly: "model", "cost_usd",
    "priced", "latency_s" and "finish_reason" come back in the `Reply`, and a line with
    "error": {"kind": "context-length" | "llm", "message": "...", "factor": 0.5} raises that
    error instead of replying. Without them a reply costs nothing and counts as priced.

    A prompt without an "expect" substring raises ReplayDiverged; with `strict=True`, so does
    any difference from a line's recorded "messages", with the first difference named.
    """

    def __init__(self, path: Path | str, model: str = "replay", strict: bool = False) -> None:
        self.model: str = model
        self.source = str(path)
        self.strict = strict
        self._turns: list[_Turn] = _read_turns(path)
        self._next = 0

    @classmethod
    def from_replies(cls, replies: Sequence[str], model: str = "replay") -> ReplayLLM:
        """A replay of the given texts, in order, with no expectations."""
        return cls.from_turns([{"reply": reply} for reply in replies], model=model,
                              source="<replies>")

    @classmethod
    def from_turns(cls, turns: Sequence[Mapping[str, Any]], model: str = "replay",
                   source: str = "<turns>", strict: bool = False) -> ReplayLLM:
        """A replay of turns given as the objects a replay file holds, one a line."""
        llm = cls.__new__(cls)
        llm.model = model
        llm.source = source
        llm.strict = strict
        llm._turns = [_parse_turn(dict(turn), i, source) for i, turn in enumerate(turns, start=1)]
        llm._next = 0
        return llm

    @property
    def remaining(self) -> int:
        return len(self._turns) - self._next

    def complete(self, messages: Sequence[Message]) -> Reply:
        started = time.monotonic()
        with _TAKING:  # candidates in flight ask from their own threads: one turn each
            if self._next >= len(self._turns):
                raise ReplayExhausted(
                    f"The replay {self.source} has no reply left after {len(self._turns)}; "
                    "record more replies or run fewer iterations."
                )
            turn = self._turns[self._next]
            self._check_fits(turn, messages)
            self._next += 1
        if turn.error is not None:
            kind, message, factor = turn.error
            if kind == "context-length":
                raise ContextLengthError(message, factor=factor)
            raise LLMError(message)
        return Reply(
            text=turn.reply,
            usage=Usage(turn.prompt_tokens, turn.completion_tokens),
            cost_usd=turn.cost_usd,
            model=turn.model or self.model,
            latency_s=time.monotonic() - started if turn.latency_s is None else turn.latency_s,
            priced=turn.priced,
            finish_reason=turn.finish_reason,
        )

    def _check_fits(self, turn: _Turn, messages: Sequence[Message]) -> None:
        """ReplayDiverged unless `messages` are what `turn` was recorded for."""
        prompt = last_user_message(messages)
        for needle in turn.expect:
            if needle not in prompt:
                raise ReplayDiverged(
                    f"The replay {self.source} line {turn.line} expects the prompt to contain "
                    f"{needle!r}, but it does not; re-record the replay for the current prompts."
                )
        if self.strict and turn.messages is not None:
            difference = _first_difference(turn.messages, messages)
            if difference is not None:
                raise ReplayDiverged(
                    f"The replay {self.source} line {turn.line} was recorded for another "
                    f"conversation: {difference}; re-record the replay for the current prompts."
                )
