"""Candidates judged per hour with --executor local against ray on 1 and 2 nodes, and Ray's cost.

Runs the real `selfcode improve` (a subprocess, the Docker sandbox) on a copy of examples/ (its
benchmark judged by instruction counts) against tests/openai_server.py with no reply latency
and bench_search's scripted model (good, broken, duplicate, malformed, slower replies chosen
from the parent's code), so judging is what takes the time. Configurations, each --repeat
times, interleaved: `local`; `ray x1` (the second node killed: the head alone); `ray x2`.

The driver and the model server must be inside the cluster's network namespace (Ray binds only
127.0.0.1 there). Either let the benchmark start the test cluster and re-run itself inside it:

    sudo .venv/bin/python benchmarks/bench_scale.py [--quick]     # scripts/ray-test-cluster.sh

or start one and run it there yourself (it is left running):

    scripts/ray-test-cluster.sh start bench
    ip netns exec bench .venv/bin/python benchmarks/bench_scale.py --ray-address 127.0.0.1:6379 \
        --cluster bench

Figures, from each run's own history: candidates judged per hour (first request to last
outcome), each candidate's own judging time (its verdict's stages, setup left out), and Ray's
overhead per candidate as the executor measures it (driver's call to verdict, minus the
seconds the node reports it spent judging: serialisation, scheduling, the object store; the
median per run, spread over repeats). On one machine every node shares the same two cores, so
`ray x2` shows the overhead, not a speedup; the projection for a larger cluster is computed
from the measured per-candidate costs. --quick: one repeat of `local` and `ray x2`, two
candidates each (about three minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(Path(__file__).parent)]

from bench_search import SELFCODE, child_env, make_repo, read_history  # noqa: E402
from search_figures import SETUP_TIMINGS, RunFigures, spread  # noqa: E402
from search_model import MixedModel  # noqa: E402
from search_moves import EXAMPLE_MOVES  # noqa: E402

from openai_server import OpenAIServer  # noqa: E402

CLUSTER_SCRIPT = ROOT / "scripts" / "ray-test-cluster.sh"
# The executor's closing note (executors/ray.py), in seconds or milliseconds.
OVERHEAD_NOTE = re.compile(r"Ray: (\d+) candidate\(s\) judged on the cluster, ([0-9.]+) ?(ms|s) "
                           r"median overhead")
JUDGING_ON = re.compile(r"^judging on (\S+)")


@dataclass(frozen=True)
class Config:
    executor: str  # local | ray
    nodes: int  # live nodes of the cluster (ray), 1 for local
    repeat: int = 0

    @property
    def label(self) -> str:
        kind = "local" if self.executor == "local" else f"ray x{self.nodes}"
        return kind + (f" #{self.repeat + 1}" if self.repeat else "")

    @property
    def kind(self) -> str:
        return "local" if self.executor == "local" else f"ray x{self.nodes}"


@dataclass
class Measured:
    config: Config
    figures: RunFigures
    own_judging_s: list[float] = field(default_factory=list)  # per judged candidate
    overhead_s: float | None = None  # the executor's median, for this run
    per_node: dict[str, int] = field(default_factory=dict)  # where candidates were judged


@dataclass(frozen=True)
class Options:
    address: str
    cluster: str | None  # the namespace's name: needed to kill and restart the second node
    iterations: int
    jobs: int
    timeout: float
    keep: bool


def command(config: Config, options: Options, repo: Path, base_url: str) -> list[str]:
    args = [SELFCODE, "improve", str(repo), "--sandbox", "docker", "--iterations",
            str(options.iterations), "--base-url", base_url, "--model", "gpt-4o-mini",
            "--timeout", str(options.timeout), "--jobs", str(options.jobs), "--seed", "0",
            "--executor", config.executor]
    return args + (["--ray-address", options.address] if config.executor == "ray" else [])


def run_one(config: Config, options: Options, log: Callable[[str], None]) -> Measured:
    measured = Measured(config, RunFigures(config.label))
    root = Path(tempfile.mkdtemp(prefix="selfcode-bench-scale-"))
    server = OpenAIServer().start()
    server.responder, server.latency = MixedModel(EXAMPLE_MOVES), 0.0
    try:
        repo = make_repo("examples", root)
        env = child_env(root, 0)
        log(f"{config.label}: improve --executor {config.executor}, "
            f"{options.iterations} candidates, --jobs {options.jobs}")
        started = time.monotonic()
        done = subprocess.run(command(config, options, repo, server.base_url),
                              capture_output=True, text=True, env=env)
        figures = measured.figures
        figures.wall_s, figures.exit_code = time.monotonic() - started, done.returncode
        if done.returncode != 0:
            figures.note = done.stderr.strip().splitlines()[-1][:200] if done.stderr else ""
        read_history(repo, figures, env)
        read_ray_figures(repo, measured)
        measured.own_judging_s = own_judging(repo, env)
        log(f"{config.label}: {figures.judged} judged in {figures.loop_s:.0f} s of loop, "
            f"overhead {measured.overhead_s}, exit {done.returncode}")
    finally:
        server.stop()
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
    return measured


def read_ray_figures(repo: Path, measured: Measured) -> None:
    """The executor's median overhead (its closing note) and where each candidate went."""
    db = repo / ".git" / "selfcode" / "history.db"
    if not db.exists():
        return
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        messages = [str(row[0]) for row in con.execute(
            "SELECT message FROM events WHERE run_id = (SELECT id FROM runs ORDER BY started_at "
            "DESC LIMIT 1) ORDER BY id")]
    for message in messages:
        if (note := OVERHEAD_NOTE.search(message)) is not None:
            measured.overhead_s = float(note[2]) / (1000 if note[3] == "ms" else 1)
        elif (where := JUDGING_ON.match(message)) is not None:
            measured.per_node[where[1]] = measured.per_node.get(where[1], 0) + 1


