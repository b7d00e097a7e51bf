"""The search loop with several candidates in flight and parents drawn from the archive.

With the stand-in judge (run_helpers.FakeJudge: accepts diffs containing '# fast') and real
git repositories: whatever order candidates finish in, every one is recorded once with its
ref and note, accepted candidates built on another node than the branch's head are kept
beside the branch, the branch ends as the best node's lineage, and a candidate whose tree was
judged before is not judged again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from selfcode.git.store import GitStore
from selfcode.history.db import History

from repos import tar_of
from run_helpers import (
    NO_EDIT,
    REPLY_BAD_EVENS,
    REPLY_EVENS,
    REPLY_SQUARES,
    edit,
    git,
    improve,
    isolated_run,  # noqa: F401 (an autouse fixture: importing it is using it)
    make_target,
    write_replay,
)


def _candidates(repo: Path, run_id: str) -> list[Any]:
    store = GitStore(repo)
    with History.in_state_dir(store.state_dir()) as history:
        return history.candidates(run_id)


def _refs(repo: Path, run_id: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
              f"refs/selfcode/{run_id}/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_three_in_flight_each_recorded_once_with_ref_and_note(tmp_path: Path) -> None:
    repo = make_target(tmp_path / "target")
    base = git(repo, "rev-parse", "HEAD").strip()
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_EVENS, REPLY_BAD_EVENS)
    summary = improve(repo, replay, "--iterations", "3", "--jobs", "3",
                      "--strategy", "greedy")
    run_id = summary["run_id"]
    rows = {r.n: r for r in _candidates(repo, run_id)}
    assert sorted(rows) == [1, 2, 3, 4]
    model_made = [rows[n] for n in (1, 2, 3)]
    assert sorted(r.status for r in model_made) == ["accepted", "accepted", "rejected"]
    # All three were in flight at once: each was built on the run's baseline.
    assert {r.parent_commit for r in model_made} == {base}
    refs = _refs(repo, run_id)
    assert sorted(refs) == [f"refs/selfcode/{run_id}/{n}" for n in (1, 2, 3, 4)]
    for ref_sha in refs.values():
        note = json.loads(git(repo, "notes", "--ref=selfcode", "show", ref_sha))
        assert note["status"] in ("accepted", "rejected")
    first, second = sorted((r for r in model_made if r.status == "accepted"),
                           key=lambda r: r.n)
    # The first to be recorded went on the branch; the other, built on the same baseline,
    # was kept beside it; both commits' parent is the baseline.
    for row in (first, second):
        assert git(repo, "rev-parse", f"{row.commit_sha}^").strip() == base
    # At the end the two independent wins were combined, judged as candidate 4, and the
    # combination (on top of the branch's head) became the branch's end.
    combined = rows[4]
    assert combined.rationale.startswith("Combination")
    assert combined.status == "accepted"
    assert combined.parent_commit in (first.commit_sha, second.commit_sha)
    branch = summary["branch"]
    assert git(repo, "rev-parse", branch).strip() == combined.commit_sha
    assert len(git(repo, "rev-list", f"{base}..{branch}").split()) == 2
    tree = git(repo, "show", f"{branch}:src/fastlib/__init__.py")
    assert "(n - 1) * n * (2 * n - 1) // 6" in tree and "(n + 1) // 2" in tree
    assert summary["accepted"] == 3 and summary["candidates"] == 4
    # The summary's commits are the branch's (the lineage); the other accepted one is beside.
    assert summary["commits"] == git(repo, "rev-list", "--reverse",
                                     f"{base}..{branch}").split()


def test_a_repeat_is_not_judged_again(tmp_path: Path) -> None:
    repo = make_target(tmp_path / "target")
    comment_only = edit("Explain the loop.", "    count = 0\n",
                        "    count = 0  # the number of evens seen so far\n")
    replay = write_replay(tmp_path / "r.jsonl", REPLY_BAD_EVENS, REPLY_BAD_EVENS,
                          comment_only)
    summary = improve(repo, replay, "--iterations", "3", "--jobs", "1")
    rows = {r.n: r for r in _candidates(repo, summary["run_id"])}
    assert [rows[n].status for n in (1, 2, 3)] == ["rejected"] * 3
    second = rows[2].verdict
    assert second["reasons"][0].startswith("a repeat")
    assert "candidate 1's code" in second["reasons"][0]
    # The earlier verdict is what the model is told, not a new judgement.
    assert "newly failing: tests/test_fastlib.py::test_evens" in second["reasons"]
    assert second["sandbox"] == "none" and "tests" not in second["timings"]
    assert "its parent's code" in rows[3].verdict["reasons"][0]


def test_lineage_counts_children_and_greedy_builds_on_the_branch_head(tmp_path: Path) -> None:
    from selfcode.search.lineage import Lineage
    from selfcode.search.parents import Node

    lineage = Lineage(tmp_path / "nodes", "greedy", seed=0)
    lineage.add(Node(n=0, sha="a" * 40, parent=None, score=1.0), tar_of({"x.py": "x = 1\n"}),
                None)
    lineage.add(Node(n=1, sha="b" * 40, parent=0, score=1.5), tar_of({"x.py": "x = 2\n"}), None)
    lineage.add(Node(n=2, sha="c" * 40, parent=0, score=1.5), tar_of({"x.py": "x = 3\n"}), None)
    lineage.add(Node(n=4, sha="d" * 40, parent=2, score=1.2), tar_of({"x.py": "x = 4\n",
                                                                   "../evil": "no"}), None)
    # Ties go to the earliest node: the one already on the branch, so the branch stays.
    assert lineage.best().n == 1
    assert [lineage.choose().n for _ in range(3)] == [1, 1, 1]
    assert lineage.node(1).children == 3
    assert lineage.lineage(4) == [2, 4]
    view = lineage.parent_view(4)
    assert view.files == ["x.py"]  # a member outside the tree is never written
    assert (view.path / "x.py").read_text() == "x = 4\n"
    assert not (tmp_path / "evil").exists()
    lineage.close()
    assert not (tmp_path / "nodes").exists()


def test_archive_strategy_also_draws_nodes_other_than_the_best(tmp_path: Path) -> None:
    from selfcode.search.lineage import Lineage
    from selfcode.search.parents import Node

    lineage = Lineage(tmp_path / "nodes", "archive", seed=1)
    for n, score in ((0, 1.0), (1, 1.3), (2, 1.25)):
        lineage.add(Node(n=n, sha=str(n) * 40, parent=0 if n else None, score=score),
                    tar_of({"x.py": f"x = {n}\n"}), None)
    drawn = [lineage.choose().n for _ in range(60)]
    # The penalty for children already tried spreads the draws over the good nodes.
    assert {1, 2} <= set(drawn)
    assert drawn.count(1) < 60


def test_an_infrastructure_failure_is_neither_accepted_nor_rejected_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor whose node died under candidate 1 (twice): it is recorded as such, with
    its ref and an event, and candidate 2 is judged as usual."""
    import selfcode.run.workflows as workflows
    from selfcode.errors import InfrastructureFailure
    from selfcode.executors.local import LocalExecutor

    class DyingOnce(LocalExecutor):
        def judge(self, n: int, baseline: Any, diff: str) -> Any:
            if n == 1:
                raise InfrastructureFailure("node 10.0.0.2 died, and node 10.0.0.3 after it")
            return super().judge(n, baseline, diff)

    monkeypatch.setattr(workflows, "LocalExecutor", DyingOnce)
    repo = make_target(tmp_path / "target")
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_SQUARES)
    summary = improve(repo, replay, "--iterations", "2")
    rows = {r.n: r for r in _candidates(repo, summary["run_id"])}
    assert rows[1].status == "infrastructure" and rows[1].commit_sha is None
    assert rows[2].status == "accepted"
    assert f"refs/selfcode/{summary['run_id']}/1" in _refs(repo, summary["run_id"])
    store = GitStore(repo)
    with History.in_state_dir(store.state_dir()) as history:
        events = [e for e in history.events(summary["run_id"]) if e.kind == "infrastructure"]
    assert [e.candidate_n for e in events] == [1] and "died" in events[0].message
    assert summary["accepted"] == 1 and summary["candidates"] == 2


