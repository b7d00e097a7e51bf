"""Unified diffs written by a model: placed by content, applied all or nothing.

Reading the reply is `udiff_parse`'s job. A hunk is placed by its content, not its numbers:
its context and '-' lines must be found, by the same unique, whitespace-tolerant matching as a
SEARCH block, and become its context and '+' lines. The header's line number only breaks a tie
between exact places.

The path policy is the one `selfcode eval --patch` uses: no absolute paths, no "..", nothing
under .git, no binary changes, symbolic links, submodules, mode changes, copies or renames.
"""

from __future__ import annotations

from collections.abc import Mapping

from selfcode.edits.matching import Buffer, Wording, close_buffers, open_buffers, replace_unique
from selfcode.edits.udiff_parse import FilePatch, Hunk, ParsedDiff, parse_udiff_reply
from selfcode.errors import EditError
from selfcode.gate.paths import (
    DEFAULT_POLICY,
    PathPolicy,
    check_edit_count,
    check_file_count,
    validate_path,
)

# The parser's names are re-exported: callers (formats.py among them) take the whole udiff
# format from this module.
__all__ = ["FilePatch", "Hunk", "ParsedDiff", "apply_udiff", "parse_udiff_reply", "udiff_paths"]


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
