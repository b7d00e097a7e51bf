"""What runs on a node of a Ray cluster: one actor per node (`NodeJudge`, started by
executors/ray.py) judging candidates in that node's own hardened Docker sandboxes.

The actor is given only what judging needs (`NodeSpec`: the sandbox's and the gate's settings,
the benchmarks, the baseline's dependency declarations, the wheelhouse they were resolved to),
never the model's settings, the API key or the driver's environment; it runs with the raylet's
environment, and its sandboxes with their fixed allowlist (sandbox/container.py).

Honest measurement: every judge of the actor shares the process-wide `TimingSlot`, and the
actor holds the node's one `selfcode_timing` resource, so no two CPU-time runs share a node. It
calibrates once, on the run's baseline, in its own sandbox: a candidate's paired measurements
and the calibration they are compared with come from the same node. An accepted candidate is
re-checked in a fresh sandbox on the same node.

The image is the driver's tag when the node's base image is the same; a node without it builds
it from the wheelhouse the driver put in the object store (fetched only then), never from the
index.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from selfcode import __version__, resources
from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.executors.base import rechecked
from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge
from selfcode.gate.verdict import Verdict
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.container import DockerSandbox
from selfcode.sandbox.deps import DependencySet, wheelhouse_dir
from selfcode.sandbox.engine import docker_client
from selfcode.sandbox.image import (
    base_image_of,
    build_image,
    ensure_base_image,
    ensure_image,
    image_exists,
    image_tag,
    python_info,
)
from selfcode.sandbox.leftovers import LABEL_PID, LABEL_RUN, cleanup_dead_runs
from selfcode.sandbox.results import TestsRun
from selfcode.sandbox.slots import process_timing_slot
from selfcode.sandbox.trees import Trees
from selfcode.search.pool import Baseline, JudgePool

_WHEELHOUSE_FILES = ("requirements.txt", ".complete")


@dataclass(frozen=True)
class NodeSpec:
    """Everything a node is given for the run (and nothing else travels)."""

    run_id: str
    sandbox: SandboxConfig
    gate: GateConfig
    benchmarks: dict[str, list[str]]
    deps: DependencySet
    judges: int
    """Warm judges the node keeps: the candidates it judges at once."""
    harness: str
    """The driver's `harness_digest()`: a node with another selfcode judges otherwise."""
    wheelhouse: list[Any] = field(default_factory=list)
    """[ObjectRef of the wheelhouse's tar], or none: wrapped in a list so that Ray fetches it
    only for a node that lacks the image."""


@dataclass(frozen=True)
class Tree:
    """A baseline as it travels: its key, its tar in the object store, its known tests."""

    key: str
    ref: list[Any]  # [ObjectRef of the tar]: fetched once per key and node
    tests: TestsRun | None
    figures: dict[str, list[float]] | None = None
    """A node's figures when it was accepted: it must measure so as the baseline there too."""


@dataclass
class NodeVerdict:
    """What a node hands back: the verdict (re-checked when accepted), the accepted
    candidate's full-suite run, where, and the seconds spent judging on the node."""

    verdict: Verdict
    tests: TestsRun | None
    where: str
    seconds: float


