""".github/workflows/selfcode-nightly.yml: its steps run in order, as GitHub would run them.

`actions_runner` reads the workflow and `action.yml` as YAML and runs every `run:` step with
GitHub's own shell command line, the composite action's steps included, in a fresh clone of a
local bare 'origin' (the stand-in for `actions/checkout`). The `gh` on PATH records its
arguments (`gh` would reach GitHub); the model endpoint is tests/openai_server.py replaying a
scripted reply; `selfcode` is this venv's. The push, the notes merge and the decision to open
or update a pull request are the action's real scripts.

Two choices keep this fast, and they are the only differences from a real night:
- `--self` improves a small checkout that *is* selfcode to `--self` (pyproject name, src/selfcode,
  a git top) holding the demo library, its tests and benchmarks, plus this repository's
  action.yml, workflow and scripts/provision-docker.sh: `selfcode improve --self` on selfcode
  itself runs selfcode's whole suite in the sandbox for every candidate (the seam test_action.py
  uses, the demo repository, behind the same SELFCODE_SOURCE resolution a real night uses).
- The step "Install selfcode from this checkout" (`pip install .`) is not run: it would install
  that small checkout over this venv. The step after it, which checks that the judge is an
  installed copy and not the checkout, does run (and is shown to refuse an editable install).
The sandbox is Docker, as in the workflow, on the offline base image instead of
python:3.12-slim (no Docker Hub here): the job's SELFCODE_BASE_IMAGE is the one override.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfcode.run.workflows import prepare_demo_repo

from actions_runner import FakeGh, Job, interpolate, load, runner_env, should_run
from openai_server import OpenAIServer
from run_helpers import git

pytest_plugins = ["docker_util"]

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "selfcode-nightly.yml"
ACTION = ROOT / "action.yml"
DEMO_REPLIES = [json.loads(line)["reply"]
                for line in (ROOT / "examples" / "demo-replies.jsonl").read_text().splitlines()]
GOOD, EDITS_THE_TESTS = DEMO_REPLIES[3], DEMO_REPLIES[2]
INSTALL = "Install selfcode from this checkout"
SNAPSHOT_CHECK = "The judge is the installed snapshot, not the checkout"
OPEN_PR = "Open the pull request"
PR_URL = "https://github.example/o/r/pull/7"


# -- the workflow's structure -----------------------------------------------------------------

def _strings(node: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        return [hit for key, value in node.items() for hit in _strings(value, (*path, str(key)))]
    if isinstance(node, list):
        return [hit for i, value in enumerate(node) for hit in _strings(value, (*path, str(i)))]
    return [(path, node)] if isinstance(node, str) else []


def _run_steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    steps = ([s for job in document.get("jobs", {}).values() for s in job["steps"]]
             or document.get("runs", {}).get("steps", []))
    return [s for s in steps if "run" in s]


def test_the_workflow_is_scheduled_minimal_and_keeps_secrets_out_of_scripts():
    workflow = load(WORKFLOW)
    on = workflow["on"]
    assert "workflow_dispatch" in on
    (cron,) = [entry["cron"] for entry in on["schedule"]]
    assert len(cron.split()) == 5
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert workflow["concurrency"]["group"] and workflow["concurrency"]["cancel-in-progress"] is False
    (job,) = workflow["jobs"].values()
    assert "permissions" not in job and job["timeout-minutes"] > 0
    assert job["env"]["SELFCODE_BASE_IMAGE"] == "python:3.12-slim"
    steps = job["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    checkout = steps[uses.index("actions/checkout")]
    assert checkout["with"]["fetch-depth"] == 0
    assert uses.index("actions/checkout") < uses.index("actions/setup-python") < uses.index("./")
    names = [s.get("name") for s in steps]
    install = steps[names.index(INSTALL)]["run"]
    assert re.search(r"pip install (--quiet )?\.$", install, re.M)
    assert not re.search(r"pip install .*(\s-e\b|--editable)", install)
    assert names.index(INSTALL) < names.index(SNAPSHOT_CHECK) < uses.index("./")
    selfcode = steps[uses.index("./")]["with"]
    assert selfcode["self"] == "true" and selfcode["sandbox"] == "docker"
    assert selfcode["api-key"] == "${{ secrets.SELFCODE_API_KEY }}"
    assert "Keep the report" in [s.get("name") for s in load(ACTION)["runs"]["steps"]]

    for document in (workflow, load(ACTION)):
        for step in _run_steps(document):  # values reach scripts through env:, never spliced
            assert "${{" not in step["run"], step.get("name")
            check = subprocess.run(["bash", "-n"], input=step["run"], text=True,
                                   capture_output=True)
            assert check.returncode == 0, (step.get("name"), check.stderr)
    secret_uses = [path for path, text in _strings(workflow) if "secrets." in text]
    assert secret_uses  # the key is used, and only in a step's env: or a uses-step's with:
    for path in secret_uses:
        assert path[:3] == ("jobs", path[1], "steps") and path[4] in ("env", "with"), path
        step = workflow["jobs"][path[1]]["steps"][int(path[3])]
        assert path[4] == "env" or "uses" in step, path


# -- running it -------------------------------------------------------------------------------

def fake_selfcode_checkout(path: Path) -> Path:
    """The demo library, dressed as a checkout of selfcode, with this repo's CI files."""
    work, _ = prepare_demo_repo(path)
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('name = "primes-demo"', 'name = "selfcode"'))
    (work / "src" / "selfcode").mkdir()
    (work / "src" / "selfcode" / "__init__.py").write_text('"""Not really selfcode."""\n')
    for relative in ("action.yml", ".github/workflows/selfcode-nightly.yml",
                     "scripts/provision-docker.sh"):
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, work / relative)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "selfcode, as far as --self can tell")
    return work


