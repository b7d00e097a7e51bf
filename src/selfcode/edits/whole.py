"""Whole-file replies: each changed file written out in full, in a fenced block after its path.

Meant for small files and for models that cannot copy lines exactly. It cannot delete a file.
Fences follow Markdown: a block closes at a bare fence of the same character at least as long
as the one that opened it; a fence with an info string ("```python") inside the content opens a
nested block, whose bare fence closes it, so code examples inside a file survive. Anything
still ambiguous is refused rather than guessed: a fenced block without a path (which is also
what a file's own bare ``` line produces when it ends the block early) and a block that never
closes (a cut-off reply). A file whose new text has a line like "# ... rest unchanged ..." is
refused too: replacing a file with such a placeholder would delete the code it stands for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from selfcode.edits.lines import keys_of, newline_of
from selfcode.edits.matching import close_buffers, open_buffers
from selfcode.edits.replytext import (
    Fence,
    NoEditsFound,
    clean_path,
    fence_of,
    looks_like_path,
    normalise_newlines,
    prev_nonblank,
)
from selfcode.errors import EditError
from selfcode.gate.paths import DEFAULT_POLICY, PathPolicy, check_file_count, validate_path

__all__ = ["ParsedWhole", "WholeFile", "apply_whole", "parse_whole_reply", "whole_paths"]

_FORMAT_HINT = (
    "Write the path of each file alone on one line, then a fenced block with the complete new "
    "content of the file, every line of it; put no other fenced blocks in your reply."
)
_LONGER_FENCE = (
    "If the file itself has lines that start with ```, open its block with a longer fence, "
    "such as ````, and close it with the same."
)
_COMMENT = re.compile(r"\s*(?:#|//|/\*|<!--|--|;|\*)")
_ELLIPSIS = re.compile(r"\.\.\.|…")
_LEFT_OUT = re.compile(
    r"(?i)\b(?:rest|remain(?:s|ing|der)?|unchanged|existing|same as (?:before|above|original)"
    r"|omitted|as before|previous(?:ly)?|other (?:code|methods|functions)|etc)\b"
)
_STRONG = re.compile(
    r"(?i)(?:rest of (?:the )?(?:file|code|module|class|function)|remains? unchanged"
    r"|omitted for brevity|existing code (?:here|unchanged)|unchanged code)"
)


@dataclass(frozen=True)
class WholeFile:
    path: str  # as written
    content: str  # the new text, every line ending in "\n"
    line: int  # 1-based line of the opening fence in the reply


@dataclass(frozen=True)
class ParsedWhole:
    rationale: str  # the prose before the first file, stripped (may be "")
    files: list[WholeFile]


def _info_path(fence: Fence) -> str | None:
    """A path given in the fence's info string: "```python src/a.py", "```src/a.py"."""
    for token in reversed(re.split(r"[\s:=]+", fence.info)):
        token = clean_path(token)
        if looks_like_path(token):
            return token
    return None


def _close(lines: list[str], i: int, fence: Fence) -> int | None:
    """The index of the fence closing the block opened at lines[i], or None if it never does."""
    depth = 0
    for j in range(i + 1, len(lines)):
        inner = fence_of(lines[j])
        if inner is None or inner.char != fence.char or inner.length < fence.length:
            continue
        if inner.info:
            depth += 1
        elif depth:
            depth -= 1
        else:
            return j
    return None


