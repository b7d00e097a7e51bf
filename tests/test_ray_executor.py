"""`selfcode improve --executor ray` against a real two-node Ray cluster on loopback.

The cluster is tests/ray_cluster.py's session fixture (scripts/ray-test-cluster.sh: a network
namespace with only `lo`; both nodes use this machine's Docker engine); the driver, `selfcode improve`, runs inside the namespace as a
subprocess, replaying the demo's model replies. Docker-heavy: three runs on the cluster and one
on this machine, so each test checks several things of one run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from selfcode.config import Settings
from selfcode.executors.ray import RaySetup, node_spec
from selfcode.run.workflows import prepare_demo_repo
from selfcode.sandbox.deps import dependencies_from_files

from repos import events
from run_helpers import git, write_replay

if TYPE_CHECKING:
    from ray_cluster import RayCluster

pytest_plugins = ["docker_util", "ray_cluster"]

REPLIES = [json.loads(line)["reply"] for line in
           (Path(__file__).parents[1] / "examples" / "demo-replies.jsonl").read_text().splitlines()]
SECRET = "sk-r2-driver-only-0f3c9a"
SELFCODE = shutil.which("selfcode") or str(Path(sys.executable).with_name("selfcode"))
FAST_GATE = "\n[tool.selfcode.gate]\nflaky_runs = 1\n"


@pytest.fixture
def environ(tmp_path: Path, base_image: str) -> dict[str, str]:
    """The driver's environment: the user's (with a secret in it), no global git config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SELFCODE_", "GIT_"))}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "OPENAI_API_KEY": SECRET, "SELFCODE_BASE_IMAGE": base_image,
            "GIT_CONFIG_GLOBAL": str(tmp_path / "no-global-gitconfig")}


def demo(root: Path, fast: bool = False) -> Path:
    repo, _ = prepare_demo_repo(root)
    if fast:  # one baseline run: the fault tests are about the cluster, not the quarantine
        with (repo / "pyproject.toml").open("a") as fh:
            fh.write(FAST_GATE)
        git(repo, "commit", "-qam", "one baseline run")
    return repo


