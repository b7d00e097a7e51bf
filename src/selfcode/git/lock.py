"""The lock that keeps two selfcode runs on one repository apart, and who holds it.

`<state dir>/lock` names the owner (pid and its start time, run id, host); a lock whose owner
died is taken over, even when the pid has since been given to another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from selfcode.errors import LockedError
from selfcode.processes import owner_alive, process_start

LOCK_FILE = "lock"


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the process that wrote it."""

    pid: int
    run_id: str | None
    host: str | None
    alive: bool


class RepoLock:
    """One selfcode run per repository: `<state_dir>/lock` holds the owner's PID and run id.

    The file is created with O_CREAT|O_EXCL; a lock whose process is dead is taken over and
    `stale_pid` tells the caller whose it was. The short critical section (read, check,
    replace) is serialised with flock on `lock.guard`, so two processes can never both take
    over the same stale lock, and a half-written lock can only come from a dead writer.
    """

    def __init__(self, state_dir: Path, run_id: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self.run_id = run_id
        self.stale_pid: int | None = None
        self.took_over = False
        self.held = False
        self._token = secrets.token_hex(8)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / (LOCK_FILE + ".guard"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        """The lock's content; None if it is unreadable (its writer died while writing)."""
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError):
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, int):  # a bare PID, written by hand
            data = {"pid": data}
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        return data

    @staticmethod
    def _describe(data: Mapping[str, Any]) -> LockHolder:
        pid = int(data["pid"])
        host = data.get("host")
        run_id = data.get("run_id")
        start = data.get("start")
        # A PID from another machine (shared file system) cannot be checked: assume it lives.
        alive = (
            True
            if host and host != socket.gethostname()
            else owner_alive(pid, start if isinstance(start, str) else None)
        )
        return LockHolder(
            pid=pid,
            run_id=run_id if isinstance(run_id, str) else None,
            host=host if isinstance(host, str) else None,
            alive=alive,
        )

    @classmethod
    def holder(cls, state_dir: Path) -> LockHolder | None:
        """Who holds the lock in `state_dir`, if anyone wrote one (alive or not)."""
        try:
            data = cls._read(Path(state_dir) / LOCK_FILE)
        except FileNotFoundError:
            return None
        return cls._describe(data) if data is not None else None

    def acquire(self) -> int | None:
        """Take the lock; return the PID of the dead process it was taken over from, if any."""
        if self.held:
            raise RuntimeError("this RepoLock is already held")
        with self._guard():
            for _ in range(3):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    self._remove_stale()
                    continue
                self._write(fd)
                self.held = True
                return self.stale_pid
        raise LockedError(
            f"Could not take the selfcode lock {self.path}; remove it if no run is active."
        )

    def _remove_stale(self) -> None:
        """Remove the lock file of a dead (or half-written) owner; LockedError if it lives."""
        try:
            data = self._read(self.path)
        except FileNotFoundError:
            return  # released meanwhile: the next attempt creates it
        if data is not None:
            holder = self._describe(data)
            if holder.alive:
                raise LockedError(_busy_message(holder)) from None
            self.stale_pid = holder.pid
        self.took_over = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _write(self, fd: int) -> None:
        """Fill the new lock file with who holds it, then close it."""
        pid = os.getpid()
        content = {
            "pid": pid,
            # With the start time, a later run can tell this process from another that was
            # given the same pid after it died.
            "start": process_start(pid),
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "token": self._token,
        }
        try:
            os.write(fd, (json.dumps(content) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give the lock up; does nothing if it is not held, or was broken by someone else."""
        if not self.held:
            return
        self.held = False
        with self._guard():
            try:
                data = self._read(self.path)
            except FileNotFoundError:
                return
            if data is not None and data.get("token") == self._token:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _busy_message(holder: LockHolder) -> str:
    where = f" on {holder.host}" if holder.host and holder.host != socket.gethostname() else ""
    return (
        f"Another selfcode run (pid {holder.pid}{where}) is working on this repository; "
        "wait for it or stop it."
    )
