"""Judges candidate patches against one baseline inside one sandbox.

This is where the pieces meet: the patch is read on the host (gate/police.py: the policy,
git's reading, the protected paths), applied inside the sandbox, run through the frozen
harness, and the gate decides. The baseline is held to the rules a candidate is: one whose own
tests give no clean report stops the run before calibration and before any model request.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase

from selfcode.errors import (
    BaselineError,
    ConfigError,
    JudgeReportError,
    SandboxBroken,
    SandboxError,
)
from selfcode.gate.canary import Corpus, load_corpus, run_canary
from selfcode.gate.cascade import Cascade, Step
from selfcode.gate.config import GateConfig
from selfcode.gate.equivalence import Plan
from selfcode.gate.equivalence import reasons as equivalence_reasons
from selfcode.gate.measure import Calibration, calibrate, measure
from selfcode.gate.metric import judge_metric
from selfcode.gate.nodes import baseline_drift, drift_reason, lent_gain
from selfcode.gate.police import Police, judge_goal, make_verdict
from selfcode.gate.testrules import (
    baseline_refusal,
    differs_by_side,
    fix_reason,
    flaky_tests,
    judge_tests,
)
from selfcode.gate.verdict import (
    BenchVerdict,
    CanaryVerdict,
    Counterexample,
    EquivalenceVerdict,
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
        setup: dict[str, float] | None = None,
        police: Police | None = None,
    ) -> None:
        """`reopen` opens a fresh sandbox, for when a candidate has broken the current one;
        without it a broken sandbox stays broken and the next command says so. `setup`: the
        seconds spent before this judge existed, by step (image, sandbox_start), charged to
        its first verdict; `police`: the host's reading of the baseline, if already made."""
        self.trees = trees
        self.config = config
        self.benchmarks = benchmarks
        self.progress = progress
        self.goal = judge_goal(config, benchmarks)
        # Seconds the user waited that no verdict has shown yet, by step.
        self._setup: dict[str, float] = {"sandbox_start": sandbox_start, **(setup or {})}
        if config.allow_judge_edits and not config.canary:
            raise ConfigError("--allow-judge-edits needs a canary corpus ([tool.selfcode.gate] "
                              "canary), which proves each candidate's own judge before it is "
                              "accepted; add one or drop the flag.")
        self.calibration: Calibration | None = None
        self.quarantined: set[str] = set()
        self.side_dependent: set[str] = set()
        """Tests whose outcome differed between the baseline and an identical candidate."""
        self._baseline_tests: TestsRun | None = None
        self._baseline_runs: list[TestsRun] = []  # its test runs so far, for the quarantine
        self.last_tests: TestsRun | None = None
        self._accepted_figures: dict[str, Sequence[float]] | None = None
        self.drift: list[str] = []
        """The last verdict's baseline drift: its parent measured otherwise than accepted."""
        """The last candidate's full-suite run: an accepted one's is its node's baseline."""
        self._police = police
        self._baseline_tar: bytes | None = None
        self._reopen = reopen
        self._broken: str | None = None
        self._seed = 0
        self._equiv_id = ""
        # Promotion (gate/canary.py): whether this judge runs the canary on what it accepts.
        # The loop's first judge leaves it to the re-check in a fresh sandbox.
        self.promote = True
        self._corpus: Corpus | None = None
        self._canary_stage: tuple[str, dict[str, str]] | None = None
        self.cascade = Cascade()  # its coverage map is the baseline's, recorded on first use
        # Every baseline's cascade, shared with this judge's forks (the search's pool lends
        # judges parents in turn): a tree's map is recorded once, whichever judge needs it.
        self._cascades: dict[str, Cascade] = {}

    def fork(self, sandbox: Sandbox, sandbox_start: float = 0.0) -> Judge:
        """The same judgement in another sandbox: same rules, noise floor and quarantine.

        The re-check of an accepted candidate repeats the judgement in a fresh sandbox; it
        must not recalibrate (a new noise floor would be another gate) nor forget which tests
        were found flaky. Its baseline still has to be set and tested there.
        """
        trees = Trees(sandbox, self.trees.timeout, self.trees.timing_slot)
        twin = Judge(trees, self.config, self.benchmarks, progress=self.progress,
                     sandbox_start=sandbox_start, reopen=self._reopen)
        twin.calibration = self.calibration
        twin.quarantined = set(self.quarantined)
        twin.promote = True  # the re-check is where an accepted self-candidate is promoted
        twin.cascade = self.cascade  # kept only if its baseline is the same tree
        twin._cascades = self._cascades
        return twin

    def set_baseline(self, tar: bytes, runs: int = 1, now: int | None = None) -> TestsRun:
        """Load the tree every candidate is compared with and run its tests `runs` times.

        Each run is held to the rules of a candidate's and stricter (`baseline_refusal`): a
        baseline that cannot be judged against raises `BaselineError`, before calibration and
        before any model request. Every second run judges an identical copy as the candidate
        (A/A), so baseline and candidate are tested alike or it shows; tests whose outcome
        varies between the runs are quarantined for the rest of the run.
        """
        self._healthy_sandbox()
        t0 = time.perf_counter()
        self._load(tar)
        # Read from the baseline, never the candidate; staged (salted) on first use.
        self._corpus = load_corpus(tar, self.config.canary) if self.config.canary else None
        self._canary_stage = None
        t1 = time.perf_counter()
        self._charge("baseline_load", t1 - t0)
        self._baseline_runs = []
        return self.confirm_baseline(runs, now)

    def confirm_baseline(self, runs: int, now: int | None = None) -> TestsRun:
        """Bring the baseline's test runs up to `now` of `runs` (default: all of them). The
        loop sends its first model request after one run and judges no candidate before the
        others are in: together they settle the quarantine."""
        t1 = time.perf_counter()
        try:
            for i in range(len(self._baseline_runs), min(runs, now or runs)):
                self._baseline_runs.append(self._baseline_run(i, runs))
        finally:
            self._charge("baseline_tests", time.perf_counter() - t1)
        results = self._baseline_runs
        self.quarantined |= set(flaky_tests(results))
        self.side_dependent |= set(differs_by_side(results[0::2], results[1::2]))
        self._baseline_tests = results[0]
        return results[0]

    def adopt_baseline(self, tar: bytes, tests: TestsRun,
                       figures: Mapping[str, Sequence[float]] | None = None) -> None:
        """Load `tar` as the baseline with its tests' run already known, without running
        them again: the re-check of an accepted candidate ran its full suite in a fresh
        sandbox (held to every rule), and another sandbox of the pool has the run's
        baseline's. Quarantine and calibration stand. `figures`: a node's benchmark figures
        from when it was accepted, which it must measure as the baseline too (gate/nodes.py)."""
        self._healthy_sandbox()
        t0 = time.perf_counter()
        self._load(tar)
        self._accepted_figures = dict(figures) if figures else None
        self._corpus = load_corpus(tar, self.config.canary) if self.config.canary else None
        self._canary_stage = None
        self._charge("baseline_load", time.perf_counter() - t0)
        self._baseline_tests = tests

    @property
    def baseline_tests(self) -> TestsRun | None:
        return self._baseline_tests

    def _load(self, tar: bytes) -> None:
        """The baseline on the host (its reading of patches) and in the sandbox."""
        self._baseline_tar = tar
        self._accepted_figures = None
        fresh = self.cascade.for_baseline(tar)
        self.cascade = self._cascades.setdefault(fresh.baseline, fresh)
        if self._police is None or self._police.goal != self.goal or self._police.tar != tar:
            if self._police is not None:
                self._police.close()
            self._police = Police(tar, self.config, self.goal)
        self.trees.load_baseline(tar)
        # The sandbox keeps its recordings and the baseline's answers under this id.
        self._equiv_id = secrets.token_hex(8)

    def _baseline_run(self, i: int, runs: int) -> TestsRun:
        """Run `i` of the baseline's tests: odd runs test an identical copy as the candidate."""
        self.progress("testing the baseline" + (f" ({i + 1} of {runs})" if runs > 1 else ""))
        if i == 1:
            self.trees.reset_candidate()
        tests = self.trees.run_tests("b" if i % 2 else "a", self.config.pytest_args)
        refusal = baseline_refusal(tests, self.goal, self.trees.timeout)
        if refusal:
            raise BaselineError(refusal)
        return tests

    def _charge(self, step: str, seconds: float) -> None:
        self._setup[step] = self._setup.get(step, 0.0) + seconds

    def calibrate(self, pairs: int | None = None) -> Calibration | None:
        """Measure the baseline against itself once per run: metric and noise per benchmark."""
        if self.goal != "speed" or not self.benchmarks:
            return None
        t0 = time.perf_counter()
        try:
            return self._calibrate(pairs)
        finally:
            self._charge("calibration", time.perf_counter() - t0)

    def _calibrate(self, pairs: int | None = None) -> Calibration:
        self.progress("calibrating benchmark noise (A/A)")
        self.calibration = calibrate(self.trees, self.benchmarks, self.config, pairs)
        return self.calibration

    def _verdict(self, status: str, reasons: list[str], summary: PatchSummary,
                 timings: dict[str, float], **fields: object) -> Verdict:
        box = self.trees.sandbox
        return make_verdict(status, reasons, summary, timings, self.goal,
                            (box.kind, tuple(box.integrity_gaps)), **fields)

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
        self.trees = Trees(self._reopen(), self.trees.timeout, self.trees.timing_slot)
        self._broken = None
        if self._baseline_tar is not None:
            self.trees.load_baseline(self._baseline_tar)

    def judge(self, diff: str) -> Verdict:
        if self._baseline_tests is None or self._police is None:
            raise RuntimeError("set_baseline() must run before judge()")
        self._healthy_sandbox()
        start = time.perf_counter()
        # What the user waited for before this candidate (the image, the sandbox, the
        # baseline's tests, the calibration) is charged once, to this verdict.
        setup, self._setup = self._setup, {}
        timings = {"sandbox_start": 0.0, **{k: round(v, 4) for k, v in setup.items()}}

        def done(status: str, reasons: list[str], summary: PatchSummary,
                 **fields: object) -> Verdict:
            timings["total"] = round(time.perf_counter() - start + sum(setup.values()), 4)
            return self._verdict(status, reasons, summary, timings, **fields)

        self.drift = []
        self._police.config = self.config  # the rules in force now, if changed since
        diff, summary, refusal, checks = self._police.read(diff, timings)
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

        # The cascade (gate/cascade.py): the changed modules' import, then the tests that
        # exercise the changed files, alone and -x; they may reject early, never accept.
        early = self.cascade.run(Step(self.trees, self.config, self._baseline_tests,
                                      frozenset(self.quarantined), self.progress),
                                 summary.files, timings)
        if early.reasons:
            return done("rejected", early.reasons, summary, tests=early.tests)

        self.progress("testing")
        t0 = time.perf_counter()
        cand_tests = self.last_tests = self.trees.run_tests("b", self.config.pytest_args)
        timings["tests"] = round(time.perf_counter() - t0, 4)
        tests, reasons = judge_tests(self._baseline_tests, cand_tests, self.quarantined)
        tests.selected = early.selected
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
        fields = {"tests": tests, "benchmarks": benches, "equivalence": equivalence,
                  "baseline_drift": list(self.drift)}
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
        """The candidate's own judge on the canary corpus (gate/canary.py), staged (salted)
        once per sandbox and baseline."""
        assert self._corpus is not None
        if self._canary_stage is None:
            name, tar, patches = self._corpus.salted()
            self._canary_stage = (f"{self.trees.stage_canary(tar)}/{name}", patches)
        return run_canary(self._corpus, self._canary_stage, self.trees.canary, self.progress)

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
        calibration = self.calibration or self._calibrate()  # inside this verdict's time
        result = measure(self.trees, self.benchmarks, calibration, self.config,
                         self._seed, self.progress)
        reasons = result.reasons or ([] if result.improved else [result.why_not or "no gain"])
        self.drift = baseline_drift(result.verdicts, self._accepted_figures or {},
                                    self.config.min_improvement)
        if self.drift:
            reasons = [drift_reason(self.drift), *reasons]
        elif result.improved:  # a drift within the tolerance is never the child's gain
            reasons = lent_gain(result.verdicts, self._accepted_figures or {},
                                self.config.alpha) + reasons
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
    if judge.side_dependent:
        names = ", ".join(sorted(judge.side_dependent)[:5])
        observer.event("warning", f"{len(judge.side_dependent)} test(s) gave another outcome "
                       "on an identical copy of the baseline judged as a candidate than on the "
                       f"baseline: {names}. That is a selfcode bug (please report it); they are "
                       "quarantined, so no candidate fixes or breaks them.")
    flaky = judge.quarantined - judge.side_dependent
    if flaky:
        names = ", ".join(sorted(flaky)[:5])
        observer.event("warning", f"{len(flaky)} flaky test(s) quarantined (their "
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
