"""Reading what git prints about a patch: `git apply --numstat --summary -z` and
`git diff-index --raw -z -p -U0`. Pure functions over bytes, table-tested.

git's output is the ground truth for what a patch does, so these parsers are strict: a line they
do not recognise is kept as `unknown`, and the caller refuses the patch rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "Change",
    "Entry",
    "Summary",
    "added_lines",
    "c_quote",
    "c_unquote",
    "parse_apply_output",
    "parse_diff_index",
    "parse_summary",
]


@dataclass(frozen=True)
class Entry:
    """One file section of the patch as git reads it (a `--numstat` record)."""

    path: str  # the new name, or the old one for a deletion
    added: int | None  # None: git reads a binary patch
    removed: int | None


@dataclass(frozen=True)
class Change:
    """One path whose index entry differs after git applied the patch (a `--raw` record)."""

    old_mode: str  # "000000" when the path is new
    new_mode: str  # "000000" when the path is gone
    new_oid: str
    status: str  # A, D, M, T (type change)
    path: str
    added: frozenset[int] = frozenset()  # 1-based lines of the new content that are new


@dataclass
class Summary:
    """What git's `--summary` lines say: creations, deletions, renames, copies, mode changes."""

    created: dict[str, str] = field(default_factory=dict)  # path -> mode
    deleted: dict[str, str] = field(default_factory=dict)
    renames: list[tuple[str, str]] = field(default_factory=list)
    copies: list[tuple[str, str]] = field(default_factory=list)
    mode_changes: list[tuple[str, str, str]] = field(default_factory=list)  # (path, old, new)
    unknown: list[str] = field(default_factory=list)


_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_QUOTE_BYTES = {byte: letter for letter, byte in _ESCAPES.items()}


def c_unquote(text: str) -> str:
    """A name as git prints it: C-quoted ("a\\303\\251") when it has odd bytes, else raw."""
    if not (len(text) >= 2 and text.startswith('"') and text.endswith('"')):
        return text
    out = bytearray()
    body = text[1:-1].encode("utf-8", "surrogateescape")
    i = 0
    while i < len(body):
        byte = body[i]
        if byte != 92 or i + 1 >= len(body):
            out.append(byte)
            i += 1
            continue
        octal = body[i + 1:i + 4]
        if len(octal) == 3 and all(0x30 <= c <= 0x37 for c in octal):
            out.append(int(octal, 8) & 0xFF)
            i += 4
        else:
            out.append(_ESCAPES.get(chr(body[i + 1]), body[i + 1]))
            i += 2
    return out.decode("utf-8", "surrogateescape")


def c_quote(name: str) -> str:
    """`name` as git's write_name_quoted prints it with core.quotePath on (its default)."""
    raw = name.encode("utf-8", "surrogateescape")
    if not any(b < 0x20 or b in (0x22, 0x5C, 0x7F) or b >= 0x80 for b in raw):
        return name
    parts = []
    for b in raw:
        if b in _QUOTE_BYTES:
            parts.append("\\" + _QUOTE_BYTES[b])
        elif b < 0x20 or b >= 0x7F:
            parts.append(f"\\{b:03o}")
        else:
            parts.append(chr(b))
    return '"' + "".join(parts) + '"'


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_apply_output(out: bytes) -> tuple[list[Entry], list[str]]:
    """Split `git apply --numstat --summary -z` output into numstat records and summary lines.

    The numstat records end in NUL and come first; the summary lines (which never contain NUL)
    follow the last NUL.
    """
    cut = out.rfind(b"\0")
    records = out[:cut].split(b"\0") if cut >= 0 else []
    entries = []
    for record in records:
        counts = record.split(b"\t", 2)
        if len(counts) != 3:
            raise ValueError(f"unexpected numstat record {record!r}")
        added, removed, name = counts
        binary = added == b"-" and removed == b"-"
        entries.append(Entry(path=_decode(name), added=None if binary else int(added),
                             removed=None if binary else int(removed)))
    tail = _decode(out[cut + 1:])
    return entries, [line for line in tail.split("\n") if line]


