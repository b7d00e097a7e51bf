"""Tests for selfcode.edits: reply parsing, path policy, applying, rendering and checking diffs."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from selfcode.edits import (
    DiffFile,
    Edit,
    PathPolicy,
    apply_edits,
    diff_stats,
    parse_reply,
    parse_unified_diff,
    read_tree,
    render_diff,
    touched_paths,
    validate_path,
)
from selfcode.errors import EditError, PolicyError

# =============================================================================================
# Helpers: a git that ignores the user's configuration
# =============================================================================================


def _git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com")
    return env


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(["git", *args], cwd=cwd, env=_git_env(cwd), input=stdin,
                            capture_output=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout


def new_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    git(root, "config", "core.autocrlf", "false")
    return root


def write_tree(root: Path, files: Mapping[str, str | None]) -> None:
    for path, content in files.items():
        target = root / path
        if content is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))  # bytes: line endings stay as given


def read_back(root: Path, paths: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for path in paths:
        target = root / path
        out[path] = target.read_bytes().decode("utf-8") if target.exists() else None
    return out


def block(path: str, search: str, replace: str, fence: str = "```python") -> str:
    return f"{path}\n{fence}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


# =============================================================================================
# parse_reply
# =============================================================================================

PARSE_OK = [
    pytest.param(
        "I make f return 2 because it is faster.\n\n"
        + block("src/a.py", "def f():\n    return 1\n", "def f():\n    return 2\n")
        + "\nThat is all; this trailing prose is ignored.\n",
        "I make f return 2 because it is faster.",
        [("src/a.py", "def f():\n    return 1\n", "def f():\n    return 2\n")],
        id="prose-around-one-block",
    ),
    pytest.param(
        "Two files.\n\n" + block("src/a.py", "a = 1\n", "a = 2\n") + "\nand\n\n"
        + block("pkg/b.py", "b = 1\n", "b = 2\n"),
        "Two files.",
        [("src/a.py", "a = 1\n", "a = 2\n"), ("pkg/b.py", "b = 1\n", "b = 2\n")],
        id="several-files",
    ),
    pytest.param(
        "Split into two blocks, same file.\n\n" + block("src/a.py", "a = 1\n", "a = 2\n")
        + block("src/a.py", "c = 1\n", "c = 2\n"),
        "Split into two blocks, same file.",
        [("src/a.py", "a = 1\n", "a = 2\n"), ("src/a.py", "c = 1\n", "c = 2\n")],
        id="several-blocks-per-file",
    ),
    pytest.param(
        "Two blocks in one fence.\n\nsrc/a.py\n```python\n<<<<<<< SEARCH\na = 1\n=======\na = 2\n"
        ">>>>>>> REPLACE\n<<<<<<< SEARCH\nc = 1\n=======\nc = 2\n>>>>>>> REPLACE\n```\n",
        "Two blocks in one fence.",
        [("src/a.py", "a = 1\n", "a = 2\n"), ("src/a.py", "c = 1\n", "c = 2\n")],
        id="several-blocks-in-one-fence-reuse-path",
    ),
    pytest.param(
        "Fence closed and reopened.\n\nsrc/a.py\n```python\n<<<<<<< SEARCH\na = 1\n=======\n"
        "a = 2\n>>>>>>> REPLACE\n```\n\n```python\n<<<<<<< SEARCH\nc = 1\n=======\nc = 2\n"
        ">>>>>>> REPLACE\n```\n",
        "Fence closed and reopened.",
        [("src/a.py", "a = 1\n", "a = 2\n"), ("src/a.py", "c = 1\n", "c = 2\n")],
        id="fence-reopened-without-path-reuses-path",
    ),
    pytest.param(
        "New helper module.\n\n" + block("src/helpers.py", "", "def helper():\n    return 42\n"),
        "New helper module.",
        [("src/helpers.py", "", "def helper():\n    return 42\n")],
        id="new-file-empty-search",
    ),
    pytest.param(
        ("Windows line endings.\n\n" + block("src/a.py", "x = 1\n", "x = 2\n")).replace(
            "\n", "\r\n"),
        "Windows line endings.",
        [("src/a.py", "x = 1\n", "x = 2\n")],
        id="crlf-reply",
    ),
    pytest.param(
        "Docs.\n\n" + block("README.md", "```python\nold()\n```\n", "```python\nnew()\n```\n",
                             fence="```markdown"),
        "Docs.",
        [("README.md", "```python\nold()\n```\n", "```python\nnew()\n```\n")],
        id="fenced-code-inside-search-and-replace",
    ),
    pytest.param(
        "Unfenced.\nsrc/a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n",
        "Unfenced.",
        [("src/a.py", "x = 1\n", "x = 2\n")],
        id="unfenced-block",
    ),
    pytest.param(
        "Decorated paths.\n\n**`src/a.py`**:\n\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n"
        ">>>>>>> REPLACE\n```\n### src/b.py\n```\n<<<<<<< SEARCH\ny\n=======\nz\n>>>>>>> REPLACE\n"
        "```\n",
        "Decorated paths.",
        [("src/a.py", "x = 1\n", "x = 2\n"), ("src/b.py", "y\n", "z\n")],
        id="path-with-backticks-asterisks-colon-heading",
    ),
    pytest.param(
        "Path inside the fence.\n```python\nsrc/a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n"
        ">>>>>>> REPLACE\n```\n",
        "Path inside the fence.",
        [("src/a.py", "x = 1\n", "x = 2\n")],
        id="path-inside-fence",
    ),
    pytest.param(
        "Marker lengths 5 and 9.\nsrc/a.py\n```\n<<<<< SEARCH\n\tx = 1\n=========\n\tx = 2\n"
        ">>>>>>>>> REPLACE\n```\n",
        "Marker lengths 5 and 9.",
        [("src/a.py", "\tx = 1\n", "\tx = 2\n")],
        id="markers-5-and-9-chars-and-tabs",
    ),
    pytest.param(
        block("src/a.py", "x = 1\n\n", "\n"),
        "",
        [("src/a.py", "x = 1\n\n", "\n")],
        id="no-rationale-blank-lines-kept",
    ),
    pytest.param(
        "Delete lines.\n" + block("src/a.py", "dead()\n", ""),
        "Delete lines.",
        [("src/a.py", "dead()\n", "")],
        id="empty-replace",
    ),
]


@pytest.mark.parametrize(("reply", "rationale", "expected"), PARSE_OK)
def test_parse_reply(reply: str, rationale: str, expected: list[tuple[str, str, str]]) -> None:
    parsed = parse_reply(reply)
    assert parsed.rationale == rationale
    assert parsed.edits == [Edit(p, s, r) for p, s, r in expected]


PARSE_ERRORS = [
    pytest.param("I think the code is fine as it is.\n", "contained no SEARCH/REPLACE blocks",
                 id="prose-only"),
    pytest.param("", "contained no SEARCH/REPLACE blocks", id="empty-reply"),
    pytest.param("Here:\nsrc/a.py\n```\n<<<<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n",
                 "no '<<<<<<< SEARCH' opened it", id="ten-marker-chars-not-a-block"),
    pytest.param("Fix.\nsrc/a.py\n```python\n<<<<<<< SEARCH\ndef f():\n    return 1\n",
                 "probably cut off", id="cut-in-search"),
    pytest.param("Fix.\nsrc/a.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n",
                 "probably cut off", id="cut-in-replace"),
    pytest.param("Fix.\n" + block("src/a.py", "a\n", "b\n")
                 + "src/b.py\n```\n<<<<<<< SEARCH\nx\n=======\n", "probably cut off",
                 id="second-block-cut"),
    pytest.param("```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n",
                 "has no file path", id="no-path"),
    pytest.param("Here is the change I propose:\n```python\n<<<<<<< SEARCH\nx\n=======\ny\n"
                 ">>>>>>> REPLACE\n```\n", "must be the path alone", id="prose-instead-of-path"),
    pytest.param("src/a.py\n```\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n```\n",
                 "not followed by a '=======' line", id="missing-divider"),
    pytest.param("src/a.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n<<<<<<< SEARCH\nz\n=======\nw\n"
                 ">>>>>>> REPLACE\n```\n", "is not closed", id="missing-replace-marker"),
    pytest.param("src/a.py\n```\nx\n=======\ny\n>>>>>>> REPLACE\n```\n",
                 "no '<<<<<<< SEARCH' opened it", id="missing-search-marker"),
]


@pytest.mark.parametrize(("reply", "message"), PARSE_ERRORS)
def test_parse_reply_errors(reply: str, message: str) -> None:
    with pytest.raises(EditError, match=None) as info:
        parse_reply(reply)
    assert message in str(info.value)
    assert not isinstance(info.value, PolicyError)


def test_cut_message_names_file_and_line() -> None:
    reply = "Fix.\n\nsrc/core.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\n"
    with pytest.raises(EditError) as info:
        parse_reply(reply)
    assert "src/core.py" in str(info.value)
    assert "line 5" in str(info.value)


# =============================================================================================
# validate_path
# =============================================================================================

PATHS_OK = [
    ("src/pkg/mod.py", "src/pkg/mod.py"),
    ("./src//pkg/./mod.py", "src/pkg/mod.py"),
    (".github/workflows/ci.yml", ".github/workflows/ci.yml"),
    ("docs/my notes.md", "docs/my notes.md"),
    ("src/café.py", "src/café.py"),
    ("a/gitignore", "a/gitignore"),
    ("a..b/c...py", "a..b/c...py"),
]


@pytest.mark.parametrize(("path", "expected"), PATHS_OK)
def test_validate_path_accepts(path: str, expected: str) -> None:
    assert validate_path(path, PathPolicy()) == expected


PATHS_REFUSED = [
    pytest.param("", "empty", id="empty"),
    pytest.param("  ", "empty", id="blank"),
    pytest.param("./", "directory", id="dot-slash"),
    pytest.param(".", "empty", id="dot"),
    pytest.param("../etc/passwd", "'..'", id="parent"),
    pytest.param("src/../../x.py", "'..'", id="traversal-in-middle"),
    pytest.param("/etc/passwd", "absolute", id="absolute-posix"),
    pytest.param("C:\\x.py", "absolute", id="absolute-drive"),
    pytest.param("c:/x.py", "absolute", id="absolute-drive-slash"),
    pytest.param("\\\\server\\share\\x", "absolute", id="absolute-unc"),
    pytest.param("src\\x.py", "backslash", id="backslash"),
    pytest.param(".git/hooks/pre-commit", ".git directory", id="git-hooks"),
    pytest.param("sub/.git/config", ".git directory", id="nested-git-dir"),
    pytest.param(".GIT/config", ".git directory", id="git-dir-uppercase"),
    pytest.param(".gitignore", "git's own files", id="gitignore"),
    pytest.param("sub/.gitmodules", "git's own files", id="gitmodules"),
    pytest.param(".gitattributes", "git's own files", id="gitattributes"),
    pytest.param("a\x00b.py", "control character", id="nul"),
    pytest.param("a\nb.py", "control character", id="newline"),
    pytest.param("a\x1b[31m.py", "control character", id="escape"),
    pytest.param("bad\udcff.py", "UTF-8", id="surrogate"),
    pytest.param("src/", "directory", id="trailing-slash"),
    pytest.param("a/" + "x" * 256, "255 bytes", id="long-name"),
]


@pytest.mark.parametrize(("path", "rule"), PATHS_REFUSED)
def test_validate_path_refuses(path: str, rule: str) -> None:
    with pytest.raises(PolicyError) as info:
        validate_path(path, PathPolicy())
    assert rule in str(info.value)
    assert repr(path) in str(info.value)  # the message names the path


def test_touched_paths_distinct_normalised_in_order() -> None:
    edits = [Edit("./b.py", "x", "y"), Edit("a.py", "", "z"), Edit("b.py", "y", "w")]
    assert touched_paths(edits) == ["b.py", "a.py"]


def test_touched_paths_enforces_max_files() -> None:
    edits = [Edit(f"f{i}.py", "", "x\n") for i in range(3)]
    with pytest.raises(PolicyError, match="3 files, more than the limit of 2"):
        touched_paths(edits, PathPolicy(max_files=2))


# =============================================================================================
# apply_edits
# =============================================================================================

APPLY_OK = [
    pytest.param(
        {"a.py": "import os\n\ndef f():\n    return 1\n"},
        [Edit("a.py", "def f():\n    return 1\n", "def f():\n    return 2\n")],
        {"a.py": "import os\n\ndef f():\n    return 2\n"},
        id="exact",
    ),
    pytest.param(
        {"a.py": "max = 1\nx = 1\n"},
        [Edit("a.py", "x = 1\n", "x = 2\n")],
        {"a.py": "max = 1\nx = 2\n"},
        id="whole-lines-not-substrings",
    ),
    pytest.param(
        {"a.py": "a = 1   \nb = 2\t\nc = 3\n"},
        [Edit("a.py", "a = 1\nb = 2\n", "a = 10\nb = 20\n")],
        {"a.py": "a = 10\nb = 20\nc = 3\n"},
        id="trailing-whitespace-mismatch-unique",
    ),
    pytest.param(
        {"a.py": "class C:\n    def f(self):\n        if x:\n            return 1\n"},
        [Edit("a.py", "def f(self):\n    if x:\n        return 1\n",
              "def f(self):\n    if x:\n        return 2\n    return 3\n")],
        {"a.py": "class C:\n    def f(self):\n        if x:\n            return 2\n"
                 "        return 3\n"},
        id="indentation-shifted-model-under-indents",
    ),
    pytest.param(
        {"a.py": "def f():\n    return 1\n\nx = 1\n"},
        [Edit("a.py", "        def f():\n            return 1\n",
              "        def f():\n\n            return 2\n")],
        {"a.py": "def f():\n\n    return 2\n\nx = 1\n"},
        id="indentation-shifted-model-over-indents",
    ),
    pytest.param(
        {"a.py": "class C:\n\tdef f(self):\n\t\treturn 1\n"},
        [Edit("a.py", "def f(self):\n\treturn 1\n", "def f(self):\n\treturn 2\n")],
        {"a.py": "class C:\n\tdef f(self):\n\t\treturn 2\n"},
        id="tabs-shifted",
    ),
    pytest.param(
        {"a.py": "if x:\n\ty = 1\n"},
        [Edit("a.py", "if x:\n\ty = 1\n", "if x:\n\ty = 2\n")],
        {"a.py": "if x:\n\ty = 2\n"},
        id="tabs-exact",
    ),
    pytest.param(
        {"a.py": "one\r\ntwo\r\nthree\r\n"},
        [Edit("a.py", "two\n", "TWO\nand a half\n")],
        {"a.py": "one\r\nTWO\r\nand a half\r\nthree\r\n"},
        id="crlf-file-keeps-crlf",
    ),
    pytest.param(
        {"a.py": "one\ntwo"},
        [Edit("a.py", "two\n", "2\n")],
        {"a.py": "one\n2"},
        id="no-trailing-newline-kept-on-edit",
    ),
    pytest.param(
        {"a.py": "one\ntwo\nthree"},
        [Edit("a.py", "two\nthree\n", "")],
        {"a.py": "one"},
        id="no-trailing-newline-kept-on-deletion-at-end",
    ),
    pytest.param(
        {"a.py": "one\r\ntwo"},
        [Edit("a.py", "two\n", "2\n3\n")],
        {"a.py": "one\r\n2\r\n3"},
        id="crlf-and-no-trailing-newline",
    ),
    pytest.param(
        {"a.py": "one\ntwo\n"},
        [Edit("a.py", "one\n", "1\n")],
        {"a.py": "1\ntwo\n"},
        id="trailing-newline-kept",
    ),
    pytest.param(
        {"a.py": "x = 1\ny = 1\n"},
        [Edit("a.py", "x = 1\n", "x = 2\n"), Edit("a.py", "x = 2\ny = 1\n", "x = 3\ny = 3\n")],
        {"a.py": "x = 3\ny = 3\n"},
        id="sequential-edits-see-previous-results",
    ),
    pytest.param(
        {"new.py": None},
        [Edit("new.py", "", "print('hi')\n")],
        {"new.py": "print('hi')\n"},
        id="new-file",
    ),
    pytest.param(
        {"new.py": None},
        [Edit("new.py", "", "a = 1\n"), Edit("new.py", "a = 1\n", "a = 2\n")],
        {"new.py": "a = 2\n"},
        id="new-file-then-edited",
    ),
    pytest.param(
        {"empty.py": ""},
        [Edit("empty.py", "", "x = 1\n")],
        {"empty.py": "x = 1\n"},
        id="empty-existing-file-filled",
    ),
    pytest.param(
        {"./src/a.py": "a\n", "src/b.py": "b\n"},
        [Edit("src/a.py", "a\n", "A\n"), Edit("./src/b.py", "b\n", "B\n")],
        {"src/a.py": "A\n", "src/b.py": "B\n"},
        id="several-files-keys-normalised",
    ),
    pytest.param(
        {"a.py": "x = 1\n"},
        [Edit("a.py", "x = 1\r\n", "x = 2\r\n")],
        {"a.py": "x = 2\n"},
        id="crlf-edit-on-lf-file",
    ),
]


@pytest.mark.parametrize(("files", "edits", "expected"), APPLY_OK)
def test_apply_edits(files: dict[str, str | None], edits: list[Edit],
                     expected: dict[str, str]) -> None:
    assert apply_edits(files, edits) == expected


APPLY_ERRORS = [
    pytest.param(
        {"a.py": "x = 1\ny = 2\nx = 1\n"},
        [Edit("a.py", "x = 1\n", "x = 3\n")],
        EditError, ["matches 2 places", "lines 1, 3", "more unchanged lines"],
        id="ambiguous-exact",
    ),
    pytest.param(
        {"a.py": "x = 1\ny = 2\nx = 1  \n"},
        [Edit("a.py", "x = 1 \n", "x = 3\n")],
        EditError, ["matches 2 places"],
        id="ambiguous-trailing-whitespace",
    ),
    pytest.param(
        {"a.py": "def a():\n    pass\nclass C:\n    def a():\n        pass\n"},
        [Edit("a.py", "  def a():\n      pass\n", "  def a():\n      return\n")],
        EditError, ["matches 2 places"],
        id="ambiguous-indentation",
    ),
    pytest.param(
        {"a.py": "import os\n\ndef f():\n    return 1\n"},
        [Edit("a.py", "def g():\n    return 1\n", "def g():\n    return 2\n")],
        EditError, ["does not match", "a.py", "lines 3-4", "3 | def f():", "4 |     return 1"],
        id="missing-shows-nearest",
    ),
    pytest.param(
        {"a.py": "if x:\n\ty = 1\n"},
        [Edit("a.py", "if x:\n    y = 1\n", "if x:\n    y = 2\n")],
        EditError, ["does not match"],
        id="tabs-vs-spaces-not-fuzzy",
    ),
    pytest.param(
        {"a.py": "def f():\n    return 1\n"},
        [Edit("a.py", "def f():\n        return 1\n", "def f():\n        return 2\n")],
        EditError, ["does not match"],
        id="uneven-indentation-not-fuzzy",
    ),
    pytest.param(
        {"a.py": None},
        [Edit("a.py", "x = 1\n", "x = 2\n")],
        EditError, ["file a.py does not exist; to create it use an empty SEARCH section"],
        id="missing-file",
    ),
    pytest.param(
        {"a.py": "x = 1\n"},
        [Edit("a.py", "", "x = 2\n")],
        EditError, ["already exists"],
        id="empty-search-on-existing-file",
    ),
    pytest.param(
        {"a.py": "x = 1\n"},
        [Edit("a.py", "x = 1\n", "x = 2\n"), Edit("a.py", "x = 1\n", "x = 3\n")],
        EditError, ["block 2", "after your earlier blocks"],
        id="second-edit-sees-first",
    ),
    pytest.param(
        {"../x.py": None},
        [Edit("../x.py", "", "x\n")],
        PolicyError, ["'..'", "../x.py"],
        id="path-traversal",
    ),
    pytest.param(
        {"/etc/passwd": "root\n"},
        [Edit("/etc/passwd", "root\n", "evil\n")],
        PolicyError, ["absolute", "/etc/passwd"],
        id="absolute-path",
    ),
    pytest.param(
        {".git/hooks/pre-commit": None},
        [Edit(".git/hooks/pre-commit", "", "#!/bin/sh\n")],
        PolicyError, [".git directory"],
        id="git-hook",
    ),
    pytest.param(
        {f"f{i}.py": None for i in range(51)},
        [Edit(f"f{i}.py", "", "x\n") for i in range(51)],
        PolicyError, ["51 files", "limit of 50"],
        id="too-many-files",
    ),
    pytest.param(
        {"big.py": None},
        [Edit("big.py", "", "x" * 1_000_001)],
        PolicyError, ["more than the limit of 1000000 bytes"],
        id="too-many-bytes",
    ),
]


@pytest.mark.parametrize(("files", "edits", "error", "messages"), APPLY_ERRORS)
def test_apply_edits_errors(files: dict[str, str | None], edits: list[Edit],
                            error: type[Exception], messages: list[str]) -> None:
    with pytest.raises(error) as info:
        apply_edits(files, edits)
    for message in messages:
        assert message in str(info.value)


def test_apply_edits_is_all_or_nothing() -> None:
    files = MappingProxyType({"a.py": "a = 1\n", "b.py": "b = 1\n"})
    edits = [Edit("a.py", "a = 1\n", "a = 2\n"), Edit("b.py", "nope\n", "b = 2\n")]
    result: dict[str, str | None] | None = None
    with pytest.raises(EditError, match="block 2"):
        result = apply_edits(files, edits)
    assert result is None
    assert dict(files) == {"a.py": "a = 1\n", "b.py": "b = 1\n"}
    # the same first edit alone applies, so the failure above really was the second one
    assert apply_edits(files, edits[:1]) == {"a.py": "a = 2\n"}


def test_apply_edits_nearest_lines_in_a_long_file() -> None:
    lines = [f"value_{i} = compute({i}, scale={i * 3})" for i in range(1, 201)]
    text = "\n".join(lines) + "\n"
    search = "value_120 = compute(120, scale=360)\nvalue_121 = compute(121, scale=999)\n"
    with pytest.raises(EditError) as info:
        apply_edits({"m.py": text}, [Edit("m.py", search, "x\n")])
    message = str(info.value)
    assert "lines 120-121" in message
    assert "120 | value_120 = compute(120, scale=360)" in message
    assert "121 | value_121 = compute(121, scale=363)" in message
    assert "value_1 = " not in message


def test_apply_edits_nearest_lines_when_no_line_is_equal() -> None:
    text = "".join(f"def handler_{i}(request):\n    return {i}\n\n" for i in range(30))
    search = "def handler_17(request, extra):\n"  # no line of the file equals it
    with pytest.raises(EditError) as info:
        apply_edits({"m.py": text}, [Edit("m.py", search, "x\n")])
    assert "The most similar line 52 is:\n52 | def handler_17(request):" in str(info.value)


def test_apply_edits_says_when_nothing_resembles_the_search() -> None:
    text = "".join(f"def handler_{i}(request):\n    return {i}\n\n" for i in range(30))
    with pytest.raises(EditError) as info:
        apply_edits({"m.py": text}, [Edit("m.py", "@@@@ ~~~~ %%%%\n", "x\n")])
    assert "No part of m.py (90 lines) resembles it" in str(info.value)


def test_apply_edits_requires_current_content() -> None:
    with pytest.raises(ValueError, match="no current content"):
        apply_edits({}, [Edit("a.py", "", "x\n")])


# =============================================================================================
# render_diff: round trip through a real `git apply`
# =============================================================================================

ROUND_TRIPS = [
    pytest.param({"a.py": "one\ntwo\nthree\n"}, {"a.py": "one\n2\nthree\n"}, id="modify"),
    pytest.param({"n.py": None}, {"n.py": "print('hi')\n"}, id="new-file"),
    pytest.param({"pkg/sub/n.py": None}, {"pkg/sub/n.py": "x = 1\n"}, id="new-file-new-dir"),
    pytest.param({"e.py": None}, {"e.py": ""}, id="new-empty-file"),
    pytest.param({"d.py": "bye\n"}, {"d.py": None}, id="deleted-file"),
    pytest.param({"d.py": ""}, {"d.py": None}, id="deleted-empty-file"),
    pytest.param({"a.py": "one\ntwo"}, {"a.py": "one\n2"}, id="no-trailing-newline-both"),
    pytest.param({"a.py": "one\ntwo"}, {"a.py": "one\ntwo\n"}, id="newline-added-at-end"),
    pytest.param({"a.py": "one\ntwo\n"}, {"a.py": "one\ntwo"}, id="newline-removed-at-end"),
    pytest.param({"n.py": None}, {"n.py": "no newline"}, id="new-file-no-trailing-newline"),
    pytest.param({"a.py": "a\r\nb\r\nc\r\n"}, {"a.py": "a\r\nB\r\nc\r\n"}, id="crlf-file"),
    pytest.param({"a.py": "a\r\nb"}, {"a.py": "a\r\nb\r\nc"}, id="crlf-no-trailing-newline"),
    pytest.param({"a.py": "x\n"}, {"a.py": ""}, id="emptied"),
    pytest.param({"a.py": ""}, {"a.py": "x\n"}, id="filled"),
    pytest.param({"docs/my notes.md": "a\n"}, {"docs/my notes.md": "b\n"}, id="space-in-path"),
    pytest.param({"a.py": "form\x0cfeed\nline\u2028sep\n"}, {"a.py": "form\x0cfeed\nline\n"},
                 id="only-newline-splits-lines"),
    pytest.param(
        {"a.py": "".join(f"line {i}\n" for i in range(100)), "b.py": "keep\n", "c.py": None,
         "d.py": "gone\n"},
        {"a.py": "".join(f"line {i}\n" if i % 17 else f"changed {i}\n" for i in range(100)),
         "b.py": "keep\n", "c.py": "new\n", "d.py": None},
        id="several-files",
    ),
]


@pytest.mark.parametrize(("old", "new"), ROUND_TRIPS)
def test_render_diff_round_trips_through_git_apply(
        tmp_path: Path, old: dict[str, str | None], new: dict[str, str | None]) -> None:
    diff = render_diff(old, new)
    root = new_repo(tmp_path / "tree")
    write_tree(root, old)
    patch = tmp_path / "change.diff"
    patch.write_bytes(diff.encode("utf-8"))
    git(root, "apply", "--whitespace=nowarn", str(patch))
    assert read_back(root, sorted(old)) == {p: new.get(p) for p in sorted(old)}
    # what we render passes our own check, with the right counts
    checked = {f.path: f for f in parse_unified_diff(diff)}
    assert set(checked) == {p for p in old if old[p] != new.get(p)}
    numstat = git(root, "apply", "--numstat", str(patch)).decode()
    for row in filter(None, numstat.splitlines()):
        added, removed, path = row.split("\t")
        assert (checked[path].added, checked[path].removed) == (int(added), int(removed))


def test_render_diff_random_changes_round_trip(tmp_path: Path) -> None:
    """Many random edits, with repeated lines, through `git apply`; counts agree with git's."""
    rng = random.Random(20240501)
    root = new_repo(tmp_path / "tree")
    patch = tmp_path / "change.diff"
    alphabet = ["", "pass", "x = 1", "return x", "}"] + [f"line {i}" for i in range(40)]
    for case in range(40):
        old_lines = [rng.choice(alphabet) for _ in range(rng.randint(0, 120))]
        new_lines = list(old_lines)
        for _ in range(rng.randint(1, 12)):
            at = rng.randint(0, len(new_lines))
            new_lines[at:at + rng.randint(0, 4)] = [rng.choice(alphabet)
                                                    for _ in range(rng.randint(0, 4))]
        end_old, end_new = rng.choice(["\n", ""]), rng.choice(["\n", ""])
        old = "\n".join(old_lines) + (end_old if old_lines else "")
        new = "\n".join(new_lines) + (end_new if new_lines else "")
        if old == new:
            continue
        diff = render_diff({"f.txt": old}, {"f.txt": new})
        (root / "f.txt").write_bytes(old.encode())
        patch.write_bytes(diff.encode())
        numstat = git(root, "apply", "--numstat", str(patch)).decode().split("\t")
        git(root, "apply", str(patch))
        assert (root / "f.txt").read_bytes().decode() == new, f"case {case}:\n{diff}"
        [checked] = parse_unified_diff(diff)
        assert (checked.added, checked.removed) == (int(numstat[0]), int(numstat[1]))


