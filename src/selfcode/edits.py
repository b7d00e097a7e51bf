"""Edits from the model and patches from the user, turned into safe changes.

Everything here is a pure function of its arguments except `read_tree`, which reads files.

* `parse_reply` reads SEARCH/REPLACE blocks out of a model reply.
* `validate_path` decides whether a path may be written at all.
* `apply_edits` applies blocks to in-memory file contents, all or nothing.
* `render_diff` turns old and new contents into a diff that `git apply` accepts.
* `parse_unified_diff` checks a user's patch against the policy without applying it.

Every `EditError` message is written to be shown to the model (or the user) as it is: it says
what is wrong and what to do instead.
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from selfcode.errors import EditError, PolicyError

__all__ = [
    "DEFAULT_POLICY",
    "DiffFile",
    "DiffStats",
    "Edit",
    "ParsedReply",
    "PathPolicy",
    "apply_edits",
    "diff_stats",
    "parse_reply",
    "parse_unified_diff",
    "read_tree",
    "render_diff",
    "touched_paths",
    "validate_path",
]


# =============================================================================================
# Data
# =============================================================================================


@dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE block."""

    path: str  # repo-relative POSIX path as the model wrote it
    search: str  # "" means: create a new file (or fill an empty one)
    replace: str


@dataclass(frozen=True)
class ParsedReply:
    rationale: str  # the prose before the first block, stripped (may be "")
    edits: list[Edit]


@dataclass(frozen=True)
class PathPolicy:
    max_files: int = 50  # distinct paths one reply or patch may touch
    max_bytes: int = 1_000_000  # new content written by a reply / size of a patch


DEFAULT_POLICY = PathPolicy()


@dataclass(frozen=True)
class DiffFile:
    path: str  # new path ("b/" side), or old path for deletions
    old_path: str | None  # None for added files
    status: Literal["added", "modified", "deleted", "renamed"]
    added: int
    removed: int


class DiffStats(TypedDict):
    files: list[str]
    added: int
    removed: int


# =============================================================================================
# Paths
# =============================================================================================

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255


def validate_path(path: str, policy: PathPolicy = DEFAULT_POLICY) -> str:
    """The normalised form of `path` ("./a//b" -> "a/b"), or PolicyError naming path and rule.

    `policy` carries no per-path rule today; it is accepted so callers need not change when one
    is added. Protected paths (tests, CI configuration...) are decided elsewhere.
    """

    def refuse(rule: str) -> PolicyError:
        return PolicyError(f"The path {path!r} is refused: {rule}.")

    if not isinstance(path, str) or not path.strip():
        raise refuse("it is empty")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse("it is not valid UTF-8") from None
    if _CONTROL.search(path):
        raise refuse("it contains a NUL or another control character")
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        raise refuse("it is absolute; use a path relative to the repository root")
    if "\\" in path:
        raise refuse("it contains a backslash; separate directories with /")
    if path.endswith("/"):
        raise refuse("it names a directory, not a file")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refuse("it contains a '..' component, which could leave the repository")
    if not parts:
        raise refuse("it is empty")
    if any(part.lower() == ".git" for part in parts):
        raise refuse("it is inside the .git directory")
    if parts[-1].lower().startswith(".git"):
        raise refuse("git's own files (.git, .gitignore, .gitmodules, .gitattributes...) "
                     "may not be changed")
    normalised = "/".join(parts)
    if len(normalised.encode("utf-8")) > _MAX_PATH_BYTES:
        raise refuse(f"it is longer than {_MAX_PATH_BYTES} bytes")
    if any(len(part.encode("utf-8")) > _MAX_NAME_BYTES for part in parts):
        raise refuse(f"one of its names is longer than {_MAX_NAME_BYTES} bytes")
    return normalised


def touched_paths(edits: Sequence[Edit], policy: PathPolicy = DEFAULT_POLICY) -> list[str]:
    """The validated, normalised paths the edits touch: distinct, in order of first appearance.

    Raises PolicyError for a refused path or for more than `policy.max_files` paths, so a caller
    can safely read the returned paths before applying anything.
    """
    seen: dict[str, None] = {}
    for edit in edits:
        seen.setdefault(validate_path(edit.path, policy), None)
    if len(seen) > policy.max_files:
        raise PolicyError(f"The edits touch {len(seen)} files, more than the limit of "
                          f"{policy.max_files}; change fewer files at once.")
    return list(seen)


# =============================================================================================
# Model replies
# =============================================================================================