_FILE_LINE = re.compile(r" (create|delete) mode (\d{6}) (.+)")
_MODE_LINE = re.compile(r" mode change (\d{6}) => (\d{6}) (.+)")
_RENAME_LINE = re.compile(r" (rename|copy) (.+) \(\d+%\)")
_RENAME_MODE = re.compile(r"   mode change (\d{6}) => (\d{6})")
_REWRITE_LINE = re.compile(r" rewrite (.+) \(\d+%\)")


def _rename_sources(body: str, new_names: list[str]) -> set[tuple[str, str]]:
    """Every (old, new) that git's show_rename_copy could have printed as `body`, for a new
    name among `new_names`: "old => new", or "prefix/{old-rest => new-rest}"."""
    found = set()
    for new in new_names:
        if body.endswith(" => " + new) and len(body) > len(new) + 4:
            found.add((body[:-len(new) - 4], new))
        cut = new.find("/")
        while cut >= 0:
            prefix, rest = new[:cut + 1], new[cut + 1:]
            head, tail = prefix + "{", " => " + rest + "}"
            if body.startswith(head) and body.endswith(tail) and len(body) > len(head + tail):
                found.add((prefix + body[len(head):-len(tail)], new))
            cut = new.find("/", cut + 1)
    return found


def parse_summary(lines: list[str], new_names: list[str]) -> Summary:
    """Read git's `--summary` lines; `new_names` (git's numstat names) resolve rename lines,
    which git prints unquoted with a shared directory folded into braces."""
    out = Summary()
    for line in lines:
        if m := _FILE_LINE.fullmatch(line):
            target = out.created if m.group(1) == "create" else out.deleted
            target[c_unquote(m.group(3))] = m.group(2)
        elif m := _MODE_LINE.fullmatch(line):
            out.mode_changes.append((c_unquote(m.group(3)), m.group(1), m.group(2)))
        elif m := _RENAME_MODE.fullmatch(line):
            last = out.renames[-1:] or out.copies[-1:]
            name = last[0][1] if last else "?"
            out.mode_changes.append((name, m.group(1), m.group(2)))
        elif (m := _RENAME_LINE.fullmatch(line)) and len(
                pairs := _rename_sources(m.group(2), new_names)) == 1:
            (out.renames if m.group(1) == "rename" else out.copies).append(pairs.pop())
        elif not _REWRITE_LINE.fullmatch(line):
            out.unknown.append(line)  # includes ambiguous rename lines: refuse, never guess
    return out


_RAW = re.compile(r":(\d{6}) (\d{6}) ([0-9a-f]+) ([0-9a-f]+) ([A-Z])\d*")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


def added_lines(patch: str) -> frozenset[int]:
    """The new-side line numbers a `-U0` diff of one file adds."""
    lines: set[int] = set()
    for m in _HUNK.finditer(patch):
        start, count = int(m.group(1)), int(m.group(2) or "1")
        lines.update(range(start, start + count))
    return frozenset(lines)


def parse_diff_index(out: bytes) -> list[Change]:
    """`git diff-index --raw -z -p -U0 --no-renames`: one Change per raw record, each with the
    lines its patch section adds (sections come in the order of the records)."""
    tokens = out.split(b"\0")
    changes: list[tuple[str, str, str, str, str]] = []
    i = 0
    while i + 1 < len(tokens) and tokens[i].startswith(b":"):
        m = _RAW.fullmatch(_decode(tokens[i]))
        if m is None:
            raise ValueError(f"unexpected raw record {tokens[i]!r}")
        changes.append((m.group(1), m.group(2), m.group(4), m.group(5), _decode(tokens[i + 1])))
        i += 2
    patch = _decode(b"\0".join(tokens[i:]).lstrip(b"\0"))
    sections = re.split(r"^(?=diff --git )", patch, flags=re.MULTILINE)
    sections = [s for s in sections if s.startswith("diff --git ")]
    if len(sections) != len(changes):
        raise ValueError(f"{len(changes)} raw records but {len(sections)} patch sections")
    return [Change(old_mode=o, new_mode=n, new_oid=oid, status=st, path=path,
                   added=added_lines(section))
            for (o, n, oid, st, path), section in zip(changes, sections, strict=True)]
