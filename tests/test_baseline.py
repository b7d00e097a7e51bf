"""The baseline is judged as strictly as a candidate, and the two are tested alike (issue 15).

Real git repositories, the real Docker sandbox, real `selfcode` commands. Each case here once
gave a wrong verdict on a real library:
- python-dateutil: a test writing a cache directory in its working directory, warnings made
  errors; the baseline ran read-only and failed, and every candidate "fixed" it;
- a collection error under `filterwarnings = error`: selfcode calibrated and asked the model
  anyway, then rejected every candidate for a JUnit count the baseline had never been held to;
- networkx: modules skipped at import (`pytest.importorskip`) counted in JUnit, not in the
  collected ids, so every candidate, even a comment, was rejected;
- `selfcode eval` ran three baseline test runs and a calibration before refusing a patch that
  was no patch at all, and its `timings` left out most of what the user waited for.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.sandbox.docker import DockerSandbox
from selfcode.sandbox.trees import Trees

from repos import git, make_repo, own_dependencies_pyproject, tar_of, unified_diff

pytest_plugins = ["docker_util"]

runner = CliRunner()

LIB = '''"""A small library."""


def total(xs):
    """The sum of xs."""
    result = 0
    for x in xs:
        result = result + x
    return result
'''
DOCSTRING_ONLY = {"src/lib.py": LIB.replace('"""The sum of xs."""', '"""The sum of xs, added '
                                            'one by one."""')}
COMMENT_ONLY = {"src/lib.py": LIB.replace("    result = 0\n", "    result = 0  # the sum\n")}
BENCH = "from lib import total\n\nprint(total(range(20_000)))\n"

# python-dateutil in miniature: Hypothesis keeps its example database in `.hypothesis/` of the
# working directory, and a hand-written cache does the same; each warns when it cannot, and
# warnings are errors.
CACHE_TESTS = '''import os
import warnings

from hypothesis import given, strategies as st

from lib import total


def _cache_dir():
    try:
        os.makedirs(".cache/lib", exist_ok=True)
    except OSError as exc:
        warnings.warn(f"cache unusable: {exc}", UserWarning)


@given(st.lists(st.integers(), max_size=5))
def test_total_is_sum(xs):
    assert total(xs) == sum(xs)


def test_total_with_a_cache():
    _cache_dir()
    assert total([1, 2]) == 3
'''
WARNINGS_ARE_ERRORS = ('[tool.pytest.ini_options]\npythonpath = ["src"]\ntestpaths = ["tests"]\n'
                       'filterwarnings = ["error"]\n')


def _target(root: Path, files: dict[str, str], pytest_options: str = WARNINGS_ARE_ERRORS) -> Path:
    return make_repo(root, {"pyproject.toml": own_dependencies_pyproject("lib", pytest_options),
                            "src/lib.py": LIB, **files})


def _eval(repo: Path, diff: str, *extra: str) -> tuple[int, dict, str, float]:
    t0 = time.perf_counter()
    result = runner.invoke(app, ["eval", str(repo), "--patch", "-", "--json", *extra],
                           input=diff)
    wall = time.perf_counter() - t0
    verdict = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, verdict, result.stderr, wall


@pytest.fixture
def docker_eval(monkeypatch: pytest.MonkeyPatch, sandbox_image: str, base_image: str,
                tmp_path: Path) -> None:
    """`selfcode eval --sandbox docker` with the session's image (built for the same
    declarations as the targets here)."""
    monkeypatch.setenv("SELFCODE_BASE_IMAGE", base_image)
    monkeypatch.setenv("SELFCODE_SANDBOX", "docker")
    monkeypatch.setenv("SELFCODE_HOME", str(tmp_path / "selfcode-home"))


def _assert_timings_add_up(verdict: dict, wall: float, *steps: str) -> None:
    timings = verdict["timings"]
    assert set(timings) >= {"precheck", "sandbox_start", "baseline_load", "baseline_tests",
                            "read", "tests", "sandbox_stop", "total", *steps}, timings
    # Everything the user waited for, but parsing the command line and printing the verdict.
    assert wall - 1.0 < timings["total"] <= wall, (sorted(timings.items()), wall)


# --- 1: both sides laid out, mounted and run alike --------------------------------------------

