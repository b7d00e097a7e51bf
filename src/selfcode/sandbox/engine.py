"""The Docker engine: the client, whether an engine answers, and its failures as one sentence.

Every module of the docker backend turns an engine failure into a `SandboxError` through
`engine_error` (the engine itself failed or went away) and `short_error` (the first line of what
the engine said), so the user reads the same sentence whichever step the engine failed in.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import docker
import docker.errors
import requests.exceptions

from selfcode.errors import SandboxError


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
    """An exec failed: the engine's failure, or the container stopped (and why, as the engine
    knows it); the second item says why the container is dead, None while it runs."""
    state: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        state = client.api.inspect_container(container_id).get("State", {})
    if state.get("Running"):
        detail = short_error(exc) if exc else "the command did not finish"
        return SandboxError(
            f"The Docker engine failed to run a command in the sandbox ({detail}); check "
            "`docker info` and try again."
        ), None
    why = "it ran out of memory" if state.get("OOMKilled") else "it was stopped or removed"
    return SandboxError(
        f"The sandbox container {name} stopped unexpectedly ({why}); start a new "
        "sandbox, and check `docker info` if this repeats."
    ), f"the container stopped unexpectedly ({why})"


def short_error(exc: BaseException) -> str:
    """The first line of an error; for the engine's errors, its explanation without the URL."""
    explanation = getattr(exc, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation else str(exc)
    lines = text.strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