def test_review_covers_the_branch_lineage_not_the_candidates_kept_beside_it(
        tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from selfcode.cli.app import app

    repo = make_target(tmp_path / "target")
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_EVENS, REPLY_BAD_EVENS)
    summary = improve(repo, replay, "--iterations", "3", "--jobs", "3", "--strategy", "greedy")
    run_id, base = summary["run_id"], summary["base_commit"]
    rows = {r.n: r for r in _candidates(repo, run_id)}
    on_branch = git(repo, "rev-list", "--reverse", f"{base}..{summary['branch']}").split()
    lineage = [n for n, r in rows.items() if r.commit_sha in on_branch]
    # Which candidate got which reply depends on the order their requests went out.
    beside = next(n for n, r in rows.items() if r.status == "accepted" and n not in lineage)
    result = CliRunner().invoke(app, ["review", "--approve", str(beside), run_id, str(repo),
                                      "--json"])
    assert result.exit_code == 2
    assert "on another lineage" in result.output
    head = lineage[-1]
    result = CliRunner().invoke(app, ["review", "--reject", str(head), run_id, str(repo),
                                      "--json"])
    assert result.exit_code == 0, result.output
    numbers = git(repo, "log", "--format=%(trailers:key=Selfcode-Candidate,valueonly)",
                  f"{base}..{summary['branch']}").split()
    assert numbers == [str(lineage[0])]  # the branch rebuilt as its lineage without the head


