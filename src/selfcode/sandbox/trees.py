"""Baseline and candidate trees inside any sandbox, and the frozen harness run over them.

Every step runs the harness as the judge (`Sandbox.exec(judge=True)`: root in the docker
sandbox, which starts each candidate process demoted to the candidate uid). The harness keeps
both trees in `{judge_dir}/trees/a` and `.../b`, laid out alike (same path length, same modes)
and read-only to candidate processes: `load_baseline` seals the staged baseline there, `apply`
patches a copy of it as the candidate uid and seals the result. Each sealed tree is precompiled
by the judge and, when it is a package, installed as its users would (`pip install --no-deps
--no-build-isolation`, sandbox/selfcode_install.py): its metadata and console scripts are on
every judged process's paths. A baseline that does not install stops the run; a candidate that
does not, or whose install differs from the baseline's, is rejected. Tests run in a fresh copy
owned by the candidate uid, removed afterwards; benchmarks run in the sealed trees themselves,
each process from a fresh /tmp, $HOME and /dev/shm.

Each harness run gets a fresh nonce in its environment (never on a command line, and no
candidate process can read the judge's environment); a report without it, from a harness that
did not exit 0, or incomplete, raises `JudgeReportError`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from itertools import count

from selfcode.errors import JudgeReportError, SandboxError
from selfcode.sandbox.base import ExecResult, Sandbox
from selfcode.sandbox.coverage import CoverageReport, ImportsReport
from selfcode.sandbox.results import (
    BenchReport,
    BenchRun,
    CanaryReport,
    CanaryRun,
    EquivReport,
    EquivRun,
    Probe,
    ProbeReport,
    ProfileReport,
    ProfileRun,
    T,
    TestsReport,
    TestsRun,
    TreeReport,
    check_complete,
    parse_report,
)
from selfcode.sandbox.slots import TimingSlot

NONCE_ENV = "SELFCODE_REPORT_NONCE"
_HARNESS_GRACE = 30.0
# Sealing a tree runs up to two timed steps: `git apply` (for a candidate) and `pip install`.
_SEAL_RUNS = 2


@dataclass(frozen=True)
class ApplyResult:
    ok: bool
    message: str
    duration: float
    install_seconds: float | None = None
    """How long installing the candidate took (None: the tree is no package)."""
    install_error: str | None = None
    """Why the candidate does not install; it is then rejected."""


class Trees:
    def __init__(self, sandbox: Sandbox, timeout: float,
                 timing_slot: TimingSlot | None = None) -> None:
        self.sandbox = sandbox
        # CPU-time runs hold it (sandbox/slots.py); a private one when no judge shares it.
        self.timing_slot = timing_slot or TimingSlot()
        self.timeout = timeout
        self.a = f"{sandbox.judge_dir}/trees/a"
        self.b = f"{sandbox.judge_dir}/trees/b"
        self._names = count(1)
        self.install_seconds: float | None = None
        """How long installing the baseline took (None: it is no package)."""

    def harness_options(self) -> list[str]:
        """The options every harness command needs in this sandbox."""
        box = self.sandbox
        options = ["--judge-dir", box.judge_dir, "--cpu-meter", box.cpu_meter]
        if box.candidate_user:
            options += ["--user", box.candidate_user]
        for path in box.fresh_dirs:
            options += ["--fresh", path]
        return options

    def _run_harness(self, command: str, args: list[str], timeout: float
                     ) -> tuple[ExecResult, str]:
        """One harness run as the judge, with a fresh nonce; the result and that nonce."""
        nonce = secrets.token_hex(16)
        # The harness's bytecode is cached where only the judge can write (its own directory
        # is read-only): a candidate cannot plant code there, and each start skips compiling.
        argv = [self.sandbox.python, "-X", f"pycache_prefix={self.sandbox.judge_dir}/pycache",
                self.sandbox.harness, command, *self.harness_options(), *args]
        env = {NONCE_ENV: nonce, "PYTHONDONTWRITEBYTECODE": ""}
        # Shared: beside other judges' runs, never beside another's CPU-time run (which holds
        # the slot alone; its own harness run shares it from inside that hold).
        with self.timing_slot.share():
            return self.sandbox.exec(argv, timeout=timeout, env=env, judge=True), nonce

    def _harness(self, command: str, args: list[str], model: type[T],
                 timeout: float) -> tuple[T, float]:
        result, nonce = self._run_harness(command, args, timeout)
        if result.timed_out or result.killed_reason:
            raise JudgeReportError(
                f"the harness was killed by the sandbox ({result.killed_reason or 'timeout'})")
        return parse_report(result, model, nonce), result.duration

    def load_baseline(self, tar: bytes) -> None:
        """Replace the baseline with the files of `tar` (the tracked files of a commit)."""
        staged = self.sandbox.stage_tree("baseline", tar)
        report, _ = self._harness("seal", ["--src", staged, "--tree", "a", "--drop", "b",
                                           "--timeout", str(self.timeout)],
                                  TreeReport, _SEAL_RUNS * self.timeout + _HARNESS_GRACE)
        if not report.ok:
            raise SandboxError(f"Could not load the baseline in the sandbox: {report.message}")
        if report.install_error:
            raise SandboxError(
                "The baseline does not install in the sandbox (pip install --no-deps "
                f"--no-build-isolation: {report.install_error}); make `pip install .` work "
                "offline in a clean checkout with the build backend of [build-system] "
                "requires, then run again.")
        self.install_seconds = report.install_seconds

    def apply(self, diff: str) -> ApplyResult:
        """Make the candidate a copy of the baseline with `diff` applied; the baseline stays."""
        staged = self.sandbox.stage(f"candidate-{next(self._names)}.diff", diff.encode("utf-8"))
        report, duration = self._harness(
            "apply", ["--base", "a", "--tree", "b", "--diff", staged,
                      "--timeout", str(self.timeout)], TreeReport,
            _SEAL_RUNS * self.timeout + _HARNESS_GRACE)
        return ApplyResult(report.ok, report.message[-1000:], duration,
                           report.install_seconds, report.install_error)

    def reset_candidate(self) -> None:
        """Make the candidate an exact copy of the baseline (for A/A checks)."""
        report, _ = self._harness("seal", ["--src", self.a, "--tree", "b",
                                           "--timeout", str(self.timeout)], TreeReport,
                                  _SEAL_RUNS * self.timeout + _HARNESS_GRACE)
        if not report.ok or report.install_error:
            raise SandboxError("Could not reset the candidate tree in the sandbox"
                               + (f" ({report.install_error})." if report.install_error else "."))

    def run_tests(self, side: str, pytest_args: list[str] | None = None,
                  select: list[str] | None = None) -> TestsRun:
        """The tests of one tree; JudgeReportError when the run's evidence was tampered with.
        `select`: only these node ids, stopping at the first failure (the cascade's stage)."""
        options = []
        if select is not None:
            staged = self.sandbox.stage(f"selection-{next(self._names)}.txt",
                                        "\n".join(select).encode("utf-8"))
            options = ["--select", staged]
        return self._tests(side, options, pytest_args, TestsReport)

    def record_coverage(self, pytest_args: list[str] | None = None) -> CoverageReport | None:
        """The baseline's tests once more, with the files each test executes
        (`harness.py tests --coverage`); None when the run was killed or timed out."""
        run = self._tests("a", ["--coverage"], pytest_args, CoverageReport)
        return run if isinstance(run, CoverageReport) else None

    def _tests(self, side: str, options: list[str], pytest_args: list[str] | None,
               model: type[TestsReport]) -> TestsRun:
        args = ["--tree", "a" if side == "a" else "b", "--timeout", str(self.timeout),
                *options, "--", *(pytest_args or [])]
        result, nonce = self._run_harness("tests", args, self.timeout + _HARNESS_GRACE)
        if result.killed_reason and result.killed_reason != "timeout":
            return TestsRun(exit_code=-9, timed_out=False, duration=result.duration,
                            stderr_tail=f"killed: {result.killed_reason}")
        if result.timed_out:
            return TestsRun(exit_code=-9, timed_out=True, duration=result.duration)
        report = parse_report(result, model, nonce)
        if report.tampered:
            raise JudgeReportError(f"tests: {report.tampered}")
        if model is not TestsReport:
            return report
        return TestsRun.model_validate(report.model_dump(exclude={"kind", "nonce"}))

    def imports(self, paths: list[str]) -> ImportsReport:
        """The changed modules among `paths` imported in the candidate tree, each that fails
        also in the baseline's (`harness.py imports`, sandbox/selfcode_cascade.py)."""
        args = ["--a", "a", "--b", "b", "--paths", json.dumps(paths),
                "--timeout", str(self.timeout)]
        report, _ = self._harness("imports", args, ImportsReport,
                                  2 * self.timeout + _HARNESS_GRACE)
        return report

    def run_benchmarks(self, spec: dict[str, list[str]], pairs: int, seed: int,
                       metric: str = "cpu_time", aa: bool = False) -> BenchRun:
        """Measure baseline against candidate, or against itself when `aa` (noise calibration)."""
        args = ["--a", "a", "--b", "a" if aa else "b", "--spec", json.dumps(spec),
                "--pairs", str(pairs), "--seed", str(seed), "--timeout", str(self.timeout),
                "--metric", metric]
        budget = (2 * pairs + 2) * len(spec) * self.timeout + _HARNESS_GRACE
        if metric == "instructions":  # deterministic: side by side with all but timing runs
            report, _ = self._harness("bench", args, BenchReport, budget)
        else:
            with self.timing_slot.hold(f"{metric} of {', '.join(spec)}"):
                report, _ = self._harness("bench", args, BenchReport, budget)
        run = BenchRun.model_validate(report.model_dump(exclude={"kind", "nonce"}))
        check_complete(run, list(spec), pairs, metric)
        return run

    def equivalence(self, spec: dict[str, object], processes: int = 4) -> EquivRun:
        """The changed functions called on both trees (`harness.py equiv`, see
        sandbox/selfcode_equiv.py); `processes` bounds how many timed steps it may take."""
        args = ["--a", "a", "--b", "b", "--spec", json.dumps(spec), "--timeout",
                str(self.timeout)]
        report, _ = self._harness("equiv", args, EquivReport,
                                  processes * self.timeout + _HARNESS_GRACE)
        return EquivRun.model_validate(report.model_dump(exclude={"kind", "nonce"}))

    def probe(self) -> Probe:
        report, _ = self._harness("probe", [], ProbeReport, 60)
        return Probe.model_validate(report.model_dump(exclude={"kind", "nonce"}))

    def profile(self, spec: dict[str, list[str]]) -> ProfileRun:
        """Where each benchmark's time goes in the baseline (`harness.py profile`): every
        benchmark run once under cProfile, and once more for line timings on Python 3.12+."""
        args = ["--tree", "a", "--spec", json.dumps(spec), "--timeout", str(self.timeout)]
        report, _ = self._harness("profile", args, ProfileReport,
                                  2 * len(spec) * self.timeout + _HARNESS_GRACE)
        return ProfileRun.model_validate(report.model_dump(exclude={"kind", "nonce"}))

    def stage_canary(self, fixture_tar: bytes) -> str:
        """Stage the canary's fixture (read-only to every process); its path in the sandbox."""
        return self.sandbox.stage_tree("canary", fixture_tar)

    def canary(self, fixture: str, patch: str) -> CanaryRun:
        """The candidate tree's own selfcode judges `patch` to the staged `fixture`
        (`harness.py canary`, sandbox/selfcode_canary.py)."""
        staged = self.sandbox.stage(f"canary-{next(self._names)}.diff", patch.encode("utf-8"))
        report, _ = self._harness("canary", ["--tree", "b", "--fixture", fixture, "--diff", staged,
                                             "--timeout", str(self.timeout)],
                                  CanaryReport, self.timeout + _HARNESS_GRACE)
        return CanaryRun.model_validate(report.model_dump(exclude={"kind", "nonce"}))
