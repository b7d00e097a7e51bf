"""Evidence the harness reads, checked before it is believed: test streams, JUnit, valgrind logs.

Standard library only, like the harness. Each parser returns what the evidence says and, when it
contradicts itself or another source, a `problem`: the harness then reports the run as tampered
with, which the host turns into a rejection. Missing evidence (pytest died before the end of its
session) is not tampering; the host rejects it too, as a run with no usable report.

Tests: the plugin streams what pytest collected, every phase report and the session's exit
status through a pipe the harness created (appended to, never rewritten); pytest's own JUnit
file must agree with it, and the process's exit code with the status pytest reported. Collectors
that were skipped (a module-level `pytest.importorskip`) or failed (an import error) come first:
they have no test ids, but JUnit writes a case for each, so they are checked against it too.

Instructions: valgrind logs every traced process into one pipe of the judge, each line prefixed
with its `==PID==`. With `-v` a forked child logs as soon as it starts, so every process that ran
under valgrind appears; each must print exactly one `I refs` summary, no process may carry two
`Command:` headers (an exec after work would hide that work), and the count is their sum.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import NamedTuple

PHASES = ("setup", "call", "teardown")
REPORT_OUTCOMES = ("passed", "failed", "skipped", "rerun")
# What JUnit writes for a collector the stream reports as skipped or failed.
COLLECTOR_JUNIT = {"skipped": "skipped", "failed": "error"}
# A failing test's message, as the judge keeps it: it is the candidate's text, shown to the
# model in the next prompt, so it is bounded here whatever the plugin (in the candidate's
# process) sent.
MESSAGE_LINES, MESSAGE_CHARS, MAX_FAILURES = 3, 300, 20


def clip_message(text: str) -> str:
    """The first `MESSAGE_LINES` non-blank lines of `text`, in at most `MESSAGE_CHARS`."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:MESSAGE_LINES])[:MESSAGE_CHARS]


def junit_key(nodeid: str) -> str:
    """The classname.name that pytest's JUnit XML writes for a node id."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names)


class Junit(NamedTuple):
    outcomes: dict[str, str]
    """Outcome by classname.name (`junit_key`); the last case wins where two share one."""
    cases: int
    """How many <testcase> elements the file has."""


def parse_junit(data: bytes | None) -> Junit | None:
    if data is None:
        return None
    import xml.etree.ElementTree as ET  # only the tests command needs it: starts stay quick

    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    outcomes: dict[str, str] = {}
    cases = 0
    for case in root.iter("testcase"):
        cases += 1
        key = f"{case.get('classname', '')}.{case.get('name', '')}".lstrip(".")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                break
            if child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        outcomes[key] = outcome
    return Junit(outcomes, cases)


class Collector(NamedTuple):
    """A collector (module, package, directory) that was skipped or failed while collecting."""

    nodeid: str
    outcome: str  # skipped / failed
    message: str


class Stream:
    def __init__(self) -> None:
        self.collectors: list[Collector] = []
        self.collected: list[str] | None = None
        self.phases: dict[str, dict[str, tuple[str, bool]]] = {}
        self.failed_subtests: set[str] = set()
        self.messages: dict[str, str] = {}
        """The first failing phase's message by test id (the plugin's, clipped)."""
        self.exit_status: int | None = None
        self.problem: str | None = None

    def outcomes(self) -> dict[str, str] | None:
        if self.collected is None or self.exit_status is None:
            return None
        return {nodeid: "failed" if nodeid in self.failed_subtests
                else final_outcome(self.phases.get(nodeid, {})) for nodeid in self.collected}

    def failures(self) -> dict[str, str]:
        """The messages of the first `MAX_FAILURES` failing tests, in the order collected."""
        outcomes = self.outcomes() or {}
        failing = [t for t, o in outcomes.items() if o in ("failed", "error") and t in
                   self.messages]
        return {t: self.messages[t] for t in failing[:MAX_FAILURES]}


def final_outcome(phases: dict[str, tuple[str, bool]]) -> str:
    """One test's outcome from its phase reports, as pytest's JUnit writer decides it."""
    call = phases.get("call")
    if call and call[0] == "failed":
        return "failed"
    if any(phases.get(p, ("", False))[0] == "failed" for p in ("setup", "teardown")):
        return "error"
    for phase in ("setup", "call"):
        report = phases.get(phase)
        if report and report[0] == "skipped":
            return "xfailed" if report[1] else "skipped"
    return "passed" if call and call[0] == "passed" else "missing"


def parse_stream(data: bytes) -> Stream:
    """The plugin's records; a record out of order, repeated or malformed is a problem."""
    stream = Stream()
    lines = data.split(b"\n")
    if lines[-1]:
        stream.problem = "the test stream ends in the middle of a record"
        return stream
    for line in lines[:-1]:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        problem = _take(stream, record) if isinstance(record, dict) else "a malformed record"
        if problem:
            stream.problem = f"the test stream has {problem}"
            return stream
    return stream


