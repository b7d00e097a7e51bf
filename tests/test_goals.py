"""The goals other than speed: fix (more passing tests) and metric (a declared number)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.git.store import GitStore
from selfcode.resources import harness_dir
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.trees import Trees

from repos import make_repo, unified_diff

LIB = "def double(x):\n    return x + x + 1\n\n\ndef score():\n    return 10\n"
# Both tests of double() fail at baseline; test_score passes (a baseline where nothing passes
# is judged only for fixes: under the other judges nothing would protect behaviour).
TESTS = ("from lib import double, score\n\n\ndef test_double():\n    assert double(2) == 4\n\n\n"
         "def test_zero():\n    assert double(0) == 0\n\n\ndef test_score():\n"
         "    assert score() > 0\n")
SCORE = "from lib import score\nprint(score())\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r", {"lib.py": LIB, "tests/test_lib.py": TESTS,
                                      "tools/score.py": SCORE})


def judge_of(sandbox: LocalSandbox, repo: Path, **gate: object) -> Judge:
    store = GitStore(repo)
    config = GateConfig(**gate)
    judge = Judge(Trees(sandbox, timeout=60), config,
                  discover_benchmarks(store.list_files(), config, sandbox.python))
    judge.set_baseline(store.tracked_tar())
    return judge


def test_fix_goal_accepts_a_fix_and_nothing_else(repo):
    with LocalSandbox(harness_dir()) as box:
        judge = judge_of(box, repo)
        assert judge.goal == "fix"  # no benchmarks: the goal follows
        fixed = judge.judge(unified_diff(repo, {"lib.py": LIB.replace("x + x + 1", "x + x")}))
        assert fixed.accepted and fixed.tests is not None
        assert fixed.tests.fixed == ["tests/test_lib.py::test_double",
                                     "tests/test_lib.py::test_zero"]
        same = judge.judge(unified_diff(repo, {"lib.py": LIB.replace("x + x + 1", "1 + x + x")}))
        assert not same.accepted and same.reasons == ["no failing test was made to pass"]


@pytest.mark.parametrize("direction, new_score, accepted", [
    ("max", "12", True), ("max", "8", False), ("min", "8", True), ("min", "11", False)])
def test_metric_goal(repo, direction, new_score, accepted):
    with LocalSandbox(harness_dir()) as box:
        judge = judge_of(box, repo, judge="metric", metric_command="python tools/score.py",
                         metric_direction=direction)
        diff = unified_diff(repo, {"lib.py": LIB.replace("return 10", f"return {new_score}")})
        verdict = judge.judge(diff)
        assert verdict.goal == "metric" and verdict.accepted is accepted, verdict.reasons
        (measured,) = verdict.benchmarks
        assert measured.baseline == [10.0] and measured.candidate == [float(new_score)]


def test_metric_goal_needs_a_command(repo):
    from selfcode.errors import ConfigError

    with LocalSandbox(harness_dir()) as box, pytest.raises(ConfigError, match="metric_command"):
        judge_of(box, repo, judge="metric")


def test_pytest_args_select_what_is_judged(repo):
    with LocalSandbox(harness_dir()) as box:
        judge = judge_of(box, repo, pytest_args=["-k", "zero"])
        assert judge._baseline_tests is not None
        assert judge._baseline_tests.collected == ["tests/test_lib.py::test_zero"]


def test_the_configured_judge_overrides_auto(tmp_path):
    bench = "from lib import score\nprint(score())\n"
    repo = make_repo(tmp_path / "b", {"lib.py": LIB, "tests/test_lib.py": TESTS,
                                      "benchmarks/bench_score.py": bench})
    with LocalSandbox(harness_dir()) as box:
        assert judge_of(box, repo).goal == "speed"  # benchmarks: auto judges speed
        judge = judge_of(box, repo, judge="fix")
        assert judge.goal == "fix"
        fixed = judge.judge(unified_diff(repo, {"lib.py": LIB.replace("x + x + 1", "x + x")}))
        assert fixed.accepted and fixed.goal == "fix" and fixed.benchmarks == []
