"""The three things a user asks for: improve a repository, judge one patch, run the demo.

Each wires the components together and owns the cleanup, so that a failure or Ctrl-C at any
point leaves the user's checkout untouched and the history complete.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from selfcode.config import Settings, deep_merge, load_settings, upgrade_stored
from selfcode.errors import GitError, SelfcodeError
from selfcode.executors.base import Executor
from selfcode.executors.local import LocalExecutor
from selfcode.executors.ray import ray_executor
from selfcode.gate.judge import Judge, describe_judging, discover_benchmarks
from selfcode.gate.police import Police, judge_goal, make_verdict
from selfcode.gate.verdict import Verdict
from selfcode.git.archive import OWN_REFS, Archive
from selfcode.git.commits import git_config_of
from selfcode.git.lock import RepoLock
from selfcode.git.store import GitStore
from selfcode.git.worktree import RunWorktree
from selfcode.history.db import HISTORY_FILE, History, new_run_id
from selfcode.history.rows import RunRow
from selfcode.llm import LLM, make_llm
from selfcode.llm.pool import ModelPool
from selfcode.prompt.context import Attempt
from selfcode.resources import examples_dir
from selfcode.run.candidate import Pipeline
from selfcode.run.context import Run
from selfcode.run.events import Observer, RecordingObserver
from selfcode.run.ledger import Ledger
from selfcode.run.loop import Agent, check_budget
from selfcode.run.propose import Proposer
from selfcode.run.resume import (
    RunSummary,
    next_number,
    reconcile,
    restore_attempts,
    restore_ledger,
    summarize,
    sweep_dead_runs,
)
from selfcode.run.searching import Chooser, profiler, restore_nodes
from selfcode.run.selfdemo import commit_demo_repo
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.factory import backend_facts, baseline_dependencies, open_sandbox
from selfcode.sandbox.results import TestsRun
from selfcode.sandbox.trees import Trees
from selfcode.search.dedupe import Seen
from selfcode.search.lineage import Lineage
from selfcode.search.pool import Baseline, JudgePool, default_jobs

if TYPE_CHECKING:
    from selfcode.sandbox.deps import DependencySet

DEMO_REPLAY = "demo-replies.jsonl"


def _judge_in(sandbox: Sandbox, settings: Settings, files: list[str], observer: Observer,
              setup: dict[str, float], reopen: Callable[[], Sandbox] | None = None,
              police: Police | None = None) -> Judge:
    """The judge in `sandbox`; `setup`: the seconds spent getting there, by step."""
    trees = Trees(sandbox, settings.sandbox.timeout)
    benchmarks = discover_benchmarks(files, settings.gate, sandbox.python)
    return Judge(trees, settings.gate, benchmarks,
                 progress=lambda msg: observer.event("phase", msg), reopen=reopen,
                 setup=setup, police=police)


def improve(path: Path, settings: Settings, observer: Observer, llm: LLM | None = None,
            resume: str | None = None) -> RunSummary:
    """Run the loop on a new branch in its own worktree, or continue run `resume`.

    `llm` overrides the configured model. The repository lock is held throughout; leftovers
    of crashed runs (worktrees, ref locks, runs still marked running) are settled first.
    """
    store = GitStore(path)
    models = None
    if llm is None and len(settings.llm.models) > 1:
        # Several models: each candidate's is chosen by the pool's bandit (run/loop.py).
        models = ModelPool.from_config(settings.llm,
                                       on_retry=lambda msg: observer.event("retry", msg))
        llm = models.client(settings.llm.models[0])
    llm = llm or make_llm(settings.llm, on_retry=lambda msg: observer.event("retry", msg))
    label = settings.llm.model if models is not None else llm.model  # "a,b": the run's models
    if store.is_dirty() and not resume:
        observer.event("note", f"Uncommitted changes are ignored: the run starts from HEAD "
                               f"({store.head_commit()[:10]}).")
    run_id = resume or new_run_id()
    state = store.state_dir()
    started = time.perf_counter()
    with RepoLock(state, run_id) as lock, interrupt_on_sigterm():
        if lock.stale_pid:
            observer.event("note", f"Cleared a stale lock left by process {lock.stale_pid}.")
        for leftover in store.prune_leftovers():
            observer.event("note", f"Removed the worktree left by interrupted run {leftover}.")
        for ref_lock in store.clear_ref_locks(*OWN_REFS):
            observer.event("note", f"Removed {ref_lock}, left by a killed git process.")
        history = History(state / HISTORY_FILE)
        try:
            git_cfg = git_config_of(settings)

            def archive_for(rid: str) -> Archive:
                return Archive(store, history, rid, label, git_cfg)

            for dead in sweep_dead_runs(store, history, archive_for, keep=resume):
                observer.event("note", f"Run {dead} had died; it is now marked interrupted "
                                       f"(continue it with --resume {dead}).")
            opened = _open(store, history, archive_for(run_id), settings,
                           RecordingObserver(observer, history, run_id), resume)
            return _run(opened, llm, resume, started, models)
        finally:
            history.close()


class Opened(NamedTuple):
    """A run ready for its loop: the next candidate's number, the attempts the model has
    been shown, and the seconds the run had taken before (1, none and 0 for a new run)."""

    run: Run
    start: int
    attempts: list[Attempt]
    wall_before: float


def _open(store: GitStore, history: History, archive: Archive, settings: Settings,
          observer: Observer, resume: str | None) -> Opened:
    """Start run `archive.run_id` on a new branch and worktree, or reopen run `resume`."""
    if resume is not None:
        return _reopen(store, history, archive, settings, observer)
    run_id = archive.run_id
    worktree = store.create_run(run_id)
    history.start_run(run_id, str(store.root), worktree.head(), worktree.branch,
                      settings.agent.goal, archive.model, settings.sandbox.backend)
    history.set_run_settings(run_id, settings.model_dump(mode="json"))
    observer.event("start", f"run {run_id} on branch {worktree.branch}", run_id=run_id,
                   branch=worktree.branch)
    ledger = Ledger.from_config(settings.agent)
    return Opened(Run(settings, store, history, archive, worktree, observer, ledger), 1, [],
                  0.0)


def _reopen(store: GitStore, history: History, archive: Archive, settings: Settings,
            observer: Observer) -> Opened:
    """Settle what the interrupted run left in flight and give it back its counts."""
    run_id = archive.run_id
    previous = _recorded_run(history, run_id)
    if store.remove_run_worktree(run_id):
        observer.event("note", f"Removed the worktree left by interrupted run {run_id}.")
    # A run that made no commit lost its branch at its end; it starts again where it was.
    committed = any(row.commit_sha for row in history.candidates(run_id))
    worktree = store.open_run(run_id, base=None if committed else previous.base_commit)
    history.reopen_run(run_id)
    history.set_run_settings(run_id, settings.model_dump(mode="json"))
    for message in reconcile(store, history, archive, run_id, worktree, finish_commits=True):
        observer.event("note", message.capitalize() + ".")
    start = next_number(history, run_id)
    observer.event("start", f"resuming run {run_id} on branch {worktree.branch} at candidate "
                            f"{start}", run_id=run_id, branch=worktree.branch)
    wall = float((previous.summary or {}).get("wall_s") or 0.0)
    # The time cap counts the minutes the run had already taken.
    ledger = restore_ledger(history, run_id,
                            Ledger.from_config(settings.agent, elapsed_minutes=wall / 60))
    run = Run(settings, store, history, archive, worktree, observer, ledger)
    return Opened(run, start, restore_attempts(history, run_id), wall)


def _run(opened: Opened, llm: LLM, resume: str | None, started: float,
         models: ModelPool | None = None) -> RunSummary:
    run = opened.run
    # Read from the base commit's objects once, and reused by every sandbox of the run, the
    # re-check's too: the host never reads dependency declarations a candidate wrote.
    deps = baseline_dependencies(run.settings.sandbox, run.store,
                                 _base_commit(run.store, run.worktree, resume))
    status, stop = "failed", "error"
    try:
        setup: dict[str, float] = {}
        with contextlib.ExitStack() as sandboxes:
            def reopen() -> Sandbox:
                """A fresh sandbox, when a candidate broke the current one (closed at the end
                of the run with the others)."""
                return sandboxes.enter_context(open_sandbox(
                    run.settings.sandbox, run.store.state_dir(), run.run_id, deps,
                    run.observer, quiet=True))

            sandbox = sandboxes.enter_context(open_sandbox(
                run.settings.sandbox, run.store.state_dir(), run.run_id, deps, run.observer,
                timings=setup))
            agent = _agent(opened, llm, sandbox, deps, setup, reopen)
            agent.models = Chooser(models, run.settings.agent.seed) if models else None
            try:
                stop = agent.run()
            finally:
                agent.pipeline.executor.close()  # no container left on any node
                agent.pipeline.lineage.close()
        status = "finished"
    except KeyboardInterrupt:
        status, stop = "interrupted", "interrupted; the current candidate was discarded"
        with contextlib.suppress(Exception):
            reconcile(run.store, run.history, run.archive, run.run_id, None,
                      finish_commits=False)
            restore_ledger(run.history, run.run_id, run.ledger)  # the settled statuses
        raise
    except SelfcodeError as exc:
        stop = str(exc)
        raise
    finally:
        summary = summarize(run.history, run.run_id, status, stop,
                            opened.wall_before + time.perf_counter() - started, run.ledger)
        summary.commits = _branch_commits(run, summary.commits)
        run.history.finish_run(run.run_id, status, summary.model_dump())
        run.worktree.remove()
        if _remove_branch_without_commits(run):
            summary.branch_removed = True
            run.history.finish_run(run.run_id, status, summary.model_dump())
    return summary


def _base_of(run: Run) -> str:
    """The commit the run started from (HEAD for a new run)."""
    recorded = run.history.run(run.run_id)
    return recorded.base_commit if recorded else run.worktree.head()


def _branch_commits(run: Run, recorded: list[str]) -> list[str]:
    """The commits on the run's branch, oldest first: the best node's lineage (accepted
    candidates of other lineages are kept beside it, under their refs)."""
    row = run.history.run(run.run_id)
    try:
        log = run.store.trailer_log(f"{row.base_commit}..{run.worktree.branch}",
                                    "Selfcode-Candidate") if row else []
    except (GitError, OSError):
        return recorded
    return [sha for sha, n in log if n.isdigit()]


def _remove_branch_without_commits(run: Run) -> bool:
    """At the end of a run (finished, failed, interrupted or resumed), its branch goes if it
    has no commit beyond the run's base; the candidates' refs and notes stay, so `show`,
    `report` and `review` still have everything. True if it went."""
    recorded = run.history.run(run.run_id)
    if recorded is None:
        return False
    try:
        return run.store.remove_branch_without_commits(run.run_id, recorded.base_commit)
    except (GitError, OSError):
        return False  # an empty branch left behind costs nothing; never fail a run for it


def _agent(opened: Opened, llm: LLM, sandbox: Sandbox, deps: DependencySet | None,
           setup: dict[str, float], reopen: Callable[[], Sandbox]) -> Agent:
    """The loop for `opened`, its first judge calibrated in `sandbox` (`setup`: the seconds
    its image and start took); `reopen` opens another sandbox (a pool judge's, or the
    replacement of one a candidate broke)."""
    run = opened.run
    settings, observer = run.settings, run.observer
    files = run.worktree.list_files()
    judge = _judge_in(sandbox, settings, files, observer, setup, reopen)
    judge.promote = False  # an accepted self-candidate is promoted by its re-check
    runs = settings.gate.flaky_runs
    # One run of the baseline's tests, then what the prompt needs (the calibration settles
    # each benchmark's metric; the profile, its targets): the first model request goes out
    # while the other runs, which settle the quarantine, go on (`confirm_in_background`).
    # The run's base commit (the reviewed code), also when resumed: a node's code is never
    # tested again as a baseline (its re-check's run is kept), nor settles the quarantine.
    base = _base_of(run)
    judge.set_baseline(run.store.tracked_tar(base), runs=runs, now=1)
    calibration = judge.calibrate()
    agent_cfg = settings.agent
    replaying = settings.llm.replay is not None
    jobs = agent_cfg.jobs or default_jobs(settings.sandbox.backend, replaying)
    strategy = agent_cfg.strategy or ("greedy" if replaying else "archive")
    head = run.worktree.head()
    pool = JudgePool(judge, jobs, reopen, base)
    lineage = Lineage(run.store.scratch_dir() / f"nodes-{run.run_id}", strategy,
                      agent_cfg.seed)
    restore_nodes(run, lineage, judge, head)
    if jobs > 1 or strategy != "greedy":
        observer.event("note", f"Search: {jobs} candidate(s) in flight, parents drawn "
                               f"{'from the archive' if strategy == 'archive' else 'greedily'}.")

    def recheck(parent: Baseline, diff: str) -> tuple[Verdict, TestsRun | None]:
        t1 = time.perf_counter()
        with open_sandbox(settings.sandbox, run.store.state_dir(), run.run_id, deps, observer,
                          quiet=True) as fresh:
            fresh_judge = judge.fork(fresh, time.perf_counter() - t1)
            if parent.tests is None:  # a node of a run from before its runs were kept
                fresh_judge.set_baseline(parent.tar)
            else:  # its known run: a node's code is never tested again as a baseline
                fresh_judge.adopt_baseline(parent.tar, parent.tests, parent.figures)
            verdict = fresh_judge.judge(diff)
            return verdict, getattr(fresh_judge, "last_tests", None)

    entry_points = [f for b in judge.benchmarks.values() for f in b[1:2]] or [
        f for f in files if f.endswith(".py") and "test" in f]
    proposer = Proposer(run, llm, entry_points=entry_points, judge=judge,
                        profiler=profiler(judge, pool, lineage, head))
    executor: Executor = LocalExecutor(pool, recheck, observer)
    if settings.executor.kind == "ray":  # judged on the nodes of a Ray cluster instead
        executor = ray_executor(run, deps, pool, lineage.baseline(0), jobs)  # base calibrates
    pipeline = Pipeline(run, proposer, pool, executor, lineage, Seen(),
                        between_turns=lambda: check_budget(run))
    first = next((node.n for node in lineage.nodes() if node.sha == head), 0)
    proposer.sections([], 0, lineage.parent_view(first))  # profiled before the other runs
    if runs > 1:
        pool.confirm_in_background(lineage.baseline(0), runs,
                                   then=lambda: describe_judging(judge, calibration, observer))
    else:
        describe_judging(judge, calibration, observer)
    return Agent(run, pipeline=pipeline, jobs=jobs, start=opened.start,
                 attempts=opened.attempts)


def _base_commit(store: GitStore, worktree: RunWorktree, resume: str | None) -> str:
    """The run's baseline: HEAD when it started, i.e. the newest commit no candidate wrote."""
    if resume is None:
        return worktree.head()
    own = [sha for sha, n in store.trailer_log(worktree.head(), "Selfcode-Candidate") if not n]
    return own[-1] if own else worktree.head()


