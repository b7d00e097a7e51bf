"""The archive's tree of candidates in `selfcode show` and the reports.

A real run with the stand-in judge (run_helpers.FakeJudge) and a real git repository:
`--jobs 3 --strategy greedy` builds three candidates on the baseline at once; two are
accepted on different lineages (the first on the branch, the second committed beside it),
and the combination of the second onto the first ends the branch. The tree must put each
candidate under the node it was built on and mark the two the branch holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.git.store import GitStore
from selfcode.history.db import History
from selfcode.history.tree import build_tree, parent_numbers
from selfcode.history.views import OFF_BRANCH, CandidateView, load_run

from run_helpers import (
    REPLY_BAD_EVENS,
    REPLY_EVENS,
    REPLY_SQUARES,
    git,
    improve,
    isolated_run,  # noqa: F401 (an autouse fixture: importing it is using it)
    make_target,
    write_replay,
)


def _lineage_run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    repo = make_target(tmp_path / "target")
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_EVENS, REPLY_BAD_EVENS)
    return repo, improve(repo, replay, "--iterations", "3", "--jobs", "3",
                         "--strategy", "greedy")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _shape(node: dict[str, Any]) -> dict[int, Any]:
    """{n: {child n: ...}} of a JSON tree node's children."""
    return {child["n"]: _shape(child) for child in node["children"]}


def test_show_json_tree_puts_each_candidate_under_its_parent(tmp_path: Path) -> None:
    repo, summary = _lineage_run(tmp_path)
    run_id = summary["run_id"]
    data = json.loads(_cli("show", run_id, str(repo), "--json"))
    cands = {c["n"]: c for c in data["candidates"]}
    accepted = sorted(n for n in (1, 2, 3) if cands[n]["status"] == "accepted")
    first, second = accepted  # the first recorded is on the branch, the other beside it
    on_branch_first = git(repo, "merge-base", "--is-ancestor", cands[first]["commit"],
                          summary["branch"]) == ""
    assert on_branch_first
    # Every model-made candidate was built on the baseline; the combination on the branch's
    # candidate.
    assert {cands[n]["parent"] for n in (1, 2, 3)} == {0}
    assert cands[4]["parent"] == first and cands[4]["rationale"].startswith("Combination")
    tree = data["tree"]
    assert tree["n"] == 0 and tree["status"] == "baseline" and tree["on_branch"]
    assert tree["commit"] == data["base_commit"]
    assert _shape(tree) == {1: {}, 2: {}, 3: {}} | {first: {4: {}}}
    nodes = {c["n"]: c for c in tree["children"]}
    nodes[4] = nodes[first]["children"][0]
    assert [n for n in (1, 2, 3, 4) if nodes[n]["on_branch"]] == [first, 4]
    assert nodes[second]["status"] == "accepted" and not nodes[second]["on_branch"]
    assert nodes[first]["gain"] == "1.82x less CPU time"
    assert nodes[4]["parent"] == first and nodes[4]["commit"] == cands[4]["commit"]
    # The view's own reading of the branch: the candidate beside it is not on it.
    assert cands[second]["on_final_branch"] is False and cands[first]["on_final_branch"]
    assert cands[second]["reasons"] == [OFF_BRANCH]


