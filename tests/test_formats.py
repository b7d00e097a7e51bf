"""Edit formats beside SEARCH/REPLACE: unified diffs and whole files, and `parse_and_apply`."""

from __future__ import annotations

import time
from collections.abc import Mapping

import jinja2
import pytest

from selfcode.edits import (
    EDIT_FORMATS,
    NoEditsFound,
    PathPolicy,
    apply_udiff,
    apply_whole,
    choose_format,
    format_template,
    parse_and_apply,
    parse_udiff_reply,
    parse_whole_reply,
    render_diff,
)
from selfcode.errors import EditError, PolicyError
from selfcode.prompt.render import render
from selfcode.resources import prompts_dir

Files = dict[str, str | None]


def reader_for(files: Mapping[str, str | None]) -> tuple[list[list[str]], object]:
    calls: list[list[str]] = []

    def read(paths: list[str]) -> dict[str, str | None]:
        calls.append(list(paths))
        return {path: files.get(path) for path in paths}

    return calls, read


def run(fmt: str, files: Files, reply: str) -> dict[str, str | None]:
    _, read = reader_for(files)
    _, old, new = parse_and_apply(reply, fmt, read)  # type: ignore[arg-type]
    for path, content in old.items():
        assert content == files.get(path)
    return new


MOD = "import os\n\n\ndef f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n"


# =============================================================================================
# Unified diffs: what applies
# =============================================================================================

