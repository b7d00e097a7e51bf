"""Fixtures and helpers for tests that need a real Docker engine.

Tests using them skip when no engine (or no base image) is available, and FAIL instead when
`SELFCODE_REQUIRE_DOCKER=1` (CI sets it, so a broken engine can never pass as "skipped").

The base image is `SELFCODE_BASE_IMAGE` (CI: the name printed by sandbox/bootstrap-base.sh),
else `selfcode-base:bookworm` when present, else `python:3.12-slim`. The sandbox image is built
once per session for selfcode's own repository (so its dependencies are proven installable);
the wheelhouse is cached in pytest's cache directory, and the image tag is reused while the
Dockerfile and the dependencies are unchanged.

Test modules load the fixtures with `pytest_plugins = ["docker_util"]`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.git.store import GitStore
from selfcode.sandbox.deps import dependencies_at
from selfcode.sandbox.docker import DockerSandbox, docker_available
from selfcode.sandbox.image import BuildResult, build_image
from selfcode.sandbox.leftovers import LABEL_RUN

REPO_ROOT = Path(__file__).resolve().parents[1]
HARNESS_DIR = REPO_ROOT / "sandbox"
DEFAULT_OFFLINE_BASE = "selfcode-base:bookworm"

# Small limits keep the hostile tests fast.
TEST_CONFIG = SandboxConfig(
    memory="256m",
    cpus=1.0,
    pids_limit=128,
    tmpfs_size="64m",
    tmp_size="32m",
    home_size="16m",
    timeout=10,
)


def docker_required() -> bool:
    return os.environ.get("SELFCODE_REQUIRE_DOCKER", "") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail when Docker is required."""
    if docker_required():
        pytest.fail(f"SELFCODE_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def pick_base_image(client: docker.DockerClient) -> str:
    named = os.environ.get("SELFCODE_BASE_IMAGE")
    candidates = [named] if named else [DEFAULT_OFFLINE_BASE, "python:3.12-slim"]
    for name in candidates:
        try:
            client.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            continue
    unavailable(
        f"no base image is present (tried {', '.join(candidates)}); run "
        "sandbox/bootstrap-base.sh and set SELFCODE_BASE_IMAGE"
    )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    reason = docker_available()
    if reason is not None:
        unavailable(reason)
    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    return pick_base_image(docker_client)


@pytest.fixture(scope="session")
def docker_state_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("selfcode-docker-state"))
    return tmp_path_factory.mktemp("selfcode-docker-state")


@pytest.fixture(scope="session")
def sandbox_build(
    docker_client: docker.DockerClient, base_image: str, docker_state_dir: Path
) -> BuildResult:
    """The sandbox image for selfcode's own repository, built once per session (if missing)."""
    try:
        with GitStore(REPO_ROOT) as store:
            deps = dependencies_at(store, "HEAD")
        return build_image(deps, docker_state_dir, base_image, client=docker_client)
    except SandboxError as exc:
        if docker_required():
            raise
        pytest.skip(f"the sandbox image could not be built: {exc}")
        raise AssertionError("unreachable") from exc


@pytest.fixture(scope="session")
def sandbox_image(sandbox_build: BuildResult) -> str:
    return sandbox_build.tag


@pytest.fixture
def sandbox(
    sandbox_image: str, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[DockerSandbox]:
    """A fresh, warm sandbox with small limits; removed after the test."""
    run_id = f"test-{os.getpid()}-{request.node.name}"[:60]
    box = DockerSandbox.start(TEST_CONFIG, sandbox_image, run_id, HARNESS_DIR, client=docker_client)
    try:
        yield box
    finally:
        box.close()


def containers_of_run(client: docker.DockerClient, run_id: str) -> list[str]:
    return [
        str(c.name)
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    ]
