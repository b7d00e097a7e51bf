"""The docker backend: one hardened, warm container per sandbox, driven with `docker exec`.

    with DockerSandbox.start(config, image, run_id, harness_dir) as sandbox:
        sandbox.exec(["python", "-c", "print(1)"], timeout=10)

Hardening (all on, none optional): no network (`network_mode="none"`), read-only root
filesystem, writable size-capped tmpfs only at /work, /tmp and /home/sandbox (`nosuid,nodev`),
commands run as uid 1000, every capability dropped, `no-new-privileges`, pids, memory (= memory +
swap) and CPU limits, `init=True`, and an environment built from a fixed allowlist: nothing of
the host's environment (API keys, tokens) ever enters the container.

Files come in through `stage()`: the host writes them into a private directory that is
bind-mounted READ-ONLY at /in (`docker cp`/put_archive cannot write into tmpfs mounts reliably,
and a read-only bind mount lets nothing flow back to the host). selfcode's harness directory is
bind-mounted read-only at /opt/selfcode.

How `exec` works. Each command runs as `env -i <allowlist> sh -c WRAPPER timeout -k 5 T argv...`
through the low-level exec API. The wrapper

* kills every uid-1000 process left over from an earlier command first (`kill -9 -1`: a
  `setsid` daemon of the previous candidate cannot survive into the next command),
* runs the command under coreutils `timeout` (TERM at T seconds, KILL 5 s later),
* kills every uid-1000 process again (the command's daemons and fork bombs die with it),
* appends one trailer line to stderr with the container's cgroup counters (`oom_kill`, pids
  `max`) before and after, which the host strips and uses to name what happened.

The container's own processes (tini and `sleep infinity`) run as `nobody` (65534), so
`kill -9 -1` from uid 1000 cannot take the container down.

Results: exit 124/137 once the timeout had passed -> `timed_out=True, killed_reason="timeout"`;
the cgroup's oom_kill counter grew and the command failed (or, counters unreadable, exit 137
before the timeout) -> `killed_reason="out of memory"`; fork failures at the pids limit stay an
ordinary failure, with a sentence appended to stderr. stdout and stderr are streamed and each
capped at `MAX_OUTPUT` bytes (the rest is read and dropped, so a flood cannot exhaust the host's
memory; a sentence on stderr says how much was dropped).

A host-side watchdog kills the whole container when an exec has not returned `WATCHDOG_GRACE`
seconds after its timeout plus the kill delay (a process stuck in the kernel, a wrapper killed by
the candidate while something holds its output open). The command is then reported as timed out
and the sandbox is DEAD: every later `exec` raises `SandboxError` (no transparent restart: the
trees in /work are gone with the container, so the caller must start a new sandbox and load them
again).

Cleanup: `close()` (also `__exit__`, so Ctrl-C propagating through a `with` block) force-removes
the container and the host staging directory; a sandbox that is garbage-collected or still open
at interpreter exit is removed the same way (weakref.finalize). Every container carries
`selfcode.run`, `selfcode.pid`, `selfcode.pidstart` and `selfcode.host` labels, and
`cleanup_dead_runs()` (run by every `start`) removes containers whose selfcode process is gone
(a SIGKILLed or SIGTERMed selfcode leaves its container until then).

`exec` calls on one sandbox are serialized (the wrapper's `kill -9 -1` would kill a concurrent
command). The engine must be able to bind-mount host paths (a local engine, or Docker Desktop
with the temp directory shared), which rules out a remote DOCKER_HOST.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Ulimit

from selfcode import resources
from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.processes import owner_alive, process_start
from selfcode.run.events import Observer
from selfcode.sandbox.base import ExecResult
from selfcode.sandbox.image import (
    _engine_error,
    _short,
    docker_client,
    engine_problem,
    ensure_image,
)
from selfcode.sandbox.staging import unpack_tree

MAX_OUTPUT = 8 * 1024 * 1024
"""Bytes of stdout and of stderr kept per command; the rest is read and dropped."""
KILL_AFTER = 5
"""Seconds between `timeout`'s TERM and its KILL."""
WATCHDOG_GRACE = 10.0
"""Seconds past timeout + KILL_AFTER before the host kills the whole container."""

