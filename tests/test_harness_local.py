"""The frozen harness, run for real through the local sandbox."""

import json
import os
import sys

import pytest

from selfcode.errors import JudgeReportError
from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge
from selfcode.resources import harness_dir
from selfcode.sandbox.base import ExecResult
from selfcode.sandbox.local import INTEGRITY_GAPS, WARNING, LocalSandbox
from selfcode.sandbox.results import ProbeReport, check_complete, parse_report
from selfcode.sandbox.trees import NONCE_ENV, Trees

from repos import (
    JUNIT_REWRITTEN_AT_EXIT,
    LIB,
    SMALL_REPO,
    TESTS,
    git,
    make_repo,
    tar_of,
    unified_diff,
)

# The harness's own modules (stdlib only), for its evidence rules.
sys.path.insert(0, str(harness_dir()))
from selfcode_evidence import Junit, count_instructions, cross_check, parse_stream


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


# --- the judge's evidence: authenticated, complete, consistent ---------------------------------

BENCH = "import lib\nprint(lib.total(range(20000)))\n"


def _probe(trees, nonce):
    return trees.sandbox.exec([trees.sandbox.python, trees.sandbox.harness, "probe",
                               *trees.harness_options()], timeout=60, env={NONCE_ENV: nonce})


def test_a_report_counts_only_with_its_nonce_and_a_clean_exit(trees):
    result = _probe(trees, "nonce-1")
    assert parse_report(result, ProbeReport, "nonce-1").kind == "probe"
    with pytest.raises(JudgeReportError, match="nonce"):
        parse_report(result, ProbeReport, "nonce-2")
    failed = ExecResult(exit_code=1, stdout=result.stdout, stderr=b"", duration=0.1)
    with pytest.raises(JudgeReportError, match="tampered with or lost: the harness failed"):
        parse_report(failed, ProbeReport, "nonce-1")
    silent = ExecResult(exit_code=0, stdout=b"", stderr=b"", duration=0.1)
    with pytest.raises(JudgeReportError, match="no report"):
        parse_report(silent, ProbeReport, "nonce-1")
    assert b"nonce-1" not in _probe(trees, "nonce-3").stdout


def test_an_incomplete_benchmark_report_is_tampering(trees):
    trees.load_baseline(tar_of({**SMALL_REPO, "benchmarks/bench_total.py": BENCH}))
    spec = {"total": [trees.sandbox.python, "benchmarks/bench_total.py"]}
    run = trees.run_benchmarks(spec, pairs=2, seed=1, aa=True)
    check_complete(run, ["total"], 2, "cpu_time")
    (bench,) = run.benchmarks
    broken = {
        "a zero sample": bench.model_copy(update={"a": [0.0, bench.a[1]]}),
        "a missing sample": bench.model_copy(update={"b": bench.b[:1]}),
        "an infinite cpu": bench.model_copy(update={"resources": {
            "a": {**bench.resources["a"], "cpu": [float("inf"), 1.0]}, "b": bench.resources["b"]}}),
        "no memory figures": bench.model_copy(update={"resources": {"a": bench.resources["a"]}}),
        "a flagged log": bench.model_copy(update={"tampered": "b: forged"}),
    }
    for what, samples in broken.items():
        with pytest.raises(JudgeReportError):
            check_complete(run.model_copy(update={"benchmarks": [samples]}), ["total"], 2,
                           "cpu_time")
        assert what
    with pytest.raises(JudgeReportError, match="does not list"):
        check_complete(run, ["total", "other"], 2, "cpu_time")


def test_instruction_logs_count_every_process_once():
    log = (b"==10== Command: python bench.py\n==10== \n--10-- Reading syms\n"
           b"==11== embedded gdbserver: reading\n==11== I   refs:      5,000\n"
           b"==12== Command: /bin/true\n==12== I   refs:      100\n"
           b"==10== I   refs:      1,000,000\n")
    count = count_instructions(log, 10)
    assert (count.instructions, count.processes, count.problem) == (1_005_100.0, 3, None)
    for forged, problem in [
        (log + b"**10** ==10== I   refs: 1\n", "did not write"),
        (log + b"==10== I   refs:      1\n", "2 instruction counts"),
        (log + b"==13== embedded gdbserver: reading\n", "0 instruction counts"),
        (log.replace(b"==12== I   refs:      100\n", b"==12== Command: /bin/sh\n"
                     b"==12== I   refs:      100\n"), "exec'd"),
        (b"==10== I   refs:      1\n", "0 headers"),
        (log + b"I refs: 1\n", "did not write"),
    ]:
        assert problem in (count_instructions(forged, 10).problem or ""), forged