_HEAD = re.compile(r"<{5,9}[ \t]*SEARCH[ \t]*:?")
_DIVIDER = re.compile(r"={5,9}")
_TAIL = re.compile(r">{5,9}[ \t]*REPLACE[ \t]*")
_FENCE = re.compile(r"[ \t]*(?:`{3,}|~{3,})")
_PATH_DECORATION = " \t`*:'\""
_FORMAT_HINT = (
    "Write the path of the file alone on one line, then a fenced block containing "
    "'<<<<<<< SEARCH', the exact current lines, '=======', the new lines, '>>>>>>> REPLACE'."
)


def _is_head(line: str) -> bool:
    return line[:1] == "<" and _HEAD.fullmatch(line.rstrip()) is not None


def _is_divider(line: str) -> bool:
    return line[:1] == "=" and _DIVIDER.fullmatch(line.rstrip()) is not None


def _is_tail(line: str) -> bool:
    return line[:1] == ">" and _TAIL.fullmatch(line.rstrip()) is not None


def _is_fence(line: str) -> bool:
    return _FENCE.match(line) is not None


def _prev_nonblank(lines: list[str], start: int, floor: int) -> int | None:
    """The index of the last non-blank line in lines[floor+1 : start+1], or None."""
    k = start
    while k > floor:
        if lines[k].strip():
            return k
        k -= 1
    return None


def _clean_path(line: str) -> str:
    return line.strip().lstrip("#").strip(_PATH_DECORATION)


def _block_path(lines: list[str], head: int, last_end: int,
                last_path: str | None) -> tuple[str, int]:
    """The path of the block whose SEARCH marker is lines[head], and where the block starts.

    The path is the last non-blank line before the opening fence (or before the marker when
    there is no fence). A block that follows the previous one with nothing but fences in
    between edits the same file as the previous one.
    """
    where = f"The SEARCH/REPLACE block at line {head + 1} of your reply"
    k = _prev_nonblank(lines, head - 1, last_end)
    start = head
    if k is not None and _is_fence(lines[k]):
        start = k
        k = _prev_nonblank(lines, k - 1, last_end)
    if k is None:
        if last_path is not None:
            return last_path, start
        raise EditError(f"{where} has no file path. {_FORMAT_HINT}")
    if _is_fence(lines[k]):
        if last_path is not None and _prev_nonblank(lines, k - 1, last_end) is None:
            return last_path, k  # "```" closing the previous block, then "```python" again
        raise EditError(f"{where} has no file path. {_FORMAT_HINT}")
    path = _clean_path(lines[k])
    if not path:
        raise EditError(f"{where} has no file path. {_FORMAT_HINT}")
    if any(ch.isspace() for ch in path):
        raise EditError(f"{where} has no usable file path: the line before it must be the path "
                        f"alone, but it is {lines[k].strip()!r}. {_FORMAT_HINT}")
    p = _prev_nonblank(lines, k - 1, last_end)
    if p is not None and _is_fence(lines[p]):
        return path, p  # the path written inside the fence
    return path, k


