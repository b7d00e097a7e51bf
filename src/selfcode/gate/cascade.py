"""The cascade: the cheapest rejections first, before a candidate pays for its full test suite.

Between the install and the full suite (gate/judge.py), two stages may reject a candidate:

1. import: the changed modules of the tree's packages are imported, as the candidate uid, in a
   fresh interpreter (sandbox/selfcode_cascade.py; precompiling leaves a file that does not
   compile to fail where it runs, so this is where a SyntaxError shows). A module that does not
   import where the baseline's does (or that is new) rejects, with its error's first line.
2. tests_selected: the tests that executed the changed files on the baseline (a coverage map,
   recorded once per baseline tree, by the baseline's own tests, never on a candidate's), the
   ones the baseline passed and not quarantined, run alone with `-x`. A test that fails or skips
   there and passed on the baseline rejects with the reasons `judge_tests` gives for those ids,
   once the baseline's own run of the same selection (cached per selection) passed it too, so a
   test that only fails when run apart from the rest of the suite never rejects anyone.

Neither stage can accept: a candidate they do not reject goes on to the full suite, which alone
decides as it always did. Whatever the selected run cannot settle (no map, a changed file no
test executed, a new file, a selection of most of the suite, tests not collected, a report that
does not hold up, a timeout) is left to the full suite.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from selfcode.errors import JudgeReportError
from selfcode.gate.config import GateConfig
from selfcode.gate.testrules import judge_tests
from selfcode.gate.verdict import TestsVerdict
from selfcode.sandbox.coverage import CoverageMap, coverage_map
from selfcode.sandbox.results import TestsRun
from selfcode.sandbox.trees import Trees

Progress = Callable[[str], None]
_KEEP_SELECTIONS = 32  # the baseline's runs of selections kept, per baseline


@dataclass(frozen=True)
class Step:
    """What one candidate's cascade needs of its judge."""

    trees: Trees
    config: GateConfig
    baseline: TestsRun
    quarantined: frozenset[str]
    progress: Progress


@dataclass
class Outcome:
    """What the cascade decided: reasons to reject now, or none (go on to the full suite)."""

    reasons: list[str] = field(default_factory=list)
    tests: TestsVerdict | None = None
    selected: int | None = None
    """How many tests the selected stage ran (None: it was skipped)."""