UDIFF_OK = [
    pytest.param(
        {"src/a.py": MOD},
        "I add one on the left; same result, clearer.\n\n```diff\n--- a/src/a.py\n+++ b/src/a.py\n"
        "@@ -4,2 +4,2 @@\n def f(x):\n-    return x + 1\n+    return 1 + x\n```\n\nThat is all.\n",
        {"src/a.py": MOD.replace("x + 1", "1 + x")},
        id="prose-around-fenced",
    ),
    pytest.param(
        {"src/a.py": MOD},
        "--- src/a.py\n+++ src/a.py\n@@ ... @@\n def g(y):\n-    return y * 2\n+    return y + y\n",
        {"src/a.py": MOD.replace("y * 2", "y + y")},
        id="no-prefix-no-numbers-unfenced",
    ),
    pytest.param(
        {"src/a.py": MOD},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -90,7 +90,7 @@\n def g(y):\n-    return y * 2\n"
        "+    return y + y\n```\n",
        {"src/a.py": MOD.replace("y * 2", "y + y")},
        id="wrong-line-numbers-placed-by-content",
    ),
    pytest.param(
        {"src/a.py": MOD, "src/b.py": "B = 1\n"},
        "Two files.\n```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -4,2 +4,2 @@\n def f(x):\n"
        "-    return x + 1\n+    return 1 + x\n@@ -8,2 +8,2 @@\n def g(y):\n-    return y * 2\n"
        "+    return y + y\n--- a/src/b.py\n+++ b/src/b.py\n@@ -1 +1 @@\n-B = 1\n+B = 2\n```\n",
        {"src/a.py": MOD.replace("x + 1", "1 + x").replace("y * 2", "y + y"), "src/b.py": "B = 2\n"},
        id="several-files-and-hunks",
    ),
    pytest.param(
        {"src/new.py": None},
        "```diff\n--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1,2 @@\n+A = 1\n+B = 2\n```\n",
        {"src/new.py": "A = 1\nB = 2\n"},
        id="new-file",
    ),
    pytest.param(
        {"src/new.py": None},
        "diff --git a/src/new.py b/src/new.py\nnew file mode 100644\nindex 0000000..1111111\n"
        "--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1 @@\n+A = 1\n\\ No newline at end of file\n",
        {"src/new.py": "A = 1"},
        id="new-file-git-style-no-newline",
    ),
    pytest.param(
        {"src/old.py": "A = 1\nB = 2\n"},
        "```diff\n--- a/src/old.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-A = 1\n-B = 2\n```\n",
        {"src/old.py": None},
        id="delete-file-with-hunk",
    ),
    pytest.param(
        {"src/old.py": "A = 1\n"},
        "Remove the dead module.\n```diff\n--- a/src/old.py\n+++ /dev/null\n```\n",
        {"src/old.py": None},
        id="delete-file-without-hunks",
    ),
    pytest.param(
        {"src/a.py": MOD},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -1,4 +1,3 @@\n-import os\n \n \n def f(x):\n```\n",
        {"src/a.py": MOD.replace("import os\n", "")},
        id="delete-lines",
    ),
    pytest.param(
        {"src/a.py": MOD.replace("\n", "\r\n")},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -4,2 +4,3 @@\n def f(x):\n-    return x + 1\n"
        "+    y = x + 1\n+    return y\n```\n",
        {"src/a.py": MOD.replace("    return x + 1", "    y = x + 1\n    return y").replace("\n", "\r\n")},
        id="crlf-file-keeps-crlf",
    ),
    pytest.param(
        {"src/a.py": MOD},
        ("```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -4,2 +4,2 @@\n def f(x):\n-    return x + 1\n"
         "+    return 1 + x\n```\n").replace("\n", "\r\n"),
        {"src/a.py": MOD.replace("x + 1", "1 + x")},
        id="crlf-reply",
    ),
    pytest.param(
        {"src/t.py": "def f():\n\tif x:\n\t\treturn 1\n\treturn 2\n"},
        "```diff\n--- a/src/t.py\n+++ b/src/t.py\n@@ -2,3 +2,3 @@\n \tif x:\n-\t\treturn 1\n+\t\treturn 3\n"
        " \treturn 2\n```\n",
        {"src/t.py": "def f():\n\tif x:\n\t\treturn 3\n\treturn 2\n"},
        id="tabs",
    ),
    pytest.param(
        {"src/d.py": 'def f():\n    """Doc."""\n    return 1\n'},
        "```diff\n--- a/src/d.py\n+++ b/src/d.py\n@@ -1,3 +1,7 @@\n def f():\n-    \"\"\"Doc.\"\"\"\n"
        "+    \"\"\"Doc.\n+\n+    ```python\n+    f()\n+    ```\n+    \"\"\"\n     return 1\n```\n",
        {"src/d.py": 'def f():\n    """Doc.\n\n    ```python\n    f()\n    ```\n    """\n    return 1\n'},
        id="fenced-code-inside-content",
    ),
    pytest.param(
        {"src/a.py": MOD},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -3,3 +3,3 @@\n\n def f(x):\n-    return x + 1\n"
        "+    return 1 + x\n```\n",
        {"src/a.py": MOD.replace("x + 1", "1 + x")},
        id="empty-context-line-without-its-space",
    ),
    pytest.param(
        {"src/a.py": "def f(x):   \n    return x\n"},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -1,2 +1,2 @@\n def f(x):\n-    return x\n+    return -x\n```\n",
        {"src/a.py": "def f(x):\n    return -x\n"},
        id="trailing-whitespace-tolerated",
    ),
    pytest.param(
        {"src/a.py": "class C:\n    def f(self):\n        return 1\n"},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -2,2 +2,2 @@\n def f(self):\n-    return 1\n+    return 2\n```\n",
        {"src/a.py": "class C:\n    def f(self):\n        return 2\n"},
        id="uniform-indentation-shift",
    ),
    pytest.param(
        {"src/a.py": "x = 1\ny = 1\nx = 1\ny = 1\n"},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -3,2 +3,2 @@\n x = 1\n-y = 1\n+y = 2\n```\n",
        {"src/a.py": "x = 1\ny = 1\nx = 1\ny = 2\n"},
        id="line-number-breaks-an-exact-tie",
    ),
    pytest.param(
        {"src/a.py": MOD},
        "```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -4,9 +4,9 @@\n def f(x):\n-    return x + 1\n"
        "+    return 1 + x\n```\n",
        {"src/a.py": MOD.replace("x + 1", "1 + x")},
        id="miscounted-header-but-closed-fence",
    ),
]


@pytest.mark.parametrize(("files", "reply", "expected"), UDIFF_OK)
def test_udiff_applies(files: Files, reply: str, expected: Files) -> None:
    assert run("udiff", files, reply) == expected


def test_udiff_rationale_is_the_prose_before_the_fence() -> None:
    parsed = parse_udiff_reply("Why: it is faster.\n\n```diff\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n"
                               "-a\n+b\n```\nAfterword.\n")
    assert parsed.rationale == "Why: it is faster."
    assert [(f.old_path, f.new_path, len(f.hunks)) for f in parsed.files] == [("x.py", "x.py", 1)]


def test_apply_udiff_is_all_or_nothing_and_does_not_touch_its_input() -> None:
    files: Files = {"a.py": "a = 1\n", "b.py": "b = 1\n"}
    frozen = dict(files)
    parsed = parse_udiff_reply("--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
                               "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-nope\n+b = 2\n")
    with pytest.raises(EditError, match=r"Hunk 1 of your diff for b\.py"):
        apply_udiff(files, parsed)
    assert files == frozen