def _join_lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def parse_reply(text: str) -> ParsedReply:
    """The rationale and the SEARCH/REPLACE blocks of a model reply; EditError if malformed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    n = len(lines)
    edits: list[Edit] = []
    rationale_end: int | None = None
    last_end = -1  # index of the previous block's REPLACE marker
    last_path: str | None = None
    i = 0
    while i < n:
        line = lines[i]
        if _is_tail(line):
            raise EditError(f"Line {i + 1} of your reply closes a SEARCH/REPLACE block with "
                            f"'>>>>>>> REPLACE', but no '<<<<<<< SEARCH' opened it. {_FORMAT_HINT}")
        if not _is_head(line):
            i += 1
            continue
        path, start = _block_path(lines, i, last_end, last_path)
        if rationale_end is None:
            rationale_end = start
        where = f"the SEARCH/REPLACE block for {path} that starts at line {i + 1} of your reply"
        j = i + 1
        while j < n and not _is_divider(lines[j]):
            if _is_head(lines[j]) or _is_tail(lines[j]):
                raise EditError(f"In {where}, the SEARCH section is not followed by a '=======' "
                                f"line (line {j + 1} is {lines[j].strip()!r}). {_FORMAT_HINT}")
            j += 1
        if j >= n:
            raise EditError(f"Your reply ends inside {where}: it has no '=======' line and no "
                            "'>>>>>>> REPLACE' line. The reply was probably cut off; send the "
                            "complete block again.")
        divider = j
        j += 1
        while j < n and not _is_tail(lines[j]):
            if _is_head(lines[j]):
                raise EditError(f"{where[0].upper()}{where[1:]} is not closed: a new "
                                f"'<<<<<<< SEARCH' starts at line {j + 1} before its "
                                f"'>>>>>>> REPLACE' line. {_FORMAT_HINT}")
            j += 1
        if j >= n:
            raise EditError(f"Your reply ends inside {where}: it has no '>>>>>>> REPLACE' line. "
                            "The reply was probably cut off; send the complete block again.")
        edits.append(Edit(path, _join_lines(lines[i + 1:divider]),
                          _join_lines(lines[divider + 1:j])))
        last_end, last_path = j, path
        i = j + 1
    if not edits:
        raise EditError("Your reply contained no SEARCH/REPLACE blocks, so nothing can be "
                        f"changed. {_FORMAT_HINT}")
    rationale = "\n".join(lines[:rationale_end]).strip()
    return ParsedReply(rationale=rationale, edits=edits)


# =============================================================================================
# Applying edits
# =============================================================================================


def _split_lines(text: str) -> list[str]:
    """Lines with their terminators; only "\\n" ends a line (a "\\r" before it stays)."""
    parts = text.split("\n")
    last = parts.pop()
    lines = [part + "\n" for part in parts]
    if last:
        lines.append(last)
    return lines


def _lines_and_keys(text: str) -> tuple[list[str], list[str]]:
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


def _keys_of(text: str) -> list[str]:
    return _lines_and_keys(text)[1]


def _newline_of(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"


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


class _Buffer:
    """One file being edited: its lines (with terminators) and their keys, kept in step."""

    def __init__(self, path: str, content: str | None) -> None:
        self.path = path
        self.exists = content is not None
        self.set_text(content or "")
        self.edited = 0

    def set_text(self, text: str) -> None:
        self.lines, self.keys = _lines_and_keys(text)
        self.newline = _newline_of(text)

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
            return tied[0], width
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2("\n".join(b))
        scores = []
        for start in tied:
            matcher.set_seq1("\n".join(a[start:start + width]))
            scores.append((matcher.ratio(), -start))
        return -max(scores)[1], width
    # No line is equal to a SEARCH line: rank lines against the longest SEARCH line by
    # difflib's cheap upper bound, then compare the best few properly.
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
    return max(0, min(best_line - anchor, last)), width


_MAX_SHOWN_LINES = 40


def _not_found(buf: _Buffer, search_keys: list[str], number: int) -> EditError:
    after = " (after your earlier blocks for this file were applied)" if buf.edited else ""
    head = (f"SEARCH/REPLACE block {number} (for {buf.path}) does not match: its SEARCH "
            f"section is not in {buf.path}{after}. SEARCH must copy the current lines exactly, "
            "including indentation, comments and blank lines.")
    window = _nearest(buf.keys, search_keys)
    if window is None:
        if not buf.keys:
            return EditError(f"{head} The file is empty.")
        return EditError(f"{head} No part of {buf.path} ({len(buf.keys)} lines) resembles it.")
    start, width = window
    shown = buf.keys[start:start + min(width, _MAX_SHOWN_LINES)]
    digits = len(str(start + len(shown)))
    body = "\n".join(f"{start + k + 1:>{digits}} | {line}" for k, line in enumerate(shown))
    more = "\n..." if width > _MAX_SHOWN_LINES else ""
    where = f"line {start + 1} is" if width == 1 else f"lines {start + 1}-{start + width} are"
    return EditError(f"{head} The most similar {where}:\n{body}{more}")


def _ambiguous(buf: _Buffer, starts: list[int], number: int) -> EditError:
    lines = ", ".join(str(s + 1) for s in starts[:8]) + (", ..." if len(starts) > 8 else "")
    return EditError(f"SEARCH/REPLACE block {number} (for {buf.path}) is ambiguous: its SEARCH "
                     f"section matches {len(starts)} places in the file (starting at lines "
                     f"{lines}). Add more unchanged lines around the change to SEARCH (and the "
                     "same lines to REPLACE) so that it matches exactly one place.")


def _apply_one(buf: _Buffer, edit: Edit, number: int) -> None:
    search = edit.search.replace("\r\n", "\n")
    replace = edit.replace.replace("\r\n", "\n")
    if not search.strip():
        if buf.exists and buf.lines:
            raise EditError(f"SEARCH/REPLACE block {number} has an empty SEARCH section, but "
                            f"{buf.path} already exists and is not empty. An empty SEARCH only "
                            "creates a new file; to change this one, put the lines to replace "
                            "in SEARCH.")
        buf.exists = True
        buf.set_text(replace)
        buf.edited += 1
        return
    if not buf.exists:
        raise EditError(f"SEARCH/REPLACE block {number}: file {buf.path} does not exist; to "
                        "create it use an empty SEARCH section.")

    search_keys = _keys_of(search)
    delta: tuple[bool, str] | None = None
    starts = _find(buf.keys, search_keys)  # 1. exact (line endings aside)
    if not starts:  # 2. trailing whitespace ignored
        starts = _find([k.rstrip() for k in buf.keys], [k.rstrip() for k in search_keys])
    if not starts and any(k.strip() for k in search_keys):  # 3. indentation shifted uniformly
        width = len(search_keys)
        shifted = []
        for s in _find([k.strip() for k in buf.keys], [k.strip() for k in search_keys]):
            d = _indent_delta([k.rstrip() for k in buf.keys[s:s + width]],
                              [k.rstrip() for k in search_keys])
            if d is not None:
                shifted.append((s, d))
        starts = [s for s, _ in shifted]
        if len(shifted) == 1:
            delta = shifted[0][1]
    if len(starts) > 1:
        raise _ambiguous(buf, starts, number)
    if not starts:
        raise _not_found(buf, search_keys, number)

    start, end = starts[0], starts[0] + len(search_keys)
    new_keys = _keys_of(replace)
    if delta is not None:
        new_keys = [_reindent(k, delta) for k in new_keys]
    new_lines = [k + buf.newline for k in new_keys]
    if end == len(buf.lines) and not buf.lines[-1].endswith("\n"):
        # The block ends at a last line without a newline: keep the file without one.
        if new_lines:
            new_lines[-1] = new_keys[-1]
        elif start > 0:
            buf.lines[start - 1] = buf.keys[start - 1]
    buf.lines[start:end] = new_lines
    buf.keys[start:end] = new_keys
    buf.edited += 1


def apply_edits(files: Mapping[str, str | None], edits: Sequence[Edit],
                policy: PathPolicy = DEFAULT_POLICY) -> dict[str, str | None]:
    """The new content of every path the edits touch, keyed by normalised path.

    `files` holds the current content of each touched path (None: no such file); its keys may be
    the paths as written or normalised. All or nothing: EditError (PolicyError for a refused
    path or a limit) and no result if any edit fails. Never returns None for a path: deletion
    cannot be expressed with SEARCH/REPLACE.
    """
    paths = touched_paths(edits, policy)
    normalised = {edit.path: validate_path(edit.path, policy) for edit in edits}
    given: dict[str, str | None] = {}
    for key, value in files.items():
        try:
            given.setdefault(validate_path(key, policy), value)
        except PolicyError:
            continue  # a key no edit can name
    buffers: dict[str, _Buffer] = {}
    for path in paths:
        if path not in given:
            raise ValueError(f"apply_edits: no current content given for {path!r}; pass None "
                             "for a file that does not exist")
        buffers[path] = _Buffer(path, given[path])
    for number, edit in enumerate(edits, start=1):
        _apply_one(buffers[normalised[edit.path]], edit, number)

    result: dict[str, str | None] = {}
    total = 0
    for path, buf in buffers.items():
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


# =============================================================================================
# Rendering a diff
# =============================================================================================

_NO_NEWLINE = "\\ No newline at end of file\n"


def _diff_name(prefix: str, path: str) -> str:
    # git ends ---/+++ names containing a space with a tab, so no date can be read into them
    return f"{prefix}{path}\t" if " " in path else f"{prefix}{path}"


def _file_diff(path: str, old: str | None, new: str | None) -> str:
    out = [f"diff --git a/{path} b/{path}\n"]
    old_name, new_name = _diff_name("a/", path), _diff_name("b/", path)
    if old is None:
        out.append("new file mode 100644\n")
        old_name = "/dev/null"
    elif new is None:
        out.append("deleted file mode 100644\n")
        new_name = "/dev/null"
    old_lines, new_lines = _split_lines(old or ""), _split_lines(new or "")
    if not old_lines and not new_lines:
        return "".join(out)  # an empty file created or deleted: headers only, as git does
    out.append(f"--- {old_name}\n+++ {new_name}\n")
    for line in _unified_hunks(old_lines, new_lines):
        out.append(line if line.endswith("\n") else f"{line}\n{_NO_NEWLINE}")
    return "".join(out)


_CONTEXT = 3
_Op = tuple[int, int, int, int]  # a change: a[i1:i2] becomes b[j1:j2]


def _gap_blocks(a: list[str], b: list[str], alo: int, ahi: int, blo: int,
                bhi: int) -> list[tuple[int, int, int]]:
    if alo >= ahi or blo >= bhi:
        return []
    matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi])
    return [(alo + i, blo + j, size) for i, j, size in matcher.get_matching_blocks() if size]


def _matching_blocks(a: list[str], b: list[str]) -> list[tuple[int, int, int]]:
    """Equal runs (i, j, size) of a and b, in order.

    difflib.SequenceMatcher alone is quadratic-ish on long files with changes spread all over
    (its longest match splits ranges unevenly), so, as `git diff --patience` does, lines that
    occur exactly once on each side anchor the alignment (their longest increasing run) and
    SequenceMatcher only aligns the short stretches between anchors.
    """
    la, lb = len(a), len(b)
    head = 0
    while head < la and head < lb and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < la - head and tail < lb - head and a[la - 1 - tail] == b[lb - 1 - tail]:
        tail += 1
    ahi, bhi = la - tail, lb - tail

    count_a: dict[str, int] = {}
    for line in a[head:ahi]:
        count_a[line] = count_a.get(line, 0) + 1
    where_b: dict[str, int] = {}
    for j in range(head, bhi):
        line = b[j]
        where_b[line] = -1 if line in where_b else j
    pairs = [(i, where_b[a[i]]) for i in range(head, ahi)
             if count_a[a[i]] == 1 and where_b.get(a[i], -1) >= 0]

    # Longest run of pairs increasing in both i and j (patience sorting).
    tops: list[int] = []  # tops[k]: j of the best last pair of a run of length k+1
    top_index: list[int] = []
    back = [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect_left(tops, j)
        back[n] = top_index[k - 1] if k else -1
        if k == len(tops):
            tops.append(j)
            top_index.append(n)
        else:
            tops[k], top_index[k] = j, n
    anchors: list[tuple[int, int]] = []
    n = top_index[-1] if top_index else -1
    while n >= 0:
        anchors.append(pairs[n])
        n = back[n]
    anchors.reverse()

    blocks = [(0, 0, head)] if head else []
    i, j = head, head
    for ai, bj in anchors:
        blocks += _gap_blocks(a, b, i, ai, j, bj)
        blocks.append((ai, bj, 1))
        i, j = ai + 1, bj + 1
    blocks += _gap_blocks(a, b, i, ahi, j, bhi)
    if tail:
        blocks.append((ahi, bhi, tail))
    merged: list[tuple[int, int, int]] = []
    for block in blocks:
        if merged and merged[-1][0] + merged[-1][2] == block[0] \
                and merged[-1][1] + merged[-1][2] == block[1]:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + block[2])
        else:
            merged.append(block)
    return merged


def _unified_range(start: int, stop: int) -> str:
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


def _unified_hunks(a: list[str], b: list[str]) -> list[str]:
    """The hunks (headers and lines) of a unified diff from a to b, with 3 lines of context."""
    changes: list[_Op] = []
    i = j = 0
    for ai, bj, size in [*_matching_blocks(a, b), (len(a), len(b), 0)]:
        if i < ai or j < bj:
            changes.append((i, ai, j, bj))
        i, j = ai + size, bj + size
    groups: list[list[_Op]] = []
    for change in changes:  # changes at most 2 * context equal lines apart share a hunk
        if groups and change[0] - groups[-1][-1][1] <= 2 * _CONTEXT:
            groups[-1].append(change)
        else:
            groups.append([change])
    out: list[str] = []
    for group in groups:
        first, last = group[0], group[-1]
        before = min(_CONTEXT, first[0])
        after = min(_CONTEXT, len(a) - last[1])
        a1, a2 = first[0] - before, last[1] + after
        b1, b2 = first[2] - before, last[3] + after
        out.append(f"@@ -{_unified_range(a1, a2)} +{_unified_range(b1, b2)} @@\n")
        pos = a1
        for i1, i2, j1, j2 in group:
            out += [" " + line for line in a[pos:i1]]
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
            pos = i2
        out += [" " + line for line in a[pos:a2]]
    return out


def render_diff(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> str:
    """A unified diff, in git's format, from `old` to `new` contents (a missing key is None).

    Only changed files appear, sorted by path; `git apply` of the result to the old tree gives
    the new tree. Raises PolicyError for a path `validate_path` refuses.
    """
    parts = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        parts.append(_file_diff(validate_path(path), before, after))
    return "".join(parts)


# =============================================================================================
# Checking a unified diff
# =============================================================================================

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_INDEX_MODE = re.compile(r"index [0-9a-fA-F]+\.\.[0-9a-fA-F]+ (\d+)\s*$")
_FILE_MODES = ("100644", "100755")
_SYMLINK, _GITLINK = "120000", "160000"


def _quoted(raw: str) -> PolicyError:
    return PolicyError(f"The patch names the quoted path {raw}; paths that git quotes (with "
                       "non-ASCII characters, quotes, backslashes or control characters) are "
                       "not supported.")


class _Section:
    """What one file's part of a diff says, before its paths are checked."""

    def __init__(self, line: int, git: bool) -> None:
        self.line = line  # 1-based, for messages
        self.git = git
        self.header_old: str | None = None  # from "diff --git", prefixes still on
        self.header_new: str | None = None
        self.has_names = False  # the ---/+++ pair was seen
        self.old: str | None = None  # from ---/+++, prefixes still on; None for /dev/null
        self.new: str | None = None
        self.rename_from: str | None = None
        self.rename_to: str | None = None
        self.copy: tuple[str, str] | None = None
        self.new_file = False
        self.deleted = False
        self.modes: list[str] = []  # every mode the headers mention
        self.mode_change: tuple[str, str] = ("", "")
        self.binary = False
        self.hunks = 0
        self.added = 0
        self.removed = 0

    def header_region(self) -> bool:
        return self.git and not self.has_names and not self.hunks


