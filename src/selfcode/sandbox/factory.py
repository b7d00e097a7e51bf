"""Opens the configured sandbox backend, ready for `Trees`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.resources import harness_dir
from selfcode.run.events import Observer
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import INTEGRITY_GAPS, WARNING, LocalSandbox

if TYPE_CHECKING:
    from selfcode.sandbox.deps import CommitReader, DependencySet


def baseline_dependencies(config: SandboxConfig, store: CommitReader,
                          rev: str) -> DependencySet | None:
    """The declarations the image is built from, read from commit `rev` once, and policed.

    A run passes its base commit, one-shot commands HEAD; None for the local backend, which
    installs nothing. Raises `ConfigError` for a declaration the host must not hand to pip.
    """
    if config.backend == "local":
        return None
    from selfcode.sandbox.deps import dependencies_at

    return dependencies_at(store, rev)


def backend_facts(config: SandboxConfig) -> tuple[str, tuple[str, ...]]:
    """The configured backend's kind and what it cannot rule out, for a verdict given before
    any sandbox opened (a patch refused on the host)."""
    return config.backend, INTEGRITY_GAPS if config.backend == "local" else ()


def open_sandbox(config: SandboxConfig, state_dir: Path, run_id: str,
                 deps: DependencySet | None, observer: Observer, quiet: bool = False,
                 timings: dict[str, float] | None = None) -> Sandbox:
    """A warm sandbox; the docker backend's image comes from `deps` (`baseline_dependencies`).

    `timings` gets the seconds the image (docker) and the sandbox's start took."""
    if config.backend == "local":
        if not quiet:
            observer.event("warning", WARNING)
        t0 = time.perf_counter()
        box = LocalSandbox(harness_dir())
        if timings is not None:
            timings["sandbox_start"] = time.perf_counter() - t0
        return box
    if deps is None:
        raise SandboxError("The docker sandbox needs the baseline's dependency declarations; "
                           "this is a bug in selfcode, please report it.")
    t0 = time.perf_counter()
    from selfcode.sandbox.docker import open_docker_sandbox

    docker_box = open_docker_sandbox(config, state_dir, run_id, deps, observer, quiet=quiet,
                                     timings=timings)
    if timings is not None:
        # The image, and all else before the container's start (the engine, old leftovers).
        timings["image"] = time.perf_counter() - t0 - timings.get("sandbox_start", 0.0)
    return docker_box