def own_judging(repo: Path, env: dict[str, str]) -> list[float]:
    """Each judged candidate's own stages (its verdict's timings, the run's setup left out)."""
    import json

    db = repo / ".git" / "selfcode" / "history.db"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        run_id = con.execute("SELECT id FROM runs ORDER BY started_at DESC").fetchone()[0]
    shown = subprocess.run([SELFCODE, "show", run_id, str(repo), "--json"], capture_output=True,
                           text=True, env=env)
    if shown.returncode != 0:
        return []
    costs = []
    for candidate in json.loads(shown.stdout).get("candidates") or []:
        timings = (candidate.get("verdict") or {}).get("timings") or {}
        if candidate.get("status") not in ("accepted", "rejected") or not timings:
            continue
        costs.append(sum(float(v) for k, v in timings.items() if k not in SETUP_TIMINGS
                         and k != "total" and isinstance(v, int | float)))
    return costs


# --- the cluster's shape ---------------------------------------------------------------------


def set_nodes(options: Options, nodes: int, log: Callable[[str], None]) -> None:
    """Kill the second node for one live node, start it again for two."""
    if options.cluster is None:
        raise SystemExit("ray x1 needs --cluster NAME (the test cluster's namespace), to kill "
                         "and restart its second node")
    action = "kill-worker" if nodes == 1 else "restart-worker"
    log(f"cluster {options.cluster}: {action}")
    subprocess.run(["bash", str(CLUSTER_SCRIPT), action, options.cluster], check=True,
                   capture_output=True, env={**os.environ, "SELFCODE_RAY_PYTHON": sys.executable})
    if nodes == 1:
        wait_alive(options.address, 1)


def wait_alive(address: str, count: int, timeout: float = 120) -> None:
    """Until Ray marks the killed node dead (its health checks take tens of seconds)."""
    probe = ("import ray, sys\nray.init(address=sys.argv[1], logging_level='ERROR', "
             "log_to_driver=False)\nprint(sum(1 for n in ray.nodes() if n['Alive']))\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", probe, address], capture_output=True,
                             text=True).stdout.split()
        if out and out[-1] == str(count):
            return
        time.sleep(2)
    raise SystemExit(f"the cluster at {address} did not come to {count} live node(s)")


# --- the figures -----------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if value is None else pattern.format(value)


def summary_rows(results: Sequence[Measured]) -> list[tuple[str, list[str]]]:
    """One column per kind (local, ray x1, ray x2), each figure with its spread over repeats."""
    kinds = list(dict.fromkeys(m.config.kind for m in results))
    by_kind = {kind: [m for m in results if m.config.kind == kind] for kind in kinds}

    def column(pick: Callable[[Measured], Sequence[float]], pattern: str = "{:.1f}"
               ) -> list[str]:
        out = []
        for kind in kinds:
            values = [v for m in by_kind[kind] for v in pick(m)]
            out.append(spread(values) if len(values) > 1 else _fmt(_median(values), pattern))
        return out

    def per_hour(m: Measured) -> list[float]:
        rate = m.figures.judged_per_hour
        return [rate] if rate else []

    return [
        ("", kinds),
        ("runs (exit codes)", [" ".join(str(m.figures.exit_code) for m in by_kind[k])
                               for k in kinds]),
        ("judged per hour [range]", column(per_hour)),
        ("candidates judged / run", column(lambda m: [float(m.figures.judged)])),
        ("setup before the 1st request, s", column(lambda m: [m.figures.setup_s])),
        ("own judging / candidate, s", column(lambda m: m.own_judging_s)),
        ("Ray overhead / candidate, ms", column(
            lambda m: [] if m.overhead_s is None else [m.overhead_s * 1000])),
        ("judgings per node (all runs)", [where_judged(by_kind[k]) for k in kinds]),
    ]