def test_several_models_each_candidate_asks_one_chosen_by_the_bandit(tmp_path: Path) -> None:
    """`--model a,b` with `--endpoint b=URL`: every candidate's turns go to one model, both
    are asked over the run, and the exchanges carry the pool's names."""
    from typer.testing import CliRunner

    from selfcode.cli.app import app

    from openai_server import OpenAIServer

    repo = make_target(tmp_path / "target")
    with OpenAIServer() as first, OpenAIServer() as second:
        for server in (first, second):
            server.script(*([REPLY_BAD_EVENS] * 6))
        result = CliRunner().invoke(app, [
            "improve", str(repo), "--sandbox", "local", "--json", "--iterations", "4",
            "--model", "model-a,model-b", "--base-url", first.base_url,
            "--endpoint", f"model-b={second.base_url}"])
        assert result.exit_code == 0, result.output
        asked = (len(first.requests), len(second.requests))
        assert asked[0] >= 1 and asked[1] >= 1 and sum(asked) == 4
        assert {r["model"] for r in first.requests} == {"model-a"}
        assert {r["model"] for r in second.requests} == {"model-b"}
    run_id = json.loads(result.stdout)["run_id"]
    store = GitStore(repo)
    with History.in_state_dir(store.state_dir()) as history:
        models = [e.model for e in history.exchanges(run_id)]
    assert sorted(set(models)) == ["model-a", "model-b"]
    shown = json.loads(CliRunner().invoke(app, ["show", run_id, str(repo), "--json"]).stdout)
    assert {m["model"]: m["requests"] for m in shown["models"]} == {
        "model-a": asked[0], "model-b": asked[1]}


def test_a_retired_node_and_its_descendants_are_parents_no_more(tmp_path: Path) -> None:
    from selfcode.search.lineage import Lineage
    from selfcode.search.parents import Node

    lineage = Lineage(tmp_path / "nodes", "archive", seed=0)
    for n, parent, score in ((0, None, 1.0), (1, 0, 2.0), (2, 1, 4.0), (3, 0, 1.5)):
        lineage.add(Node(n=n, sha=str(n) * 40, parent=parent, score=score),
                    tar_of({"x.py": f"x = {n}\n"}), None)
    assert lineage.best().n == 2
    assert lineage.retire(1) == [1, 2]
    assert lineage.best().n == 3
    assert {lineage.choose().n for _ in range(50)} <= {0, 3}
    assert lineage.retire(0) == []  # the run's baseline is the reviewed code