def _git_header_names(rest: str) -> tuple[str | None, str | None]:
    """The two names of "diff --git A B" (prefixes kept); (None, None) if they are ambiguous."""
    if rest.startswith('"') or (rest.endswith('"') and ' "' in rest):
        raise _quoted(rest)
    if rest.startswith("a/") and len(rest) % 2 == 1:
        half = (len(rest) - 5) // 2
        name = rest[2:2 + half]
        if rest == f"a/{name} b/{name}":
            return f"a/{name}", f"b/{name}"
    if len(rest) % 2 == 1:
        half = len(rest) // 2
        if rest[half] == " " and rest[:half] == rest[half + 1:]:
            return rest[:half], rest[half + 1:]
    if rest.startswith("a/") and " b/" in rest:
        cut = rest.index(" b/")
        return rest[:cut], rest[cut + 1:]
    return None, None


def _dash_name(raw: str) -> str | None:
    """The name on a ---/+++ line (prefix kept); None for /dev/null."""
    name = raw.split("\t", 1)[0].rstrip()
    if name.startswith('"'):
        raise _quoted(name)
    return None if name == "/dev/null" else name


def _raw_name(raw: str) -> str:
    name = raw.rstrip()
    if name.startswith('"'):
        raise _quoted(name)
    return name


def _read_header(section: _Section, line: str) -> None:
    """One extended header line of a git section."""
    if line.startswith("old mode ") or line.startswith("new mode "):
        old, new = section.mode_change
        mode = line.split()[-1]
        section.mode_change = (mode, new) if line.startswith("old") else (old, mode)
        section.modes.append(mode)
    elif line.startswith("new file mode "):
        section.new_file = True
        section.modes.append(line.split()[-1])
    elif line.startswith("deleted file mode "):
        section.deleted = True
        section.modes.append(line.split()[-1])
    elif line.startswith("index "):
        m = _INDEX_MODE.match(line)
        if m:
            section.modes.append(m.group(1))
    elif line.startswith("rename from "):
        section.rename_from = _raw_name(line[len("rename from "):])
    elif line.startswith("rename to "):
        section.rename_to = _raw_name(line[len("rename to "):])
    elif line.startswith("copy from "):
        section.copy = (_raw_name(line[len("copy from "):]), (section.copy or ("", ""))[1])
    elif line.startswith("copy to "):
        section.copy = ((section.copy or ("", ""))[0], _raw_name(line[len("copy to "):]))