class Night:
    """One night's job: the origin, the stand-in runner, the fake gh, the endpoint."""

    def __init__(self, tmp: Path, server: OpenAIServer) -> None:
        self.tmp = tmp
        self.key = f"sk-nightly-{secrets.token_hex(12)}"
        self.token = f"ghs_{secrets.token_hex(12)}"
        upstream = fake_selfcode_checkout(tmp / "upstream")
        self.origin = tmp / "origin.git"
        git(tmp, "init", "-q", "--bare", str(self.origin))
        git(upstream, "push", "-q", str(self.origin), "main")
        git(upstream, "notes", "--ref=refs/notes/selfcode", "add", "-m", '{"earlier": true}',
            "HEAD")
        git(upstream, "push", "-q", str(self.origin), "refs/notes/selfcode")
        self.main = git(self.origin, "rev-parse", "main").strip()
        self.workspace = tmp / "workspace"
        self.workspace.mkdir()
        self.temp = tmp / "runner-temp"
        self.temp.mkdir()
        self.gh = FakeGh.install(tmp / "gh")
        self.artifacts: list[dict[str, str]] = []
        self.server = server

    def _checkout(self, given: dict[str, str], job: Job) -> None:
        assert given.get("fetch-depth") == "0", "the run needs main's full history"
        git(self.workspace, "clone", "-q", str(self.origin), ".")

    def _upload(self, given: dict[str, str], job: Job) -> None:
        self.artifacts.append(given)

    def job(self, secrets_: dict[str, str] | None = None,
            ref: str = "refs/heads/main") -> Job:
        contexts: dict[str, Any] = {
            "github": {"token": self.token, "workspace": str(self.workspace), "ref": ref,
                       "ref_name": ref.rsplit("/", 1)[-1], "head_ref": "", "run_id": "4242",
                       "event_name": "schedule",
                       "event": {"repository": {"default_branch": "main"}}},
            "secrets": {"SELFCODE_API_KEY": self.key} if secrets_ is None else secrets_,
            "vars": {"SELFCODE_BASE_URL": self.server.base_url, "SELFCODE_MODEL": "gpt-4o-mini",
                     "SELFCODE_ITERATIONS": "1"},
        }
        env = runner_env(self.temp, [self.gh.bin_dir, Path(sys.executable).parent])
        env.update(GITHUB_STEP_SUMMARY=str(self.tmp / "step-summary.md"))
        return Job(self.workspace, self.temp, env, contexts, skip={INSTALL}, uses={
            "actions/checkout": self._checkout,
            "actions/setup-python": lambda given, job: None,
            "actions/upload-artifact": self._upload,
        })

    def run(self, base_image: str = "", **kwargs: Any) -> Job:
        """The whole job; `base_image` replaces python:3.12-slim (offline here) when given."""
        job = self.job(**kwargs)
        job.run(load(WORKFLOW), "improve", {"SELFCODE_BASE_IMAGE": base_image} if base_image
                else None)
        return job

    def origin_refs(self) -> set[str]:
        return set(git(self.origin, "for-each-ref", "--format=%(refname)").split())

    def secrets_left_anywhere(self, job: Job) -> list[str]:
        """Where the API key or the GitHub token shows: step output, any file, any git object."""
        found = []
        for value in (self.key, self.token):
            if value in job.transcript():
                found.append("step output")
            for path in self.tmp.rglob("*"):
                if path.is_file() and not path.is_symlink() and value.encode() in path.read_bytes():
                    found.append(str(path))
            for repo in (self.workspace, self.origin):
                if (repo / "HEAD").exists() or (repo / ".git").exists():
                    history = git(repo, "log", "--all", "-p", "--format=%H%n%B")
                    if value in history:
                        found.append(f"git history of {repo}")
        return found


