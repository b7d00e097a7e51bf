"""Prompt text stored once: each message cut into pieces, each distinct piece kept once.

A candidate's prompt repeats most of the one before it: the system message, the rules, the
repository map, the sources of the target's files, and on a repair turn the whole previous
conversation. `history.db` keeps every exchange exactly, so instead of the messages it keeps,
per message, the list of its pieces' ids in the `texts` table (m003), where a piece is stored
once under its sha256. Reading an exchange joins its pieces back: the same text, character
for character, whichever way it was cut.

How a text is cut is the writer's choice and may change without a migration: before every
markdown heading (`## `) and code fence, so a section or a file's source is a piece of its
own whatever comes before it; a piece longer than `_LONG` is cut further after lines chosen
by their content alone (a content-defined cut), so a long repository map that differs in a
few lines, or in the order of a few entries, still shares most of its pieces.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_CUT = re.compile(r"^(?=## |```)", re.M)
_LONG = 2048
"""A piece longer than this (in characters) is cut further at content-defined lines."""
_MIN = 512
"""Content-defined cuts leave at least this many characters in a piece."""
_ONE_IN = 16
"""A line ends a piece (past `_MIN`) when its CRC-32 is a multiple of this: ~1 line in 16."""
_BATCH = 500
"""Ids per `IN (...)` when reading texts (below SQLite's oldest variable limit, 999)."""


def split(text: str) -> list[str]:
    """`text` as pieces that join back to it exactly (`"".join(split(t)) == t`)."""
    pieces: list[str] = []
    for part in _CUT.split(text):
        if len(part) > _LONG:
            pieces.extend(_content_defined(part))
        elif part:
            pieces.append(part)
    return pieces


def _content_defined(part: str) -> list[str]:
    """`part` cut after lines picked by their own content, so equal stretches cut alike."""
    pieces: list[str] = []
    start = size = 0
    for line in part.splitlines(keepends=True):
        size += len(line)
        if size - start >= _MIN and zlib.crc32(line.encode()) % _ONE_IN == 0:
            pieces.append(part[start:size])
            start = size
    if start < len(part):
        pieces.append(part[start:])
    return pieces


def digest(piece: str) -> bytes:
    """The key a piece is stored under: the sha256 of its UTF-8."""
    return hashlib.sha256(piece.encode()).digest()


def store(db: sqlite3.Connection, pieces: Sequence[str]) -> list[int]:
    """The ids of `pieces` in the texts table, adding those not there yet."""
    ids: list[int] = []
    for piece in pieces:
        key = digest(piece)
        db.execute("INSERT OR IGNORE INTO texts (sha256, text) VALUES (?, ?)", (key, piece))
        row = db.execute("SELECT id FROM texts WHERE sha256 = ?", (key,)).fetchone()
        ids.append(int(row[0]))
    return ids


def encode(db: sqlite3.Connection, messages: Iterable[Mapping[str, Any]]) -> str:
    """The `prompt_json` of `messages`: per message `[fields, ids]`, where `fields` is the
    message without its text content and `ids` its pieces (null when the content is not a
    string, which then stays in `fields` as it was)."""
    entries: list[list[Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            fields = {k: v for k, v in message.items() if k != "content"}
            entries.append([fields, store(db, split(content))])
        else:
            entries.append([dict(message), None])
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def ids_of(prompt_json: str) -> set[int]:
    """Every text id a `prompt_json` refers to."""
    return {i for _, ids in json.loads(prompt_json) if ids is not None for i in ids}


def fetch(db: sqlite3.Connection, ids: Iterable[int]) -> dict[int, str]:
    """The texts with these ids."""
    wanted = sorted(set(ids))
    found: dict[int, str] = {}
    for at in range(0, len(wanted), _BATCH):
        batch = wanted[at:at + _BATCH]
        marks = ", ".join("?" * len(batch))
        found.update(db.execute(f"SELECT id, text FROM texts WHERE id IN ({marks})", batch))
    return found


def decode(prompt_json: str, texts: Mapping[int, str]) -> list[dict[str, Any]]:
    """The messages a `prompt_json` stands for (a message's content after its other fields)."""
    messages: list[dict[str, Any]] = []
    for fields, ids in json.loads(prompt_json):
        message = dict(fields)
        if ids is not None:
            message["content"] = "".join(texts[i] for i in ids)
        messages.append(message)
    return messages