def test_render_diff_skips_unchanged_files() -> None:
    assert render_diff({"a.py": "x\n", "b.py": None}, {"a.py": "x\n"}) == ""
    diff = render_diff({"a.py": "x\n", "b.py": "y\n"}, {"a.py": "x\n", "b.py": "z\n"})
    assert "a.py" not in diff
    assert diff.startswith("diff --git a/b.py b/b.py\n--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n")


def test_render_diff_headers() -> None:
    diff = render_diff({"n.py": None, "d.py": "x"}, {"n.py": "y", "d.py": None})
    assert diff == ("diff --git a/d.py b/d.py\ndeleted file mode 100644\n--- a/d.py\n"
                    "+++ /dev/null\n@@ -1 +0,0 @@\n-x\n\\ No newline at end of file\n"
                    "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n"
                    "+++ b/n.py\n@@ -0,0 +1 @@\n+y\n\\ No newline at end of file\n")


def test_reply_to_git_apply_end_to_end(tmp_path: Path) -> None:
    old = {"src/core.py": "def slow(xs):\r\n    out = []\r\n    for x in xs:\r\n"
                          "        out.append(x * 2)\r\n    return out",
           "src/new.py": None}
    reply = ("Use a list comprehension.\n\n"
             + block("src/core.py", "out = []\nfor x in xs:\n    out.append(x * 2)\nreturn out\n",
                     "return [x * 2 for x in xs]\n")
             + block("src/new.py", "", "VERSION = 2\n"))
    parsed = parse_reply(reply)
    new = apply_edits(old, parsed.edits)
    assert new == {"src/core.py": "def slow(xs):\r\n    return [x * 2 for x in xs]",
                   "src/new.py": "VERSION = 2\n"}
    root = new_repo(tmp_path / "tree")
    write_tree(root, old)
    git(root, "apply", "--whitespace=nowarn", "-", stdin=render_diff(old, new).encode())
    assert read_back(root, sorted(old)) == new


