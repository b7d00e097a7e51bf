"""How fast selfcode's search finds wins: candidates per hour, time to the first win, and a trap.

Runs the real `selfcode improve` (a subprocess, the Docker sandbox unless --sandbox local)
against tests/openai_server.py with a reply latency and a scripted model that reads the
parent's code from each prompt (benchmarks/search_model.py), on a copy of examples/ and of
benchmarks/fixtures/biglib (290 tests), for each --jobs value; then the deceptive landscape
(--landscape): greedy against archive on examples/ with a fixed seed and budget.

    SELFCODE_BASE_IMAGE=selfcode-base:bookworm python benchmarks/bench_search.py
    python benchmarks/bench_search.py --quick            # local sandbox, a few minutes
    python benchmarks/bench_search.py --only landscape --iterations 10

Figures, not asserts: one table on stdout, progress on stderr. The figures come from the
run's own history (event times, verdict timings via `selfcode show RUN --json`). The machine
is shared, so each figure has its spread (median [quartiles], or [range] below four values);
repeat with --repeat for a spread across runs. Flags the installed selfcode does not have yet
(--jobs, --strategy, --seed) are reported as such and the runs needing them skipped.
"""

from __future__ import annotations

import argparse
import json
import os
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(Path(__file__).parent)]

from search_figures import (  # noqa: E402
    Event,
    RunFigures,
    best_lineage,
    rate_spread,
    spread,
    timeline,
    verdict_costs,
)
from search_model import LandscapeModel, MixedModel  # noqa: E402
from search_moves import BIGLIB_MOVES, EXAMPLE_MOVES, Move  # noqa: E402

from selfcode.run.selfdemo import commit_demo_repo  # noqa: E402

from openai_server import OpenAIServer  # noqa: E402

SELFCODE = shutil.which("selfcode") or str(Path(sys.executable).with_name("selfcode"))
FIXTURES = {"examples": ROOT / "examples", "biglib": Path(__file__).parent / "fixtures" / "biglib"}
MOVES: dict[str, Sequence[Move]] = {"examples": EXAMPLE_MOVES, "biglib": BIGLIB_MOVES}


@dataclass(frozen=True)
class Config:
    """One `selfcode improve` run to measure."""

    fixture: str
    jobs: int
    iterations: int
    strategy: str | None = None  # None: the command's default
    landscape: bool = False
    repeat: int = 0

    @property
    def label(self) -> str:
        strategy = f" {self.strategy}" if self.strategy else ""
        again = f" #{self.repeat + 1}" if self.repeat else ""
        return f"{self.fixture} j{self.jobs}{strategy}{again}"


@dataclass
class Options:
    sandbox: str
    latency: float
    timeout: float
    seed: int = 0
    flags: set[str] = field(default_factory=set)  # the improve flags this selfcode has
    keep: bool = False


def improve_flags() -> set[str]:
    """Which of the new search flags `selfcode improve` accepts today."""
    out = subprocess.run([SELFCODE, "improve", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}).stdout
    return {flag for flag in ("--jobs", "--strategy", "--seed") if flag in out}


def make_repo(fixture: str, root: Path) -> Path:
    repo = root / fixture
    shutil.copytree(FIXTURES[fixture], repo,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "demo-replies.jsonl"))
    commit_demo_repo(repo, f"bench_search: the {fixture} fixture")
    return repo


def command(config: Config, options: Options, repo: Path, base_url: str) -> list[str] | str:
    """The improve command line, or why this selfcode cannot run the config."""
    args = [SELFCODE, "improve", str(repo), "--sandbox", options.sandbox, "--iterations",
            str(config.iterations), "--base-url", base_url, "--model", "gpt-4o-mini",
            "--timeout", str(options.timeout)]
    if config.jobs != 1:
        if "--jobs" not in options.flags:
            return "this selfcode has no --jobs yet"
        args += ["--jobs", str(config.jobs)]
    elif "--jobs" in options.flags:
        args += ["--jobs", "1"]
    if config.strategy is not None and "--strategy" in options.flags:
        args += ["--strategy", config.strategy]
    elif config.strategy not in (None, "greedy"):  # without the flag the loop is greedy
        return f"this selfcode has no --strategy yet ({config.strategy} not run)"
    if "--seed" in options.flags:
        args += ["--seed", str(options.seed)]
    return args


