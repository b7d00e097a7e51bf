"""Joining a Ray cluster as its driver, and the little the executor asks of it.

Ray is optional (`pip install 'selfcode[ray]'`) and imported only through `ray_module()`.
"""

from __future__ import annotations

import socket
from typing import Any

from selfcode.errors import ConfigError, SandboxError

NODE_RESOURCE = "selfcode_timing"
"""One per node (`ray start --resources '{"selfcode_timing": 1}'`), held by the run's actor
there: no two judges' timing runs share a node."""


def ray_module() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray on this machine and every node; install "
                          "it with pip install 'selfcode[ray]'.") from exc
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at `address` ("auto": the one started on this machine) as a driver,
    with no runtime environment (nothing of ours travels). True if this call connected."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    _cluster_messages_to_stderr()
    _reachable(address)
    try:
        ray.init(address=address or "auto", logging_level="ERROR", log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SandboxError(f"Could not reach the Ray cluster at {address or 'auto'} "
                           f"({str(exc).splitlines()[0][:200]}); start it with `ray start "
                           "--head` or name it with --ray-address.") from exc
    return True


def _reachable(address: str | None) -> None:
    """A head that does not answer is said so in seconds (ray.init would retry for minutes)."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise SandboxError(f"The Ray cluster's head at {address} does not answer ({exc}); "
                           "start it with `ray start --head` or correct --ray-address.") from exc


def _cluster_messages_to_stderr() -> None:
    """Ray's driver prints the cluster's messages (a node marked dead...) on stdout, which
    carries selfcode's data (`--json`): they go to stderr, with the progress."""
    import ray._private.worker as driver

    shown = getattr(driver, "print_to_stdstream", None)
    if shown is None or getattr(shown, "selfcode", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        shown({**data, "is_err": True}, ignore_prefix)

    to_stderr.selfcode = True  # type: ignore[attr-defined]
    driver.print_to_stdstream = to_stderr


def affinity(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray_module().nodes() if n.get("Alive")]


def ray_ready() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())
