"""Crash safety: `selfcode improve` killed with SIGINT or SIGKILL in each phase of a candidate.

Each test runs the real command line as a subprocess on a copy of the example repository,
with the local sandbox and the real gate, and kills its whole process group (as a Ctrl-C, a
cancelled CI job or the OOM killer would) while it is *inside* the phase: the model request
is held by the local OpenAI server, `git apply` (in the sandbox) and `git commit` (on the
host) are held by a `git` wrapper first on PATH, and the test run is slowed by a slow test.
Phases are detected from the history's events and the wrapper's marker, not by sleeping.

Then: the user's checkout is untouched, `git fsck` is clean, the next start clears the lock
and the worktree, and `--resume` continues the run with the next candidate number.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from selfcode.run.workflows import prepare_demo_repo

from openai_server import Fault, OpenAIServer
from repos import events
from run_helpers import NO_EDIT, git, snapshot, write_replay

# The installed console script: beside the interpreter in a venv, on PATH where the package was
# installed elsewhere (selfcode's own sandbox installs it into a directory of its own).
SELFCODE = shutil.which("selfcode") or str(Path(sys.executable).with_name("selfcode"))
DEMO_REPLIES = Path(__file__).parents[1] / "examples" / "demo-replies.jsonl"
GOOD = json.loads(DEMO_REPLIES.read_text().splitlines()[3])["reply"]  # the sieve, accepted
FAST_GATE = "\n[tool.selfcode.gate]\nflaky_runs = 1\n"
SLOW_TEST = "import time\n\n\ndef test_takes_its_time():\n    time.sleep(2)\n"
PHASES = ("asking", "applying", "testing", "committing")

WRAPPER = """#!/bin/sh
sub=""
skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$a" in
    -c|-C) skip=1 ;;
    -*) ;;
    *) sub="$a"; break ;;
  esac
done
# The gate's host-side reading of a patch (`git apply --numstat`) changes nothing: hold only
# the command that does the work of the phase.
case " $* " in *" --numstat "*) sub="" ;; esac
if [ "$sub" = "{command}" ] && mkdir "{mark}" 2>/dev/null; then
  sleep 60
fi
exec {git} "$@"
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    for var in ("SELFCODE_HOME", "SELFCODE_GIT_HOOKS", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)


def make_demo(root: Path, slow_test: bool = False) -> Path:
    repo, _ = prepare_demo_repo(root)
    with (repo / "pyproject.toml").open("a") as fh:
        fh.write(FAST_GATE)
    if slow_test:
        (repo / "tests" / "test_slow.py").write_text(SLOW_TEST)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "faster gate settings for the tests")
    return repo


def hold_git(bin_dir: Path, command: str) -> Path:
    """A `git` first on PATH that holds the first `git <command>` for a minute."""
    bin_dir.mkdir()
    mark = bin_dir / f"holding-{command}"
    wrapper = bin_dir / "git"
    wrapper.write_text(WRAPPER.format(command=command, mark=mark, git=shutil.which("git")))
    wrapper.chmod(0o755)
    return mark


def in_phase(repo: Path, n: int, text: str) -> bool:
    return any(k == "phase" and c == n and m.startswith(text) for k, c, m in events(repo))


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes],
             log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"selfcode exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def start(repo: Path, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen([SELFCODE, "improve", str(repo), "--sandbox", "local", *args],
                                stdout=subprocess.DEVNULL, stderr=fh, env=env,
                                start_new_session=True)


def run_id_of(repo: Path) -> str:
    starts = [m for k, _, m in events(repo) if k == "start"]
    return starts[-1].split()[1]


def state(repo: Path) -> Path:
    return repo / ".git" / "selfcode"


