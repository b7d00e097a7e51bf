"""What the machine running the tests offers, for the tests that need more than Python.

selfcode's own suite also runs inside selfcode's sandbox (a self-candidate is judged by it):
there the source is a sealed copy of the tracked files (no `.git`), there is no network and
no package index, and the Python is the base image's. The tests that need those skip there,
saying why; their twins that need less still run.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_checkout = pytest.mark.skipif(
    not (ROOT / ".git").exists(),
    reason="selfcode's source here is not a git checkout (the judge's sandbox copies the "
           "tracked files only)")


def _index_reachable() -> bool:
    try:
        socket.getaddrinfo("pypi.org", 443)
    except OSError:
        return False
    return True


needs_index = pytest.mark.skipif(
    not _index_reachable(),
    reason="the package index cannot be reached from here (the judge's sandbox has no network)")