# =============================================================================================
# parse_unified_diff on real `git diff` output
# =============================================================================================


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = new_repo(tmp_path / "repo")
    write_tree(root, {"a.py": "".join(f"a{i}\n" for i in range(20)), "old.py": "old\nstuff\n",
                      "r.py": "".join(f"keep {i}\n" for i in range(30)),
                      "crlf.txt": "one\r\ntwo\r\n", "link-target.txt": "t\n"})
    git(root, "add", "--", ".")
    git(root, "commit", "-q", "-m", "base")
    return root


def staged_diff(root: Path, *extra: str) -> str:
    git(root, "add", "--", ".")
    return git(root, "diff", "--cached", "-M", *extra).decode("utf-8")


def test_parse_unified_diff_real_git_diff(repo: Path) -> None:
    (repo / "a.py").write_text("".join(f"a{i}\n" if i != 5 else "five\nextra\n"
                                       for i in range(20)))
    (repo / "old.py").unlink()
    (repo / "new.py").write_text("print('new')\n")
    (repo / "empty.py").write_text("")
    (repo / "r.py").rename(repo / "renamed.py")
    (repo / "crlf.txt").write_bytes(b"one\r\nTWO\r\n")
    diff = staged_diff(repo)
    files = parse_unified_diff(diff)
    by_path = {f.path: f for f in files}
    assert by_path == {
        "a.py": DiffFile("a.py", "a.py", "modified", 2, 1),
        "crlf.txt": DiffFile("crlf.txt", "crlf.txt", "modified", 1, 1),
        "empty.py": DiffFile("empty.py", None, "added", 0, 0),
        "new.py": DiffFile("new.py", None, "added", 1, 0),
        "old.py": DiffFile("old.py", "old.py", "deleted", 0, 2),
        "renamed.py": DiffFile("renamed.py", "r.py", "renamed", 0, 0),
    }
    numstat = git(repo, "diff", "--cached", "-M", "--numstat").decode()
    for row in numstat.splitlines():
        added, removed, path = row.split("\t")
        path = path.split(" => ")[-1].rstrip("}")
        assert (by_path[path].added, by_path[path].removed) == (int(added), int(removed))
    assert diff_stats(files) == {"files": [f.path for f in files], "added": 4, "removed": 4}
    # CRLF input (a diff saved on Windows) gives the same answer
    assert parse_unified_diff(diff.replace("\n", "\r\n")) == files


