"""The docker backend's front door: open a sandbox, and the names callers need.

    sandbox = open_docker_sandbox(settings.sandbox, state_dir, run_id, deps, observer)

The backend lives in four modules: `engine` (the client, availability, engine failures as one
sentence), `container` (`DockerSandbox`: the hardened container and its life cycle), `execution`
(exec, output, exit, watchdog), `image` and `deps` (the image and the target's dependencies).
Import from here unless you need a module's internals.
"""

from __future__ import annotations

import time
from pathlib import Path

from selfcode import resources
from selfcode.config import SandboxConfig
from selfcode.run.events import Observer
from selfcode.sandbox.container import DockerSandbox
from selfcode.sandbox.deps import DependencySet, dependencies_at
from selfcode.sandbox.engine import base_image_present, docker_available, docker_client
from selfcode.sandbox.image import build_image, ensure_image
from selfcode.sandbox.leftovers import cleanup_dead_runs

__all__ = [
    "DependencySet",
    "DockerSandbox",
    "base_image_present",
    "build_image",
    "cleanup_dead_runs",
    "dependencies_at",
    "docker_available",
    "docker_client",
    "ensure_image",
    "open_docker_sandbox",
]


def open_docker_sandbox(
    config: SandboxConfig,
    state_dir: Path,
    run_id: str,
    deps: DependencySet,
    observer: Observer,
    quiet: bool = False,
    timings: dict[str, float] | None = None,
) -> DockerSandbox:
    """Remove dead runs' leftovers, build the image for `deps` if needed, start a sandbox.

    `deps` are the baseline's declarations (`deps.dependencies_at(store, base_commit)`),
    collected once per run: a re-check passes the same set, never one read from a worktree.
    `timings` gets the seconds the container's start took.
    """
    client = docker_client()
    removed = cleanup_dead_runs(client)
    if removed and not quiet:
        observer.event(
            "note", f"Removed {len(removed)} sandbox container(s) left by dead runs.",
            containers=removed,
        )

    def progress(message: str) -> None:
        if not quiet:
            observer.event("phase", message)

    image = ensure_image(config, state_dir, deps, client=client, progress=progress)
    t1 = time.perf_counter()
    box = DockerSandbox.start(
        config, image, run_id, resources.harness_dir(), client=client, cleanup=False
    )
    if timings is not None:
        timings["sandbox_start"] = time.perf_counter() - t1
    return box
