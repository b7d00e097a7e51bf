"""What the model is shown of the run's earlier candidates, within a size budget. Pure.

Per attempt: what was tried (its rationale's first line), the stage the judge stopped it at
(`stage_of`), its reasons, the failing tests with the first lines of their assertions, the
equivalence counterexample, and the benchmark ratios. All of it but the rationale and the
stage is the candidate's own text (test ids, messages, values it returned, pip's or pytest's
words about its tree): it is clipped here, and prompts/propose.j2 renders it as quoted data in
a fence longer than any backtick run it holds (`Attempt.fence`).

`fit_attempts` keeps the section within `[agent] attempts_chars`: the newest attempts in full,
older ones as one line each, the oldest left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from selfcode.errors import JudgeReportError
from selfcode.gate.verdict import BenchVerdict, TestsVerdict, Verdict
from selfcode.prompt.clipping import clip, clip_block, fence_for, one_line
from selfcode.prompt.trim import PromptSections

SUMMARY_CHARS = 200
"""The most of one earlier attempt's rationale the prompt repeats."""
MAX_FAILURES = 5
"""Failing tests shown per attempt (the verdict keeps up to 20)."""
FAILURE_LINES, FAILURE_CHARS = 3, 300
TEST_ID_CHARS = 200
VALUE_CHARS = 200
"""Each part of a counterexample: the function, its input, each side's result."""
MAX_REASONS, REASON_CHARS = 4, 300
HEADER_CHARS = 90
"""What one attempt's line takes beside its summary ("- #12 rejected, by the tests: ")."""

STAGES = ("policy", "apply", "install", "import", "tests", "equivalence", "benchmarks",
          "canary", "duplicate", "malformed", "interrupted", "accepted")
"""Where a candidate's journey ended, in the order of the journey (ARCHITECTURE.md)."""

_APPLY = "the patch does not apply"
_INSTALL = "the candidate does not install"
_COLLECT = "pytest could not collect"
_BROKE = "the candidate broke its sandbox"


@dataclass(frozen=True)
class Failure:
    test: str
    message: str
    """The first lines of its assertion (pytest's crash message), or "" when none came."""


@dataclass(frozen=True)
class Counterexample:
    function: str
    input: str
    baseline: str
    candidate: str


@dataclass(frozen=True)
class Ratio:
    name: str
    ratio: float
    """Candidate over baseline: below 1 is faster."""
    metric: str
    verdict: str


@dataclass(frozen=True)
class Attempt:
    n: int
    summary: str
    status: str
    reasons: list[str]
    stage: str = ""
    """One of `STAGES`, or "" when not known (an attempt made by `of`)."""
    failures: tuple[Failure, ...] = ()
    counterexample: Counterexample | None = None
    ratios: tuple[Ratio, ...] = field(default=())

    @classmethod
    def of(cls, n: int, rationale: str | None, status: str, reasons: list[str]) -> Attempt:
        """A finished candidate as the model is shown it: its rationale's first line."""
        text = (rationale or "").strip()
        summary = clip(text.splitlines()[0], SUMMARY_CHARS) if text else "(no rationale)"
        return cls(n=n, summary=summary, status=status,
                   reasons=[one_line(r, REASON_CHARS) for r in reasons[:MAX_REASONS]])

    @classmethod
    def from_verdict(cls, n: int, rationale: str | None, status: str, reasons: list[str],
                     verdict: Verdict | None) -> Attempt:
        """`of`, with what the verdict says: the stage, failing tests, counterexample, ratios."""
        shown = replace(cls.of(n, rationale, status, reasons), stage=stage_of(verdict, status))
        if verdict is None:
            return shown
        example = verdict.equivalence.counterexample if verdict.equivalence else None
        return replace(
            shown, failures=failures_of(verdict.tests), ratios=ratios_of(verdict.benchmarks),
            counterexample=None if example is None else Counterexample(
                *(one_line(v, VALUE_CHARS) for v in (example.function, example.input,
                                                     example.baseline, example.candidate))))

    def quoted(self) -> list[str]:
        """Every piece of the candidate's text the full form quotes."""
        example = self.counterexample
        return [*self.reasons, *(t for f in self.failures for t in (f.test, f.message)),
                *((example.function, example.input, example.baseline, example.candidate)
                  if example else ()), *(r.name for r in self.ratios)]

    @property
    def fence(self) -> str:
        """The fence of this attempt's quote: no text in it can close it."""
        return fence_for(self.quoted())

    def detailed(self) -> bool:
        """Whether the full form has more to show than the one line."""
        return bool(self.quoted())

    def chars(self, full: bool) -> int:
        """About what the attempt takes in the prompt: one line, or in full (its quote)."""
        line = HEADER_CHARS + len(self.summary)
        if not full or not self.detailed():
            return line
        per_piece = 16  # the label and the line break around each quoted piece
        return (line + 2 * len(self.fence) + 40
                + sum(len(text) + per_piece for text in self.quoted()) + 40 * len(self.ratios))