def test_parse_unified_diff_no_prefix_is_refused_like_git_apply(repo: Path) -> None:
    text = (repo / "r.py").read_text().replace("keep 3\n", "changed 3\n")
    (repo / "r.py").unlink()
    (repo / "moved.py").write_text(text)
    diff = staged_diff(repo, "--no-prefix")
    with pytest.raises(EditError, match="--no-prefix"):
        parse_unified_diff(diff)
    git(repo, "reset", "-q", "--hard")
    result = subprocess.run(["git", "apply", "--check", "-"], cwd=repo, env=_git_env(repo),
                            input=diff.encode(), capture_output=True)
    assert result.returncode != 0  # git apply cannot use it either


def _hunk(old: str, new: str) -> str:
    return f"--- {old}\n+++ {new}\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n"


# Which file does each section change? The answer must be the file `git apply` (default -p1,
# as the sandbox runs it) would change, or a prefix could hide a protected path.
NAMING = [
    pytest.param("diff --git a/src/x.py b/src/x.py\n" + _hunk("a/src/x.py", "b/src/x.py"),
                 ["src/x.py"], id="git-a-b-prefixes"),
    pytest.param("diff --git i/tests/t.py w/tests/t.py\n" + _hunk("i/tests/t.py", "w/tests/t.py"),
                 ["tests/t.py"], id="git-mnemonic-prefixes"),
    pytest.param("diff --git x/tests/t.py y/tests/t.py\n" + _hunk("x/tests/t.py", "y/tests/t.py"),
                 ["tests/t.py"], id="git-odd-prefixes-cannot-hide-a-path"),
    pytest.param(_hunk("top.py\t2024-05-01 10:00:00 +0000", "top.py\t2024-05-01 10:05:00 +0000")
                 + _hunk("src/n.py", "src/n.py"), ["top.py", "src/n.py"],
                 id="plain-diff-u-without-directory-sets-p0"),
    pytest.param(_hunk("src/n.py", "src/n.py"), ["n.py"], id="plain-diff-u-with-directory-p1"),
    pytest.param(_hunk("a/src/n.py", "b/src/n.py"), ["src/n.py"], id="plain-a-b"),
    pytest.param("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+a\n+b\n", ["new.py"],
                 id="plain-new-file"),
]