def child_env(home: Path, seed: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SELFCODE_HOME", "GIT_DIR", "GIT_WORK_TREE", "OPENAI_BASE_URL")}
    env.update(OPENAI_API_KEY="sk-bench-not-a-real-key", SELFCODE_SEED=str(seed),
               GIT_CONFIG_GLOBAL=str(home / "no-gitconfig"))
    env.setdefault("SELFCODE_BASE_IMAGE", "selfcode-base:bookworm")
    return env


def read_history(repo: Path, figures: RunFigures, env: dict[str, str]) -> None:
    db = repo / ".git" / "selfcode" / "history.db"
    if not db.exists():
        figures.note = "no history"
        return
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        run_id, base = con.execute(
            "SELECT id, base_commit FROM runs ORDER BY started_at DESC").fetchone()
        rows = con.execute("SELECT kind, candidate_n, message, created_at FROM events "
                           "WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
    timeline(figures, [Event.of(row) for row in rows])
    shown = subprocess.run([SELFCODE, "show", run_id, str(repo), "--json"], capture_output=True,
                           text=True, env=env)
    if shown.returncode != 0:
        figures.note = f"selfcode show failed: {shown.stderr.strip()[-200:]}"
        return
    candidates = json.loads(shown.stdout).get("candidates") or []
    verdict_costs(figures, candidates)
    best_lineage(figures, str(base), candidates)


def run_one(config: Config, options: Options, log: Callable[[str], None]) -> RunFigures:
    figures = RunFigures(config.label)
    model: Callable[[Any], str] = (LandscapeModel() if config.landscape
                                   else MixedModel(MOVES[config.fixture]))
    root = Path(tempfile.mkdtemp(prefix="selfcode-bench-search-"))
    server = OpenAIServer().start()
    server.responder, server.latency = model, options.latency
    try:
        repo = make_repo(config.fixture, root)
        args = command(config, options, repo, server.base_url)
        if isinstance(args, str):
            figures.note, figures.exit_code = args, -1
            return figures
        env = child_env(root, options.seed)
        log(f"{config.label}: {' '.join(args[1:3])} ... (iterations {config.iterations})")
        started = time.monotonic()
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        figures.wall_s, figures.exit_code = time.monotonic() - started, done.returncode
        if done.returncode != 0:
            figures.note = done.stderr.strip().splitlines()[-1][:200] if done.stderr else ""
        read_history(repo, figures, env)
        log(f"{config.label}: {figures.finished} candidates in {figures.wall_s:.0f} s, "
            f"{figures.accepted} accepted, exit {done.returncode}")
    finally:
        server.stop()
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
    return figures


def _fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if value is None else pattern.format(value)


ROWS: list[tuple[str, Callable[[RunFigures], str]]] = [
    ("exit / note", lambda f: f"{f.exit_code} {f.note[:40]}".strip()),
    ("wall of the run, s", lambda f: _fmt(f.wall_s, "{:.0f}")),
    ("setup before the 1st request, s", lambda f: _fmt(f.setup_s)),
    ("candidates (judged / all)", lambda f: f"{f.judged} / {f.finished}"),
    ("judged per hour (loop)", lambda f: _fmt(f.judged_per_hour, "{:.0f}")),
    ("outcomes per hour [quartiles]", lambda f: rate_spread(f.gaps)),
    ("time to first accepted, s", lambda f: _fmt(f.first_accept_s)),
    ("per-candidate wall, s", lambda f: spread(f.candidate_walls)),
    ("one-test break: tests, s", lambda f: spread(f.break_tests_s)),
    ("one-test break: verdict, s", lambda f: spread(f.break_total_s)),
    ("full suite (passing cand.), s", lambda f: spread(f.full_suite_s)),
    ("break / full suite", lambda f: _fmt(f.break_fraction, "{:.0%}")),
    ("accepted", lambda f: str(f.accepted)),
    ("best speedup (lineage)", lambda f: f"{f.best_speedup:.2f}x {f.lineage}"),
    ("best reached at candidate", lambda f: _fmt(f.best_at, "{}")),
]


def table(results: Sequence[RunFigures]) -> str:
    cells = [[f.label for f in results]] + [[cell(f) for f in results] for _, cell in ROWS]
    widths = [2 + max(len(row[i]) for row in cells) for i in range(len(results))]
    names = ["", *(name for name, _ in ROWS)]
    return "\n".join(name.ljust(32) + "".join(c.rjust(w) for c, w in zip(row, widths,
                                                                             strict=True))
                     for name, row in zip(names, cells, strict=True))


def ratios(results: Sequence[RunFigures], configs: Sequence[Config]) -> list[str]:
    """Each --jobs N run against the same fixture's --jobs 1 run, measured in this invocation."""
    lines = []
    for figures, config in zip(results, configs, strict=True):
        base = next((f for f, c in zip(results, configs, strict=True)
                     if c.fixture == config.fixture and c.jobs == 1 and not c.landscape
                     and c.repeat == config.repeat and f.judged_per_hour), None)
        if config.landscape or config.jobs == 1 or base is None or not figures.judged_per_hour:
            continue
        per_hour = figures.judged_per_hour / (base.judged_per_hour or 1)
        first = (base.first_accept_s / figures.first_accept_s
                 if base.first_accept_s and figures.first_accept_s else None)
        lines.append(f"{config.label} vs j1: {per_hour:.2f}x judged per hour, "
                     f"{_fmt(first, '{:.2f}x')} sooner to the first win")
    return lines


def landscape_summary(results: Sequence[RunFigures], configs: Sequence[Config]) -> list[str]:
    return [f"{c.strategy or 'default'}: best {f.best_speedup:.2f}x over the baseline, reached at "
            f"candidate {f.best_at} of {f.finished} (lineage {f.lineage})"
            for f, c in zip(results, configs, strict=True) if c.landscape]


def plan(args: argparse.Namespace) -> list[Config]:
    configs: list[Config] = []
    for repeat in range(args.repeat):
        if args.only in (None, "throughput"):
            configs += [Config(fixture, jobs, args.iterations, repeat=repeat)
                        for fixture in args.fixtures.split(",") for jobs in args.jobs]
        if args.only == "landscape" or (args.only is None and args.landscape):
            configs += [Config("examples", 1, args.budget, strategy, True, repeat)
                        for strategy in ("greedy", "archive")]
    return configs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency", type=float, default=5.0, help="seconds per model reply")
    parser.add_argument("--iterations", type=int, default=6, help="candidates per run")
    parser.add_argument("--jobs", type=lambda s: [int(j) for j in s.split(",")], default=[1, 4],
                        help="comma-separated --jobs values (default 1,4)")
    parser.add_argument("--sandbox", choices=("docker", "local"), default="docker")
    parser.add_argument("--fixtures", default="examples,biglib")
    parser.add_argument("--landscape", action="store_true", default=True,
                        help="run the deceptive landscape too (the default)")
    parser.add_argument("--no-landscape", dest="landscape", action="store_false")
    # 16: with the DGM rule's defaults and seed 0, the archive first goes back to the baseline
    # at candidate 14 (at 12 it had not yet; P(reach C) is about 88 % at 12, 98 % at 16).
    parser.add_argument("--budget", type=int, default=16, help="candidates per landscape run")
    parser.add_argument("--seed", type=int, default=0, help="improve --seed (and SELFCODE_SEED)")
    parser.add_argument("--only", choices=("throughput", "landscape"))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--timeout", type=float, default=300.0, help="sandbox command timeout")
    parser.add_argument("--quick", action="store_true",
                        help="local sandbox, 1 s latency, examples only, 4 candidates")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    args = parser.parse_args(argv)
    if args.quick:
        args.sandbox, args.latency, args.iterations, args.fixtures = "local", 1.0, 4, "examples"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(f"· {message}", file=sys.stderr, flush=True)

    options = Options(args.sandbox, args.latency, args.timeout, args.seed, improve_flags(),
                      args.keep)
    log(f"selfcode improve has {sorted(options.flags) or 'none'} of --jobs/--strategy/--seed; "
        f"sandbox {args.sandbox}, latency {args.latency:g} s")
    configs = plan(args)
    results = [run_one(config, options, log) for config in configs]
    print(f"bench_search: sandbox {args.sandbox}, reply latency {args.latency:g} s, "
          f"{os.cpu_count()} CPUs")
    print(table(results))
    for line in ratios(results, configs) + landscape_summary(results, configs):
        print(line)
    walls = [f.wall_s for f in results if f.wall_s]
    if walls:
        print(f"total {sum(walls):.0f} s over {len(walls)} runs "
              f"(median {statistics.median(walls):.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
