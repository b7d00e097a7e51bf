"""Finding where a change goes in a file: exact first, then whitespace-tolerant but unique.

There is no fuzzy "closest match": a change lands only where its old lines match exactly
(line endings aside), or match with trailing whitespace ignored, or match with the whole block's
indentation shifted uniformly, and in each case at exactly one place. When a change matches
nowhere, the error shows the model the most similar real lines so its next attempt can copy them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from selfcode.edits.lines import keys_of, lines_and_keys, newline_of
from selfcode.errors import EditError, PolicyError
from selfcode.gate.paths import PathPolicy, validate_path

__all__ = ["Buffer", "Wording", "close_buffers", "open_buffers", "replace_unique"]


@dataclass(frozen=True)
class Wording:
    """How error messages name one change, so that each edit format speaks its own terms."""

    subject: str  # "SEARCH/REPLACE block 2 (for a.py)"
    part: str  # "its SEARCH section": the old lines the change expects
    earlier: str  # "blocks": what earlier changes to the same file are called
    copy_advice: str  # how to write the old lines so that they match
    unique_advice: str  # how to make the old lines match one place only


def _find(hay: list[str], needle: list[str]) -> list[int]:
    """Every index where `needle` occurs in `hay` as a run of whole elements."""
    n = len(needle)
    if n == 0 or n > len(hay):
        return []
    anchor = max(range(n), key=lambda j: len(needle[j]))  # the most distinctive line, cheaply
    target = needle[anchor]
    stop = len(hay) - n + anchor + 1
    found: list[int] = []
    pos = anchor
    while True:
        try:
            j = hay.index(target, pos, stop)
        except ValueError:
            return found
        if hay[j - anchor:j - anchor + n] == needle:
            found.append(j - anchor)
        pos = j + 1


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _indent_delta(file_keys: list[str], search_keys: list[str]) -> tuple[bool, str] | None:
    """(adds, prefix) when every non-blank file line is the search line with `prefix` added
    (adds=True) or removed (adds=False) in front; None if the shift is not uniform."""
    delta: tuple[bool, str] | None = None
    for f, s in zip(file_keys, search_keys, strict=True):
        if not f.strip():
            continue  # the caller checked that the stripped texts are equal, so s is blank too
        fi, si = _indent(f), _indent(s)
        if delta is None:
            if len(fi) >= len(si) and fi.endswith(si):
                delta = (True, fi[:len(fi) - len(si)])
            elif si.endswith(fi):
                delta = (False, si[:len(si) - len(fi)])
            else:
                return None
        elif (fi != delta[1] + si) if delta[0] else (si != delta[1] + fi):
            return None
    if delta is None or not delta[1]:
        return None
    return delta


def _reindent(line: str, delta: tuple[bool, str]) -> str:
    adds, prefix = delta
    if not line.strip():
        return line
    if adds:
        return prefix + line
    if line.startswith(prefix):
        return line[len(prefix):]
    lead, m = _indent(line), 0
    while m < len(lead) and m < len(prefix) and lead[m] == prefix[m]:
        m += 1
    return line[m:]


class Buffer:
    """One file being edited: its lines (with terminators) and their keys, kept in step."""

    def __init__(self, path: str, content: str | None) -> None:
        self.path = path
        self.existed = self.exists = content is not None
        self.set_text(content or "")
        self.edited = 0

    def set_text(self, text: str) -> None:
        self.lines, self.keys = lines_and_keys(text)
        self.newline = newline_of(text)

    def text(self) -> str:
        return "".join(self.lines)


_MAX_TIES = 64
_CLOSE_LINES = 16


def _nearest(keys: list[str], search_keys: list[str]) -> tuple[int, int] | None:
    """(start, length) of the window of the file most similar to the search lines, or None.

    Windows holding a line equal (indentation aside) to a non-blank SEARCH line compete on
    difflib's line-level ratio, ties broken on the characters. When no line is equal, the line
    most like the longest SEARCH line places the window.
    """
    if not keys:
        return None
    width = min(len(search_keys), len(keys))
    a = [k.strip() for k in keys]
    b = [k.strip() for k in search_keys]
    wanted = {line for line in b if line}
    if not wanted:
        return None
    last = len(a) - width
    starts = sorted({s for i, line in enumerate(a) if line in wanted
                     for s in range(max(0, i - width + 1), min(i, last) + 1)})
    if starts:
        return _most_similar_window(a, b, starts, width), width
    start = _window_by_closest_line(a, b, last)
    return None if start is None else (start, width)


def _most_similar_window(a: list[str], b: list[str], starts: list[int], width: int) -> int:
    """The start, among `starts`, of the window of `a` most like `b` line by line; ties go to
    the window most like it character by character, then to the earliest."""
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(b)
    best, tied = -1.0, [starts[0]]
    for start in starts:
        matcher.set_seq1(a[start:start + width])
        if matcher.real_quick_ratio() < best or matcher.quick_ratio() < best:
            continue
        ratio = matcher.ratio()
        if ratio > best:
            best, tied = ratio, [start]
        elif ratio == best and len(tied) < _MAX_TIES:
            tied.append(start)
    if len(tied) == 1:
        return tied[0]
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2("\n".join(b))
    scores = []
    for start in tied:
        matcher.set_seq1("\n".join(a[start:start + width]))
        scores.append((matcher.ratio(), -start))
    return -max(scores)[1]


def _window_by_closest_line(a: list[str], b: list[str], last: int) -> int | None:
    """The start of the window placed by the line of `a` most like the longest line of `b`
    (at least half alike), clamped to [0, last]; None when no line is that close."""
    # Rank lines against the longest SEARCH line by difflib's cheap upper bound, then compare
    # the best few properly.
    anchor = max(range(len(b)), key=lambda j: len(b[j]))
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(b[anchor])
    bounds = []
    for j, line in enumerate(a):
        if line:
            matcher.set_seq1(line)
            if matcher.real_quick_ratio() >= 0.5:
                bounds.append((matcher.quick_ratio(), j))
    best, best_line = 0.0, -1
    for bound, j in sorted(bounds, reverse=True)[:_CLOSE_LINES]:
        if bound <= best:
            break
        matcher.set_seq1(a[j])
        ratio = matcher.ratio()
        if ratio > best:
            best, best_line = ratio, j
    if best < 0.5:
        return None
    return max(0, min(best_line - anchor, last))


_MAX_SHOWN_LINES = 40


_ELISION = re.compile(r"\s*(?:(?:#|//|/\*|<!--)\s*)?(?:\.\.\.|…)(?:.*)?")


def _numbered(keys: list[str], start: int, stop: int) -> str:
    shown = keys[start:min(stop, start + _MAX_SHOWN_LINES)]
    digits = len(str(start + len(shown)))
    body = "\n".join(f"{start + k + 1:>{digits}} | {line}" for k, line in enumerate(shown))
    return body + ("\n..." if stop - start > _MAX_SHOWN_LINES else "")


def _elided_span(buf: Buffer, search_keys: list[str]) -> tuple[str, int, int] | None:
    """(elision line, start, stop) when the old lines skip code with a "..." line that is not
    in the file, and their first and last real lines each occur exactly once, in order."""
    present = {key.strip() for key in buf.keys}
    elisions = [key for key in search_keys
                if _ELISION.fullmatch(key) and key.strip() not in present]
    real = [key.strip() for key in search_keys if key.strip() and key.strip() not in
            {e.strip() for e in elisions}]
    if not elisions or len(real) < 2:
        return None
    firsts = [i for i, key in enumerate(buf.keys) if key.strip() == real[0]]
    lasts = [i for i, key in enumerate(buf.keys) if key.strip() == real[-1]]
    if len(firsts) != 1 or len(lasts) != 1 or not firsts[0] < lasts[0]:
        return None
    return elisions[0].strip(), firsts[0], lasts[0] + 1


def _not_found(buf: Buffer, search_keys: list[str], wording: Wording) -> EditError:
    after = (f" (after your earlier {wording.earlier} for this file were applied)"
             if buf.edited else "")
    head = (f"{wording.subject} does not match: {wording.part} is not in {buf.path}{after}. "
            f"{wording.copy_advice}")
    span = _elided_span(buf, search_keys)
    if span is not None:
        elision, start, stop = span
        return EditError(f"{head} Its line {elision!r} stands for lines left out, but the old "
                         "lines cannot skip any: copy every line from the first to the last. "
                         f"Lines {start + 1}-{stop} are:\n{_numbered(buf.keys, start, stop)}")
    window = _nearest(buf.keys, search_keys)
    if window is None:
        if not buf.keys:
            return EditError(f"{head} The file is empty.")
        return EditError(f"{head} No part of {buf.path} ({len(buf.keys)} lines) resembles it.")
    start, width = window
    where = f"line {start + 1} is" if width == 1 else f"lines {start + 1}-{start + width} are"
    return EditError(f"{head} The most similar {where}:\n"
                     f"{_numbered(buf.keys, start, start + width)}")


def _ambiguous(buf: Buffer, starts: list[int], wording: Wording) -> EditError:
    lines = ", ".join(str(s + 1) for s in starts[:8]) + (", ..." if len(starts) > 8 else "")
    return EditError(f"{wording.subject} is ambiguous: {wording.part} matches {len(starts)} "
                     f"places in the file (starting at lines {lines}). {wording.unique_advice}")


_Delta = tuple[bool, str]  # (adds, prefix): a uniform indentation shift, see _indent_delta


def _places(buf: Buffer, search_keys: list[str]) -> list[tuple[int, _Delta | None]]:
    """Where the search lines are in `buf`, each with the indentation shift they need, by the
    first way of matching that finds any: exact (line endings aside), trailing whitespace
    ignored, indentation shifted uniformly."""
    starts = _find(buf.keys, search_keys)
    if not starts:
        starts = _find([k.rstrip() for k in buf.keys], [k.rstrip() for k in search_keys])
    if starts or not any(k.strip() for k in search_keys):
        return [(s, None) for s in starts]
    width = len(search_keys)
    shifted: list[tuple[int, _Delta | None]] = []
    for s in _find([k.strip() for k in buf.keys], [k.strip() for k in search_keys]):
        d = _indent_delta([k.rstrip() for k in buf.keys[s:s + width]],
                          [k.rstrip() for k in search_keys])
        if d is not None:
            shifted.append((s, d))
    return shifted


def replace_unique(buf: Buffer, search: str, replace: str, wording: Wording,
                   hint: int | None = None) -> int:
    """Replace the one place in `buf` where the lines of `search` are with those of `replace`.

    `search` must not be blank. Matching tries, in order: exact lines (line endings aside),
    trailing whitespace ignored, indentation shifted uniformly (REPLACE is then shifted the same
    way). More than one match is an error unless `hint` (a 0-based line index the change itself
    states, such as a hunk header's line number) is exactly one of them. New lines take the
    file's line ending. Returns the 0-based index of the first replaced line.
    """
    search = search.replace("\r\n", "\n")
    replace = replace.replace("\r\n", "\n")
    search_keys = keys_of(search)
    places = _places(buf, search_keys)
    starts = [s for s, _ in places]
    if len(starts) > 1 and hint is not None and hint in starts:
        starts = [hint]
    if len(starts) > 1:
        raise _ambiguous(buf, starts, wording)
    if not starts:
        raise _not_found(buf, search_keys, wording)
    start = starts[0]
    delta = next(d for s, d in places if s == start)
    new_keys = keys_of(replace)
    if delta is not None:
        new_keys = [_reindent(k, delta) for k in new_keys]
    _splice(buf, start, start + len(search_keys), new_keys)
    return start


def _splice(buf: Buffer, start: int, end: int, new_keys: list[str]) -> None:
    """Put `new_keys`, with the file's line ending, in place of lines [start, end) of `buf`."""
    new_lines = [k + buf.newline for k in new_keys]
    if end == len(buf.lines) and not buf.lines[-1].endswith("\n"):
        # The change ends at a last line without a newline: keep the file without one.
        if new_lines:
            new_lines[-1] = new_keys[-1]
        elif start > 0:
            buf.lines[start - 1] = buf.keys[start - 1]
    buf.lines[start:end] = new_lines
    buf.keys[start:end] = new_keys
    buf.edited += 1


def open_buffers(files: Mapping[str, str | None], paths: Sequence[str],
                 policy: PathPolicy, caller: str) -> dict[str, Buffer]:
    """A buffer for each (validated, normalised) path, from `files` keyed as written or normal.

    ValueError (a bug in the caller, not the model's fault) when a path has no entry in `files`.
    """
    given: dict[str, str | None] = {}
    for key, value in files.items():
        try:
            given.setdefault(validate_path(key, policy), value)
        except PolicyError:
            continue  # a key no edit can name
    buffers: dict[str, Buffer] = {}
    for path in paths:
        if path not in given:
            raise ValueError(f"{caller}: no current content given for {path!r}; pass None "
                             "for a file that does not exist")
        buffers[path] = Buffer(path, given[path])
    return buffers


def close_buffers(buffers: Mapping[str, Buffer], policy: PathPolicy) -> dict[str, str | None]:
    """The new content of every buffer (None for a deleted file), within the policy's size."""
    result: dict[str, str | None] = {}
    total = 0
    for path, buf in buffers.items():
        if not buf.exists:
            result[path] = None
            continue
        text = buf.text()
        try:
            total += len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise EditError(f"The new content of {path} is not valid UTF-8 text.") from None
        result[path] = text
    if total > policy.max_bytes:
        raise PolicyError(f"The edits would write {total} bytes in total, more than the limit "
                          f"of {policy.max_bytes} bytes.")
    return result
