"""Protected-path matching: no candidate may touch a path that matches the gate's patterns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase


def protected_violations(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    return [p for p in paths if any(fnmatchcase(p, pattern) for pattern in patterns)]
