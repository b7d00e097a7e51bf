"""The line policy for dependency declarations: what the host may hand to pip, as pure functions.

Every requirement line a repository declares passes `requirement_entry` before pip sees it:
only a plain `name[extras] specifier ; marker`, optionally with `--hash`, and `-r`/`-c` to
another committed file. A URL, a VCS or local path, any other option line, an environment
variable (`${...}`) or a line break pip would split on is refused with one sentence naming the
file and the line. Table-tested in tests/test_host_safety.py.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from selfcode.errors import ConfigError

_FIX = "declare the package by name and version (it is installed from a wheel of the index)"
_INCLUDES = {"-r": False, "--requirement": False, "-c": True, "--constraint": True}
_URL = re.compile(r"://|^(git|hg|svn|bzr)\+|^(file|https?|ftp|git|ssh):", re.IGNORECASE)
_ARCHIVE = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class Include:
    """A `-r`/`-c` line: another committed file of requirements (or of constraints)."""

    path: str
    constraint: bool


class Refused(ConfigError):
    """A dependency declaration the host will not hand to pip."""


def _refuse(where: str, text: str, why: str, fix: str = _FIX) -> Refused:
    return Refused(f"Refusing the dependency declaration {text!r} in {where}: it {why}, and "
                   f"selfcode's host never fetches or builds what a repository names; {fix}.")


def requirement_entry(line: str, where: str, file: str = "") -> str | Include | None:
    """One logical line of a requirements file (comments and continuations already joined):
    None when blank, an `Include`, or the requirement as pip gets it; else `Refused`.

    `file` is the repository path of the file the line is in, to resolve `-r`/`-c` against.
    """
    text = _COMMENT.sub("", line).strip()
    if not text:
        return None
    if len(line.splitlines()) > 1:
        # pip splits the file selfcode writes on every line boundary str.splitlines knows
        # (\x0b, \x0c, \x1c-\x1e, \x85, U+2028, U+2029): one entry must stay one line.
        raise _refuse(where, text.encode("unicode_escape").decode("ascii"),
                      "contains a line break", "write each requirement on a line of its own")
    if "$" in text:
        raise _refuse(where, text, "uses an environment variable",
                      "write the value itself, and never a credential, into the file")
    if text.startswith("-"):
        return _option_line(text, where, file)
    spec, _, options = text.partition(" -")
    if options:
        _check_options("-" + options, text, where)
    return _plain_requirement(spec.strip(), text, where)


def _option_line(text: str, where: str, file: str) -> Include:
    match = re.match(r"(--?[A-Za-z-]+)(?:[ =]+|(?<=^-[rc]))(.*)$", text)
    option, value = (match.group(1), match.group(2).strip()) if match else (text.split()[0], "")
    if option not in _INCLUDES:
        raise _refuse(where, text, f"is a pip option line ({option})",
                      "remove the line (selfcode chooses the index and the build options)")
    if not value:
        raise _refuse(where, text, "includes no file", "name the file to include")
    if _URL.search(value) or value.startswith(("/", "~", "\\")):
        raise _refuse(where, text, "includes a file outside the repository",
                      "include only files committed in the repository, by relative path")
    target = posixpath.normpath(posixpath.join(posixpath.dirname(file), value))
    if target.startswith("../") or target == "..":
        raise _refuse(where, text, "includes a file outside the repository",
                      "include only files committed in the repository, by relative path")
    return Include(target, _INCLUDES[option])


def _check_options(options: str, text: str, where: str) -> None:
    """Per-requirement options: only `--hash` (it narrows what pip accepts, never widens it)."""
    tokens = options.split()
    for index, token in enumerate(tokens):
        if token.startswith("--hash=") or (token == "--hash" and index + 1 < len(tokens)):
            continue
        if index > 0 and tokens[index - 1] == "--hash":
            continue
        raise _refuse(where, text, f"carries the pip option {token.split('=')[0]}",
                      "remove the option")


def _plain_requirement(spec: str, text: str, where: str) -> str:
    if _URL.search(spec) or re.search(r"\s@\s|@\s*\S+:", spec):
        raise _refuse(where, text, "names a URL")
    if spec.startswith((".", "/", "~")) or "/" in spec or "\\" in spec or (
            spec.lower().endswith(_ARCHIVE)):
        raise _refuse(where, text, "names a local path")
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable"
        raise _refuse(where, text,
                      f"is not a requirement pip can resolve by name ({detail})") from None
    if requirement.url:
        raise _refuse(where, text, "names a URL")
    return str(requirement)


def logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, line) of a requirements file, with backslash continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        yield start, pending + raw
        pending = ""
    if pending:
        yield start, pending


# --- the target's dependencies -----------------------------------------------------------------


