"""The Ray test cluster is what the Ray executor's tests assume (issue 16): two nodes with one
timing slot each, both reaching the Docker engine, nothing listening beyond loopback, a worker
node that can be killed alone, and a stop that leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("ray_cluster")
from ray_cluster import (  # noqa: E402
    RayCluster,
    is_head,
    is_loopback,
    listening_sockets,
    process_environ,
    script,
    start_cluster,
    tagged_pids,
    unavailable,
    why_unavailable,
)

# The fixture (ray_cluster) and its helpers live in ray_cluster.py.
pytest_plugins = ["ray_cluster"]

# Each remote task is pinned to one node and asks that node's Docker engine for a ping.
_DOCKER_PING_DRIVER = """
import json, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=0)
def ping():
    import docker
    return ray.get_runtime_context().get_node_id(), docker.from_env().ping()

alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
refs = [ping.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
        for n in alive]
print("PINGS " + json.dumps(ray.get(refs, timeout=90)))
"""

_TCP_V4 = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:18EB 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0202A8C0:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
"""
_TCP_V6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0
"""


@pytest.mark.parametrize(("text", "expected"), [
    (_TCP_V4, [("127.0.0.1", 6379), ("0.0.0.0", 80), ("192.168.2.2", 8080)]),
    (_TCP_V6, [("::ffff:127.0.0.1", 6379), ("::1", 22), ("::", 22)]),
    (_TCP_V4.splitlines()[0], []),
])
def test_listening_sockets_are_read_from_proc_net_tcp(text: str, expected: list[tuple[str, int]]) -> None:
    assert listening_sockets(text) == expected


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.2.2", False), ("::ffff:10.0.0.1", False),
])
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_two_alive_nodes_with_one_timing_slot_each(ray_cluster: RayCluster) -> None:
    alive = ray_cluster.alive_nodes(count=2)
    assert len(alive) == 2
    assert sorted(is_head(n) for n in alive) == [False, True]
    assert ray_cluster.node_ids() == {("head" if is_head(n) else "worker"): n["NodeID"]
                                      for n in alive}
    assert set(tagged_pids(ray_cluster.netns)) <= set(ray_cluster.pids())
    for node in alive:
        assert node["Resources"]["selfcode_timing"] == 1
        assert node["Resources"]["CPU"] == 1
        assert node["NodeManagerAddress"] == "127.0.0.1"


def test_a_task_pinned_to_each_node_reaches_the_docker_engine(ray_cluster: RayCluster) -> None:
    import json

    out = ray_cluster.python(_DOCKER_PING_DRIVER, ray_cluster.address)
    answers = json.loads(next(x for x in out.splitlines() if x.startswith("PINGS "))[6:])
    alive = {n["NodeID"] for n in ray_cluster.alive_nodes(count=2)}
    assert {node for node, _ in answers} == alive
    assert all(ok is True for _, ok in answers)


def _netns_inode(cluster: RayCluster) -> str:
    done = cluster.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return str(done.stdout).strip()


def test_every_ray_socket_listens_on_loopback_inside_the_namespace(ray_cluster: RayCluster) -> None:
    ray_cluster.alive_nodes(count=2)
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        done = ray_cluster.run(["cat", table], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        sockets += listening_sockets(str(done.stdout))
    port = int(ray_cluster.address.rsplit(":", 1)[1])
    assert port in {p for _, p in sockets}, sockets  # the GCS is seen: the reading is real
    assert [s for s in sockets if not is_loopback(s[0])] == []
    # ... and every process of the cluster lives in that namespace, none outside it.
    pids = tagged_pids(ray_cluster.netns)
    assert {"head", "worker"} <= set(pids.values())
    inode = _netns_inode(ray_cluster)
    outside = {pid: role for pid, role in pids.items()
               if os.readlink(f"/proc/{pid}/ns/net") != inode}
    assert outside == {}


def test_killing_the_worker_node_leaves_the_head_and_ray_reports_it_dead(
        ray_cluster: RayCluster) -> None:
    ray_cluster.alive_nodes(count=2)
    head, worker = ray_cluster.head_node_id(), ray_cluster.worker_node_id()
    head_pids = {p for p, role in tagged_pids(ray_cluster.netns).items() if role == "head"}
    try:
        ray_cluster.kill_worker()
        assert "worker" not in tagged_pids(ray_cluster.netns).values()
        alive = ray_cluster.alive_nodes(count=1, timeout=60)
        assert [n["NodeID"] for n in alive] == [head]
        states = {n["NodeID"]: n["Alive"] for n in ray_cluster.nodes()}
        assert states[worker] is False
        assert head_pids <= set(tagged_pids(ray_cluster.netns))  # no head process touched
    finally:
        ray_cluster.restart_worker()
    assert ray_cluster.worker_node_id() != worker


def _netns_names() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _wait_gone(name: str) -> None:
    deadline = time.monotonic() + 10
    while tagged_pids(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tagged_pids(name) == {}


def test_start_is_idempotent_survives_a_crash_and_stop_leaves_nothing() -> None:
    """Started from an environment holding a model key, no node holds it; start finds a
    running cluster, restarts a crashed one, and stop leaves no process, namespace or state."""
    reason = why_unavailable()
    if reason is not None:
        unavailable(reason)
    name = f"sct-stop-{os.getpid() % 10000}"
    assert os.environ["OPENAI_API_KEY"]  # conftest's fake key, in the environment it starts from
    cluster = start_cluster(name)
    try:
        first = tagged_pids(name)
        assert {"head", "worker"} <= set(first.values())
        assert [p for p in first if "OPENAI_API_KEY" in process_environ(p)] == []
        assert start_cluster(name).address == cluster.address
        assert tagged_pids(name) == first  # found running, nothing started twice
        for pid in first:  # a crash: every process gone, the namespace and the state left
            os.kill(pid, signal.SIGKILL)
        _wait_gone(name)
        assert start_cluster(name).address == cluster.address
        assert len(cluster.alive_nodes(count=2)) == 2
        assert not set(first) & set(tagged_pids(name))
    finally:
        cluster.stop()
    assert tagged_pids(name) == {}
    assert name not in _netns_names()
    assert not (Path(os.environ.get("SELFCODE_RAY_STATE", "/tmp/sc-ray")) / name).exists()
    script("stop", name)  # stopping what is stopped is fine


_IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import selfcode
for module in pkgutil.walk_packages(selfcode.__path__, "selfcode."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
        if "ray" in sys.modules:
            sys.exit(f"importing {module.name} imports ray")
"""


def test_no_selfcode_module_imports_ray_until_it_is_used() -> None:
    """`pip install selfcode` has no ray: every module imports without it (`import ray` only
    where the Ray executor runs)."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_EVERYTHING], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
