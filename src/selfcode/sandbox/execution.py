"""Running commands in a docker sandbox: exec, its output, its exit, and the watchdog.

Each command runs as `env -i <environment> sh -c WRAPPER timeout -k 5 T argv...` through the
low-level exec API. The wrapper kills every uid-1000 process left over from an earlier command
(`kill -9 -1`: a `setsid` daemon cannot survive into the next command), runs the command under
coreutils `timeout` (TERM at T, KILL 5 s later), kills every uid-1000 process again, and appends
one trailer line to stderr with the cgroup's `oom_kill` and pids `max` counters before and after,
which the host strips and uses to name what happened: exit 124/137 past the timeout is a timeout,
a grown oom_kill counter (or, counters unreadable, exit 137 before the timeout) is out of memory,
fork failures at the pids limit add a sentence to stderr. stdout and stderr are each capped at
`MAX_OUTPUT` bytes (the rest is read and dropped, and a sentence on stderr says how much).

A host-side watchdog kills the whole container when an exec has not returned `WATCHDOG_GRACE`
seconds after its timeout plus the kill delay (a process stuck in the kernel, a wrapper killed
while something holds its output open). The command is reported as timed out and the sandbox is
DEAD: every later `exec` raises `SandboxBroken`, and the caller must start a new sandbox (the
trees in /work are gone with the container); so does an exec whose container died under it.
Silence alone never fails an exec: the socket has no read timeout shorter than the watchdog's.
`ContainerExec` is this half of `DockerSandbox`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors
import requests.exceptions

from selfcode.config import SandboxConfig
from selfcode.errors import SandboxBroken, SandboxError
from selfcode.sandbox.base import ExecResult
from selfcode.sandbox.engine import container_error, container_stopped, engine_error
from selfcode.sandbox.streams import (
    Capture,
    ExecRun,
    close_socket,
    delta,
    frames,
    grew,
    parse_int,
    split_trailer,
)

MAX_OUTPUT = 8 * 1024 * 1024
"""Bytes of stdout and of stderr kept per command; the rest is read and dropped."""
KILL_AFTER = 5
"""Seconds between `timeout`'s TERM and its KILL."""
WATCHDOG_GRACE = 10.0
"""Seconds past timeout + KILL_AFTER before the host kills the whole container."""
READ_MARGIN = 30.0  # seconds past the watchdog before reading a command's output gives up

SANDBOX_USER = "1000:1000"
JUDGE_USER = "0:0"
"""selfcode's harness: root with SETUID, SETGID and KILL only, so it can demote candidates."""
ROOT = "/work"

_TAIL_KEEP = 64 * 1024
_OOM_FILES = "/sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control"
_PIDS_FILES = "/sys/fs/cgroup/pids.events /sys/fs/cgroup/pids/pids.events"
# POSIX sh (dash). Only builtins after the command, so it still works when a fork bomb has used
# up every pid: `kill` and `read` need no new process. `kill -9 -1` reaches only the processes of
# the container's own pid namespace (never pid_mode="host"), and spares pid 1 and the caller.
_READ = """r() { v=-; k0=$1; shift; for f in "$@"; do if [ -r "$f" ]; then
  while read -r k n rest; do if [ "$k" = "$k0" ]; then v=$n; fi; done < "$f"; fi; done; }"""
_WRAPPER = f"""
kill -9 -1 2>/dev/null
{_READ}
r oom_kill {_OOM_FILES}; o0=$v
r max {_PIDS_FILES}; p0=$v
t=$1; shift
timeout -k {KILL_AFTER} "$t" "$@"
rc=$?
kill -9 -1 2>/dev/null
r oom_kill {_OOM_FILES}; o1=$v
r max {_PIDS_FILES}; p1=$v
printf '%s rc=%s oom=%s,%s pids=%s,%s\\n' '@@selfcode-exec@@' "$rc" "$o0" "$o1" "$p0" "$p1" >&2
exit $rc
"""
# The judge's wrapper: no `kill -9 -1` (as root it would reach the container's keeper); the
# harness kills every candidate process itself, as the candidate uid.
_JUDGE_WRAPPER = "\n".join(line for line in _WRAPPER.splitlines() if "kill -9 -1" not in line)
_COUNTERS = f"""
{_READ}
r oom_kill {_OOM_FILES}; o=$v
r max {_PIDS_FILES}; p=$v
echo "$o $p"
"""


