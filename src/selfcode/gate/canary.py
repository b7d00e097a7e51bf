"""Promotion: a candidate of selfcode's own source must prove that its judge still judges.

The ordinary gate checks what a self-candidate does to selfcode's tests and benchmarks; it cannot
see whether the candidate's *judge* would still reject a cheat. So, when the repository names a
canary corpus (`[tool.selfcode.gate] canary = "tests/canary"`, which selfcode's own pyproject
does), an otherwise accepted candidate has one more stage: inside the sandbox, the candidate's
own selfcode runs `selfcode eval --sandbox local` on each canary case (a patch to a fixture
repository whose verdict is known: genuine speedups to accept; broken, cheating and hostile
patches to reject), and must reproduce every verdict.

What the candidate controls, and why it does not decide:
- The corpus is read on the host from the BASELINE's tree (`tests/` is protected): the cases,
  their expected verdicts and the fixture never come from the candidate. They are not secret:
  the corpus is part of the tree the model reads, and of the trees sealed in the sandbox.
- Names are salted per baseline (`canarypkg` becomes `canary_<random>` in every path and text),
  which stops a table of the patches' exact text, not a judge that undoes the renaming.
- What the candidate's judge prints is untrusted: only `status` and `reasons` are read, bounded;
  anything unreadable, a timeout or a non-verdict exit counts as a wrong verdict.
A judge written to recognise the canary's cases by their shape could still pass it; that is why
the canary is a guard for `--allow-judge-edits`, beside the reviewer, not instead of one.
"""

from __future__ import annotations

import io
import re
import secrets
import tarfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfcode.errors import ConfigError
from selfcode.gate.verdict import CanaryOutcome, CanaryVerdict
from selfcode.sandbox.results import CanaryRun

CASES_FILE = "cases.toml"
FIXTURE = "canarypkg"
_MAX_REASONS = 5
_MAX_REASON_CHARS = 400


class CanaryCase(BaseModel):
    """One known verdict: `patch` to the fixture must be `expect`ed; a rejection's first
    reasons must contain `reason` when one is given."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,60}$")
    expect: Literal["accepted", "rejected"]
    reason: str | None = None
    why: str = ""
    patch: str


@dataclass(frozen=True)
class Corpus:
    """The canary as read from the baseline: its cases, and the fixture's files by path."""

    cases: tuple[CanaryCase, ...]
    fixture: dict[str, bytes]

    def salted(self, salt: str | None = None) -> tuple[str, bytes, dict[str, str]]:
        """The fixture's new name, the fixture as a tar of that directory and each case's patch,
        with the package renamed `canary_<salt>` everywhere (paths and text alike)."""
        name = f"canary_{salt or secrets.token_hex(4)}"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, data in sorted(self.fixture.items()):
                info = tarfile.TarInfo(path.replace(FIXTURE, name))
                content = data.replace(FIXTURE.encode(), name.encode())
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
        return name, buf.getvalue(), {c.name: c.patch.replace(FIXTURE, name) for c in self.cases}


def load_corpus(baseline_tar: bytes, corpus: str) -> Corpus:
    """The canary under `corpus` (a directory of the baseline: cases.toml and canarypkg/)."""
    root = corpus.strip("/")
    cases_text: bytes | None = None
    fixture: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(baseline_tar)) as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            if not member.isfile() or not path.startswith(root + "/"):
                continue
            rel = path[len(root) + 1:]
            handle = tar.extractfile(member)
            data = handle.read() if handle else b""
            if rel == CASES_FILE:
                cases_text = data
            elif rel.startswith(FIXTURE + "/") and "__pycache__" not in rel:
                fixture[rel] = data
    if cases_text is None or not fixture:
        raise ConfigError(f"The canary corpus {root}/ ({CASES_FILE} and {FIXTURE}/) is missing "
                          "from the baseline; restore it, or remove [tool.selfcode.gate] canary.")
    try:
        raw = tomllib.loads(cases_text.decode("utf-8")).get("case", [])
        cases = tuple(CanaryCase.model_validate(c) for c in raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"{root}/{CASES_FILE} is not a valid canary corpus: {exc}") from exc
    if not any(c.expect == "accepted" for c in cases) or not any(
            c.expect == "rejected" for c in cases):
        raise ConfigError(f"{root}/{CASES_FILE} needs a case to accept and one to reject: a judge "
                          "that accepts or rejects everything would pass it otherwise.")
    return Corpus(cases, fixture)


