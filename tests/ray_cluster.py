"""A real two-node Ray cluster on loopback, for the tests that judge across Ray (issue 16).

`scripts/ray-test-cluster.sh` does the work (CI calls it too): a network namespace with only
`lo` up, a head and a second node started with `ray start` inside it (one CPU and one
`selfcode_timing` slot each, their own temp dirs and ports), both reaching the machine's Docker
engine through its unix socket. The session fixture `ray_cluster` starts one (and stops it at
the end), or uses the one CI started when `SELFCODE_RAY_ADDRESS` and `SELFCODE_RAY_NETNS` are
set. Drivers must run inside the namespace too: `ray_cluster.run([...])` / `.popen([...])`.

Tests using it skip when ray, root or `ip netns` are missing (the judge's sandbox has none of
them), and FAIL instead when `SELFCODE_REQUIRE_RAY=1` (CI sets it).

Test modules load the fixture with `pytest_plugins = ["ray_cluster"]`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ray-test-cluster.sh"
START_TIMEOUT = 240  # seconds: two `ray start`s on a busy two-core machine
DRIVER_TIMEOUT = 120
LISTEN = "0A"  # the TCP state /proc/net/tcp calls LISTEN

_NODES_DRIVER = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print("NODES " + json.dumps(ray.nodes(), default=str))
"""


def ray_required() -> bool:
    return os.environ.get("SELFCODE_REQUIRE_RAY", "") == "1"


def why_unavailable() -> str | None:
    """Why this machine cannot run the test cluster (None: it can)."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install -e '.[test,ray]')"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "the Ray test cluster needs root on Linux (ip netns)"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    return None


def unavailable(reason: str) -> None:
    """Skip, or fail when Ray is required."""
    if ray_required():
        pytest.fail(f"SELFCODE_REQUIRE_RAY=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def script(command: str, name: str, timeout: float = START_TIMEOUT) -> str:
    """Run `ray-test-cluster.sh COMMAND NAME` with this interpreter's ray; its stdout."""
    env = {**os.environ, "SELFCODE_RAY_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), command, name], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ray-test-cluster.sh {command} {name} exited {done.returncode}: "
                           f"{done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass
class RayCluster:
    """A running test cluster: its namespace, its address, and the means to drive it."""

    netns: str
    address: str
    owned: bool = True
    """Started by this session (and stopped at its end), not by CI."""

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as run inside the cluster's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def driver_env(self, **extra: str) -> dict[str, str]:
        """This process's environment plus what a driver of this cluster needs."""
        return {**os.environ, "RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0",
                **extra}

    def popen(self, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside the namespace (default environment: `driver_env()`)."""
        popen_kwargs.setdefault("env", self.driver_env())
        return subprocess.Popen(self.command(argv), **popen_kwargs)

    def run(self, argv: list[str], **popen_kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run `argv` inside the namespace to the end (`subprocess.run`'s keywords)."""
        popen_kwargs.setdefault("env", self.driver_env())
        popen_kwargs.setdefault("timeout", DRIVER_TIMEOUT)
        return subprocess.run(self.command(argv), check=False, **popen_kwargs)

    def python(self, code: str, *args: str) -> str:
        """Run a Python driver `code` (argv: `args`) in the namespace; its stdout."""
        done = self.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"driver exited {done.returncode}: {done.stderr[-3000:]}")
        return str(done.stdout)

    def nodes(self) -> list[dict[str, Any]]:
        """`ray.nodes()` as a driver in the namespace sees it (dead nodes included)."""
        # Ray writes its own notices to the driver's stdout too ("node ... marked dead").
        out = self.python(_NODES_DRIVER, self.address)
        line = next(line for line in out.splitlines() if line.startswith("NODES "))
        nodes: list[dict[str, Any]] = json.loads(line.removeprefix("NODES "))
        return nodes

    def alive_nodes(self, count: int | None = None, timeout: float = 60) -> list[dict[str, Any]]:
        """The alive nodes; with `count`, once exactly that many are alive (or at `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [n for n in self.nodes() if n["Alive"]]
            if count is None or len(alive) == count or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)

    def node_ids(self) -> dict[str, str]:
        """role (head|worker) -> node id, of the alive nodes."""
        return {"head" if is_head(n) else "worker": n["NodeID"] for n in self.alive_nodes()}

    def pids(self) -> list[int]:
        """Every process in the namespace: the nodes' and the drivers'."""
        done = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True,
                              text=True, check=True)
        return [int(pid) for pid in done.stdout.split()]

    def head_node_id(self) -> str:
        return next(n["NodeID"] for n in self.alive_nodes() if is_head(n))

    def worker_node_id(self) -> str:
        """The second node's id (the alive one, after a restart)."""
        return next(n["NodeID"] for n in self.alive_nodes() if not is_head(n))

    def kill_worker(self) -> None:
        """SIGKILL the second node: its raylet, its agents and its workers, nothing else."""
        script("kill-worker", self.netns)

    def restart_worker(self) -> None:
        """Start the second node again (a no-op while it runs); wait until both are alive."""
        script("restart-worker", self.netns)
        if len(self.alive_nodes(count=2)) != 2:
            raise AssertionError(f"the second node of {self.netns} did not come back")

    def stop(self) -> None:
        script("stop", self.netns)


def is_head(node: dict[str, Any]) -> bool:
    return "node:__internal_head__" in node.get("Resources", {})


def start_cluster(name: str) -> RayCluster:
    """Start (or find running) the test cluster in namespace `name`."""
    address = script("start", name).strip().splitlines()[-1]
    return RayCluster(netns=name, address=address)


def tagged_pids(name: str) -> dict[int, str]:
    """Every process of the machine started for cluster `name`: pid -> its role (head|worker),
    read from the SELFCODE_RAY_NODE its environment carries (wherever its namespace is)."""
    found: dict[int, str] = {}
    prefix = f"SELFCODE_RAY_NODE={name}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or a kernel thread
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found[int(entry.name)] = item[len(prefix):].decode()
    return found


def process_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _hex_address(text: str) -> str:
    """One address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) byte order."""
    words = [bytes.fromhex(text[i:i + 8])[::-1] for i in range(0, len(text), 8)]
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"  # as Python 3.13 writes it, on any version
    return str(address)


def listening_sockets(proc_net_tcp: str) -> list[tuple[str, int]]:
    """(address, port) of every LISTEN socket in the text of /proc/net/tcp or /proc/net/tcp6."""
    found = []
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN:
            address, port = fields[1].split(":")
            found.append((_hex_address(address), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.is_loopback


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The session's two-node cluster: CI's (SELFCODE_RAY_ADDRESS + SELFCODE_RAY_NETNS), else
    one started now and stopped at the end."""
    address, netns = os.environ.get("SELFCODE_RAY_ADDRESS"), os.environ.get("SELFCODE_RAY_NETNS")
    if address and netns:
        yield RayCluster(netns=netns, address=address, owned=False)
        return
    reason = why_unavailable()
    if reason is not None:
        unavailable(reason)
    cluster = start_cluster(f"sct-{os.getpid()}")
    try:
        yield cluster
    finally:
        cluster.stop()