SANDBOX_USER = "1000:1000"
KEEPER_USER = "65534:65534"
ROOT = "/work"
HOME = "/home/sandbox"
IN_DIR = "/in"
HARNESS_MOUNT = "/opt/selfcode"
PYTHON = "/opt/venv/bin/python"

LABEL_RUN = "selfcode.run"
LABEL_PID = "selfcode.pid"
LABEL_PIDSTART = "selfcode.pidstart"
LABEL_HOST = "selfcode.host"
LABEL_STAGE = "selfcode.stage"

# The whole environment of every command; nothing is taken from the host.
BASE_ENV: dict[str, str] = {
    "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": HOME,
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
}
# Names of variables that hold credentials (OPENAI_API_KEY, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY...).
_SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?|AUTH)"
    r"($|_)",
    re.IGNORECASE,
)

_STAGE_PREFIX = "selfcode-stage-"
_TRAILER_MARK = b"@@selfcode-exec@@ "
_TRAILER = re.compile(
    rb"@@selfcode-exec@@ rc=(\d+) oom=([0-9-]+),([0-9-]+) pids=([0-9-]+),([0-9-]+)\n\Z"
)
_TAIL_KEEP = 64 * 1024
_OOM_FILES = "/sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control"
_PIDS_FILES = "/sys/fs/cgroup/pids.events /sys/fs/cgroup/pids/pids.events"
# POSIX sh (dash). Only builtins after the command, so it still works when a fork bomb has used
# up every pid: `kill` and `read` need no new process. `kill -9 -1` reaches only the processes of
# the container's own pid namespace (never pid_mode="host"), and spares pid 1 and the caller.
_WRAPPER = f"""
kill -9 -1 2>/dev/null
r() {{ v=-; k0=$1; shift; for f in "$@"; do if [ -r "$f" ]; then
  while read -r k n rest; do if [ "$k" = "$k0" ]; then v=$n; fi; done < "$f"; fi; done; }}
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
_COUNTERS = f"""
r() {{ v=-; k0=$1; shift; for f in "$@"; do if [ -r "$f" ]; then
  while read -r k n rest; do if [ "$k" = "$k0" ]; then v=$n; fi; done < "$f"; fi; done; }}
r oom_kill {_OOM_FILES}; o=$v
r max {_PIDS_FILES}; p=$v
echo "$o $p"
"""

def _remove(client: docker.DockerClient, container_id: str, stage_root: Path) -> None:
    """Force-remove a sandbox's container and staging directory; never raises."""
    # NotFound is an APIError. When the engine is gone or busy, the next start's
    # cleanup_dead_runs removes the container.
    with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
        client.api.remove_container(container_id, force=True, v=True)
    shutil.rmtree(stage_root, ignore_errors=True)


