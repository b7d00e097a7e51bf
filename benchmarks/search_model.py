"""Scripted models for bench_search: each reads the parent's code from the prompt and answers.

Both are responders for tests/openai_server.py (`server.responder = model`): called with the
request's JSON body, on the server's request thread, so they lock their own state. A reply
depends on the parent through the prompt's "## Files" section, which shows the files of the
candidate's parent as they are.

- `MixedModel` cycles through a rotation of kinds (good, broken, duplicate, malformed,
  slower) and answers each with the first move of that kind that applies to the parent;
- `LandscapeModel` recognises which state of `is_prime` the parent holds and offers that
  state's moves in turn (search_moves.OFFERS): a deceptive landscape.

A repair request (the model's earlier reply could not be applied) is answered with prose,
so a malformed reply costs its repair turns too, as with a model that does not follow the
format.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search_moves import LANDSCAPE, MALFORMED, OFFERS, Kind, Move, duplicate_move, landscape_move

# One file of the "## Files" section: its path (and marks such as "(read-only)"), its source.
FILE_BLOCK = re.compile(
    r"^(?P<path>[^\n`]+?)(?P<marks> \([^\n]*\))?\n```python\n(?P<source>.*?)\n```$",
    re.DOTALL | re.MULTILINE)
ROTATION: tuple[Kind, ...] = ("broken", "malformed", "good", "duplicate", "slower", "good")
FALLBACK: tuple[Kind, ...] = ("slower", "broken", "duplicate")


def user_messages(body: Any) -> list[str]:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    return [str(m.get("content", "")) for m in messages
            if isinstance(m, dict) and m.get("role") == "user"]


def prompt_files(prompt: str) -> dict[str, str]:
    """Every editable file the prompt shows under "## Files", by path (read-only ones left out)."""
    start = prompt.find("## Files\n")
    if start < 0:
        return {}
    end = prompt.find("\n## Repository map", start)
    section = prompt[start + len("## Files\n"): end if end >= 0 else len(prompt)]
    files: dict[str, str] = {}
    for match in FILE_BLOCK.finditer(section):
        if "read-only" not in (match["marks"] or ""):
            files[match["path"].strip()] = match["source"] + "\n"
    return files


@dataclass(frozen=True)
class Answered:
    """What one request was answered with, for the benchmark's own log."""

    request: int
    kind: Kind
    move: str


@dataclass
class MixedModel:
    moves: Sequence[Move]
    rotation: Sequence[Kind] = ROTATION
    log: list[Answered] = field(default_factory=list)
    _asked: int = 0  # first-turn requests: the rotation's position (repairs do not count)
    _given: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, body: Any) -> str:
        prompts = user_messages(body)
        with self._lock:
            number = len(self.log)
            if len(prompts) != 1:  # a repair turn
                self.log.append(Answered(number, "malformed", "repair"))
                return MALFORMED
            kind = self.rotation[self._asked % len(self.rotation)]
            self._asked += 1
            move = self._choose(kind, prompt_files(prompts[0]))
            self.log.append(Answered(number, move.kind if move else "malformed",
                                     move.name if move else "prose"))
        return move.reply() if move else MALFORMED

    def _choose(self, kind: Kind, files: dict[str, str]) -> Move | None:
        if kind == "malformed":
            return None
        for wanted in (kind, *FALLBACK):
            move = self._first(wanted, files)
            if move is not None:
                return move
        return None

    def _first(self, kind: Kind, files: dict[str, str]) -> Move | None:
        if kind == "duplicate":
            for path, source in sorted(files.items()):
                move = duplicate_move(path, source)
                if move is not None:
                    return move
            return None
        for move in self.moves:
            if move.kind == kind and move.applies_to(files) and move.name not in self._given:
                if kind == "good":  # a good idea is offered once; the others may repeat
                    self._given.add(move.name)
                return move
        return None


@dataclass
class LandscapeModel:
    """Offers, from each state of is_prime, that state's moves in turn (search_moves.OFFERS)."""

    log: list[Answered] = field(default_factory=list)
    _tried: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def state_of(files: dict[str, str]) -> str | None:
        source = next(iter(files.values()), "")
        return next((name for name, text in LANDSCAPE.items() if text in source), None)

    def __call__(self, body: Any) -> str:
        prompts = user_messages(body)
        with self._lock:
            number = len(self.log)
            state = self.state_of(prompt_files(prompts[0])) if len(prompts) == 1 else None
            if state is None:
                self.log.append(Answered(number, "malformed", "repair or unknown parent"))
                return MALFORMED
            offers = OFFERS[state]
            offer = offers[min(self._tried[state], len(offers) - 1)]
            self._tried[state] += 1
            move = landscape_move(state, offer)
            self.log.append(Answered(number, move.kind, move.name))
        return move.reply()
