"""Which paths an edit may write, and reading their current content without following links.

Everything here is pure except `read_tree`, which reads files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

from selfcode.errors import EditError, PolicyError

__all__ = [
    "DEFAULT_POLICY",
    "PathPolicy",
    "check_edit_count",
    "check_file_count",
    "check_reply_size",
    "folded",
    "lookalike_violations",
    "read_tree",
    "validate_path",
]


@dataclass(frozen=True)
class PathPolicy:
    max_files: int = 50  # distinct paths one reply or patch may touch
    max_bytes: int = 1_000_000  # new content written by a reply / size of a patch
    # A model reply larger than this is refused before it is parsed at all: a 1 MB edit in
    # SEARCH/REPLACE form (old and new text) fits, a runaway or hostile 10 MB reply does not.
    max_reply_bytes: int = 2_000_000
    # SEARCH/REPLACE blocks or diff hunks in one reply: each is placed by a scan of its file, so
    # a reply of tens of thousands of tiny edits would take seconds to minutes to refuse.
    max_edits: int = 1_000


DEFAULT_POLICY = PathPolicy()

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255


def validate_path(path: str, policy: PathPolicy = DEFAULT_POLICY) -> str:
    """The normalised form of `path` ("./a//b" -> "a/b"), or PolicyError naming path and rule.

    `policy` carries no per-path rule today; it is accepted so callers need not change when one
    is added. Protected paths (tests, CI configuration...) are decided elsewhere.
    """
    if not isinstance(path, str):
        raise PolicyError(f"The path {path!r} is refused: it is empty.")
    return _validated(path, policy)


def _refused(path: str, rule: str) -> PolicyError:
    return PolicyError(f"The path {path!r} is refused: {rule}.")


@lru_cache(maxsize=4096)
def _validated(path: str, policy: PathPolicy) -> str:
    # The checks run in a fixed order, the first that fails names the rule: the same path is
    # always refused with the same message.
    if not isinstance(path, str) or not path.strip():
        raise _refused(path, "it is empty")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise _refused(path, "it is not valid UTF-8") from None
    rule = _spelling_refusal(path)
    if rule is not None:
        raise _refused(path, rule)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    rule = _parts_refusal(parts)
    if rule is not None:
        raise _refused(path, rule)
    return "/".join(parts)


def _spelling_refusal(path: str) -> str | None:
    """The rule a non-empty UTF-8 `path` breaks as a string, before it is split into names."""
    if _CONTROL.search(path):
        return "it contains a NUL or another control character"
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        return "it is absolute; use a path relative to the repository root"
    if "\\" in path:
        return "it contains a backslash; separate directories with /"
    if path.endswith("/"):
        return "it names a directory, not a file"
    return None


def _parts_refusal(parts: list[str]) -> str | None:
    """The rule the path's names (without empty and '.' ones) break, or None."""
    if ".." in parts:
        return "it contains a '..' component, which could leave the repository"
    if not parts:
        return "it is empty"
    if any(part.lower() == ".git" for part in parts):
        return "it is inside the .git directory"
    if parts[-1].lower().startswith(".git"):
        return ("git's own files (.git, .gitignore, .gitmodules, .gitattributes...) "
                "may not be changed")
    if any(folded(part) == "__pycache__" for part in parts) or folded(parts[-1]).endswith(
            (".pyc", ".pyo")):
        # The judge compiles every tree itself (sandbox/selfcode_install.py); a shipped .pyc
        # would be code that differs from the reviewed source.
        return ("it is compiled bytecode (__pycache__, .pyc, .pyo), which the judge makes from "
                "the sources itself; change the .py file instead")
    if len("/".join(parts).encode("utf-8")) > _MAX_PATH_BYTES:
        return f"it is longer than {_MAX_PATH_BYTES} bytes"
    if any(len(part.encode("utf-8")) > _MAX_NAME_BYTES for part in parts):
        return f"one of its names is longer than {_MAX_NAME_BYTES} bytes"
    return None


def folded(path: str) -> str:
    """The name a case-insensitive, normalising file system (or a reader) would take `path`
    for: NFKC (fullwidth and other compatibility look-alikes become ASCII), case folded, with
    invisible format characters (zero-width spaces, joiners, direction marks) removed."""
    text = unicodedata.normalize("NFKC", path)
    return "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()


def lookalike_violations(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """Paths that match no protected pattern as written but do once folded ("TESTS/x.py",
    fullwidth "\uff54ests/x.py", "tests\u200b/x.py"), each named with what it reads as."""
    folded_patterns = [folded(p) for p in patterns]
    out = []
    for path in paths:
        alias = folded(path)
        if alias != path and any(fnmatchcase(alias, p) for p in folded_patterns):
            out.append(f"{path} (read as {alias})")
    return out


def check_file_count(paths: Iterable[str], policy: PathPolicy = DEFAULT_POLICY,
                     what: str = "The edits") -> None:
    """PolicyError when more than `policy.max_files` distinct paths are touched."""
    count = len(set(paths))
    if count > policy.max_files:
        raise PolicyError(f"{what} touch {count} files, more than the limit of "
                          f"{policy.max_files}; change fewer files at once.")


def check_edit_count(count: int, policy: PathPolicy, what: str) -> None:
    """PolicyError when one reply holds more than `policy.max_edits` blocks or hunks."""
    if count > policy.max_edits:
        raise PolicyError(f"Your reply has {count:,} {what}, more than the limit of "
                          f"{policy.max_edits:,} in one reply; change fewer places at once.")


def check_reply_size(text: str, policy: PathPolicy = DEFAULT_POLICY) -> None:
    """PolicyError, at once and without parsing, for a reply larger than the policy allows."""
    limit = policy.max_reply_bytes
    if len(text) > limit:  # characters never outnumber bytes: no need to encode
        size = f"more than {limit:,} bytes"
    else:
        count = len(text.encode("utf-8", "surrogatepass"))
        if count <= limit:
            return
        size = f"{count:,} bytes"
    raise PolicyError(f"Your reply is {size} long, over the limit of {limit:,} bytes for one "
                      "reply, so it was not read. Send only the edits, in small blocks, and "
                      "change fewer or smaller files at once.")


# =============================================================================================
# Reading files (the only I/O here)
# =============================================================================================


def read_tree(root: str | Path, paths: Iterable[str],
              policy: PathPolicy = DEFAULT_POLICY) -> dict[str, str | None]:
    """The current text of each path under `root`, keyed by normalised path; None if missing.

    Bytes are decoded as UTF-8 with line endings untouched. PolicyError for a refused path or a
    path through a symbolic link; EditError for a directory or a file that is not UTF-8 text.
    """
    base = Path(root)
    out: dict[str, str | None] = {}
    for raw in paths:
        path = validate_path(raw, policy)
        target = base
        for part in path.split("/"):
            target = target / part
            if target.is_symlink():
                raise PolicyError(f"The path {path!r} is refused: {target.relative_to(base)} "
                                  "is a symbolic link.")
        if not target.exists():
            out[path] = None
            continue
        if not target.is_file():
            raise EditError(f"{path} is not a regular file, so it cannot be edited.")
        try:
            out[path] = target.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise EditError(f"{path} is not UTF-8 text, so it cannot be edited.") from None
    return out
