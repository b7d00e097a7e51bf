"""selfcode's frozen harness: runs a tree's tests and benchmarks in the sandbox; prints one JSON.

It comes from selfcode's package (mounted read-only), never from the candidate, and uses the
standard library only, so it runs on any Python the sandbox has. The host treats what it prints
as untrusted input.

    python harness.py tests --tree DIR [--timeout S] [-- PYTEST ARGS...]
    python harness.py bench --a DIR --b DIR --spec JSON [--pairs N] [--seed N] [--timeout S]
                            [--metric cpu_time|instructions]
    python harness.py probe

Beside it, `selfcode_pytest_plugin.py` records the ids pytest collected, so the host can check
the JUnit report against them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Any

TAIL_BYTES = 4000
MAX_STDOUT_KEEP = 2000
COLLECT_ENV = "SELFCODE_COLLECT_OUT"


# --- process running ---------------------------------------------------------------------------


def run(argv: list[str], cwd: str, timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one fresh process in its own group; CPU time comes from the kernel, not the child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = start + timeout
        timed_out = False
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                timed_out = True
                _kill_group(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        _kill_group(proc.pid)  # whatever the child left running in its group goes too
        out.seek(0)
        stdout = out.read()
        err.seek(0, os.SEEK_END)
        size = err.tell()
        err.seek(max(0, size - TAIL_BYTES))
        stderr_tail = err.read()
    return {
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "wall": wall,
        "cpu": (usage.ru_utime + usage.ru_stime) if usage else None,
        "max_rss_kb": usage.ru_maxrss if usage else None,
        "stdout": stdout,
        "stderr_tail": stderr_tail.decode("utf-8", "replace"),
    }


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def base_env(tree: str) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    src = os.path.join(tree, "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src if os.path.isdir(src) else "", tree) if p)
    return env


# --- tests -------------------------------------------------------------------------------------


def junit_key(nodeid: str) -> str:
    """The classname.name that pytest's JUnit XML writes for a node id."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names)


def parse_junit(path: str) -> dict[str, str] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    outcomes: dict[str, str] = {}
    for case in root.iter("testcase"):
        key = f"{case.get('classname', '')}.{case.get('name', '')}".lstrip(".")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                break
            if child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        outcomes[key] = outcome
    return outcomes


def cmd_tests(args: argparse.Namespace) -> dict[str, Any]:
    tree = os.path.abspath(args.tree)
    workdir = tempfile.mkdtemp(prefix="selfcode-tests-")
    junit = os.path.join(workdir, "junit.xml")
    collected_file = os.path.join(workdir, "collected.json")
    env = base_env(tree)
    env[COLLECT_ENV] = collected_file
    harness_dir = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([harness_dir, env["PYTHONPATH"]])
    argv = [
        sys.executable, "-m", "pytest", "-p", "selfcode_pytest_plugin", "-p", "no:cacheprovider",
        f"--junitxml={junit}", "-o", "junit_family=xunit2", "-q", *args.pytest_args,
    ]
    result = run(argv, tree, args.timeout, env)
    collected: list[str] | None = None
    try:
        with open(collected_file, encoding="utf-8") as fh:
            collected = [str(x) for x in json.load(fh)]
    except (OSError, ValueError):
        collected = None
    by_key = parse_junit(junit)
    outcomes: dict[str, str] | None = None
    if by_key is not None and collected is not None:
        outcomes = {nodeid: by_key.get(junit_key(nodeid), "missing") for nodeid in collected}
    return {
        "kind": "tests",
        "exit_code": result["exit_code"],
        "timed_out": result["timed_out"],
        "duration": result["wall"],
        "collected": collected,
        "outcomes": outcomes,
        "junit_cases": None if by_key is None else len(by_key),
        "output_tail": result["stdout"][-TAIL_BYTES:].decode("utf-8", "replace"),
        "stderr_tail": result["stderr_tail"],
    }


# --- benchmarks --------------------------------------------------------------------------------