def parse_whole_reply(text: str) -> ParsedWhole:
    """The rationale and the files of a whole-file reply; EditError if it is malformed
    (NoEditsFound when it has no fenced block at all)."""
    lines = normalise_newlines(text).split("\n")
    n = len(lines)
    files: list[WholeFile] = []
    seen: dict[str, int] = {}
    rationale_end: int | None = None
    last_end = -1
    i = 0
    while i < n:
        fence = fence_of(lines[i])
        if fence is None:
            i += 1
            continue
        path: str | None = None
        k = prev_nonblank(lines, i - 1, last_end)
        start = i
        if k is not None and looks_like_path(clean_path(lines[k])):
            path, start = clean_path(lines[k]), k
        elif fence.info:
            path = _info_path(fence)
        j = _close(lines, i, fence)
        named = f" for {path}" if path else ""
        if j is None:
            raise EditError(f"Your reply ends inside the block{named} that opens at line {i + 1}: "
                            "it has no closing fence. The reply was probably cut off; send the "
                            f"complete file again. {_LONGER_FENCE}")
        if path is None:
            before = f" (the line before it is {lines[k].strip()[:80]!r})" if k is not None else ""
            after = (" A line starting with ``` inside the file before it may have ended that "
                     f"block early. {_LONGER_FENCE}") if files else ""
            raise EditError(f"The fenced block at line {i + 1} of your reply has no file "
                            f"path{before}. {_FORMAT_HINT}{after}")
        key = path.strip("/")
        if key in seen:
            raise EditError(f"Your reply has two blocks for {path} (at lines {seen[key]} and "
                            f"{i + 1}); send each file once, complete.")
        seen[key] = i + 1
        files.append(WholeFile(path=path, content="".join(f"{line}\n" for line in lines[i + 1:j]),
                               line=i + 1))
        rationale_end = start if rationale_end is None else rationale_end
        last_end = j
        i = j + 1
    if not files:
        raise NoEditsFound(f"Your reply contained no file blocks, so nothing can be changed. "
                           f"{_FORMAT_HINT}")
    rationale = "\n".join(lines[:rationale_end]).strip()
    return ParsedWhole(rationale=rationale, files=files)


def whole_paths(parsed: ParsedWhole, policy: PathPolicy = DEFAULT_POLICY) -> list[str]:
    """The validated, normalised paths of the reply's files; PolicyError for a refused path or
    too many files, EditError when two blocks name the same file."""
    seen: dict[str, int] = {}
    for item in parsed.files:
        path = validate_path(item.path, policy)
        if path in seen:
            raise EditError(f"Your reply has two blocks for {path} (at lines {seen[path]} and "
                            f"{item.line}); send each file once, complete.")
        seen[path] = item.line
    check_file_count(seen, policy)
    return list(seen)


def _left_out(line: str) -> bool:
    """True for a comment that stands for code left out: "# ... rest of the code ..."."""
    if _COMMENT.match(line) is None:
        return False
    return bool(_STRONG.search(line)) or bool(_ELLIPSIS.search(line) and _LEFT_OUT.search(line))


def apply_whole(files: Mapping[str, str | None], parsed: ParsedWhole,
                policy: PathPolicy = DEFAULT_POLICY) -> dict[str, str | None]:
    """The new content of every file in the reply, keyed by normalised path.

    `files` holds the current content of each path `whole_paths` returns (None: no such file).
    A file keeps its line endings ("\\r\\n" stays "\\r\\n"). All or nothing.
    """
    paths = whole_paths(parsed, policy)
    buffers = open_buffers(files, paths, policy, "apply_whole")
    for path, item in zip(paths, parsed.files, strict=True):
        buf = buffers[path]
        before = buf.text() if buf.exists else ""
        known = {key.strip() for key in keys_of(before)}
        for number, key in enumerate(keys_of(item.content), start=1):
            if _left_out(key) and key.strip() not in known:
                raise EditError(f"The new {path} in your reply looks incomplete: its line "
                                f"{number}, {key.strip()[:80]!r}, stands for code left out. A "
                                "whole-file block must hold the complete file, every line of "
                                "it, since it replaces the file.")
        content = item.content
        if buf.exists and newline_of(before) == "\r\n":
            content = content.replace("\n", "\r\n")
        buf.exists = True
        buf.set_text(content)
        buf.edited += 1
    return close_buffers(buffers, policy)
