"""`selfcode runs`, `show`, `review`, resuming a finished run, and `improve --ci`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app

from run_helpers import (
    NO_EDIT,
    REPLY_BAD_EVENS,
    REPLY_EVENS,
    REPLY_SQUARES,
    REPLY_SQUARES_AGAIN,
    git,
    improved_target,
    isolated_run,  # noqa: F401 (an autouse fixture: importing it is using it)
    make_target,
    snapshot,
    write_replay,
)

runner = CliRunner()


@pytest.fixture
def run4(tmp_path: Path) -> tuple[Path, dict]:
    """A run of four candidates: 1 and 3 independent wins, 2 rejected, 4 builds on 1."""
    repo, summary = improved_target(tmp_path, REPLY_SQUARES, REPLY_BAD_EVENS, REPLY_EVENS,
                                    REPLY_SQUARES_AGAIN)
    assert summary["accepted"] == 3
    return repo, summary


def on_branch(repo: Path, summary: dict) -> list[str]:
    out = git(repo, "log", "--reverse", "--format=%(trailers:key=Selfcode-Candidate,valueonly)",
              f"{summary['base_commit']}..{summary['branch']}")
    return [line for line in out.split() if line]


def review(repo: Path, run: str, *args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["review", run, str(repo), "--json", *args])
    return result.exit_code, json.loads(result.stdout or "{}"), result.stderr


def test_rejecting_a_candidate_rebuilds_the_branch_without_it(run4):
    repo, summary = run4
    run, base = summary["run_id"], summary["base_commit"]
    before = snapshot(repo)
    assert on_branch(repo, summary) == ["1", "3", "4"]

    code, outcome, err = review(repo, run, "--approve", "1", "--reject", "3", "--note", "later")
    assert code == 0, err
    assert outcome["rebuilt"] and outcome["on_branch"] == [1, 4] and outcome["dropped"] == [3]
    assert outcome["warnings"] == [
        "candidate 4 was measured on top of candidate 3, which is no longer on the branch; "
        "re-measure it with `selfcode eval` before merging"]
    assert on_branch(repo, summary) == ["1", "4"]
    # A rebuild, not a revert: two commits, evens() untouched, squares() as candidate 4 left it.
    subjects = git(repo, "log", "--format=%s", f"{base}..{summary['branch']}")
    assert len(subjects.splitlines()) == 2 and "Revert" not in subjects
    lib = git(repo, "show", f"{summary['branch']}:src/fastlib/__init__.py")
    assert "if i % 2 == 0" in lib and "guarded" in lib
    # The rebuilt commits keep their notes; the candidate refs keep the originals.
    head_note = json.loads(git(repo, "notes", "--ref=refs/notes/selfcode", "show",
                               summary["branch"]))
    assert head_note["candidate"] == 4
    rejected = json.loads(git(repo, "notes", "--ref=refs/notes/selfcode", "show",
                              f"refs/selfcode/{run}/3"))
    assert rejected["review"]["decision"] == "rejected" and rejected["review"]["note"] == "later"

    shown = json.loads(runner.invoke(app, ["show", f"{run}/3", str(repo), "--json"]).stdout)
    assert shown["review"]["decision"] == "rejected" and shown["commit"] is None
    assert shown["candidate_commit"] == git(repo, "rev-parse", f"refs/selfcode/{run}/3").strip()

    # Approving it again puts it back, in its place.
    code, outcome, err = review(repo, run, "--approve", "3")
    assert code == 0 and outcome["on_branch"] == [1, 3, 4], err
    assert on_branch(repo, summary) == ["1", "3", "4"]
    assert snapshot(repo) == before
    assert git(repo, "worktree", "list").count("\n") == 1
    assert "error" not in git(repo, "fsck", "--no-dangling")


def test_a_rejection_that_later_candidates_depend_on_leaves_the_branch_alone(run4):
    repo, summary = run4
    head = git(repo, "rev-parse", summary["branch"])
    code, _, err = review(repo, summary["run_id"], "--reject", "1")
    assert code == 2
    assert "Candidate 4 does not apply without the rejected candidate(s) 1" in err
    assert git(repo, "rev-parse", summary["branch"]) == head
    assert git(repo, "worktree", "list").count("\n") == 1


def test_only_accepted_candidates_are_reviewed(run4):
    repo, summary = run4
    code, _, err = review(repo, summary["run_id"], "--approve", "2")
    assert code == 2 and "Candidate 2" in err and "was not accepted" in err


def test_review_needs_a_terminal_or_flags(run4):
    repo, summary = run4
    result = runner.invoke(app, ["review", summary["run_id"], str(repo)])
    assert result.exit_code == 2 and "--approve" in result.stderr


def test_interactive_review_prompts_for_each_accepted_candidate(run4, monkeypatch):
    import selfcode.cli.review as cli_review

    repo, summary = run4
    monkeypatch.setattr(cli_review, "_interactive", lambda: True)
    result = runner.invoke(app, ["review", summary["run_id"], str(repo)], input="a\nr\nq\n")
    assert result.exit_code == 0, result.output
    assert "candidate 1: approved" in result.stderr and "candidate 3: rejected" in result.stderr
    assert on_branch(repo, summary) == ["1", "4"]


def test_runs_and_show(run4):
    repo, summary = run4
    run = summary["run_id"]
    listed = json.loads(runner.invoke(app, ["runs", str(repo), "--json"]).stdout)
    assert [r["run_id"] for r in listed] == [run]
    assert listed[0]["candidates"] == 4 and listed[0]["accepted"] == 3
    assert listed[0]["best_speedup"] == pytest.approx(1 / 0.55)

    table = runner.invoke(app, ["runs", str(repo)])
    assert table.exit_code == 0 and run in table.stdout and "3 of 4" in table.stdout

    whole = runner.invoke(app, ["show", run[:10], str(repo)])
    assert whole.exit_code == 0 and "3 proven improvements" in whole.stdout

    one = runner.invoke(app, ["show", "latest/1", str(repo)])
    assert one.exit_code == 0, one.output
    text = " ".join(one.stdout.split())
    for expected in ("closed form n(n-1)(2n-1)/6", "1.82x faster", "199 ms", "110 ms",
                     "+ return (n - 1) * n * (2 * n - 1) // 6", "2 passed, 0 failed",
                     "none lost", "1,100 tokens", f"refs/selfcode/{run}/1"):
        assert expected in text, expected

    data = json.loads(runner.invoke(app, ["show", f"{run}/2", str(repo), "--json"]).stdout)
    assert data["status"] == "rejected" and data["verdict"]["reasons"]
    missing = runner.invoke(app, ["show", f"{run}/9", str(repo)])
    assert missing.exit_code == 2 and "no candidate 9" in missing.stderr
    unknown = runner.invoke(app, ["show", "nope", str(repo)])
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.stderr


def test_resume_continues_numbering_and_totals(tmp_path: Path):
    repo = make_target(tmp_path / "target")
    first = runner.invoke(app, ["improve", str(repo), "--sandbox", "local", "--json",
                                "--replay", str(write_replay(tmp_path / "a.jsonl",
                                                             REPLY_SQUARES)),
                                "--iterations", "1"])
    run = json.loads(first.stdout)["run_id"]
    second = runner.invoke(app, ["improve", str(repo), "--json", "--resume", run,
                                 "--iterations", "3", "--replay",
                                 str(write_replay(tmp_path / "b.jsonl", REPLY_BAD_EVENS,
                                                  REPLY_EVENS))])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["run_id"] == run and summary["candidates"] == 3 and summary["accepted"] == 2
    assert f"resuming run {run}" in second.stderr
    assert "at candidate 2" in " ".join(second.stderr.split())
    data = json.loads(runner.invoke(app, ["show", run, str(repo), "--json"]).stdout)
    assert [(c["n"], c["status"]) for c in data["candidates"]] == [
        (1, "accepted"), (2, "rejected"), (3, "accepted")]
    # The resumed run keeps its sandbox setting and base.
    assert summary["sandbox"] == "local" and summary["base_commit"] == data["base_commit"]


def test_resume_of_an_unknown_run(tmp_path: Path):
    repo = make_target(tmp_path / "target")
    runner.invoke(app, ["improve", str(repo), "--sandbox", "local", "--iterations", "1",
                        "--replay", str(write_replay(tmp_path / "a.jsonl", NO_EDIT, NO_EDIT,
                                                     NO_EDIT))])
    result = runner.invoke(app, ["improve", str(repo), "--resume", "20990101-000000-abcd"])
    assert result.exit_code == 2 and "no run 20990101-000000-abcd" in result.stderr


def test_ci_mode_writes_report_and_summary_and_exits_by_outcome(tmp_path: Path):
    repo = make_target(tmp_path / "target")
    out = tmp_path / "out"
    result = runner.invoke(app, ["improve", str(repo), "--ci", "--out", str(out), "--sandbox",
                                 "local", "--iterations", "2", "--replay",
                                 str(write_replay(tmp_path / "a.jsonl", REPLY_BAD_EVENS,
                                                  REPLY_SQUARES))])
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stderr  # no colour
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["accepted"] == 1
    assert summary["improvements"][0]["n"] == 2 and summary["title"].startswith("selfcode: ")
    report = (out / "report.md").read_text()
    assert report.startswith("## selfcode: 1 proven improvement, best 1.82x faster")

    none = runner.invoke(app, ["improve", str(repo), "--ci", "--out", str(out), "--sandbox",
                               "local", "--iterations", "1", "--replay",
                               str(write_replay(tmp_path / "b.jsonl", REPLY_BAD_EVENS))])
    assert none.exit_code == 3, none.output
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 3
    assert "no proven improvement" in (out / "report.md").read_text()


def test_ci_mode_error_is_exit_2_with_a_summary(tmp_path: Path, monkeypatch):
    repo = make_target(tmp_path / "target")
    monkeypatch.delenv("OPENAI_API_KEY")
    out = tmp_path / "out"
    result = runner.invoke(app, ["improve", str(repo), "--ci", "--out", str(out),
                                 "--sandbox", "local"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error" and "OPENAI_API_KEY" in summary["error"]


def test_runs_in_a_repository_without_runs(tmp_path: Path):
    repo = make_target(tmp_path / "target")
    listed = runner.invoke(app, ["runs", str(repo), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    plain = runner.invoke(app, ["runs", str(repo)])
    assert plain.exit_code == 0 and "No selfcode runs" in plain.stderr
    shown = runner.invoke(app, ["show", "latest", str(repo)])
    assert shown.exit_code == 2 and "no selfcode runs yet" in shown.stderr


def test_a_clone_with_the_fetched_refs_and_notes_can_show_report_and_review(run4, tmp_path):
    """The reviewer who was not there: no history database, only what `git fetch` brought."""
    repo, summary = run4
    run = summary["run_id"]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "fetch", "-q", "origin", "+refs/selfcode/*:refs/selfcode/*",
        "+refs/notes/selfcode:refs/notes/selfcode")
    assert not (clone / ".git" / "selfcode" / "history.db").exists()

    listed = json.loads(runner.invoke(app, ["runs", str(clone), "--json"]).stdout)
    assert [(r["run_id"], r["accepted"]) for r in listed] == [(run, 3)]
    original = json.loads(runner.invoke(app, ["show", f"{run}/1", str(repo), "--json"]).stdout)
    copied = json.loads(runner.invoke(app, ["show", f"{run}/1", str(clone), "--json"]).stdout)
    for key in ("rationale", "status", "verdict", "commit", "candidate_commit", "title"):
        assert copied[key] == original[key], key
    assert copied["usage"]["prompt_tokens"] == 1000 and "squares" in copied["diff"]
    md = runner.invoke(app, ["report", run, str(clone)]).stdout
    assert md.startswith("## selfcode: 3 proven improvements")

    git(clone, "branch", f"selfcode/{run}", f"origin/selfcode/{run}")
    code, outcome, err = review(clone, run, "--reject", "3")
    assert code == 0 and outcome["on_branch"] == [1, 4], err


MISREMEMBERED = ("Precompute a table of squares once, so that every call is a lookup.\n\n"
                 "src/fastlib/__init__.py\n```python\n<<<<<<< SEARCH\n    return sum(squares)\n"
                 "=======\n    return TABLE[n]\n>>>>>>> REPLACE\n```\n")


def test_show_keeps_a_malformed_candidates_rationale_and_says_why_one_was_rejected(tmp_path):
    repo = make_target(tmp_path / "target")
    replay = write_replay(tmp_path / "r.jsonl", MISREMEMBERED, MISREMEMBERED, MISREMEMBERED,
                          REPLY_BAD_EVENS)
    run = json.loads(runner.invoke(app, [
        "improve", str(repo), "--replay", str(replay), "--sandbox", "local", "--json",
        "--iterations", "2"]).stdout)["run_id"]

    malformed = json.loads(runner.invoke(app, ["show", f"{run}/1", str(repo), "--json"]).stdout)
    assert malformed["status"] == "malformed"
    assert malformed["rationale"] == ("Precompute a table of squares once, so that every call "
                                      "is a lookup.")
    assert malformed["title"].startswith("Precompute a table of squares once")
    shown = " ".join(runner.invoke(app, ["show", f"{run}/1", str(repo)]).stdout.split())
    assert "so that every call is a lookup" in shown
    assert "malformed — no usable edit: " in shown  # the header says why, not "–"

    rejected = " ".join(runner.invoke(app, ["show", f"{run}/2", str(repo)]).stdout.split())
    assert "rejected — newly failing: tests/te" in rejected  # the rule fits 80 columns
    assert "— –" not in rejected

    md = runner.invoke(app, ["report", run, str(repo)]).stdout
    assert "| 1 | malformed | Precompute a table of squares once" in md
    # The model is shown what it tried, too: a resumed run's prompt lists it.
    from selfcode.history.db import History
    from selfcode.run.resume import restore_attempts

    with History(repo / ".git" / "selfcode" / "history.db") as history:
        first = restore_attempts(history, run)[0]
    assert first.summary.startswith("Precompute a table of squares once")


def test_runs_keeps_one_line_per_run_at_80_columns(tmp_path):
    """A long goal is cut with an ellipsis, not wrapped one word per line (the real CLI, in
    a process of its own, so that COLUMNS decides the console's width as for a user)."""
    import os
    import subprocess
    import sys

    goal = ("Make the whole library faster without changing its public interface, especially "
            "the hot loops in squares and evens which dominate every benchmark we have")
    repo = make_target(tmp_path / "target")
    result = runner.invoke(app, ["improve", str(repo), "--replay",
                                 str(write_replay(tmp_path / "r.jsonl", NO_EDIT, NO_EDIT,
                                                  NO_EDIT)),
                                 "--sandbox", "local", "--json", "--iterations", "1",
                                 "--goal", goal])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run_id"]
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    listed = subprocess.run([sys.executable, "-m", "selfcode", "runs", str(repo)], env=env,
                            capture_output=True, text=True, check=True).stdout
    lines = [line for line in listed.splitlines() if not line.startswith("history:")]
    assert all(len(line) <= 80 for line in lines), listed
    row = next(line for line in lines if line.lstrip().startswith(run))
    assert "Make the" in row and "…" in row and "0 of 1" in row and "$0" in row
    assert lines[lines.index(row) + 1].strip() == "", "the goal wrapped onto another line"
    assert goal in " ".join(runner.invoke(app, ["show", run, str(repo)]).stdout.split())


def branches(repo: Path) -> str:
    return git(repo, "branch", "--list", "selfcode/*")


def test_a_run_without_a_commit_removes_its_branch_and_keeps_its_candidates(tmp_path):
    repo = make_target(tmp_path / "target")
    result = runner.invoke(app, ["improve", str(repo), "--sandbox", "local", "--iterations",
                                 "1", "--replay",
                                 str(write_replay(tmp_path / "a.jsonl", REPLY_BAD_EVENS))])
    assert result.exit_code == 0, result.output
    run = json.loads(runner.invoke(app, ["runs", str(repo), "--json"]).stdout)[0]["run_id"]
    assert (f"No improvement; branch selfcode/{run} removed"
            in " ".join(result.stderr.split()))
    assert branches(repo) == ""
    assert git(repo, "rev-parse", f"refs/selfcode/{run}/1").strip()  # the candidate stays
    shown = runner.invoke(app, ["show", f"{run}/1", str(repo)])
    assert shown.exit_code == 0 and "rejected" in shown.stdout
    assert runner.invoke(app, ["report", run, str(repo)]).exit_code == 0
    code, _, err = review(repo, run, "--approve", "1")
    assert code == 2 and "was not accepted by the gate" in err  # the usual answer

    # Resumed, the run starts again at its base; a commit keeps the branch this time.
    second = runner.invoke(app, ["improve", str(repo), "--json", "--resume", run,
                                 "--iterations", "2", "--replay",
                                 str(write_replay(tmp_path / "b.jsonl", REPLY_SQUARES))])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert summary["accepted"] == 1 and summary["branch_removed"] is False
    assert len(git(repo, "log", "--format=%H",
                   f"{summary['base_commit']}..selfcode/{run}").split()) == 1


def test_ctrl_c_and_a_resume_without_a_commit_remove_the_branch(tmp_path, monkeypatch):
    import run_helpers

    def interrupted(self: object, diff: str) -> None:
        raise KeyboardInterrupt

    repo = make_target(tmp_path / "target")
    with monkeypatch.context() as patch:
        patch.setattr(run_helpers.FakeJudge, "judge", interrupted)
        result = runner.invoke(app, ["improve", str(repo), "--sandbox", "local", "--replay",
                                     str(write_replay(tmp_path / "a.jsonl", REPLY_SQUARES))])
    assert result.exit_code == 130, result.output
    run = json.loads(runner.invoke(app, ["runs", str(repo), "--json"]).stdout)[0]
    assert run["status"] == "interrupted" and branches(repo) == ""

    resumed = runner.invoke(app, ["improve", str(repo), "--json", "--resume", run["run_id"],
                                  "--iterations", "2", "--replay",
                                  str(write_replay(tmp_path / "b.jsonl", NO_EDIT, NO_EDIT,
                                                   NO_EDIT))])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "finished" and summary["branch_removed"] is True
    assert branches(repo) == ""
    assert "resuming run" in resumed.stderr