# =============================================================================================
# Unified diffs: what is refused, and how
# =============================================================================================

UDIFF_ERRORS = [
    pytest.param({"a.py": "x\n"}, "I would make it faster.", NoEditsFound,
                 ["contained no unified diff", "'--- a/path'"], id="prose-only"),
    pytest.param({"a.py": "x\n"}, "```diff\n@@ -1 +1 @@\n-x\n+y\n```\n", EditError,
                 ["starts a hunk ('@@')", "which file"], id="hunk-without-file"),
    pytest.param({"a.py": "x\ny\nz\n"}, "```diff\n--- a/a.py\n+++ b/a.py\n@@ -1,3 +1,3 @@\n x\n-y\n",
                 EditError, ["ends inside the hunk", "probably cut off"], id="cut-mid-hunk"),
    pytest.param({"a.py": "x\ny\n"}, "```diff\n--- a/a.py\n+++ b/a.py\n@@ ... @@\n x\n-y\n+z\n",
                 EditError, ["no closing fence", "probably cut off"], id="cut-unclosed-fence"),
    pytest.param({"a.py": "import os\n\ndef f():\n    return 1\n"},
                 "```diff\n--- a/a.py\n+++ b/a.py\n@@ -3,2 +3,2 @@\n def g():\n-    return 1\n+    return 2\n```\n",
                 EditError, ["Hunk 1 of your diff for a.py", "does not match", "lines 3-4",
                             "3 | def f():"], id="no-match-shows-nearest"),
    pytest.param({"a.py": "x = 1\ny = 1\nx = 1\ny = 1\n"},
                 "```diff\n--- a/a.py\n+++ b/a.py\n@@ -9,2 +9,2 @@\n x = 1\n-y = 1\n+y = 2\n```\n",
                 EditError, ["ambiguous", "matches 2 places", "more unchanged context"],
                 id="ambiguous"),
    pytest.param({"a.py": "a\nb\nc\n"},
                 "```diff\n--- a/a.py\n+++ b/a.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n...\n c\n```\n",
                 EditError, ["does not start with ' ', '-' or '+'", "'...'"], id="unprefixed-line"),
    pytest.param({"a.py": "a\nb\n"}, "```diff\n--- a/a.py\n+++ b/a.py\n@@ -3,0 +3,1 @@\n+c\n```\n",
                 EditError, ["only adds lines", "no context"], id="add-without-context"),
    pytest.param({"a.py": "a\n"}, "```diff\n--- /dev/null\n+++ b/a.py\n@@ -0,0 +1 @@\n+b\n```\n",
                 EditError, ["creates a.py", "already exists"], id="create-existing"),
    pytest.param({"a.py": None}, "```diff\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-a\n+b\n```\n",
                 EditError, ["a.py", "does not exist", "--- /dev/null"], id="modify-missing"),
    pytest.param({"a.py": "a\nb\n"}, "```diff\n--- a/a.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n```\n",
                 EditError, ["deletes a.py", "leave 1 non-blank"], id="delete-partly"),
    pytest.param({"a.py": "a\n", "b.py": None},
                 "```diff\n--- a/a.py\n+++ b/b.py\n@@ -1 +1 @@\n-a\n+b\n```\n",
                 EditError, ["renames a.py to b.py"], id="rename"),
    pytest.param({"a.bin": "x"}, "diff --git a/a.bin b/a.bin\nGIT binary patch\nliteral 3\n",
                 PolicyError, ["binary"], id="binary"),
    pytest.param({"a.py": "a\n"}, "diff --git a/a.py b/a.py\nold mode 100644\nnew mode 100755\n",
                 PolicyError, ["file mode of a.py", "not allowed"], id="mode-change"),
    pytest.param({"l": None}, "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n"
                 "@@ -0,0 +1 @@\n+/etc/passwd\n", PolicyError, ["symbolic link"], id="symlink"),
    pytest.param({"m": None}, "diff --git a/m b/m\nnew file mode 160000\n--- /dev/null\n+++ b/m\n"
                 "@@ -0,0 +1 @@\n+Subproject commit 1234\n", PolicyError, ["submodule"],
                 id="submodule"),
    pytest.param({}, "--- a/../evil.py\n+++ b/../evil.py\n@@ -1 +1 @@\n-a\n+b\n", PolicyError,
                 ["'../evil.py'", "'..'"], id="traversal"),
    pytest.param({}, "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", PolicyError,
                 ["/etc/passwd", "absolute"], id="absolute"),
    pytest.param({}, "--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+rm -rf ~\n",
                 PolicyError, [".git/hooks/pre-commit", ".git directory"], id="git-hook"),
    pytest.param({}, "--- /dev/null\n+++ b/.gitattributes\n@@ -0,0 +1 @@\n+* -diff\n",
                 PolicyError, [".gitattributes"], id="git-file"),
]


