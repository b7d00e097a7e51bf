"""selfcode's frozen harness: judges trees in the sandbox and prints one JSON report.

It comes from selfcode's package (mounted read-only), never from the candidate, and uses the
standard library only, so it runs on any Python the sandbox has. The host treats what it prints
as untrusted input, and believes only a report that carries the nonce it passed in the
harness's environment (SELFCODE_REPORT_NONCE, which no candidate process can read).

    python harness.py seal  OPTIONS --src DIR --tree NAME [--drop NAME]...
    python harness.py apply OPTIONS --base NAME --tree NAME --diff FILE [--timeout S]
    python harness.py tests OPTIONS --tree NAME [--timeout S] [--coverage | --select FILE]
                                    [-- PYTEST ARGS...]
    python harness.py bench OPTIONS --a NAME --b NAME --spec JSON [--pairs N] [--seed N]
                                    [--timeout S] [--metric cpu_time|instructions]
    python harness.py probe OPTIONS
    python harness.py equiv OPTIONS --a NAME --b NAME --spec JSON [--timeout S]
    python harness.py profile OPTIONS --tree NAME --spec JSON [--timeout S]
    python harness.py canary OPTIONS --tree NAME --fixture DIR --diff FILE [--timeout S]
    python harness.py imports OPTIONS --a NAME --b NAME --paths JSON [--timeout S]

    OPTIONS: --judge-dir DIR [--user UID:GID] [--fresh DIR]... [--cpu-meter cgroup|rusage]

Trees live in {judge-dir}/trees/NAME, copied there by `seal` and `apply`, owned by the judge and
read-only to candidates: benchmarks run in them as they are, tests in a fresh copy owned by the
candidate uid, removed afterwards. Once sealed, a tree is precompiled and, when it is a package,
installed: its metadata and console scripts are kept in {judge-dir}/sites/NAME
(selfcode_install.py), found by every process of that tree (selfcode_trees.base_env).

With --user the harness must be root: every candidate process runs as UID:GID (selfcode_proc.py),
and its evidence goes through files and pipes only the judge can write. `--fresh` directories
are emptied before every measured process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
from typing import Any

import selfcode_canary
import selfcode_cascade
import selfcode_equiv
import selfcode_files as files
import selfcode_guest as guest
import selfcode_install
import selfcode_profile
from selfcode_evidence import count_instructions, cross_check, parse_junit, parse_stream
from selfcode_proc import (
    STREAM_CAP,
    TAIL_BYTES,
    Guard,
    HarnessError,
    Measured,
    Setup,
    run_measured,
)

# The equivalence check reaches these through this module too.
from selfcode_trees import RunDir, base_env, git_env, site_path, tree_path

NONCE_ENV = "SELFCODE_REPORT_NONCE"
STREAM_ENV = "SELFCODE_STREAM_FD"
STREAM_FD = 1019
MAX_STDOUT_KEEP = 2000
JUNIT_LIMIT = 64 * 1024 * 1024
LOG_LIMIT = STREAM_CAP
HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))

# Valgrind (selfcode_guest.py): every child traced and logged (with -v a forked child logs as
# it starts) to fd 1020, inside the range valgrind reserves for itself once RLIMIT_NOFILE is
# 1024: the measured code gets EBADF writing to it and EACCES reopening it (the pipe is the
# judge's). Valgrind does not guard dup() of its fds, so the code can still append lines; a pipe
# is why it can never truncate, seek or overwrite what valgrind wrote (tests/test_integrity.py).
# A timed run starts as valgrind's guest sees its start (limits, fds, environment), so the
# measured code cannot cheaply tell which meter runs; what still tells is listed there.
LOG_FD = guest.JUDGE_FD


# --- trees -------------------------------------------------------------------------------------


def cmd_seal(args: argparse.Namespace, guard: Guard) -> dict[str, Any]:
    for name in [*args.drop, args.tree]:
        files.remove_tree(tree_path(guard, name))
        files.remove_tree(site_path(guard, name))
    files.copy_tree(os.path.abspath(args.src), tree_path(guard, args.tree), readonly=True)
    return {"kind": "seal", "ok": True,
            **selfcode_install.prepare(guard, args.tree, args.timeout)}


def cmd_apply(args: argparse.Namespace, guard: Guard) -> dict[str, Any]:
    """Apply a diff to a copy of a tree, as the candidate uid, then seal the result."""
    with RunDir(guard) as run:
        work = run.copy_of(tree_path(guard, args.base))
        env = git_env(run.path)
        try:
            proc = subprocess.run(
                ["git", "apply", "--whitespace=nowarn", os.path.abspath(args.diff)], cwd=work,
                env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=args.timeout,
                **guard.demote)
        except subprocess.TimeoutExpired:
            return {"kind": "apply", "ok": False, "message": "git apply timed out"}
        message = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()[-1000:]
        if proc.returncode == 0:
            dst = tree_path(guard, args.tree)
            files.remove_tree(dst)
            files.copy_tree(work, dst, readonly=True)
    if proc.returncode != 0:
        return {"kind": "apply", "ok": False, "message": message}
    # The candidate installs as the baseline did, or it is rejected (selfcode_install.py).
    return {"kind": "apply", "ok": True, "message": message,
            **selfcode_install.prepare(guard, args.tree, args.timeout, like=args.base)}


# --- tests -------------------------------------------------------------------------------------


def cmd_tests(args: argparse.Namespace, guard: Guard) -> dict[str, Any]:
    with RunDir(guard) as run:
        work = run.copy_of(tree_path(guard, args.tree))
        junit_file = os.path.join(run.path, "junit.xml")
        env = base_env(work, site_path(guard, args.tree))
        env["PYTHONPATH"] = os.pathsep.join([HARNESS_DIR, env["PYTHONPATH"]])
        env[STREAM_ENV] = str(STREAM_FD)
        # The cascade's options: the baseline's coverage map, or a selection (-x).
        extras = selfcode_cascade.TestExtras(args, run.path, env)
        argv = [
            sys.executable, "-m", "pytest", "-p", "selfcode_pytest_plugin", *extras.argv,
            "-p", "no:cacheprovider", f"--junitxml={junit_file}", "-o", "junit_family=xunit2",
            "-q", *args.pytest_args,
        ]  # fmt: skip
        read_end, write_end = os.pipe()
        try:
            result = run_measured(guard, argv, work, env, args.timeout,
                                  pass_fds={STREAM_FD: write_end, **extras.pass_fds},
                                  drain=[read_end, *extras.drain])
        finally:
            os.close(read_end)
            extras.close()
        # Read only now: every candidate process is dead, none can rewrite it any more.
        junit = parse_junit(files.read_regular(junit_file, JUNIT_LIMIT))
    stream = parse_stream(result.streams.get(read_end, b""))
    tampered = result.problem or stream.problem or cross_check(stream, junit, result.exit_code)
    return {
        "kind": "tests",
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "duration": result.wall,
        "collected": None if tampered else stream.collected,
        "outcomes": None if tampered else stream.outcomes(),
        "junit_cases": None if junit is None else junit.cases,
        "skipped_modules": [] if tampered else
        [c.nodeid for c in stream.collectors if c.outcome == "skipped"],
        "collection_errors": {} if tampered else
        {c.nodeid: c.message for c in stream.collectors if c.outcome == "failed"},
        "failures": {} if tampered else stream.failures(),
        "tampered": tampered,
        "leftover_processes": result.leftovers,
        "output_tail": result.stdout[-TAIL_BYTES:].decode("utf-8", "replace"),
        "stderr_tail": result.stderr_tail,
        **extras.report(result.streams, None if tampered else stream.collected),
    }


# --- benchmarks --------------------------------------------------------------------------------


class _Bench:
    """One benchmark's samples on both trees; each run is a fresh process from a fresh state."""

    def __init__(self, argv: list[str], trees: dict[str, str], sites: dict[str, str],
                 timeout: float, metric: str, guard: Guard) -> None:
        self.argv, self.trees, self.timeout, self.metric = argv, trees, timeout, metric
        self.envs = {side: base_env(trees[side], sites[side]) for side in trees}
        self.guard = guard
        self.samples: dict[str, list[float]] = {"a": [], "b": []}
        # Every counted run's CPU (all its processes), wall time and peak memory, whatever the
        # metric: the host checks a win for regressions in all three.
        self.resources: dict[str, dict[str, list[float]]] = {
            side: {"cpu": [], "wall": [], "rss": []} for side in ("a", "b")}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.tampered: str | None = None

    def _measure(self, side: str) -> tuple[Measured, float | None, str | None]:
        tree = self.trees[side]
        if self.metric != "instructions":
            res = run_measured(self.guard, self.argv, tree, self.envs[side], self.timeout,
                               valgrind=False)
            return res, res.cpu, None
        read_end, write_end = os.pipe()
        try:
            argv = guest.valgrind_argv(self.guard.setup.judge_dir, self.argv)
            res = run_measured(self.guard, argv, tree, self.envs[side], self.timeout,
                               pass_fds={LOG_FD: write_end}, drain=[read_end], valgrind=True)
        finally:
            os.close(read_end)
        data = res.streams.get(read_end, b"")
        if len(data) >= LOG_LIMIT:
            return res, None, "valgrind's log is larger than any run writes"
        count = count_instructions(data, res.pid)
        return res, count.instructions, count.problem

    def once(self, side: str, record: bool) -> str | None:
        """Run one side; return why the run cannot count, or None."""
        res, value, tampered = self._measure(side)
        digest = hashlib.sha256(res.stdout).hexdigest()
        first = self.outputs.setdefault(side, {
            "sha256": digest,
            "head": res.stdout[:MAX_STDOUT_KEEP].decode("utf-8", "replace"),
        })
        problem = self._problem(side, res, tampered)
        if problem:
            return problem
        if digest != first["sha256"]:
            return f"{side}: output differs between runs of the same tree"
        if value is None or not math.isfinite(value) or value <= 0:
            return f"{side}: no {self.metric} measurement"
        if record:
            self.samples[side].append(value)
            used = self.resources[side]
            used["cpu"].append(res.cpu)
            used["wall"].append(res.wall)
            used["rss"].append(float(res.max_rss_kb))
        return None

    def _problem(self, side: str, res: Measured, tampered: str | None) -> str | None:
        if res.problem:
            return f"{side}: {res.problem}"
        if res.timed_out:
            return f"{side}: timed out after {self.timeout:g}s"
        if res.exit_code != 0:
            return f"{side}: exit code {res.exit_code}: {res.stderr_tail[-500:]}"
        if res.leftovers:
            return (f"{side}: the benchmark left processes running ({res.leftovers} still ran "
                    "after it exited; they were killed)")
        if tampered:
            self.tampered = f"{side}: {tampered}"
            return self.tampered
        return None


