"""SEARCH/REPLACE blocks: reading them out of a model reply and applying them, all or nothing."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from selfcode.edits.matching import Buffer, Wording, close_buffers, open_buffers, replace_unique
from selfcode.edits.replytext import NoEditsFound, clean_path, is_fence, prev_nonblank
from selfcode.errors import EditError
from selfcode.gate.paths import (
    DEFAULT_POLICY,
    PathPolicy,
    check_edit_count,
    check_file_count,
    validate_path,
)

__all__ = ["Edit", "ParsedReply", "apply_edits", "block_spans", "parse_reply",
           "touched_paths"]


@dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE block."""

    path: str  # repo-relative POSIX path as the model wrote it
    search: str  # "" means: create a new file (or fill an empty one)
    replace: str
    line: int = field(default=0, compare=False)  # line of its SEARCH marker in the reply; 0 unknown


@dataclass(frozen=True)
class ParsedReply:
    rationale: str  # the prose before the first block, stripped (may be "")
    edits: list[Edit]


def touched_paths(edits: Sequence[Edit], policy: PathPolicy = DEFAULT_POLICY) -> list[str]:
    """The validated, normalised paths the edits touch: distinct, in order of first appearance.

    Raises PolicyError for a refused path or for more than `policy.max_files` paths, so a caller
    can safely read the returned paths before applying anything.
    """
    check_edit_count(len(edits), policy, "SEARCH/REPLACE blocks")
    seen: dict[str, None] = {}
    for edit in edits:
        seen.setdefault(validate_path(edit.path, policy), None)
    check_file_count(seen, policy)
    return list(seen)


# =============================================================================================
# Parsing
# =============================================================================================

_HEAD = re.compile(r"<{5,9}[ \t]*SEARCH[ \t]*:?")
_DIVIDER = re.compile(r"={5,9}")
_TAIL = re.compile(r">{5,9}[ \t]*REPLACE[ \t]*")
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


def block_spans(lines: list[str]) -> list[tuple[int, int]]:
    """(SEARCH line, REPLACE line), 0-based, of every complete block in `lines`: what lies
    between them is file content, whatever it looks like."""
    spans: list[tuple[int, int]] = []
    head: int | None = None
    for i, line in enumerate(lines):
        if _is_head(line):
            head = i
        elif head is not None and _is_tail(line):
            spans.append((head, i))
            head = None
    return spans


def _block_path(lines: list[str], head: int, last_end: int,
                last_path: str | None) -> tuple[str, int]:
    """The path of the block whose SEARCH marker is lines[head], and where the block starts.

    The path is the last non-blank line before the opening fence (or before the marker when
    there is no fence). A block that follows the previous one with nothing but fences in
    between edits the same file as the previous one.
    """
    where = f"The SEARCH/REPLACE block at line {head + 1} of your reply"
    k = prev_nonblank(lines, head - 1, last_end)
    start = head
    if k is not None and is_fence(lines[k]):
        start = k
        k = prev_nonblank(lines, k - 1, last_end)
    if k is None:
        if last_path is not None:
            return last_path, start
        raise EditError(f"{where} has no file path. {_FORMAT_HINT}")
    if is_fence(lines[k]):
        if last_path is not None and prev_nonblank(lines, k - 1, last_end) is None:
            return last_path, k  # "```" closing the previous block, then "```python" again
        raise EditError(f"{where} has no file path. {_FORMAT_HINT}")
    path = clean_path(lines[k])
    if not path:
        raise EditError(f"{where} has no file path. {_FORMAT_HINT}")
    if any(ch.isspace() for ch in path):
        raise EditError(f"{where} has no usable file path: the line before it must be the path "
                        f"alone, but it is {lines[k].strip()!r}. {_FORMAT_HINT}")
    p = prev_nonblank(lines, k - 1, last_end)
    if p is not None and is_fence(lines[p]):
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
                          _join_lines(lines[divider + 1:j]), line=i + 1))
        last_end, last_path = j, path
        i = j + 1
    if not edits:
        raise NoEditsFound("Your reply contained no SEARCH/REPLACE blocks, so nothing can be "
                        f"changed. {_FORMAT_HINT}")
    rationale = "\n".join(lines[:rationale_end]).strip()
    return ParsedReply(rationale=rationale, edits=edits)


# =============================================================================================
# Applying
# =============================================================================================


def _wording(path: str, number: int) -> Wording:
    return Wording(
        subject=f"SEARCH/REPLACE block {number} (for {path})",
        part="its SEARCH section",
        earlier="blocks",
        copy_advice="SEARCH must copy the current lines exactly, including indentation, comments "
                    "and blank lines.",
        unique_advice="Add more unchanged lines around the change to SEARCH (and the same lines "
                      "to REPLACE) so that it matches exactly one place.",
    )


def _apply_one(buf: Buffer, edit: Edit, number: int) -> None:
    if not edit.search.strip():
        if buf.exists and buf.lines:
            raise EditError(f"SEARCH/REPLACE block {number} has an empty SEARCH section, but "
                            f"{buf.path} already exists and is not empty. An empty SEARCH only "
                            "creates a new file; to change this one, put the lines to replace "
                            "in SEARCH.")
        buf.exists = True
        buf.set_text(edit.replace.replace("\r\n", "\n"))
        buf.edited += 1
        return
    if not buf.exists:
        raise EditError(f"SEARCH/REPLACE block {number}: file {buf.path} does not exist; to "
                        "create it use an empty SEARCH section.")
    replace_unique(buf, edit.search, edit.replace, _wording(buf.path, number))


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
    buffers = open_buffers(files, paths, policy, "apply_edits")
    for number, edit in enumerate(edits, start=1):
        _apply_one(buffers[normalised[edit.path]], edit, number)
    return close_buffers(buffers, policy)
