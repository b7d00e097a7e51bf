"""One entry point from a model's reply to validated old and new file contents, in any format.

    rationale, old, new = parse_and_apply(reply.text, "udiff", reader)

`reader(paths)` returns the current text of each (validated, normalised) path, None for a
missing file; the agent passes `lambda paths: read_tree(worktree, paths)`, which refuses a path
through a symbolic link. Nothing is written: the caller renders `render_diff(old, new)`.

The order is fixed so that a hostile reply costs nothing: size first (before any parsing), then
syntax, then every path against the policy, and only then are files read and the edits applied
to the in-memory copies, all or nothing.

A reply that holds no edit in the format asked for, but plainly holds one in the other
anchored format (SEARCH/REPLACE blocks when a diff was asked for, or the reverse), is read in
that format: both place every change by the file's current lines, so nothing can land
elsewhere. A whole-file block is never guessed from another format's reply, since it replaces
the whole file; but a whole-file "block" that is really a SEARCH/REPLACE block or a diff is read
as one.

A reply that holds both (a SEARCH/REPLACE block and, outside every block, diff lines) is
refused with one message, so the repair turn asks for one format: read in either format, the
other part would be dropped without a word.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, get_args

from selfcode.edits.blocks import apply_edits, block_spans, parse_reply, touched_paths
from selfcode.edits.replytext import NoEditsFound, normalise_newlines
from selfcode.edits.udiff import apply_udiff, parse_udiff_reply, udiff_paths
from selfcode.edits.whole import apply_whole, parse_whole_reply, whole_paths
from selfcode.errors import EditError
from selfcode.gate.paths import DEFAULT_POLICY, PathPolicy, check_reply_size, validate_path

__all__ = [
    "EDIT_FORMATS",
    "EditFormat",
    "FilesReader",
    "choose_format",
    "format_template",
    "parse_and_apply",
]

EditFormat = Literal["search-replace", "udiff", "whole"]
EDIT_FORMATS: tuple[str, ...] = get_args(EditFormat)
FilesReader = Callable[[list[str]], Mapping[str, str | None]]
Result = tuple[str, dict[str, str | None], dict[str, str | None]]

_BLOCK_HEAD = re.compile(r"^<{5,9}[ \t]*SEARCH[ \t]*:?[ \t]*\r?$", re.MULTILINE)
_BLOCK_TAIL = re.compile(r"^>{5,9}[ \t]*REPLACE[ \t]*\r?$", re.MULTILINE)
_DIFF_NAMES = re.compile(r"^--- [^\n]*\n\+\+\+ ", re.MULTILINE)
_DIFF_HUNK = re.compile(r"^@@", re.MULTILINE)
_HUNK_HEADER = re.compile(r"@@ .*@@")
_ONE_FORMAT = {
    "search-replace": "SEARCH/REPLACE blocks only (the file's path alone on a line, then "
                      "'<<<<<<< SEARCH', the exact current lines, '=======', the new lines, "
                      "'>>>>>>> REPLACE'), with no diff lines",
    "udiff": "one unified diff only ('--- a/path', '+++ b/path', then '@@' hunks), with no "
             "SEARCH/REPLACE markers",
    "whole": "complete files only, each in a fenced block after its path, with no "
             "SEARCH/REPLACE markers or diff lines",
}


def choose_format(model: str, edit_format: str = "auto",
                  formats: Mapping[str, str] | None = None) -> EditFormat:
    """The edit format to ask `model` for.

    An explicit `edit_format` wins; with "auto", the longest glob in `formats` (model-name
    pattern -> format, matched without regard to case) that matches the model decides, and
    SEARCH/REPLACE is the default. ValueError for a format that does not exist.
    """
    if edit_format != "auto":
        return _checked(edit_format)
    best: tuple[int, str] | None = None
    for pattern, fmt in (formats or {}).items():
        if fnmatch.fnmatchcase(model.lower(), pattern.lower()) and (
                best is None or len(pattern) > best[0]):
            best = (len(pattern), fmt)
    return _checked(best[1]) if best is not None else "search-replace"


def format_template(fmt: str) -> str:
    """The name of the prompt template with the instructions for `fmt`: "format_udiff"."""
    return f"format_{_checked(fmt)}"


def _checked(fmt: str) -> EditFormat:
    if fmt == "search-replace":
        return "search-replace"
    if fmt == "udiff":
        return "udiff"
    if fmt == "whole":
        return "whole"
    raise ValueError(f"unknown edit format {fmt!r}; choose one of {', '.join(EDIT_FORMATS)}")


def _has_blocks(text: str) -> bool:
    return _BLOCK_HEAD.search(text) is not None and _BLOCK_TAIL.search(text) is not None


def _has_diff(text: str) -> bool:
    return _DIFF_NAMES.search(text) is not None and _DIFF_HUNK.search(text) is not None


def _diff_line(lines: list[str], i: int, content: set[int]) -> bool:
    """True if lines[i] starts a unified diff's file header or hunk (outside `content`)."""
    line = lines[i]
    if line.startswith("diff --git ") or _HUNK_HEADER.match(line):
        return True
    return (line.startswith("--- ") and i + 1 < len(lines) and i + 1 not in content
            and lines[i + 1].startswith("+++ "))


