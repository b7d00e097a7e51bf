"""Attacks on the search (issue 13) that need more than one patch: a node of the archive is a
former candidate, and judging its children against it trusts its code as a baseline.

    SELFCODE_REQUIRE_DOCKER=1 pytest tests/test_search_attacks.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.git.store import GitStore
from selfcode.sandbox.trees import Trees

from repos import git, make_repo, unified_diff

pytest_plugins = ["docker_util"]

EXAMPLES = Path(__file__).parents[1] / "examples"
LIB = "src/primes/__init__.py"

# A genuine speedup (the demo's sieve and square-root bound)...
SIEVE = '''"""Prime numbers."""


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def primes_up_to(limit: int) -> list[int]:
    """Every prime p with p <= limit, in increasing order."""
    if limit < 2:
        return []
    sieve = bytearray([1]) * (limit + 1)
    sieve[0] = sieve[1] = 0
    for p in range(2, int(limit ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return [n for n in range(limit + 1) if sieve[n]]


def count_primes(limit: int) -> int:
    return len(primes_up_to(limit))
'''
# ...with a sleeper: work that runs only where the tree is the baseline's. Every benchmark run
# of a side starts in that side's tree (its cwd and import path name it), so the code can tell.
SLEEPER = '''
import os as _os

if _os.getcwd().rstrip("/").endswith("/trees/a"):  # judged against: be slow
    _ = sum(i * i for i in range(1_000_000))
'''
# The child: the node's code and one unused name, nothing faster.
EMPTY_CHILD = "\n_UNUSED = 1\n"


def _examples() -> dict[str, str]:
    return {str(p.relative_to(EXAMPLES)): p.read_text("utf-8")
            for p in sorted(EXAMPLES.rglob("*"))
            if p.is_file() and p.name != "demo-replies.jsonl"}


@pytest.fixture
def judge(tmp_path: Path, sandbox_image: str, docker_client: object) -> Iterator[
        tuple[Judge, Path]]:
    from selfcode.sandbox.docker import DockerSandbox

    from docker_util import HARNESS_DIR, TEST_CONFIG

    repo = make_repo(tmp_path / "repo", _examples())
    config = TEST_CONFIG.model_copy(update={"timeout": 60, "memory": "512m"})
    box = DockerSandbox.start(config, sandbox_image, f"search-attack-{os.getpid()}",
                              HARNESS_DIR, client=docker_client)
    try:
        store = GitStore(repo)
        gate = GateConfig()
        judge = Judge(Trees(box, timeout=60), gate,
                      discover_benchmarks(store.list_files(), gate, box.python))
        judge.set_baseline(store.tracked_tar(), runs=1)
        judge.calibrate()
        yield judge, repo
    finally:
        box.close()


def _commit(repo: Path, path: str, text: str) -> bytes:
    (repo / path).write_text(text, "utf-8")
    git(repo, "commit", "-q", "-am", "node")
    return GitStore(repo).tracked_tar()


@pytest.mark.docker
def test_a_node_slow_only_as_the_baseline_does_not_make_an_empty_child_faster(judge):
    """Node X is a real speedup that, once it is judged against (tree "a"), burns CPU. X is
    accepted on its own merit (as the candidate it never burns); its child adds nothing, yet is
    measured against the burning X. The child must not be accepted: it is X, not faster; and
    the verdict names the drift, so the loop retires X as a parent."""
    from selfcode.search.lineage import node_figures

    judge, repo = judge
    node = SIEVE + SLEEPER
    verdict = judge.judge(unified_diff(repo, {LIB: node}))
    assert verdict.accepted, verdict.reasons
    node_tests = judge.last_tests
    assert node_tests is not None
    # As the search does (search/pool.py): the node's tests and figures are its accepted ones.
    judge.adopt_baseline(_commit(repo, LIB, node), node_tests, node_figures(verdict))
    child = judge.judge(unified_diff(repo, {LIB: node + EMPTY_CHILD}))
    ratios = [(b.name, b.metric, b.ratio) for b in child.benchmarks]
    assert not child.accepted, f"an empty child was accepted as faster: {ratios}"
    assert child.baseline_drift and child.reasons[0].startswith(
        "its parent measures slower as the baseline than when it was accepted")


@pytest.mark.docker
def test_an_honest_node_measures_as_it_did_and_its_child_is_judged_as_usual(judge):
    """The negative control: the sieve alone as the node, a child that is no faster is
    rejected for no gain, not for drift."""
    from selfcode.search.lineage import node_figures

    judge, repo = judge
    verdict = judge.judge(unified_diff(repo, {LIB: SIEVE}))
    assert verdict.accepted, verdict.reasons
    judge.adopt_baseline(_commit(repo, LIB, SIEVE), judge.last_tests, node_figures(verdict))
    child = judge.judge(unified_diff(repo, {LIB: SIEVE + EMPTY_CHILD}))
    assert not child.accepted and not child.baseline_drift, child.reasons


# A node whose tests fail only where it is the baseline: its tests' copy (runs/<id>/tree) can
# read the judge's trees, and its source equals tree a's only when it is the one judged against.
TEST_SLEEPER = SIEVE.replace("def count_primes(limit: int) -> int:\n    return len(primes_up_to(limit))\n", '''
import os as _os

_HERE = _os.path.abspath(__file__)
_PARTS = _HERE.split(_os.sep)
_AS_BASELINE = False
if "runs" in _PARTS:  # a test run's copy of a tree
    _JUDGE = _os.sep.join(_PARTS[:_PARTS.index("runs")])
    try:
        with open(_os.path.join(_JUDGE, "trees", "a", "src", "primes", "__init__.py")) as _f:
            _AS_BASELINE = _f.read() == open(_HERE).read()
    except OSError:
        pass


def count_primes(limit: int) -> int:
    return len(primes_up_to(limit)) + (1 if _AS_BASELINE else 0)
''')


@pytest.mark.docker
def test_a_node_judged_against_with_its_accepted_run_cannot_weaken_its_tests(judge):
    """The search never tests a node again as a baseline: its children are judged against the
    full-suite run it was accepted with (a resumed run reads it from the history, m005). A
    node whose tests would fail only as the baseline then gains nothing: its child breaking
    that test is newly failing."""
    judge, repo = judge
    verdict = judge.judge(unified_diff(repo, {LIB: TEST_SLEEPER}))
    assert verdict.accepted, verdict.reasons
    accepted_run = judge.last_tests
    assert accepted_run is not None and accepted_run.outcomes is not None
    assert accepted_run.outcomes["tests/test_primes.py::test_count_primes"] == "passed"
    judge.adopt_baseline(_commit(repo, LIB, TEST_SLEEPER), accepted_run)
    broken = TEST_SLEEPER.replace("+ (1 if _AS_BASELINE else 0)", "+ 1")
    child = judge.judge(unified_diff(repo, {LIB: broken}))
    assert not child.accepted
    assert "tests/test_primes.py::test_count_primes" in (child.tests.newly_failing
                                                         if child.tests else []), child.reasons


# A sleeper that stays inside the drift check's tolerance for instruction counts (half of the
# 3 % smallest gain): about 1.3 % of the node's count (each iteration ~570 instructions of the
# ~43 M a run of the benchmark counts), more than the 1 % an instruction count needs.
SLEEPER_WITHIN = SLEEPER.replace("range(1_000_000)", "range(1_000)")


@pytest.mark.docker
def test_a_node_slow_as_the_baseline_within_the_tolerance_lends_its_children_nothing(judge):
    """The drift check tolerates a node measuring a little slower as the baseline (noise must
    not retire an honest node); what it tolerates must not be its child's gain. X burns 1.3 %
    more instructions only as the baseline: not a drift, but its empty child would count as
    0.987x, faster. Judged against X as it measured when accepted, the child is no faster."""
    from selfcode.gate.nodes import figure_key
    from selfcode.search.lineage import node_figures

    judge, repo = judge
    node = SIEVE + SLEEPER_WITHIN
    verdict = judge.judge(unified_diff(repo, {LIB: node}))
    assert verdict.accepted, verdict.reasons
    figures = node_figures(verdict)
    judge.adopt_baseline(_commit(repo, LIB, node), judge.last_tests, figures)
    child = judge.judge(unified_diff(repo, {LIB: node + EMPTY_CHILD}))
    first = child.benchmarks[0]
    key = figure_key(first.name, first.metric)
    counts = [(b.name, b.baseline, figures.get(figure_key(b.name, b.metric)), b.ratio)
              for b in child.benchmarks]
    drift = first.baseline[0] / figures[key][0]
    assert 1.0101 < drift < 1.015, f"the sleeper is not within the tolerance here: {counts}"
    assert not child.baseline_drift, child.reasons
    assert not child.accepted, f"an empty child was accepted as faster: {counts}"
    assert child.reasons[0].startswith("its gain is its parent's slowdown as the baseline")