def cmd_bench(args: argparse.Namespace, guard: Guard) -> dict[str, Any]:
    spec: dict[str, list[str]] = json.loads(args.spec)
    rng = random.Random(args.seed)
    trees = {"a": tree_path(guard, args.a), "b": tree_path(guard, args.b)}
    sites = {"a": site_path(guard, args.a), "b": site_path(guard, args.b)}
    results = []
    for name, argv in spec.items():
        bench = _Bench(argv, trees, sites, args.timeout, args.metric, guard)
        # Time: one discarded warm-up run each, then pairs in random order, so neither side
        # always runs first into a warm or cold cache. Instructions need no warm-up.
        failure = None
        if args.metric != "instructions":
            failure = bench.once("a", False) or bench.once("b", False)
        for _ in range(args.pairs):
            if failure:
                break
            order = ("a", "b") if rng.random() < 0.5 else ("b", "a")
            failure = bench.once(order[0], True) or bench.once(order[1], True)
        results.append({
            "name": name,
            "metric": args.metric,
            "a": bench.samples["a"],
            "b": bench.samples["b"],
            "output": bench.outputs,
            "resources": bench.resources,
            "failure": failure,
            "tampered": bench.tampered,
        })
    return {"kind": "bench", "benchmarks": results}


def cmd_probe(args: argparse.Namespace, guard: Guard) -> dict[str, Any]:
    """What this sandbox can measure, and how far the judge is separated from the judged."""
    return {
        "kind": "probe",
        "python": sys.version.split()[0],
        "valgrind": shutil.which("valgrind") is not None,
        "demoted": guard.setup.user is not None,
        "cpu_meter": guard.meter.kind,
    }