VALGRIND_ARGS = ["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


class _Bench:
    """One benchmark's samples on both trees; each run is a fresh process."""

    def __init__(self, argv: list[str], trees: dict[str, str], timeout: float,
                 metric: str) -> None:
        self.argv, self.trees, self.timeout, self.metric = argv, trees, timeout, metric
        self.samples: dict[str, list[float]] = {"a": [], "b": []}
        # Every counted run's CPU, wall time and peak memory, whatever the metric: the host
        # checks a win for regressions in all three.
        self.resources: dict[str, dict[str, list[float]]] = {
            side: {"cpu": [], "wall": [], "rss": []} for side in ("a", "b")}
        self.outputs: dict[str, dict[str, Any]] = {}

    def _measure(self, side: str) -> tuple[dict[str, Any], float | None]:
        env = base_env(self.trees[side])
        if self.metric != "instructions":
            res = run(self.argv, self.trees[side], self.timeout, env)
            return res, res["cpu"]
        # Instruction counts are deterministic for the same binary, input and environment;
        # the count goes to a log file so the benchmark's own stderr stays its own.
        fd, log = tempfile.mkstemp(prefix="selfcode-vg-")
        os.close(fd)
        try:
            argv = ["valgrind", *VALGRIND_ARGS, f"--log-file={log}", *self.argv]
            res = run(argv, self.trees[side], self.timeout, env)
            with open(log, encoding="utf-8", errors="replace") as fh:
                found = _IREFS.search(fh.read())
        finally:
            os.unlink(log)
        return res, float(found.group(1).replace(",", "")) if found else None

    def once(self, side: str, record: bool) -> str | None:
        """Run one side; return why the run cannot count, or None."""
        res, value = self._measure(side)
        digest = hashlib.sha256(res["stdout"]).hexdigest()
        first = self.outputs.setdefault(side, {
            "sha256": digest,
            "head": res["stdout"][:MAX_STDOUT_KEEP].decode("utf-8", "replace"),
        })
        if res["timed_out"]:
            return f"{side}: timed out after {self.timeout:g}s"
        if res["exit_code"] != 0:
            return f"{side}: exit code {res['exit_code']}: {res['stderr_tail'][-500:]}"
        if digest != first["sha256"]:
            return f"{side}: output differs between runs of the same tree"
        if value is None:
            return f"{side}: no {self.metric} measurement"
        if record:
            self.samples[side].append(value)
            used = self.resources[side]
            used["cpu"].append(res["cpu"] or 0.0)
            used["wall"].append(res["wall"])
            used["rss"].append(float(res["max_rss_kb"] or 0))
        return None


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, list[str]] = json.loads(args.spec)
    rng = random.Random(args.seed)
    trees = {"a": os.path.abspath(args.a), "b": os.path.abspath(args.b)}
    results = []
    for name, argv in spec.items():
        bench = _Bench(argv, trees, args.timeout, args.metric)
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
        })
    return {"kind": "bench", "benchmarks": results}


def cmd_probe(args: argparse.Namespace) -> dict[str, Any]:
    """What this sandbox can measure."""
    return {
        "kind": "probe",
        "python": sys.version.split()[0],
        "valgrind": shutil.which("valgrind") is not None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tests = sub.add_parser("tests")
    tests.add_argument("--tree", required=True)
    tests.add_argument("--timeout", type=float, default=300)
    tests.add_argument("pytest_args", nargs="*")
    bench = sub.add_parser("bench")
    bench.add_argument("--a", required=True)
    bench.add_argument("--b", required=True)
    bench.add_argument("--spec", required=True)
    bench.add_argument("--pairs", type=int, default=10)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--timeout", type=float, default=300)
    bench.add_argument("--metric", choices=("cpu_time", "instructions"), default="cpu_time")
    sub.add_parser("probe")
    args = parser.parse_args(argv)
    commands = {"tests": cmd_tests, "bench": cmd_bench, "probe": cmd_probe}
    doc = commands[args.cmd](args)
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
