"""Judging on the nodes of a Ray cluster (`selfcode improve --executor ray --ray-address ADDR`).

The loop, the archive, the history, git and the model stay on the driver (this process); each
candidate is judged by one actor per node (`executors/node.py: NodeJudge`), pinned there
(`NodeAffinitySchedulingStrategy`, soft=False) and holding the node's one `selfcode_timing`
resource, so that all of a node's judging happens in one process whose `TimingSlot` keeps
CPU-time runs apart. Nothing of the driver's environment travels (no runtime_env): the actors
get the sandbox's and the gate's settings, the benchmarks and the baseline's dependency
declarations, the trees through the object store, and the wheelhouse (fetched only by a node
that lacks the image).

Faults: a node that dies under a candidate (its actor, raylet or objects lost) is dropped and
the candidate is retried once on another node; when that fails too, or no node is left, the
candidate is an `InfrastructureFailure` (neither accepted nor rejected) and the run goes on. A
node that joins later is picked up when no known node is free. `close()` (the run's end,
Ctrl-C) cancels what is outstanding, has each actor remove its containers, kills the actors,
and runs a backstop on every live node that removes this run's containers the actors owned.

Ray is optional (`pip install 'selfcode[ray]'`) and imported only here, when used.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfcode.errors import ConfigError, InfrastructureFailure, SandboxError, SelfcodeError
from selfcode.executors.base import Judged
from selfcode.executors.cluster import (
    NODE_RESOURCE,
    affinity,
    alive_nodes,
    connect,
    ray_module,
    ray_ready,
)
from selfcode.executors.node import (
    NodeJudge,
    NodeSpec,
    NodeVerdict,
    Tree,
    harness_digest,
    remove_run_containers,
    wheelhouse_tar,
)
from selfcode.gate.verdict import Goal
from selfcode.run.events import Observer
from selfcode.search.pool import Baseline, JudgePool

if TYPE_CHECKING:
    from selfcode.config import SandboxConfig
    from selfcode.gate.config import GateConfig
    from selfcode.run.context import Run
    from selfcode.sandbox.deps import DependencySet

__all__ = [  # the cluster's helpers too, which doctor/cluster.py imports from here
    "NODE_RESOURCE", "RayExecutor", "RaySetup", "alive_nodes", "connect", "node_spec",
    "ray_executor", "ray_module", "ship_wheelhouse",
]

_READY_SECONDS = 60.0  # an actor not up by then: its node's slot is another run's, or it is sick
_CLOSE_SECONDS = 30.0
_REDISCOVER_SECONDS = 10.0


class _NodeFault(Exception):
    """The node failed under the candidate (not the candidate's fault)."""


@dataclass
class _Node:
    node_id: str
    head: bool
    handle: Any
    where: str = ""
    pid: int = 0
    busy: int = 0


@dataclass
class _Refs:
    """What the driver put in the object store, by baseline key."""

    trees: dict[str, Any] = field(default_factory=dict)


class RayExecutor:
    """Judges candidates on the nodes of a Ray cluster; thread-safe."""

    def __init__(self, spec: NodeSpec, pool: JudgePool, first: Baseline, observer: Observer,
                 jobs: int, connected: bool) -> None:
        self.spec, self.pool, self.observer, self.jobs = spec, pool, observer, max(1, jobs)
        self._first = first
        self._connected = connected
        self._lock = threading.Lock()
        self._nodes: list[_Node] = []
        self._pids: dict[str, list[int]] = {}  # node id -> pids of this run's actors there
        self._outstanding: set[Any] = set()
        self._refs = _Refs()
        self._closed = False
        self._discovered = 0.0
        self.overheads: list[float] = []
        """Seconds per candidate between the driver's call and the verdict, beyond the node's
        own judging: serialisation, scheduling, the object store."""

    @classmethod
    def start(cls, setup: RaySetup, pool: JudgePool, first: Baseline,
              observer: Observer) -> RayExecutor:
        """Join the cluster and start an actor on each node that offers the timing slot."""
        connected = connect(setup.address)
        executor: RayExecutor | None = None
        try:
            wheelhouse = ship_wheelhouse(setup.sandbox, setup.state_dir, setup.deps)
            spec = node_spec(setup, pool.first.config, pool.first.benchmarks, wheelhouse)
            executor = cls(spec, pool, first, observer, setup.jobs, connected)
            executor._discover()
            if not executor._nodes:
                raise SandboxError(f"No node of the Ray cluster offers the {NODE_RESOURCE} "
                                   "resource; start each node with ray start --resources "
                                   f"'{{\"{NODE_RESOURCE}\": 1}}'.")
        except BaseException:
            if executor is not None:
                executor.close()
            elif connected:
                ray_module().shutdown()
            raise
        names = ", ".join(node.where for node in executor._nodes)
        observer.event("note", f"Judging on {len(executor._nodes)} Ray node(s): {names}.")
        return executor

    @property
    def goal(self) -> Goal:
        return self.pool.goal

    # --- judging -------------------------------------------------------------------------------

    def judge(self, n: int, baseline: Baseline, diff: str) -> Judged:
        # The driver's baseline runs settle the quarantine every node copies.
        self.pool.settle()
        quarantine = frozenset(self.pool.first.quarantined)
        tried: set[str] = set()
        failures: list[str] = []
        while len(tried) < 2:
            node = self._choose(tried)
            if node is None:
                break
            tried.add(node.node_id)
            self.observer.event("phase", f"judging on {node.where}", n=n)
            try:
                done = self._call(node, n, baseline, quarantine, diff)
            except _NodeFault as fault:
                failures.append(f"{node.where} failed under it ({fault})")
                self._drop(node)
                self.observer.event("note", f"Candidate {n}: {failures[-1]}.", n=n)
                continue
            return Judged(done.verdict, done.tests, done.where)
        what = "; then ".join(failures) or "no node of the Ray cluster was left to judge it"
        raise InfrastructureFailure(f"The cluster failed the candidate: {what}.")

    def _call(self, node: _Node, n: int, baseline: Baseline, quarantine: frozenset[str],
              diff: str) -> NodeVerdict:
        ray = ray_module()
        t0 = time.perf_counter()
        tree = self._tree(baseline)  # put in the object store once per baseline
        ref = node.handle.judge.remote(n, tree, quarantine, diff)
        with self._lock:
            self._outstanding.add(ref)
            node.busy += 1
        try:
            done: NodeVerdict = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, SelfcodeError) and not isinstance(cause, SandboxError):
                raise cause from None  # the run's to stop (a baseline refused, a setting)
            raise _NodeFault(_first_line(cause or exc)) from exc
        except ray.exceptions.RayError as exc:
            raise _NodeFault(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        finally:
            with self._lock:
                self._outstanding.discard(ref)
                node.busy -= 1
        with self._lock:
            self.overheads.append(max(0.0, time.perf_counter() - t0 - done.seconds))
        return done

    def _tree(self, baseline: Baseline) -> Tree:
        with self._lock:
            ref = self._refs.trees.get(baseline.key)
        if ref is None:
            ref = ray_module().put(baseline.tar)
            with self._lock:
                ref = self._refs.trees.setdefault(baseline.key, ref)
        figures = {name: list(values) for name, values in (baseline.figures or {}).items()}
        return Tree(baseline.key, [ref], baseline.tests, figures or None)

    def _choose(self, tried: set[str]) -> _Node | None:
        """The least busy live node not tried yet (the head last: it carries the driver)."""
        for attempt in range(2):
            with self._lock:
                if self._closed:
                    return None
                free = [node for node in self._nodes if node.node_id not in tried]
                if free:
                    return min(free, key=lambda node: (node.busy, node.head))
                stale = time.monotonic() - self._discovered > _REDISCOVER_SECONDS
            if attempt or not stale:
                return None
            self._discover()
        return None

    def _drop(self, node: _Node) -> None:
        with self._lock:
            if node in self._nodes:
                self._nodes.remove(node)
        with contextlib.suppress(Exception):
            ray_module().kill(node.handle, no_restart=True)

    # --- nodes ---------------------------------------------------------------------------------

    def _discover(self) -> None:
        """An actor on every live node with the timing resource that has none of ours."""
        ray = ray_module()
        self._discovered = time.monotonic()
        with self._lock:
            known = {node.node_id for node in self._nodes}
        first = Tree(self._first.key, [self._tree(self._first).ref[0]],
                     self._first.tests or self.pool.first.baseline_tests)
        quarantine = frozenset(self.pool.first.quarantined)
        started: list[_Node] = []
        # `shutdown` has a thread of its own: it runs however many candidates are in flight.
        actor_class = ray.remote(concurrency_groups={"control": 1})(NodeJudge)
        for info in alive_nodes():
            node_id = str(info["NodeID"])
            if node_id in known or float(info.get("Resources", {}).get(NODE_RESOURCE, 0)) < 1:
                continue
            handle = actor_class.options(
                num_cpus=0, resources={NODE_RESOURCE: 1}, scheduling_strategy=affinity(node_id),
                max_concurrency=max(self.jobs, self.spec.judges), max_restarts=0,
            ).remote(self.spec, first, quarantine)
            started.append(_Node(node_id, "node:__internal_head__" in info["Resources"], handle))
        ready = {node.node_id: node.handle.info.remote() for node in started}
        for node in started:
            try:
                node.where, node.pid = ray.get(ready[node.node_id], timeout=_READY_SECONDS)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                self.observer.event("warning", f"Ray node {node.node_id[:12]} is not used: its "
                                    f"actor did not start ({_first_line(exc)}).")
                with contextlib.suppress(Exception):
                    ray.kill(node.handle, no_restart=True)
                continue
            with self._lock:
                if self._closed:
                    ray.kill(node.handle, no_restart=True)
                    continue
                self._nodes.append(node)
                self._pids.setdefault(node.node_id, []).append(node.pid)

    # --- the end -------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel what is outstanding, remove every container of the run's actors, kill them,
        and remove what is left of this run's containers on every live node."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            nodes, self._nodes = list(self._nodes), []
            outstanding = list(self._outstanding)
        if not ray_ready():
            return
        ray = ray_module()
        try:
            for ref in outstanding:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            shutdowns = [node.handle.shutdown.options(concurrency_group="control").remote()
                         for node in nodes]
            with contextlib.suppress(Exception):
                ray.wait(shutdowns, num_returns=len(shutdowns), timeout=_CLOSE_SECONDS)
            for node in nodes:
                with contextlib.suppress(Exception):
                    ray.kill(node.handle, no_restart=True)
            self._backstop()
            self._report_overhead()
        finally:
            if self._connected:
                with contextlib.suppress(Exception):
                    ray.shutdown()

    def _backstop(self) -> None:
        ray = ray_module()
        remover = ray.remote(remove_run_containers)
        alive = {str(info["NodeID"]) for info in alive_nodes()}
        calls = [remover.options(num_cpus=0, scheduling_strategy=affinity(node_id)).remote(
                     self.spec.run_id, pids) for node_id, pids in self._pids.items()
                 if node_id in alive]
        with contextlib.suppress(Exception):
            ray.wait(calls, num_returns=len(calls), timeout=_CLOSE_SECONDS)

    def _report_overhead(self) -> None:
        if self.overheads:
            ms = statistics.median(self.overheads) * 1000
            self.observer.event("note", f"Ray: {len(self.overheads)} candidate(s) judged on the "
                                f"cluster, {ms:.0f} ms median overhead each (driver to verdict, "
                                "beyond judging).")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


@dataclass(frozen=True)
class RaySetup:
    """Where the cluster is and what its nodes judge with (the driver's, never the model's)."""

    address: str | None
    run_id: str
    state_dir: Path
    sandbox: SandboxConfig
    deps: DependencySet
    jobs: int


def node_spec(setup: RaySetup, gate: GateConfig, benchmarks: dict[str, list[str]],
              wheelhouse: Any | None) -> NodeSpec:
    """What each node is given: the run's judging rules and benchmarks, the sandbox's settings
    and the dependency declarations (`wheelhouse`: an ObjectRef, or None); never the model's
    settings."""
    return NodeSpec(run_id=setup.run_id, sandbox=setup.sandbox, gate=gate,
                    benchmarks=benchmarks, deps=setup.deps, judges=max(1, setup.jobs),
                    harness=harness_digest(), wheelhouse=[wheelhouse] if wheelhouse else [])


def ship_wheelhouse(config: SandboxConfig, state_dir: Path, deps: DependencySet) -> Any | None:
    """The wheelhouse the driver's image was built from, in the object store; None when the
    image is named (`SELFCODE_IMAGE`: every node must have it) or was built elsewhere (a
    node that lacks it then downloads the wheels itself)."""
    if config.image:
        return None
    from selfcode.sandbox.deps import wheelhouse_dir
    from selfcode.sandbox.engine import docker_client
    from selfcode.sandbox.image import base_image_of, ensure_base_image, python_info

    client = docker_client()
    base = base_image_of(config, client)
    info = python_info(client, base, ensure_base_image(client, base, lambda _m: None),
                       state_dir / "wheelhouse")
    folder = wheelhouse_dir(deps, info, state_dir / "wheelhouse")
    if not (folder / ".complete").is_file():
        return None
    return ray_module().put(wheelhouse_tar(folder))


def ray_executor(run: Run, deps: DependencySet | None, pool: JudgePool, first: Baseline,
                 jobs: int) -> RayExecutor:
    """The run's executor on the cluster `[executor] ray_address` names (`first`: the run's
    baseline, which every node calibrates on)."""
    if deps is None or run.settings.sandbox.backend != "docker":
        raise ConfigError("--executor ray judges in each node's Docker sandbox; drop "
                          "--sandbox local.")
    setup = RaySetup(run.settings.executor.ray_address, run.run_id, run.store.state_dir(),
                     run.settings.sandbox, deps, jobs)
    return RayExecutor.start(setup, pool, first, run.observer)
