"""The hard constraint on tests: the same tests, with the same outcomes, from a trustworthy report.

Pure functions over the harness's parsed reports. A report that cannot be trusted (timed out,
killed, JUnit and collected ids disagreeing, an exit code that contradicts it) is a rejection,
whatever it claims.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from selfcode.gate.verdict import TestCounts, TestsVerdict
from selfcode.sandbox.results import TestsRun

_FAILING = ("failed", "error", "missing")


_SKIPPED = ("skipped", "xfailed")


def judge_tests(baseline: TestsRun, candidate: TestsRun,
                quarantined: Iterable[str] = ()) -> tuple[TestsVerdict, list[str]]:
    skip = set(quarantined)
    base = {t: o for t, o in (baseline.outcomes or {}).items() if t not in skip}
    verdict = TestsVerdict(
        baseline=TestCounts(**baseline.summary()), candidate=TestCounts(**candidate.summary()),
        quarantined=sorted(skip),
    )
    # Lost tests are named even when the report is broken: they say what the patch did.
    if candidate.collected is not None:
        verdict.lost = sorted(set(base) - set(candidate.collected))
    reasons = _report_problems(candidate)
    if reasons:
        if verdict.lost:
            reasons.insert(0, _listing("test lost", verdict.lost))
        return verdict, reasons
    cand = {t: o for t, o in (candidate.outcomes or {}).items() if t not in skip}
    verdict.lost = sorted(set(base) - set(cand))
    passed_before = [t for t, o in base.items() if o == "passed" and t in cand]
    verdict.newly_failing = sorted(t for t in passed_before if cand[t] in _FAILING)
    verdict.newly_skipped = sorted(t for t in passed_before if cand[t] in _SKIPPED)
    verdict.fixed = sorted(t for t, o in base.items() if o in _FAILING and cand.get(t) == "passed")
    for label, ids in (("test lost", verdict.lost), ("newly failing", verdict.newly_failing),
                       ("newly skipped", verdict.newly_skipped)):
        if ids:
            reasons.append(_listing(label, ids))
    return verdict, reasons


def _listing(label: str, ids: Sequence[str]) -> str:
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"{label}: {', '.join(ids[:3])}{more}"


def flaky_tests(runs: Sequence[TestsRun]) -> list[str]:
    """Tests whose outcome differs between runs of the same tree."""
    seen: dict[str, set[str]] = {}
    for run in runs:
        for test, outcome in (run.outcomes or {}).items():
            seen.setdefault(test, set()).add(outcome)
    return sorted(t for t, outcomes in seen.items()
                  if len(outcomes) > 1 or sum(t in (r.outcomes or {}) for r in runs) < len(runs))


def _report_problems(run: TestsRun) -> list[str]:
    """A test run whose report cannot be trusted is a rejection, whatever it claims."""
    if run.timed_out:
        return ["the tests timed out"]
    if run.stderr_tail.startswith("killed: "):
        return [f"the tests were {run.stderr_tail}"]
    if run.collected is None or run.outcomes is None:
        return [f"the test run left no usable report (pytest exit code {run.exit_code})"]
    if run.junit_cases != len(run.collected):
        return [f"the JUnit report has {run.junit_cases} cases but pytest collected "
                f"{len(run.collected)} tests"]
    failing = run.count(*_FAILING)
    expected_exit = 5 if not run.collected else (1 if failing else 0)
    if run.exit_code != expected_exit:
        return [f"pytest exited with code {run.exit_code}, which does not match its report "
                f"({failing} failing of {len(run.collected)})"]
    return []


def fix_reason(tests: TestsVerdict) -> str | None:
    return None if tests.fixed else "no failing test was made to pass"