class DockerSandbox:
    """A `Sandbox` in one warm, hardened container. Create it with `DockerSandbox.start`."""

    kind = "docker"
    isolated = True
    root = ROOT
    python = PYTHON
    harness = f"{HARNESS_MOUNT}/harness.py"
    inbox = IN_DIR

    def __init__(
        self,
        client: docker.DockerClient,
        container_id: str,
        name: str,
        stage_dir: Path,
        config: SandboxConfig,
    ) -> None:
        self.client = client
        self.container_id = container_id
        self.name = name
        self.config = config
        self._stage_dir = stage_dir
        self._exec_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._closed = False
        self._dead: str | None = None
        self._counters: tuple[int | None, int | None] = (0, 0)
        # Runs once: on close(), when the object is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _remove, client, container_id, stage_dir.parent)

    # --- life cycle -----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        config: SandboxConfig,
        image: str,
        run_id: str,
        harness_dir: Path,
        *,
        client: docker.DockerClient | None = None,
        cleanup: bool = True,
    ) -> DockerSandbox:
        """Start one container from `image` and keep it warm; remove dead runs' leftovers first."""
        client = client or docker_client()
        if cleanup:
            cleanup_dead_runs(client)
        harness_dir = Path(harness_dir).resolve()
        if not harness_dir.is_dir():
            raise SandboxError(
                f"selfcode's harness directory {harness_dir} is missing; reinstall selfcode."
            )
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"The sandbox image {image} does not exist; build it with "
                "`selfcode sandbox build`."
            ) from None
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise _engine_error("starting the sandbox", exc) from exc

        outer = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX))
        # Other users of the host may traverse but not list `outer`; the container sees only
        # the randomly named directory inside it.
        outer.chmod(0o711)
        stage_dir = outer / secrets.token_hex(16)
        stage_dir.mkdir(mode=0o755)
        stage_dir.chmod(0o755)
        name = f"selfcode-{_safe(run_id)}-{secrets.token_hex(4)}"
        labels = {
            LABEL_RUN: run_id,
            LABEL_PID: str(os.getpid()),
            LABEL_PIDSTART: process_start(os.getpid()) or "",
            LABEL_HOST: socket.gethostname(),
            LABEL_STAGE: str(outer),
        }
        container = None
        try:
            container = client.containers.create(
                image,
                entrypoint=["sleep"],
                command=["infinity"],
                name=name,
                labels=labels,
                detach=True,
                init=True,
                user=KEEPER_USER,
                working_dir=ROOT,
                hostname="sandbox",
                environment=dict(BASE_ENV),
                network_mode="none",
                read_only=True,
                tmpfs={
                    ROOT: f"rw,exec,nosuid,nodev,size={config.tmpfs_size},"
                    "uid=1000,gid=1000,mode=0755",
                    "/tmp": f"rw,exec,nosuid,nodev,size={config.tmp_size},mode=1777",
                    HOME: f"rw,noexec,nosuid,nodev,size={config.home_size},"
                    "uid=1000,gid=1000,mode=0700",
                },
                volumes={
                    str(stage_dir): {"bind": IN_DIR, "mode": "ro"},
                    str(harness_dir): {"bind": HARNESS_MOUNT, "mode": "ro"},
                },
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=config.pids_limit,
                mem_limit=config.memory,
                memswap_limit=config.memory,
                nano_cpus=int(config.cpus * 1e9),
                shm_size="64m",
                ulimits=[Ulimit(name="core", soft=0, hard=0)],
                log_config=LogConfig(type="none"),
                stdin_open=False,
                tty=False,
            )
            container.start()
        except BaseException as exc:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            shutil.rmtree(outer, ignore_errors=True)
            if isinstance(exc, docker.errors.APIError):
                raise SandboxError(
                    f"The Docker engine could not start the sandbox container ({_short(exc)}); "
                    "check `docker info` and that the engine can bind-mount "
                    f"{tempfile.gettempdir()}."
                ) from exc
            if isinstance(exc, requests.exceptions.RequestException):
                raise _engine_error("starting the sandbox", exc) from exc
            raise
        return cls(client, str(container.id), name, stage_dir, config)

    def close(self) -> None:
        """Kill and remove the container and the host staging directory; idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (f"dead ({self._dead})" if self._dead else "warm")
        return f"<DockerSandbox {self.name} {state}>"

    # --- the protocol ---------------------------------------------------------------------------

    def stage(self, name: str, data: bytes) -> str:
        """Write `data` to /in/<name>: readable, never writable, inside the sandbox."""
        if not name or name in {".", ".."} or any(c in name for c in "/\\\0"):
            raise ValueError(f"invalid staging name: {name!r}")
        self._check_open()
        final = self._stage_dir / name
        tmp = self._stage_dir / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            tmp.chmod(0o444)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SandboxError(
                f"Could not stage {name} for the sandbox in {self._stage_dir} ({exc}); check the "
                "free space of the host's temporary directory."
            ) from exc
        return f"{IN_DIR}/{name}"

    def stage_tree(self, name: str, tar: bytes) -> str:
        """Unpack a tree on the host into the read-only staging mount: the candidate, which
        runs as the same uid as the harness, cannot change the baseline it is compared with."""
        if not name or name in {".", ".."} or any(c in name for c in "/\\\0"):
            raise ValueError(f"invalid staging name: {name!r}")
        self._check_open()
        unpack_tree(tar, self._stage_dir / name)
        return f"{IN_DIR}/{name}"

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run `argv` as uid 1000 with `timeout`; everything it started dies when it returns."""
        if not argv:
            raise ValueError("exec needs a command")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        environment = self._environment(env)
        cmd = [
            "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
            "/bin/sh", "-c", _WRAPPER, "selfcode-exec", f"{timeout:.3f}", *argv,
        ]  # fmt: skip
        with self._exec_lock:
            self._check_usable()
            run = self._run(cmd, cwd or ROOT, timeout + KILL_AFTER + WATCHDOG_GRACE)
            if run.watchdog_fired:
                self._dead = (
                    f"a command overran its {timeout:g}s timeout by more than "
                    f"{KILL_AFTER + WATCHDOG_GRACE:g}s and the container was killed"
                )
                note = (
                    f"\n[selfcode sandbox] the command did not return within {timeout:g}s + "
                    f"{KILL_AFTER + WATCHDOG_GRACE:g}s; the container was killed.\n"
                )
                return ExecResult(
                    exit_code=-9,
                    stdout=run.stdout.value(),
                    stderr=run.stderr.value() + note.encode(),
                    duration=run.duration,
                    timed_out=True,
                    killed_reason="timeout",
                )
            return self._interpret(run, timeout)

    # --- internals ------------------------------------------------------------------------------

    def _environment(self, extra: dict[str, str] | None) -> dict[str, str]:
        environment = dict(BASE_ENV)
        for key, value in (extra or {}).items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValueError(f"invalid environment variable name or value: {key!r}")
            if _SECRET_NAME.search(key) or _is_host_secret(value):
                raise SandboxError(
                    f"Refusing to pass the environment variable {key} into the sandbox: it looks "
                    "like a credential, and no secret of the host may enter the sandbox."
                )
            environment[key] = value
        return environment

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("The sandbox was already closed; start a new one.")

    def _check_usable(self) -> None:
        self._check_open()
        if self._dead:
            raise SandboxError(
                f"The sandbox is unusable: {self._dead}; start a new sandbox and load the "
                "trees again."
            )

    def _run(self, cmd: list[str], workdir: str, watchdog_after: float) -> _Run:
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
                user=SANDBOX_USER,
                workdir=workdir,
            )["Id"]
            sock: Any = api.exec_start(exec_id, socket=True)
        except docker.errors.APIError as exc:
            raise self._container_error(exc) from exc
        except requests.exceptions.RequestException as exc:
            raise _engine_error("running a command in the sandbox", exc) from exc

        stdout, stderr = _Capture(MAX_OUTPUT), _Capture(MAX_OUTPUT, tail=_TAIL_KEEP)
        fired = threading.Event()
        watchdog = threading.Timer(watchdog_after, self._watchdog, args=(sock, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            for stream, data in _frames(sock):
                (stderr if stream == 2 else stdout).add(data)
        except OSError as exc:
            if not fired.is_set() and not self._closed:
                raise _engine_error("running a command in the sandbox", exc) from exc
        finally:
            watchdog.cancel()
            _close_socket(sock)
        duration = time.perf_counter() - start
        if fired.is_set():
            return _Run(None, stdout, stderr, duration, watchdog_fired=True)
        if self._closed:
            raise SandboxError("The sandbox was closed while a command was running.")
        return _Run(self._exit_code(exec_id), stdout, stderr, duration)

    def _exit_code(self, exec_id: str) -> int:
        deadline = time.monotonic() + 10
        delay = 0.0005
        while True:
            try:
                info = self.client.api.exec_inspect(exec_id)
            except docker.errors.APIError as exc:
                raise self._container_error(exc) from exc
            except requests.exceptions.RequestException as exc:
                raise _engine_error("running a command in the sandbox", exc) from exc
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

    def _interpret(self, run: _Run, timeout: float) -> ExecResult:
        assert run.exit_code is not None
        code = run.exit_code
        stderr, trailer, stderr_total = _split_trailer(run.stderr)
        oom_grew: bool | None = None
        pids_failed = 0
        if trailer is not None and trailer.rc == code:
            oom_grew = _grew(trailer.oom_before, trailer.oom_after)
            pids_failed = _delta(trailer.pids_before, trailer.pids_after)
            self._counters = (trailer.oom_after, trailer.pids_after)
        elif code != 0:
            # No trustworthy trailer (the wrapper itself was killed): read the counters now.
            before = self._counters
            now = self._read_counters()
            if now is not None:
                oom_grew = _grew(before[0], now[0])
                pids_failed = _delta(before[1], now[1])
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
        return ExecResult(
            exit_code=code,
            stdout=stdout,
            stderr=stderr,
            duration=run.duration,
            timed_out=timed_out,
            killed_reason=killed_reason,
        )

    def _read_counters(self) -> tuple[int | None, int | None] | None:
        try:
            run = self._run(["/bin/sh", "-c", _COUNTERS], ROOT, 15.0)
        except SandboxError:
            return None
        if run.watchdog_fired or run.exit_code != 0:
            return None
        parts = run.stdout.value().split()
        if len(parts) != 2:
            return None
        return _int(parts[0]), _int(parts[1])

    def _container_error(self, exc: BaseException | None) -> SandboxError:
        """The container is gone or stopped: say why, as far as the engine knows."""
        state: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            state = self.client.api.inspect_container(self.container_id).get("State", {})
        if state.get("Running"):
            detail = _short(exc) if exc else "the command did not finish"
            return SandboxError(
                f"The Docker engine failed to run a command in the sandbox ({detail}); check "
                "`docker info` and try again."
            )
        why = "it ran out of memory" if state.get("OOMKilled") else "it was stopped or removed"
        self._dead = f"the container stopped unexpectedly ({why})"
        return SandboxError(
            f"The sandbox container {self.name} stopped unexpectedly ({why}); start a new "
            "sandbox, and check `docker info` if this repeats."
        )


# --- opening, cleanup and availability -------------------------------------------------------




def open_docker_sandbox(
    config: SandboxConfig,
    state_dir: Path,
    run_id: str,
    repo_root: Path,
    observer: Observer,
    quiet: bool = False,
) -> DockerSandbox:
    """Remove dead runs' leftovers, build the image if needed, start a warm sandbox."""
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

    image = ensure_image(config, state_dir, repo_root, client=client, progress=progress)
    return DockerSandbox.start(
        config, image, run_id, resources.harness_dir(), client=client, cleanup=False
    )


def base_image_present(base_image: str) -> bool:
    """True when the engine has `base_image` locally (False when it does not, or cannot say)."""
    try:
        client = docker.from_env(timeout=10)
        try:
            client.images.get(base_image)
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False
    return True



def cleanup_dead_runs(client: docker.DockerClient) -> list[str]:
    """Remove sandbox containers (and staging dirs) of selfcode processes that are gone.

    Only containers started from this host are considered; a container whose `selfcode.pid` is
    not alive (or was reused by another process) is a leftover. Returns the removed names.
    """
    try:
        containers = client.containers.list(all=True, filters={"label": LABEL_RUN})
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise _engine_error("looking for leftover sandboxes", exc) from exc
    host = socket.gethostname()
    removed: list[str] = []
    for container in containers:
        labels = container.labels or {}
        if labels.get(LABEL_HOST, host) != host or _run_alive(labels):
            continue
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.exceptions.RequestException):
            continue
        removed.append(str(container.name))
        stage = labels.get(LABEL_STAGE, "")
        if stage and Path(stage).name.startswith(_STAGE_PREFIX):
            shutil.rmtree(stage, ignore_errors=True)
    return removed


def docker_available() -> str | None:
    """None when a Docker engine answers; otherwise one sentence saying why not and what to do."""
    host = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        return (
            f"No Docker engine answers at {host} ({engine_problem(exc)}); start one (for "
            "example with scripts/provision-docker.sh) or use --sandbox local."
        )
    return None


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class _Run:
    exit_code: int | None
    stdout: _Capture
    stderr: _Capture
    duration: float
    watchdog_fired: bool = False


@dataclass(frozen=True)
class _Trailer:
    rc: int
    oom_before: int | None
    oom_after: int | None
    pids_before: int | None
    pids_after: int | None


class _Capture:
    """The first `limit` bytes of a stream (and, optionally, its last `tail` bytes)."""

    def __init__(self, limit: int, tail: int = 0) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self._tail_keep = tail
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
        if self._tail_keep:
            self.tail += data
            if len(self.tail) > 2 * self._tail_keep:
                del self.tail[: -self._tail_keep]

    def value(self) -> bytes:
        return bytes(self.head)


def _split_trailer(capture: _Capture) -> tuple[bytes, _Trailer | None, int]:
    """The stream without selfcode's trailer line, the trailer, and the stream's real length."""
    tail = bytes(capture.tail)
    index = tail.rfind(_TRAILER_MARK)
    match = _TRAILER.match(tail, index) if index >= 0 else None
    if match is None:
        return capture.value(), None, capture.total
    end = capture.total - (len(tail) - index)  # the stream's length without the trailer
    trailer = _Trailer(
        rc=int(match.group(1)),
        oom_before=_int(match.group(2)),
        oom_after=_int(match.group(3)),
        pids_before=_int(match.group(4)),
        pids_after=_int(match.group(5)),
    )
    return bytes(capture.head[: min(end, capture.limit)]), trailer, end


def _frames(sock: Any) -> Iterator[tuple[int, bytes]]:
    """Demultiplex docker's attach stream: 8-byte header (stream, size), then the payload."""
    reader = _buffered_reader(sock)
    while True:
        header = _read_exactly(reader, 8)
        if header is None:
            return
        stream, size = struct.unpack(">BxxxL", header)
        while size > 0:
            chunk = reader(min(size, 1 << 20))
            if not chunk:
                return
            size -= len(chunk)
            yield stream, chunk


def _buffered_reader(sock: Any) -> Any:
    """`read1` of the HTTP response's buffered reader (bytes it read past the headers included)."""
    response = getattr(sock, "_response", None)
    fp = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    if fp is not None and hasattr(fp, "read1"):
        return fp.read1
    if hasattr(sock, "recv"):
        return sock.recv
    return sock.read


def _read_exactly(read: Any, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _close_socket(sock: Any) -> None:
    with contextlib.suppress(Exception):
        sock.close()
    response = getattr(sock, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


def _int(text: bytes | str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _grew(before: int | None, after: int | None) -> bool | None:
    if before is None or after is None:
        return None
    return after > before


def _delta(before: int | None, after: int | None) -> int:
    if before is None or after is None:
        return 0
    return max(after - before, 0)


def _is_host_secret(value: str) -> bool:
    """True when `value` is the value of a host variable whose name looks like a credential."""
    if len(value) < 8:
        return False
    return any(
        value == host_value and _SECRET_NAME.search(name)
        for name, host_value in os.environ.items()
    )


def _run_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    return owner_alive(pid, labels.get(LABEL_PIDSTART) or None)


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:40] or "run"
