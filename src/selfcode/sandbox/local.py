"""The local backend: a throw-away directory and subprocesses. It does NOT isolate anything.

Model code runs with the user's privileges and network. It exists for machines with no
Docker engine, is chosen only explicitly (or by `demo`), and says so loudly, naming what it
cannot rule out (`INTEGRITY_GAPS`): the harness and the candidate run as the same user, so the
candidate can forge the judge's report, do work where the meters do not look, and keep state
wherever the user can write. The harness still does what it can: fresh trees, emptied home and
temporary directories, its own descendants found and killed, their CPU time counted. Peak
memory stays the largest ru_maxrss of one process (the docker sandbox samples its memory cgroup
for the whole process tree, sandbox/selfcode_memory.py). Trees are installed as in the docker
sandbox (sandbox/selfcode_install.py), with `pip install --target` into this sandbox's own
directory and this Python's build backend (setuptools is a dependency of selfcode for that;
others must be installed beside it): nothing is installed into the user's environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from selfcode.processes import pid_alive
from selfcode.sandbox.base import ENV_ALLOWLIST, ExecResult
from selfcode.sandbox.staging import unpack_tree

MAX_OUTPUT = 8 * 1024 * 1024
PREFIX = "selfcode-local-"
INTEGRITY_GAPS = (
    "forged reports: candidate code runs as the same user as the judge, so it can signal the "
    "harness, read its files and environment and write its report",
    "hidden work: processes that leave the harness's process tree (or run on another machine "
    "account) are neither measured nor killed, and peak memory is the largest single process's "
    "(ru_maxrss: no cgroup of its own), so memory held by several processes at once is not "
    "summed",
    "carried state: only the sandbox's own home and temporary directories are emptied; /tmp, "
    "/dev/shm and the user's files are shared between runs",
)
WARNING = (
    "The local sandbox does not isolate: model-written code runs as you, with your files and "
    "network. It cannot rule out " + "; ".join(INTEGRITY_GAPS) + ". Use the Docker sandbox "
    "for anything but trusted experiments."
)


class LocalSandbox:
    kind = "local"
    isolated = False
    broken: str | None = None  # a process group is killed, nothing is left to wedge
    candidate_user: str | None = None
    cpu_meter = "rusage"
    integrity_gaps: tuple[str, ...] = INTEGRITY_GAPS

    def __init__(self, harness_dir: Path, python: str | None = None) -> None:
        sweep_dead_sandboxes()
        self._dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        # Owner pid, so a later run can tell this directory from a live one after a SIGKILL.
        (self._dir / "owner").write_text(str(os.getpid()))
        for sub in ("in", "w", "home", "tmp", "judge"):
            (self._dir / sub).mkdir()
        self.root = str(self._dir / "w")
        self.judge_dir = str(self._dir / "judge")
        self.fresh_dirs = tuple(str(self._dir / sub) for sub in ("w", "home", "tmp"))
        self.python = python or sys.executable
        self.harness = str(harness_dir / "harness.py")
        self.inbox = str(self._dir / "in")
        self._closed = False

    def stage(self, name: str, data: bytes) -> str:
        path = self._dir / "in" / name
        path.write_bytes(data)
        path.chmod(0o444)
        return str(path)

    def stage_tree(self, name: str, tar: bytes) -> str:
        target = self._dir / "in" / name
        unpack_tree(tar, target)
        return str(target)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
        env.update(
            HOME=str(self._dir / "home"),
            TMPDIR=str(self._dir / "tmp"),
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONHASHSEED="0",
            # Stops `git apply` from finding a repository above the sandbox directory.
            GIT_CEILING_DIRECTORIES=self.root,
        )
        env.update(extra or {})
        return env

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        judge: bool = False,
    ) -> ExecResult:
        # `judge` changes nothing here: there is no other user to run the harness as.
        start = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd or self.root,
                env=self._env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            _kill_group(proc.pid)
            proc.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(MAX_OUTPUT), err.read(MAX_OUTPUT)
        return ExecResult(
            exit_code=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            duration=time.perf_counter() - start,
            timed_out=timed_out,
            killed_reason="timeout" if timed_out else None,
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _remove(self._dir)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def sweep_dead_sandboxes(parent: Path | None = None) -> list[Path]:
    """Remove local sandbox directories whose owner process is gone (a killed run's leftovers)."""
    removed = []
    for path in (parent or Path(tempfile.gettempdir())).glob(f"{PREFIX}*"):
        try:
            owner = int((path / "owner").read_text())
        except (OSError, ValueError):
            continue  # not ours, or not finished being created: leave it alone
        if not pid_alive(owner):
            _remove(path)
            removed.append(path)
    return removed


def _remove(directory: Path) -> None:
    """Remove a sandbox directory, the harness's read-only trees in it included."""
    for path in directory.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.chmod(0o700)
    shutil.rmtree(directory, ignore_errors=True)


def _kill_group(pid: int) -> None:
    """The whole process group goes, so a candidate's background children die with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
