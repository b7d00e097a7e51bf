"""Checking a unified diff (`git diff`, `diff -u`) against the path policy without applying it.

This is what guards `selfcode eval --patch`: it reads the diff the way `git apply` will and
refuses anything the policy forbids before a byte is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

from selfcode.errors import EditError, PolicyError
from selfcode.gate.paths import DEFAULT_POLICY, PathPolicy, validate_path

__all__ = [
    "DiffFile",
    "DiffStats",
    "Section",
    "dash_name",
    "diff_stats",
    "git_header_names",
    "header_refusal",
    "parse_unified_diff",
    "read_header",
]


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


# Nine digits at most: line counts past that are not a real patch, and int() of thousands of
# digits raises ValueError (CPython caps the conversion) instead of a sentence.
_HUNK = re.compile(r"@@ -(\d{1,9})(?:,(\d{1,9}))? \+(\d{1,9})(?:,(\d{1,9}))? @@")
_INDEX_MODE = re.compile(r"index [0-9a-fA-F]+\.\.[0-9a-fA-F]+ (\d+)\s*$")
_FILE_MODES = ("100644", "100755")
_SYMLINK, _GITLINK = "120000", "160000"


def _quoted(raw: str) -> PolicyError:
    return PolicyError(f"The patch names the quoted path {raw}; paths that git quotes (with "
                       "non-ASCII characters, quotes, backslashes or control characters) are "
                       "not supported.")


class Section:
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
        # git reads extended headers (rename, copy, modes, index) before and after the
        # ---/+++ pair, up to the first hunk: so must the policy, or a "rename to" after
        # "+++ b/README.md" would go unseen.
        return self.git and not self.hunks


def git_header_names(rest: str) -> tuple[str | None, str | None]:
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


def dash_name(raw: str) -> str | None:
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


def read_header(section: Section, line: str) -> None:
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
    elif line.startswith(("rename from ", "rename old ")):  # git accepts both spellings
        section.rename_from = _raw_name(line.split(" ", 2)[2])
    elif line.startswith(("rename to ", "rename new ")):
        section.rename_to = _raw_name(line.split(" ", 2)[2])
    elif line.startswith("copy from "):
        section.copy = (_raw_name(line[len("copy from "):]), (section.copy or ("", ""))[1])
    elif line.startswith("copy to "):
        section.copy = ((section.copy or ("", ""))[0], _raw_name(line[len("copy to "):]))


def _guess_strip(name: str | None) -> int:
    """git apply's guess for a traditional diff: 0 for a name without "/", else unknown (-1)."""
    if name is None or "/" in name:
        return -1
    return 0


def _strip(name: str | None, strip: int, section: Section, policy: PathPolicy) -> str | None:
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


def header_refusal(section: Section, name: str, subject: str) -> PolicyError | None:
    """What the policy says about a section's git headers: copies, binary changes, submodules,
    symbolic links, mode changes and unknown modes are refused. `subject` starts the sentence:
    "The patch" or "Your diff"."""
    if section.copy is not None:
        return PolicyError(f"{subject} copies {section.copy[0]} to {section.copy[1]}; copy "
                           "patches are not supported.")
    if section.binary:
        return PolicyError(f"{subject} contains a binary change to {name}; only text changes "
                           "are allowed.")
    if _GITLINK in section.modes:
        return PolicyError(f"{subject} touches the submodule {name} (mode 160000); submodules "
                           "may not be changed.")
    if _SYMLINK in section.modes:
        return PolicyError(f"{subject} touches {name}, a symbolic link (mode 120000); symbolic "
                           "links may not be created, changed or deleted.")
    if any(section.mode_change):
        old_mode, new_mode = section.mode_change
        return PolicyError(f"{subject} changes the file mode of {name} (old mode "
                           f"{old_mode or '?'}, new mode {new_mode or '?'}); mode changes are not "
                           "allowed.")
    unknown = [mode for mode in section.modes if mode not in _FILE_MODES]
    if unknown:
        return PolicyError(f"{subject} gives {name} the unsupported file mode {unknown[0]}; only "
                           "regular files (100644, 100755) may be changed.")
    return None


def _finish(section: Section, strip: int, policy: PathPolicy) -> DiffFile:
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

    refusal = header_refusal(section, name, "The patch")
    if refusal is not None:
        raise refusal
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
    sections = _read_sections(lines)
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


def _read_sections(lines: list[str]) -> list[Section]:
    """Split the patch into the file sections git apply would see, reading their headers."""
    n = len(lines)
    sections: list[Section] = []
    cur: Section | None = None
    i = 0
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            cur = Section(i + 1, git=True)
            cur.header_old, cur.header_new = git_header_names(line[len("diff --git "):])
            sections.append(cur)
            i += 1
        elif line.startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ "):
            if cur is None or not cur.header_region() or cur.has_names:
                cur = Section(i + 1, git=False)
                sections.append(cur)
            cur.old, cur.new = dash_name(line[4:]), dash_name(lines[i + 1][4:])
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
                read_header(cur, line)
            i += 1
    return sections


def _read_hunk(lines: list[str], i: int, section: Section) -> int:
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