class Cascade:
    """One baseline's cascade: its coverage map and the baseline's runs of selections."""

    def __init__(self, baseline: str = "") -> None:
        self.baseline = baseline
        """The sha256 of the baseline tree this cascade belongs to."""
        self.map: CoverageMap | None = None
        self.recorded = False
        self._baseline_runs: dict[tuple[str, ...], TestsRun] = {}
        # Judges of a pool share it from their own threads: one records, the others wait.
        self._lock = threading.RLock()

    def for_baseline(self, tar: bytes) -> Cascade:
        """This cascade if it belongs to `tar`, else a new one (recorded on first use)."""
        digest = hashlib.sha256(tar).hexdigest()
        return self if digest == self.baseline else Cascade(digest)

    def run(self, step: Step, files: Sequence[str], timings: dict[str, float]) -> Outcome:
        paths = sorted({f for f in files if f.endswith(".py")})
        if paths:
            step.progress("importing the changed modules")
            t0 = time.perf_counter()
            broken = step.trees.imports(paths).broken
            timings["import"] = round(time.perf_counter() - t0, 4)
            if broken:
                return Outcome([f"the changed module {name} does not import: {error}"
                                for name, error in sorted(broken.items())])
        if not step.config.select_tests:
            return Outcome()
        with self._lock:
            self._record(step, timings)
        ids = self._selection(step, paths)
        if ids is None:
            return Outcome()
        step.progress(f"testing the {len(ids)} tests that exercise the change")
        t0 = time.perf_counter()
        run = step.trees.run_tests("b", step.config.pytest_args, select=ids)
        timings["tests_selected"] = round(time.perf_counter() - t0, 4)
        tests, reasons = self._judge(step, ids, run, timings)
        if tests is not None:
            tests.selected = len(ids)
        return Outcome(reasons, tests if reasons else None, len(ids))

    def _record(self, step: Step, timings: dict[str, float]) -> None:
        """The coverage map, once per baseline: its tests once more, each test's files noted."""
        if self.recorded:
            return
        self.recorded = True
        step.progress("recording which tests exercise which files of the baseline")
        t0 = time.perf_counter()
        try:
            report = step.trees.record_coverage(step.config.pytest_args)
        except JudgeReportError:
            report = None  # no map: every candidate goes straight to the full suite
        timings["coverage_map"] = round(time.perf_counter() - t0, 4)
        self.map = coverage_map(report, step.baseline) if report is not None else None

    def _selection(self, step: Step, paths: list[str]) -> list[str] | None:
        """The tests to run first, or None to go straight to the full suite."""
        if self.map is None or not paths:
            return None
        exercised = self.map.tests_for(paths)
        outcomes = step.baseline.outcomes or {}
        ids = [t for t in exercised or [] if outcomes.get(t) == "passed"
               and t not in step.quarantined]
        if not ids or len(ids) > step.config.select_max_share * len(outcomes):
            return None
        return ids

    def _judge(self, step: Step, ids: list[str], run: TestsRun,
               timings: dict[str, float]) -> tuple[TestsVerdict | None, list[str]]:
        """The reasons to reject for the selected run, confirmed by the baseline's own run of
        the same selection; none when the run settles nothing."""
        if run.collected is None or run.outcomes is None or set(run.collected) != set(ids):
            return None, []  # tests lost, renamed or hidden: the full suite says which
        ran = {t: o for t, o in run.outcomes.items() if o != "missing"}  # -x stopped the rest
        cand = run.model_copy(update={"collected": list(ran), "outcomes": ran})
        base = step.baseline.model_copy(update={
            "collected": list(ran), "outcomes": {t: (step.baseline.outcomes or {})[t]
                                                 for t in ran}})
        verdict, _ = judge_tests(base, cand, step.quarantined)
        if not (verdict.newly_failing or verdict.newly_skipped) or verdict.lost:
            return None, []
        alone = self._baseline_alone(step, ids, timings)
        passed = {t for t, o in (alone.outcomes or {}).items() if o == "passed"}
        verdict.newly_failing = [t for t in verdict.newly_failing if t in passed]
        verdict.newly_skipped = [t for t in verdict.newly_skipped if t in passed]
        reasons = [listing(label, found) for label, found in (
            ("newly failing", verdict.newly_failing), ("newly skipped", verdict.newly_skipped))
            if found]
        return verdict, reasons

    def _baseline_alone(self, step: Step, ids: list[str], timings: dict[str, float]) -> TestsRun:
        """The baseline's run of the same selection (cached): what passes there when run apart
        from the rest of the suite."""
        with self._lock:
            return self._baseline_alone_locked(step, ids, timings)

    def _baseline_alone_locked(self, step: Step, ids: list[str],
                               timings: dict[str, float]) -> TestsRun:
        key = tuple(ids)
        if key not in self._baseline_runs:
            step.progress("testing the same tests on the baseline")
            t0 = time.perf_counter()
            try:
                alone = step.trees.run_tests("a", step.config.pytest_args, select=ids)
            except JudgeReportError:
                alone = TestsRun(exit_code=-1, timed_out=False, duration=0.0)
            timings["tests_selected_baseline"] = round(time.perf_counter() - t0, 4)
            if len(self._baseline_runs) >= _KEEP_SELECTIONS:
                self._baseline_runs.pop(next(iter(self._baseline_runs)))
            self._baseline_runs[key] = alone
        return self._baseline_runs[key]


def listing(label: str, ids: Sequence[str]) -> str:
    """A reason naming tests, as `judge_tests` words it (gate/testrules.py)."""
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"{label}: {', '.join(ids[:3])}{more}"