@pytest.mark.parametrize(("text", "paths"), NAMING)
def test_parse_unified_diff_names_files_like_git_apply(tmp_path: Path, text: str,
                                                      paths: list[str]) -> None:
    assert [f.path for f in parse_unified_diff(text)] == paths
    root = new_repo(tmp_path / "r")
    numstat = git(root, "apply", "--numstat", "-", stdin=text.encode()).decode()
    assert [row.split("\t")[2] for row in numstat.splitlines()] == paths


def test_parse_unified_diff_plain_diff_u() -> None:
    text = ("--- a.py\t2024-05-01 10:00:00.000000000 +0000\n"
            "+++ a.py\t2024-05-01 10:05:00.000000000 +0000\n"
            "@@ -1,3 +1,3 @@\n line one\n-line two\n+line 2\n line three\n"
            "--- /dev/null\n+++ new.py\n@@ -0,0 +1,2 @@\n+a\n+b\n")
    assert parse_unified_diff(text) == [
        DiffFile("a.py", "a.py", "modified", 1, 1),
        DiffFile("new.py", None, "added", 2, 0),
    ]


def test_parse_unified_diff_counts_lines_that_look_like_headers() -> None:
    text = ("diff --git a/x.md b/x.md\n--- a/x.md\n+++ b/x.md\n@@ -1,2 +1,2 @@\n"
            "---- a removed line that starts with dashes\n+++++ an added one with pluses\n"
            " context\n\\ No newline at end of file\n")
    assert parse_unified_diff(text) == [DiffFile("x.md", "x.md", "modified", 1, 1)]


