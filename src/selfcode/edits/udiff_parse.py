"""Unified diffs written by a model, read leniently into file sections and hunks.

A model's diff is not `git diff` output: its line numbers and counts are often wrong, it may
leave them out ("@@ ... @@"), drop the space before an empty context line, or wrap the diff in
prose and fences. So the reader keeps each hunk's lines and the header's numbers as written, and
`udiff.apply_udiff` places the hunk by its content. The counts are used for one thing here:
telling a reply that was cut off from a complete one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from selfcode.edits.replytext import NoEditsFound, fence_of, normalise_newlines, prev_nonblank
from selfcode.errors import EditError, PolicyError
from selfcode.gate.diffs import Section, dash_name, git_header_names, header_refusal, read_header

__all__ = ["FilePatch", "Hunk", "ParsedDiff", "parse_udiff_reply"]

_NUMBERS = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FORMAT_HINT = (
    "Write each change as a unified diff in a ```diff block: a '--- a/path' line, a "
    "'+++ b/path' line, then hunks that start with an '@@' line and whose lines each start "
    "with ' ' (unchanged), '-' (removed) or '+' (added)."
)


@dataclass(frozen=True)
class Hunk:
    line: int  # 1-based line of its '@@' header in the reply
    old_start: int | None  # the header's numbers as written; None when it has none
    old_count: int | None
    new_count: int | None
    old: str  # its ' ' and '-' lines, each ending in "\n"
    new: str  # its ' ' and '+' lines, each ending in "\n"
    new_ends_without_newline: bool = False  # "\ No newline at end of file" after a '+' line

    @property
    def changes(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class FilePatch:
    line: int  # 1-based line of its '---' (or 'diff --git') line in the reply
    old_path: str | None  # as written, a/ prefix removed; None for /dev/null (a new file)
    new_path: str | None  # None for /dev/null (a deleted file)
    hunks: tuple[Hunk, ...]

    @property
    def path(self) -> str:
        name = self.new_path if self.new_path is not None else self.old_path
        assert name is not None  # the parser never makes a patch with neither
        return name


@dataclass(frozen=True)
class ParsedDiff:
    rationale: str  # the prose before the first diff line, stripped (may be "")
    files: list[FilePatch]


@dataclass
class _Draft:
    line: int
    old: str | None  # names as written, prefixes still on
    new: str | None
    git: Section | None
    hunks: list[Hunk] = field(default_factory=list)


def _is_header_pair(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _ends_hunk(lines: list[str], j: int) -> bool:
    line = lines[j]
    return line.startswith(("@@", "diff --git ")) or _is_header_pair(lines, j)


def _header_numbers(header: str) -> tuple[int | None, int | None, int | None]:
    """(old start, old count, new count) of an '@@' line; all None when it has no numbers."""
    m = _NUMBERS.match(header)
    if m is None:
        return None, None, None
    old_count = int(m.group(2)) if m.group(2) is not None else 1
    new_count = int(m.group(4)) if m.group(4) is not None else 1
    return int(m.group(1)), old_count, new_count


def _body_lines(lines: list[str], j: int) -> tuple[list[str], list[str], int, int | None, int]:
    """The lines of a hunk's body from lines[j] on: (tags, texts, trailing, no_newline_after,
    stop). A tag is " ", "-" or "+", a text the line without it; `trailing` counts the empty
    lines at the end, `no_newline_after` the index of the line the "No newline at end of
    file" marker follows, `stop` the index of the first line after the body."""
    n = len(lines)
    tags: list[str] = []
    texts: list[str] = []
    trailing = 0
    no_newline_after: int | None = None
    while j < n:  # the hot loop of the parser: no calls per line but the slicing
        line = lines[j]
        tag = line[:1]
        if tag == "-":
            if line.startswith("--- ") and j + 1 < n and lines[j + 1].startswith("+++ "):
                break  # the next file's header
        elif not line:
            tags.append(" ")  # an empty context line whose space was dropped
            texts.append("")
            trailing += 1
            j += 1
            continue
        elif tag == "\\":
            no_newline_after = len(tags) - 1
            j += 1
            continue
        elif tag != " " and tag != "+":
            break  # '@@', 'diff --git', a fence, prose
        tags.append(tag)
        texts.append(line[1:])
        trailing = 0
        j += 1
    return tags, texts, trailing, no_newline_after, j


def _claimed_blank_lines(tags: list[str], trailing: int, old_count: int | None,
                         new_count: int | None) -> int:
    """How many of the `trailing` empty lines the header's counts say belong to the hunk; the
    others are the blank line a model leaves after it."""
    core = len(tags) - trailing
    core_old = core - tags[:core].count("+")
    core_new = core - tags[:core].count("-")
    if old_count is not None and new_count is not None:
        for t in range(trailing + 1):
            if core_old + t == old_count and core_new + t == new_count:
                return t
    return 0