class ContainerExec:
    """Runs commands in a started container; `container.DockerSandbox` adds the life cycle."""

    @property
    def broken(self) -> str | None:
        """Set once a command wedged or killed the container (the watchdog fired, it died)."""
        return self._dead

    client: docker.DockerClient
    container_id: str
    name: str
    config: SandboxConfig
    _closed: bool
    _dead: str | None
    _counters: tuple[int | None, int | None]

    def _execute(
        self, argv: Sequence[str], timeout: float, cwd: str | None, environment: dict[str, str],
        judge: bool = False,
    ) -> ExecResult:
        """Run `argv` as uid 1000 in exactly `environment` (the caller holds `_exec_lock`).

        `judge`: as JUDGE_USER, with `environment` set by the engine, not on a command line
        (/proc/PID/cmdline is world-readable; a root process's environ is not).
        """
        if judge:
            cmd = ["/bin/sh", "-c", _JUDGE_WRAPPER, "selfcode-exec", f"{timeout:.3f}", *argv]
        else:
            cmd = [
                "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
                "/bin/sh", "-c", _WRAPPER, "selfcode-exec", f"{timeout:.3f}", *argv,
            ]  # fmt: skip
        run = self._run(cmd, cwd or ROOT, timeout + KILL_AFTER + WATCHDOG_GRACE,
                        JUDGE_USER if judge else SANDBOX_USER, environment if judge else None)
        if run.watchdog_fired:
            grace = f"{KILL_AFTER + WATCHDOG_GRACE:g}s"
            self._dead = (f"a command overran its {timeout:g}s timeout by more than {grace} "
                          "and the container was killed")
            note = (f"\n[selfcode sandbox] the command did not return within {timeout:g}s + "
                    f"{grace}; the container was killed.\n")
            return ExecResult(exit_code=-9, stdout=run.stdout.value(),
                              stderr=run.stderr.value() + note.encode(), duration=run.duration,
                              timed_out=True, killed_reason="timeout")
        return self._interpret(run, timeout)

    def _run(self, cmd: list[str], workdir: str, watchdog_after: float,
             user: str = SANDBOX_USER, environment: dict[str, str] | None = None) -> ExecRun:
        api = self.client.api
        start = time.perf_counter()
        try:
            exec_id = api.exec_create(
                self.container_id,
                cmd,
                stdout=True,
                stderr=True,
                stdin=False,
                tty=False,
                user=user,
                workdir=workdir,
                environment=environment,
            )["Id"]
            sock: Any = api.exec_start(exec_id, socket=True)
            # The client's own read timeout (60 s) would cut a command that is merely quiet
            # (a long benchmark run): silence is the command timeout's and the watchdog's to
            # judge. This limit only backs up a watchdog that could not shut the socket.
            with contextlib.suppress(Exception):
                getattr(sock, "_sock", sock).settimeout(watchdog_after + READ_MARGIN)
        except docker.errors.APIError as exc:
            raise self._container_error(exc) from exc
        except requests.exceptions.RequestException as exc:
            raise engine_error("running a command in the sandbox", exc) from exc

        stdout, stderr = Capture(MAX_OUTPUT), Capture(MAX_OUTPUT, tail=_TAIL_KEEP)
        fired = threading.Event()
        watchdog = threading.Timer(watchdog_after, self._watchdog, args=(sock, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            for stream, data in frames(sock):
                (stderr if stream == 2 else stdout).add(data)
        except OSError as exc:
            if not fired.is_set() and not self._closed:
                # The stream broke: the engine went away, or the container under it did.
                raise self._container_error(exc) from exc
        finally:
            watchdog.cancel()
            close_socket(sock)
        duration = time.perf_counter() - start
        if fired.is_set():
            return ExecRun(None, stdout, stderr, duration, watchdog_fired=True)
        if self._closed:
            raise SandboxError("The sandbox was closed while a command was running.")
        return ExecRun(self._exit_code(exec_id), stdout, stderr, duration)

    def _exit_code(self, exec_id: str) -> int:
        deadline = time.monotonic() + 10
        delay = 0.0005
        while True:
            try:
                info = self.client.api.exec_inspect(exec_id)
            except docker.errors.APIError as exc:
                raise self._container_error(exc) from exc
            except requests.exceptions.RequestException as exc:
                raise engine_error("running a command in the sandbox", exc) from exc
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                raise self._container_error(None)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _watchdog(self, sock: Any, fired: threading.Event) -> None:
        fired.set()
        killer = threading.Thread(target=self._kill_quietly, daemon=True)
        killer.start()
        killer.join(5)
        # Unblocks the reader even when the engine itself hangs.
        with contextlib.suppress(Exception):
            getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)

    def _kill_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.client.api.kill(self.container_id)

    def _interpret(self, run: ExecRun, timeout: float) -> ExecResult:
        assert run.exit_code is not None
        code = run.exit_code
        stderr, trailer, stderr_total = split_trailer(run.stderr)
        oom_grew: bool | None = None
        pids_failed = 0
        if trailer is not None and trailer.rc == code:
            oom_grew = grew(trailer.oom_before, trailer.oom_after)
            pids_failed = delta(trailer.pids_before, trailer.pids_after)
            self._counters = (trailer.oom_after, trailer.pids_after)
        elif code != 0:
            # No trustworthy trailer (the wrapper itself was killed): read the counters now.
            before = self._counters
            now = self._read_counters()
            if now is not None:
                oom_grew = grew(before[0], now[0])
                pids_failed = delta(before[1], now[1])
                self._counters = now

        stdout = run.stdout.value()
        if trailer is None and code in (126, 127) and stdout.startswith(b"OCI runtime exec failed"):
            # The engine could not start the command at all (a missing cwd...): that is stderr.
            stderr, stdout = stderr + stdout, b""
        notes: list[bytes] = []
        timed_out = False
        killed_reason: str | None = None
        if oom_grew and code != 0:
            killed_reason = "out of memory"
        elif code in (124, 137) and run.duration >= timeout:
            timed_out, killed_reason = True, "timeout"
        elif code == 137 and oom_grew is None:
            # Counters unreadable: SIGKILL before the timeout is, in practice, the OOM killer.
            killed_reason = "out of memory"
        if pids_failed and code != 0:
            notes.append(
                f"[selfcode sandbox] the process limit ({self.config.pids_limit}) was reached: "
                f"{pids_failed} process creations failed.".encode()
            )
        for label, total in (("stdout", run.stdout.total), ("stderr", stderr_total)):
            if total > MAX_OUTPUT:
                notes.append(
                    f"[selfcode sandbox] {label} truncated: kept {MAX_OUTPUT} of {total} "
                    "bytes.".encode()
                )
        if notes:
            stderr = stderr + b"\n" + b"\n".join(notes) + b"\n"
        return ExecResult(exit_code=code, stdout=stdout, stderr=stderr, duration=run.duration,
                          timed_out=timed_out, killed_reason=killed_reason)

    def _read_counters(self) -> tuple[int | None, int | None] | None:
        try:
            run: ExecRun | None = self._run(["/bin/sh", "-c", _COUNTERS], ROOT, 15.0)
        except SandboxBroken:
            raise  # the wrapper died with its container: not a command's failure to interpret
        except SandboxError:
            run = None
        if run is None or run.watchdog_fired or run.exit_code != 0:
            # The command and this probe both died: was it the container that died under them?
            if container_stopped(self.client, self.container_id):
                raise self._container_error(None)
            return None
        parts = run.stdout.value().split()
        if len(parts) != 2:
            return None
        return parse_int(parts[0]), parse_int(parts[1])

    def _container_error(self, exc: BaseException | None) -> SandboxError:
        error, dead = container_error(self.client, self.container_id, self.name, exc)
        self._dead = dead or self._dead
        return error


# --- helpers ---------------------------------------------------------------------------------


