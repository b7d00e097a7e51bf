"""Reading a model's reply as text: line endings, Markdown fences, and path lines.

Shared by the parsers of every edit format; pure functions only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfcode.errors import EditError

__all__ = [
    "Fence",
    "NoEditsFound",
    "clean_path",
    "fence_of",
    "is_fence",
    "looks_like_path",
    "normalise_newlines",
    "prev_nonblank",
    "reply_rationale",
]

_FENCE = re.compile(r"[ \t]*(?:`{3,}|~{3,})")
_FENCE_PARTS = re.compile(r"( {0,3})(`{3,}|~{3,})[ \t]*(.*?)[ \t]*")
_PATH_DECORATION = " \t`*:'\""
_PATH_LABEL = re.compile(r"(?i)(?:file(?:name)?|path)\s*[:=]\s*")
_EDIT_START = ("<<<<<<<", "--- ", "diff --git ", "@@")
RATIONALE_CHARS = 4_000
"""The most of a reply that could not be parsed kept as its rationale."""


def normalise_newlines(text: str) -> str:
    """The reply with "\\r\\n" and a lone "\\r" read as "\\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_fence(line: str) -> bool:
    """True for a Markdown fence line (```... or ~~~...), opening or closing, indented or not."""
    return _FENCE.match(line) is not None


@dataclass(frozen=True)
class Fence:
    char: str  # "`" or "~"
    length: int  # 3 or more
    info: str  # what follows the fence on its line ("python", "diff", ""), stripped


def fence_of(line: str) -> Fence | None:
    """The fence on `line` (at most 3 spaces of indentation, as Markdown allows), or None.

    A backtick fence whose info string contains a backtick is not a fence (Markdown's rule).
    """
    m = _FENCE_PARTS.fullmatch(line)
    if m is None:
        return None
    marks, info = m.group(2), m.group(3)
    if marks[0] == "`" and "`" in info:
        return None
    return Fence(marks[0], len(marks), info)


def prev_nonblank(lines: list[str], start: int, floor: int) -> int | None:
    """The index of the last non-blank line in lines[floor+1 : start+1], or None."""
    k = start
    while k > floor:
        if lines[k].strip():
            return k
        k -= 1
    return None


def clean_path(line: str) -> str:
    """A path line without Markdown decoration: '### `src/a.py`:' -> 'src/a.py'."""
    text = line.strip().lstrip("#").strip(_PATH_DECORATION)
    label = _PATH_LABEL.match(text)
    if label is not None:
        text = text[label.end():].strip(_PATH_DECORATION)
    return text


def looks_like_path(text: str) -> bool:
    """True when `text` (already cleaned) could be a file path rather than prose or a language:
    one word with a '/' or a '.' in it."""
    return bool(text) and not any(ch.isspace() for ch in text) and ("/" in text or "." in text)


class NoEditsFound(EditError):
    """The reply holds no edit at all in the format asked for (as opposed to a broken one)."""


def reply_rationale(text: str, limit: int = RATIONALE_CHARS) -> str:
    """The prose a reply opens with, read without parsing its edits: what the model meant,
    kept for a reply that could not be applied. Everything before its first fence, edit
    marker or diff line, without the path line that introduces it; at most `limit`
    characters, cut at a line or word boundary with an ellipsis."""
    lines = normalise_newlines(text).split("\n")
    end = next((i for i, line in enumerate(lines)
                if is_fence(line) or line.startswith(_EDIT_START)), len(lines))
    prose = lines[:end]
    last = prev_nonblank(prose, len(prose) - 1, -1)
    if last is not None and end < len(lines) and looks_like_path(clean_path(prose[last])):
        prose = prose[:last]  # "src/a.py" above the block: where the edit goes, not why
    rationale = "\n".join(prose).strip()
    if len(rationale) <= limit:
        return rationale
    room = rationale[:limit - 1]
    cut = max(room.rfind("\n"), room.rfind(" "))
    return (room[:cut] if cut > 0 else room).rstrip() + "…"
