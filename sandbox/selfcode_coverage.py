"""Loaded only into the baseline's recording run: which files of the tree each test executes.

The judge's cascade (gate/cascade.py) runs the tests that exercise a candidate's changed files
first, with `-x`, so one broken test rejects before the full suite is paid. The map it selects
from is recorded here, once per baseline, never on a candidate's tree.

Standard library only (no coverage.py in the sandbox), and cheap: a global trace function that
notes the `co_filename` of every new frame and returns None, so nothing is traced line by line.
What a test executes includes its fixtures' setup and teardown; what a module runs when it is
imported (at collection) belongs to no test. Each test's files go to the harness through a pipe
it created (its fd in SELFCODE_COVERAGE_FD), one JSON line per record: `{"f": PATH}` the first
time a path of the tree is seen (its index is the order of these records), then `{"t": NODEID,
"f": [INDEX, ...]}` once the test has run. Paths are relative to the tree (the run's cwd).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import pytest

_fd: int | None = None
_roots: tuple[str, ...] = ()
_index: dict[str, int] = {}
_current: set[str] = set()


def _trace(frame: FrameType, event: str, arg: Any) -> None:
    # Called for each new frame only ('call'): returning None turns off line tracing for it.
    _current.add(frame.f_code.co_filename)


def _send(record: dict[str, Any]) -> None:
    if _fd is None:
        return
    view = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode())
    while view:
        view = view[os.write(_fd, view):]


def pytest_configure(config: Any) -> None:
    global _fd, _roots
    raw = os.environ.pop("SELFCODE_COVERAGE_FD", "")
    if raw.isdigit():
        _fd = int(raw)
        os.set_inheritable(_fd, False)
    cwd = os.getcwd()
    _roots = tuple(dict.fromkeys(os.path.join(p, "") for p in (cwd, os.path.realpath(cwd))))


def _relative(filename: str) -> str | None:
    for root in _roots:
        if filename.startswith(root) and filename.endswith(".py"):
            return filename[len(root):]
    return None


def _indices(filenames: set[str]) -> list[int]:
    found = []
    for name in filenames:
        rel = _relative(name)
        if rel is None:
            continue
        if rel not in _index:
            _index[rel] = len(_index)
            _send({"f": rel})
        found.append(_index[rel])
    return sorted(found)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: Any, nextitem: Any) -> Generator[None, None, None]:
    _current.clear()
    # Installed again for every test: a test that set its own trace function ends ours.
    threading.settrace(_trace)
    sys.settrace(_trace)
    try:
        yield
    finally:
        sys.settrace(None)
        threading.settrace(None)
        _send({"t": item.nodeid, "f": _indices(set(_current))})