FINGERPRINT = '''import json, os, re, resource, sys


def _norm(text):
    return re.sub(r"/runs/[0-9a-f]{16}/", "/runs/<run>/", text)


def _listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__


def test_fingerprint():
    cwd = os.getcwd()
    tree = []
    for root, dirs, files in os.walk(cwd):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            tree.append([os.path.relpath(path, cwd), oct(st.st_mode), st.st_uid])
    home, tmp = os.environ["HOME"], os.environ.get("TMPDIR", "/tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.makedirs(".hypothesis/examples")  # what python-dateutil's tests could not do
    facts = {
        "cwd": _norm(cwd), "cwd_length": len(cwd), "cwd_writable": os.access(cwd, os.W_OK),
        "cwd_owner": os.stat(cwd).st_uid, "tree": tree, "umask": umask,
        "env": {k: _norm(v) for k, v in sorted(os.environ.items())},
        "home": [home, _listing(home), os.access(home, os.W_OK)],
        "tmp": [tmp, _listing(tmp), os.access(tmp, os.W_OK)], "shm": _listing("/dev/shm"),
        "ids": [os.getuid(), os.getgid(), os.getgroups()],
        "argv": [_norm(a) for a in sys.argv], "path": [_norm(p) for p in sys.path],
        "limits": [resource.getrlimit(getattr(resource, n))
                   for n in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_STACK", "RLIMIT_AS")],
        "fds": _listing("/proc/self/fd"),
    }
    print("FINGERPRINT " + json.dumps(facts, sort_keys=True))
'''


def _fingerprint(trees: Trees, side: str) -> dict:
    run = trees.run_tests(side, ["-s"])
    assert run.outcomes == {"tests/test_env.py::test_fingerprint": "passed"}, run.output_tail
    (line,) = re.findall(r"FINGERPRINT (\{.*\})", run.output_tail)
    return json.loads(line)


@pytest.mark.docker
def test_baseline_and_candidate_tests_run_alike(sandbox: DockerSandbox, tmp_path: Path) -> None:
    """The same path (length), owner, writability, environment, working directory, HOME and
    TMPDIR state on both sides, whether the candidate is patched or an identical copy."""
    files = {"src/lib.py": LIB, "tests/test_env.py": FINGERPRINT}
    repo = make_repo(tmp_path / "r", files)
    trees = Trees(sandbox, timeout=60)
    trees.load_baseline(tar_of(files))
    baseline = _fingerprint(trees, "a")
    trees.reset_candidate()
    assert _fingerprint(trees, "b") == baseline
    assert trees.apply(unified_diff(repo, DOCSTRING_ONLY)).ok
    assert _fingerprint(trees, "b") == baseline
    assert baseline["cwd_writable"] and baseline["cwd_owner"] == 1000
    assert baseline["home"][1:] == [[], True] and baseline["tmp"][1:] == [[], True]
    assert "/runs/<run>/tree" in baseline["cwd"]


# --- the dateutil case: a cache directory under warnings-as-errors --------------------------

@pytest.mark.docker
def test_a_cache_in_the_working_directory_passes_at_baseline_and_a_docstring_fixes_nothing(
        docker_eval: None, tmp_path: Path) -> None:
    repo = _target(tmp_path / "dateutil-like", {"tests/test_lib.py": CACHE_TESTS})
    code, verdict, stderr, wall = _eval(repo, unified_diff(repo, DOCSTRING_ONLY), "--judge", "fix")
    assert code == 1, (verdict, stderr)
    assert verdict["tests"]["baseline"] == {"passed": 2, "failed": 0, "skipped": 0}, verdict
    assert verdict["tests"]["fixed"] == [] and verdict["tests"]["quarantined"] == []
    assert verdict["reasons"] == ["no failing test was made to pass"]
    _assert_timings_add_up(verdict, wall, "image")


# --- 2: a baseline that cannot be judged against stops before the model is asked ------------

COLLECTION_ERROR = {
    "src/old.py": "import warnings\n\nwarnings.warn('old is deprecated', DeprecationWarning)\n",
    "tests/test_old.py": "import old  # noqa: F401\n\n\ndef test_old():\n    pass\n",
    "tests/test_lib.py": "from lib import total\n\n\ndef test_total():\n    assert total([1]) == 1\n",
}


def _assert_names_cause_and_fix(stderr: str) -> None:
    line = " ".join(stderr.split())
    assert "pytest could not collect: tests/test_old.py (DeprecationWarning: old is deprecated)" \
        in line, stderr
    assert "[tool.selfcode.gate] pytest_args" in line and "Traceback" not in stderr
    assert line.count("error: ") == 1


@pytest.mark.docker
def test_eval_stops_on_a_baseline_that_cannot_collect(docker_eval: None, tmp_path: Path) -> None:
    repo = _target(tmp_path / "broken", {**COLLECTION_ERROR, "benchmarks/bench_total.py": BENCH})
    code, verdict, stderr, _ = _eval(repo, unified_diff(repo, COMMENT_ONLY))
    assert (code, verdict) == (2, {}), stderr
    _assert_names_cause_and_fix(stderr)
    assert "calibrating" not in stderr