def _binary(root: Path) -> None:
    (root / "blob.bin").write_bytes(bytes(range(256)) * 4)


def _symlink_new(root: Path) -> None:
    os.symlink("link-target.txt", root / "link")


def _symlink_changed(root: Path) -> None:
    os.symlink("link-target.txt", root / "link")
    git(root, "add", "--", ".")
    git(root, "commit", "-q", "-m", "link")
    (root / "link").unlink()
    os.symlink("a.py", root / "link")


def _mode_change(root: Path) -> None:
    (root / "a.py").chmod(0o755)


def _submodule(root: Path) -> None:
    inner = new_repo(root / "vendor" / "lib")  # an embedded repository: `git add` makes a gitlink
    (inner / "lib.py").write_text("x\n")
    git(inner, "add", "--", ".")
    git(inner, "commit", "-q", "-m", "lib")


def _quoted_name(root: Path) -> None:
    (root / "caf\u00e9.py").write_text("x\n")


def _git_dir(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / ".gitignore").write_text("*.pyc\n")


REAL_DIFF_REFUSALS = [
    pytest.param(_binary, (), ["binary", "blob.bin"], id="binary-files-differ"),
    pytest.param(_binary, ("--binary",), ["binary", "blob.bin"], id="git-binary-patch"),
    pytest.param(_symlink_new, (), ["symbolic link", "link"], id="symlink-created"),
    pytest.param(_symlink_changed, (), ["symbolic link", "link"], id="symlink-changed"),
    pytest.param(_mode_change, (), ["mode", "a.py", "100755"], id="mode-change"),
    pytest.param(_submodule, (), ["submodule", "vendor/lib"], id="submodule"),
    pytest.param(_quoted_name, (), ["quoted path", "caf"], id="quoted-path"),
    pytest.param(_git_dir, (), ["git's own files", "sub/.gitignore"], id="gitignore"),
]


