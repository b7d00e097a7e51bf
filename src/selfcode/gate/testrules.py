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
    gone = set(base) - set(cand)
    # A test whose module now skips at import (a source module it imports raising pytest's
    # skip) is skipped, not merely lost: both reject, this one says how.
    skipped_at_import = {t for t in gone if _under(t, candidate.skipped_modules)}
    verdict.lost = sorted(gone - skipped_at_import)
    passed_before = [t for t, o in base.items() if o == "passed" and t in cand]
    verdict.newly_failing = sorted(t for t in passed_before if cand[t] in _FAILING)
    verdict.failures = {t: candidate.failures[t] for t in verdict.newly_failing
                        if t in candidate.failures}
    verdict.newly_skipped = sorted({t for t in passed_before if cand[t] in _SKIPPED}
                                   | {t for t in skipped_at_import if base[t] == "passed"})
    verdict.fixed = sorted(t for t, o in base.items() if o in _FAILING and cand.get(t) == "passed")
    for label, ids in (("test lost", verdict.lost), ("newly failing", verdict.newly_failing),
                       ("newly skipped", verdict.newly_skipped)):
        if ids:
            reasons.append(_listing(label, ids))
    return verdict, reasons


def _under(test: str, collectors: Sequence[str]) -> bool:
    """Whether `test` lies in one of `collectors` (a module, a package or a directory)."""
    path = test.split("::", 1)[0]
    return any(path == c or path.startswith(c.rstrip("/") + "/") for c in collectors if c)


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


def differs_by_side(baseline_runs: Sequence[TestsRun],
                    candidate_runs: Sequence[TestsRun]) -> list[str]:
    """Tests with one outcome in every run of the baseline and another in every run of an
    identical copy judged as the candidate: the two sides were not tested alike."""
    def steady(runs: Sequence[TestsRun]) -> dict[str, str]:
        seen: dict[str, set[str]] = {}
        for run in runs:
            for test, outcome in (run.outcomes or {}).items():
                seen.setdefault(test, set()).add(outcome)
        return {t: next(iter(o)) for t, o in seen.items() if len(o) == 1}

    if not baseline_runs or not candidate_runs:
        return []
    base, cand = steady(baseline_runs), steady(candidate_runs)
    return sorted(t for t in base.keys() & cand.keys() if base[t] != cand[t])


def _report_problems(run: TestsRun) -> list[str]:
    """A test run whose report cannot be trusted is a rejection, whatever it claims."""
    if run.timed_out:
        return ["the tests timed out"]
    if run.stderr_tail.startswith("killed: "):
        return [f"the tests were {run.stderr_tail}"]
    if run.collected is None or run.outcomes is None:
        return [f"the test run left no usable report (pytest exit code {run.exit_code})"]
    if run.collection_errors:
        return [_listing("pytest could not collect", [
            f"{node or 'the tests'} ({message})" if message else node or "the tests"
            for node, message in run.collection_errors.items()])]
    # JUnit writes one case per test that ran and one per collector skipped at import (a
    # module-level importorskip); the stream reports both, and both sides are counted alike.
    ran = len(run.collected) - run.count("missing")
    if run.junit_cases != ran + len(run.skipped_modules):
        skips = f" and {len(run.skipped_modules)} modules skipped at import" \
            if run.skipped_modules else ""
        return [f"the JUnit report has {run.junit_cases} cases but pytest ran {ran} tests"
                + skips]
    failing = run.count(*_FAILING)
    expected_exit = 5 if not run.collected else (1 if failing else 0)
    if run.exit_code != expected_exit:
        return [f"pytest exited with code {run.exit_code}, which does not match its report "
                f"({failing} failing of {len(run.collected)})"]
    return []


def fix_reason(tests: TestsVerdict) -> str | None:
    return None if tests.fixed else "no failing test was made to pass"


def baseline_problem(run: TestsRun, goal: str) -> str | None:
    """Why the baseline's own test run cannot be judged against, or None.

    The baseline is held to every rule a candidate is (`_report_problems`), and more: each
    collected test ran, and some test passes, unless the judge looks for fixes (where every
    test failing can be the point); otherwise nothing would protect behaviour, and every
    candidate would be judged against a broken run.
    """
    problems = _report_problems(run)
    if problems:
        return problems[0]
    never_ran = run.count("missing")
    if never_ran:
        return f"{never_ran} of the {len(run.collected or [])} collected tests never ran"
    if not run.collected:
        return "pytest collected no test"
    if goal != "fix" and not run.count("passed"):
        return f"none of its {len(run.collected)} tests passes"
    return None


_CHOOSE = ("choose what pytest runs with [tool.selfcode.gate] pytest_args (a warnings filter "
           'such as ["-W", "ignore::DeprecationWarning"] where warnings are errors, or the '
           "test paths to run)")


def baseline_refusal(run: TestsRun, goal: str, timeout: float) -> str | None:
    """The sentence that stops a run whose baseline cannot be judged against, or None."""
    problem = baseline_problem(run, goal)
    if problem is None:
        return None
    detail = ""
    if run.outcomes is None and not run.timed_out:
        tail = " ".join((run.stderr_tail or run.output_tail).split())[-300:]
        detail = f" ({tail})" if tail else ""
    fix = (f"give them more time with --timeout (now {timeout:g}s) or " if run.timed_out
           else "fix that in the repository, or ")
    return (f"The repository's own tests cannot be judged against in the sandbox: {problem}"
            f"{detail}; {fix}{_CHOOSE}.")
