"""Opens the configured sandbox backend, ready for `Trees`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.resources import harness_dir
from selfcode.run.events import Observer
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import WARNING, LocalSandbox

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


def open_sandbox(config: SandboxConfig, state_dir: Path, run_id: str,
                 deps: DependencySet | None, observer: Observer, quiet: bool = False) -> Sandbox:
    """A warm sandbox; the docker backend's image comes from `deps` (`baseline_dependencies`)."""
    if config.backend == "local":
        if not quiet:
            observer.event("warning", WARNING)
        return LocalSandbox(harness_dir())
    if deps is None:
        raise SandboxError("The docker sandbox needs the baseline's dependency declarations; "
                           "this is a bug in selfcode, please report it.")
    from selfcode.sandbox.docker import open_docker_sandbox

    return open_docker_sandbox(config, state_dir, run_id, deps, observer, quiet=quiet)