@pytest.mark.parametrize(("change", "flags", "messages"), REAL_DIFF_REFUSALS)
def test_parse_unified_diff_refuses_real_git_diffs(repo: Path, change: object,
                                                   flags: tuple[str, ...],
                                                   messages: list[str]) -> None:
    assert callable(change)
    change(repo)
    diff = staged_diff(repo, *flags)
    assert diff.strip(), "the scenario must produce a diff"
    with pytest.raises(PolicyError) as info:
        parse_unified_diff(diff)
    for message in messages:
        assert message in str(info.value)


def _section(old: str, new: str, body: str = "@@ -1 +1 @@\n-a\n+b\n") -> str:
    return f"diff --git {old} {new}\n--- {old}\n+++ {new}\n{body}"


HANDWRITTEN_REFUSALS = [
    pytest.param(_section("a/../outside.py", "b/../outside.py"), PathPolicy(), ["'..'"],
                 id="traversal"),
    pytest.param("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", PathPolicy(),
                 ["absolute"], id="absolute"),
    pytest.param(_section("a/.git/hooks/pre-commit", "b/.git/hooks/pre-commit"), PathPolicy(),
                 [".git directory"], id="git-hook"),
    pytest.param("diff --git a/ok.py b/ok.py\nrename from ok.py\nrename to ../../evil.py\n",
                 PathPolicy(), ["'..'", "../../evil.py"], id="rename-target-checked"),
    pytest.param("diff --git a/x.py b/y.py\nsimilarity index 100%\ncopy from x.py\ncopy to y.py\n",
                 PathPolicy(), ["copies x.py to y.py"], id="copy"),
    pytest.param('diff --git "a/x y" "b/x y"\n--- "a/x y"\n+++ "b/x y"\n@@ -1 +1 @@\n-a\n+b\n',
                 PathPolicy(), ["quoted path", "not supported"], id="quoted"),
    pytest.param("diff --git a/x b/x\nnew file mode 120000\n--- /dev/null\n+++ b/x\n"
                 "@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n", PathPolicy(),
                 ["symbolic link"], id="symlink"),
    pytest.param("diff --git a/x b/x\nold mode 100644\nnew mode 100755\n", PathPolicy(),
                 ["mode changes are not allowed"], id="mode-change-only"),
    pytest.param("diff --git a/s b/s\nnew file mode 160000\nindex 0000000..1234567\n--- /dev/null"
                 "\n+++ b/s\n@@ -0,0 +1 @@\n+Subproject commit 1234567\n", PathPolicy(),
                 ["submodule"], id="submodule"),
    pytest.param("Binary files a/x.png and b/x.png differ\n", PathPolicy(), ["binary"],
                 id="plain-binary"),
    pytest.param("".join(_section(f"a/f{i}.py", f"b/f{i}.py") for i in range(3)),
                 PathPolicy(max_files=2), ["3 files", "limit of 2"], id="too-many-files"),
    pytest.param(_section("a/x.py", "b/x.py", "@@ -1 +1 @@\n-a\n+" + "b" * 200 + "\n"),
                 PathPolicy(max_bytes=100), ["more than the limit of 100 bytes"],
                 id="too-many-bytes"),
]