def _breaks_hunk(lines: list[str], stop: int, fenced: bool) -> bool:
    """Whether lines[stop], which ended a hunk's body, is a broken hunk line, not its end."""
    n = len(lines)
    stray = stop < n and fence_of(lines[stop]) is None and not _ends_hunk(lines, stop)
    # Inside a fence nothing but hunk lines may follow; outside one, a line that breaks the
    # hunk and is followed by more '+'/'-' lines is a broken hunk, not prose.
    return stray and (fenced or (stop + 1 < n and lines[stop + 1][:1] in ("+", "-")
                                 and not _ends_hunk(lines, stop + 1)))


def _read_hunk(lines: list[str], i: int, fenced: bool) -> tuple[Hunk, int]:
    """The hunk whose '@@' header is lines[i], and the index of the first line after it."""
    old_start, old_count, new_count = _header_numbers(lines[i])
    tags, texts, trailing, no_newline_after, stop = _body_lines(lines, i + 1)
    keep = len(tags) - trailing + _claimed_blank_lines(tags, trailing, old_count, new_count)
    del tags[keep:], texts[keep:]
    where = f"the hunk that starts at line {i + 1} of your reply"
    if _breaks_hunk(lines, stop, fenced):
        raise EditError(f"Line {stop + 1} of your reply, inside {where}, does not start with "
                        f"' ', '-' or '+': {lines[stop].strip()[:80]!r}. Every line of a hunk "
                        "starts with one of them: ' ' for an unchanged line, '-' for a removed "
                        "one, '+' for an added one.")
    if "+" not in tags and "-" not in tags and not any(text.strip() for text in texts):
        raise EditError(f"In {where}, there are no lines after the '@@' line. {_FORMAT_HINT}")
    old_n = len(tags) - tags.count("+")
    new_n = len(tags) - tags.count("-")
    short = (old_count is not None and new_count is not None
             and (old_n < old_count or new_n < new_count))
    if short and stop >= len(lines):
        raise EditError(f"Your reply ends inside {where}: its header promises {old_count} old and "
                        f"{new_count} new lines, but only {old_n} and {new_n} follow. The reply "
                        "was probably cut off; send the complete diff again.")
    old = "".join([text + "\n" for tag, text in zip(tags, texts, strict=True) if tag != "+"])
    new = "".join([text + "\n" for tag, text in zip(tags, texts, strict=True) if tag != "-"])
    no_newline = no_newline_after is not None and no_newline_after == len(tags) - 1 \
        and tags[-1] != "-"
    return Hunk(line=i + 1, old_start=old_start, old_count=old_count, new_count=new_count,
                old=old, new=new, new_ends_without_newline=no_newline), stop


def _strip_prefixes(old: str | None, new: str | None) -> tuple[str | None, str | None]:
    """Names without git's a/ and b/ prefixes, when the diff uses them."""
    prefixed = (old is None or old.startswith("a/")) and (new is None or new.startswith("b/"))
    if not prefixed or (old is None and new is None):
        return old, new
    return (old[2:] if old is not None else None), (new[2:] if new is not None else None)


def _finish(draft: _Draft) -> FilePatch:
    old, new = _strip_prefixes(draft.old, draft.new)
    if old is None and new is None:
        raise EditError(f"The file section at line {draft.line} of your reply names no file: "
                        "both its '---' and '+++' lines say /dev/null.")
    name = new if new is not None else old
    assert name is not None
    if draft.git is not None:
        refusal = header_refusal(draft.git, name, "Your diff")
        if refusal is not None:
            raise refusal
        if draft.git.rename_from is not None or draft.git.rename_to is not None:
            old = draft.git.rename_from or old
            new = draft.git.rename_to or new
    return FilePatch(line=draft.line, old_path=old, new_path=new, hunks=tuple(draft.hunks))


def _header_only(section: Section) -> _Draft:
    """A 'diff --git' section with no '---'/'+++' lines: only an empty new or deleted file, or
    a header the policy refuses (a mode change, a rename...), which `_finish` reports."""
    old, new = section.header_old, section.header_new
    if section.new_file:
        old = None
    elif section.deleted:
        new = None
    else:
        refused = header_refusal(section, new or old or "?", "Your diff") is not None
        renamed = section.rename_from is not None or section.rename_to is not None
        if not refused and not renamed:
            raise EditError(f"The 'diff --git' section at line {section.line} of your reply "
                            "changes nothing: it has no '---'/'+++' lines and no hunks. "
                            f"{_FORMAT_HINT}")
    return _Draft(line=section.line, old=old, new=new, git=section)


