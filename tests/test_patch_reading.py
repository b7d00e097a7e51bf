"""Patches are read the way git applies them: git's own reading against the policy parser's.

Pure parts (git's output formats, quoting, the agreement rules, look-alike paths, the probe
scan) are table-tested with negative controls; the whole early gate (policy parser, git's
reading against a scratch baseline, protected paths) runs on real git over both fixtures; one
end-to-end judge in the local sandbox shows the wiring.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from selfcode.errors import EditError
from selfcode.gate.agreement import Readings, disagreement, git_paths
from selfcode.gate.config import GateConfig
from selfcode.gate.diffs import DiffFile, parse_unified_diff
from selfcode.gate.gitpatch import GitBaseline
from selfcode.gate.gitread import (
    Change,
    Entry,
    Summary,
    added_lines,
    c_quote,
    c_unquote,
    parse_apply_output,
    parse_diff_index,
    parse_summary,
)
from selfcode.gate.paths import folded, lookalike_violations
from selfcode.gate.probes import NewFile, context_probes, python_names
from selfcode.gate.protected import protected_violations
from selfcode.git.store import GitStore

from repos import make_repo
from test_hostile import FILES as CALC_FILES

EXAMPLES = Path(__file__).parents[1] / "examples"
PROTECTED = GateConfig().protected

# =============================================================================================
# git's output formats
# =============================================================================================

QUOTING = [
    ("plain/name.py", "plain/name.py"),
    ("with space.py", "with space.py"),
    ("tab\there", '"tab\\there"'),
    ("new\nline", '"new\\nline"'),
    ('quote"d', '"quote\\"d"'),
    ("back\\slash", '"back\\\\slash"'),
    ("caf\u00e9.py", '"caf\\303\\251.py"'),
    ("\x7f", '"\\177"'),
]


@pytest.mark.parametrize(("name", "quoted"), QUOTING)
def test_c_quote_round_trips_like_git(name: str, quoted: str) -> None:
    assert c_quote(name) == quoted
    assert c_unquote(quoted) == name


@pytest.mark.parametrize(("printed", "name"), [
    ('"te\\163ts/x.py"', "tests/x.py"),  # an octal escape for a plain letter
    ('"a\\"', 'a\\'),  # a lone trailing backslash is kept
    ('"unterminated', '"unterminated'),  # not quoted: taken as it is
    ("plain", "plain"),
])
def test_c_unquote(printed: str, name: str) -> None:
    assert c_unquote(printed) == name


def test_parse_apply_output() -> None:
    out = b"1\t2\tsrc/a b.py\x00-\t-\tbin\x000\t0\tgone\x00 create mode 100644 \"caf\\303\\251\"\n"
    entries, lines = parse_apply_output(out)
    assert entries == [Entry("src/a b.py", 1, 2), Entry("bin", None, None), Entry("gone", 0, 0)]
    assert lines == [' create mode 100644 "caf\\303\\251"']
    assert parse_apply_output(b"") == ([], [])
    with pytest.raises(ValueError):
        parse_apply_output(b"garbage\x00")


SUMMARIES = [
    ([" create mode 100755 run.sh"], ["run.sh"], Summary(created={"run.sh": "100755"})),
    ([' delete mode 120000 "l\\303\\251"'], ["l\u00e9"], Summary(deleted={"l\u00e9": "120000"})),
    ([" mode change 100644 => 100755 x y"], ["x y"],
     Summary(mode_changes=[("x y", "100644", "100755")])),
    ([" rename tests/{test_a.py => test_a.py} (0%)"], ["tests/test_a.py"],
     Summary(renames=[("tests/test_a.py", "tests/test_a.py")])),
    ([" rename README.md => src/x.py (90%)", "   mode change 100644 => 100755"], ["src/x.py"],
     Summary(renames=[("README.md", "src/x.py")],
             mode_changes=[("src/x.py", "100644", "100755")])),
    # git folds only a shared leading directory into the braces, never a shared tail.
    ([" copy src/{a/c.py => b/c.py} (100%)"], ["src/b/c.py"],
     Summary(copies=[("src/a/c.py", "src/b/c.py")])),
    ([" rewrite big.txt (80%)"], ["big.txt"], Summary()),
    # Negative controls: what cannot be resolved to exactly one reading is kept as unknown.
    ([" rename a => b => c (50%)"], ["c", "b => c"], Summary(unknown=[" rename a => b => c (50%)"])),
    ([" rename x => y (1%)"], ["z"], Summary(unknown=[" rename x => y (1%)"])),
    ([" something new"], [], Summary(unknown=[" something new"])),
]


@pytest.mark.parametrize(("lines", "names", "expected"), SUMMARIES)
def test_parse_summary(lines: list[str], names: list[str], expected: Summary) -> None:
    assert parse_summary(lines, names) == expected


@pytest.mark.parametrize(("patch", "lines"), [
    ("@@ -1 +1 @@\n-a\n+b\n", {1}),
    ("@@ -0,0 +1,3 @@\n+a\n+b\n+c\n", {1, 2, 3}),
    ("@@ -5,2 +4,0 @@\n-a\n-b\n", set()),  # a pure deletion adds nothing
    ("@@ -1 +1 @@\n-a\n+@@ -1 +9 @@\n", {1}),  # a content line that looks like a header
    ("@@ -2 +2,2 @@ def f():\n-a\n+b\n+c\n@@ -9 +10 @@\n-x\n+y\n", {2, 3, 10}),
])
def test_added_lines(patch: str, lines: set[int]) -> None:
    assert added_lines(patch) == lines


def test_parse_diff_index() -> None:
    zero, one = "0" * 40, "1" * 40
    out = (f":000000 100644 {zero} {one} A\x00new.py\x00"
           f":100644 100755 {one} {one} M\x00x\x00\x00"
           "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n"
           "@@ -0,0 +1,2 @@\n+a\n+b\ndiff --git a/x b/x\nold mode 100644\nnew mode 100755\n"
           ).encode()
    assert parse_diff_index(out) == [
        Change("000000", "100644", one, "A", "new.py", frozenset({1, 2})),
        Change("100644", "100755", one, "M", "x", frozenset()),
    ]
    assert parse_diff_index(b"") == []
    with pytest.raises(ValueError):  # a record without its patch section
        parse_diff_index(f":000000 100644 {zero} {one} A\x00new.py\x00\x00".encode())


# =============================================================================================
# Look-alike paths
# =============================================================================================

LOOKALIKES = [
    ("TESTS/helper.py", "TESTS/helper.py (read as tests/helper.py)"),
    ("\uff54ests/helper.py", "\uff54ests/helper.py (read as tests/helper.py)"),  # fullwidth t
    ("src/conf\u200btest.py", "src/conf\u200btest.py (read as src/conftest.py)"),
    ("PyProject.toml", "PyProject.toml (read as pyproject.toml)"),
    ("src/PIPFILE", "src/PIPFILE (read as src/pipfile)"),  # the pattern is folded too
    # Negative controls: ordinary names stay untouched, whatever their case.
    ("README.md", None),
    ("src/primes/Fast.py", None),
    ("docs/caf\u00e9.md", None),
]


@pytest.mark.parametrize(("path", "message"), LOOKALIKES)
def test_lookalike_violations(path: str, message: str | None) -> None:
    assert protected_violations([path], PROTECTED) == []  # as written it is not protected
    assert lookalike_violations([path], PROTECTED) == ([message] if message else [])


def test_folded_is_idempotent() -> None:
    for path, _ in LOOKALIKES:
        assert folded(folded(path)) == folded(path)


# =============================================================================================
# Agreement between the readings (synthetic, so every rule is seen on its own)
# =============================================================================================

MOD = DiffFile("src/a.py", "src/a.py", "modified", 1, 1)
NEW = DiffFile("src/b.py", None, "added", 2, 0)
REN = DiffFile("src/c.py", "src/old.py", "renamed", 0, 0)
OID = "2" * 40


def readings(files: list[DiffFile], entries: list[Entry], summary: Summary | None = None,
             changes: list[Change] | None = None) -> Readings:
    return Readings(files, entries, summary or Summary(), changes or [])


AGREEING = readings(
    [MOD, NEW, REN],
    [Entry("src/a.py", 1, 1), Entry("src/b.py", 2, 0), Entry("src/c.py", 0, 0)],
    Summary(created={"src/b.py": "100644"}, renames=[("src/old.py", "src/c.py")]),
    [Change("100644", "100644", OID, "M", "src/a.py"), Change("000000", "100644", OID, "A",
                                                              "src/b.py"),
     Change("000000", "100644", OID, "A", "src/c.py"), Change("100644", "000000", "0" * 40,
                                                              "D", "src/old.py")])

DISAGREEING = [
    ("git names another file",
     readings([MOD], [Entry("tests/t.py", 1, 1)]), "disagree about tests/t.py"),
    ("git reads one more section",
     readings([MOD], [Entry("src/a.py", 1, 1), Entry("tests/conftest.py", 1, 0)]),
     "disagree about tests/conftest.py: git reads 2"),
    ("git reads one section fewer",
     readings([MOD, NEW], [Entry("src/a.py", 1, 1)]), "disagree about src/b.py"),
    ("different line counts", readings([MOD], [Entry("src/a.py", 2, 1)]), "git counts \\+2 -1"),
    ("binary", readings([MOD], [Entry("src/a.py", None, None)]), "binary patch for src/a.py"),
    ("two sections for one file",
     readings([MOD, MOD], [Entry("src/a.py", 1, 1), Entry("src/a.py", 1, 1)]),
     "several sections for src/a.py"),
    ("a copy",
     readings([MOD], [Entry("src/a.py", 1, 1)], Summary(copies=[("tests/t.py", "src/a.py")])),
     "copies tests/t.py to src/a.py"),
    ("a mode change",
     readings([MOD], [Entry("src/a.py", 1, 1)],
              Summary(mode_changes=[("src/a.py", "100755", "100644")])), "file mode of src/a.py"),
    ("a symbolic link created",
     readings([NEW], [Entry("src/b.py", 2, 0)], Summary(created={"src/b.py": "120000"})),
     "symbolic link"),
    ("an unreadable summary line",
     readings([MOD], [Entry("src/a.py", 1, 1)], Summary(unknown=[" rename ?"])),
     "cannot read unambiguously"),
    ("a rename only git sees",
     readings([MOD], [Entry("src/a.py", 1, 1)], Summary(renames=[("tests/t.py", "src/a.py")])),
     "only one reading renames tests/t.py"),
    ("a creation only git sees",
     readings([MOD], [Entry("src/a.py", 1, 1)], Summary(created={"src/a.py": "100644"})),
     "only one reading has it added"),
    ("a result path the policy never read",
     readings([MOD], [Entry("src/a.py", 1, 1)],
              changes=[Change("100644", "100644", OID, "M", "tests/t.py")]),
     "disagree about tests/t.py: git's result"),
    ("a symbolic link retargeted",
     readings([MOD], [Entry("src/a.py", 1, 1)],
              changes=[Change("120000", "120000", OID, "M", "src/a.py")]), "symbolic link"),
    ("a submodule moved",
     readings([MOD], [Entry("src/a.py", 1, 1)],
              changes=[Change("160000", "160000", OID, "M", "src/a.py")]), "submodule"),
    ("an executable bit set by an index line",
     readings([MOD], [Entry("src/a.py", 1, 1)],
              changes=[Change("100644", "100755", OID, "M", "src/a.py")]),
     "file mode of src/a.py from 100644 to 100755"),
]


def test_agreeing_readings_pass() -> None:
    assert disagreement(AGREEING) is None
    assert git_paths(AGREEING) == {"src/a.py", "src/b.py", "src/c.py", "src/old.py"}


@pytest.mark.parametrize(("case", "r", "pattern"), DISAGREEING, ids=[c for c, _, _ in DISAGREEING])
def test_disagreement_is_one_sentence_naming_the_path(case: str, r: Readings,
                                                      pattern: str) -> None:
    import re

    sentence = disagreement(r)
    assert sentence is not None and re.search(pattern, sentence), sentence
    assert sentence.count(". ") == 0 and sentence.endswith("."), sentence


# =============================================================================================
# The probe scan
# =============================================================================================

PROBES = [
    ("import sys as s\nX = s.modules\n", {2}, ["sys.modules"]),
    ("from os import environ as e\nX = e.get('A')\n", {2}, ["the environment"]),
    ("from sys import argv\n", {1}, ["sys.argv"]),
    ("X = __import__('sys').argv\n", {1}, ["sys.argv"]),
    ("import importlib\nX = importlib.import_module('o' + 's').environ\n", {2},
     ["the environment"]),
    ("import sys\nX = getattr(sys, 'mod' + 'ules')\n", {2}, ["sys.modules"]),
    ("import sys\nN = 'ar' 'gv'\nX = getattr(sys, N)\n", {3}, ["sys.argv"]),
    ("import sys\nX = vars(sys)[''.join(['_get', 'frame'])]\n", {2}, ["the call stack"]),
    ("import sys\nm = sys\nn = m\nX = n.orig_argv\n", {4}, ["sys.argv"]),
    ("X = f\"{'PYTEST_'}CURRENT_TEST\"\n", {1}, ["pytest"]),
    # Negative controls: the baseline's own use, a comment, an unrelated getattr.
    ("import sys\nX = sys.argv\nY = 1\n", {3}, []),
    ("X = 1  # sys.argv\n", {1}, []),
    ("import math\nX = getattr(math, 'sq' + 'rt')\n", {2}, []),
    ("def f(:\n", {1}, []),  # does not parse: only the text scan applies
]


@pytest.mark.parametrize(("source", "added", "found"), PROBES)
def test_probes_resolve_aliases_in_the_resulting_file(source: str, added: set[int],
                                                      found: list[str]) -> None:
    new = NewFile("src/pkg/mod.py", source, frozenset(added))
    assert context_probes("", [new]) == found


def test_python_names_only_on_added_lines() -> None:
    names = python_names("import sys as s\nA = s.argv\nB = s.path\n", frozenset({3}))
    assert "sys.path" in names and "sys.argv" not in names


@pytest.mark.parametrize(("path", "line", "found"), [
    ("src/pkg/hook.pth", "import os; os.environ['X']", ["the environment"]),
    ("setup.cfg", "[tool:pytest]", ["pytest"]),
    ("run.sh", "echo $PYTEST_CURRENT_TEST", ["pytest"]),
    ("notes.txt", ">>> import sys; sys.argv", ["sys.argv"]),
    ("pyproject.toml", "x = 1", []),
])
def test_probes_scan_every_file(path: str, line: str, found: list[str]) -> None:
    diff = f"--- a/{path}\n+++ b/{path}\n@@ -1 +1,2 @@\n x = 0\n+{line}\n"
    assert context_probes(diff) == found


@pytest.mark.parametrize(("diff", "found"), [
    # A timestamp after the name used to hide the file's extension.
    ("--- a/m.py\t2024-01-01 00:00:00\n+++ b/m.py\t2024-01-01 00:00:00\n@@ -1 +1,2 @@\n x\n"
     "+import sys; sys.argv\n", ["sys.argv"]),
    # A quote before the '#' keeps the rest of the line in the scan.
    ("--- a/m.py\n+++ b/m.py\n@@ -1 +1,2 @@\n x\n+s = '#'; import sys; sys.argv\n",
     ["sys.argv"]),
    # Inside a hunk, a '+++ ' line is an added line; a CRLF does not hide it.
    ("--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n x\n-y\n+++ sys.argv\r\n", ["sys.argv"]),
    # Negative control: the header's own name is not scanned.
    ("--- a/bench_x.py\n+++ b/bench_x.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n", []),
])
def test_probes_read_the_patch_text_like_git(diff: str, found: list[str]) -> None:
    assert context_probes(diff) == found


# =============================================================================================
# The early gate on real git: policy parser, git's reading, protected paths
# =============================================================================================


def _examples_files() -> dict[str, str]:
    return {str(p.relative_to(EXAMPLES)): p.read_text("utf-8") for p in sorted(EXAMPLES.rglob("*"))
            if p.is_file() and p.name != "demo-replies.jsonl" and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GitBaseline]:
    root = tmp_path_factory.mktemp("patch-reading")
    out = {}
    for name, files in (("examples", _examples_files()), ("calc", dict(CALC_FILES))):
        out[name] = GitBaseline(GitStore(make_repo(root / name, files)).tracked_tar())
    return out


def early_verdict(baseline: GitBaseline, diff: str) -> str:
    """What Judge.judge decides before the sandbox, composed the same way."""
    try:
        files = parse_unified_diff(diff)
    except EditError as exc:
        return f"{'rejected' if exc.__class__.__name__ == 'PolicyError' else 'unusable'}: {exc}"
    reading = baseline.read(diff, files)
    touched = sorted({f.path for f in files} | {f.old_path for f in files if f.old_path}
                     | reading.paths)
    protected = (protected_violations(touched, PROTECTED)
                 or lookalike_violations(touched, PROTECTED))
    if protected:
        return f"rejected: protected path touched: {', '.join(protected)}"
    if reading.refusal:
        return f"{reading.status}: {reading.refusal}"
    return "passes: " + ", ".join(touched)


def section(path: str, body: str, header: str = "") -> str:
    return f"diff --git a/{path} b/{path}\n{header}--- a/{path}\n+++ b/{path}\n{body}"


README_HUNK = "@@ -1,2 +1,2 @@\n-# primes-demo\n+# primes\n \n"
TEST_HUNK = ("@@ -1,3 +1,3 @@\n-import pytest\n+import pytest  # harmless-looking\n \n"
             " from primes import count_primes, is_prime, primes_up_to\n")
INIT_HUNK = ("@@ -7,3 +7,3 @@ def is_prime(n: int) -> bool:\n-    for d in range(2, n):\n"
             "+    for d in range(2, int(n ** 0.5) + 1):\n         if n % d == 0:\n"
             "             return False\n")
CALC_HUNK = ("@@ -1,7 +1,4 @@\n def total(xs):\n-    result = 0\n-    for x in xs:\n"
             "-        result = result + x\n-    return result\n+    return sum(xs)\n \n \n")
NEW_MODULE = ("diff --git a/src/primes/fast.py b/src/primes/fast.py\nnew file mode 100644\n"
              "--- /dev/null\n+++ b/src/primes/fast.py\n@@ -0,0 +1,2 @@\n+def isqrt(n):\n"
              "+    return int(n ** 0.5)\n")

EARLY = [
    # Genuine controls: they pass, naming exactly the paths they change.
    ("examples", "a one-file speedup", section("src/primes/__init__.py", INIT_HUNK),
     "passes: src/primes/__init__.py"),
    ("examples", "a multi-file patch with a new module",
     section("src/primes/__init__.py", INIT_HUNK) + NEW_MODULE + section("README.md", README_HUNK),
     "passes: README.md, src/primes/__init__.py, src/primes/fast.py"),
    ("examples", "a plain diff -u with timestamps",
     "--- a/README.md\t2024-01-01 00:00:00.000000000 +0000\n"
     "+++ b/README.md\t2024-01-01 00:00:01.000000000 +0000\n" + README_HUNK, "passes: README.md"),
    ("examples", "a -p0 diff", "--- README.md\n+++ README.md\n" + README_HUNK, "passes: README.md"),
    ("examples", "a rename git diff -M makes",
     "diff --git a/README.md b/README.rst\nsimilarity index 100%\nrename from README.md\n"
     "rename to README.rst\n", "passes: README.md, README.rst"),
    ("examples", "a path with spaces",
     NEW_MODULE.replace("fast.py", "my fast.py"), "passes: src/primes/my fast.py"),
    ("examples", "no newline at the end",
     section("src/primes/__init__.py", "@@ -18,2 +18,2 @@ def primes_up_to(limit: int) -> "
             "list[int]:\n def count_primes(limit: int) -> int:\n-    return len(primes_up_to("
             "limit))\n+    return len(primes_up_to(limit))\n\\ No newline at end of file\n"),
     "passes: src/primes/__init__.py"),
    ("calc", "the calc speedup", section("src/calc/__init__.py", CALC_HUNK),
     "passes: src/calc/__init__.py"),
    ("examples", "a deletion", "diff --git a/README.md b/README.md\ndeleted file mode 100644\n"
     "--- a/README.md\n+++ /dev/null\n@@ -1,4 +0,0 @@\n" + "".join(
         f"-{line}\n" for line in (EXAMPLES / "README.md").read_text().split("\n")[:4]),
     "passes: README.md"),
    # Extended headers after ---/+++ (git reads them anywhere before the first hunk).
    ("examples", "a rename after +++ rewrites the tests",
     section("README.md", "rename from tests/test_primes.py\nrename to tests/test_primes.py\n"
             + TEST_HUNK), "rejected: protected path touched: tests/test_primes.py"),
    ("examples", "a copy after +++ creates a conftest",
     section("README.md", "copy from README.md\ncopy to tests/conftest.py\n" + README_HUNK),
     "rejected: .*copies README.md to tests/conftest.py"),
    ("examples", "git's other spelling of a rename",
     "diff --git a/src/primes/__init__.py b/src/primes/__init__.py\n"
     "rename old tests/test_primes.py\nrename new tests/test_primes2.py\n",
     "rejected: protected path touched: tests/test_primes.py, tests/test_primes2.py"),
    ("calc", "a rename after garbage that git does not read as a header",
     "diff --git a/src/calc/__init__.py b/src/calc/__init__.py\nnot a header\n"
     "rename from src/calc/__init__.py\nrename to src/calc/core.py\n--- a/src/calc/__init__.py\n"
     "+++ b/src/calc/__init__.py\n" + CALC_HUNK, "rejected: git and the policy parser disagree"),
    # Modes.
    ("examples", "a mode change after +++",
     section("README.md", "old mode 100644\nnew mode 100755\n" + README_HUNK),
     "rejected: .*file mode of README.md"),
    ("examples", "an index line that claims another mode",
     section("README.md", README_HUNK, header="index 1111111..2222222 100755\n"),
     "rejected: .*file mode of README.md"),
    ("examples", "a new symbolic link after +++",
     "diff --git a/src/primes/t b/src/primes/t\n--- /dev/null\n+++ b/src/primes/t\n"
     "new file mode 120000\n@@ -0,0 +1 @@\n+../../tests/test_primes.py\n"
     "\\ No newline at end of file\n", "rejected: .*symbolic link"),
    ("calc", "a new executable under its own name",
     "diff --git a/src/calc/run b/src/calc/run\nnew file mode 100755\n--- /dev/null\n"
     "+++ b/src/calc/run\n@@ -0,0 +1 @@\n+echo hi\n", "rejected: .*executable file"),
    # Byte-level tricks.
    ("examples", "a quoted path with an octal escape",
     section('"a/te\\163ts/test_primes.py"', TEST_HUNK).replace(
         'a/"a/te\\163ts/test_primes.py"', '"a/te\\163ts/test_primes.py"'),
     "rejected: .*quoted path"),
    ("examples", "a name with a trailing space git keeps",
     "--- /dev/null\n+++ b/src/primes/fast.py \n@@ -0,0 +1 @@\n+X = 1\n",
     "rejected: git and the policy parser disagree about 'src/primes/fast.py '"),
    ("calc", "a look-alike conftest",
     NEW_MODULE.replace("src/primes/fast.py", "src/calc/conf\u200btest.py"),
     "rejected: protected path touched: src/calc/conf\u200btest.py \\(read as"),
    ("calc", "an upper-case tests directory",
     NEW_MODULE.replace("src/primes/fast.py", "TESTS/test_more.py"),
     "rejected: protected path touched: TESTS/test_more.py"),
    ("examples", "/dev/null for a file that exists",
     "--- /dev/null\n+++ b/src/primes/__init__.py\n@@ -0,0 +1 @@\n+X = 1\n",
     "unusable: .*already exists"),
    ("examples", "diff --git names that differ from ---/+++",
     "diff --git a/README.md b/tests/test_primes.py\n--- a/README.md\n+++ b/README.md\n"
     + README_HUNK, "passes: README.md"),
    ("examples", "a traditional diff whose two names differ",
     "--- a/README.md\n+++ b/tests/test_primes.py\n" + README_HUNK,
     "rejected: protected path touched: tests/test_primes.py"),
    ("examples", "two sections for the same file",
     section("README.md", README_HUNK) + section("README.md", README_HUNK.replace(
         "-# primes-demo\n+# primes", "-# primes\n+# primes-again")),
     "rejected: The patch has several sections for README.md"),
    ("examples", "a GIT binary patch",
     "diff --git a/src/primes/x.bin b/src/primes/x.bin\nnew file mode 100644\nindex "
     "0000000..ad47100\nGIT binary patch\nliteral 3\nKcmZ>Y%K!iX3j-bi\n\nliteral 0\n"
     "HcmV?d00001\n\n", "rejected: .*binary"),
    ("examples", "an a/b prefix game", section("b/tests/test_primes.py", TEST_HUNK),
     "rejected: protected path touched: b/tests/test_primes.py"),
    ("examples", "a CRLF patch (git keeps the CR in the content)",
     section("README.md", README_HUNK).replace("\n", "\r\n"), "unusable: the patch does not apply"),
    ("calc", "a CRLF new file (git keeps the CR in the name's line, not the name)",
     NEW_MODULE.replace("src/primes", "src/calc").replace("\n", "\r\n"),
     "passes: src/calc/fast.py"),
]


@pytest.mark.parametrize(("fixture", "case", "diff", "expected"), EARLY,
                         ids=[c for _, c, _, _ in EARLY])
def test_early_gate_reads_patches_like_git(baselines: dict[str, GitBaseline], fixture: str,
                                           case: str, diff: str, expected: str) -> None:
    import re

    verdict = early_verdict(baselines[fixture], diff)
    assert re.match(expected, verdict), verdict


def _tar(entries: list[tuple[str, str, str]]) -> bytes:
    """A baseline tar as GitStore.tracked_tar writes it: (path, kind, data)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, data in entries:
            info = tarfile.TarInfo(path)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                raw = data.encode()
                info.size, info.mode = len(raw), 0o755 if kind == "exec" else 0o644
                tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