def _guess_strip(name: str | None) -> int:
    """git apply's guess for a traditional diff: 0 for a name without "/", else unknown (-1)."""
    if name is None or "/" in name:
        return -1
    return 0


def _strip(name: str | None, strip: int, section: _Section, policy: PathPolicy) -> str | None:
    """`name` without its first `strip` components, as `git apply -p<strip>` reads it."""
    if name is None:
        return None
    validate_path(name, policy)  # the name as written must be sane too (not absolute, no "..")
    parts = name.split("/", strip)
    if len(parts) <= strip:
        raise EditError(f"git apply cannot tell which file the section at line {section.line} "
                        f"of the patch changes: {name!r} has no leading a/ or b/ directory to "
                        "strip. Make the patch with plain `git diff` (not --no-prefix).")
    return parts[strip]


def _finish(section: _Section, strip: int, policy: PathPolicy) -> DiffFile:
    """The file a section changes, named as `git apply` (which strips one leading directory,
    a/ or b/ in git's diffs, unless it guesses otherwise for a traditional diff) will name it."""
    if section.has_names:
        old = _strip(section.old, strip, section, policy)
        new = _strip(section.new, strip, section, policy)
    else:
        old = _strip(section.header_old, strip, section, policy)
        new = _strip(section.header_new, strip, section, policy)
        if section.new_file:
            old = None
        if section.deleted:
            new = None
    if section.rename_from is not None or section.rename_to is not None:
        old = section.rename_from if section.rename_from is not None else old
        new = section.rename_to if section.rename_to is not None else new
    name = new or old
    if name is None:
        raise EditError(f"The patch's file section at line {section.line} names no file.")
    name = validate_path(name, policy)
    old = validate_path(old, policy) if old is not None else None
    new = validate_path(new, policy) if new is not None else None

    if section.copy is not None:
        raise PolicyError(f"The patch copies {section.copy[0]} to {section.copy[1]}; copy "
                          "patches are not supported.")
    if section.binary:
        raise PolicyError(f"The patch contains a binary change to {name}; only text changes "
                          "are allowed.")
    if _GITLINK in section.modes:
        raise PolicyError(f"The patch touches the submodule {name} (mode 160000); submodules "
                          "may not be changed.")
    if _SYMLINK in section.modes:
        raise PolicyError(f"The patch touches {name}, a symbolic link (mode 120000); symbolic "
                          "links may not be created, changed or deleted.")
    if any(section.mode_change):
        old_mode, new_mode = section.mode_change
        raise PolicyError(f"The patch changes the file mode of {name} (old mode {old_mode or '?'},"
                          f" new mode {new_mode or '?'}); mode changes are not allowed.")
    unknown = [mode for mode in section.modes if mode not in _FILE_MODES]
    if unknown:
        raise PolicyError(f"The patch gives {name} the unsupported file mode {unknown[0]}; only "
                          "regular files (100644, 100755) may be changed.")
    if not section.git and not section.hunks:
        raise EditError(f"The patch's file section for {name} (line {section.line}) has no "
                        "hunks.")

    status: Literal["added", "modified", "deleted", "renamed"]
    if section.rename_from is not None and section.rename_to is not None:
        status = "renamed"
    elif section.new_file or old is None:
        status = "added"
    elif section.deleted or new is None:
        status = "deleted"
    else:
        status = "modified"
    path = new if new is not None else name
    return DiffFile(path=path, old_path=old if status != "added" else None, status=status,
                    added=section.added, removed=section.removed)


