"""Leftover sandboxes: what a container carries so that a later run can tell it is one.

Every sandbox container is labelled with the run, the pid and start time of the selfcode
process that owns it, the host, and its staging directory. `cleanup_dead_runs` (run by every
start) removes the containers, and staging directories, of owners that are gone; a live
owner's, or another host's, are never touched.

Images are labelled too (`LABEL_SANDBOX`, `LABEL_BUILD`, `LABEL_STATE`: the Dockerfile and
image.py set them), and `remove_build_leftovers` removes the untagged image a build leaves.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
from rich.filesize import decimal

from selfcode.processes import owner_alive
from selfcode.sandbox.engine import engine_error

LABEL_RUN = "selfcode.run"
LABEL_PID = "selfcode.pid"
LABEL_PIDSTART = "selfcode.pidstart"
LABEL_HOST = "selfcode.host"
LABEL_STAGE = "selfcode.stage"
STAGE_PREFIX = "selfcode-stage-"

LABEL_SANDBOX = "selfcode.sandbox"
"""On every layer of every stage of every build ("1"): only such images are ever removed."""
LABEL_BUILD = "selfcode.build"
"""One build's id, on its `deps`-stage image and its final image."""
LABEL_STATE = "selfcode.state"
"""The state dir of the repository a build was for (`sandbox prune` keeps to its own)."""


def cleanup_dead_runs(client: docker.DockerClient) -> list[str]:
    """Remove sandbox containers (and staging dirs) of selfcode processes that are gone.

    Only containers started from this host are considered; a container whose `selfcode.pid` is
    not alive (or was reused by another process) is a leftover. Returns the removed names.
    """
    try:
        containers = client.containers.list(all=True, filters={"label": LABEL_RUN})
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise engine_error("looking for leftover sandboxes", exc) from exc
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
        if stage and Path(stage).name.startswith(STAGE_PREFIX):
            shutil.rmtree(stage, ignore_errors=True)
    return removed


def _run_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    return owner_alive(pid, labels.get(LABEL_PIDSTART) or None)


def remove_build_leftovers(client: docker.DockerClient, build_id: str,
                           progress: Callable[[str], None] = lambda _: None) -> int:
    """Remove the untagged images build `build_id` left (its `deps` stage); the bytes freed.

    Only images carrying that build's own label are touched; one a container uses stays (the
    engine skips it), and a failure to clean up never fails the build."""
    try:
        pruned = client.images.prune(filters={"dangling": True,
                                              "label": f"{LABEL_BUILD}={build_id}"})
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return 0
    freed = int(pruned.get("SpaceReclaimed") or 0)
    if pruned.get("ImagesDeleted"):
        progress(f"removed the build's intermediate image ({decimal(freed)})")
    return freed