def _recorded_run(history: History, run_id: str) -> RunRow:
    """Run `run_id` as the history recorded it; a sentence for the user when there is none."""
    row = history.run(run_id)
    if row is None:
        raise SelfcodeError(f"There is no run {run_id} in this repository's history; "
                            "`selfcode runs` lists them.")
    return row


def resume_settings(path: Path, run_id: str, overrides: dict[str, Any]) -> Settings:
    """The settings run `run_id` was started with, with the flags given now on top."""
    store = GitStore(path)
    with History(store.state_dir() / HISTORY_FILE) as history:
        _recorded_run(history, run_id)
        stored = history.run_settings(run_id)
    if stored is None:
        return load_settings(store.root, overrides)
    return Settings.model_validate(deep_merge(upgrade_stored(stored), overrides))


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, `kill`) cleans up like Ctrl-C instead of dying mid-step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def eval_patch(path: Path, diff: str, settings: Settings, observer: Observer,
               started: float | None = None) -> Verdict:
    """Judge one unified diff against HEAD; never commits, never touches the checkout.

    The patch is read on the host first (the policy, the protected paths, git's reading and
    whether it applies): one refused there costs no sandbox, image, baseline run or
    calibration. The verdict's `timings` add up to the wall time since `started` (the
    command's start; by default now).
    """
    t0 = time.perf_counter() if started is None else started
    store = GitStore(path)
    run_id = "eval-" + new_run_id()
    files, tar = store.list_files("HEAD"), store.tracked_tar("HEAD")
    deps = baseline_dependencies(settings.sandbox, store, "HEAD")
    goal = judge_goal(settings.gate, discover_benchmarks(files, settings.gate, "python"))
    police = Police(tar, settings.gate, goal)
    try:
        timings: dict[str, float] = {}
        reading = police.read(diff, timings)
        if reading.refusal:
            timings["total"] = round(time.perf_counter() - t0, 4)
            return make_verdict(*reading.refusal, reading.summary, timings, goal,
                                backend_facts(settings.sandbox))
        setup = {"precheck": time.perf_counter() - t0}
        with open_sandbox(settings.sandbox, store.state_dir(), run_id, deps, observer,
                          timings=setup) as sandbox:
            judge = _judge_in(sandbox, settings, files, observer, setup, police=police)
            judge.set_baseline(tar, runs=settings.gate.flaky_runs)
            describe_judging(judge, judge.calibrate(), observer)
            verdict = judge.judge(diff)
            closing = time.perf_counter()
        # Removing the sandbox is waited for too.
        verdict.timings["sandbox_stop"] = round(time.perf_counter() - closing, 4)
        verdict.timings["total"] = round(verdict.timings["total"]
                                         + verdict.timings["sandbox_stop"], 4)
        return verdict
    finally:
        police.close()


def prepare_demo_repo(target: Path | None = None) -> tuple[Path, Path]:
    """Copy the example repository into a fresh git repository; return it and the replay file."""
    source = examples_dir()
    repo = target or Path(tempfile.mkdtemp(prefix="selfcode-demo-"))
    shutil.copytree(source, repo, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(DEMO_REPLAY, "__pycache__", "*.pyc"))
    replay = repo.parent / f"{repo.name}.{DEMO_REPLAY}"
    shutil.copyfile(source / DEMO_REPLAY, replay)
    commit_demo_repo(repo, "The slow example library")
    return repo, replay
