"""Text cut to size for the prompt, and fenced where it is someone else's words. Pure.

`clip` shortens prose where a reader can follow it. The rest is for text a candidate wrote
(assertion messages, values it returned, what pip or pytest said about its tree), which the
next prompt quotes: `clip_block` and `one_line` bound it and take out what a terminal or a
renderer would act on, and `fence_for` gives a Markdown fence longer than any backtick run in
it, so that nothing in the quote can close the fence and pass for the prompt's own text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SENTENCE_END = (". ", "! ", "? ", "; ")
# Control characters (ANSI escapes, carriage returns, NUL...), save the newline and the tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_BACKTICKS = re.compile(r"`+")


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: whole if it fits, else cut after its last
    sentence that fits, or its last word, and marked with an ellipsis; never mid-word
    unless one word is longer than the limit."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    room = text[:limit - 1]  # one character for the ellipsis
    sentence = max(room.rfind(end) for end in _SENTENCE_END)
    if sentence >= limit // 2:  # a whole sentence keeps enough of the idea
        return room[:sentence + 1] + " …"  # fits: the end found is inside `room`
    word = room.rfind(" ")
    cut = room[:word].rstrip(" ,;:-–—") if word > 0 else room
    return cut + "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(limit - 1, 0)] + "…"


def one_line(text: str, limit: int) -> str:
    """`text` on one line (line breaks and control characters become spaces; other spacing
    is kept: it can be part of a value), in at most `limit` characters."""
    return _cut(_CONTROL.sub(" ", text.replace("\r\n", " ").replace("\n", " ")).strip(), limit)


def clip_block(text: str, lines: int, limit: int) -> str:
    """The first `lines` non-blank lines of `text`, control characters taken out, in at most
    `limit` characters."""
    kept = [line.rstrip() for line in _CONTROL.sub(" ", text).splitlines() if line.strip()]
    return _cut("\n".join(kept[:lines]), limit)


def fence_for(texts: Iterable[str]) -> str:
    """A backtick fence that none of `texts` can close: longer than any run in them, and at
    least three."""
    longest = max((len(run) for text in texts for run in _BACKTICKS.findall(text)), default=0)
    return "`" * max(3, longest + 1)
