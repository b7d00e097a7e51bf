"""The cascade (gate/cascade.py): the changed modules' import, then the tests that exercise the
changed files, alone with -x, before the full suite; they may reject early, never accept.

Judged for real, in the Docker sandbox and in the local one, on a small package whose tests
reach its modules unevenly; the coverage map's parser is table-tested against forged input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge
from selfcode.resources import harness_dir
from selfcode.sandbox.coverage import CoverageMap, CoverageReport, coverage_map
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.results import TestsRun
from selfcode.sandbox.trees import Trees

from repos import make_repo, tar_of, unified_diff

pytest_plugins = ["docker_util"]

sys.path.insert(0, str(harness_dir()))
from selfcode_cascade import coverage_ranges, module_name  # noqa: E402

ALPHA = '''def double(x):
    return 2 * x


def half(x):
    return x / 2


def square(x):
    import math
    return math.pow(x, 2)
'''
BETA = "def inc(x):\n    return x + 1\n"
GAMMA = "def unused(x):\n    return x\n"
STATE = "SEEN = []\n"
ALPHA_TESTS = '''from pkg import state
from pkg.alpha import double, half, square


def test_double():
    assert double(2) == 4


def test_half():
    assert half(4) == 2


def test_square():
    assert square(3) == 9


def test_after_the_first_module():
    # Passes only after tests/test_aaa.py ran: alone, it fails on every tree.
    assert state.SEEN == ["aaa"] and double(1) == 2
'''
FILES = {
    "pkg/__init__.py": "", "pkg/alpha.py": ALPHA, "pkg/beta.py": BETA, "pkg/gamma.py": GAMMA,
    "pkg/state.py": STATE,
    "tests/test_aaa.py": "from pkg import state\n\n\ndef test_first():\n"
                         "    state.SEEN.append('aaa')\n",
    "tests/test_alpha.py": ALPHA_TESTS,
    "tests/test_beta.py": "from pkg.beta import inc\n\n" + "".join(
        f"\ndef test_inc_{i}():\n    assert inc({i}) == {i + 1}\n\n" for i in range(8)),
}
SELECTED_ALPHA = 3  # test_after_the_first_module is selected too, but fails alone


def _judge(trees: Trees) -> Judge:
    judge = Judge(trees, GateConfig(judge="fix"), {})
    judge.set_baseline(tar_of(FILES))
    return judge


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("cascade") / "repo", FILES)


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def judge(request: pytest.FixtureRequest) -> Iterator[Judge]:
    """One warm sandbox per backend, its baseline set once, as in a run."""
    if request.param == "local":
        with LocalSandbox(harness_dir()) as box:
            yield _judge(Trees(box, timeout=60))
        return
    from selfcode.sandbox.docker import DockerSandbox

    from docker_util import HARNESS_DIR, TEST_CONFIG
    image = request.getfixturevalue("sandbox_image")
    client = request.getfixturevalue("docker_client")
    config = TEST_CONFIG.model_copy(update={"timeout": 60, "memory": "512m"})
    box = DockerSandbox.start(config, image, f"cascade-{os.getpid()}", HARNESS_DIR,
                              client=client)
    try:
        yield _judge(Trees(box, timeout=60))
    finally:
        box.close()


def test_a_one_test_break_is_rejected_by_the_selected_tests_alone(judge: Judge,
                                                                   repo: Path) -> None:
    verdict = judge.judge(unified_diff(repo, {"pkg/alpha.py": ALPHA.replace("x / 2", "x / 3")}))
    assert verdict.status == "rejected"
    assert verdict.reasons == ["newly failing: tests/test_alpha.py::test_half"]
    assert "tests_selected" in verdict.timings and "import" in verdict.timings
    assert "tests" not in verdict.timings  # the full suite never ran
    assert verdict.tests is not None and verdict.tests.selected == SELECTED_ALPHA + 1
    assert verdict.tests.newly_failing == ["tests/test_alpha.py::test_half"]


def test_a_clean_candidate_runs_both_and_the_full_suite_decides(judge: Judge,
                                                                repo: Path) -> None:
    verdict = judge.judge(unified_diff(repo, {"pkg/alpha.py": ALPHA.replace("2 * x", "x + x")}))
    # Judged by fixes: nothing fixed, so rejected, but only by the full suite's rule.
    assert verdict.reasons == ["no failing test was made to pass"]
    assert {"import", "tests_selected", "tests"} <= set(verdict.timings)
    assert verdict.tests is not None and verdict.tests.selected == SELECTED_ALPHA + 1
    # The test that fails alone (on both trees) rejected nothing; in the full suite it passes.
    assert verdict.tests.candidate.failed == 0


def test_a_candidate_touching_a_file_no_test_executes_skips_the_selection(judge: Judge,
                                                                          repo: Path) -> None:
    verdict = judge.judge(unified_diff(repo, {"pkg/gamma.py": GAMMA.replace("x\n", "x + 0\n")}))
    assert "tests_selected" not in verdict.timings and "tests" in verdict.timings
    assert verdict.tests is not None and verdict.tests.selected is None


def test_a_new_file_skips_the_selection(judge: Judge, repo: Path) -> None:
    verdict = judge.judge(unified_diff(repo, {"pkg/delta.py": "VALUE = 1\n",
                                              "pkg/alpha.py": ALPHA.replace("2 * x", "x * 2")}))
    assert "tests_selected" not in verdict.timings and "tests" in verdict.timings


def test_a_syntax_error_is_rejected_at_import(judge: Judge, repo: Path) -> None:
    verdict = judge.judge(unified_diff(repo, {"pkg/beta.py": BETA + "def (:\n"}))
    assert verdict.status == "rejected"
    assert verdict.reasons == ["the changed module pkg.beta does not import: SyntaxError: "
                               "invalid syntax (beta.py, line 3)"]
    assert "import" in verdict.timings
    assert "tests_selected" not in verdict.timings and "tests" not in verdict.timings


def test_an_import_broken_only_at_call_time_is_caught_by_the_selected_tests(
        judge: Judge, repo: Path) -> None:
    broken = ALPHA.replace("import math", "import math_that_is_not_there as math")
    verdict = judge.judge(unified_diff(repo, {"pkg/alpha.py": broken}))
    assert verdict.reasons == ["newly failing: tests/test_alpha.py::test_square"]
    assert "tests" not in verdict.timings


def test_a_failure_outside_the_selection_is_still_rejected_by_the_full_suite(
        judge: Judge, repo: Path) -> None:
    # alpha's own tests pass; at import it rebinds beta's inc, which no selected test calls.
    rebinds = ALPHA + "\n\nimport pkg.beta\n\npkg.beta.inc = lambda x: x\n"
    verdict = judge.judge(unified_diff(repo, {"pkg/alpha.py": rebinds}))
    assert verdict.status == "rejected"
    assert verdict.reasons == ["newly failing: tests/test_beta.py::test_inc_0, "
                               "tests/test_beta.py::test_inc_1, tests/test_beta.py::test_inc_2 "
                               "and 5 more"]
    assert {"tests_selected", "tests"} <= set(verdict.timings)


# --- the map, as untrusted input ----------------------------------------------------------------


def _run(collected: list[str]) -> TestsRun:
    return TestsRun(exit_code=0, timed_out=False, duration=1.0, collected=collected,
                    outcomes=dict.fromkeys(collected, "passed"), junit_cases=len(collected))


def _report(collected: list[str], coverage: object) -> CoverageReport:
    return CoverageReport.model_validate({
        "kind": "tests", "nonce": "n", **_run(collected).model_dump(), "coverage": coverage})


@pytest.mark.parametrize("coverage, why", [
    ({"pkg/a.py": [[0, 3]]}, "a range past the collected tests"),
    ({"pkg/a.py": [[1, 1]]}, "an empty range"),
    ({"pkg/a.py": [[-1, 1]]}, "a negative start"),
    ({"../outside.py": [[0, 1]]}, "a path outside the tree"),
    ({"/etc/passwd": [[0, 1]]}, "an absolute path"),
    ({"pkg/a.py": [[0, 1]] * 2_000_001}, "more ranges than any suite needs"),
])
def test_the_map_refuses_forged_input(coverage: object, why: str) -> None:
    collected = ["t::a", "t::b"]
    try:
        report = _report(collected, coverage)
    except ValidationError:
        return  # refused when the report is read
    assert coverage_map(report, _run(collected)) is None, why


def test_the_map_refuses_too_many_files() -> None:
    with pytest.raises(ValidationError):
        _report(["t::a"], {f"m{i}.py": [[0, 1]] for i in range(100_001)})


def test_the_map_is_used_only_for_the_baselines_own_tests() -> None:
    report = _report(["t::a", "t::b"], {"pkg/a.py": [[0, 2]]})
    assert coverage_map(report, _run(["t::a"])) is None
    good = coverage_map(report, _run(["t::a", "t::b"]))
    assert good is not None and good.tests_for(["pkg/a.py"]) == ["t::a", "t::b"]
    assert good.tests_for(["pkg/a.py", "pkg/new.py"]) is None  # a file no test executed


def test_tests_for_keeps_collection_order() -> None:
    tests = ["t::a", "t::b", "t::c", "t::d"]
    cmap = CoverageMap(tests=tests, files={"x.py": [(2, 4)], "y.py": [(0, 1), (3, 4)]})
    assert cmap.tests_for(["y.py", "x.py"]) == ["t::a", "t::c", "t::d"]


@pytest.mark.parametrize("data, expected", [
    (b'{"f":"pkg/a.py"}\n{"t":"t::a","f":[0]}\n{"t":"t::b","f":[0]}\n', {"pkg/a.py": [[0, 2]]}),
    (b'{"f":"a.py"}\n{"f":"b.py"}\n{"t":"t::b","f":[1,0]}\n', {"a.py": [[1, 2]], "b.py": [[1, 2]]}),
    (b'{"f":"a.py"}\n{"t":"t::unknown","f":[0]}\n{"t":"t::a","f":[0, 7]}\n', {"a.py": [[0, 1]]}),
    (b'{"f":"a.py"}\n{"t":"t::a","f":[0]}', None),  # cut in the middle of a record
    (b'not json\n', None),
    (b'[1]\n', None),
    (b'{"f": 3}\n', None),
    (b'{"t":"t::a","f":"all"}\n', None),
    (b"", {}),
])
def test_the_harness_reads_the_plugins_records(data: bytes, expected: object) -> None:
    assert coverage_ranges(data, ["t::a", "t::b"]) == expected


def test_the_harness_makes_ranges_of_adjacent_tests() -> None:
    collected = [f"t::{i}" for i in range(6)]
    records = b'{"f":"a.py"}\n' + b"".join(
        b'{"t":"t::%d","f":[0]}\n' % i for i in (0, 1, 2, 4, 5))
    assert coverage_ranges(records, collected) == {"a.py": [[0, 3], [4, 6]]}


@pytest.mark.parametrize("path, expected", [
    ("src/pkg/mod.py", "pkg.mod"),
    ("src/pkg/__init__.py", "pkg"),
    ("src/pkg/sub/deep.py", "pkg.sub.deep"),
    ("src/pkg/nopkg/deep.py", None),  # nopkg has no __init__.py
    ("src/pkg/__main__.py", None),
    ("src/top.py", None),  # not inside a package
    ("src/pkg/not-a-name.py", None),
    ("src/pkg/data.txt", None),
    ("setup.py", None),
])
def test_which_changed_files_are_imported(tmp_path: Path, path: str, expected: str | None) -> None:
    for folder in ("src/pkg", "src/pkg/sub", "src/pkg/nopkg"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "src/pkg/__init__.py").write_text("")
    (tmp_path / "src/pkg/sub/__init__.py").write_text("")
    assert module_name(str(tmp_path), path) == expected


def test_judges_of_a_pool_record_each_baselines_map_once(tmp_path: Path, repo: Path) -> None:
    """The search's pool lends judges parents in turn: a tree's coverage map is recorded by
    the first judge that needs it and reused by its forks, also after another parent."""
    other = {**FILES, "pkg/alpha.py": ALPHA.replace("2 * x", "x + x")}
    diff = unified_diff(repo, {"pkg/alpha.py": ALPHA.replace("x / 2", "x / 3")})
    with LocalSandbox(harness_dir()) as first_box, LocalSandbox(harness_dir()) as second_box:
        first = _judge(Trees(first_box, timeout=60))
        assert "coverage_map" in first.judge(diff).timings
        twin = first.fork(second_box)
        twin.adopt_baseline(tar_of(FILES), first.baseline_tests)  # type: ignore[arg-type]
        assert "coverage_map" not in twin.judge(diff).timings  # recorded by `first`
        twin.set_baseline(tar_of(other))
        twin.adopt_baseline(tar_of(FILES), first.baseline_tests)  # type: ignore[arg-type]
        again = twin.judge(diff)
        assert "coverage_map" not in again.timings
        assert again.reasons == ["newly failing: tests/test_alpha.py::test_half"]
