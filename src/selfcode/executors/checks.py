"""Is every node of a Ray cluster ready to judge? (`selfcode doctor --executor ray`)

    for node, ok, detail in node_checks("127.0.0.1:6379", settings.sandbox, deps): ...

One small task per live node, pinned there, asks that node's own Docker engine: does it
answer, is the run's image there, or can it be built there (its base image present: the
wheels come from the driver). The driver adds what only it sees: the node's `selfcode_timing`
slot, and whether the node runs the driver's selfcode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfcode.errors import SandboxError
from selfcode.executors.node import harness_digest, where_am_i

if TYPE_CHECKING:
    from selfcode.config import SandboxConfig
    from selfcode.sandbox.deps import DependencySet

NodeCheck = tuple[str, bool, str]
_CHECK_SECONDS = 60.0


def node_checks(address: str | None, sandbox: SandboxConfig | None = None,
                deps: DependencySet | None = None) -> list[NodeCheck]:
    """Each live node: (where, ready, one sentence). Without `sandbox` only the engine is
    asked; without `deps` the base image stands for the run's image. Raises `SandboxError`
    when the cluster cannot be reached."""
    from selfcode.executors.cluster import (
        NODE_RESOURCE,
        affinity,
        alive_nodes,
        connect,
        ray_module,
    )

    connected = connect(address)
    ray = ray_module()
    try:
        nodes = alive_nodes()
        if not nodes:
            raise SandboxError(f"The Ray cluster at {address or 'auto'} has no live node; start "
                               "one with `ray start`.")
        task = ray.remote(check_here)
        calls = [(node, task.options(num_cpus=0, scheduling_strategy=affinity(
            str(node["NodeID"]))).remote(sandbox, deps)) for node in nodes]
        results: list[NodeCheck] = []
        for node, ref in calls:
            name = f"{node.get('NodeManagerAddress', '?')}:{str(node['NodeID'])[:12]}"
            if float(node.get("Resources", {}).get(NODE_RESOURCE, 0)) < 1:
                results.append((f"docker@{name}", False, f"the node offers no {NODE_RESOURCE} "
                                "slot; start it with ray start --resources "
                                f"'{{\"{NODE_RESOURCE}\": 1}}'"))
                continue
            try:
                where, ok, detail, digest = ray.get(ref, timeout=_CHECK_SECONDS)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                results.append((f"docker@{name}", False, f"the node did not answer "
                                f"({type(exc).__name__}); check that it runs selfcode[ray]"))
                continue
            if ok and digest != harness_digest():
                ok, detail = False, ("it runs another selfcode than this machine; install the "
                                     "same version on every node")
            results.append((where, ok, detail))
        return results
    finally:
        if connected:
            ray.shutdown()


def check_here(sandbox: SandboxConfig | None, deps: DependencySet | None
               ) -> tuple[str, bool, str, str]:
    """On the node: (where, ready, detail, its selfcode's harness digest)."""
    from selfcode.sandbox.engine import docker_client, engine_problem

    where, digest = where_am_i(), harness_digest()
    try:
        client = docker_client(timeout=10)
    except SandboxError as exc:  # the engine's own sentence advises --sandbox local: not here
        ip = where.removeprefix("docker@").split(":")[0]
        return where, False, (f"node {ip} has no Docker engine that answers "
                              f"({engine_problem(exc.__cause__ or exc)}): install or start "
                              "Docker there, or stop its ray node"), digest
    try:
        if sandbox is None:
            return where, True, "the Docker engine answers", digest
        return (where, *_image_state(client, sandbox, deps), digest)
    except SandboxError as exc:
        return where, False, str(exc), digest


def _image_state(client: Any, sandbox: SandboxConfig, deps: DependencySet | None
                 ) -> tuple[bool, str]:
    from selfcode.executors.node import image_present
    from selfcode.sandbox.image import base_image_of, ensure_base_image, image_tag

    if sandbox.image:
        if image_present(client, sandbox.image):
            return True, f"the image {sandbox.image} is present"
        return False, f"the image {sandbox.image} (SELFCODE_IMAGE) is missing on this node"
    base = base_image_of(sandbox, client)
    if not image_present(client, base):
        return False, (f"the base image {base} is missing on this node; build it there with "
                       "sandbox/bootstrap-base.sh")
    if deps is None:
        return True, f"the base image {base} is present"
    tag = image_tag(deps, base, ensure_base_image(client, base, lambda _m: None))
    if image_present(client, tag):
        return True, f"the image {tag} is present"
    return True, f"the image {tag} is missing; it is built there from the driver's wheels"