def assert_repository_sound(repo: Path, before: tuple[str, ...]) -> None:
    assert snapshot(repo) == before, "the user's checkout changed"
    fsck = subprocess.run(["git", "fsck", "--no-dangling"], cwd=repo, capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def candidates(repo: Path, run: str) -> list[tuple[int, str]]:
    with sqlite3.connect(state(repo) / "history.db") as con:
        return list(con.execute("SELECT n, status FROM candidates WHERE run_id = ? ORDER BY n",
                                (run,)))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("phase", PHASES)
def test_killed_in_a_phase_then_resumed(phase: str, sig: signal.Signals, tmp_path: Path,
                                        openai_server: OpenAIServer):
    repo = make_demo(tmp_path / "demo", slow_test=phase == "testing")
    before = snapshot(repo)
    env = dict(os.environ)
    args = ["--iterations", "2"]
    mark: Path | None = None
    if phase == "asking":
        openai_server.script(Fault.stall(15, reply=GOOD))
        args += ["--base-url", openai_server.base_url, "--model", "gpt-4o-mini"]
    else:
        args += ["--replay", str(write_replay(tmp_path / "r1.jsonl", GOOD))]
    if phase in ("applying", "committing"):
        command = "apply" if phase == "applying" else "commit"
        mark = hold_git(tmp_path / "bin", command)
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    log = tmp_path / "crash.log"
    proc = start(repo, args, log, env)

    phase_event = {"asking": "asking the model", "applying": "applying",
                   "testing": "testing", "committing": "committing"}[phase]
    wait_for(f"phase {phase}", lambda: in_phase(repo, 1, phase_event) and (
        mark.exists() if mark else True) and (
        len(openai_server.calls) >= 1 if phase == "asking" else True), proc, log)
    if phase == "testing":
        time.sleep(0.3)  # well inside the 2 s the slow test takes
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=60)
    run = run_id_of(repo)

    assert_repository_sound(repo, before)
    if sig == signal.SIGINT:
        assert code == 130, log.read_text()
        assert "Interrupted." in log.read_text() and "Traceback" not in log.read_text()
        assert not (state(repo) / "lock").exists()
        assert not (state(repo) / "worktrees" / run).exists()
        assert candidates(repo, run) == [(1, "abandoned")]
        # Nothing was committed, so the run's branch went with it (a resume makes it again).
        assert git(repo, "branch", "--list", f"selfcode/{run}") == ""
    else:
        assert code == -signal.SIGKILL
        assert (state(repo) / "lock").exists()  # left behind: the next start must clear it

    # The next start: clears what the crash left, and continues the run.
    resumed = subprocess.run(
        [SELFCODE, "improve", str(repo), "--resume", run, "--replay",
         str(write_replay(tmp_path / "r2.jsonl", NO_EDIT, NO_EDIT, NO_EDIT)), "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    if sig == signal.SIGKILL:
        assert "Cleared a stale lock left by process" in resumed.stderr
        assert f"Removed the worktree left by interrupted run {run}" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["run_id"] == run and summary["status"] == "finished"
    committed_now = phase == "committing" and sig == signal.SIGKILL
    assert candidates(repo, run) == [(1, "accepted" if committed_now else "abandoned"),
                                     (2, "malformed")]
    assert summary["branch_removed"] is not committed_now  # no commit, no branch left
    if committed_now:
        branch = git(repo, "log", "--format=%H",
                     f"{summary['base_commit']}..{summary['branch']}")
        assert len(branch.split()) == 1
        assert "had passed the gate; committed it now" in resumed.stderr
        assert git(repo, "rev-parse", f"refs/selfcode/{run}/1").strip() == branch.strip()
        assert "accepted" in git(repo, "notes", "--ref=refs/notes/selfcode", "show",
                                 f"refs/selfcode/{run}/1")
    assert not (state(repo) / "lock").exists()
    assert not any((state(repo) / "worktrees").iterdir())
    assert not (state(repo) / "tmp").exists() or not any((state(repo) / "tmp").iterdir())
    assert git(repo, "worktree", "list").count("\n") == 1
    assert_repository_sound(repo, before)


def test_a_new_run_after_a_kill_settles_the_dead_one(tmp_path: Path):
    repo = make_demo(tmp_path / "demo", slow_test=True)
    before = snapshot(repo)
    log = tmp_path / "crash.log"
    proc = start(repo, ["--iterations", "1", "--replay",
                        str(write_replay(tmp_path / "r1.jsonl", GOOD))], log, dict(os.environ))
    wait_for("testing", lambda: in_phase(repo, 1, "testing"), proc, log)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    dead = run_id_of(repo)
    fresh = subprocess.run(
        [SELFCODE, "improve", str(repo), "--sandbox", "local", "--iterations", "1", "--json",
         "--replay", str(write_replay(tmp_path / "r2.jsonl", NO_EDIT, NO_EDIT, NO_EDIT))],
        capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    err = " ".join(fresh.stderr.split())
    assert "Cleared a stale lock" in err and f"interrupted run {dead}" in err
    assert f"Run {dead} had died; it is now marked interrupted" in err
    with sqlite3.connect(state(repo) / "history.db") as con:
        (status,), = con.execute("SELECT status FROM runs WHERE id = ?", (dead,))
    assert status == "interrupted" and candidates(repo, dead) == [(1, "abandoned")]
    assert_repository_sound(repo, before)


def test_two_concurrent_runs_the_second_is_refused(tmp_path: Path, openai_server: OpenAIServer):
    repo = make_demo(tmp_path / "demo")
    openai_server.script(Fault.stall(15, reply=GOOD))
    log = tmp_path / "first.log"
    first = start(repo, ["--iterations", "1", "--base-url", openai_server.base_url,
                         "--model", "gpt-4o-mini"], log, dict(os.environ))
    wait_for("the first run to ask", lambda: in_phase(repo, 1, "asking"), first, log)
    second = subprocess.run([SELFCODE, "improve", str(repo), "--sandbox", "local"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert f"Another selfcode run (pid {first.pid}) is working on this repository" in (
        " ".join(second.stderr.split()))
    assert "Traceback" not in second.stderr
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=60) == 130
    assert not (state(repo) / "lock").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_with_two_candidates_in_flight_then_resumed(sig: signal.Signals, tmp_path: Path,
                                                           openai_server: OpenAIServer):
    """`--jobs 2`: both candidates are waiting for the model when the run is killed. Both
    are settled (abandoned), nothing is committed, and `--resume` goes on at candidate 3."""
    repo = make_demo(tmp_path / "demo")
    before = snapshot(repo)
    openai_server.script(Fault.stall(15, reply=GOOD), Fault.stall(15, reply=GOOD))
    log = tmp_path / "crash.log"
    proc = start(repo, ["--iterations", "4", "--jobs", "2", "--base-url",
                        openai_server.base_url, "--model", "gpt-4o-mini"], log,
                 dict(os.environ))
    wait_for("two requests in flight", lambda: in_phase(repo, 1, "asking the model")
             and in_phase(repo, 2, "asking the model") and len(openai_server.calls) >= 2,
             proc, log)
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=60)
    run = run_id_of(repo)
    assert_repository_sound(repo, before)
    if sig == signal.SIGINT:
        assert code == 130, log.read_text()
        assert "Traceback" not in log.read_text()
        assert candidates(repo, run) == [(1, "abandoned"), (2, "abandoned")]
    else:
        assert code == -signal.SIGKILL
    resumed = subprocess.run(
        [SELFCODE, "improve", str(repo), "--resume", run, "--iterations", "3", "--replay",
         str(write_replay(tmp_path / "r2.jsonl", NO_EDIT, NO_EDIT, NO_EDIT)), "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert candidates(repo, run) == [(1, "abandoned"), (2, "abandoned"), (3, "malformed")]
    assert git(repo, "worktree", "list").count("\n") == 1
    assert not (state(repo) / "lock").exists()
    assert_repository_sound(repo, before)