SPECIAL = [
    ("retargets a symbolic link of the baseline",
     "--- a/docs\n+++ b/docs\n@@ -1 +1 @@\n-README.md\n\\ No newline at end of file\n"
     "+/etc/passwd\n\\ No newline at end of file\n", "rejected: .*docs as a symbolic link"),
    ("writes through a symbolic link of the baseline",
     "--- /dev/null\n+++ b/linkdir/x.py\n@@ -0,0 +1 @@\n+X = 1\n", "unusable: .*symbolic link"),
    ("writes into a submodule", "--- /dev/null\n+++ b/sub/x.py\n@@ -0,0 +1 @@\n+X = 1\n",
     "(unusable|rejected)"),
    ("drops the executable bit", "diff --git a/run b/run\nindex 1111111..2222222 100644\n"
     "--- a/run\n+++ b/run\n@@ -1 +1 @@\n-echo a\n+echo b\n", "rejected: .*file mode of run"),
    # Negative control: the executable keeps its bit when the patch says nothing about it.
    ("edits an executable", "--- a/run\n+++ b/run\n@@ -1 +1 @@\n-echo a\n+echo b\n",
     "passes: run"),
]


@pytest.mark.parametrize(("case", "diff", "expected"), SPECIAL, ids=[c for c, _, _ in SPECIAL])
def test_early_gate_knows_the_baselines_links_and_submodules(case: str, diff: str,
                                                             expected: str) -> None:
    import re

    baseline = GitBaseline(_tar([("README.md", "file", "x\n"), ("run", "exec", "echo a\n"),
                                 ("docs", "link", "README.md"), ("real", "dir", ""),
                                 ("real/y.py", "file", "Y = 1\n"), ("linkdir", "link", "real"),
                                 ("sub", "dir", "")]))
    try:
        verdict = early_verdict(baseline, diff)
    finally:
        baseline.close()
    assert re.match(expected, verdict), verdict


