"""The run's archive in memory: the baseline and every accepted candidate, as nodes to branch
from (`search/parents.py` draws the next parent), each with what judging against it needs.

A node's score is its speedup over the run's baseline: the product of the judged speedups
along its lineage. Each node's files are unpacked once under the run's scratch directory, for
the prompt (`Parent`), from the tree git holds for its commit, never from a worktree a
candidate wrote. The best node's lineage is what the run's branch ends as.
"""

from __future__ import annotations

import io
import random
import shutil
import tarfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from selfcode.gate.nodes import figure_key
from selfcode.gate.verdict import Verdict
from selfcode.run.propose import Parent
from selfcode.sandbox.results import TestsRun
from selfcode.search.parents import Node, Strategy, choose_parent
from selfcode.search.pool import Baseline


@dataclass
class Entry:
    node: Node
    tar: bytes
    tests: TestsRun | None
    files: list[str] = field(default_factory=list)
    figures: dict[str, list[float]] | None = None  # its benchmarks' when it was accepted
    retired: bool = False  # it measured otherwise as a baseline: no longer a parent


class Lineage:
    """Nodes by candidate number (0: the run's baseline); thread-safe."""

    def __init__(self, root: Path, strategy: Strategy, seed: int) -> None:
        self.root = root
        self.strategy = strategy
        self._rng = random.Random(seed)
        self._entries: dict[int, Entry] = {}
        self._lock = threading.Lock()

    def add(self, node: Node, tar: bytes, tests: TestsRun | None,
            figures: dict[str, list[float]] | None = None) -> None:
        files = _unpack(tar, self.root / str(node.n))
        with self._lock:
            self._entries[node.n] = Entry(node, tar, tests, files, figures)

    def retire(self, n: int) -> list[int]:
        """Node `n` and every node built on it are no longer parents nor the best (n > 0:
        the run's baseline is the reviewed code); the numbers retired."""
        if n == 0:
            return []
        with self._lock:
            retired, grown = {n}, True
            while grown:
                more = {e.node.n for e in self._entries.values() if e.node.parent in retired}
                grown = not more <= retired
                retired |= more
            for k in retired:
                self._entries[k].retired = True
            return sorted(retired)

    def choose(self) -> Node:
        """The next candidate's parent; counted as one more child of it."""
        with self._lock:
            nodes = [e.node for e in self._entries.values() if not e.retired]
            # Greedy builds on the branch's head: the best node, the earliest of equals.
            chosen = (_best(nodes) if self.strategy == "greedy"
                      else choose_parent(nodes, self.strategy, self._rng))
            entry = self._entries[chosen.n]
            entry.node = replace(entry.node, children=entry.node.children + 1)
            return entry.node

    def choose_node(self, n: int) -> Node:
        """Node `n` as the next candidate's parent (a combination's), counted as a child."""
        with self._lock:
            entry = self._entries[n]
            entry.node = replace(entry.node, children=entry.node.children + 1)
            return entry.node

    def nodes(self) -> list[Node]:
        """The nodes still in the archive (not retired)."""
        with self._lock:
            return [e.node for e in self._entries.values() if not e.retired]

    def node(self, n: int) -> Node:
        with self._lock:
            return self._entries[n].node

    def best(self) -> Node:
        """The highest score; the earliest of equals (it is already on the branch)."""
        return _best(self.nodes())

    def lineage(self, n: int) -> list[int]:
        """The candidate numbers from the baseline's first child down to node `n`."""
        chain: list[int] = []
        current: int | None = n
        while current:
            chain.append(current)
            current = self.node(current).parent
        return chain[::-1]

    def parent_view(self, n: int) -> Parent:
        with self._lock:
            entry = self._entries[n]
            return Parent(entry.node.sha, self.root / str(n), list(entry.files))

    def baseline(self, n: int) -> Baseline:
        """What judging against node `n` needs (its tests None: to be run when lent)."""
        with self._lock:
            entry = self._entries[n]
        return Baseline(entry.node.sha, entry.tar, entry.tests, entry.figures)

    def baseline_of(self, sha: str) -> Baseline:
        with self._lock:
            n = next(e.node.n for e in self._entries.values() if e.node.sha == sha)
        return self.baseline(n)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def node_figures(verdict: Verdict) -> dict[str, list[float]]:
    """What an accepted candidate measured, per benchmark: as a node, its baseline side must
    measure so too (gate/nodes.py)."""
    return {figure_key(bench.name, bench.metric): list(bench.candidate)
            for bench in verdict.benchmarks if bench.candidate}


def _best(nodes: list[Node]) -> Node:
    return max(nodes, key=lambda node: (node.score, -node.n))


def _unpack(tar: bytes, into: Path) -> list[str]:
    """A node's tracked files (git's own tar of its commit), for the prompt to read."""
    into.mkdir(parents=True, exist_ok=True)
    files = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            # git's tar holds regular files, directories and symlinks; only files are read.
            if not member.isfile() or member.name.startswith("/") or ".." in member.name.split("/"):
                continue
            target = into / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            if source is not None:
                target.write_bytes(source.read())
                files.append(member.name)
    return sorted(files)