@pytest.mark.parametrize(("files", "reply", "error", "fragments"), UDIFF_ERRORS)
def test_udiff_errors(files: Files, reply: str, error: type[Exception],
                      fragments: list[str]) -> None:
    calls, read = reader_for(files)
    with pytest.raises(error) as info:
        parse_and_apply(reply, "udiff", read)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)
    if error is PolicyError:
        assert calls == []  # refused before any file was read


def test_udiff_too_many_files() -> None:
    reply = "".join(f"--- /dev/null\n+++ b/f{i}.py\n@@ -0,0 +1 @@\n+x = {i}\n" for i in range(3))
    calls, read = reader_for({})
    with pytest.raises(PolicyError, match="3 files, more than the limit of 2"):
        parse_and_apply(reply, "udiff", read, PathPolicy(max_files=2))  # type: ignore[arg-type]
    assert calls == []


# =============================================================================================
# Whole files
# =============================================================================================

WHOLE_OK = [
    pytest.param(
        {"src/a.py": "A = 1\n"},
        "A is now two.\n\nsrc/a.py\n```python\nA = 2\n```\n\nDone.\n",
        {"src/a.py": "A = 2\n"},
        id="prose-around",
    ),
    pytest.param(
        {"src/a.py": "A = 1\n", "src/b.py": None},
        "Both.\n\nsrc/a.py\n```python\nA = 2\n```\n\nsrc/b.py\n```python\nB = 1\n```\n",
        {"src/a.py": "A = 2\n", "src/b.py": "B = 1\n"},
        id="several-files-and-a-new-one",
    ),
    pytest.param(
        {"src/a.py": "A = 1\r\nB = 1\r\n"},
        "src/a.py\n```python\nA = 2\nB = 1\n```\n",
        {"src/a.py": "A = 2\r\nB = 1\r\n"},
        id="crlf-file-keeps-crlf",
    ),
    pytest.param(
        {"src/a.py": "A = 1\n"},
        "Fix.\r\n\r\nsrc/a.py\r\n```python\r\nA = 2\r\n```\r\n",
        {"src/a.py": "A = 2\n"},
        id="crlf-reply",
    ),
    pytest.param(
        {"Makefile.in": "all:\n\techo hi\n"},
        "Makefile.in\n```make\nall:\n\techo bye\n```\n",
        {"Makefile.in": "all:\n\techo bye\n"},
        id="tabs",
    ),
    pytest.param(
        {"src/d.py": "X = 1\n"},
        'src/d.py\n```python\n"""Usage:\n\n```python\nimport d\n```\n"""\nX = 2\n```\n',
        {"src/d.py": '"""Usage:\n\n```python\nimport d\n```\n"""\nX = 2\n'},
        id="fenced-code-with-info-inside-content",
    ),
    pytest.param(
        {"docs/a.md": "old\n"},
        "docs/a.md\n````markdown\n# Title\n\n```\ncode\n```\n````\n",
        {"docs/a.md": "# Title\n\n```\ncode\n```\n"},
        id="longer-fence-around-bare-fences",
    ),
    pytest.param(
        {"src/a.py": "A = 1\n"},
        "```python src/a.py\nA = 2\n```\n",
        {"src/a.py": "A = 2\n"},
        id="path-in-info-string",
    ),
    pytest.param(
        {"src/a.py": "A = 1\n"},
        "### File: `src/a.py`\n\n```python\nA = 2\n```\n",
        {"src/a.py": "A = 2\n"},
        id="decorated-path-line",
    ),
    pytest.param(
        {"src/a.py": "def f():\n    # ... rest of the code is unchanged ...\n    return 1\n"},
        "src/a.py\n```python\ndef f():\n    # ... rest of the code is unchanged ...\n    return 2\n```\n",
        {"src/a.py": "def f():\n    # ... rest of the code is unchanged ...\n    return 2\n"},
        id="placeholder-comment-already-in-the-file",
    ),
    pytest.param(
        {"src/p.py": None},
        "src/p.py\n```python\nclass P(Protocol):\n    def f(self) -> int:\n        ...\n```\n",
        {"src/p.py": "class P(Protocol):\n    def f(self) -> int:\n        ...\n"},
        id="ellipsis-statement-is-code",
    ),
]