@dataclass
class _Sections:
    """What reading a reply has found so far."""

    drafts: list[_Draft] = field(default_factory=list)
    cur: _Draft | None = None  # the section the next hunk belongs to
    git: Section | None = None  # a 'diff --git' header still waiting for its '---'/'+++'
    first: int | None = None  # index of the reply's first diff line
    fence_open: tuple[int, str, int] | None = None  # (line index, char, length)

    def git_header(self, line: str, i: int) -> None:
        if self.git is not None:
            self.drafts.append(_header_only(self.git))
        self.git = Section(i + 1, git=True)
        self.git.header_old, self.git.header_new = git_header_names(line[len("diff --git "):])
        self.first = i if self.first is None else self.first
        self.cur = None

    def names(self, lines: list[str], i: int) -> None:
        """The '---'/'+++' pair at lines[i] starts a file section."""
        git = self.git
        if git is not None:
            git.has_names = True
        self.cur = _Draft(line=git.line if git else i + 1, old=dash_name(lines[i][4:]),
                          new=dash_name(lines[i + 1][4:]), git=git)
        self.git = None
        self.drafts.append(self.cur)
        self.first = i if self.first is None else self.first

    def other(self, line: str, i: int) -> None:
        """A line outside hunks: an extended git header, a fence, or prose."""
        if self.git is not None:
            read_header(self.git, line)
        fence = fence_of(line)
        if fence is not None:
            if self.fence_open is None:
                self.fence_open = (i, fence.char, fence.length)
            elif (fence.char == self.fence_open[1] and fence.length >= self.fence_open[2]
                  and not fence.info):
                self.fence_open = None


def _read_sections(lines: list[str]) -> _Sections:
    found = _Sections()
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            found.git_header(line, i)
            i += 1
        elif _is_header_pair(lines, i):
            found.names(lines, i)
            i += 2
        elif line.startswith("@@"):
            if found.cur is None:
                raise EditError(f"Line {i + 1} of your reply starts a hunk ('@@'), but no "
                                "'--- a/path' and '+++ b/path' lines before it say which file "
                                f"it changes. {_FORMAT_HINT}")
            hunk, i = _read_hunk(lines, i, fenced=found.fence_open is not None)
            found.cur.hunks.append(hunk)
        elif line.startswith("GIT binary patch") or (line.startswith("Binary files ")
                                                     and line.endswith(" differ")):
            raise PolicyError(f"Your diff contains a binary change ({line.strip()[:80]}); only "
                              "text changes are allowed.")
        else:
            found.other(line, i)
            i += 1
    if found.git is not None:
        found.drafts.append(_header_only(found.git))
    return found


def _check_complete(found: _Sections) -> None:
    """EditError when the reply was cut off inside a fence, or a file section has no hunks."""
    if found.fence_open is not None and found.first is not None:
        last = next((h for d in reversed(found.drafts) for h in reversed(d.hunks)), None)
        if last is None or last.old_count is None:
            raise EditError(f"Your reply ends inside the fenced block opened at line "
                            f"{found.fence_open[0] + 1}: it has no closing fence, so the diff "
                            "was probably cut off. Send the complete diff again, closing the "
                            "block with ```.")
    for draft in found.drafts:
        if not draft.hunks and draft.git is None and draft.old is not None \
                and draft.new is not None:
            raise EditError(f"The file section for {draft.new or draft.old} at line "
                            f"{draft.line} of your reply has no hunks ('@@' lines). "
                            f"{_FORMAT_HINT}")


def _rationale(lines: list[str], first: int | None) -> str:
    """The prose before the first diff line, without the fence that opens the diff."""
    end = first if first is not None else len(lines)
    k = prev_nonblank(lines, end - 1, -1)
    if k is not None and fence_of(lines[k]) is not None:
        end = k
    return "\n".join(lines[:end]).strip()


def parse_udiff_reply(text: str) -> ParsedDiff:
    """The rationale and the file sections of a reply written as a unified diff.

    EditError for a malformed diff (NoEditsFound when there is none at all), PolicyError for a
    binary change; paths are checked later, by `udiff_paths`.
    """
    lines = normalise_newlines(text).split("\n")
    found = _read_sections(lines)
    if not found.drafts:
        raise NoEditsFound(f"Your reply contained no unified diff, so nothing can be changed. "
                           f"{_FORMAT_HINT}")
    _check_complete(found)
    return ParsedDiff(rationale=_rationale(lines, found.first),
                      files=[_finish(draft) for draft in found.drafts])
