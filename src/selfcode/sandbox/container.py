"""The docker sandbox's container: one hardened, warm container per sandbox, and its life cycle.

    with DockerSandbox.start(config, image, run_id, harness_dir) as sandbox:
        sandbox.exec(["python", "-c", "print(1)"], timeout=10)

Hardening (all on, none optional): no network (`network_mode="none"`), read-only root
filesystem, writable size-capped tmpfs only at /work, /tmp, /home/sandbox and the judge's /judge
(`nosuid,nodev`), commands run as uid 1000, every capability dropped but SETUID, SETGID and KILL,
`no-new-privileges`, pids, memory (= memory + swap) and CPU limits, `init=True`, and an
environment built from a fixed allowlist: nothing of the host's environment (API keys, tokens)
ever enters the container. The container's own processes (tini and `sleep infinity`) run as
root: the `kill -9 -1` of each uid-1000 command (see execution.py) cannot take the container
down, and an exec as root gets the three capabilities only when the container's user is root
(the engine gives an exec the capabilities of the container's own process).

The judge and the judged: selfcode's harness alone runs as root (`exec(judge=True)`), and the
three capabilities are what it needs to start every candidate process as uid 1000 and to kill
them all. A uid-1000 process has no capability (no-new-privileges: none can be gained), so it
cannot signal or ptrace the harness nor read its /proc fds or environment. /judge is root's
(0755; the harness keeps its private files in a 0700 directory there and the judged trees
read-only), so a candidate can neither forge the evidence nor change a tree between runs.

Files come in through `stage()` into a private host directory bind-mounted READ-ONLY at /in
(put_archive cannot write into tmpfs mounts reliably, and a read-only bind mount lets nothing
flow back to the host); selfcode's harness directory is bind-mounted read-only at /opt/selfcode.

Cleanup: `close()` (also `__exit__`, so Ctrl-C propagating through a `with` block) force-removes
the container and the host staging directory; a sandbox that is garbage-collected or still open
at interpreter exit is removed the same way (weakref.finalize). Every container carries
`selfcode.run`, `selfcode.pid`, `selfcode.pidstart` and `selfcode.host` labels, and
`cleanup_dead_runs()` (run by every `start`) removes containers whose selfcode process is gone
(a SIGKILLed or SIGTERMed selfcode leaves its container until then).

The engine must be able to bind-mount host paths (a local engine, or Docker Desktop with the
temp directory shared), which rules out a remote DOCKER_HOST.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Ulimit

from selfcode.config import SandboxConfig
from selfcode.errors import SandboxBroken, SandboxError
from selfcode.processes import process_start
from selfcode.sandbox.base import ExecResult
from selfcode.sandbox.engine import docker_client, engine_error, short_error
from selfcode.sandbox.execution import ROOT, SANDBOX_USER, ContainerExec
from selfcode.sandbox.leftovers import (
    LABEL_HOST,
    LABEL_PID,
    LABEL_PIDSTART,
    LABEL_RUN,
    LABEL_STAGE,
    STAGE_PREFIX,
    cleanup_dead_runs,
)
from selfcode.sandbox.staging import unpack_tree

KEEPER_USER = "0:0"
HOME = "/home/sandbox"
IN_DIR = "/in"
HARNESS_MOUNT = "/opt/selfcode"
JUDGE_DIR = "/judge"
PYTHON = "/opt/venv/bin/python"


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



def _remove(client: docker.DockerClient, container_id: str, stage_root: Path) -> None:
    """Force-remove a sandbox's container and staging directory; never raises."""
    # NotFound is an APIError. When the engine is gone or busy, the next start's
    # cleanup_dead_runs removes the container.
    with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
        client.api.remove_container(container_id, force=True, v=True)
    shutil.rmtree(stage_root, ignore_errors=True)


