"""Judges candidate patches against one baseline inside one sandbox.

This is where the pieces meet: the patch is checked against the policy and the protected
paths, applied inside the sandbox, run through the frozen harness, and the gate decides.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from fnmatch import fnmatchcase

from selfcode.config import GateConfig
from selfcode.edits import DiffFile, PathPolicy, diff_stats, parse_unified_diff
from selfcode.errors import EditError, PolicyError, SandboxError
from selfcode.gate import (
    Goal,
    PatchSummary,
    Verdict,
    judge_benchmarks,
    judge_tests,
    objective_reason,
    protected_violations,
)
from selfcode.sandbox.results import TestsRun
from selfcode.sandbox.trees import Trees

Progress = Callable[[str], None]


def discover_benchmarks(files: list[str], config: GateConfig, python: str) -> dict[str, list[str]]:
    """Declared commands win; otherwise every benchmarks/bench_*.py, run as a script."""
    if config.benchmarks:
        commands = {name: shlex.split(cmd) for name, cmd in config.benchmarks.items()}
    else:
        commands = {
            path.rsplit("/", 1)[-1].removeprefix("bench_").removesuffix(".py"): ["python", path]
            for path in sorted(files)
            if fnmatchcase(path, "benchmarks/bench_*.py") and path.count("/") == 1
        }
    return {
        name: [python if argv[0] in ("python", "python3") else argv[0], *argv[1:]]
        for name, argv in commands.items()
        if argv
    }


class Judge:
    def __init__(
        self,
        trees: Trees,
        config: GateConfig,
        benchmarks: dict[str, list[str]],
        progress: Progress = lambda _msg: None,
        sandbox_start: float = 0.0,
    ) -> None:
        self.trees = trees
        self.config = config
        self.benchmarks = benchmarks
        self.progress = progress
        self.sandbox_start = sandbox_start
        self.goal: Goal = (
            config.goal if config.goal != "auto" else ("speed" if benchmarks else "fix")
        )
        self._baseline_tests: TestsRun | None = None
        self._seed = 0

    def set_baseline(self, tar: bytes) -> TestsRun:
        """Load the tree every candidate is compared with, and run its tests once."""
        self.trees.load_baseline(tar)
        self.progress("testing the baseline")
        tests = self.trees.run_tests("a")
        if tests.outcomes is None or tests.collected is None or tests.timed_out:
            tail = (tests.stderr_tail or tests.output_tail).strip()[-300:]
            raise SandboxError(
                "The repository's own tests give no usable report in the sandbox "
                f"(pytest exit code {tests.exit_code}); fix that first. {tail}".strip()
            )
        self._baseline_tests = tests
        return tests

    def _verdict(self, status: str, reasons: list[str], summary: PatchSummary,
                 timings: dict[str, float], **fields: object) -> Verdict:
        return Verdict.model_validate({
            "accepted": status == "accepted", "status": status, "goal": self.goal,
            "reasons": reasons, "patch": summary, "timings": timings,
            "sandbox": self.trees.sandbox.kind, **fields,
        })

    def judge(self, diff: str) -> Verdict:
        if self._baseline_tests is None:
            raise RuntimeError("set_baseline() must run before judge()")
        start = time.perf_counter()
        timings = {"sandbox_start": round(self.sandbox_start, 4)}

        def done(status: str, reasons: list[str], summary: PatchSummary,
                 **fields: object) -> Verdict:
            timings["total"] = round(time.perf_counter() - start + self.sandbox_start, 4)
            return self._verdict(status, reasons, summary, timings, **fields)

        policy = PathPolicy()
        try:
            files: list[DiffFile] = parse_unified_diff(diff, policy)
        except PolicyError as exc:
            return done("rejected", [str(exc)], PatchSummary())
        except EditError as exc:
            return done("unusable", [str(exc)], PatchSummary())
        summary = PatchSummary.model_validate(diff_stats(files))
        touched = {f.path for f in files} | {f.old_path for f in files if f.old_path}
        protected = protected_violations(sorted(touched), self.config.protected)
        if protected:
            return done("rejected", [f"protected path touched: {p}" for p in protected], summary)

        self.progress("applying")
        applied = self.trees.apply(diff)
        timings["apply"] = round(applied.duration, 4)
        if not applied.ok:
            return done("unusable", [f"the patch does not apply: {applied.message}"], summary)

        self.progress("testing")
        t0 = time.perf_counter()
        cand_tests = self.trees.run_tests("b")
        timings["tests"] = round(time.perf_counter() - t0, 4)
        tests, reasons = judge_tests(self._baseline_tests, cand_tests)
        if reasons:
            return done("rejected", reasons, summary, tests=tests)

        benches = []
        if self.goal == "speed" and self.benchmarks:
            self.progress("benchmarking")
            t0 = time.perf_counter()
            self._seed += 1
            run = self.trees.run_benchmarks(self.benchmarks, self.config.pairs, self._seed)
            timings["benchmarks"] = round(time.perf_counter() - t0, 4)
            benches, bench_reasons = judge_benchmarks(
                run, self.config.alpha, self.config.min_improvement
            )
            reasons.extend(bench_reasons)
        if not reasons:
            missing = objective_reason(self.goal, tests, benches, self.config.alpha,
                                       self.config.min_improvement)
            reasons.extend([missing] if missing else [])
        status = "rejected" if reasons else "accepted"
        return done(status, reasons, summary, tests=tests, benchmarks=benches)