def test_a_resumed_run_adopts_each_nodes_kept_run(tmp_path: Path) -> None:
    """History m005: an accepted candidate's re-check run is kept, and `restore_nodes` gives
    it back, so no node's code is tested again as a baseline."""
    from selfcode.gate.verdict import BenchVerdict, Verdict
    from selfcode.run.searching import restore_nodes
    from selfcode.sandbox.results import TestsRun
    from selfcode.search.lineage import Lineage

    repo = make_target(tmp_path / "target")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src" / "fastlib" / "__init__.py").write_text("x = 1\n")
    git(repo, "commit", "-qam", "node")
    node_sha = git(repo, "rev-parse", "HEAD").strip()
    kept = TestsRun(exit_code=0, timed_out=False, duration=1.5,
                    outcomes={"tests/test_fastlib.py::test_squares": "passed"})
    verdict = Verdict(accepted=True, status="accepted", goal="speed", benchmarks=[
        BenchVerdict(name="work", metric="instructions", baseline=[200.0], candidate=[100.0],
                     ratio=0.5, verdict="faster")])
    store = GitStore(repo)

    class Run:  # what restore_nodes reads of a run
        def __init__(self, history: History) -> None:
            self.history, self.store, self.run_id = history, store, "r1"

    class FirstJudge:
        baseline_tests = TestsRun(exit_code=0, timed_out=False, duration=1.0)

    with History(tmp_path / "h.db") as history:
        history.start_run("r1", str(repo), base, "selfcode/r1", "faster", "m", "local")
        history.add_candidate("r1", 1, base)
        history.update_candidate("r1", 1, status="accepted", commit_sha=node_sha,
                                 verdict=verdict.model_dump(), node_tests=kept.model_dump())
        lineage = Lineage(tmp_path / "nodes", "greedy", seed=0)
        restore_nodes(Run(history), lineage, FirstJudge(), node_sha)  # type: ignore[arg-type]
    node = lineage.baseline(1)
    assert node.tests == kept and node.figures == {"work/instructions": [100.0]}
    assert lineage.baseline(0).tests == FirstJudge.baseline_tests
    assert lineage.best().n == 1 and lineage.node(1).score == 2.0


def test_a_crash_after_a_commit_beside_the_branch_is_settled_as_accepted(
        tmp_path: Path) -> None:
    """Killed between committing a candidate beside the branch and recording its status:
    `--resume` finds its commit, ref and note and records it accepted, not abandoned."""
    import sqlite3

    repo = make_target(tmp_path / "target")
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_EVENS, REPLY_BAD_EVENS)
    summary = improve(repo, replay, "--iterations", "3", "--jobs", "3", "--strategy", "greedy")
    run_id, base = summary["run_id"], summary["base_commit"]
    rows = {r.n: r for r in _candidates(repo, run_id)}
    on_branch = git(repo, "rev-list", f"{base}..{summary['branch']}").split()
    beside = next(n for n, r in rows.items()
                  if r.status == "accepted" and r.commit_sha not in on_branch)
    db = GitStore(repo).state_dir() / "history.db"
    with sqlite3.connect(db) as con:  # as the crash left it
        con.execute("UPDATE candidates SET status = 'proposed' WHERE run_id = ? AND n = ?",
                    (run_id, beside))
        con.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
    resumed = improve(repo, write_replay(tmp_path / "r2.jsonl", NO_EDIT, NO_EDIT, NO_EDIT),
                      "--resume", run_id, "--iterations", "5")
    after = {r.n: r for r in _candidates(repo, run_id)}
    assert after[beside].status == "accepted"
    assert after[beside].commit_sha == rows[beside].commit_sha
    assert resumed["run_id"] == run_id
