"""Opens the configured sandbox backend, ready for `Trees`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from selfcode.config import SandboxConfig
from selfcode.resources import harness_dir
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import WARNING, LocalSandbox


class _Observer(Protocol):
    def event(self, kind: str, message: str, **data: object) -> None: ...


def open_sandbox(config: SandboxConfig, state_dir: Path, run_id: str, repo_root: Path,
                 observer: _Observer, quiet: bool = False) -> Sandbox:
    if config.backend == "local":
        if not quiet:
            observer.event("warning", WARNING)
        return LocalSandbox(harness_dir())
    from selfcode.sandbox.docker import open_docker_sandbox

    return open_docker_sandbox(config, state_dir, run_id, repo_root, observer, quiet=quiet)