@pytest.mark.parametrize(("text", "policy", "messages"), HANDWRITTEN_REFUSALS)
def test_parse_unified_diff_refuses(text: str, policy: PathPolicy, messages: list[str]) -> None:
    with pytest.raises(PolicyError) as info:
        parse_unified_diff(text, policy)
    for message in messages:
        assert message in str(info.value)


UNUSABLE_DIFFS = [
    pytest.param("", "not a unified diff", id="empty"),
    pytest.param("just some text\nwith lines\n", "not a unified diff", id="prose"),
    pytest.param("@@ -1 +1 @@\n-a\n+b\n", "outside any file section", id="hunk-without-file"),
    pytest.param(_section("a/x.py", "b/x.py", "@@ -1,3 +1,3 @@\n a\n-b\n"), "truncated",
                 id="truncated"),
    pytest.param(_section("a/x.py", "b/x.py", "@@ -1,2 +1,2 @@\n a\n-b\n+c\n-d\n+e\n"),
                 "more lines than its header says", id="hunk-too-long"),
    pytest.param(_section("a/x.py", "b/x.py", "@@ -1 +1 @@\n-a\n\\ No newline at end of file\n"
                          "+b\n\\ No newline at end of file\n+c\n"),
                 "more lines than its header says", id="hunk-too-long-after-no-newline-marker"),
    pytest.param(_section("a/x.py", "b/x.py", "@@ -1,2 +1,2 @@\n a\nzzz\n"),
                 "fewer lines than its header says", id="garbage-in-hunk"),
    pytest.param(_section("a/x.py", "b/x.py", "@@ bogus @@\n"), "not a valid hunk header",
                 id="bad-hunk-header"),
    pytest.param("--- a/x.py\n+++ b/x.py\n", "has no hunks", id="plain-section-without-hunks"),
]


@pytest.mark.parametrize(("text", "message"), UNUSABLE_DIFFS)
def test_parse_unified_diff_unusable(text: str, message: str) -> None:
    with pytest.raises(EditError) as info:
        parse_unified_diff(text)
    assert message in str(info.value)
    assert not isinstance(info.value, PolicyError)


def test_parse_unified_diff_ignores_format_patch_envelope(repo: Path) -> None:
    (repo / "a.py").write_text("changed\n")
    git(repo, "commit", "-q", "-am", "change a\n\n---\nnot a header")
    patch = git(repo, "format-patch", "-1", "--stdout").decode()
    assert patch.rstrip().splitlines()[-2] == "-- "
    files = parse_unified_diff(patch)
    assert files == [DiffFile("a.py", "a.py", "modified", 1, 20)]


# =============================================================================================
# read_tree
# =============================================================================================


def test_read_tree(tmp_path: Path) -> None:
    write_tree(tmp_path, {"src/a.py": "one\r\ntwo", "b.py": ""})
    assert read_tree(tmp_path, ["./src/a.py", "b.py", "missing.py"]) == {
        "src/a.py": "one\r\ntwo", "b.py": "", "missing.py": None}


@pytest.mark.parametrize(("setup", "path", "error", "message"), [
    pytest.param("symlink-file", "link.py", PolicyError, "symbolic link", id="symlink-file"),
    pytest.param("symlink-dir", "linked/x.py", PolicyError, "symbolic link", id="symlink-dir"),
    pytest.param("binary", "blob.py", EditError, "not UTF-8", id="not-utf8"),
    pytest.param("dir", "pkg", EditError, "not a regular file", id="directory"),
    pytest.param("none", "../outside.py", PolicyError, "'..'", id="traversal"),
])
def test_read_tree_refuses(tmp_path: Path, setup: str, path: str, error: type[Exception],
                           message: str) -> None:
    root = tmp_path / "root"
    (root / "pkg").mkdir(parents=True)
    (tmp_path / "outside.py").write_text("secret\n")
    if setup == "symlink-file":
        os.symlink(tmp_path / "outside.py", root / "link.py")
    elif setup == "symlink-dir":
        os.symlink(tmp_path, root / "linked")
        (tmp_path / "x.py").write_text("x\n")
    elif setup == "binary":
        (root / "blob.py").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(error) as info:
        read_tree(root, [path])
    assert message in str(info.value)
