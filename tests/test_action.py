"""action.yml: its shell steps run as GitHub would run them, against a local 'origin'.

The `uses:` steps (setup-python, upload-artifact) and the pip install are GitHub's business;
the steps that are ours (improve, push, open the pull request) are read from the file and
run as GitHub runs them (`bash --noprofile --norc -eo pipefail`, the script in a file), with
the inputs in the environment as the step's `env:` passes them, the real selfcode (local
sandbox, replayed model reply) and a stand-in `gh` that records its arguments
(tests/actions_runner.py; tests/test_nightly.py runs a whole workflow around the action).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from selfcode.run.workflows import prepare_demo_repo

from actions_runner import SHELLS, FakeGh, load, runner_env
from run_helpers import git

ACTION = Path(__file__).parents[1] / "action.yml"
DEMO_REPLIES = Path(__file__).parents[1] / "examples" / "demo-replies.jsonl"
GOOD = json.loads(DEMO_REPLIES.read_text().splitlines()[3])["reply"]


def steps() -> dict[str, dict[str, object]]:
    """name -> {"env": {...}, "run": script} for each named step of the action."""
    return {str(step["name"]): {"env": step.get("env") or {}, **step}
            for step in load(ACTION)["runs"]["steps"] if "name" in step}


def test_action_declares_what_a_workflow_needs():
    text = ACTION.read_text()
    assert "using: composite" in text
    for name in ("api-key", "base-url", "model", "iterations", "budget-usd", "sandbox",
                 "github-token"):
        assert re.search(rf"^  {name}:", text, re.M), name
    names = steps()
    assert {"Install selfcode", "Improve", "Push the branch, candidate refs and notes",
            "Open the pull request"} <= set(names)
    for step in names.values():  # inputs reach scripts through env:, never by ${{ }} splicing
        assert "${{" not in str(step.get("run", ""))
    for name, step in names.items():
        if "run" in step:
            check = subprocess.run(["bash", "-n"], input=str(step["run"]), text=True,
                                   capture_output=True)
            assert check.returncode == 0, (name, check.stderr)


def run_step(step: dict[str, object], env: dict[str, str], inputs: dict[str, str],
             cwd: Path) -> subprocess.CompletedProcess[str]:
    step_env = dict(env)
    for key, value in step["env"].items():  # type: ignore[union-attr]
        expr = re.fullmatch(r"\$\{\{ (.*) \}\}", str(value))
        step_env[key] = inputs.get(expr.group(1), "") if expr else str(value)
    script = Path(env["RUNNER_TEMP"]) / "step.sh"
    script.write_text(str(step["run"]))
    return subprocess.run([*SHELLS[str(step["shell"])], str(script)], cwd=cwd, env=step_env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def github(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """An 'origin' with the demo repository and an earlier run's note, and a checkout of it."""
    work, _ = prepare_demo_repo(tmp_path / "work")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    git(work, "notes", "--ref=refs/notes/selfcode", "add", "-m", '{"earlier": true}', "HEAD")
    git(work, "push", "-q", "origin", "refs/notes/selfcode")
    git(work, "update-ref", "-d", "refs/notes/selfcode")  # a fresh checkout has no notes
    gh = FakeGh.install(tmp_path / "gh")
    replay = tmp_path / "replay.jsonl"
    replay.write_text(json.dumps({"reply": GOOD}) + "\n")
    (tmp_path / "runner").mkdir()
    env = runner_env(tmp_path / "runner", [gh.bin_dir, Path(sys.executable).parent])
    env.update(GITHUB_OUTPUT=str(tmp_path / "output"), SELFCODE_REPLAY=str(replay),
               GITHUB_STEP_SUMMARY=str(tmp_path / "step-summary"), FAKE_GH_LOG=str(gh.log))
    return work, origin, env


def outputs(env: dict[str, str]) -> dict[str, str]:
    text = Path(env["GITHUB_OUTPUT"]).read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_action_runs_selfcode_pushes_everything_and_opens_a_pull_request(github):
    work, origin, env = github
    inputs = {"inputs.api-key": "sk-secret-from-the-user", "inputs.api-key-env":
              "OPENAI_API_KEY", "inputs.iterations": "1", "inputs.sandbox": "local",
              "inputs.path": ".", "inputs.model": "replay", "inputs.github-token": "t",
              "inputs.draft": "true", "inputs.labels": "performance",
              "github.head_ref || github.ref_name": "main"}
    all_steps = steps()
    improve = run_step(all_steps["Improve"], env, inputs, work)
    assert improve.returncode == 0, improve.stdout + improve.stderr
    out = outputs(env)
    assert out["exit-code"] == "0" and out["improvements"] == "1"
    run = out["run-id"]
    assert out["title"].startswith("selfcode: Replace trial division")
    report_dir = Path(out["out"])
    assert (report_dir / "report.md").read_text().startswith("## selfcode: 1 proven")
    assert (report_dir / "report.html").read_text().count("<svg") >= 1
    assert "sk-secret-from-the-user" not in improve.stdout + improve.stderr

    for name in ("Push the branch, candidate refs and notes", "Open the pull request"):
        inputs.update({"steps.improve.outputs.run-id": run,
                       "steps.improve.outputs.title": out["title"],
                       "steps.improve.outputs.out": out["out"]})
        result = run_step(all_steps[name], env, inputs, work)
        assert result.returncode == 0, (name, result.stdout + result.stderr)

    remote = git(origin, "for-each-ref", "--format=%(refname)")
    assert f"refs/heads/selfcode/{run}" in remote and f"refs/selfcode/{run}/1" in remote
    base = git(work, "rev-parse", "main").strip()
    assert git(origin, "notes", "--ref=refs/notes/selfcode", "show", base).strip() == (
        '{"earlier": true}')  # the earlier run's note survived the merge
    assert '"status": "accepted"' in git(origin, "notes", "--ref=refs/notes/selfcode", "show",
                                         f"selfcode/{run}")
    listed, created = FakeGh.read_calls(Path(env["FAKE_GH_LOG"]))
    assert listed["args"][:4] == ["pr", "list", "--head", f"selfcode/{run}"]
    args = created["args"]
    assert args[:2] == ["pr", "create"] and "--draft" in args
    assert args[args.index("--head") + 1] == f"selfcode/{run}"
    assert args[args.index("--base") + 1] == "main"
    assert args[args.index("--body-file") + 1] == str(report_dir / "report.md")
    assert args[args.index("--label") + 1] == "performance"
    assert outputs(env)["url"] == "https://github.example/o/r/pull/7"


def test_the_action_stops_quietly_when_nothing_was_found(github):
    work, _, env = github
    Path(env["SELFCODE_REPLAY"]).write_text("\n".join(
        json.dumps({"reply": "no idea"}) for _ in range(3)) + "\n")
    inputs = {"inputs.api-key": "k", "inputs.api-key-env": "OPENAI_API_KEY",
              "inputs.iterations": "1", "inputs.sandbox": "local", "inputs.path": "."}
    result = run_step(steps()["Improve"], env, inputs, work)
    assert result.returncode == 0, result.stderr
    assert outputs(env)["exit-code"] == "3"
    assert "no proven improvement" in result.stdout
