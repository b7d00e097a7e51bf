"""Opens the configured sandbox backend, ready for `Trees`."""

from __future__ import annotations

from pathlib import Path

from selfcode.config import SandboxConfig
from selfcode.resources import harness_dir
from selfcode.run.events import Observer
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import WARNING, LocalSandbox


def open_sandbox(config: SandboxConfig, state_dir: Path, run_id: str, repo_root: Path,
                 observer: Observer, quiet: bool = False) -> Sandbox:
    if config.backend == "local":
        if not quiet:
            observer.event("warning", WARNING)
        return LocalSandbox(harness_dir())
    from selfcode.sandbox.docker import open_docker_sandbox

    return open_docker_sandbox(config, state_dir, run_id, repo_root, observer, quiet=quiet)
