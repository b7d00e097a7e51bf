"""Tests for selfcode.search.dedupe: a candidate's tree, normalised by AST and hashed; `Seen`."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping

import pytest

from selfcode.edits.render import render_diff
from selfcode.errors import EditError, PolicyError
from selfcode.search.dedupe import (
    Seen,
    baseline_fingerprint,
    fingerprint,
    touched_paths,
    tree_fingerprint,
)

PARENT = "a" * 40

BASE = '''"""The module."""


def area(width, height):
    """Width times height."""
    total = width * height  # the product
    return total


NAMES = ["a", "b"]
'''


def _fp(before: Mapping[str, str | None], after: Mapping[str, str | None],
        parent: str = PARENT) -> str:
    """The fingerprint of the diff selfcode would render from `before` to `after`."""
    return fingerprint(parent, before, render_diff(before, after))


def _base_fp(new: str) -> str:
    return _fp({"geo.py": BASE}, {"geo.py": new})


# =============================================================================================
# Equal to the parent: nothing real changed
# =============================================================================================

SAME_AS_BASELINE = [
    ("a comment changed", BASE.replace("# the product", "# width × height")),
    ("a comment added", BASE.replace("    return total", "    # done\n    return total")),
    ("a comment removed", BASE.replace("  # the product", "")),
    ("blank lines", BASE.replace("\n\n\ndef", "\ndef")),
    ("spaces", BASE.replace("width * height", "width*height")),
    ("parentheses", BASE.replace("width * height", "(width * height)")),
    ("trailing comma", BASE.replace('["a", "b"]', '["a", "b",]')),
    ("quote style", BASE.replace('["a", "b"]', "['a', 'b']")),
    ("a list split over lines", BASE.replace('["a", "b"]', '[\n    "a",\n    "b",\n]')),
    ("CRLF line endings", BASE.replace("\n", "\r\n")),
    ("a type comment", BASE.replace("# the product", "# type: int")),
    ("a noqa", BASE.replace("# the product", "# noqa: E501")),
]


@pytest.mark.parametrize(("why", "new"), SAME_AS_BASELINE, ids=[c[0] for c in SAME_AS_BASELINE])
def test_comment_and_format_changes_fingerprint_as_the_parent(why: str, new: str) -> None:
    assert new != BASE
    assert _base_fp(new) == baseline_fingerprint(PARENT)


# =============================================================================================
# A real change: differs from the parent
# =============================================================================================

REAL_CHANGES = [
    ("an operator", BASE.replace("width * height", "width + height")),
    ("a docstring", BASE.replace("Width times height.", "Width by height.")),
    ("the module docstring", BASE.replace('"""The module."""', '"""A module."""')),
    ("a renamed local", BASE.replace("total", "product")),
    ("a string's content", BASE.replace('"b"', '"c"')),
    ("list to tuple", BASE.replace('["a", "b"]', '("a", "b")')),
    ("a statement added", BASE.replace("    return total", "    total += 0\n    return total")),
    ("a coding cookie", "# -*- coding: latin-1 -*-\n" + BASE),
    ("a coding cookie on line 2", "#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\n"
                                  + BASE),
    ("a syntax error", BASE.replace("def area(width, height):", "def area(width, height)")),
]


@pytest.mark.parametrize(("why", "new"), REAL_CHANGES, ids=[c[0] for c in REAL_CHANGES])
def test_real_changes_differ_from_the_parent(why: str, new: str) -> None:
    assert _base_fp(new) != baseline_fingerprint(PARENT)


def test_real_changes_differ_from_each_other() -> None:
    fps = [_base_fp(new) for _, new in REAL_CHANGES]
    assert len(set(fps)) == len(fps)


def test_reformatting_a_real_change_keeps_its_fingerprint() -> None:
    changed = BASE.replace("width * height", "width + height")
    reformatted = changed.replace("width + height", "(width+height)").replace(
        '["a", "b"]', "['a', 'b',]").replace("  # the product", "  # the sum")
    assert _base_fp(changed) == _base_fp(reformatted)


def test_a_cookie_file_is_taken_by_its_exact_text() -> None:
    with_cookie = "# coding: latin-1\nx = 'é'\n"
    # Only a comment differs, yet each is read with its own codec: never alike.
    assert _fp({"m.py": with_cookie}, {"m.py": with_cookie + "# more\n"}) != \
        baseline_fingerprint(PARENT)
    # Moving from a cookie file to the same code without a cookie changes how it is decoded.
    assert _fp({"m.py": with_cookie}, {"m.py": "x = 'é'\n"}) != baseline_fingerprint(PARENT)


def test_a_file_that_does_not_parse_is_taken_by_its_text() -> None:
    broken = "def f(:\n    pass\n"
    assert _fp({"m.py": broken}, {"m.py": broken.replace("    pass", "  pass")}) != \
        baseline_fingerprint(PARENT)


def test_invalid_escapes_do_not_warn_or_depend_on_the_warning_filters() -> None:
    text = 'PATTERN = "\\d+"\n'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")  # a filter that would turn the warning into an error
        got = _fp({"m.py": text}, {"m.py": text + "# x\n"})
    assert caught == []
    assert got == baseline_fingerprint(PARENT)


# =============================================================================================
# Non-.py files, deletions, creations, several files, the parent
# =============================================================================================

def test_other_files_are_compared_by_their_exact_text() -> None:
    data = "x = 1  # a comment\n"
    assert _fp({"notes.txt": data}, {"notes.txt": data.replace("# a comment", "# other")}) != \
        baseline_fingerprint(PARENT)
    assert _fp({"stub.pyi": data}, {"stub.pyi": data.replace("1  #", "1 #")}) != \
        baseline_fingerprint(PARENT)


def test_deleted_created_and_emptied_files_all_differ() -> None:
    deleted = _fp({"m.py": "x = 1\n"}, {"m.py": None})
    emptied = _fp({"m.py": "x = 1\n"}, {"m.py": ""})
    created = _fp({"n.py": None}, {"n.py": "x = 1\n"})
    created_empty = _fp({"n.py": None}, {"n.py": ""})
    fps = {deleted, emptied, created, created_empty, baseline_fingerprint(PARENT)}
    assert len(fps) == 5


def test_a_comment_only_file_beside_a_real_change_does_not_count() -> None:
    before = {"geo.py": BASE, "util.py": "y = 2\n"}
    real = BASE.replace("width * height", "width + height")
    both = _fp(before, {"geo.py": real, "util.py": "y = 2  # two\n"})
    alone = _fp({"geo.py": BASE}, {"geo.py": real})
    assert both == alone


def test_the_same_diff_on_another_parent_is_another_tree() -> None:
    new = BASE.replace("width * height", "width + height")
    assert _fp({"geo.py": BASE}, {"geo.py": new}, parent="b" * 40) != _base_fp(new)
    assert baseline_fingerprint("b" * 40) != baseline_fingerprint(PARENT)


def test_a_model_written_diff_fingerprints_like_the_rendered_one() -> None:
    model_diff = (
        "--- a/geo.py\n+++ b/geo.py\n@@ ... @@\n"
        "     total = width * height  # the product\n"
        "-    return total\n"
        "+    return total + 0\n"
    )
    files = {"geo.py": BASE}
    new = BASE.replace("    return total\n", "    return total + 0\n")
    assert fingerprint(PARENT, files, model_diff) == _base_fp(new)
    assert fingerprint(PARENT, files, model_diff) == tree_fingerprint(PARENT, files,
                                                                      {"geo.py": new})


def test_touched_paths_are_the_keys_fingerprint_needs() -> None:
    diff = render_diff({"b.py": "x = 1\n", "a/c.txt": None}, {"b.py": None, "a/c.txt": "z\n"})
    assert touched_paths(diff) == ["a/c.txt", "b.py"]
    with pytest.raises(ValueError, match="no current content"):
        fingerprint(PARENT, {"b.py": "x = 1\n"}, diff)


# =============================================================================================
# Diffs that do not apply
# =============================================================================================

def test_a_diff_that_does_not_apply_raises_the_edit_error() -> None:
    stale = render_diff({"geo.py": "x = 1\n"}, {"geo.py": "x = 2\n"})
    with pytest.raises(EditError, match=r"geo\.py"):
        fingerprint(PARENT, {"geo.py": BASE}, stale)


def test_a_diff_outside_the_policy_raises_the_policy_error() -> None:
    with pytest.raises(PolicyError):
        fingerprint(PARENT, {}, "--- a/../x.py\n+++ b/../x.py\n@@ -1 +1 @@\n-a\n+b\n")


def test_text_that_is_no_diff_raises_the_edit_error() -> None:
    with pytest.raises(EditError):
        fingerprint(PARENT, {}, "no diff here")


# =============================================================================================
# Seen
# =============================================================================================

def test_seen_returns_the_first_candidate_of_a_fingerprint() -> None:
    seen = Seen()
    assert seen.check("f1") is None
    seen.add("f1", 3)
    seen.add("f1", 5)
    assert seen.check("f1") == 3
    assert seen.check("f2") is None
    assert seen.claim("f2", 6) is None
    assert seen.claim("f2", 7) == 6
    assert seen.claim("f2", 6) is None  # claiming again for the same candidate is no repeat
    assert len(seen) == 2


def test_seen_lets_exactly_one_of_many_parallel_claims_through() -> None:
    seen = Seen()
    start = threading.Barrier(16)
    results: dict[int, int | None] = {}

    def claim(n: int) -> None:
        start.wait()
        results[n] = seen.claim("same", n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, earlier in results.items() if earlier is None]
    assert len(winners) == 1
    assert all(earlier == winners[0] for n, earlier in results.items() if n != winners[0])


def test_line_numbers_are_dropped_though_a_program_can_see_them() -> None:
    # The documented limit of the normal form: a blank line moves f_lineno, which a program
    # can observe, yet the trees fingerprint alike. This is why a reused verdict never accepts
    # (module docstring); this test pins the decision so that changing it is deliberate.
    base = "import sys\n\nLINE = sys._getframe().f_lineno\n"
    moved = base.replace("\n\n", "\n\n\n")
    seen: list[int] = []
    for text in (base, moved):
        scope: dict[str, object] = {}
        exec(compile(text, "m.py", "exec"), scope)
        seen.append(int(str(scope["LINE"])))
    assert seen == [3, 4]
    assert _fp({"m.py": base}, {"m.py": moved}) == baseline_fingerprint(PARENT)