def cmd_profile(args: argparse.Namespace, guard: Guard) -> dict[str, Any]:
    """Each benchmark once under cProfile in the tree (selfcode_profile.py): its hotspots."""
    spec: dict[str, list[str]] = json.loads(args.spec)
    tree = tree_path(guard, args.tree)
    env = base_env(tree, site_path(guard, args.tree))
    results = []
    for name, argv in spec.items():
        with RunDir(guard) as run:
            results.append(selfcode_profile.profile_benchmark(
                name, argv, run.path,
                lambda wrapped: run_measured(guard, wrapped, tree, env, args.timeout)))
    return {"kind": "profile", "python": sys.version.split()[0], "benchmarks": results}


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--judge-dir", required=True)
    common.add_argument("--user", default=None)
    common.add_argument("--fresh", action="append", default=[])
    common.add_argument("--cpu-meter", choices=("cgroup", "rusage"), default="rusage")
    common.add_argument("--timeout", type=float, default=300)
    parser = argparse.ArgumentParser(prog="harness")
    sub = parser.add_subparsers(dest="cmd", required=True)
    seal = sub.add_parser("seal", parents=[common])
    seal.add_argument("--src", required=True)
    seal.add_argument("--tree", required=True)
    seal.add_argument("--drop", action="append", default=[])
    apply = sub.add_parser("apply", parents=[common])
    apply.add_argument("--base", required=True)
    apply.add_argument("--tree", required=True)
    apply.add_argument("--diff", required=True)
    tests = sub.add_parser("tests", parents=[common])
    tests.add_argument("--tree", required=True)
    selfcode_cascade.add_options(tests)
    tests.add_argument("pytest_args", nargs="*")
    bench = sub.add_parser("bench", parents=[common])
    bench.add_argument("--a", required=True)
    bench.add_argument("--b", required=True)
    bench.add_argument("--spec", required=True)
    bench.add_argument("--pairs", type=int, default=10)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--metric", choices=("cpu_time", "instructions"), default="cpu_time")
    sub.add_parser("probe", parents=[common])
    profile = sub.add_parser("profile", parents=[common])
    profile.add_argument("--tree", required=True)
    profile.add_argument("--spec", required=True)
    selfcode_equiv.add_parser(sub, common)
    selfcode_canary.add_parser(sub, common)
    selfcode_cascade.add_parser(sub, common)
    return parser