@pytest.fixture
def night(tmp_path: Path) -> Any:
    with OpenAIServer() as server:
        yield Night(tmp_path, server)


@pytest.mark.docker
def test_a_night_with_a_proven_improvement_pushes_it_and_opens_one_pull_request(night,
                                                                               base_image):
    night.server.script(GOOD)
    job = night.run(base_image)
    transcript = job.transcript()
    assert not job.failed, transcript
    skipped = {r.name for r in job.runs if r.outcome == "skipped"}
    assert skipped == {INSTALL, "Install selfcode"}, transcript  # the action's own install too
    assert "judges " + str(night.workspace.resolve()) in job.step(SNAPSHOT_CHECK).stdout

    outputs = job.contexts["steps"]["selfcode"]["outputs"]
    assert outputs["exit-code"] == "0" and outputs["improvements"] == "1", transcript
    assert outputs["pull-request"] == PR_URL
    run = outputs["run-id"]
    assert f"refs/heads/selfcode/{run}" in night.origin_refs()
    assert f"refs/selfcode/{run}/1" in night.origin_refs()
    branch = f"selfcode/{run}"
    assert git(night.origin, "rev-parse", f"{branch}~1").strip() == night.main
    assert "sieve" in git(night.origin, "show", f"{branch}:src/primes/__init__.py").lower()
    assert git(night.origin, "notes", "--ref=refs/notes/selfcode", "show",
               night.main).strip() == '{"earlier": true}'  # the earlier night's note survived
    # --self judged the checkout, and left it as it was
    assert git(night.workspace, "status", "--porcelain") == ""
    assert git(night.workspace, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"

    report = night.temp / "selfcode" / "report.md"
    body = report.read_text()
    assert body.startswith("## selfcode: 1 proven")
    listed, created = night.gh.calls()
    assert listed["args"][:2] == ["pr", "list"] and branch in listed["args"]
    args = created["args"]
    assert args[:2] == ["pr", "create"]
    assert args[args.index("--head") + 1] == branch and args[args.index("--base") + 1] == "main"
    assert args[args.index("--title") + 1].startswith("selfcode: Replace trial division")
    assert created["body"] == body
    assert created["token_sha256"] == hashlib.sha256(night.token.encode()).hexdigest()
    assert [a["name"] for a in night.artifacts] == [f"selfcode-{run}"]
    assert {"report.md", "summary.json", "report.html"} <= {
        p.name for p in Path(night.artifacts[0]["path"]).iterdir()}

    posts = [c for c in night.server.calls if c.method == "POST"]
    assert posts and night.server.remaining == 0
    assert {c.headers["authorization"] for c in posts} == {f"Bearer {night.key}"}

    # Re-running the step finds the pull request it opened and updates it, never a second one.
    night.gh.existing.write_text(PR_URL + "\n")
    rerun, again = job.rerun(OPEN_PR)
    assert rerun.returncode == 0, rerun.stderr
    edited = night.gh.calls()[-1]
    assert edited["args"][:3] == ["pr", "edit", PR_URL] and edited["body"] == body
    assert [c["args"][1] for c in night.gh.calls()].count("create") == 1
    assert again["url"] == PR_URL

    assert night.secrets_left_anywhere(job) == []


@pytest.mark.docker
def test_a_night_without_an_accepted_candidate_opens_nothing_and_succeeds(night, base_image):
    night.server.script(EDITS_THE_TESTS)
    refs_before = night.origin_refs()
    job = night.run(base_image)
    transcript = job.transcript()
    assert not job.failed, transcript
    outputs = job.contexts["steps"]["selfcode"]["outputs"]
    assert outputs["exit-code"] == "3" and outputs["improvements"] == "0", transcript
    assert outputs["pull-request"] == ""
    assert "no proven improvement" in job.step("Improve").stdout
    for name in ("Push the branch, candidate refs and notes", OPEN_PR):
        assert job.step(name).outcome == "skipped"
    assert night.gh.calls() == []
    assert night.origin_refs() == refs_before
    assert len(night.artifacts) == 1  # the report of a quiet night is kept too
    assert night.server.remaining == 0
    assert night.secrets_left_anywhere(job) == []


# -- the guards before the run (no endpoint, no sandbox needed) -------------------------------

@pytest.mark.parametrize(("secrets_", "ref", "failing_step", "message"), [
    ({}, "refs/heads/main", "Check the endpoint's key", "The secret SELFCODE_API_KEY is not set"),
    (None, "refs/heads/feature", "Judge only from the default branch",
     "must be the reviewed main, not refs/heads/feature"),
])
def test_a_night_that_cannot_run_stops_before_anything_runs(night, secrets_, ref, failing_step,
                                                            message):
    job = night.run(secrets_=secrets_, ref=ref)
    assert job.failed
    failed = [r for r in job.runs if r.outcome == "failure"]
    assert [r.name for r in failed] == [failing_step] and message in failed[0].stdout
    assert all(r.outcome == "skipped" for r in job.runs[job.runs.index(failed[0]) + 1:])
    assert night.gh.calls() == [] and night.server.calls == []
    assert not (night.workspace / ".git").exists()
    assert night.secrets_left_anywhere(job) == []
    (night.temp / "leak").write_text(f"token={night.token}")  # the search can find one
    assert night.secrets_left_anywhere(job) == [str(night.temp / "leak")]


def test_the_snapshot_check_refuses_a_selfcode_imported_from_the_checkout(night):
    (step,) = [s for s in load(WORKFLOW)["jobs"]["improve"]["steps"]
               if s.get("name") == SNAPSHOT_CHECK]
    one_step = {"defaults": {"run": {"shell": "bash"}}, "jobs": {"j": {"steps": [step]}}}
    for workspace, refused in ((ROOT, True), (night.workspace, False)):
        job = night.job()
        job.workspace = workspace  # this venv's selfcode is an editable install of ROOT
        job.run(one_step, "j")
        assert job.failed is refused, job.transcript()
        if refused:
            assert "is imported from the checkout" in job.runs[0].stdout


# -- the stand-in runner's reading of `if:` and `${{ }}` (what decides which steps run) -------

CONTEXTS = {"steps": {"improve": {"outputs": {"exit-code": "3", "out": ""}}},
            "inputs": {"install": "false", "self": "true"}, "vars": {}}


@pytest.mark.parametrize(("condition", "failed", "runs"), [
    (None, False, True),
    (None, True, False),
    ("steps.improve.outputs.exit-code == '0'", False, False),
    ("steps.improve.outputs.exit-code != '0'", False, True),
    ("always() && steps.improve.outputs.out != ''", True, False),
    ("always()", True, True),
    ("${{ inputs.self == 'TRUE' }}", False, True),  # GitHub compares strings ignoring case
    ("inputs.install != 'false'", False, False),
    ("inputs.self == 'true'", True, False),  # no status function: success() && ...
    ("failure() && !(inputs.install == 'true')", True, True),
])
def test_if_conditions_are_read_as_github_reads_them(condition, failed, runs):
    assert should_run(condition, CONTEXTS, failed) is runs


@pytest.mark.parametrize(("text", "expected"), [
    ("${{ vars.SELFCODE_ITERATIONS || '5' }}", "5"),
    ("selfcode-${{ steps.improve.outputs.out || 'run' }}-x", "selfcode-run-x"),
    ("${{ steps.improve.outputs.exit-code }}", "3"),
    ("${{ steps.nothing.outputs.url }}", ""),
    ("${{ 'it''s' }}", "it's"),
    ("plain", "plain"),
])
def test_expressions_are_interpolated_as_github_does(text, expected):
    assert interpolate(text, CONTEXTS) == expected