@pytest.mark.parametrize(("files", "reply", "expected"), WHOLE_OK)
def test_whole_applies(files: Files, reply: str, expected: Files) -> None:
    assert run("whole", files, reply) == expected


def test_whole_rationale() -> None:
    parsed = parse_whole_reply("Why.\n\nsrc/a.py\n```python\nA = 2\n```\n")
    assert parsed.rationale == "Why."
    assert [(f.path, f.content, f.line) for f in parsed.files] == [("src/a.py", "A = 2\n", 4)]


def test_an_empty_whole_file_block_empties_the_file_it_never_deletes() -> None:
    assert apply_whole({"a.py": "x\n"}, parse_whole_reply("a.py\n```\n```\n")) == {"a.py": ""}


WHOLE_ERRORS = [
    pytest.param({}, "I would rewrite it.", NoEditsFound, ["contained no file blocks"],
                 id="prose-only"),
    pytest.param({}, "Here it is:\n```python\nA = 2\n```\n", EditError,
                 ["line 2", "has no file path", "'Here it is:'"], id="no-path"),
    pytest.param({"docs/a.md": "x\n"}, "docs/a.md\n```markdown\n# T\n```\ncode\n```\nmore\n```\n",
                 EditError, ["no file path", "longer fence", "````"], id="bare-fence-ends-block-early"),
    pytest.param({"src/a.py": "A = 1\n"}, "src/a.py\n```python\nA = 2\nB = ", EditError,
                 ["ends inside the block for src/a.py", "probably cut off"], id="cut-off"),
    pytest.param({"src/a.py": "def f():\n    return 1\n\ndef g():\n    return 2\n"},
                 "src/a.py\n```python\ndef f():\n    return 3\n\n# ... rest unchanged ...\n```\n",
                 EditError, ["looks incomplete", "line 4", "rest unchanged"], id="elided"),
    pytest.param({"src/a.py": "A = 1\n"},
                 "src/a.py\n```python\nA = 2\n```\nsrc/a.py\n```python\nA = 3\n```\n",
                 EditError, ["two blocks for src/a.py"], id="twice"),
    pytest.param({}, "../x.py\n```python\nA = 2\n```\n", PolicyError, ["'..'"], id="traversal"),
    pytest.param({}, "/etc/cron.d/x\n```\n* * * * * root sh\n```\n", PolicyError, ["absolute"],
                 id="absolute"),
    pytest.param({}, ".git/hooks/post-checkout\n```sh\nrm -rf ~\n```\n", PolicyError,
                 [".git directory"], id="git-hook"),
]


@pytest.mark.parametrize(("files", "reply", "error", "fragments"), WHOLE_ERRORS)
def test_whole_errors(files: Files, reply: str, error: type[Exception],
                      fragments: list[str]) -> None:
    calls, read = reader_for(files)
    with pytest.raises(error) as info:
        parse_and_apply(reply, "whole", read)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)
    if error is PolicyError:
        assert calls == []


# =============================================================================================
# SEARCH/REPLACE: what changed beside the formats (the rest is in test_edits.py)
# =============================================================================================


def test_a_labelled_path_line_is_read_as_the_path() -> None:
    reply = "Faster.\n\nFile: `src/a.py`\n```python\n<<<<<<< SEARCH\n    return x + 1\n=======\n" \
            "    return 1 + x\n>>>>>>> REPLACE\n```\n"
    assert run("search-replace", {"src/a.py": MOD}, reply) == {"src/a.py": MOD.replace("x + 1", "1 + x")}


def test_blocks_know_their_line_in_the_reply() -> None:
    from selfcode.edits import parse_reply

    edits = parse_reply("Why.\n\na.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n").edits
    assert edits[0].line == 5


