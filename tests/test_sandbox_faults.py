"""A candidate that breaks its sandbox is rejected, the sandbox is replaced, judging goes on.

Only a dead engine or a broken baseline may stop a run (invariant 13). Here the container is
killed from outside while a candidate's tests run, which is what a candidate that wedges or
kills its sandbox looks like to the judge: the verdict must be a rejection naming it, and the
next candidate must be judged in a fresh sandbox, not blamed for the last one.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import docker
import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.git.store import GitStore
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.trees import Trees

from repos import make_repo, unified_diff
from test_hostile import FILES, GENUINE

pytest_plugins = ["docker_util"]

@pytest.fixture(scope="module")
def calc_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("faults") / "repo", FILES)


@pytest.mark.docker
def test_a_killed_sandbox_rejects_the_candidate_and_the_next_one_gets_a_fresh_one(
        calc_repo: Path, sandbox_image: str, docker_client: docker.DockerClient) -> None:
    from selfcode.sandbox.docker import DockerSandbox

    from docker_util import HARNESS_DIR, TEST_CONFIG

    config = TEST_CONFIG.model_copy(update={"timeout": 60, "memory": "512m"})
    opened: list[Sandbox] = []

    def reopen() -> Sandbox:
        box = DockerSandbox.start(config, sandbox_image, f"faults-{os.getpid()}-{len(opened)}",
                                  HARNESS_DIR, client=docker_client)
        opened.append(box)
        return box

    try:
        first = reopen()
        store = GitStore(calc_repo)
        gate = GateConfig(flaky_runs=1)
        judge = Judge(Trees(first, timeout=60), gate,
                      discover_benchmarks(store.list_files(), gate, first.python), reopen=reopen)
        judge.set_baseline(store.tracked_tar())
        judge.calibrate()

        # The candidate's tests take a while; the container dies under them.
        slow = unified_diff(calc_repo, {"src/calc/__init__.py": "import time\n\ntime.sleep(8)\n"
                                        + FILES["src/calc/__init__.py"]})
        killer = threading.Timer(2.0, lambda: docker_client.containers.get(
            first.container_id).kill())  # type: ignore[attr-defined]
        killer.start()
        try:
            broken = judge.judge(slow)
        finally:
            killer.join()
        assert broken.status == "rejected", broken.reasons
        assert any("broke its sandbox" in r for r in broken.reasons), broken.reasons

        started = time.perf_counter()
        genuine = judge.judge(unified_diff(calc_repo, GENUINE))
        assert genuine.accepted, genuine.reasons
        assert len(opened) == 2 and judge.trees.sandbox is opened[1]
        assert time.perf_counter() - started < 120
    finally:
        for box in opened:
            box.close()