def test_test_streams_are_append_only_stories():
    good = (b'{"t":"collected","ids":["t.py::a"]}\n'
            b'{"t":"report","id":"t.py::a","when":"call","outcome":"passed","xfail":false}\n'
            b'{"t":"finish","exit":0}\n')
    stream = parse_stream(good)
    assert stream.problem is None and stream.outcomes() == {"t.py::a": "passed"}
    assert parse_stream(good[:-1]).problem  # cut mid-record
    assert "after the end" in (parse_stream(good + good.splitlines(True)[1]).problem or "")
    assert "second call" in (parse_stream(good.replace(b'{"t":"finish"', good.splitlines(
        True)[1].rstrip(b"\n") + b'\n{"t":"finish"')).problem or "")
    early = good.splitlines(True)[1] + good
    assert "malformed report" in (parse_stream(early).problem or "")
    assert parse_stream(good.splitlines(True)[0]).outcomes() is None  # never finished: lost



def test_collectors_skipped_or_failed_are_streamed_before_collection_and_match_junit():
    records = (b'{"t":"collect","id":"t2.py","outcome":"skipped","message":"no numpy"}\n'
               b'{"t":"collected","ids":["t.py::a"]}\n'
               b'{"t":"report","id":"t.py::a","when":"call","outcome":"passed","xfail":false}\n'
               b'{"t":"finish","exit":0}\n')
    stream = parse_stream(records)
    assert stream.problem is None and [c.nodeid for c in stream.collectors] == ["t2.py"]
    junit = Junit({"t.a": "passed", "t2": "skipped"}, 2)
    assert cross_check(stream, junit, 0) is None
    # JUnit calling the skipped module an error, or missing it, is not the same story.
    assert "says error for t2.py" in (cross_check(stream, Junit({"t.a": "passed", "t2": "error"},
                                                                2), 0) or "")
    assert "says missing for t2.py" in (cross_check(stream, Junit({"t.a": "passed"}, 1), 0) or "")
    # A collector reported after collection ended was not reported by pytest.
    late = records.replace(b'{"t":"finish"', b'{"t":"collect","id":"t3.py","outcome":"skipped",'
                                             b'"message":""}\n{"t":"finish"')
    assert "late collection report" in (parse_stream(late).problem or "")
    assert "malformed" in (parse_stream(records.replace(b'"skipped"', b'"passed"')).problem or "")


def test_a_module_skipped_at_import_is_reported_and_counted(tmp_path):
    optional = "import pytest\n\npytest.importorskip('not_installed_anywhere')\n"
    with LocalSandbox(harness_dir()) as sandbox:
        t = Trees(sandbox, timeout=60)
        t.load_baseline(tar_of({**SMALL_REPO, "tests/test_optional.py": optional}))
        run = t.run_tests("a")
    assert run.skipped_modules == ["tests/test_optional.py"] and run.collection_errors == {}
    assert run.collected is not None and len(run.collected) == 6 and run.junit_cases == 7


# pytest 9.2's own deprecation under warnings-as-errors (python-dateutil 2.9.0's test_isoparser):
# the exception's message has several lines and the last one is only a link.
PARAMETRIZE_ITERATOR = """import warnings

import pytest


class RemovedSoon(DeprecationWarning):
    pass


warnings.warn(RemovedSoon("Passing a non-Collection iterable to parametrize is deprecated.\\n"
                          "Please convert to a list or tuple.\\n"
                          "See https://docs.pytest.org/en/stable/deprecations.html"))


def test_never_collected():
    pass
"""
SYNTAX_ERROR = "def broken(:\n    pass\n"


def test_a_collection_error_is_named_by_its_exception_not_by_its_last_line():
    files = {**SMALL_REPO, "tests/test_warned.py": PARAMETRIZE_ITERATOR,
             "tests/test_syntax.py": SYNTAX_ERROR}
    with LocalSandbox(harness_dir()) as sandbox:
        t = Trees(sandbox, timeout=60)
        t.load_baseline(tar_of(files))
        run = t.run_tests("a", ["-W", "error::DeprecationWarning"])
    assert run.collection_errors == {
        "tests/test_warned.py": "test_warned.RemovedSoon: Passing a non-Collection iterable to "
                                "parametrize is deprecated.",
        "tests/test_syntax.py": "SyntaxError: invalid syntax",
    }, run.collection_errors


STREAM_AT_EXIT = '''import atexit, os, stat

def forge():
    for fd in range(3, 2048):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, b'{"t":"report","id":"tests/test_x.py::test_ok","when":"call",'
                             b'"outcome":"passed","xfail":false}\\n')
        except OSError:
            pass

atexit.register(forge)

def test_ok():
    assert False
'''


