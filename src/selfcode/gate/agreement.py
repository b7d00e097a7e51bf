"""Do git's reading of a patch and the policy parser's agree? Pure; every refusal is one sentence
naming a path.

The policy parser (diffs.py) decides what a patch may touch, but `git apply` in the sandbox
decides what it does. Where the two could read the same text differently (headers in an odd
order, quoting, prefixes, several sections for one file...) the patch is refused: the gate
never has to guess which reading is right. Modes are taken from git's result alone, since git
may take a mode from an `index` line or from the file it patches without printing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from selfcode.gate.diffs import DiffFile
from selfcode.gate.gitread import Change, Entry, Summary

__all__ = ["Readings", "disagreement", "git_paths"]

_PLAIN, _EXECUTABLE = "100644", "100755"
_REGULAR = (_PLAIN, _EXECUTABLE)
_SYMLINK, _GITLINK, _NONE = "120000", "160000", "000000"


@dataclass(frozen=True)
class Readings:
    files: Sequence[DiffFile]  # the policy parser's reading, one per section
    entries: Sequence[Entry]  # git's, one per section
    summary: Summary
    changes: Sequence[Change]  # what the index holds after git applied the patch


def git_paths(r: Readings) -> set[str]:
    """Every path git's reading names: sections, both sides of renames and copies, results."""
    s = r.summary
    return ({e.path for e in r.entries} | set(s.created) | set(s.deleted)
            | {p for pair in (*s.renames, *s.copies) for p in pair}
            | {path for path, _, _ in s.mode_changes} | {c.path for c in r.changes})


def _policy_paths(files: Sequence[DiffFile]) -> set[str]:
    return {f.path for f in files} | {f.old_path for f in files if f.old_path}


def _shown(path: str) -> str:
    """A path as a message shows it: quoted when spaces at its ends or odd characters would
    otherwise be invisible."""
    return repr(path) if path != path.strip() or not path.isprintable() else path


def _disagree(path: str, what: str) -> str:
    return (f"git and the policy parser disagree about {_shown(path)}: {what}; the patch is "
            "refused rather than guessing which reading the sandbox would follow.")


def _binary(r: Readings) -> str | None:
    for e in r.entries:
        if e.added is None:
            return f"git reads a binary patch for {e.path}; only text changes are allowed."
    return None


def _sections(r: Readings) -> str | None:
    twice = [p for p, n in Counter(e.path for e in r.entries).items() if n > 1]
    if twice:
        return (f"The patch has several sections for {twice[0]}; git would apply them one after "
                "another, which the policy does not read, so it is refused.")
    if len(r.entries) != len(r.files):
        ours, theirs = [f.path for f in r.files], [e.path for e in r.entries]
        odd = [p for p in theirs if p not in ours] + [p for p in ours if p not in theirs]
        name = odd[0] if odd else (theirs or ours or ["?"])[0]
        return _disagree(name, f"git reads {len(theirs)} file section(s) in the patch, the "
                               f"policy parser {len(ours)}")
    for i, (f, e) in enumerate(zip(r.files, r.entries, strict=True), 1):
        if f.path != e.path:
            return _disagree(e.path, f"git applies file section {i} to it, the policy parser "
                                     f"reads that section as {f.path}")
        if (f.added, f.removed) != (e.added, e.removed):
            return _disagree(e.path, f"git counts +{e.added} -{e.removed} lines, the policy "
                                     f"parser +{f.added} -{f.removed}")
    return None


def _summary(r: Readings) -> str | None:
    s = r.summary
    if s.unknown:
        return (f"git describes the patch with a line the gate cannot read unambiguously "
                f"({s.unknown[0].strip()!r}); refused rather than guessed.")
    for src, dst in s.copies:
        return (f"The patch copies {src} to {dst} (in git's reading); copy patches are not "
                "supported.")
    for path, old, new in s.mode_changes:
        return (f"The patch changes the file mode of {path} from {old} to {new} (in git's "
                "reading); mode changes are not allowed.")
    for verb, table in (("creates", s.created), ("deletes", s.deleted)):
        for path, mode in table.items():
            if mode not in _REGULAR or (verb == "creates" and mode != _PLAIN):
                return _mode_refusal(path, mode, verb)
    return None


def _mode_refusal(path: str, mode: str, verb: str) -> str:
    if mode == _SYMLINK:
        return (f"The patch {verb} {path} as a symbolic link (mode 120000, in git's reading); "
                "symbolic links may not be created, changed or deleted.")
    if mode == _GITLINK:
        return (f"The patch {verb} {path} as a submodule (mode 160000, in git's reading); "
                "submodules may not be changed.")
    if mode == _EXECUTABLE:
        # A new executable is a new way to run code (a hook, a script a tool calls).
        return (f"The patch {verb} {path} as an executable file (mode 100755, in git's "
                "reading); new files must be plain files (100644).")
    return (f"The patch {verb} {path} with the file mode {mode} (in git's reading); only "
            "regular files (100644, 100755) may be changed.")


def _statuses(r: Readings) -> str | None:
    s = r.summary
    ours = {(f.old_path, f.path) for f in r.files if f.status == "renamed"}
    for pair in sorted(set(s.renames) ^ ours):
        return _disagree(pair[1], f"only one reading renames {pair[0]} to it")
    for status, table in (("added", s.created), ("deleted", s.deleted)):
        policy = {f.path for f in r.files if f.status == status}
        for path in sorted(set(table) ^ policy):
            return _disagree(path, f"only one reading has it {status}")
    return None


def _results(r: Readings) -> str | None:
    allowed = _policy_paths(r.files)
    for c in r.changes:
        if c.path not in allowed:
            return _disagree(c.path, "git's result changes it, the policy parser never read it")
        for mode in (c.old_mode, c.new_mode):
            if mode in (_SYMLINK, _GITLINK) or mode not in (*_REGULAR, _NONE):
                return _mode_refusal(c.path, mode, "changes")
        if c.old_mode == _NONE and c.new_mode != _PLAIN:
            return _mode_refusal(c.path, c.new_mode, "creates")
        if _NONE not in (c.old_mode, c.new_mode) and c.old_mode != c.new_mode:
            return (f"The patch changes the file mode of {c.path} from {c.old_mode} to "
                    f"{c.new_mode} (in git's result); mode changes are not allowed.")
    return None


_CHECKS: tuple[Callable[[Readings], str | None], ...] = (
    _binary, _sections, _summary, _statuses, _results)


def disagreement(r: Readings) -> str | None:
    """The first way git's reading and the policy parser's differ, as one sentence; or None."""
    for check in _CHECKS:
        sentence = check(r)
        if sentence:
            return sentence
    return None
