"""The git archive of a run: candidate refs and notes, the branch, commit messages, hooks.

Real repositories in temp dirs; the gate is the stand-in `FakeJudge` (tests of the gate's
own phases are in test_crash.py and test_cli.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app

from run_helpers import (
    NO_EDIT,
    REPLY_BAD_EVENS,
    REPLY_EVENS,
    REPLY_SQUARES,
    git,
    improve,
    isolated_run,  # noqa: F401 (an autouse fixture: importing it is using it)
    make_target,
    snapshot,
    write_replay,
)

runner = CliRunner()


def trailers(repo: Path, rev: str) -> dict[str, list[str]]:
    message = git(repo, "log", "-1", "--format=%B", rev)
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], cwd=repo, input=message,
                            capture_output=True, text=True, check=True).stdout
    out: dict[str, list[str]] = {}
    for line in parsed.splitlines():
        key, _, value = line.partition(": ")
        out.setdefault(key, []).append(value)
    return out


def note(repo: Path, rev: str) -> dict:
    return json.loads(git(repo, "notes", "--ref=refs/notes/selfcode", "show", rev))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target")


def test_every_candidate_with_a_diff_is_kept_with_its_verdict(target: Path, tmp_path: Path):
    before = snapshot(target)
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_BAD_EVENS, REPLY_EVENS,
                          NO_EDIT, NO_EDIT, NO_EDIT)
    summary = improve(target, replay, "--iterations", "4")
    run, base = summary["run_id"], summary["base_commit"]
    assert (summary["candidates"], summary["accepted"]) == (4, 2)

    refs = git(target, "for-each-ref", "--format=%(refname)", f"refs/selfcode/{run}/")
    assert refs.split() == [f"refs/selfcode/{run}/{n}" for n in (1, 2, 3)]  # 4 had no diff
    ref = {n: git(target, "rev-parse", f"refs/selfcode/{run}/{n}").strip() for n in (1, 2, 3)}
    parent = {n: git(target, "rev-parse", f"{ref[n]}^").strip() for n in ref}
    # Each parent is the state the candidate was built on.
    assert parent == {1: base, 2: ref[1], 3: ref[1]}
    # The branch is the accepted candidates, in order; the rejected one is off to the side.
    assert git(target, "rev-list", "--reverse", f"{base}..selfcode/{run}").split() == [
        ref[1], ref[3]]
    graph = git(target, "log", "--graph", "--oneline", "--format=%s",
                f"--glob=refs/selfcode/{run}/*")
    assert "|/" in graph and "[rejected] Count evens as n // 2" in graph
    assert graph.rstrip().endswith("fastlib: slow but correct")

    accepted, rejected = note(target, ref[1]), note(target, ref[2])
    assert accepted["status"] == "accepted" and accepted["verdict"]["accepted"] is True
    assert accepted["model"] == "replay" and accepted["tokens"] == {"prompt": 1000,
                                                                    "completion": 100}
    assert accepted["cost_usd"] == 0.0 and accepted["run"] == run and accepted["candidate"] == 1
    assert rejected["status"] == "rejected"
    assert rejected["verdict"]["reasons"] == ["newly failing: tests/test_fastlib.py::test_evens"]

    assert snapshot(target) == before
    assert git(target, "worktree", "list").count("\n") == 1
    fsck = git(target, "fsck", "--no-dangling")
    assert "error" not in fsck and "missing" not in fsck


def test_accepted_commit_message_tells_what_why_and_how_much(target: Path, tmp_path: Path):
    summary = improve(target, write_replay(tmp_path / "r.jsonl", REPLY_SQUARES),
                      "--iterations", "1")
    branch = summary["branch"]
    subject, body = git(target, "log", "-1", "--format=%s%x00%b", branch).split("\0")
    assert subject == ("squares() adds i*i one at a time; the closed form n(n-1)(2n-1)/6 "
                       "gives…")
    assert len(subject) <= 72
    assert "Measured by selfcode in sandbox fake, goal speed:" in body
    assert "work: 199 ms -> 110 ms median cpu_time, 1.82x faster, p=0.0039, 8 paired runs" in body
    assert "tests: 2 passed, 0 failed, 0 skipped (baseline 2/0/0); none lost" in body
    t = trailers(target, branch)
    assert t["Selfcode-Run"] == [summary["run_id"]] and t["Selfcode-Candidate"] == ["1"]
    assert t["Selfcode-Speedup"] == ["1.82x"] and t["Selfcode-Model"] == ["replay"]
    assert t["Selfcode-Tests"] == ["2 passed, 0 failed, 0 skipped"]
    assert "Co-authored-by" not in t  # selfcode is the author: no need to credit it twice
    assert git(target, "log", "-1", "--format=%an <%ae>", branch).strip() == (
        "selfcode <selfcode@localhost>")


def test_authorship_is_configurable_with_co_author_attribution(
        target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SELFCODE_GIT_AUTHOR", "Nightly Bot <bot@example.com>")
    monkeypatch.setenv("SELFCODE_GIT_CO_AUTHORS", "Ada Reviewer <ada@example.com>")
    summary = improve(target, write_replay(tmp_path / "r.jsonl", REPLY_SQUARES),
                      "--iterations", "1")
    branch = summary["branch"]
    assert git(target, "log", "-1", "--format=%an <%ae>|%cn", branch).strip() == (
        "Nightly Bot <bot@example.com>|Nightly Bot")
    assert trailers(target, branch)["Co-authored-by"] == [
        "selfcode <selfcode@localhost>", "Ada Reviewer <ada@example.com>"]


HOOK = "#!/bin/sh\necho \"$0 ran\" >> \"{log}\"\nexit 1\n"


def install_failing_hooks(repo: Path, log: Path) -> None:
    """Hooks that would fail every commit and ref update, in .git/hooks and core.hooksPath."""
    for hooks in (repo / ".git" / "hooks", repo / ".githooks-elsewhere"):
        hooks.mkdir(exist_ok=True)
        for name in ("pre-commit", "commit-msg", "post-commit", "reference-transaction",
                     "post-checkout", "prepare-commit-msg", "post-rewrite"):
            hook = hooks / name
            hook.write_text(HOOK.format(log=log))
            hook.chmod(0o755)
    git(repo, "config", "core.hooksPath", str(repo / ".githooks-elsewhere"))


def test_a_failing_pre_commit_hook_of_the_target_never_runs(target: Path, tmp_path: Path):
    log = tmp_path / "hooks.log"
    install_failing_hooks(target, log)
    replay = write_replay(tmp_path / "r.jsonl", REPLY_SQUARES, REPLY_BAD_EVENS)
    summary = improve(target, replay, "--iterations", "2")
    assert summary["accepted"] == 1
    run = summary["run_id"]
    assert git(target, "rev-parse", f"refs/selfcode/{run}/2")  # refs too, not only commits
    assert note(target, f"refs/selfcode/{run}/2")["status"] == "rejected"
    result = runner.invoke(app, ["review", run, str(target), "--approve", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert not log.exists(), log.read_text()


def test_hooks_run_only_when_the_user_opts_in(
        target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "hooks.log"
    hook = target / ".git" / "hooks" / "pre-commit"
    hook.write_text(HOOK.format(log=log))
    hook.chmod(0o755)
    monkeypatch.setenv("SELFCODE_GIT_HOOKS", "1")
    result = runner.invoke(app, ["improve", str(target), "--replay",
                                 str(write_replay(tmp_path / "r.jsonl", REPLY_SQUARES)),
                                 "--sandbox", "local", "--iterations", "1"])
    assert result.exit_code == 2
    assert "Could not commit the patch" in result.stderr and "Traceback" not in result.output
    assert "pre-commit ran" in log.read_text()
