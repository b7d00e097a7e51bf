"""The hostile-patch corpus: every case in `tests/hostile/*.toml`, judged in the Docker sandbox.

Each file is one patch a candidate could send, written to abuse one thing it controls (its
files, its processes, its output, its timing, the diff's own headers), with the verdict it must
get and a pattern its reason must match. Genuine controls (`expect = "accepted"`) keep the gate
honest the other way: closing a class must not reject real improvements.

    pytest tests/test_hostile_corpus.py -k <case-name>

One warm sandbox and one calibrated judge serve every case of a fixture, as in a real run.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.git.store import GitStore
from selfcode.sandbox.trees import Trees

from repos import git, make_repo
from test_hostile import FILES as CALC_FILES

pytest_plugins = ["docker_util"]

CORPUS = Path(__file__).parent / "hostile"
EXAMPLES = Path(__file__).parents[1] / "examples"
CLASSES = ("host-exec", "forged-report", "hidden-work", "carried-state", "regression",
           "patch-reading", "faults", "policy", "equivalence", "cascade")
EXPECTS = ("rejected", "unusable", "accepted")


@dataclass(frozen=True)
class Case:
    name: str
    fixture: str
    kind: str
    expect: str
    reason: str
    patch: str


def load_case(path: Path) -> Case:
    data = tomllib.loads(path.read_text("utf-8"))
    case = Case(name=path.stem, fixture=data["fixture"], kind=data["class"],
                expect=data["expect"], reason=data.get("reason", ""),
                patch=data["patch"].lstrip("\n"))
    assert case.fixture in ("examples", "calc"), path
    assert case.kind in CLASSES, path
    assert case.expect in EXPECTS, path
    assert path.stem.startswith(case.kind + "-"), f"{path.name} should start with {case.kind}-"
    assert case.expect == "accepted" or case.reason, f"{path.name} needs a reason pattern"
    return case


CASES = [load_case(p) for p in sorted(CORPUS.glob("*.toml"))]


def test_the_corpus_covers_every_class() -> None:
    """A class with no case is a class nobody checks."""
    hostile = {c.kind for c in CASES if c.expect != "accepted"}
    missing = [k for k in CLASSES if k not in hostile and k != "faults"]
    assert not missing, f"no hostile case for: {', '.join(missing)}"
    assert any(c.expect == "accepted" for c in CASES), "no genuine control"


def _fixture_files(name: str) -> dict[str, str]:
    if name == "calc":
        return dict(CALC_FILES)
    return {str(p.relative_to(EXAMPLES)): p.read_text("utf-8")
            for p in sorted(EXAMPLES.rglob("*"))
            if p.is_file() and p.name != "demo-replies.jsonl"}


@pytest.fixture(scope="module")
def corpus_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    return {name: make_repo(root / name, _fixture_files(name)) for name in ("examples", "calc")}


@pytest.fixture(scope="module")
def judges(request: pytest.FixtureRequest,
           corpus_repos: dict[str, Path]) -> Iterator[dict[str, Judge]]:
    """One warm Docker sandbox per fixture, each with a baseline and a calibration."""
    from selfcode.sandbox.docker import DockerSandbox

    from docker_util import HARNESS_DIR, TEST_CONFIG

    image = request.getfixturevalue("sandbox_image")
    client = request.getfixturevalue("docker_client")
    config = TEST_CONFIG.model_copy(update={"timeout": 60, "memory": "512m"})
    boxes = []
    out: dict[str, Judge] = {}
    try:
        for name, repo in corpus_repos.items():
            box = DockerSandbox.start(config, image, f"corpus-{name}-{os.getpid()}",
                                      HARNESS_DIR, client=client)
            boxes.append(box)
            store = GitStore(repo)
            # Every case through the cascade's selected stage (gate/cascade.py), whose selection
            # is the whole of these small suites: it may reject earlier, never otherwise.
            gate = GateConfig(select_max_share=1.0)
            judge = Judge(Trees(box, timeout=60), gate,
                          discover_benchmarks(store.list_files(), gate, box.python))
            judge.set_baseline(store.tracked_tar(), runs=2)
            judge.calibrate()
            out[name] = judge
        yield out
    finally:
        for box in boxes:
            box.close()


def _applies(repo: Path, patch: str, tmp_path: Path) -> bool:
    """The case's diff applies to its fixture (checked outside the sandbox, in a copy)."""
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    (tmp_path / "case.diff").write_text(patch, "utf-8")
    try:
        git(copy, "apply", "--check", str(tmp_path / "case.diff"))
    except Exception:
        return False
    return True


@pytest.mark.docker
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case: Case, judges: dict[str, Judge]) -> None:
    verdict = judges[case.fixture].judge(case.patch)
    reasons = " | ".join(verdict.reasons)
    assert verdict.status == case.expect, f"{case.name}: {verdict.status}: {reasons}"
    if case.reason:
        assert re.search(case.reason, reasons, re.IGNORECASE), f"{case.name}: {reasons}"


@pytest.mark.parametrize("case", [c for c in CASES if c.kind not in ("patch-reading", "policy")],
                         ids=[c.name for c in CASES if c.kind not in ("patch-reading", "policy")])
def test_behaviour_cases_apply_cleanly(case: Case, corpus_repos: dict[str, Path],
                                       tmp_path: Path) -> None:
    """A case meant to reach the tests or the meters must apply, or it tests nothing."""
    assert _applies(corpus_repos[case.fixture], case.patch, tmp_path), case.name
