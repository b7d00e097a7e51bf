"""Real git repositories in temp dirs for tests."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import tarfile
from pathlib import Path

GIT_ENV_ARGS = ["-c", "user.name=t", "-c", "user.email=t@example.com",
                "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null"]


def git(repo: Path, *args: str, input_text: str | None = None) -> str:
    out = subprocess.run(["git", *GIT_ENV_ARGS, *args], cwd=repo, check=True,
                         capture_output=True, text=True, input=input_text)
    return out.stdout


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def events(repo: Path) -> list[tuple[str, int | None, str]]:
    """The history's events of `repo` as (kind, candidate, message), read-only (a run may be
    writing them: an unreadable moment reads as none yet)."""
    db = repo / ".git" / "selfcode" / "history.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return list(con.execute("SELECT kind, candidate_n, message FROM events ORDER BY id"))
    except sqlite3.Error:
        return []


def tar_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unified_diff(repo: Path, changes: dict[str, str | None]) -> str:
    """Write `changes` into the repo's working tree, take `git diff`, then restore the tree."""
    for path, text in changes.items():
        target = repo / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached")
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    return diff


LIB = '''def total(xs):
    result = 0
    for x in xs:
        result = result + x
    return result
'''

TESTS = '''import pytest
from lib import total


def test_total():
    assert total([1, 2, 3]) == 6


@pytest.mark.parametrize("n", [0, 1, 5])
def test_range(n):
    assert total(range(n)) == n * (n - 1) // 2


@pytest.mark.skip(reason="never runs")
def test_skipped():
    pass


class TestGroup:
    def test_empty(self):
        assert total([]) == 0
'''

SMALL_REPO = {"lib.py": LIB, "tests/test_lib.py": TESTS}


# A test module that fails, then rewrites pytest's JUnit file as all-passed at exit and leaves
# with status 0: the judge must call it tampering (local and Docker backends alike).
JUNIT_REWRITTEN_AT_EXIT = '''import atexit, os, sys

def forge():
    path = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--junitxml="))
    with open(path, "w") as fh:
        fh.write('<testsuites><testsuite><testcase classname="tests.test_x" name="test_ok"/>'
                 '</testsuite></testsuites>')
    os._exit(0)

atexit.register(forge)

def test_ok():
    assert False
'''


def own_dependencies_pyproject(name: str, extra: str = "") -> str:
    """A pyproject.toml for target `name` declaring exactly what selfcode's own declares, so
    the session's sandbox image (built from those) serves it and no test downloads anything;
    `extra` (more TOML tables) is appended."""
    import json
    import tomllib

    own = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text("utf-8"))
    project = own["project"]
    return (f'[project]\nname = "{name}"\nversion = "0.1.0"\n'
            f"dependencies = {json.dumps(project['dependencies'])}\n\n"
            "[project.optional-dependencies]\n"
            f"test = {json.dumps(project['optional-dependencies']['test'])}\n\n{extra}")