class DockerSandbox(ContainerExec):
    """A `Sandbox` in one warm, hardened container. Create it with `DockerSandbox.start`."""

    kind = "docker"
    isolated = True
    root = ROOT
    python = PYTHON
    harness = f"{HARNESS_MOUNT}/harness.py"
    inbox = IN_DIR
    judge_dir = JUDGE_DIR
    candidate_user: str | None = SANDBOX_USER
    # Every directory uid 1000 can write, emptied (as uid 1000) before each measured process.
    fresh_dirs: tuple[str, ...] = ("/tmp", HOME, "/dev/shm", "/dev/mqueue", ROOT)
    cpu_meter = "cgroup"
    integrity_gaps: tuple[str, ...] = ()

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
        _check_image(client, image)
        outer, stage_dir = _make_stage_dir()
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
                image, name=name, labels=labels,
                **_hardened(config, stage_dir, harness_dir),
            )  # fmt: skip
            container.start()
        except BaseException as exc:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            shutil.rmtree(outer, ignore_errors=True)
            if isinstance(exc, docker.errors.APIError):
                raise SandboxError(
                    "The Docker engine could not start the sandbox container "
                    f"({short_error(exc)}); check `docker info` and that the engine can "
                    f"bind-mount {tempfile.gettempdir()}."
                ) from exc
            if isinstance(exc, requests.exceptions.RequestException):
                raise engine_error("starting the sandbox", exc) from exc
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
        judge: bool = False,
    ) -> ExecResult:
        """Run `argv` as uid 1000 with `timeout`; everything it started dies when it returns.

        `judge`: run selfcode's harness as root, `env` handed over by the engine."""
        if not argv:
            raise ValueError("exec needs a command")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        environment = self._environment(env)
        with self._exec_lock:
            self._check_usable()
            return self._execute(argv, timeout, cwd, environment, judge)

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
            raise SandboxBroken(
                f"The sandbox is unusable: {self._dead}; start a new sandbox and load the "
                "trees again."
            )


# --- starting and cleanup ----------------------------------------------------------------------


def _check_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"The sandbox image {image} does not exist; build it with `selfcode sandbox build`."
        ) from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise engine_error("starting the sandbox", exc) from exc


def _make_stage_dir() -> tuple[Path, Path]:
    """A private host directory for /in: (the outer one to remove, the one to bind-mount)."""
    outer = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX))
    # Other users of the host may traverse but not list `outer`; the container sees only
    # the randomly named directory inside it.
    outer.chmod(0o711)
    stage_dir = outer / secrets.token_hex(16)
    stage_dir.mkdir(mode=0o755)
    stage_dir.chmod(0o755)
    return outer, stage_dir


def _hardened(config: SandboxConfig, stage_dir: Path, harness_dir: Path) -> dict[str, Any]:
    """`containers.create` arguments: every hardening flag of the module docstring."""
    return {
        "entrypoint": ["sleep"],
        "command": ["infinity"],
        "detach": True,
        "init": True,
        "user": KEEPER_USER,
        "working_dir": ROOT,
        "hostname": "sandbox",
        "environment": dict(BASE_ENV),
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {
            ROOT: f"rw,exec,nosuid,nodev,size={config.tmpfs_size},uid=1000,gid=1000,mode=0755",
            JUDGE_DIR: f"rw,exec,nosuid,nodev,size={config.tmpfs_size},mode=0755",
            "/tmp": f"rw,exec,nosuid,nodev,size={config.tmp_size},mode=1777",
            HOME: f"rw,noexec,nosuid,nodev,size={config.home_size},uid=1000,gid=1000,mode=0700",
        },
        "volumes": {
            str(stage_dir): {"bind": IN_DIR, "mode": "ro"},
            str(harness_dir): {"bind": HARNESS_MOUNT, "mode": "ro"},
        },
        "cap_drop": ["ALL"],
        # Only for the harness (root): demote candidate processes, then kill them all. Without
        # DAC_OVERRIDE, FOWNER or CHOWN even root touches only what it owns or may read.
        "cap_add": ["SETUID", "SETGID", "KILL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": config.pids_limit,
        "mem_limit": config.memory,
        "memswap_limit": config.memory,
        "nano_cpus": int(config.cpus * 1e9),
        "shm_size": "64m",
        "ulimits": [Ulimit(name="core", soft=0, hard=0)],
        "log_config": LogConfig(type="none"),
        "stdin_open": False,
        "tty": False,
    }


def _is_host_secret(value: str) -> bool:
    """True when `value` is the value of a host variable whose name looks like a credential."""
    if len(value) < 8:
        return False
    return any(
        value == host_value and _SECRET_NAME.search(name)
        for name, host_value in os.environ.items()
    )


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:40] or "run"