def where_judged(runs: Sequence[Measured]) -> str:
    """Node id prefix and how many judgings it did, over `runs` (a restarted node is new)."""
    counts: dict[str, int] = {}
    for m in runs:
        for where, n in m.per_node.items():
            node = where.split(":")[-1][:6]
            counts[node] = counts.get(node, 0) + n
    return ", ".join(f"{node} {n}" for node, n in counts.items()) or "-"


def table(results: Sequence[Measured]) -> str:
    rows = summary_rows(results)
    widths = [2 + max(len(row[i]) for _, row in rows) for i in range(len(rows[0][1]))]
    return "\n".join(name.ljust(34) + "".join(c.rjust(w) for c, w in zip(row, widths,
                                                                           strict=True))
                     for name, row in rows)


def projection(results: Sequence[Measured], nodes: int, jobs: int) -> list[str]:
    """Candidates per hour for `nodes` nodes of one timing slot each, from measured costs."""
    own = _median([v for m in results for v in m.own_judging_s])
    overheads = [m.overhead_s for m in results if m.overhead_s is not None]
    overhead = _median(overheads) or 0.0
    if own is None:
        return ["projection: no candidate was judged, nothing to project from"]
    per_candidate = own + overhead
    rate = nodes * 3600 / per_candidate
    return [
        f"projection for {nodes} nodes, one selfcode_timing slot each: about {rate:.0f} "
        f"candidates/hour = {nodes} x 3600 / ({own:.1f} s own judging + {overhead * 1000:.0f} ms "
        "Ray overhead), if each node judges one candidate at a time (CPU-time candidates must; "
        f"instruction-count ones may run --jobs {jobs} at once per node, up to its cores)",
        "what limits it first: the model's latency (with J candidates in flight and a reply "
        f"taking L s, at most J x 3600 / (L + {per_candidate:.0f}) per hour: --jobs must be "
        "about nodes x L / judging time to keep every node busy), then the driver, which "
        "records every outcome (history, ref, note, commit) one at a time on the loop's thread "
        "and puts each new baseline tree in the object store once",
    ]


def plan(args: argparse.Namespace) -> list[Config]:
    kinds = [Config("local", 1), Config("ray", 2)] if args.quick else [
        Config("local", 1), Config("ray", 1), Config("ray", 2)]
    return [Config(c.executor, c.nodes, repeat) for repeat in range(args.repeat) for c in kinds]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ray-address", help="the cluster's head, from inside its namespace "
                        "(default: start the test cluster --cluster names and run inside it)")
    parser.add_argument("--cluster", default=None, help="the test cluster's namespace name "
                        "(scripts/ray-test-cluster.sh; default when starting one: bench)")
    parser.add_argument("--iterations", type=int, default=6, help="candidates per run")
    parser.add_argument("--jobs", type=int, default=2, help="improve --jobs, every run")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each configuration")
    parser.add_argument("--project", type=int, default=10, help="nodes of the projection")
    parser.add_argument("--timeout", type=float, default=300.0, help="sandbox command timeout")
    parser.add_argument("--quick", action="store_true",
                        help="local and ray x2 once, two candidates each")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.repeat = 2, 1
    return args


def inside_own_cluster(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Start the test cluster (if it is not running), run this benchmark inside its namespace,
    stop the cluster when this call started it."""
    name = args.cluster or "bench"
    env = {**os.environ, "SELFCODE_RAY_PYTHON": sys.executable}
    running = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status", name], env=env,
                             capture_output=True).returncode == 0
    address = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start", name], env=env, check=True,
                             capture_output=True, text=True).stdout.split()[-1]
    try:
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__, *argv,
                               "--ray-address", address, "--cluster", name],
                              env={**env, "RAY_USAGE_STATS_ENABLED": "0"}).returncode
    finally:
        if not running:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", name], env=env, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.ray_address is None:
        return inside_own_cluster(args, argv)

    def log(message: str) -> None:
        print(f"· {message}", file=sys.stderr, flush=True)

    options = Options(args.ray_address, args.cluster, args.iterations, args.jobs, args.timeout,
                      args.keep)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    results: list[Measured] = []
    live = 2
    try:
        for config in plan(args):
            if config.executor == "ray" and config.nodes != live:
                set_nodes(options, config.nodes, log)
                live = config.nodes
            results.append(run_one(config, options, log))
    finally:
        if live != 2:
            set_nodes(options, 2, log)
    print(f"bench_scale: examples/ (instruction counts), no reply latency, {args.iterations} "
          f"candidates per run, --jobs {args.jobs}, {os.cpu_count()} CPUs shared by every node")
    print(table(results))
    ray_runs = [m for m in results if m.config.executor == "ray"]
    for line in projection(ray_runs or results, args.project, args.jobs):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