def harness_digest() -> str:
    """selfcode's version and its harness's bytes: what a node must share with the driver."""
    digest = hashlib.sha256(__version__.encode())
    root = resources.harness_dir()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def wheelhouse_tar(folder: Path) -> bytes:
    """A wheelhouse folder (wheels, pins, completion mark) as one tar, for the object store."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file() and (path.suffix == ".whl" or path.name in _WHEELHOUSE_FILES):
                tar.add(str(path), arcname=path.name)
    return out.getvalue()


def _unpack_wheelhouse(data: bytes, target: Path) -> None:
    """The shipped wheelhouse where `build_image` looks for it (plain files only)."""
    partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.shipped-", dir=target.parent))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name
            if not member.isfile() or "/" in name or not (
                    name.endswith(".whl") or name in _WHEELHOUSE_FILES):
                continue
            source = tar.extractfile(member)
            if source is not None:
                (partial / name).write_bytes(source.read())
    try:
        partial.rename(target)
    except OSError:  # another actor unpacked it first
        with contextlib.suppress(OSError):
            for path in partial.iterdir():
                path.unlink()
            partial.rmdir()


def node_image(spec: NodeSpec, state_dir: Path, client: docker.DockerClient) -> str:
    """The image for `spec` on this node's engine: present, or built from the shipped
    wheelhouse (`SandboxError` when it cannot be)."""
    config = spec.sandbox
    if config.image:
        return ensure_image(config, state_dir, spec.deps, client=client)
    base = base_image_of(config, client)
    base_id = ensure_base_image(client, base, lambda _msg: None)
    info = python_info(client, base, base_id, state_dir / "wheelhouse")
    if not image_present(client, image_tag(spec.deps, base, base_id)):
        target = wheelhouse_dir(spec.deps, info, state_dir / "wheelhouse")
        if spec.wheelhouse and not (target / ".complete").is_file():
            import ray

            target.parent.mkdir(parents=True, exist_ok=True)
            _unpack_wheelhouse(ray.get(spec.wheelhouse[0]), target)
    return build_image(spec.deps, state_dir, base, client=client).tag


def image_present(client: docker.DockerClient, tag: str) -> bool:
    """Whether this node's engine has image `tag` (sandbox/image.py's check, said of a node)."""
    return image_exists(client, tag, doing="checking the sandbox image on a cluster node")


def node_state_dir() -> Path:
    """Where a node keeps its wheelhouse and image facts (never a repository's)."""
    root = os.environ.get("SELFCODE_NODE_STATE") or tempfile.gettempdir()
    path = Path(root) / f"selfcode-node-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def where_am_i() -> str:
    """`docker@<node ip>:<node id>`, for `Judged.where` and the verdict's `sandbox`."""
    import ray

    ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return f"docker@{ip}:{ray.get_runtime_context().get_node_id()[:12]}"


def remove_run_containers(run_id: str, pids: list[int]) -> list[str]:
    """The backstop on one node: this run's containers owned by one of `pids` (the run's
    actors, killed) or by a process that is gone; never another run's, nor the driver's."""
    client = docker_client()
    removed = [name for name in cleanup_dead_runs(client)]
    try:
        containers = client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return removed
    owners = {str(pid) for pid in pids}
    for container in containers:
        if (container.labels or {}).get(LABEL_PID) in owners:
            with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                container.remove(force=True, v=True)
                removed.append(str(container.name))
    return removed


class NodeJudge:
    """The run's judges on one node (a Ray actor: `ray.remote(NodeJudge)`, threaded)."""

    def __init__(self, spec: NodeSpec, first: Tree, quarantine: frozenset[str]) -> None:
        self.spec, self._first, self._quarantine = spec, first, quarantine
        self._lock = threading.Lock()  # the sandboxes, the tars, closing
        self._setup = threading.Lock()  # the first call's calibration
        self._boxes: list[Sandbox] = []
        self._pool: JudgePool | None = None
        self._tars: dict[str, bytes] = {}
        self._image = ""
        self._closed = False
        self.where = where_am_i()

    def info(self) -> tuple[str, int]:
        """Where this actor is, and its pid (whose containers the backstop may remove)."""
        return self.where, os.getpid()

    def judge(self, n: int, tree: Tree, quarantine: frozenset[str], diff: str) -> NodeVerdict:
        t0 = time.perf_counter()
        pool = self._ready()
        baseline = Baseline(tree.key, self._tar(tree), tree.tests, tree.figures)
        with pool.lend(baseline) as judge:
            judge.quarantined |= quarantine
            verdict = judge.judge(diff)
        tests = None
        if verdict.accepted:
            verdict, tests = self._recheck(pool.first, baseline, diff, quarantine)
            verdict = rechecked(verdict)
        verdict.sandbox = self.where
        return NodeVerdict(verdict, tests if verdict.accepted else None, self.where,
                           time.perf_counter() - t0)

    def shutdown(self) -> int:
        """Remove every container of this actor (the driver ends the run); how many."""
        with self._lock:
            self._closed = True
            boxes, self._boxes = self._boxes, []
        for box in boxes:
            with contextlib.suppress(Exception):
                box.close()
        return len(boxes)

    # --- on the node ---------------------------------------------------------------------------

    def _open(self) -> Sandbox:
        with self._lock:
            if self._closed:
                raise SandboxError("The run is ending; no sandbox is opened on this node.")
        box = DockerSandbox.start(self.spec.sandbox, self._image, self.spec.run_id,
                                  resources.harness_dir(), cleanup=False)
        with self._lock:
            self._boxes.append(box)
        return box

    def _ready(self) -> JudgePool:
        """The node's judges, calibrated once on the run's baseline (by the first call; the
        calls beside it wait for it)."""
        with self._setup:
            if self._pool is None:
                self._pool = self._calibrated_pool()
            return self._pool

    def _calibrated_pool(self) -> JudgePool:
        if harness_digest() != self.spec.harness:
            raise SandboxError(f"The node {self.where} has another selfcode than the driver's; "
                               "install the same version on every node.")
        t0 = time.perf_counter()
        client = docker_client()
        cleanup_dead_runs(client)
        self._image = node_image(self.spec, node_state_dir(), client)
        setup = {"image": time.perf_counter() - t0}
        t1 = time.perf_counter()
        box = self._open()
        setup["sandbox_start"] = time.perf_counter() - t1
        trees = Trees(box, self.spec.sandbox.timeout, process_timing_slot())
        judge = Judge(trees, self.spec.gate, self.spec.benchmarks, reopen=self._open,
                      setup=setup)
        judge.promote = False  # promotion is the re-check's, as on the driver
        judge.quarantined |= self._quarantine
        first = self._first
        if first.tests is None:
            judge.set_baseline(self._tar(first))
        else:
            judge.adopt_baseline(self._tar(first), first.tests)
        judge.calibrate()
        return JudgePool(judge, self.spec.judges, self._open, first.key)

    def _tar(self, tree: Tree) -> bytes:
        with self._lock:
            cached = self._tars.get(tree.key)
        if cached is not None:
            return cached
        import ray

        tar: bytes = ray.get(tree.ref[0])
        with self._lock:
            self._tars[tree.key] = tar
        return tar

    def _recheck(self, judge: Judge, baseline: Baseline, diff: str,
                 quarantine: frozenset[str]) -> tuple[Verdict, TestsRun | None]:
        """The accepted candidate again, in a fresh sandbox on this node, removed after."""
        t0 = time.perf_counter()
        box = self._open()
        try:
            fresh = judge.fork(box, time.perf_counter() - t0)
            fresh.quarantined |= quarantine
            if baseline.tests is None:  # the run's baseline, before its tests were known
                fresh.set_baseline(baseline.tar)
            else:  # a node's code is never tested again as a baseline (as on the driver)
                fresh.adopt_baseline(baseline.tar, baseline.tests, baseline.figures)
            return fresh.judge(diff), fresh.last_tests
        finally:
            with self._lock:
                if box in self._boxes:
                    self._boxes.remove(box)
            box.close()