@pytest.mark.parametrize(("fmt", "reply"), [
    ("search-replace", "a.py\n```\n<<<<<<< SEARCH\ndef f():\n    ...\n    return 9\n=======\nX\n"
                       ">>>>>>> REPLACE\n```\n"),
    ("udiff", "```diff\n--- a/a.py\n+++ b/a.py\n@@ ... @@\n def f():\n-    # ... existing code ...\n"
              "-    return 9\n+    return 8\n```\n"),
])
def test_a_search_that_skips_lines_is_shown_the_whole_span(fmt: str, reply: str) -> None:
    files: Files = {"a.py": "import os\n\n\ndef f():\n    a = 1\n    b = 2\n    return 9\n"}
    _, read = reader_for(files)
    with pytest.raises(EditError) as info:
        parse_and_apply(reply, fmt, read)  # type: ignore[arg-type]
    message = str(info.value)
    assert "stands for lines left out" in message and "Lines 4-7 are:" in message
    assert "5 |     a = 1\n6 |     b = 2\n7 |     return 9" in message


# =============================================================================================
# parse_and_apply: dispatch, fallbacks, guards
# =============================================================================================

SR_REPLY = "Faster.\n\nsrc/a.py\n```python\n<<<<<<< SEARCH\n    return x + 1\n=======\n    return 1 + x\n>>>>>>> REPLACE\n```\n"
DIFF_REPLY = "Faster.\n\n```diff\n--- a/src/a.py\n+++ b/src/a.py\n@@ -5 +5 @@\n-    return x + 1\n+    return 1 + x\n```\n"
WHOLE_REPLY = "Faster.\n\nsrc/a.py\n```python\n" + MOD.replace("x + 1", "1 + x") + "```\n"


@pytest.mark.parametrize(
    ("fmt", "reply"),
    [
        ("search-replace", SR_REPLY),
        ("auto", SR_REPLY),
        ("udiff", DIFF_REPLY),
        ("whole", WHOLE_REPLY),
        pytest.param("udiff", SR_REPLY, id="blocks-when-a-diff-was-asked-for"),
        pytest.param("search-replace", DIFF_REPLY, id="diff-when-blocks-were-asked-for"),
        pytest.param("whole", SR_REPLY, id="blocks-inside-a-whole-file-fence"),
        pytest.param("whole", DIFF_REPLY, id="diff-when-a-whole-file-was-asked-for"),
    ],
)
def test_parse_and_apply_every_format_gives_the_same_change(fmt: str, reply: str) -> None:
    _, read = reader_for({"src/a.py": MOD})
    rationale, old, new = parse_and_apply(reply, fmt, read)  # type: ignore[arg-type]
    assert rationale == "Faster."
    assert old == {"src/a.py": MOD}
    assert new == {"src/a.py": MOD.replace("x + 1", "1 + x")}
    removed = [line for line in render_diff(old, new).splitlines()
               if line.startswith("-") and not line.startswith("---")]
    assert removed == ["-    return x + 1"]


def test_whole_is_never_guessed_from_a_reply_in_another_format() -> None:
    _, read = reader_for({"src/a.py": MOD})
    snippet = "Consider this:\n\nsrc/a.py\n```python\ndef f(x):\n    return 1 + x\n```\n"
    with pytest.raises(NoEditsFound):
        parse_and_apply(snippet, "search-replace", read)  # type: ignore[arg-type]
    with pytest.raises(NoEditsFound):
        parse_and_apply(snippet, "udiff", read)  # type: ignore[arg-type]


def test_a_whole_file_that_documents_the_block_format_is_kept_whole() -> None:
    doc = "Write:\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n"
    reply = f"prompts/x.j2\n```\n{doc}extra\n```\n"
    assert run("whole", {"prompts/x.j2": doc}, reply) == {"prompts/x.j2": doc + "extra\n"}


# A reply in two formats at once: read either way, one part would be dropped without a word.
G_BLOCK = ("<<<<<<< SEARCH\n    return y * 2\n=======\n    return y + y\n>>>>>>> REPLACE\n")
F_HUNK = "@@ -4,2 +4,2 @@\n def f(x):\n-    return x + 1\n+    return 1 + x\n"
MIXED = [
    pytest.param("Faster.\n\n```diff\n--- a/src/a.py\n+++ b/src/a.py\n" + F_HUNK + "```\n\n"
                 "src/a.py\n" + G_BLOCK, 13, 4, id="fenced-diff-then-bare-block"),
    pytest.param("Faster.\n\n--- a/src/a.py\n+++ b/src/a.py\n" + F_HUNK + "\nsrc/a.py\n"
                 + G_BLOCK, 11, 3, id="bare-diff-then-bare-block"),
    pytest.param("Faster.\n\n--- a/src/a.py\n+++ b/src/a.py\nsrc/a.py\n" + G_BLOCK, 6, 3,
                 id="diff-headers-over-a-bare-block"),  # was applied as blocks, silently
    pytest.param("Faster.\n\nsrc/a.py\n```python\n" + G_BLOCK + "```\n\n" + F_HUNK, 5, 12,
                 id="block-then-a-hunk-without-headers"),
    pytest.param("Faster.\n\ndiff --git a/src/a.py b/src/a.py\nsrc/a.py\n" + G_BLOCK, 5, 3,
                 id="git-header-over-a-bare-block"),
]