def mixed_formats(text: str, asked: str) -> str | None:
    """The message for a reply that mixes SEARCH/REPLACE blocks with diff lines outside
    them, asking for `asked` only; None for a reply in one format. Lines between a block's
    SEARCH and REPLACE markers are file content and never count (a diff in a docstring)."""
    lines = normalise_newlines(text).split("\n")
    spans = block_spans(lines)
    if not spans:
        return None
    content = {i for head, tail in spans for i in range(head, tail + 1)}
    diff = next((i for i in range(len(lines))
                 if i not in content and _diff_line(lines, i, content)), None)
    if diff is None:
        return None
    return (f"Your reply mixes two edit formats: a SEARCH/REPLACE block at line "
            f"{spans[0][0] + 1} and unified-diff lines at line {diff + 1} "
            f"({lines[diff].strip()[:80]!r}); read either way, part of it would be lost. "
            f"Send the whole change again as {_ONE_FORMAT[asked]}.")


def _refuse_mixed(text: str, asked: str) -> None:
    message = mixed_formats(text, asked)
    if message is not None:
        raise EditError(message)


def _read(reader: FilesReader, paths: Sequence[str]) -> dict[str, str | None]:
    """The reader's answer for exactly `paths`, copied so that nothing we do can change it."""
    given = reader(list(paths))
    missing = [path for path in paths if path not in given]
    if missing:
        raise ValueError(f"the files reader gave no entry for {missing[0]!r}; it must return "
                         "None for a file that does not exist")
    return {path: given[path] for path in paths}


def _search_replace(text: str, reader: FilesReader, policy: PathPolicy) -> Result:
    parsed = parse_reply(text)
    old = _read(reader, touched_paths(parsed.edits, policy))
    return parsed.rationale, old, apply_edits(old, parsed.edits, policy)


def _udiff(text: str, reader: FilesReader, policy: PathPolicy) -> Result:
    parsed = parse_udiff_reply(text)
    old = _read(reader, udiff_paths(parsed, policy))
    return parsed.rationale, old, apply_udiff(old, parsed, policy)


def _whole(text: str, reader: FilesReader, policy: PathPolicy) -> Result:
    parsed = parse_whole_reply(text)
    old = _read(reader, whole_paths(parsed, policy))
    for item in parsed.files:
        # A "whole file" that is really a SEARCH/REPLACE block or a diff would replace the file
        # with edit markers; read the reply in the format it was written in instead.
        before = old.get(validate_path(item.path, policy)) or ""
        if _has_blocks(item.content) and not _has_blocks(before):
            _refuse_mixed(text, "whole")
            return _search_replace(text, reader, policy)
        if _has_diff(item.content) and not _has_diff(before):
            _refuse_mixed(text, "whole")
            return _udiff(text, reader, policy)
    return parsed.rationale, old, apply_whole(old, parsed, policy)


_FLOWS: dict[str, Callable[[str, FilesReader, PathPolicy], Result]] = {
    "search-replace": _search_replace,
    "udiff": _udiff,
    "whole": _whole,
}


def parse_and_apply(reply_text: str, fmt: str, files_reader: FilesReader,
                    policy: PathPolicy = DEFAULT_POLICY) -> Result:
    """(rationale, old, new) for a model reply in edit format `fmt` ("auto" = search-replace).

    `old` and `new` map each touched, normalised path to its current and its new text (None: no
    such file, or deleted). Raises EditError with a message meant for the model (PolicyError
    when the policy refuses the reply or a path), also when the edits change nothing; nothing
    is written anywhere. `files_reader` is called at most twice, only with validated paths, and
    only after the whole reply has been parsed.
    """
    check_reply_size(reply_text, policy)
    chosen: str = "search-replace" if fmt == "auto" else _checked(fmt)
    if chosen != "whole":  # a whole file may hold anything; its own flow checks what it reads
        _refuse_mixed(reply_text, chosen)
    try:
        rationale, old, new = _FLOWS[chosen](reply_text, files_reader, policy)
    except NoEditsFound:
        if chosen != "udiff" and _has_diff(reply_text):
            rationale, old, new = _udiff(reply_text, files_reader, policy)
        elif chosen != "search-replace" and _has_blocks(reply_text):
            rationale, old, new = _search_replace(reply_text, files_reader, policy)
        else:
            raise
    if all(old.get(path) == new.get(path) for path in new):
        raise EditError("Your edits change nothing: every file would stay exactly as it is. "
                        "Propose a real change.")
    return rationale, old, new