def parse_unified_diff(text: str, policy: PathPolicy = DEFAULT_POLICY) -> list[DiffFile]:
    """The files a unified diff (`git diff`, `diff -u`) changes, checked without applying it.

    PolicyError for anything the policy forbids (path, binary, symlink, submodule, mode change,
    copy, quoted path, size, file count); EditError when the text is not a usable diff.
    """
    size = len(text.encode("utf-8", "replace"))
    if size > policy.max_bytes:
        raise PolicyError(f"The patch is {size} bytes, more than the limit of "
                          f"{policy.max_bytes} bytes.")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    n = len(lines)
    sections: list[_Section] = []
    cur: _Section | None = None
    i = 0
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            cur = _Section(i + 1, git=True)
            cur.header_old, cur.header_new = _git_header_names(line[len("diff --git "):])
            sections.append(cur)
            i += 1
        elif line.startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ "):
            if cur is None or not cur.header_region():
                cur = _Section(i + 1, git=False)
                sections.append(cur)
            cur.old, cur.new = _dash_name(line[4:]), _dash_name(lines[i + 1][4:])
            cur.has_names = True
            i += 2
        elif line.startswith("@@"):
            if cur is None or not cur.has_names:
                raise EditError(f"Line {i + 1} of the patch starts a hunk outside any file "
                                "section (no '---'/'+++' lines before it).")
            i = _read_hunk(lines, i, cur)
        elif line.startswith("GIT binary patch") or (line.startswith("Binary files ")
                                                     and line.endswith(" differ")):
            if cur is None or not cur.git:
                raise PolicyError(f"The patch contains a binary change ({line.strip()}); only "
                                  "text changes are allowed.")
            cur.binary = True
            i += 1
        else:
            if cur is not None and cur.header_region():
                _read_header(cur, line)
            i += 1
    if not sections:
        raise EditError("The patch is not a unified diff: it has no file sections "
                        "('diff --git' or '---'/'+++' header lines).")
    files = []
    strip, strip_known = 1, False  # git apply's default -p1, and its guess for plain diffs
    for section in sections:
        if not section.git and section.has_names and not strip_known:
            guess, other = _guess_strip(section.old), _guess_strip(section.new)
            guess = other if guess < 0 else guess
            if guess >= 0 and guess == other:
                strip, strip_known = guess, True
        files.append(_finish(section, strip, policy))
    distinct = {f.path for f in files} | {f.old_path for f in files if f.old_path}
    if len(distinct) > policy.max_files:
        raise PolicyError(f"The patch touches {len(distinct)} files, more than the limit of "
                          f"{policy.max_files}.")
    return files