@pytest.mark.parametrize("fmt", ["search-replace", "udiff", "auto"])
@pytest.mark.parametrize(("reply", "block_line", "diff_line"), MIXED)
def test_a_reply_mixing_blocks_and_a_diff_is_one_repair_not_half_applied(
        fmt: str, reply: str, block_line: int, diff_line: int) -> None:
    calls, read = reader_for({"src/a.py": MOD})
    with pytest.raises(EditError) as info:
        parse_and_apply(reply, fmt, read)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("Your reply mixes two edit formats: a SEARCH/REPLACE block at "
                              f"line {block_line} and unified-diff lines at line {diff_line} ")
    asked = "one unified diff only" if fmt == "udiff" else "SEARCH/REPLACE blocks only"
    assert f"Send the whole change again as {asked}" in message
    assert calls == []  # refused before any file is read


def test_a_whole_file_reply_that_is_really_mixed_is_refused_too() -> None:
    reply = ("Faster.\n\nsrc/a.py\n```\n--- a/src/a.py\n+++ b/src/a.py\n" + F_HUNK
             + "```\n\nsrc/a.py\n" + G_BLOCK)
    with pytest.raises(EditError, match="as complete files only"):
        run("whole", {"src/a.py": MOD}, reply)


# Negative controls: what only looks like the other format, inside an edit, is content.
PATCH_DOC = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-old\n+new\n"
NOT_MIXED = [
    pytest.param("search-replace", {"docs/how.md": "See:\n" + PATCH_DOC},
                 "Clearer.\n\ndocs/how.md\n```\n<<<<<<< SEARCH\nSee:\n" + PATCH_DOC
                 + "=======\nFor example:\n" + PATCH_DOC + ">>>>>>> REPLACE\n```\n",
                 {"docs/how.md": "For example:\n" + PATCH_DOC},
                 id="a-block-whose-text-is-a-diff"),
    pytest.param("udiff", {"docs/how.md": "Write:\n"},
                 "Clearer.\n\n```diff\n--- a/docs/how.md\n+++ b/docs/how.md\n@@ -1 +1,4 @@\n"
                 " Write:\n+<<<<<<< SEARCH\n+=======\n+>>>>>>> REPLACE\n```\n",
                 {"docs/how.md": "Write:\n<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE\n"},
                 id="a-diff-that-adds-block-markers"),
    pytest.param("search-replace", {"src/a.py": MOD},
                 "A note on @@ markers:\n---\n+++ is not a header here.\n\nsrc/a.py\n"
                 + G_BLOCK, {"src/a.py": MOD.replace("y * 2", "y + y")},
                 id="prose-with-diff-punctuation"),
    pytest.param("whole", {"docs/formats.md": PATCH_DOC + G_BLOCK},
                 "Documented.\n\ndocs/formats.md\n````\n" + PATCH_DOC + G_BLOCK + "end\n````\n",
                 {"docs/formats.md": PATCH_DOC + G_BLOCK + "end\n"},
                 id="a-whole-file-documenting-both"),
]


@pytest.mark.parametrize(("fmt", "files", "reply", "expected"), NOT_MIXED)
def test_what_only_looks_mixed_applies(fmt: str, files: Files, reply: str,
                                       expected: Files) -> None:
    assert run(fmt, files, reply) == expected


def test_no_change_is_an_error() -> None:
    _, read = reader_for({"src/a.py": MOD})
    with pytest.raises(EditError, match="change nothing"):
        parse_and_apply("src/a.py\n```python\n" + MOD + "```\n", "whole", read)  # type: ignore[arg-type]


def test_a_huge_reply_is_refused_at_once_without_reading_files() -> None:
    calls, read = reader_for({"src/a.py": MOD})
    reply = SR_REPLY + "x" * 10_000_000
    started = time.perf_counter()
    with pytest.raises(PolicyError) as info:
        parse_and_apply(reply, "search-replace", read)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 0.5
    assert "over the limit of 2,000,000 bytes" in str(info.value)
    assert calls == []