def failures_of(tests: TestsVerdict | None) -> tuple[Failure, ...]:
    """The newly failing tests, each with the first lines of its assertion, at most
    `MAX_FAILURES`."""
    if tests is None:
        return ()
    messages = tests.failures
    return tuple(Failure(one_line(t, TEST_ID_CHARS),
                         clip_block(messages.get(t, ""), FAILURE_LINES, FAILURE_CHARS))
                 for t in tests.newly_failing[:MAX_FAILURES])


def ratios_of(benchmarks: Sequence[BenchVerdict]) -> tuple[Ratio, ...]:
    return tuple(Ratio(one_line(b.name, 80), b.ratio, b.metric, b.verdict)
                 for b in benchmarks if b.ratio is not None)


def stage_of(verdict: Verdict | None, status: str = "") -> str:
    """Where the judge stopped a candidate (one of `STAGES`), read from its verdict.

    A stage that rejects by its rules leaves its evidence in the verdict (tests, equivalence,
    benchmarks, canary); one stopped by what broke inside the sandbox (a report that was
    tampered with) leaves only the timings of the stages done before it, so it is the next
    one. No verdict: no usable edit (`malformed`), a `duplicate`, or `interrupted`.
    """
    if verdict is None:
        return {"duplicate": "duplicate", "abandoned": "interrupted",
                "proposed": "interrupted"}.get(status, "malformed")
    if verdict.accepted:
        return "accepted"
    reasons, timings = verdict.reasons, verdict.timings
    if verdict.canary is not None:
        return "canary"
    if "benchmarks" in timings:
        return "benchmarks"
    if verdict.equivalence is not None:
        return "equivalence"
    if verdict.tests is not None:
        return "import" if _says(reasons, _COLLECT) else "tests"
    if "apply" not in timings:
        broke = _says(reasons, _BROKE) or _says(reasons, JudgeReportError.PREFIX)
        return "apply" if broke else "policy"
    return _stopped_after_apply(verdict)


def _stopped_after_apply(verdict: Verdict) -> str:
    """The stage after the last one done: the one the sandbox broke or lied in."""
    reasons, timings = verdict.reasons, verdict.timings
    if _says(reasons, _APPLY):
        return "apply"
    if _says(reasons, _INSTALL):
        return "install"
    if "equivalence" in timings or any(": benchmark " in r for r in reasons):
        return "benchmarks"
    if "tests" in timings:
        return "equivalence" if verdict.goal == "speed" else "benchmarks"
    return "tests"


def _says(reasons: Sequence[str], start: str) -> bool:
    return any(r.startswith(start) for r in reasons)


@dataclass(frozen=True)
class AttemptsView:
    """The attempts section as the prompt shows it, oldest first within each part."""

    full: list[Attempt]
    """The newest attempts, with their quotes."""
    short: list[Attempt]
    """Older ones, one line each."""
    omitted: int
    """The oldest, left out (with those an earlier trim left out)."""

    def values(self) -> dict[str, Any]:
        """What prompts/propose.j2 reads."""
        return {"attempts": self.full, "older_attempts": self.short,
                "attempts_omitted": self.omitted}


def fit_attempts(attempts: Sequence[Attempt], budget: int | None,
                 omitted: int = 0) -> AttemptsView:
    """The newest attempts in full while they fit in `budget` characters, then one line each
    while those fit, then the rest left out and counted; the newest is always shown (one line
    if its full form does not fit). `budget` None: everything in full; 0 or less: nothing."""
    if budget is None:
        return AttemptsView(list(attempts), [], omitted)
    full: list[Attempt] = []
    short: list[Attempt] = []
    used = 0
    for attempt in reversed(attempts):
        if not short and used + attempt.chars(full=True) <= budget:
            full.append(attempt)
            used += attempt.chars(full=True)
        elif used + attempt.chars(full=False) <= budget or (budget > 0 and not full + short):
            short.append(attempt)
            used += attempt.chars(full=False)
        else:
            break
    shown = len(full) + len(short)
    return AttemptsView(full[::-1], short[::-1], omitted + len(attempts) - shown)


def shown_attempts(sections: PromptSections[Attempt], budget: int) -> dict[str, Any]:
    """The attempts of `sections` as prompts/propose.j2 reads them, in their share of
    `budget` (`[agent] attempts_chars`)."""
    allowed = math.floor(budget * sections.attempts_share)
    return fit_attempts(sections.attempts, allowed, sections.attempts_omitted).values()