def test_improve_stops_on_such_a_baseline_before_any_model_request(openai_server,
                                                                   tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "broken", {
        "pyproject.toml": "[project]\nname = 'lib'\nversion = '0'\n\n" + WARNINGS_ARE_ERRORS,
        "src/lib.py": LIB, "benchmarks/bench_total.py": BENCH, **COLLECTION_ERROR})
    openai_server.script("no edit here")
    result = runner.invoke(app, ["improve", str(repo), "--base-url", openai_server.base_url,
                                 "--model", "gpt-4o-mini", "--iterations", "1",
                                 "--sandbox", "local"])
    assert result.exit_code == 2, result.output
    _assert_names_cause_and_fix(result.stderr)
    assert openai_server.requests == []
    assert "calibrating" not in result.stderr


# --- 3: modules skipped at import count alike on both sides ---------------------------------

OPTIONAL = ("import pytest\n\nnumpy = pytest.importorskip('numpy_is_not_installed_here')\n\n\n"
            "def test_with_numpy():\n    assert numpy.zeros(1)[0] == 0\n")


@pytest.mark.docker
def test_modules_skipped_at_import_do_not_reject_a_neutral_patch(docker_eval: None,
                                                                 tmp_path: Path) -> None:
    repo = _target(tmp_path / "networkx-like", {
        "tests/test_lib.py": "from lib import total\n\n\ndef test_total():\n"
                             "    assert total([1, 2]) == 3\n",
        "tests/test_optional.py": OPTIONAL, "tests/sub/test_optional_too.py": OPTIONAL,
        "benchmarks/bench_total.py": BENCH}, pytest_options='[tool.pytest.ini_options]\n'
        'pythonpath = ["src"]\ntestpaths = ["tests"]\n')
    code, verdict, stderr, wall = _eval(repo, unified_diff(repo, COMMENT_ONLY))
    assert code == 1, (verdict, stderr)
    assert not any("JUnit" in r for r in verdict["reasons"]), verdict["reasons"]
    assert verdict["tests"]["candidate"] == verdict["tests"]["baseline"] == {
        "passed": 1, "failed": 0, "skipped": 0}
    (bench,) = verdict["benchmarks"]
    assert bench["verdict"] == "same", verdict
    _assert_timings_add_up(verdict, wall, "image", "calibration", "benchmarks")


# --- 7: eval reads the patch before anything runs -------------------------------------------

@pytest.mark.parametrize(("patch", "code", "reason"), [
    ("", 2, "not a unified diff"),
    ("this is not a patch at all\n", 2, "not a unified diff"),
    ("--- a/src/lib.py\n+++ b/src/lib.py\n@@ -1 +1 @@\n-no such line\n+x\n", 2,
     "does not apply"),
    ("--- a/tests/test_lib.py\n+++ b/tests/test_lib.py\n@@ -1 +1 @@\n-from lib import total\n"
     "+from lib import total  # cheat\n", 1, "protected path touched: tests/test_lib.py"),
])
@pytest.mark.parametrize("backend", ["docker", "local"])
def test_eval_refuses_a_bad_patch_before_any_sandbox_or_baseline_run(
        patch: str, code: int, reason: str, backend: str, tmp_path: Path) -> None:
    """No Docker needed: nothing is started for a patch the host refuses."""
    repo = make_repo(tmp_path / "r", {"src/lib.py": LIB, "benchmarks/bench_total.py": BENCH,
                                      "tests/test_lib.py": "from lib import total\n"})
    before = git(repo, "status", "--porcelain")
    exit_code, verdict, stderr, wall = _eval(repo, patch, "--sandbox", backend)
    assert exit_code == code, (verdict, stderr)
    assert wall < 5.0
    assert any(reason in r for r in verdict["reasons"]), verdict["reasons"]
    assert verdict["sandbox"] == backend and verdict["accepted"] is False
    assert set(verdict["timings"]) <= {"read", "total"}
    assert "testing the baseline" not in stderr and "image" not in stderr
    assert git(repo, "status", "--porcelain") == before


# --- 8: the verdict's timings are the wall time -----------------------------------------------

def test_eval_timings_cover_everything_the_user_waited_for(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {
        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['src']\n",
        "src/lib.py": LIB, "benchmarks/bench_total.py": BENCH,
        "tests/test_lib.py": "from lib import total\n\n\ndef test_total():\n"
                             "    assert total([1, 2]) == 3\n"})
    code, verdict, stderr, wall = _eval(repo, unified_diff(repo, COMMENT_ONLY),
                                        "--sandbox", "local")
    assert code == 1, (verdict, stderr)
    _assert_timings_add_up(verdict, wall, "calibration", "benchmarks")