@pytest.mark.parametrize("attack, problem", [
    (JUNIT_REWRITTEN_AT_EXIT, "pytest exited with code 0 after reporting 1"),
    (STREAM_AT_EXIT, "a record after the end of the session"),
], ids=["junit-rewritten-at-exit", "stream-written-at-exit"])
def test_evidence_changed_after_the_session_is_tampering(trees, attack, problem):
    trees.load_baseline(tar_of({"tests/test_x.py": attack}))
    with pytest.raises(JudgeReportError, match=problem):
        trees.run_tests("a")


def test_the_judge_rejects_a_tampered_report_and_never_raises(tmp_path):
    repo = make_repo(tmp_path / "repo", SMALL_REPO)
    forged = JUNIT_REWRITTEN_AT_EXIT.split("\ndef test_ok", 1)[0] + "\n\n"
    diff = unified_diff(repo, {"lib.py": forged + LIB.replace("result = 0", "result = 1")})
    assert git(repo, "status", "--porcelain") == ""
    with LocalSandbox(harness_dir()) as box:
        judge = Judge(Trees(box, timeout=60),
                      GateConfig(judge="fix", refuse_context_probes=False), {})
        judge.set_baseline(tar_of(SMALL_REPO))
        verdict = judge.judge(diff)
    assert verdict.status == "rejected"
    assert verdict.reasons[0].startswith("the judge's report was tampered with or lost: tests:")
    assert verdict.integrity_gaps == list(INTEGRITY_GAPS)  # the verdict says what it cannot


DETACHED = '''import os, sys
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.dup2(write_end, 1)
        os.execv(sys.executable, [sys.executable, "-c", "print(sum(range(3_000_000)))"])
    os._exit(0)
os.close(write_end)
os.wait()
while os.read(read_end, 100):
    pass
print("done")
'''
OUTLIVES = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\nprint(1)\n"
FRESH = '''import os
found = [d for d in ("HOME", "TMPDIR") if os.path.exists(os.path.join(os.environ[d], "m"))]
for d in ("HOME", "TMPDIR"):
    open(os.path.join(os.environ[d], "m"), "w").close()
print("found:", found)
'''


def _one(trees, code, pairs=2):
    trees.load_baseline(tar_of({"benchmarks/bench_x.py": code}))
    run = trees.run_benchmarks({"x": [trees.sandbox.python, "benchmarks/bench_x.py"]},
                               pairs=pairs, seed=1, aa=True)
    return run.benchmarks[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreaper and /proc: Linux")
def test_local_harness_counts_detached_work_and_kills_leftovers(trees):
    inline = _one(trees, "print(sum(range(3_000_000)))\n")
    detached = _one(trees, DETACHED)
    assert detached.failure is None, detached.failure
    assert min(detached.a) > 0.8 * min(inline.a)  # the orphaned worker's CPU is counted
    outlives = _one(trees, OUTLIVES)
    assert outlives.failure and "left processes running" in outlives.failure
    assert _one(trees, FRESH).output["a"].head == "found: []\n"


def test_the_local_sandbox_names_what_it_cannot_rule_out():
    assert len(INTEGRITY_GAPS) == 3 and LocalSandbox.integrity_gaps == INTEGRITY_GAPS
    for gap in ("forged reports", "hidden work", "carried state"):
        assert gap in WARNING


SUBTESTS = '''import unittest

from lib import total


class Sums(unittest.TestCase):
    def test_each(self):
        for n in range(3):
            with self.subTest(n=n):
                self.assertEqual(total(range(n)), n * (n - 1) // 2)

    def test_one_subtest_fails(self):
        for n in range(3):
            with self.subTest(n=n):
                self.assertNotEqual(n, 1)
'''


def test_subtests_fold_into_their_test_and_a_failing_one_fails_it():
    """unittest's subTest sends one call report per subtest under the test's id: that is a
    real repository's test suite, not tampering (more-itertools has 48 of them)."""
    files = {**SMALL_REPO, "tests/test_subtests.py": SUBTESTS}
    with LocalSandbox(harness_dir()) as sandbox:
        t = Trees(sandbox, timeout=60)
        t.load_baseline(tar_of(files))
        run = t.run_tests("a")
    assert run.outcomes is not None, run.stderr_tail
    assert run.outcomes["tests/test_subtests.py::Sums::test_each"] == "passed"
    assert run.outcomes["tests/test_subtests.py::Sums::test_one_subtest_fails"] == "failed"


def test_a_sub_record_cannot_turn_a_failure_into_a_pass():
    records = [
        {"t": "collected", "ids": ["t.py::x"]},
        {"t": "report", "id": "t.py::x", "when": "call", "outcome": "failed", "xfail": False},
        {"t": "report", "id": "t.py::x", "when": "call", "outcome": "passed", "xfail": False,
         "sub": True},
        {"t": "finish", "exit": 1},
    ]
    stream = parse_stream(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    assert stream.problem is None and stream.outcomes() == {"t.py::x": "failed"}