def _drawn_nodes(out: str) -> dict[int, tuple[int, str]]:
    """{n: (column where "candidate n:" starts, its whole text)} of the tree `show` drew,
    a node's wrapped lines joined to it."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"baseline [0-9a-f]{10}",
                                                                 line.strip()))
    end = next(i for i, line in enumerate(lines) if line.startswith("Each candidate under"))
    nodes: dict[int, tuple[int, str]] = {}
    last = None
    for line in lines[start + 1:end]:
        if (m := re.match(r"^(.*?)candidate (\d+):", line)):
            last = int(m.group(2))
            nodes[last] = (len(m.group(1)), line)
        elif last is not None:
            nodes[last] = (nodes[last][0], nodes[last][1] + " " + line.strip(" │"))
    return nodes


def test_show_draws_the_tree_and_marks_the_branchs_lineage(tmp_path: Path) -> None:
    repo, summary = _lineage_run(tmp_path)
    out = _cli("show", summary["run_id"], str(repo))
    nodes = _drawn_nodes(out)
    # Three candidates one level under the baseline, the combination a level below them,
    # right after the candidate it was built on.
    assert sorted(nodes) == [1, 2, 3, 4]
    depth = {n: column for n, (column, _) in nodes.items()}
    assert depth[1] == depth[2] == depth[3] < depth[4]
    view = _view(repo, summary["run_id"])
    first = min(c.n for c in view.on_branch)
    assert list(nodes).index(4) == list(nodes).index(first) + 1
    marked = sorted(n for n, (_, text) in nodes.items() if "on the branch" in text)
    assert marked == [first, 4] == sorted(c.n for c in view.on_branch)
    rejected = next(text for _, text in nodes.values() if "rejected" in text)
    assert "newly failing" in rejected and "Count evens as n // 2" in rejected
    one = _cli("show", f"{summary['run_id']}/4", str(repo))
    assert f"git: built on candidate {first}; commit " in one
    beside = next(c.n for c in view.candidates if c.status == "accepted" and not c.on_branch)
    one = _cli("show", f"{summary['run_id']}/{beside}", str(repo))
    assert "git: built on the baseline; not on the branch" in one


def _view(repo: Path, run_id: str) -> Any:
    store = GitStore(repo)
    try:
        with History.in_state_dir(store.state_dir()) as history:
            return load_run(history, run_id, store)
    finally:
        store.close()


def test_reports_hold_the_same_tree(tmp_path: Path) -> None:
    repo, summary = _lineage_run(tmp_path)
    run_id = summary["run_id"]
    view = _view(repo, run_id)
    first = min(c.n for c in view.on_branch)
    second = next(c.n for c in view.candidates
                  if c.status == "accepted" and not c.on_branch)
    md = _cli("report", run_id, str(repo))
    section = md.split("### Tree of candidates", 1)[1].split("\n###", 1)[0]
    items = [line for line in section.splitlines() if line.lstrip().startswith("- ")]
    indent = {int(m.group(2)): len(m.group(1))
              for line in items if (m := re.match(r"^( *)- candidate (\d+):", line))}
    assert items[0].startswith("- baseline ")
    assert indent == {1: 2, 2: 2, 3: 2, 4: 4}
    assert items.index(next(x for x in items if "candidate 4:" in x)) == \
        items.index(next(x for x in items if f"candidate {first}:" in x)) + 1
    marked = sorted(n for n in indent if "on the branch" in
                    next(x for x in items if f"candidate {n}:" in x))
    assert marked == [first, 4]
    # The headline counts what the branch holds, not every accepted candidate.
    assert md.startswith("## selfcode: 2 proven improvements")
    html = _cli("report", run_id, str(repo), "--format", "html")
    tree_html = html.split('<ul class="tree">', 1)[1].split("</ul></li></ul>", 1)[0]
    assert tree_html.count("<li>") == 5
    # The combination's item is nested inside the first accepted candidate's.
    first_item = tree_html.split(f'href="#c{first}"', 1)[1]
    assert first_item.split("</li>", 1)[0].count('href="#c4"') == 1
    assert tree_html.count('class="mark"') == 2
    assert f'href="#c{second}">' in tree_html


def _cand(n: int, parent: str | None, status: str = "rejected", commit: str | None = None,
          ref: str | None = None) -> CandidateView:
    return CandidateView(run_id="r", n=n, status=status, title=f"idea {n}", parent_commit=parent,
                         commit=commit, candidate_commit=ref or commit)


def test_parents_from_commits_table() -> None:
    base = "b" * 40
    cands = [
        _cand(1, base, "accepted", commit="1" * 40),
        _cand(2, "1" * 40, "accepted", commit="2" * 40, ref="9" * 40),  # a rebuilt commit
        _cand(3, "9" * 40),        # built on candidate 2's original commit (its ref)
        _cand(4, "2" * 40),        # on candidate 2's commit as the branch holds it now
        _cand(5, "f" * 40),        # none of the run's commits
        _cand(6, None),            # not recorded
        _cand(7, "8" * 40),        # a later candidate's commit: never a parent
        _cand(8, base, "accepted", commit="8" * 40),
    ]
    assert parent_numbers(base, cands) == {1: 0, 2: 1, 3: 2, 4: 2, 5: None, 6: None,
                                           7: None, 8: 0}
    tree = build_tree(base, cands)
    shape = {node.n: [c.n for c in node.children] for _, node in tree.walk()}
    assert shape[0] == [1, 5, 6, 7, 8] and shape[1] == [2] and shape[2] == [3, 4]
    assert [node.parent for _, node in tree.walk()] == [None, 0, 1, 2, 2, None, None, None, 0]


def test_a_title_cannot_fake_the_branch_marker() -> None:
    from selfcode.history.views import RunView
    from selfcode.report.html import render_html
    from selfcode.report.markdown import tree_md

    base = "b" * 40
    forged = "Nothing \u2190 **on the branch**\n  - candidate 9: accepted <b>x</b>"
    view = RunView(run_id="r", repo="/r", branch="selfcode/r", base_commit=base, goal="g",
                   model="m", sandbox="docker", status="finished", started_at="2026")
    view.candidates = [CandidateView(run_id="r", n=1, status="rejected", title=forged,
                                     parent_commit=base, reasons=["slower"])]
    lines = tree_md(view)
    items = [line for line in lines if line.lstrip().startswith("- ")]
    assert len(items) == 2 and items[1].startswith("  - candidate 1: rejected, slower")
    assert "**on the branch**" not in items[1] and "<b>" not in items[1]
    assert "\\*\\*on the branch\\*\\*" in items[1]
    html = render_html(view)
    assert 'class="mark"' not in html and "&lt;b&gt;x&lt;/b&gt;" in html
