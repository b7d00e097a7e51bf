import pytest

from selfcode.config import GateConfig
from selfcode.gate import judge_benchmarks, judge_tests, objective_reason, protected_violations
from selfcode.sandbox.results import BenchOutput, BenchRun, BenchSamples, TestsRun

IDS = ["t.py::a", "t.py::b", "t.py::c"]


def run(outcomes: dict[str, str], exit_code: int | None = None, **kw) -> TestsRun:
    failing = any(o in ("failed", "error") for o in outcomes.values())
    return TestsRun(
        exit_code=(1 if failing else 0) if exit_code is None else exit_code,
        timed_out=False, duration=1.0, collected=list(outcomes), outcomes=outcomes,
        junit_cases=len(outcomes), **kw)


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
    assert objective_reason("fix", verdict, [], 0.01, 0.03) is None
    unchanged, _ = judge_tests(BASE, BASE)
    assert objective_reason("fix", unchanged, [], 0.01, 0.03) == "no failing test was made to pass"


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


def bench(a, b, out_a="1\n", out_b="1\n", failure=None):
    return BenchRun(benchmarks=[BenchSamples(
        name="x", metric="cpu_time", a=a, b=b, failure=failure,
        output={"a": BenchOutput(sha256=out_a), "b": BenchOutput(sha256=out_b)})])


A = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0, 1.02, 0.98]


@pytest.mark.parametrize(
    "samples, verdict, reason",
    [
        (bench(A, [x * 0.5 for x in A]), "faster", None),
        (bench(A, [x * 1.3 for x in A]), "slower", "benchmark x is slower"),
        (bench(A, A), "same", None),
        (bench(A, [x * 0.5 for x in A], out_b="2\n"), "output differs", "different result"),
        (bench([], [], failure="b: exit code 1"), "failed", "benchmark x failed: b: exit code 1"),
    ],
)
def test_benchmark_verdicts(samples, verdict, reason):
    verdicts, reasons = judge_benchmarks(samples, alpha=0.01, min_improvement=0.03)
    assert verdicts[0].verdict == verdict
    if reason:
        assert any(reason in r for r in reasons), reasons
    else:
        assert reasons == []
