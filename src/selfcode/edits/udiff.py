"""Unified diffs written by a model: read leniently, placed by content, applied all or nothing.

A model's diff is not `git diff` output: its line numbers and counts are often wrong, it may
leave them out ("@@ ... @@"), drop the space before an empty context line, or wrap the diff in
prose and fences. So a hunk is placed by its content, not its numbers: its context and '-' lines
must be found, by the same unique, whitespace-tolerant matching as a SEARCH block, and become
its context and '+' lines. The header's line number only breaks a tie between exact places.
The counts are used for one thing: telling a reply that was cut off from a complete one.

The path policy is the one `selfcode eval --patch` uses: no absolute paths, no "..", nothing
under .git, no binary changes, symbolic links, submodules, mode changes, copies or renames.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from selfcode.edits.matching import Buffer, Wording, close_buffers, open_buffers, replace_unique
from selfcode.edits.replytext import NoEditsFound, fence_of, normalise_newlines, prev_nonblank
from selfcode.errors import EditError, PolicyError
from selfcode.gate.diffs import Section, dash_name, git_header_names, header_refusal, read_header
from selfcode.gate.paths import (
    DEFAULT_POLICY,
    PathPolicy,
    check_edit_count,
    check_file_count,
    validate_path,
)

__all__ = ["FilePatch", "Hunk", "ParsedDiff", "apply_udiff", "parse_udiff_reply", "udiff_paths"]

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


# =============================================================================================
# Parsing
# =============================================================================================


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


def _read_hunk(lines: list[str], i: int, fenced: bool) -> tuple[Hunk, int]:
    """The hunk whose '@@' header is lines[i], and the index of the first line after it."""
    n = len(lines)
    m = _NUMBERS.match(lines[i])
    old_start = int(m.group(1)) if m else None
    old_count = (int(m.group(2)) if m.group(2) is not None else 1) if m else None
    new_count = (int(m.group(4)) if m.group(4) is not None else 1) if m else None
    tags: list[str] = []  # " ", "-" or "+" for each line of the body
    texts: list[str] = []  # the line without its tag
    trailing = 0  # how many lines at the end of the body were empty in the reply
    no_newline_after: int | None = None
    j = i + 1
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
    stop = j
    core = len(tags) - trailing
    core_old = core - tags[:core].count("+")
    core_new = core - tags[:core].count("-")
    keep = 0
    if old_count is not None and new_count is not None:
        for t in range(trailing + 1):  # empty lines the counts say belong to the hunk
            if core_old + t == old_count and core_new + t == new_count:
                keep = t
                break
    del tags[core + keep:], texts[core + keep:]
    where = f"the hunk that starts at line {i + 1} of your reply"
    stray = stop < n and fence_of(lines[stop]) is None and not _ends_hunk(lines, stop)
    if stray and (fenced or (stop + 1 < n and lines[stop + 1][:1] in ("+", "-")
                             and not _ends_hunk(lines, stop + 1))):
        # Inside a fence nothing but hunk lines may follow; outside one, a line that breaks the
        # hunk and is followed by more '+'/'-' lines is a broken hunk, not prose.
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
    if short and stop >= n:
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


def parse_udiff_reply(text: str) -> ParsedDiff:
    """The rationale and the file sections of a reply written as a unified diff.

    EditError for a malformed diff (NoEditsFound when there is none at all), PolicyError for a
    binary change; paths are checked later, by `udiff_paths`.
    """
    lines = normalise_newlines(text).split("\n")
    n = len(lines)
    drafts: list[_Draft] = []
    cur: _Draft | None = None
    git: Section | None = None  # a 'diff --git' header still waiting for its '---'/'+++'
    first: int | None = None
    fence_open: tuple[int, str, int] | None = None  # (line index, char, length)
    i = 0
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            if git is not None:
                drafts.append(_header_only(git))
            git = Section(i + 1, git=True)
            git.header_old, git.header_new = git_header_names(line[len("diff --git "):])
            first = i if first is None else first
            cur = None
            i += 1
        elif _is_header_pair(lines, i):
            if git is not None:
                git.has_names = True
            cur = _Draft(line=git.line if git else i + 1, old=dash_name(line[4:]),
                         new=dash_name(lines[i + 1][4:]), git=git)
            git = None
            drafts.append(cur)
            first = i if first is None else first
            i += 2
        elif line.startswith("@@"):
            if cur is None:
                raise EditError(f"Line {i + 1} of your reply starts a hunk ('@@'), but no "
                                "'--- a/path' and '+++ b/path' lines before it say which file "
                                f"it changes. {_FORMAT_HINT}")
            hunk, i = _read_hunk(lines, i, fenced=fence_open is not None)
            cur.hunks.append(hunk)
        elif line.startswith("GIT binary patch") or (line.startswith("Binary files ")
                                                     and line.endswith(" differ")):
            raise PolicyError(f"Your diff contains a binary change ({line.strip()[:80]}); only "
                              "text changes are allowed.")
        else:
            if git is not None:
                read_header(git, line)
            fence = fence_of(line)
            if fence is not None:
                if fence_open is None:
                    fence_open = (i, fence.char, fence.length)
                elif (fence.char == fence_open[1] and fence.length >= fence_open[2]
                      and not fence.info):
                    fence_open = None
            i += 1
    if git is not None:
        drafts.append(_header_only(git))
    if not drafts:
        raise NoEditsFound(f"Your reply contained no unified diff, so nothing can be changed. "
                           f"{_FORMAT_HINT}")
    if fence_open is not None and first is not None:
        last = next((h for d in reversed(drafts) for h in reversed(d.hunks)), None)
        if last is None or last.old_count is None:
            raise EditError(f"Your reply ends inside the fenced block opened at line "
                            f"{fence_open[0] + 1}: it has no closing fence, so the diff was "
                            "probably cut off. Send the complete diff again, closing the block "
                            "with ```.")
    for draft in drafts:
        if not draft.hunks and draft.git is None and draft.old is not None \
                and draft.new is not None:
            raise EditError(f"The file section for {draft.new or draft.old} at line "
                            f"{draft.line} of your reply has no hunks ('@@' lines). "
                            f"{_FORMAT_HINT}")
    end = first if first is not None else n
    k = prev_nonblank(lines, end - 1, -1)
    if k is not None and fence_of(lines[k]) is not None:
        end = k
    rationale = "\n".join(lines[:end]).strip()
    return ParsedDiff(rationale=rationale, files=[_finish(draft) for draft in drafts])


# =============================================================================================
# Paths and applying
# =============================================================================================


def _targets(parsed: ParsedDiff, policy: PathPolicy) -> list[tuple[FilePatch, str, str]]:
    """(patch, normalised path, "added" | "modified" | "deleted") for each section."""
    out = []
    for patch in parsed.files:
        old = validate_path(patch.old_path, policy) if patch.old_path is not None else None
        new = validate_path(patch.new_path, policy) if patch.new_path is not None else None
        if old is not None and new is not None and old != new:
            raise EditError(f"Your diff renames {old} to {new} (line {patch.line} of your reply); "
                            "renaming is not supported. Change the file in place, or delete it "
                            "('+++ /dev/null') and create the new one ('--- /dev/null') in two "
                            "sections.")
        if old is None:
            assert new is not None
            out.append((patch, new, "added"))
        elif new is None:
            out.append((patch, old, "deleted"))
        else:
            out.append((patch, new, "modified"))
    return out


def udiff_paths(parsed: ParsedDiff, policy: PathPolicy = DEFAULT_POLICY) -> list[str]:
    """The validated, normalised paths the diff touches, distinct, in order of appearance.

    PolicyError for a refused path or too many files; EditError for a rename.
    """
    check_edit_count(sum(len(patch.hunks) for patch in parsed.files), policy, "hunks")
    seen: dict[str, None] = {}
    for _, path, _ in _targets(parsed, policy):
        seen.setdefault(path, None)
    check_file_count(seen, policy, "Your diff's sections")
    return list(seen)


def _wording(path: str, number: int, hunk: Hunk) -> Wording:
    return Wording(
        subject=f"Hunk {number} of your diff for {path} (the '@@' at line {hunk.line} of your "
                "reply)",
        part="its context and '-' lines",
        earlier="hunks",
        copy_advice="Context (' ') and removed ('-') lines must copy the current lines of the "
                    "file exactly, in order, without gaps, including indentation and blank "
                    "lines.",
        unique_advice="Add more unchanged context lines around the change so that it matches "
                      "exactly one place.",
    )


def _create(buf: Buffer, patch: FilePatch) -> None:
    if buf.exists and buf.lines:
        raise EditError(f"Your diff creates {buf.path} ('--- /dev/null', line {patch.line} of "
                        f"your reply), but {buf.path} already exists. To change it, write "
                        f"'--- a/{buf.path}' and '+++ b/{buf.path}' and hunks whose context lines "
                        "are copied from the file.")
    for hunk in patch.hunks:
        if hunk.old:
            raise EditError(f"Your diff creates {buf.path}, so its hunks may only add lines "
                            f"('+'), but the hunk at line {hunk.line} of your reply has context "
                            "(' ') or removed ('-') lines.")
    text = "".join(hunk.new for hunk in patch.hunks)
    if patch.hunks and patch.hunks[-1].new_ends_without_newline:
        text = text[:-1]
    buf.exists = True
    buf.set_text(text)
    buf.edited += 1


def _modify(buf: Buffer, patch: FilePatch) -> None:
    offset = 0
    for number, hunk in enumerate(patch.hunks, start=1):
        if not hunk.old.strip():
            if any(key.strip() for key in buf.keys):
                raise EditError(f"Hunk {number} of your diff for {buf.path} (the '@@' at line "
                                f"{hunk.line} of your reply) only adds lines and has no context "
                                "lines, so there is no telling where they go. Include two or "
                                "three unchanged lines before and after the new ones, each "
                                "starting with a space.")
            buf.set_text(hunk.new)
            buf.edited += 1
            continue
        hint = hunk.old_start - 1 + offset if hunk.old_start else None
        replace_unique(buf, hunk.old, hunk.new, _wording(buf.path, number, hunk), hint)
        offset += hunk.new.count("\n") - hunk.old.count("\n")


def apply_udiff(files: Mapping[str, str | None], parsed: ParsedDiff,
                policy: PathPolicy = DEFAULT_POLICY) -> dict[str, str | None]:
    """The new content of every path the diff touches (None: deleted), keyed by normalised path.

    `files` holds the current content of each path `udiff_paths` returns (None: no such file).
    All or nothing: EditError (PolicyError for the policy) and no result if any hunk fails.
    """
    targets = _targets(parsed, policy)
    buffers = open_buffers(files, udiff_paths(parsed, policy), policy, "apply_udiff")
    for patch, path, kind in targets:
        buf = buffers[path]
        if kind == "added":
            _create(buf, patch)
            continue
        if not buf.exists:
            raise EditError(f"Your diff changes {path} (line {patch.line} of your reply), which "
                            f"does not exist. To create it, write '--- /dev/null' and "
                            f"'+++ b/{path}' and one hunk of '+' lines.")
        _modify(buf, patch)
        if kind == "deleted":
            left = sum(1 for key in buf.keys if key.strip())
            if left and patch.hunks:
                raise EditError(f"Your diff deletes {path} ('+++ /dev/null', line {patch.line} "
                                f"of your reply), but its hunks leave {left} non-blank lines in "
                                "it. To delete a file, remove every line, or give no hunks.")
            buf.exists = False
    return close_buffers(buffers, policy)
