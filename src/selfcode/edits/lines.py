"""Text as lines: the splitting every edit format shares, with line endings kept intact."""

from __future__ import annotations

__all__ = ["keys_of", "lines_and_keys", "newline_of", "split_lines"]


def split_lines(text: str) -> list[str]:
    """Lines with their terminators; only "\\n" ends a line (a "\\r" before it stays)."""
    parts = text.split("\n")
    last = parts.pop()
    lines = [part + "\n" for part in parts]
    if last:
        lines.append(last)
    return lines


def lines_and_keys(text: str) -> tuple[list[str], list[str]]:
    """`text` as lines with their terminators ("\\n", "\\r\\n") and as lines without them."""
    keys = text.split("\n")
    last = keys.pop()
    lines = [key + "\n" for key in keys]
    if last:
        lines.append(last)
        keys.append(last)
    if "\r" in text:
        keys = [key[:-1] if key[-1:] == "\r" else key for key in keys]
    return lines, keys


def keys_of(text: str) -> list[str]:
    """The lines of `text` without their terminators."""
    return lines_and_keys(text)[1]


def newline_of(text: str) -> str:
    """The line ending most of `text` uses: "\\r\\n" or "\\n"."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"