def start_driver(cluster: RayCluster, argv: list[str], env: dict[str, str]
                 ) -> subprocess.Popen[str]:
    return cluster.popen([*argv, "--executor", "ray", "--ray-address", cluster.address],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def improve_argv(repo: Path, replay: Path, iterations: int, *extra: str) -> list[str]:
    return [SELFCODE, "improve", str(repo), "--replay", str(replay), "--iterations",
            str(iterations), "--json", *extra]


def verdicts(repo: Path, run_id: str) -> list[tuple[int, str, str, str]]:
    """(n, status, first reason, where) of each candidate of the run."""
    with sqlite3.connect(repo / ".git" / "selfcode" / "history.db") as db:
        rows = db.execute("SELECT n, status, verdict_json FROM candidates WHERE run_id = ? "
                          "ORDER BY n", (run_id,)).fetchall()
    out = []
    for n, status, raw in rows:
        verdict = json.loads(raw) if raw else {}
        out.append((n, status, (verdict.get("reasons") or [""])[0], verdict.get("sandbox", "")))
    return out


def judged_on(repo: Path) -> list[str]:
    """Where the run sent its candidates, in order (`docker@<ip>:<node id>`)."""
    return [m.removeprefix("judging on ") for k, _, m in events(repo)
            if k == "phase" and m.startswith("judging on ")]


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str],
             timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def containers_of(run_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=selfcode.run={run_id}",
                          "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def run_id_of(repo: Path) -> str:
    with sqlite3.connect(repo / ".git" / "selfcode" / "history.db") as db:
        (run_id,), = db.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1")
    return str(run_id)


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def secret_holders(cluster: RayCluster, driver: int) -> list[int]:
    """The cluster's processes (raylets, workers, the actors) whose environment or command
    line holds the driver's secret; the driver and its own children (git) left out."""
    holders = []
    for pid in cluster.pids():
        if descends_from(pid, driver):
            continue
        try:
            seen = Path(f"/proc/{pid}/environ").read_bytes() + Path(
                f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if SECRET.encode() in seen:
            holders.append(pid)
    return holders


def test_what_a_node_is_given_holds_no_secret_and_no_model_setting(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings = Settings.model_validate({"llm": {"base_url": "http://only-the-driver.example/v1",
                                                "model": "secret-model-name"}})
    deps = dependencies_from_files({"pyproject.toml": "[project]\nname = 'x'\n"})
    setup = RaySetup("127.0.0.1:6379", "run-1", Path("/tmp/state"), settings.sandbox, deps, 2)
    shipped = pickle.dumps(node_spec(setup, settings.gate, {"b": ["python", "b.py"]}, None))
    for leak in (SECRET, "only-the-driver", "secret-model-name", "api_key"):
        assert leak.encode() not in shipped


def test_the_cluster_judges_the_demo_as_this_machine_does(ray_cluster, environ, tmp_path):
    local_repo, ray_repo = demo(tmp_path / "local"), demo(tmp_path / "ray")
    replay = write_replay(tmp_path / "replies.jsonl", *REPLIES)
    proc = start_driver(ray_cluster, improve_argv(ray_repo, replay, 3), environ)
    # While a node judges, no process of the cluster but the driver has the driver's secret.
    wait_for("a candidate on a node", lambda: bool(judged_on(ray_repo)), proc)
    assert secret_holders(ray_cluster, proc.pid) == []
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    local = subprocess.run(improve_argv(local_repo, replay, 3, "--sandbox", "docker"),
                           env=environ, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr
    local_summary = json.loads(local.stdout)

    on_cluster = verdicts(ray_repo, summary["run_id"])
    here = verdicts(local_repo, local_summary["run_id"])
    assert [v[:3] for v in on_cluster] == [v[:3] for v in here]
    assert [v[1] for v in on_cluster] == ["rejected", "rejected", "accepted"]
    assert "protected path touched" in on_cluster[1][2]
    assert (summary["accepted"], len(summary["commits"])) == (1, 1)
    # Each verdict names the node that gave it; this machine's say docker.
    assert all(v[3].startswith("docker@127.0.0.1:") for v in on_cluster)
    assert {v[3] for v in here} == {"docker"}
    assert containers_of(summary["run_id"]) == []


def test_a_node_killed_under_a_candidate_sends_it_to_the_other(ray_cluster, environ, tmp_path):
    repo = demo(tmp_path / "demo", fast=True)
    replay = write_replay(tmp_path / "replies.jsonl", REPLIES[3])  # the sieve: accepted
    nodes = ray_cluster.node_ids()
    proc = start_driver(ray_cluster, improve_argv(repo, replay, 1), environ)
    try:
        wait_for("the candidate on a node", lambda: bool(judged_on(repo)), proc)
        first = judged_on(repo)[0]
        # The worker is chosen first (the head carries the driver); kill it while it judges.
        assert first.endswith(nodes["worker"][:12])
        time.sleep(3)
        ray_cluster.kill_worker()
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        ray_cluster.restart_worker()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    (n, status, _, where), = verdicts(repo, summary["run_id"])
    assert (n, status) == (1, "accepted") and where.endswith(nodes["head"][:12])
    assert judged_on(repo) == [first, where]
    assert any("failed under it" in m for k, _, m in events(repo) if k == "note")
    assert containers_of(summary["run_id"]) == []


def test_ctrl_c_on_the_driver_leaves_no_container_on_any_node(ray_cluster, environ, tmp_path):
    repo = demo(tmp_path / "demo", fast=True)
    replay = write_replay(tmp_path / "replies.jsonl", REPLIES[3])
    proc = start_driver(ray_cluster, improve_argv(repo, replay, 1), environ)
    try:
        wait_for("the candidate on a node", lambda: bool(judged_on(repo)), proc)
        run_id = run_id_of(repo)
        # The node's sandbox is up (the driver's own count too; theirs are labelled alike).
        wait_for("a node's sandbox", lambda: len(containers_of(run_id)) >= 2, proc, 120)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert containers_of(run_id) == []


def test_a_shipped_wheelhouse_lands_where_the_build_looks_and_nothing_else(tmp_path):
    from selfcode.executors.node import _unpack_wheelhouse, wheelhouse_tar

    source = tmp_path / "driver"
    source.mkdir()
    for name, text in {"a-1.0-py3-none-any.whl": "wheel", "requirements.txt": "a==1.0\n",
                       ".complete": "a-1.0-py3-none-any.whl\n", "notes.sh": "rm -rf /"}.items():
        (source / name).write_text(text)
    shipped = wheelhouse_tar(source)
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:  # what a tampered object could hold
        for name in ("../escaped.whl", "sub/b-1.0-py3-none-any.whl", "run.sh"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    target = tmp_path / "node" / "key"
    target.parent.mkdir()
    _unpack_wheelhouse(shipped, target)
    assert sorted(p.name for p in target.iterdir()) == [
        ".complete", "a-1.0-py3-none-any.whl", "requirements.txt"]
    other = tmp_path / "node" / "other"
    _unpack_wheelhouse(evil.getvalue(), other)
    assert list(other.iterdir()) == [] and not (tmp_path / "escaped.whl").exists()


# A node that burns CPU only where it is judged against (tree "a"), and a child that adds
# nothing: tests/test_search_attacks.py's sleeper, here as two scripted model replies.
SLEEPY = REPLIES[3] + '''
src/primes/__init__.py
```python
<<<<<<< SEARCH
def count_primes(limit: int) -> int:
    return len(primes_up_to(limit))
=======
def count_primes(limit: int) -> int:
    return len(primes_up_to(limit))


import os as _os

if _os.getcwd().rstrip("/").endswith("/trees/a"):  # judged against: be slow
    _ = sum(i * i for i in range(1_000_000))
>>>>>>> REPLACE
```
'''
EMPTY_CHILD = '''Name a constant.

src/primes/__init__.py
```python
<<<<<<< SEARCH
    _ = sum(i * i for i in range(1_000_000))
=======
    _ = sum(i * i for i in range(1_000_000))

_UNUSED = 1
>>>>>>> REPLACE
```
'''


def test_a_node_judged_on_the_cluster_must_measure_as_accepted(ray_cluster, environ, tmp_path):
    """The drift check holds on the cluster too: the node's figures travel with its tree, so
    the empty child of a node slow only as the baseline is rejected for it and the node
    retired, as on this machine (the figures once stayed on the driver: the child was
    accepted)."""
    repo = demo(tmp_path / "demo", fast=True)
    replay = write_replay(tmp_path / "replies.jsonl", SLEEPY, EMPTY_CHILD)
    proc = start_driver(ray_cluster, improve_argv(repo, replay, 2), environ)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    judged = verdicts(repo, summary["run_id"])
    assert [v[1] for v in judged] == ["accepted", "rejected"], judged
    assert judged[1][2].startswith("its parent measures slower as the baseline"), judged
    assert judged[1][3].startswith("docker@127.0.0.1:")
    assert any(k == "node-retired" for k, _, _ in events(repo))
    assert containers_of(summary["run_id"]) == []
