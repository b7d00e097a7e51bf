"""Rendering old and new file contents as a unified diff in git's format, for `git apply`."""

from __future__ import annotations

import difflib
from bisect import bisect_left
from collections.abc import Mapping

from selfcode.edits.lines import split_lines
from selfcode.gate.paths import validate_path

__all__ = ["render_diff"]

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
    old_lines, new_lines = split_lines(old or ""), split_lines(new or "")
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

    blocks = [(0, 0, head)] if head else []
    i, j = head, head
    for ai, bj in _anchors(a, b, head, ahi, bhi):
        blocks += _gap_blocks(a, b, i, ai, j, bj)
        blocks.append((ai, bj, 1))
        i, j = ai + 1, bj + 1
    blocks += _gap_blocks(a, b, i, ahi, j, bhi)
    if tail:
        blocks.append((ahi, bhi, tail))
    return _merged(blocks)


def _anchors(a: list[str], b: list[str], head: int, ahi: int,
             bhi: int) -> list[tuple[int, int]]:
    """The longest run of pairs (i, j), increasing in both, of lines that occur exactly once in
    a[head:ahi] and once in b[head:bhi] (patience sorting)."""
    count_a: dict[str, int] = {}
    for line in a[head:ahi]:
        count_a[line] = count_a.get(line, 0) + 1
    where_b: dict[str, int] = {}
    for j in range(head, bhi):
        line = b[j]
        where_b[line] = -1 if line in where_b else j
    pairs = [(i, where_b[a[i]]) for i in range(head, ahi)
             if count_a[a[i]] == 1 and where_b.get(a[i], -1) >= 0]

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
    return anchors


def _merged(blocks: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """`blocks` with each run that continues the one before it joined to it."""
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
