"""Baseline and candidate trees inside any sandbox, and the frozen harness run over them.

The baseline is unpacked read-only in the sandbox's inbox, so candidate code (which runs as
the same user as the harness) cannot slow it down by editing it; the candidate is a writable
copy in `{root}`. Their paths have equal length, so nothing that depends on path length tells
them apart. Each candidate starts as a fresh copy of the baseline, patched inside the sandbox.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from itertools import count

from selfcode.errors import SandboxError
from selfcode.sandbox.base import ExecResult, Sandbox
from selfcode.sandbox.results import BenchRun, Probe, TestsRun, parse_report

_HARNESS_GRACE = 30.0


@dataclass(frozen=True)
class ApplyResult:
    ok: bool
    message: str
    duration: float


class Trees:
    def __init__(self, sandbox: Sandbox, timeout: float) -> None:
        self.sandbox = sandbox
        self.timeout = timeout
        inbox, root = len(sandbox.inbox) + 1, len(sandbox.root) + 1
        self._a_name = "a" * max(1, root + 1 - inbox)
        self.a = f"{sandbox.inbox}/{self._a_name}"
        self.b = f"{sandbox.root}/{'b' * max(1, inbox + 1 - root)}"
        assert len(self.a) == len(self.b)
        self._names = count(1)

    def _sh(self, script: str, timeout: float | None = None) -> ExecResult:
        return self.sandbox.exec(["sh", "-c", script], timeout=timeout or self.timeout)

    def load_baseline(self, tar: bytes) -> None:
        """Replace the baseline with the files of `tar` (the tracked files of a commit)."""
        self.sandbox.stage_tree(self._a_name, tar)
        result = self._sh(f"rm -rf {shlex.quote(self.b)}")
        if not result.ok:
            detail = result.stderr.decode("utf-8", "replace").strip()[-300:]
            raise SandboxError(f"Could not reset the candidate tree in the sandbox: {detail}")

    def apply(self, diff: str) -> ApplyResult:
        """Reset the candidate to the baseline and apply `diff` to it; the baseline stays."""
        staged = self.sandbox.stage(f"candidate-{next(self._names)}.diff", diff.encode("utf-8"))
        a, b, q = shlex.quote(self.a), shlex.quote(self.b), shlex.quote(staged)
        result = self._sh(
            f"rm -rf {b} && cp -a {a} {b} && cd {b} && git apply --whitespace=nowarn {q}"
        )
        message = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
        return ApplyResult(result.ok, message[-1000:], result.duration)

    def reset_candidate(self) -> None:
        """Make the candidate an exact copy of the baseline (for A/A checks)."""
        b, a = shlex.quote(self.b), shlex.quote(self.a)
        result = self._sh(f"rm -rf {b} && cp -a {a} {b}")
        if not result.ok:
            raise SandboxError("Could not reset the candidate tree in the sandbox.")

    def run_tests(self, side: str, pytest_args: list[str] | None = None) -> TestsRun:
        tree = self.a if side == "a" else self.b
        argv = [self.sandbox.python, self.sandbox.harness, "tests", "--tree", tree,
                "--timeout", str(self.timeout), "--", *(pytest_args or [])]
        result = self.sandbox.exec(argv, timeout=self.timeout + _HARNESS_GRACE)
        if result.killed_reason and result.killed_reason != "timeout":
            return TestsRun(exit_code=-9, timed_out=False, duration=result.duration,
                            stderr_tail=f"killed: {result.killed_reason}")
        if result.timed_out:
            return TestsRun(exit_code=-9, timed_out=True, duration=result.duration)
        return parse_report(result.stdout, TestsRun, "tests")

    def run_benchmarks(self, spec: dict[str, list[str]], pairs: int, seed: int,
                       metric: str = "cpu_time", aa: bool = False) -> BenchRun:
        """Measure baseline against candidate, or against itself when `aa` (noise calibration)."""
        argv = [self.sandbox.python, self.sandbox.harness, "bench", "--a", self.a,
                "--b", self.a if aa else self.b, "--spec", json.dumps(spec),
                "--pairs", str(pairs), "--seed", str(seed), "--timeout", str(self.timeout),
                "--metric", metric]
        budget = (2 * pairs + 2) * len(spec) * self.timeout + _HARNESS_GRACE
        result = self.sandbox.exec(argv, timeout=budget)
        if result.timed_out or result.killed_reason:
            reason = result.killed_reason or "timeout"
            raise SandboxError(f"The benchmark run was killed by the sandbox ({reason}).")
        return parse_report(result.stdout, BenchRun, "benchmark")

    def probe(self) -> Probe:
        result = self.sandbox.exec([self.sandbox.python, self.sandbox.harness, "probe"],
                                   timeout=60)
        return parse_report(result.stdout, Probe, "probe")
