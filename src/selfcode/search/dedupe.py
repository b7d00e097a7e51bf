"""No work twice: a candidate's resulting tree, normalised and hashed, and who made it first.

`fingerprint(parent, files, diff)` applies the diff in pure Python (`edits.udiff`, the applier
the edit formats use; a diff that does not apply raises its `EditError`) to `files`, the
parent's texts of the paths the diff touches (None: absent), and hashes what results:

- a `.py` file is normalised to `ast.dump(ast.parse(text))` (type comments off): comments,
  blank lines, spacing, redundant parentheses, trailing commas, quote styles and line endings
  are gone; docstrings stay (they are `__doc__`, behaviour);
- a `.py` file that does not parse here (a syntax error, null bytes, a BOM, syntax newer than
  this Python), or whose first two lines carry a PEP 263 coding cookie, is taken by its exact
  text: the judged file is these characters written as UTF-8 and read back with the cookie's
  codec, so a cookie change alone can change every non-ASCII string, which `ast.parse` of a
  `str` never sees;
- any other file is taken by its exact text; a deleted file is marked deleted.

Only paths whose normal form differs from the parent's enter the hash, together with the
parent's commit and this Python's version (ast.dump's format is per version). So the
fingerprint names the whole resulting tree (the parent's tree plus these paths), two diffs
that differ only in a comment-only file fingerprint alike, and a diff that changes nothing but
comments or formatting fingerprints as `baseline_fingerprint(parent)`: compare with it to tell
"equals its parent" from "equals an earlier candidate" (`Seen`).

What the normal form drops that a program can still observe: line and column numbers
(tracebacks, `f_lineno`, `inspect`, warnings) and the source text itself (`inspect.getsource`,
a program reading its own file, identifiers that NFKC-normalise alike). Two trees that share a
fingerprint may therefore behave differently in a program that looks at its own source. The
rule that keeps that harmless, for the caller: a reused verdict never accepts. A repeat of a
rejected candidate is rejected without being judged (at worst a false rejection); a repeat of
an accepted candidate is recorded as a repeat of it and commits nothing, because the tree that
was judged and committed is the earlier one's. No candidate's own tree is ever accepted on
another's verdict.

The tree is the one this applier makes. For a diff selfcode rendered itself
(`edits.render.render_diff`: exact context) that is the tree `git apply` makes in the sandbox;
for a hand-written diff the two may differ where this applier tolerates whitespace, which the
rule above again makes harmless.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import threading
import warnings
from collections.abc import Mapping

from selfcode.edits.udiff import apply_udiff, parse_udiff_reply, udiff_paths
from selfcode.errors import PolicyError
from selfcode.gate.paths import DEFAULT_POLICY, PathPolicy, validate_path

__all__ = ["Seen", "baseline_fingerprint", "fingerprint", "touched_paths", "tree_fingerprint"]

# PEP 263's own pattern; the tokenizer looks for it on the first two lines.
_COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_VERSION = f"selfcode-tree-1 python-{sys.version_info[0]}.{sys.version_info[1]}"
# warnings.catch_warnings swaps process-wide state; parsing on several threads takes turns.
_WARNINGS_LOCK = threading.Lock()


def _has_cookie(text: str) -> bool:
    first_two = _LINE_BREAK.split(text, maxsplit=2)[:2]
    return any(_COOKIE.match(line) for line in first_two)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _ast_form(text: str) -> str | None:
    """ast.dump of `text`, or None when it does not parse here (then its text counts)."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # Invalid escapes warn while parsing; the fingerprint must not depend on the filters.
        warnings.simplefilter("ignore")
        try:
            return ast.dump(ast.parse(text, type_comments=False))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None


def _normal_form(path: str, text: str | None) -> str:
    """What of one file's content the fingerprint keeps (see the module docstring)."""
    if text is None:
        return "deleted"
    if path.endswith(".py") and not _has_cookie(text):
        dumped = _ast_form(text)
        if dumped is not None:
            return "ast:" + _sha(dumped)
    return "text:" + _sha(text)


def _digest(parent: str, changed: list[tuple[str, str]]) -> str:
    payload = json.dumps([_VERSION, parent, sorted(changed)], ensure_ascii=True)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def baseline_fingerprint(parent: str) -> str:
    """The fingerprint of `parent`'s own tree: what a diff that changes nothing real gets."""
    return _digest(parent, [])


def tree_fingerprint(parent: str, before: Mapping[str, str | None],
                     after: Mapping[str, str | None]) -> str:
    """The fingerprint of `parent`'s tree with `after`'s paths replaced (None: deleted).

    `before` holds the parent's text of each path in `after` (None or missing: absent). For
    a caller that already has the resulting texts; `fingerprint` applies a diff first.
    """
    changed = []
    for path, text in after.items():
        form = _normal_form(path, text)
        if form != _normal_form(path, before.get(path)):
            changed.append((path, form))
    return _digest(parent, changed)


def touched_paths(diff: str, policy: PathPolicy = DEFAULT_POLICY) -> list[str]:
    """The normalised paths `diff` touches: the keys `fingerprint` needs in `files`."""
    return udiff_paths(parse_udiff_reply(diff), policy)


def fingerprint(parent: str, files: Mapping[str, str | None], diff: str,
                policy: PathPolicy = DEFAULT_POLICY) -> str:
    """The fingerprint of the tree `diff` makes from `parent`'s, whose texts of the touched
    paths are `files` (None: absent). EditError (PolicyError) when the diff does not apply."""
    parsed = parse_udiff_reply(diff)
    after = apply_udiff(files, parsed, policy)
    # The applier reads `files` keyed as written or normalised; so does this.
    before: dict[str, str | None] = {}
    for key, text in files.items():
        try:
            before.setdefault(validate_path(key, policy), text)
        except PolicyError:
            continue  # a key no diff can name
    return tree_fingerprint(parent, before, after)


class Seen:
    """Which candidate first produced each fingerprint; safe to share between threads.

    The caller checks `baseline_fingerprint(parent)` itself (a candidate equal to its parent is
    not "an earlier candidate"). The earlier candidate may still be in flight: its verdict is
    the one to wait for, not a reason to judge the same tree again.
    """

    def __init__(self) -> None:
        self._first: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, fp: str) -> int | None:
        """The earlier candidate whose verdict `fp` reuses, or None if `fp` is new."""
        with self._lock:
            return self._first.get(fp)

    def add(self, fp: str, n: int) -> None:
        """Record that candidate `n` produced `fp`; the first candidate recorded stays."""
        with self._lock:
            self._first.setdefault(fp, n)

    def claim(self, fp: str, n: int) -> int | None:
        """`check` and `add` in one step: the earlier candidate, or None after recording `n`.

        Two identical candidates finishing their proposals at once cannot both be judged.
        """
        with self._lock:
            earlier = self._first.setdefault(fp, n)
            return None if earlier == n else earlier

    def release(self, fp: str, n: int) -> None:
        """Forget that candidate `n` produced `fp`: it was never judged (its judge's machinery
        failed), so the same tree is judged when it comes again."""
        with self._lock:
            if self._first.get(fp) == n:
                del self._first[fp]

    def __len__(self) -> int:
        with self._lock:
            return len(self._first)
