"""Edits from the model and patches from the user, turned into safe changes.

Everything here is a pure function of its arguments except `read_tree`, which reads files.
The work is split into small modules, each with one job; import the names from here.

* `parse_and_apply` (formats.py) is the one entry point for a model reply in any edit format:
  SEARCH/REPLACE blocks (blocks.py), unified diffs (read by udiff_parse.py, applied by
  udiff.py) or whole files (whole.py).
* `validate_path`, `read_tree`, `PathPolicy` (paths.py) decide what may be written at all.
* `replace_unique` (matching.py) places a change: exact, then whitespace-tolerant, always unique.
* `reply_rationale` (replytext.py) keeps the prose of a reply that could not be parsed.
* `render_diff` (render.py) turns old and new contents into a diff that `git apply` accepts.
* `parse_unified_diff` (diffs.py) checks a user's patch against the policy without applying it.

Every `EditError` message is written to be shown to the model (or the user) as it is: it says
what is wrong and what to do instead.
"""

from selfcode.edits.blocks import Edit, ParsedReply, apply_edits, parse_reply, touched_paths
from selfcode.edits.formats import (
    EDIT_FORMATS,
    EditFormat,
    FilesReader,
    choose_format,
    format_template,
    parse_and_apply,
)
from selfcode.edits.render import render_diff
from selfcode.edits.replytext import NoEditsFound, reply_rationale
from selfcode.edits.udiff import apply_udiff
from selfcode.edits.udiff_parse import FilePatch, Hunk, ParsedDiff, parse_udiff_reply
from selfcode.edits.whole import ParsedWhole, WholeFile, apply_whole, parse_whole_reply
from selfcode.gate.diffs import DiffFile, DiffStats, diff_stats, parse_unified_diff
from selfcode.gate.paths import (
    DEFAULT_POLICY,
    PathPolicy,
    check_reply_size,
    read_tree,
    validate_path,
)

__all__ = [
    "DEFAULT_POLICY",
    "EDIT_FORMATS",
    "DiffFile",
    "DiffStats",
    "Edit",
    "EditFormat",
    "FilePatch",
    "FilesReader",
    "Hunk",
    "NoEditsFound",
    "ParsedDiff",
    "ParsedReply",
    "ParsedWhole",
    "PathPolicy",
    "WholeFile",
    "apply_edits",
    "apply_udiff",
    "apply_whole",
    "check_reply_size",
    "choose_format",
    "diff_stats",
    "format_template",
    "parse_and_apply",
    "parse_reply",
    "parse_udiff_reply",
    "parse_unified_diff",
    "parse_whole_reply",
    "read_tree",
    "render_diff",
    "reply_rationale",
    "touched_paths",
    "validate_path",
]
