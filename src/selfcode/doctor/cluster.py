"""`selfcode doctor --executor ray`: is the Ray cluster ready to judge this repository?

One check says whether the driver reached the cluster ("connected to the cluster at ADDR (N
nodes, M selfcode_timing slots)"); then one check per live node, made on that node by a task
pinned there (`executors/checks.py: node_checks`): its Docker engine answers, and the run's
image is present there or can be built from the wheelhouse the driver ships. Each failure is
one sentence with the next step. The local checks stay: the driver still judges the baseline
in its own sandbox before the nodes calibrate on it.

Ray's driver waits (minutes, then longer) for a head that does not answer, so the head's port
is knocked on first: an address where nothing listens is one failed check within seconds.
"""

from __future__ import annotations

import socket
import urllib.parse
from typing import TYPE_CHECKING

from selfcode.doctor.checks import Check, Report, Stopwatch
from selfcode.errors import SelfcodeError

if TYPE_CHECKING:
    from selfcode.config import Settings
    from selfcode.sandbox.deps import DependencySet

CLUSTER = "ray cluster"
KNOCK_SECONDS = 5.0
DEFAULT_PORT = 6379  # `ray start --head`'s GCS port


def head_endpoint(address: str | None) -> tuple[str, int] | None:
    """(host, port) of the head that `address` names; None for the cluster on this machine
    ("auto", unset), which Ray finds from its own files. Raises ValueError when malformed."""
    if address is None or address.strip() in ("", "auto", "local"):
        return None
    text = address.strip()
    if "://" in text:  # ray://host:10001 (Ray Client), or a scheme a user typed
        text = text.split("://", 1)[1]
    parts = urllib.parse.urlsplit("//" + text)
    host, port = parts.hostname, parts.port  # .port raises ValueError when it is no number
    if not host or parts.path not in ("", "/"):
        raise ValueError(f"not host:port: {address!r}")
    return host, port or DEFAULT_PORT


def knock(host: str, port: int, timeout: float = KNOCK_SECONDS) -> str | None:
    """Why nothing answers at host:port (None: something accepted the connection)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def cluster_checks(settings: Settings, deps: DependencySet | None,
                   report: Report | None = None) -> list[Check]:
    """The cluster's check, then one per live node (each reported as soon as it is known)."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        if report is not None:
            report(check)

    watch = Stopwatch()
    address = settings.executor.ray_address
    shown = address or "auto"
    problem = _preflight(settings, address)
    if problem is not None:
        add(Check(name=CLUSTER, ok=False, detail=problem, seconds=watch.seconds))
        return checks
    try:
        nodes, slots, rows = _ask_nodes(address, settings, deps)
    except SelfcodeError as exc:
        add(Check(name=CLUSTER, ok=False, detail=str(exc), seconds=watch.seconds))
        return checks
    ready = sum(1 for _where, ok, _detail in rows if ok)
    add(Check(name=CLUSTER, ok=slots > 0, seconds=watch.seconds, detail=(
        f"connected to the cluster at {shown} ({nodes} live node(s), {slots} selfcode_timing "
        f"slot(s), {ready} node(s) ready to judge)" if slots else
        f"the cluster at {shown} has {nodes} live node(s) but no selfcode_timing slot; start "
        "each node with ray start --resources '{\"selfcode_timing\": 1}'")))
    for where, ok, detail in rows:
        add(Check(name=f"ray node {where}", ok=ok, detail=detail))
    return checks


def _preflight(settings: Settings, address: str | None) -> str | None:
    """What stops the cluster from being asked at all, as the sentence to show; None: ask."""
    if settings.sandbox.backend != "docker":
        return ("--executor ray judges in each node's Docker sandbox, and --sandbox local was "
                "chosen; drop --sandbox local.")
    try:
        endpoint = head_endpoint(address)
    except ValueError:
        return (f"--ray-address {address} is not HOST:PORT; name the head as ray start "
                "--head printed it, e.g. --ray-address 10.0.0.2:6379.")
    if endpoint is None:
        return None
    why = knock(*endpoint)
    if why is None:
        return None
    return (f"nothing answers at the Ray cluster's head {address} ({why}); start it there with "
            "ray start --head --port 6379 --resources '{\"selfcode_timing\": 1}', or name the "
            "running head with --ray-address HOST:PORT.")


def _ask_nodes(address: str | None, settings: Settings, deps: DependencySet | None
               ) -> tuple[int, int, list[tuple[str, bool, str]]]:
    """(live nodes, timing slots, each node's row): one connection for the count and for
    `node_checks`, which leaves a connection it did not make open."""
    from selfcode.executors.checks import node_checks
    from selfcode.executors.ray import NODE_RESOURCE, alive_nodes, connect, ray_module

    connected = connect(address)
    try:
        nodes = alive_nodes()
        slots = sum(int(float(n.get("Resources", {}).get(NODE_RESOURCE, 0))) for n in nodes)
        return len(nodes), slots, node_checks(address, settings.sandbox, deps)
    finally:
        if connected:
            ray_module().shutdown()
