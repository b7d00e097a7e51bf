"""What the search loop is given besides its judge: the archive's nodes (restored on a
resumed run), a profiler that profiles any node in a judge of the pool, the model chooser
and the budget check between a candidate's turns.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from selfcode.gate.judge import Judge
from selfcode.gate.verdict import Verdict
from selfcode.llm import LLM
from selfcode.llm.pool import ModelPool
from selfcode.run.context import Run
from selfcode.run.propose import Parent
from selfcode.sandbox.results import ProfileRun, TestsRun
from selfcode.sandbox.trees import Trees
from selfcode.search.lineage import Lineage, node_figures
from selfcode.search.parents import Node
from selfcode.search.pool import JudgePool


class Chooser:
    """The loop's view of a model pool: a model per candidate, drawn with the run's seed."""

    def __init__(self, pool: ModelPool, seed: int) -> None:
        self.pool, self.rng = pool, random.Random(seed)

    def choose(self) -> LLM:
        return self.pool.choose(self.rng)

    def settle(self, model: str, accepted: bool) -> None:
        self.pool.settle(model, accepted)


def restore_nodes(run: Run, lineage: Lineage, judge: Judge, head: str) -> None:
    """The archive's nodes: the run's baseline (its tests the first judge's), and on a
    resumed run every accepted candidate still reachable, with the full-suite run and the
    figures it was accepted with (history m005): a node's code is never tested again as a
    baseline. A run from before m005 has no runs kept: its nodes are tested when lent."""
    recorded = run.history.run(run.run_id)
    base = recorded.base_commit if recorded else head
    lineage.add(Node(n=0, sha=base, parent=None, score=1.0), run.store.tracked_tar(base),
                judge.baseline_tests)  # the first judge's baseline is the run's base
    for row in run.history.candidates(run.run_id):
        if row.status != "accepted" or not row.commit_sha:
            continue
        parent = next((node for node in lineage.nodes() if node.sha == row.parent_commit),
                      None)
        if parent is None:
            continue
        verdict = Verdict.model_validate(row.verdict) if row.verdict else None
        speedup = verdict.speedup() if verdict else None
        tests = TestsRun.model_validate(row.node_tests) if row.node_tests else None
        lineage.add(Node(n=row.n, sha=row.commit_sha, parent=parent.n,
                         score=parent.score * (speedup or 1.0)),
                    run.store.tracked_tar(row.commit_sha), tests,
                    node_figures(verdict) if verdict else None)


def profiler(judge: Judge, pool: JudgePool, lineage: Lineage,
              head: str) -> Callable[[Parent], ProfileRun] | None:
    """Profiles a parent's benchmarks in a judge of the pool, when judging by speed."""
    trees = getattr(judge, "trees", None)  # a stand-in judge of the tests has none
    if judge.goal != "speed" or not judge.benchmarks or not isinstance(trees, Trees):
        return None

    def profile(parent: Parent) -> ProfileRun:
        # The baseline's is taken before any candidate, on the loop's thread (`_agent`).
        early = parent.key == head
        with pool.lend(lineage.baseline_of(parent.key), early=early) as lent:
            return lent.trees.profile(lent.benchmarks)

    return profile