@pytest.mark.parametrize(("fmt", "one", "what"), [
    ("search-replace", "a.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n",
     "SEARCH/REPLACE blocks"),
    ("udiff", "@@ -1 +1 @@\n-x\n+y\n", "hunks"),
])
def test_a_reply_with_too_many_edits_is_refused_before_reading(fmt: str, one: str,
                                                               what: str) -> None:
    head = "" if fmt == "search-replace" else "--- a/a.py\n+++ b/a.py\n"
    calls, read = reader_for({"a.py": "x\n"})
    with pytest.raises(PolicyError, match=f"has 4 {what}, more than the limit of 3"):
        parse_and_apply(head + one * 4, fmt, read, PathPolicy(max_edits=3))  # type: ignore[arg-type]
    assert calls == []


def test_the_reply_limit_counts_bytes_not_characters() -> None:
    _, read = reader_for({"src/a.py": MOD})
    reply = SR_REPLY + "é" * 600  # 600 characters, 1,200 bytes
    with pytest.raises(PolicyError, match="bytes long"):
        parse_and_apply(reply, "search-replace", read,  # type: ignore[arg-type]
                        PathPolicy(max_reply_bytes=len(reply) + 100))


def test_the_readers_answer_is_not_changed_and_only_named_paths_are_read() -> None:
    files: Files = {"src/a.py": MOD}
    snapshot = dict(files)
    seen: list[list[str]] = []

    def read(paths: list[str]) -> dict[str, str | None]:
        seen.append(paths)
        return files

    parse_and_apply(SR_REPLY, "search-replace", read)
    assert files == snapshot and seen == [["src/a.py"]]


def test_a_reader_that_forgets_a_path_is_a_bug_not_a_model_error() -> None:
    with pytest.raises(ValueError, match=r"no entry for 'src/a\.py'"):
        parse_and_apply(SR_REPLY, "search-replace", lambda paths: {})


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown edit format 'patch'"):
        parse_and_apply(SR_REPLY, "patch", lambda paths: {})


# =============================================================================================
# Choosing a format, and its prompt
# =============================================================================================


@pytest.mark.parametrize(
    ("model", "edit_format", "formats", "expected"),
    [
        ("gpt-4o", "auto", {}, "search-replace"),
        ("gpt-4o", "udiff", {"gpt-*": "whole"}, "udiff"),
        ("qwen2.5-coder:7b", "auto", {"qwen*": "whole"}, "whole"),
        ("Qwen2.5-Coder:7B", "auto", {"qwen*": "whole"}, "whole"),
        ("gpt-4.1-mini", "auto", {"gpt-*": "udiff", "gpt-4.1-mini*": "whole"}, "whole"),
        ("gpt-4.1-mini", "auto", {"gpt-4.1-mini*": "whole", "gpt-*": "udiff"}, "whole"),
        ("llama3", "auto", {"qwen*": "whole"}, "search-replace"),
    ],
)
def test_choose_format(model: str, edit_format: str, formats: dict[str, str],
                       expected: str) -> None:
    assert choose_format(model, edit_format, formats) == expected


def test_choose_format_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown edit format"):
        choose_format("m", "auto", {"m": "diff"})


@pytest.mark.parametrize("fmt", EDIT_FORMATS)
def test_every_format_has_its_prompt(fmt: str) -> None:
    assert format_template(fmt) == f"format_{fmt}"
    text = render(format_template(fmt))
    assert "rationale" in text and "```" in text
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(prompts_dir()),
                             undefined=jinja2.StrictUndefined)
    included = env.from_string('{% include "format_" ~ edit_format ~ ".j2" %}')
    assert included.render(edit_format=fmt).strip() == text


def test_the_example_in_each_prompt_parses_in_its_format() -> None:
    """The example a prompt shows must be something the parser accepts."""
    assert parse_udiff_reply(render("format_udiff")).files[0].path == "path/to/file.py"
    assert parse_whole_reply(render("format_whole")).files[0].path == "path/to/file.py"


def test_config_accepts_formats_and_refuses_unknown_ones() -> None:
    from pydantic import ValidationError

    from selfcode.config import LLMConfig

    config = LLMConfig(edit_format="auto", formats={"qwen*": "whole"})
    assert choose_format("qwen2.5", config.edit_format, config.formats) == "whole"
    with pytest.raises(ValidationError):
        LLMConfig(formats={"qwen*": "diff"})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        LLMConfig(edit_format="patch")  # type: ignore[arg-type]
