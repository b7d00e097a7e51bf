"""The Docker engine: the client, whether an engine answers, and its failures as one sentence.

Every module of the docker backend turns an engine failure into a `SandboxError` through
`engine_error` (the engine itself failed or went away) and `short_error` (the first line of what
the engine said), so the user reads the same sentence whichever step the engine failed in.
`container_error` tells that apart from a broken sandbox (`SandboxBroken`: the engine answers,
the container does not), which rejects a candidate instead of stopping the run.
"""

from __future__ import annotations

import os
import time
from typing import Any

import docker
import docker.errors
import requests.exceptions

from selfcode.errors import SandboxBroken, SandboxError


def docker_client(timeout: int = 60) -> docker.DockerClient:
    """A client for the engine of the environment (DOCKER_HOST...), or a SandboxError saying why."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise SandboxError(
            f"The Docker engine does not answer ({engine_problem(exc)}); start it (for example "
            "with scripts/provision-docker.sh) or use --sandbox local."
        ) from exc
    return client


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


def engine_problem(exc: BaseException) -> str:
    """What went wrong talking to the engine, in a few words (the socket's errno when known)."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, FileNotFoundError):
            return "its socket does not exist"
        if isinstance(item, PermissionError):
            return "permission denied on its socket; join the docker group or run as root"
        if isinstance(item, ConnectionRefusedError):
            return "the connection was refused"
        stack.extend([item.__cause__, item.__context__, *item.args])
    return short_error(exc)


def engine_error(doing: str, exc: BaseException) -> SandboxError:
    """The one sentence for a failure of the engine itself (not of what it was asked to do)."""
    verb = "failed" if isinstance(exc, docker.errors.APIError) else "stopped answering"
    return SandboxError(
        f"The Docker engine {verb} while {doing} ({engine_problem(exc)}); check that it "
        "runs (`docker info`) and run selfcode again."
    )


def container_error(
    client: docker.DockerClient, container_id: str, name: str, exc: BaseException | None
) -> tuple[SandboxError, str | None]:
    """An exec failed or never finished: the engine's failure, or the sandbox's.

    The engine not answering is a plain `SandboxError` (it stops the run). A container that is
    gone, stopped, or running but unable to run a command, while the engine answers, is a
    `SandboxBroken` (what ran in it is to blame); the second item then says why it is dead.
    """
    try:
        state: dict[str, Any] = client.api.inspect_container(container_id).get("State") or {}
    except docker.errors.NotFound:
        state = {"Removed": True}
    except (docker.errors.APIError, requests.exceptions.RequestException, OSError) as failure:
        return engine_error("running a command in the sandbox", failure), None
    if state.get("Running"):
        detail = short_error(exc) if exc else "a command's output ended but it did not finish"
        why = f"it can no longer run a command: {detail}"
    elif state.get("OOMKilled"):
        why = "it ran out of memory"
    elif state.get("Removed"):
        why = "it was removed"
    else:
        why = f"it was stopped or killed, exit code {state.get('ExitCode', '?')}"
    return SandboxBroken(
        f"The sandbox container {name} stopped unexpectedly ({why}); start a new "
        "sandbox, and check `docker info` if this repeats."
    ), f"the container stopped unexpectedly ({why})"


def container_stopped(client: docker.DockerClient, container_id: str, settle: float = 2.0) -> bool:
    """True once the engine reports the container stopped or gone, within `settle` seconds.

    Its processes die a moment before its state says so; asked right after a command was
    killed, the state needs that moment. False also when the engine cannot say.
    """
    deadline = time.monotonic() + settle
    while True:
        try:
            state = client.api.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            return True
        except (docker.errors.APIError, requests.exceptions.RequestException, OSError):
            return False
        if not state.get("Running"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def short_error(exc: BaseException) -> str:
    """The first line of an error; for the engine's errors, its explanation without the URL."""
    explanation = getattr(exc, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation else str(exc)
    lines = text.strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
