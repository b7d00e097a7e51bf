"""Loaded into the judged pytest run by selfcode's harness: streams the run to the harness.

The harness passes the write end of a pipe it created (its fd number in SELFCODE_STREAM_FD).
One JSON line per event, written as it happens: every collector that was skipped or failed
(a module-level skip, an import error: JUnit writes a case for each), the ids pytest collected,
every phase report, and the session's exit status. A pipe is only ever appended to: what a
test wrote into it earlier cannot be rewritten later, and the harness checks pytest's JUnit
file against it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

_fd: int | None = None


def _send(record: dict[str, Any]) -> None:
    if _fd is None:
        return
    view = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode())
    while view:
        view = view[os.write(_fd, view):]


def pytest_configure(config: Any) -> None:
    global _fd
    raw = os.environ.pop("SELFCODE_STREAM_FD", "")
    if raw.isdigit():
        _fd = int(raw)
        os.set_inheritable(_fd, False)  # the tests' subprocesses get no copy of it


# The line that names an exception and its message: `ValueError: ...`, `pkg.SomeWarning: ...`.
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*:\s")


def collection_message(longrepr: str) -> str:
    """What a failed or skipped collector says, in one line: the exception's first line.

    pytest ends the report with the exception's `E ` lines; its last line is often only a
    link (pytest's own deprecations end with `See https://...`), so the line that names the
    exception is the one to show; a report without one gives its last line.
    """
    lines = [line.rstrip() for line in longrepr.splitlines() if line.strip()]
    block: list[str] = []
    for line in reversed(lines):
        if not line.startswith("E "):
            break
        block.insert(0, line[2:].strip())
    named = [line for line in block if _EXCEPTION_LINE.match(line)]
    if named:
        return named[0]
    return lines[-1].removeprefix("E ").strip() if lines else ""


def pytest_collectreport(report: Any) -> None:
    if report.outcome == "passed":
        return
    _send({"t": "collect", "id": report.nodeid, "outcome": report.outcome,
           "message": collection_message(str(report.longreprtext))[:300]})


def pytest_collection_finish(session: Any) -> None:
    _send({"t": "collected", "ids": [item.nodeid for item in session.items]})


# A failing phase's words, bounded here and again by the harness (selfcode_evidence.py): the
# first lines of pytest's crash message (`AssertionError: assert 3 == 2`, then its explanation).
MESSAGE_LINES, MESSAGE_CHARS = 3, 300


def failure_message(report: Any) -> str:
    """The first lines of what a failed phase says: pytest's crash message, or else the line
    of its report that names the exception."""
    try:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = getattr(crash, "message", None)
        if not isinstance(text, str):
            text = collection_message(str(report.longreprtext))
    except Exception:  # a report pytest cannot print still has its outcome: that counts
        return ""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:MESSAGE_LINES])[:MESSAGE_CHARS]


def pytest_runtest_logreport(report: Any) -> None:
    # unittest's subTest (pytest 9's SubtestReport, the pytest-subtests plugin's SubTestReport)
    # sends one more call report per subtest under the same id: marked, so the judge can fold
    # them into the test's outcome instead of calling a second call report tampering.
    sub = type(report).__name__.lower() == "subtestreport"
    record = {"t": "report", "id": report.nodeid, "when": report.when,
              "outcome": report.outcome, "xfail": hasattr(report, "wasxfail"), "sub": sub}
    if report.outcome == "failed":
        record["message"] = failure_message(report)
    _send(record)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    _send({"t": "finish", "exit": int(session.exitstatus)})
