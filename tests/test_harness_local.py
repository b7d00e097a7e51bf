"""The frozen harness, run for real through the local sandbox."""

import json
import os

import pytest

from selfcode.resources import harness_dir
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.trees import Trees

from repos import LIB, SMALL_REPO, TESTS, tar_of


@pytest.fixture
def trees():
    with LocalSandbox(harness_dir()) as sandbox:
        t = Trees(sandbox, timeout=60)
        t.load_baseline(tar_of(SMALL_REPO))
        yield t


def test_outcomes_by_node_id(trees):
    run = trees.run_tests("a")
    assert run.exit_code == 0
    assert run.collected is not None and len(run.collected) == 6
    assert run.outcomes == {
        "tests/test_lib.py::test_total": "passed",
        "tests/test_lib.py::test_range[0]": "passed",
        "tests/test_lib.py::test_range[1]": "passed",
        "tests/test_lib.py::test_range[5]": "passed",
        "tests/test_lib.py::test_skipped": "skipped",
        "tests/test_lib.py::TestGroup::test_empty": "passed",
    }
    assert run.junit_cases == 6


def test_failures_and_candidate_isolation(trees):
    broken = LIB.replace("result = 0", "result = 1")
    diff = (
        "--- a/lib.py\n+++ b/lib.py\n@@ -1,5 +1,5 @@\n def total(xs):\n"
        "-    result = 0\n+    result = 1\n     for x in xs:\n         result = result + x\n"
        "     return result\n"
    )
    applied = trees.apply(diff)
    assert applied.ok, applied.message
    cand = trees.run_tests("b")
    assert cand.exit_code == 1
    assert cand.outcomes is not None
    assert cand.outcomes["tests/test_lib.py::test_total"] == "failed"
    assert cand.outcomes["tests/test_lib.py::test_skipped"] == "skipped"
    # The baseline tree is untouched by the candidate.
    assert trees.run_tests("a").outcomes["tests/test_lib.py::test_total"] == "passed"
    assert broken != LIB


def test_patch_that_does_not_apply_is_reported(trees):
    result = trees.apply("--- a/lib.py\n+++ b/lib.py\n@@ -1,1 +1,1 @@\n-nothing here\n+x\n")
    assert not result.ok
    assert "lib.py" in result.message


def test_early_exit_leaves_no_report(trees):
    diff = "--- /dev/null\n+++ b/lib2.py\n@@ -0,0 +1,1 @@\n+x = 1\n"
    assert trees.apply(diff).ok
    # A tree whose tests kill pytest before it reports.
    tar = tar_of({"lib.py": LIB, "tests/test_lib.py": "import os\nos._exit(0)\n"})
    trees.load_baseline(tar)
    run = trees.run_tests("a")
    assert run.outcomes is None


def test_benchmarks_are_paired_fresh_processes(trees):
    bench = "import lib\nprint(lib.total(range(20000)))\n"
    trees.load_baseline(tar_of({**SMALL_REPO, "benchmarks/bench_total.py": bench}))
    assert trees.apply("--- a/lib.py\n+++ b/lib.py\n@@ -1,5 +1,2 @@\n def total(xs):\n"
                       "-    result = 0\n-    for x in xs:\n-        result = result + x\n"
                       "-    return result\n+    return sum(xs)\n").ok
    spec = {"total": [trees.sandbox.python, "benchmarks/bench_total.py"]}
    run = trees.run_benchmarks(spec, pairs=4, seed=1)
    (result,) = run.benchmarks
    assert result.failure is None
    assert len(result.a) == len(result.b) == 4
    assert all(x > 0 for x in result.a + result.b)
    assert result.output["a"].sha256 == result.output["b"].sha256
    assert result.output["a"].head.strip() == str(sum(range(20000)))


def test_timeout_kills_the_process_group(trees):
    tar = tar_of({"tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(60)\n"})
    trees.load_baseline(tar)
    trees.timeout = 2
    run = trees.run_tests("a")
    assert run.timed_out
    assert run.duration < 30


def test_report_is_json_on_last_line(trees):
    result = trees.sandbox.exec(
        [trees.sandbox.python, trees.sandbox.harness, "tests", *trees.harness_options(),
         "--tree", "a"], timeout=60)
    doc = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert doc["kind"] == "tests"
    assert TESTS  # the fixture the report describes


def test_leftovers_of_dead_runs_are_swept(tmp_path):
    import subprocess
    import sys

    from selfcode.sandbox.local import PREFIX, sweep_dead_sandboxes

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"{PREFIX}dead").mkdir()
    (tmp_path / f"{PREFIX}dead" / "owner").write_text(dead)
    (tmp_path / f"{PREFIX}live").mkdir()
    (tmp_path / f"{PREFIX}live" / "owner").write_text(str(os.getpid()))
    (tmp_path / f"{PREFIX}foreign").mkdir()  # no owner file: not ours to judge
    assert sweep_dead_sandboxes(tmp_path) == [tmp_path / f"{PREFIX}dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{PREFIX}foreign", f"{PREFIX}live"]