def test_reading_costs_milliseconds(baselines: dict[str, GitBaseline]) -> None:
    """git's reading adds a few ms per patch: report it, and keep it far below a test run."""
    diff = section("src/primes/__init__.py", INIT_HUNK) + NEW_MODULE
    files = parse_unified_diff(diff)
    baseline = baselines["examples"]
    baseline.read(diff, files)  # warm the page cache
    start = time.perf_counter()
    for _ in range(20):
        reading = baseline.read(diff, files)
        baseline.new_files(reading)
    per_patch = (time.perf_counter() - start) / 20 * 1000
    print(f"git's reading and the probe files: {per_patch:.1f} ms per patch")
    assert reading.refusal is None
    assert per_patch < 250


# =============================================================================================
# The wiring: Judge.judge reads each patch with git before anything reaches the sandbox
# =============================================================================================


def test_judge_refuses_what_git_reads_and_lets_genuine_patches_reach_the_tests(
        tmp_path: Path) -> None:
    from selfcode.gate.judge import Judge, discover_benchmarks
    from selfcode.resources import harness_dir
    from selfcode.sandbox.local import LocalSandbox
    from selfcode.sandbox.trees import Trees

    store = GitStore(make_repo(tmp_path / "calc", dict(CALC_FILES)))
    tests_hunk = ("@@ -1,4 +1,4 @@\n-from calc import mean, total\n+from calc import mean, total"
                  "  # looks harmless\n \n \n def test_total():\n")
    hostile = section("src/calc/__init__.py", "rename from tests/test_calc.py\n"
                      "rename to tests/test_calc.py\n" + tests_hunk)
    breaks_a_test = section("src/calc/__init__.py", CALC_HUNK.replace("sum(xs)", "sum(xs) + 1"))
    with LocalSandbox(harness_dir()) as box:
        config = GateConfig()
        judge = Judge(Trees(box, timeout=60), config,
                      discover_benchmarks(store.list_files(), config, box.python))
        judge.set_baseline(store.tracked_tar())
        refused = judge.judge(hostile)
        reached = judge.judge(breaks_a_test)
    assert refused.status == "rejected"
    assert refused.reasons == ["protected path touched: tests/test_calc.py"]
    assert "apply" not in refused.timings and refused.timings["read"] < 1.0
    assert reached.status == "rejected" and reached.tests is not None, reached.reasons
    assert any(r.startswith("newly failing") for r in reached.reasons), reached.reasons
