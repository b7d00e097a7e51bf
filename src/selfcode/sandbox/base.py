"""The `Sandbox` protocol: the only way selfcode runs code that a model wrote.

A sandbox is deliberately tiny: put a file where the sandbox can read it, run a command
with a hard timeout, close. Everything above it (loading trees, applying a patch, running
the frozen harness) is written once in `trees.py` and works on any backend.

The judge and the judged: `exec(judge=True)` runs selfcode's harness with the sandbox's judge
privileges (root with SETUID/SETGID/KILL in the docker sandbox), and the harness starts every
candidate process as `candidate_user`. A backend that cannot separate them (the local one:
`candidate_user` is None) lists what it therefore cannot rule out in `integrity_gaps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

# Environment variables that may cross into a sandbox; everything else (API keys, tokens,
# cloud credentials) stays on the host.
ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration: float
    timed_out: bool = False
    # Why the sandbox killed the command, when it did: "timeout", "out of memory", ...
    killed_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.killed_reason is None


@runtime_checkable
class Sandbox(Protocol):
    kind: str
    """"docker" or "local"."""
    isolated: bool
    """False when model code runs with the user's privileges (the local backend)."""

    root: str
    """Writable directory inside the sandbox; trees live at `{root}/a` and `{root}/b`."""
    python: str
    """Python inside the sandbox that has pytest and the target's dependencies."""
    harness: str
    """In-sandbox path of selfcode's own `harness.py`, read-only to the candidate."""
    inbox: str
    """Directory where staged files and trees appear inside the sandbox, read-only."""
    judge_dir: str
    """Directory only the judge can write: the harness's private files and the judged trees."""
    candidate_user: str | None
    """"UID:GID" every candidate process runs as, or None when the backend cannot demote."""
    fresh_dirs: tuple[str, ...]
    """Writable scratch directories (/tmp, $HOME...), emptied before every measured process."""
    cpu_meter: str
    """"cgroup" (a CPU counter of this sandbox alone) or "rusage" (the reaped children's)."""
    integrity_gaps: tuple[str, ...]
    """What this backend cannot rule out about a candidate (empty: nothing known)."""

    @property
    def broken(self) -> str | None:
        """Why the sandbox can no longer be used (what ran in it killed or wedged it), or None."""
        ...

    def stage(self, name: str, data: bytes) -> str:
        """Make `data` readable (never writable) inside the sandbox; return its in-sandbox path."""
        ...

    def stage_tree(self, name: str, tar: bytes) -> str:
        """Unpack `tar` as a read-only tree `{inbox}/{name}`, replacing any earlier one."""
        ...

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        judge: bool = False,
    ) -> ExecResult:
        """Run `argv`; kill it and everything it started once `timeout` seconds pass.

        `judge`: run it as the judge (selfcode's harness only), with `env` passed so that no
        candidate process can read it (not on any command line).
        """
        ...

    def close(self) -> None:
        """Stop everything the sandbox started and remove what it created; idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