def _take(stream: Stream, record: dict[str, object]) -> str | None:
    kind = record.get("t")
    if stream.exit_status is not None:
        return "a record after the end of the session"
    if kind == "collect":
        return _take_collector(stream, record)
    if kind == "collected":
        ids = record.get("ids")
        if stream.collected is not None or not isinstance(ids, list) \
                or not all(isinstance(i, str) for i in ids):
            return "a second or malformed collection record"
        stream.collected = ids
        return None
    if kind == "report":
        return _take_report(stream, record)
    if kind == "finish" and isinstance(record.get("exit"), int) and stream.collected is not None:
        stream.exit_status = int(record["exit"])  # type: ignore[call-overload]
        return None
    return f"an unexpected record ({str(kind)[:40]})"


def _take_collector(stream: Stream, record: dict[str, object]) -> str | None:
    nodeid, outcome, message = record.get("id"), record.get("outcome"), record.get("message")
    # Collection ends before the collected ids are sent: a collector reported later is forged.
    if stream.collected is not None or not isinstance(nodeid, str) \
            or outcome not in COLLECTOR_JUNIT or not isinstance(message, str):
        return "a malformed or late collection report"
    stream.collectors.append(Collector(nodeid, str(outcome), message[:300]))
    return None


def _take_report(stream: Stream, record: dict[str, object]) -> str | None:
    nodeid, when, outcome = record.get("id"), record.get("when"), record.get("outcome")
    if stream.collected is None or not isinstance(nodeid, str) or when not in PHASES \
            or outcome not in REPORT_OUTCOMES:
        return "a malformed report"
    message = record.get("message", "")
    if not isinstance(message, str):
        return "a malformed report"
    if outcome == "failed" and message:
        stream.messages.setdefault(nodeid, clip_message(message))
    phases = stream.phases.setdefault(nodeid, {})
    if record.get("sub") is True and when == "call":
        # A subtest can only make its test worse: a failing one fails it, a passing one adds
        # nothing, so a forged "sub" record cannot turn a failure into a pass.
        if outcome == "failed":
            stream.failed_subtests.add(nodeid)
        return None
    earlier = phases.get(str(when))
    if earlier is not None and earlier[0] != "rerun":
        return f"a second {when} report for {nodeid[:200]}"
    phases[str(when)] = (str(outcome), bool(record.get("xfail")))
    return None


def cross_check(stream: Stream, junit: Junit | None, exit_code: int) -> str | None:
    """Why the stream, pytest's JUnit file and its exit code do not tell one story, or None."""
    outcomes = stream.outcomes()
    if outcomes is None:
        return None  # the session never ended: nothing complete to check
    if stream.exit_status != exit_code:
        return (f"pytest exited with code {exit_code} after reporting {stream.exit_status} at "
                "the end of its session")
    if junit is None:
        return "pytest's JUnit report is missing or unreadable after a complete session"
    expected = {**outcomes, **{c.nodeid: COLLECTOR_JUNIT[c.outcome] for c in stream.collectors}}
    keys = Counter(junit_key(nodeid) for nodeid in [*outcomes, *(c.nodeid for c in
                                                                  stream.collectors)])
    for nodeid, outcome in expected.items():
        key = junit_key(nodeid)
        said = junit.outcomes.get(key, "missing")
        if keys[key] == 1 and said != outcome:
            return f"the JUnit report says {said} for {nodeid[:200]}, the test stream {outcome}"
    return None


# --- valgrind --------------------------------------------------------------------------------

_LINE = re.compile(rb"^(==|--)(\d+)\1 ?(.*)$")
_IREFS = re.compile(rb"I\s+refs:\s+([\d,]+)\s*$")


class Count(NamedTuple):
    instructions: float | None = None
    processes: int = 0
    problem: str | None = None


def count_instructions(log: bytes, root_pid: int) -> Count:
    """The summed `I refs` of every process in valgrind's log, or the reason it is not one."""
    headers: Counter[int] = Counter()
    counts: dict[int, list[int]] = {}
    for line in log.splitlines():
        match = _LINE.match(line)
        if match is None:
            # `**PID**` lines come from client requests: the measured code writing into the log.
            return Count(problem=f"valgrind's log has a line it did not write: {line[:120]!r}")
        pid, text = int(match.group(2)), match.group(3)
        counts.setdefault(pid, [])
        if text.startswith(b"Command: ") and match.group(1) == b"==":
            headers[pid] += 1
        summary = _IREFS.search(text) if match.group(1) == b"==" else None
        if summary:
            counts[pid].append(int(summary.group(1).replace(b",", b"")))
    if headers[root_pid] != 1:
        return Count(problem=f"valgrind's log has {headers[root_pid]} headers for the measured "
                             "process")
    for pid, summaries in counts.items():
        if headers[pid] > 1:
            return Count(problem=f"process {pid} exec'd after running under valgrind: its work "
                                 "before the exec is not counted")
        if len(summaries) != 1:
            return Count(problem=f"process {pid} ended with {len(summaries)} instruction counts "
                                 "(killed before valgrind could count it?)")
    total = sum(summaries[0] for summaries in counts.values())
    return Count(instructions=float(total), processes=len(counts))