def _read_hunk(lines: list[str], i: int, section: _Section) -> int:
    """Read the hunk whose header is lines[i]; return the index of the line after it."""
    m = _HUNK.match(lines[i])
    if m is None:
        raise EditError(f"Line {i + 1} of the patch is not a valid hunk header: {lines[i]!r}.")
    old_left = int(m.group(2)) if m.group(2) is not None else 1
    new_left = int(m.group(4)) if m.group(4) is not None else 1
    start = i
    i += 1
    n = len(lines)
    while old_left > 0 or new_left > 0:
        if i >= n:
            raise EditError(f"The patch ends inside the hunk that starts at line {start + 1}; "
                            "it is truncated.")
        tag = lines[i][:1]
        if tag in (" ", ""):
            old_left -= 1
            new_left -= 1
        elif tag == "-":
            old_left -= 1
            section.removed += 1
        elif tag == "+":
            new_left -= 1
            section.added += 1
        elif tag != "\\":
            raise EditError(f"The patch is corrupt at line {i + 1}: the hunk that starts at "
                            f"line {start + 1} has fewer lines than its header says.")
        if old_left < 0 or new_left < 0:
            raise EditError(f"The patch is corrupt at line {i + 1}: the hunk that starts at "
                            f"line {start + 1} does not match the line counts of its header.")
        i += 1
    if i < n and lines[i].startswith("\\"):
        i += 1  # "\ No newline at end of file" after the hunk's last line
    if i < n and lines[i][:1] in ("+", "-") and lines[i] not in ("-- ", "--") and not (
            lines[i].startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ ")):
        raise EditError(f"The patch is corrupt at line {i + 1}: the hunk that starts at line "
                        f"{start + 1} has more lines than its header says.")
    section.hunks += 1
    return i


def diff_stats(files: Sequence[DiffFile]) -> DiffStats:
    """The verdict's "patch" summary: {"files": [paths], "added": n, "removed": n}."""
    return DiffStats(files=[f.path for f in files], added=sum(f.added for f in files),
                     removed=sum(f.removed for f in files))


# =============================================================================================
# Reading files (the only I/O here)
# =============================================================================================


def read_tree(root: str | Path, paths: Iterable[str],
              policy: PathPolicy = DEFAULT_POLICY) -> dict[str, str | None]:
    """The current text of each path under `root`, keyed by normalised path; None if missing.

    Bytes are decoded as UTF-8 with line endings untouched. PolicyError for a refused path or a
    path through a symbolic link; EditError for a directory or a file that is not UTF-8 text.
    """
    base = Path(root)
    out: dict[str, str | None] = {}
    for raw in paths:
        path = validate_path(raw, policy)
        target = base
        for part in path.split("/"):
            target = target / part
            if target.is_symlink():
                raise PolicyError(f"The path {path!r} is refused: {target.relative_to(base)} "
                                  "is a symbolic link.")
        if not target.exists():
            out[path] = None
            continue
        if not target.is_file():
            raise EditError(f"{path} is not a regular file, so it cannot be edited.")
        try:
            out[path] = target.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise EditError(f"{path} is not UTF-8 text, so it cannot be edited.") from None
    return out
