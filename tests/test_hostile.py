"""Hostile patches against a small repository: each is rejected for the right reason.

The table runs in the Docker sandbox (the judge that matters) and in the local one. One warm
sandbox and one calibrated judge per backend serve every case, as in a real run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.git.store import GitStore
from selfcode.resources import harness_dir
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.trees import Trees

from repos import git, make_repo, unified_diff

pytest_plugins = ["docker_util"]

CORE = '''def total(xs):
    result = 0
    for x in xs:
        result = result + x
    return result


def mean(xs):
    xs = list(xs)
    return total(xs) / len(xs)
'''

TESTS = '''from calc import mean, total


def test_total():
    assert total([1, 2, 3]) == 6


def test_empty():
    assert total([]) == 0


def test_mean():
    assert mean([1, 2, 3, 6]) == 3
'''

BENCH = '''from calc import total

print(total(range(1_000_000)))
'''

FILES = {"src/calc/__init__.py": CORE, "tests/test_calc.py": TESTS,
         "benchmarks/bench_total.py": BENCH, "pyproject.toml": '[project]\nname = "calc"\nversion = "0"\n'}
PKG = "src/calc/__init__.py"


def core_with(old: str, new: str) -> dict[str, str | None]:
    assert old in CORE
    return {PKG: CORE.replace(old, new)}


LOOP = "    result = 0\n    for x in xs:\n        result = result + x\n    return result\n"

# (case, changes, reason expected in the verdict, accepted?)
CASES: list[tuple[str, dict[str, str | None], str]] = [
    ("edits a test's expectation",
     {"tests/test_calc.py": TESTS.replace("== 6", "== 7").replace("total([1, 2, 3])", "7")},
     "protected path touched: tests/test_calc.py"),
    ("adds a root conftest.py that rewrites reports to passed",
     {"conftest.py": "def pytest_runtest_logreport(report):\n    report.outcome = 'passed'\n"},
     "protected path touched: conftest.py"),
    ("adds pytest.ini with addopts -k",
     {"pytest.ini": "[pytest]\naddopts = -k 'not total'\n"},
     "protected path touched: pytest.ini"),
    ("adds sitecustomize.py", {"src/sitecustomize.py": "import os\n"},
     "protected path touched: src/sitecustomize.py"),
    ("edits the benchmark to do less work",
     {"benchmarks/bench_total.py": BENCH.replace("1_000_000", "2_000")},
     "protected path touched: benchmarks/bench_total.py"),
    ("detects the benchmark and takes a shortcut",
     core_with("    result = 0\n",
               "    import sys\n    if sys.argv[0].endswith('bench_total.py'):\n"
               "        return 499999500000\n    result = 0\n"),
     "the patch inspects how it is run (sys.argv"),
    ("skips the whole suite on import",
     core_with("def total", "import pytest\npytest.skip('no', allow_module_level=True)\n\n"
                            "def total"),
     "the patch inspects how it is run (pytest)"),
    ("exits pytest early with code 0 after printing fake passes",
     core_with("def total", "import os\nprint('3 passed in 0.01s')\nos._exit(0)\n\n\ndef total"),
     "the test run left no usable report (pytest exit code 0)"),
    ("patches the clocks", core_with(
        "def total", "import time\ntime.process_time = lambda: 0.0\n"
                     "time.perf_counter = lambda: 0.0\n\n\ndef total"),
     "did not fall by 1 %"),
    ("slows the baseline down by editing it", core_with(
        "def total", "import glob\nfor _p in glob.glob('/in/*/src/calc/__init__.py'):\n"
                     "    try:\n        with open(_p, 'a') as _f:\n"
                     "            _f.write('\\nfor _ in range(10**7):\\n    pass\\n')\n"
                     "    except OSError:\n        pass\n\n\ndef total"),
     "instructions"),  # had it worked, the candidate would look far faster
    ("breaks a test", core_with("    return total(xs) / len(xs)", "    return total(xs) // 2"),
     "newly failing: tests/test_calc.py::test_mean"),
    ("is a behaviour-preserving no-op", core_with(LOOP, LOOP.replace("result", "acc")),
     "did not fall by 1 %"),
    ("is 30 % slower", core_with("        result = result + x\n",
                                 "        result = result + x\n        result = result + 0\n"),
     "the baseline's instructions"),
]

GENUINE = core_with(LOOP, "    return sum(xs)\n")


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("hostile") / "repo", FILES)


@pytest.fixture(scope="module")
def diffs(fixture_repo: Path) -> dict[str, str]:
    out = {case: unified_diff(fixture_repo, changes) for case, changes, _ in CASES}
    out["genuine"] = unified_diff(fixture_repo, GENUINE)
    assert git(fixture_repo, "status", "--porcelain") == ""
    return out


def _judge(sandbox: Sandbox, repo: Path) -> Judge:
    store = GitStore(repo)
    config = GateConfig()
    judge = Judge(Trees(sandbox, timeout=60), config,
                  discover_benchmarks(store.list_files(), config, sandbox.python))
    judge.set_baseline(store.tracked_tar(), runs=2)
    judge.calibrate()
    return judge


@pytest.fixture(scope="module", params=["docker", "local"])
def judge(request: pytest.FixtureRequest, fixture_repo: Path) -> Iterator[Judge]:
    if request.param == "local":
        with LocalSandbox(harness_dir()) as box:
            yield _judge(box, fixture_repo)
        return
    from selfcode.sandbox.docker import DockerSandbox

    from docker_util import HARNESS_DIR, TEST_CONFIG

    image = request.getfixturevalue("sandbox_image")
    client = request.getfixturevalue("docker_client")
    config = TEST_CONFIG.model_copy(update={"timeout": 60, "memory": "512m"})
    with DockerSandbox.start(config, image, f"hostile-{os.getpid()}", HARNESS_DIR,
                             client=client) as box:
        yield _judge(box, fixture_repo)


@pytest.mark.parametrize("case, reason", [(c, r) for c, _, r in CASES], ids=[c for c, _, _ in CASES])
def test_hostile_patch_is_rejected_for_the_right_reason(judge, diffs, case, reason):
    verdict = judge.judge(diffs[case])
    assert not verdict.accepted
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_genuine_speedup_is_accepted(judge, diffs):
    verdict = judge.judge(diffs["genuine"])
    assert verdict.accepted, verdict.reasons
    (bench,) = verdict.benchmarks
    assert bench.verdict == "faster" and bench.ratio is not None and bench.ratio < 0.8


def test_the_deeper_layer_holds_without_the_context_check(judge, diffs):
    """With the static check off, the suite-skipping patch still fails on the test report."""
    judge.config = judge.config.model_copy(update={"refuse_context_probes": False})
    try:
        verdict = judge.judge(diffs["skips the whole suite on import"])
    finally:
        judge.config = judge.config.model_copy(update={"refuse_context_probes": True})
    assert not verdict.accepted
    # The cascade's import of the changed module (gate/cascade.py) is the first deeper layer
    # to meet a skip at import; the test report's checks are behind it.
    assert any(r.startswith(("the changed module", "newly skipped", "test lost",
                             "the test run left no usable report", "pytest exited"))
               for r in verdict.reasons), verdict.reasons