def _setup(args: argparse.Namespace) -> Setup:
    user = None
    if args.user:
        uid, _, gid = args.user.partition(":")
        user = (int(uid), int(gid or uid))
    return Setup(judge_dir=os.path.abspath(args.judge_dir), user=user,
                 fresh=tuple(os.path.abspath(p) for p in args.fresh), cpu_meter=args.cpu_meter)


COMMANDS = {"seal": cmd_seal, "apply": cmd_apply, "tests": cmd_tests, "bench": cmd_bench,
            "probe": cmd_probe, "profile": cmd_profile}

# The equivalence check reuses this module's trees, run directories and environment.
COMMANDS["equiv"] = lambda args, guard: selfcode_equiv.cmd_equiv(args, guard, sys.modules[__name__])
COMMANDS["canary"] = lambda args, guard: selfcode_canary.cmd_canary(args, guard,
                                                                  sys.modules[__name__])
COMMANDS["imports"] = lambda args, guard: selfcode_cascade.cmd_imports(args, guard,
                                                                     sys.modules[__name__])


def main(argv: list[str] | None = None) -> int:
    # The nonce authenticates this process's report; no child may inherit it.
    nonce = os.environ.pop(NONCE_ENV, "")
    args = _parser().parse_args(argv)
    # The sandbox's TERM on timeout still kills every candidate process on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    guard: Guard | None = None
    try:
        guard = Guard(_setup(args))
        doc = COMMANDS[args.cmd](args, guard)
    except HarnessError as exc:
        doc = {"kind": "error", "error": str(exc)}
    finally:
        if guard is not None:
            guard.close()
    doc["nonce"] = nonce
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    return 3 if doc["kind"] == "error" else 0


if __name__ == "__main__":
    sys.exit(main())