class _JudgeSaid(BaseModel):
    """What is read of the candidate judge's `--json` verdict (nothing else of it)."""

    status: Literal["accepted", "rejected", "unusable"]
    reasons: list[str] = Field(default_factory=list)


def read_verdict(exit_code: int | None, timed_out: bool, stdout: str, stderr: str
                 ) -> tuple[str, list[str]]:
    """(status, reasons) as the candidate's judge reported them, or ("error", why)."""
    if timed_out:
        return "error", ["it timed out"]
    try:
        said = _JudgeSaid.model_validate_json(stdout.strip())
    except ValidationError:
        tail = (stderr or stdout).strip()[-_MAX_REASON_CHARS:]
        return "error", [f"no verdict (exit code {exit_code}): {tail}"]
    expected_exit = {"accepted": 0, "rejected": 1, "unusable": 2}[said.status]
    if exit_code != expected_exit:
        return "error", [f"it said {said.status} but exited {exit_code}"]
    return said.status, [r[:_MAX_REASON_CHARS] for r in said.reasons[:_MAX_REASONS]]


def outcome(case: CanaryCase, got: str, reasons: list[str], seconds: float) -> CanaryOutcome:
    ok = got == case.expect and (
        case.reason is None or got != "rejected"
        or any(re.search(case.reason, r, re.IGNORECASE) for r in reasons))
    return CanaryOutcome(name=case.name, expected=case.expect, got=got, ok=ok,
                         seconds=round(seconds, 3), reasons=reasons)


def failure_reason(result: CanaryOutcome, case: CanaryCase) -> str:
    """The sentence that rejects the candidate whose judge got `case` wrong."""
    said = f" (it said: {result.reasons[0]})" if result.reasons else ""
    if result.got == "accepted":
        return f"its judge accepted a known cheat: {case.name}"
    if case.expect == "accepted":
        return f"its judge rejected a known genuine improvement: {case.name}{said}"
    if result.got == "rejected":
        return (f"its judge rejected the known cheat {case.name} for another reason than "
                f"{case.reason!r}{said}")
    return f"its judge failed on the canary {case.name}{said}"


def summarize(results: list[CanaryOutcome], total: int) -> CanaryVerdict:
    return CanaryVerdict(passed=len(results) == total and all(r.ok for r in results),
                         cases=results)


def run_canary(corpus: Corpus, staged: tuple[str, dict[str, str]],
               judge_case: Callable[[str, str], CanaryRun],
               progress: Callable[[str], None]) -> tuple[CanaryVerdict, list[str]]:
    """Each case, in order, judged by `judge_case(fixture, patch)` (the candidate's own judge in
    the sandbox); stops at the first wrong verdict, whose sentence rejects the candidate."""
    fixture, patches = staged
    cases, results = corpus.cases, []
    for number, case in enumerate(cases, 1):
        progress(f"canary {number} of {len(cases)}: the candidate's own judge on {case.name} "
                 f"(expected: {case.expect})")
        run = judge_case(fixture, patches[case.name])
        got, said = read_verdict(run.exit_code, run.timed_out, run.stdout,
                                 run.problem or run.stderr_tail)
        result = outcome(case, got, said, run.duration)
        results.append(result)
        if not result.ok:
            return summarize(results, len(cases)), [failure_reason(result, case)]
    return summarize(results, len(cases)), []
