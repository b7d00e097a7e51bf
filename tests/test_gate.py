import pytest

from selfcode.gate.benchrules import judge_instructions, judge_time
from selfcode.gate.config import GateConfig
from selfcode.gate.probes import context_probes
from selfcode.gate.protected import protected_violations
from selfcode.gate.testrules import (
    baseline_problem,
    differs_by_side,
    fix_reason,
    flaky_tests,
    judge_tests,
)
from selfcode.sandbox.results import BenchOutput, BenchSamples, TestsRun

IDS = ["t.py::a", "t.py::b", "t.py::c"]


def run(outcomes: dict[str, str], exit_code: int | None = None, **kw) -> TestsRun:
    failing = any(o in ("failed", "error") for o in outcomes.values())
    return TestsRun(
        exit_code=(1 if failing else 0) if exit_code is None else exit_code,
        timed_out=False, duration=1.0, collected=list(outcomes), outcomes=outcomes,
        **{"junit_cases": len(outcomes), **kw})


BASE = run({"t.py::a": "passed", "t.py::b": "passed", "t.py::c": "failed"})


@pytest.mark.parametrize(
    "candidate, reason",
    [
        (run({"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "failed"}), "newly failing: t.py::b"),
        (run({"t.py::a": "passed", "t.py::b": "error", "t.py::c": "failed"}), "newly failing: t.py::b"),
        (run({"t.py::a": "passed", "t.py::c": "failed"}), "test lost: t.py::b"),
        (run({"t.py::a": "passed", "t.py::b": "skipped", "t.py::c": "failed"}), "newly skipped: t.py::b"),
        (run({"t.py::a": "passed", "t.py::b": "xfailed", "t.py::c": "failed"}), "newly skipped: t.py::b"),
        # pytest says success although its report holds a failure: the report is not trusted.
        (run({"t.py::a": "passed", "t.py::b": "passed", "t.py::c": "failed"}, exit_code=0),
         "pytest exited with code 0"),
        (TestsRun(exit_code=0, timed_out=False, duration=0.1), "no usable report"),
        (TestsRun(exit_code=-9, timed_out=True, duration=9.0), "timed out"),
        (TestsRun(exit_code=0, timed_out=False, duration=1, collected=IDS,
                  outcomes=dict.fromkeys(IDS, "passed"), junit_cases=1), "JUnit report has 1 cases"),
    ],
)
def test_candidate_tests_that_reject(candidate, reason):
    _, reasons = judge_tests(BASE, candidate)
    assert any(reason in r for r in reasons), reasons


def test_same_outcomes_pass_and_fixed_tests_are_counted():
    cand = run({"t.py::a": "passed", "t.py::b": "passed", "t.py::c": "passed"})
    verdict, reasons = judge_tests(BASE, cand)
    assert reasons == []
    assert verdict.fixed == ["t.py::c"]
    assert (verdict.baseline.passed, verdict.baseline.failed) == (2, 1)
    assert fix_reason(verdict) is None
    unchanged, _ = judge_tests(BASE, BASE)
    assert fix_reason(unchanged) == "no failing test was made to pass"


def test_quarantined_tests_are_left_out_and_listed():
    cand = run({"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "failed"})
    verdict, reasons = judge_tests(BASE, cand, quarantined=["t.py::b"])
    assert reasons == [] and verdict.quarantined == ["t.py::b"]


def test_flaky_tests_are_those_whose_outcome_varies():
    runs = [run({"t.py::a": "passed", "t.py::b": "passed"}),
            run({"t.py::a": "passed", "t.py::b": "failed"}),
            run({"t.py::a": "passed"})]
    assert flaky_tests(runs) == ["t.py::b"]
    assert flaky_tests([BASE, BASE, BASE]) == []


@pytest.mark.parametrize(
    "path, protected",
    [
        ("tests/test_core.py", True),
        ("pkg/tests/helpers.py", True),
        ("test_top.py", True),
        ("pkg/thing_test.py", True),
        ("conftest.py", True),
        ("pkg/sub/conftest.py", True),
        ("pytest.ini", True),
        ("pyproject.toml", True),
        ("sitecustomize.py", True),
        ("src/pkg/usercustomize.py", True),
        ("evil.pth", True),
        ("benchmarks/bench_x.py", True),
        (".github/workflows/ci.yml", True),
        (".gitignore", True),
        ("src/pkg/core.py", False),
        ("src/pkg/testing_utils.py", False),
        ("README.md", False),
    ],
)
def test_default_protected_paths(path, protected):
    assert bool(protected_violations([path], GateConfig().protected)) is protected


def test_protected_list_cannot_be_emptied():
    with pytest.raises(ValueError, match="at least one pattern"):
        GateConfig(protected=[])


def bench(a, b, out_a="1\n", out_b="1\n", failure=None, metric="cpu_time", name="x"):
    return BenchSamples(
        name=name, metric=metric, a=a, b=b, failure=failure,
        output={"a": BenchOutput(sha256=out_a), "b": BenchOutput(sha256=out_b)})


A = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0, 1.02, 0.98]


@pytest.mark.parametrize(
    "samples, stage, verdict, reason",
    [
        (bench(A, [x * 0.5 for x in A]), "confirm", "faster", None),
        (bench(A, [x * 0.96 for x in A]), "screen", "faster", None),  # half of delta screens
        (bench(A, [x * 0.96 for x in A]), "confirm", "same", None),  # but is not a 5 % gain
        (bench(A, [x * 1.3 for x in A]), "screen", "slower", "benchmark x is slower"),
        (bench(A, A), "confirm", "same", None),
        (bench(A, [x * 0.5 for x in A], out_b="2\n"), "confirm", "output differs",
         "different result"),
        (bench([], [], failure="b: exit code 1"), "screen", "failed",
         "benchmark x failed: b: exit code 1"),
    ],
)
def test_time_verdicts(samples, stage, verdict, reason):
    result, why = judge_time(samples, delta=0.05, alpha=0.01, stage=stage)
    assert result.verdict == verdict
    assert (why is None) if reason is None else (reason in why)


def test_instruction_verdicts():
    verdicts, reasons, decision = judge_instructions([
        bench([1000.0], [900.0], metric="instructions", name="fast"),
        bench([1000.0], [1000.0], metric="instructions", name="flat"),
    ])
    assert [v.verdict for v in verdicts] == ["faster", "same"]
    assert decision.improved and reasons == []
    verdicts, reasons, decision = judge_instructions([
        bench([1000.0], [500.0], metric="instructions", name="fast"),
        bench([1000.0], [1020.0], metric="instructions", name="worse"),
    ])
    assert not decision.improved
    assert reasons == ["benchmark worse runs 1.020x the baseline's instructions"]


def diff_adding(line: str, path: str = "src/pkg/core.py") -> str:
    return f"--- a/{path}\n+++ b/{path}\n@@ -1,1 +1,2 @@\n x = 1\n+{line}\n"


@pytest.mark.parametrize(
    "line, found",
    [
        ("if 'bench_sort.py' in sys.argv[0]: return CACHED", ["sys.argv", "the benchmark's name"]),
        ("if 'pytest' not in sys.modules: return 42", ["sys.modules", "pytest"]),
        ("caller = inspect.stack()[1]", ["the call stack"]),
        ("FAST = os.environ.get('SELFCODE_BENCH')", ["the environment"]),
        ("return sorted(xs)  # faster than our own sort", []),
        ("# sys.argv mentioned only in a comment", []),
    ],
)
def test_context_probes(line, found):
    assert context_probes(diff_adding(line)) == found


def test_context_probes_ignore_removed_lines_but_not_other_files():
    assert context_probes("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-sys.argv\n+pass\n") == []
    # Every file is scanned now: a .pth, a .cfg or a doctest in prose can run code too.
    assert context_probes(diff_adding("uses sys.argv", path="docs/notes.md")) == ["sys.argv"]


# --- the baseline is held to the candidate's rules, and more (issue 15) ----------------------

PASSING = dict.fromkeys(IDS, "passed")


@pytest.mark.parametrize("baseline, goal, problem", [
    (run(PASSING), "speed", None),
    (run({**PASSING, "t.py::c": "failed"}), "speed", None),
    # Modules skipped at import: no test ids, one JUnit case each, on both sides alike.
    (run(PASSING, junit_cases=5, skipped_modules=["t2.py", "sub"]), "speed", None),
    (run(PASSING, junit_cases=5), "speed", "the JUnit report has 5 cases but pytest ran 3 tests"),
    (run(PASSING, junit_cases=3, skipped_modules=["t2.py"]), "speed",
     "but pytest ran 3 tests and 1 modules skipped at import"),
    # A collection error interrupts the session: every collected test "missing", exit code 2.
    (run(dict.fromkeys(IDS, "missing"), exit_code=2, junit_cases=1,
         collection_errors={"t0.py": "DeprecationWarning: old"}), "speed",
     "pytest could not collect: t0.py (DeprecationWarning: old)"),
    (run({**PASSING, "t.py::c": "missing"}, exit_code=1, junit_cases=2), "speed",
     "1 of the 3 collected tests never ran"),
    (run(dict.fromkeys(IDS, "error"), junit_cases=3), "speed", "none of its 3 tests passes"),
    (run(dict.fromkeys(IDS, "failed")), "metric", "none of its 3 tests passes"),
    (run(dict.fromkeys(IDS, "failed")), "fix", None),  # every test failing can be the point
    (run({}, exit_code=5), "fix", "pytest collected no test"),
    (run(PASSING, exit_code=1), "speed", "pytest exited with code 1"),
    (TestsRun(exit_code=4, timed_out=False, duration=0.1), "speed", "no usable report"),
    (TestsRun(exit_code=-9, timed_out=True, duration=9.0), "fix", "timed out"),
])
def test_a_baseline_is_judged_as_strictly_as_a_candidate(baseline, goal, problem):
    found = baseline_problem(baseline, goal)
    assert (found is None) if problem is None else (problem in (found or "")), found
    if problem and "JUnit" in problem:  # the same rule rejects such a candidate
        _, reasons = judge_tests(run(PASSING), baseline)
        assert any(problem in r for r in reasons), reasons


def test_tests_skipped_at_import_by_the_candidate_are_newly_skipped_not_hidden():
    base = run({"tests/test_a.py::x": "passed", "tests/test_a.py::y": "failed",
                "tests/sub/test_b.py::z": "passed", "tests/test_c.py::w": "passed"})
    cand = run({"tests/test_c.py::w": "passed"}, junit_cases=3,
               skipped_modules=["tests/test_a.py", "tests/sub"])
    verdict, reasons = judge_tests(base, cand)
    assert verdict.newly_skipped == ["tests/sub/test_b.py::z", "tests/test_a.py::x"]
    assert verdict.lost == [] and reasons == [
        "newly skipped: tests/sub/test_b.py::z, tests/test_a.py::x"]
    # Skipped modules the baseline skipped too change nothing.
    same, reasons = judge_tests(cand, cand)
    assert reasons == [] and same.newly_skipped == []


def test_tests_that_differ_by_side_are_those_steady_on_each_side_and_different():
    a = run({"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "passed"})
    b = run({"t.py::a": "passed", "t.py::b": "passed", "t.py::c": "failed"})
    flaky = run({"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "failed"})
    assert differs_by_side([a, a], [b]) == ["t.py::b", "t.py::c"]
    assert differs_by_side([a, flaky], [b]) == ["t.py::b"]  # t.py::c varies on the baseline
    assert differs_by_side([a], []) == [] and differs_by_side([a, a], [a]) == []
