"""The three things a user asks for: improve a repository, judge one patch, run the demo.

Each wires the components together and owns the cleanup, so that a failure or Ctrl-C at any
point leaves the user's checkout untouched and the history complete.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from selfcode.agent import Agent, Observer
from selfcode.config import Settings
from selfcode.errors import SelfcodeError
from selfcode.evaluate import Judge, discover_benchmarks
from selfcode.gate import Verdict
from selfcode.gitstore import GitStore, RepoLock
from selfcode.history import History, new_run_id
from selfcode.llm import LLM, make_llm
from selfcode.resources import examples_dir
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.factory import open_sandbox
from selfcode.sandbox.trees import Trees

DEMO_REPLAY = "demo-replies.jsonl"


class RunSummary(BaseModel):
    run_id: str
    repo: str
    branch: str
    base_commit: str
    sandbox: str
    goal: str
    status: str
    stop_reason: str
    candidates: int
    accepted: int
    commits: list[str]
    best_speedup: float | None
    cost_usd: float
    cost_known: bool
    tokens: int
    wall_s: float


def _judge_in(sandbox: Sandbox, settings: Settings, files: list[str], started: float,
              observer: Observer) -> Judge:
    trees = Trees(sandbox, settings.sandbox.timeout)
    benchmarks = discover_benchmarks(files, settings.gate, sandbox.python)
    return Judge(trees, settings.gate, benchmarks,
                 progress=lambda msg: observer.event("phase", msg),
                 sandbox_start=time.perf_counter() - started)


def improve(path: Path, settings: Settings, observer: Observer, llm: LLM | None = None) -> RunSummary:
    """Run the loop on a new branch in its own worktree; `llm` overrides the configured model."""
    store = GitStore(path)
    llm = llm or make_llm(settings.llm, on_retry=lambda msg: observer.event("retry", msg))
    if store.is_dirty():
        observer.event("note", f"Uncommitted changes are ignored: the run starts from HEAD "
                               f"({store.head_commit()[:10]}).")
    run_id = new_run_id()
    state = store.state_dir()
    started = time.perf_counter()
    with RepoLock(state, run_id) as lock:
        if lock.stale_pid:
            observer.event("note", f"Cleared a stale lock left by process {lock.stale_pid}.")
        for leftover in store.prune_leftovers():
            observer.event("note", f"Removed the worktree left by interrupted run {leftover}.")
        history = History(state / "history.db")
        worktree = store.create_run(run_id)
        history.start_run(run_id, str(store.root), worktree.head(), worktree.branch,
                          settings.agent.goal, llm.model, settings.sandbox.backend)
        observer.event("start", f"run {run_id} on branch {worktree.branch}", run_id=run_id,
                       branch=worktree.branch)
        sandbox: Sandbox | None = None
        agent: Agent | None = None
        status, stop = "failed", "error"
        try:
            t0 = time.perf_counter()
            sandbox = open_sandbox(settings.sandbox, state, run_id, worktree.path, observer)
            files = worktree.list_files()
            judge = _judge_in(sandbox, settings, files, t0, observer)
            judge.set_baseline(worktree.tracked_tar())
            observer.event("note", f"Judging by {judge.goal}"
                           + (f" with benchmarks: {', '.join(judge.benchmarks)}"
                              if judge.benchmarks else "") + ".")

            def recheck(parent_tar: bytes, diff: str) -> Verdict:
                t1 = time.perf_counter()
                with open_sandbox(settings.sandbox, state, run_id, worktree.path,
                                  observer, quiet=True) as fresh:
                    fresh_judge = _judge_in(fresh, settings, files, t1, observer)
                    fresh_judge.set_baseline(parent_tar)
                    return fresh_judge.judge(diff)

            entry_points = [f for b in judge.benchmarks.values() for f in b[1:2]] or [
                f for f in files if f.endswith(".py") and "test" in f]
            agent = Agent(settings=settings, llm=llm, judge=judge, worktree=worktree,
                          history=history, run_id=run_id, observer=observer, recheck=recheck,
                          entry_points=entry_points)
            stop = agent.run()
            status = "finished"
        except KeyboardInterrupt:
            status, stop = "interrupted", "interrupted by Ctrl-C; the current candidate was discarded"
            if agent is not None and agent.tally.candidates:
                history.update_candidate(run_id, agent.tally.candidates, status="abandoned")
            raise
        except SelfcodeError as exc:
            stop = str(exc)
            raise
        finally:
            if sandbox is not None:
                sandbox.close()
            tally = agent.tally if agent else None
            summary = RunSummary(
                run_id=run_id, repo=str(store.root), branch=worktree.branch,
                base_commit=history.run(run_id)["base_commit"], sandbox=settings.sandbox.backend,
                goal=settings.agent.goal, status=status, stop_reason=stop,
                candidates=tally.candidates if tally else 0,
                accepted=tally.accepted if tally else 0,
                commits=tally.commits if tally else [],
                best_speedup=tally.best_speedup if tally else None,
                cost_usd=tally.cost_usd if tally else 0.0,
                cost_known=not tally.unpriced if tally else True,
                tokens=tally.tokens if tally else 0,
                wall_s=round(time.perf_counter() - started, 2),
            )
            history.finish_run(run_id, status, summary.model_dump())
            history.close()
            worktree.remove()
    return summary


def eval_patch(path: Path, diff: str, settings: Settings, observer: Observer) -> Verdict:
    """Judge one unified diff against HEAD; never commits, never touches the checkout."""
    store = GitStore(path)
    run_id = "eval-" + new_run_id()
    t0 = time.perf_counter()
    with open_sandbox(settings.sandbox, store.state_dir(), run_id, store.root, observer) as sandbox:
        judge = _judge_in(sandbox, settings, store.list_files("HEAD"), t0, observer)
        judge.set_baseline(store.tracked_tar("HEAD"))
        return judge.judge(diff)


def prepare_demo_repo(target: Path | None = None) -> tuple[Path, Path]:
    """Copy the example repository into a fresh git repository; return it and the replay file."""
    source = examples_dir()
    repo = target or Path(tempfile.mkdtemp(prefix="selfcode-demo-"))
    shutil.copytree(source, repo, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(DEMO_REPLAY, "__pycache__", "*.pyc"))
    replay = repo.parent / f"{repo.name}.{DEMO_REPLAY}"
    shutil.copyfile(source / DEMO_REPLAY, replay)
    git: Callable[..., object] = lambda *args: subprocess.run(  # noqa: E731
        ["git", "-c", "user.name=selfcode demo", "-c", "user.email=demo@selfcode.local",
         "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null", *args],
        cwd=repo, check=True, capture_output=True,
    )
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "The slow example library")
    return repo, replay
