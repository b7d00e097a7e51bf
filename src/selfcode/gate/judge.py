"""Judges candidate patches against one baseline inside one sandbox.

This is where the pieces meet: the patch is checked against the policy and the protected
paths, applied inside the sandbox, run through the frozen harness, and the gate decides.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import shlex
import tarfile
import time
from collections.abc import Callable
from fnmatch import fnmatchcase

from selfcode.edits import DiffFile, PathPolicy, diff_stats, parse_unified_diff
from selfcode.errors import (
    ConfigError,
    EditError,
    JudgeReportError,
    PolicyError,
    SandboxBroken,
    SandboxError,
)
from selfcode.gate.canary import Corpus, failure_reason, load_corpus, outcome, read_verdict
from selfcode.gate.canary import summarize as summarize_canary
from selfcode.gate.config import GateConfig
from selfcode.gate.equivalence import Plan, plan, python_sources
from selfcode.gate.equivalence import reasons as equivalence_reasons
from selfcode.gate.gitpatch import GitBaseline, GitReading
from selfcode.gate.measure import Calibration, calibrate, measure
from selfcode.gate.metric import judge_metric
from selfcode.gate.paths import lookalike_violations
from selfcode.gate.probes import context_probes
from selfcode.gate.protected import protected_violations
from selfcode.gate.shadowing import shadowing_violations
from selfcode.gate.testrules import fix_reason, flaky_tests, judge_tests
from selfcode.gate.verdict import (
    BenchVerdict,
    CanaryVerdict,
    Counterexample,
    EquivalenceVerdict,
    Goal,
    PatchSummary,
    TestsVerdict,
    Verdict,
)
from selfcode.run.events import Observer
from selfcode.sandbox.base import Sandbox
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
    """Judges candidate diffs against one baseline inside one sandbox."""

    def __init__(
        self,
        trees: Trees,
        config: GateConfig,
        benchmarks: dict[str, list[str]],
        progress: Progress = lambda _msg: None,
        sandbox_start: float = 0.0,
        reopen: Callable[[], Sandbox] | None = None,
    ) -> None:
        """`reopen` opens a fresh sandbox, for when a candidate has broken the current one;
        without it a broken sandbox stays broken and the next command says so."""
        self.trees = trees
        self.config = config
        self.benchmarks = benchmarks
        self.progress = progress
        self.sandbox_start = sandbox_start
        self.goal: Goal = (
            config.judge if config.judge != "auto" else ("speed" if benchmarks else "fix")
        )
        if self.goal == "metric" and not config.metric_command:
            raise ConfigError("The judge 'metric' needs [tool.selfcode.gate] metric_command, a "
                              "command that prints one JSON number.")
        if config.allow_judge_edits and not config.canary:
            raise ConfigError("--allow-judge-edits needs a canary corpus ([tool.selfcode.gate] "
                              "canary), which proves each candidate's own judge before it is "
                              "accepted; add one or drop the flag.")
        self.calibration: Calibration | None = None
        self.quarantined: set[str] = set()
        self._baseline_tests: TestsRun | None = None
        self._git: GitBaseline | None = None
        self._baseline_tar: bytes | None = None
        self._baseline_paths: frozenset[str] = frozenset()
        self._reopen = reopen
        self._broken: str | None = None
        self._seed = 0
        self._sources: dict[str, str] = {}
        self._equiv_id = ""
        # Promotion (gate/canary.py): whether this judge runs the canary on what it accepts.
        # The loop's first judge leaves it to the re-check in a fresh sandbox.
        self.promote = True
        self._corpus: Corpus | None = None
        self._canary_stage: tuple[str, dict[str, str]] | None = None

    def fork(self, sandbox: Sandbox, sandbox_start: float = 0.0) -> Judge:
        """The same judgement in another sandbox: same rules, noise floor and quarantine.

        The re-check of an accepted candidate repeats the judgement in a fresh sandbox; it
        must not recalibrate (a new noise floor would be another gate) nor forget which tests
        were found flaky. Its baseline still has to be set and tested there.
        """
        twin = Judge(Trees(sandbox, self.trees.timeout), self.config, self.benchmarks,
                     progress=self.progress, sandbox_start=sandbox_start,
                     reopen=self._reopen)
        twin.calibration = self.calibration
        twin.quarantined = set(self.quarantined)
        twin.promote = True  # the re-check is where an accepted self-candidate is promoted
        return twin

    def set_baseline(self, tar: bytes, runs: int = 1) -> TestsRun:
        """Load the tree every candidate is compared with and run its tests; tests whose
        outcome varies between the `runs` runs are quarantined for the rest of the run."""
        self._healthy_sandbox()
        self._baseline_tar = tar
        with tarfile.open(fileobj=io.BytesIO(tar)) as listing:
            self._baseline_paths = frozenset(m.name.removeprefix("./") for m in listing)
        self.trees.load_baseline(tar)
        if self._git is not None:
            self._git.close()
        self._git = GitBaseline(tar)  # git's own reading of each patch, on the host
        self._sources = python_sources(tar)
        # Read from the baseline, never the candidate; staged (salted) on first use.
        self._corpus = load_corpus(tar, self.config.canary) if self.config.canary else None
        self._canary_stage = None
        # The sandbox keeps its recordings and the baseline's answers under this id.
        self._equiv_id = secrets.token_hex(8)
        results = []
        for i in range(runs):
            self.progress("testing the baseline" + (f" ({i + 1} of {runs})" if runs > 1 else ""))
            tests = self.trees.run_tests("a", self.config.pytest_args)
            if tests.outcomes is None or tests.collected is None or tests.timed_out:
                tail = (tests.stderr_tail or tests.output_tail).strip()[-300:]
                raise SandboxError(
                    "The repository's own tests give no usable report in the sandbox "
                    f"(pytest exit code {tests.exit_code}); fix that first. {tail}".strip()
                )
            results.append(tests)
        self.quarantined |= set(flaky_tests(results))
        self._baseline_tests = results[0]
        return results[0]

    def calibrate(self, pairs: int | None = None) -> Calibration | None:
        """Measure the baseline against itself once per run: metric and noise per benchmark."""
        if self.goal != "speed" or not self.benchmarks:
            return None
        self.progress("calibrating benchmark noise (A/A)")
        self.calibration = calibrate(self.trees, self.benchmarks, self.config, pairs)
        return self.calibration

    def _verdict(self, status: str, reasons: list[str], summary: PatchSummary,
                 timings: dict[str, float], **fields: object) -> Verdict:
        return Verdict.model_validate({
            "accepted": status == "accepted", "status": status, "goal": self.goal,
            "reasons": reasons, "patch": summary, "timings": timings,
            "sandbox": self.trees.sandbox.kind,
            "integrity_gaps": list(self.trees.sandbox.integrity_gaps), **fields,
        })

    def _healthy_sandbox(self) -> None:
        """Replace a sandbox that the last candidate broke before anything else runs in it.

        Otherwise the next, innocent candidate would be the one rejected for it. The new
        sandbox gets the same baseline tree; its tests, calibration and quarantine stand.
        """
        broken = self._broken or self.trees.sandbox.broken
        if not broken or self._reopen is None:
            return
        self.progress("replacing the sandbox the last candidate broke")
        with contextlib.suppress(SandboxError):
            self.trees.sandbox.close()
        self.trees = Trees(self._reopen(), self.trees.timeout)
        self._broken = None
        if self._baseline_tar is not None:
            self.trees.load_baseline(self._baseline_tar)

    def judge(self, diff: str) -> Verdict:
        if self._baseline_tests is None or self._git is None:
            raise RuntimeError("set_baseline() must run before judge()")
        self._healthy_sandbox()
        # git ignores a last header line with no newline, while the commit applies the patch
        # with one: judge exactly the lines that will be committed.
        diff = diff if not diff or diff.endswith("\n") else diff + "\n"
        start = time.perf_counter()
        timings = {"sandbox_start": round(self.sandbox_start, 4)}

        def done(status: str, reasons: list[str], summary: PatchSummary,
                 **fields: object) -> Verdict:
            timings["total"] = round(time.perf_counter() - start + self.sandbox_start, 4)
            # The container start is paid once; later candidates reuse the warm sandbox.
            self.sandbox_start = 0.0
            return self._verdict(status, reasons, summary, timings, **fields)

        try:
            summary, reading, refusal = self._police(diff, timings)
            checks = None if refusal or reading is None else self._equivalence_plan(reading)
        except RecursionError:
            # Candidate text nested deeper than Python's parser goes: refuse, never crash.
            return done("rejected", ["the patch's code is nested too deeply for the gate to read "
                                     "it; write it flatter"], PatchSummary())
        except (ValueError, UnicodeError) as exc:
            # Whatever else in the text the readers choke on is the patch's fault, not a crash.
            return done("unusable", [f"the gate could not read the patch: {exc}"[:500]],
                        PatchSummary())
        if refusal:
            return done(*refusal, summary)

        try:
            return self._in_sandbox(diff, summary, timings, done, checks)
        except JudgeReportError as exc:
            # Forged, inconsistent or lost evidence: never an acceptance, never a traceback.
            return done("rejected", [str(exc)], summary)
        except SandboxBroken as exc:
            # What ran in the sandbox killed or wedged it: the candidate's fault, not the run's.
            self._broken = str(exc)
            return done("rejected", [f"the candidate broke its sandbox: {exc}"], summary)

    def _police(self, diff: str, timings: dict[str, float]) -> tuple[
            PatchSummary, GitReading | None, tuple[str, list[str]] | None]:
        """The host's reading of the patch, before any of it reaches the sandbox: nothing of it
        runs here, and any doubt refuses it. Returns the refusal as (status, reasons)."""
        assert self._git is not None
        try:
            files: list[DiffFile] = parse_unified_diff(diff, PathPolicy())
        except PolicyError as exc:
            return PatchSummary(), None, ("rejected", [str(exc)])
        except EditError as exc:
            return PatchSummary(), None, ("unusable", [str(exc)])
        summary = PatchSummary.model_validate(diff_stats(files))
        t0 = time.perf_counter()
        reading = self._git.read(diff, files)  # every path either reading names is checked
        timings["read"] = round(time.perf_counter() - t0, 4)
        touched = sorted({f.path for f in files} | {f.old_path for f in files if f.old_path}
                         | reading.paths)
        protected = (protected_violations(touched, self.config.protected)
                     or lookalike_violations(touched, self.config.protected))
        if protected:
            return summary, reading, ("rejected",
                                      [f"protected path touched: {p}" for p in protected])
        if reading.refusal:
            return summary, reading, (reading.status, [reading.refusal])
        shadows = shadowing_violations(touched, self._baseline_paths)
        if shadows:
            return summary, reading, ("rejected", shadows)
        probes = (context_probes(diff, self._git.new_files(reading))
                  if self.config.refuse_context_probes else [])
        if probes:
            return summary, reading, ("rejected", [
                f"the patch inspects how it is run ({', '.join(probes)}); a change must be "
                "faster everywhere, not only under the benchmark"])
        return summary, reading, None

    def _in_sandbox(self, diff: str, summary: PatchSummary, timings: dict[str, float],
                    done: Callable[..., Verdict], checks: Plan | None = None) -> Verdict:
        assert self._baseline_tests is not None
        self.progress("applying")
        applied = self.trees.apply(diff)
        timings["apply"] = round(applied.duration, 4)
        if not applied.ok:
            return done("unusable", [f"the patch does not apply: {applied.message}"], summary)
        if applied.install_seconds is not None:
            timings["install"] = round(applied.install_seconds, 4)
        if applied.install_error:
            return done("rejected", [f"the candidate does not install: {applied.install_error}"],
                        summary)

        self.progress("testing")
        t0 = time.perf_counter()
        cand_tests = self.trees.run_tests("b", self.config.pytest_args)
        timings["tests"] = round(time.perf_counter() - t0, 4)
        tests, reasons = judge_tests(self._baseline_tests, cand_tests, self.quarantined)
        if cand_tests.leftover_processes and not self._baseline_tests.leftover_processes:
            reasons.append(f"the tests left {cand_tests.leftover_processes} processes running "
                           "after pytest exited")
        if reasons:
            return done("rejected", reasons, summary, tests=tests)

        equivalence = None
        if checks is not None:
            # After the tests (a candidate they reject costs nothing more), before the
            # benchmarks (the costliest step, wasted on a candidate that behaves otherwise).
            self.progress("comparing behaviour with the baseline")
            t0 = time.perf_counter()
            equivalence, reasons = self._equivalence(checks)
            timings["equivalence"] = round(time.perf_counter() - t0, 4)
            if reasons:
                return done("rejected", reasons, summary, tests=tests, equivalence=equivalence)

        t0 = time.perf_counter()
        benches, missing = self._objective(tests)
        timings["benchmarks"] = round(time.perf_counter() - t0, 4)
        reasons.extend(missing)
        fields = {"tests": tests, "benchmarks": benches, "equivalence": equivalence}
        if reasons:
            return done("rejected", reasons, summary, **fields)
        if self._corpus is None or not self.promote:
            return done("accepted", [], summary, **fields)
        t0 = time.perf_counter()
        canary, reasons = self._promotion()
        timings["canary"] = round(time.perf_counter() - t0, 4)
        return done("rejected" if reasons else "accepted", reasons, summary, canary=canary,
                    **fields)

    def _promotion(self) -> tuple[CanaryVerdict, list[str]]:
        """The candidate's own judge on each canary case, in order; stops at its first wrong
        verdict, which rejects the candidate (gate/canary.py)."""
        assert self._corpus is not None
        if self._canary_stage is None:
            name, tar, patches = self._corpus.salted()
            self._canary_stage = (f"{self.trees.stage_canary(tar)}/{name}", patches)
        fixture, patches = self._canary_stage
        cases, results = self._corpus.cases, []
        for number, case in enumerate(cases, 1):
            self.progress(f"canary {number} of {len(cases)}: the candidate's own judge on "
                          f"{case.name} (expected: {case.expect})")
            run = self.trees.canary(fixture, patches[case.name])
            got, said = read_verdict(run.exit_code, run.timed_out, run.stdout,
                                     run.problem or run.stderr_tail)
            result = outcome(case, got, said, run.duration)
            results.append(result)
            if not result.ok:
                return summarize_canary(results, len(cases)), [failure_reason(result, case)]
        return summarize_canary(results, len(cases)), []

    def _equivalence_plan(self, reading: GitReading) -> Plan | None:
        """The changed functions to compare, read on the host; None when not judging speed
        (a fix or a metric is meant to change behaviour)."""
        if self.goal != "speed" or not self.config.equivalence or self._git is None:
            return None
        paths = {c.path for c in reading.changes if c.path.endswith(".py")}
        texts: dict[str, str | None] = {f.path: f.text for f in self._git.new_files(reading)
                                        if f.path in paths}
        texts.update({c.path: None for c in reading.changes
                      if c.path in paths and c.new_mode == "000000"})
        checks = plan(self._sources, texts)
        for path in sorted(paths - texts.keys()):
            checks.not_checked[f"{path}:*"] = "its text after the patch could not be read"
        return checks

    def _equivalence(self, checks: Plan) -> tuple[EquivalenceVerdict, list[str]]:
        """Call the changed functions on both trees (sandbox/selfcode_equiv.py) and compare."""
        cfg = self.config
        verdict = EquivalenceVerdict(functions=[*(t.key for t in checks.targets),
                                                *checks.not_checked],
                                     not_checked=dict(checks.not_checked))
        pytest_imported = False
        if checks.targets:
            spec = {"baseline": self._equiv_id, "benchmarks": self.benchmarks,
                    "targets": [{"module": t.module, "qualname": t.qualname}
                                for t in checks.targets],
                    "record": [{"module": t.module, "qualname": t.qualname}
                               for t in checks.recorded],
                    "pytest_args": cfg.pytest_args, "samples": cfg.equivalence_samples,
                    "calls": cfg.equivalence_calls, "seconds": cfg.equivalence_seconds,
                    "call_seconds": cfg.equivalence_call_seconds,
                    "rel_tol": cfg.equivalence_rel_tol, "seed": cfg.equivalence_seed}
            run = self.trees.equivalence(spec, processes=3 + len(self.benchmarks))
            verdict.inputs_tried = run.inputs_tried
            verdict.not_checked.update(run.not_checked)
            if run.counterexample is not None:
                verdict.counterexample = Counterexample.model_validate(
                    run.counterexample.model_dump())
            pytest_imported = run.pytest_imported
        return verdict, equivalence_reasons(verdict, cfg.require_equivalence, pytest_imported)

    def _objective(self, tests: TestsVerdict) -> tuple[list[BenchVerdict], list[str]]:
        """Benchmarks (speed), a declared number (metric) or fixed tests (fix)."""
        self._seed += 1
        if self.goal == "fix":
            missing = fix_reason(tests)
            return [], [missing] if missing else []
        if self.goal == "metric":
            return judge_metric(self.trees, self.config, self._seed, self.progress)
        if self.calibration is None:
            self.calibrate()
        assert self.calibration is not None
        result = measure(self.trees, self.benchmarks, self.calibration, self.config,
                         self._seed, self.progress)
        reasons = result.reasons or ([] if result.improved else [result.why_not or "no gain"])
        return result.verdicts, reasons

    def sentinel(self) -> bool:
        """An A/A check mid-run: would the gate accept the unchanged baseline as faster?"""
        if self.calibration is None:
            return False
        self.progress("A/A sentinel")
        self._healthy_sandbox()
        self.trees.reset_candidate()
        self._seed += 1
        result = measure(self.trees, self.benchmarks, self.calibration, self.config,
                         self._seed, self.progress)
        return result.improved


def describe_judging(judge: Judge, calibration: Calibration | None, observer: Observer) -> None:
    """Tell the user, once, how candidates will be judged and what noise was measured."""
    if judge.quarantined:
        names = ", ".join(sorted(judge.quarantined)[:5])
        observer.event("warning", f"{len(judge.quarantined)} flaky test(s) quarantined (their "
                       f"outcome varied on the unchanged code): {names}")
    if calibration is None:
        observer.event("note", f"Judging by {judge.goal}.")
        return
    for name, s in calibration.benchmarks.items():
        note = f"; {s.note}" if s.note else ""
        observer.event("note", f"Benchmark {name}: {s.native_s:.3f}s CPU, A/A noise "
                               f"{s.cv:.1%}, judged by {s.metric.replace('_', ' ')}"
                               + (f", smallest claimable gain {s.delta:.1%}"
                                  if s.metric == "cpu_time" else "") + note + ".")
