"""Loaded into the cascade's selected run only: keep the collected tests the judge named.

The harness writes the node ids (one a line) into the run directory and names the file in
SELFCODE_SELECT_FILE. The whole suite is collected as in the full run (the same modules are
imported, whatever `pytest_args` name), then every other test is deselected. This runs in the
candidate's pytest process, so the candidate can change what it does: the selected run can only
reject a candidate earlier (gate/cascade.py), never accept one.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    path = os.environ.pop("SELFCODE_SELECT_FILE", "")
    if not path:
        return
    with open(path, encoding="utf-8") as fh:
        wanted = set(fh.read().splitlines())
    keep = [item for item in items if item.nodeid in wanted]
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
