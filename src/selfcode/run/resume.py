"""A run's state, rebuilt from the history and git: for resuming it and for summing it up.

Everything a run does is recorded before its next step (invariant 5), so after a crash the
history plus the run's branch say exactly where it stopped. `reconcile` settles the one
candidate that was in flight; `restore_tally` gives the loop back its counters.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from selfcode.gate.verdict import Verdict
from selfcode.git.archive import Archive
from selfcode.git.store import GitStore
from selfcode.git.worktree import RunWorktree
from selfcode.history.db import History
from selfcode.history.rows import CandidateRow
from selfcode.prompt.context import Attempt
from selfcode.run.loop import Tally


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
    aa_sentinels: int = 0
    """A/A checks inserted during the run (the unchanged code judged against itself)."""
    aa_false_accepts: int = 0
    """How many of them the gate called faster: the run's observed false-acceptance count."""


def _verdict(row: CandidateRow) -> Verdict | None:
    return Verdict.model_validate(row.verdict) if row.verdict else None


def restore_tally(history: History, run_id: str) -> Tally:
    """The loop's counters and the attempts the model is shown, as recorded so far."""
    tally = Tally()
    usage = history.candidate_usage(run_id)
    tally.cost_usd = history.total_cost(run_id)
    tally.tokens = sum(u.prompt_tokens + u.completion_tokens for u in usage.values())
    for row in history.candidates(run_id):
        tally.candidates += 1
        verdict = _verdict(row)
        if row.status == "accepted" and row.commit_sha:
            tally.accepted += 1
            tally.commits.append(row.commit_sha)
            speedup = verdict.speedup() if verdict else None
            if speedup and (tally.best_speedup or 0) < speedup:
                tally.best_speedup = speedup
        rationale = (row.rationale or "").strip()
        summary = rationale.splitlines()[0][:200] if rationale else "(no rationale)"
        reasons = verdict.reasons if verdict else []
        tally.attempts.append(Attempt(n=row.n, summary=summary, status=row.status,
                                      reasons=reasons))
    return tally


def next_number(history: History, run_id: str) -> int:
    return max((row.n for row in history.candidates(run_id)), default=0) + 1


def reconcile(store: GitStore, history: History, archive: Archive, run_id: str,
              worktree: RunWorktree | None, finish_commits: bool) -> list[str]:
    """Settle candidates a crash left in flight; returns what was done, for the user.

    A candidate whose commit reached the branch is accepted; one that passed the gate and
    its re-check but was not committed yet is committed now (`finish_commits`, and only on
    the state it was judged on); any other is abandoned. Every candidate with a diff ends
    up with its ref and note.
    """
    run = history.run(run_id)
    if run is None:
        return []
    on_branch = {}
    for sha, value in store.trailer_log(f"{run.base_commit}..{run.branch}",
                                        "Selfcode-Candidate"):
        if value.isdigit():
            on_branch[int(value)] = sha
    done: list[str] = []
    for row in history.candidates(run_id):
        n, status, verdict = row.n, row.status, _verdict(row)
        if status in ("proposed", "accepted") and n in on_branch:
            if status != "accepted" or row.commit_sha != on_branch[n]:
                history.update_candidate(run_id, n, status="accepted", commit_sha=on_branch[n])
                done.append(f"candidate {n} had been committed; recorded it as accepted")
            status = "accepted"
        elif status == "proposed":
            ready = (finish_commits and worktree is not None and verdict is not None
                     and verdict.accepted and row.diff
                     and row.parent_commit == worktree.head())
            if ready and worktree is not None and verdict is not None and row.diff:
                sha = archive.commit_accepted(worktree, n, row.rationale or "", row.diff,
                                              verdict)
                history.update_candidate(run_id, n, status="accepted", commit_sha=sha)
                done.append(f"candidate {n} had passed the gate; committed it now")
                continue
            history.update_candidate(run_id, n, status="abandoned")
            done.append(f"candidate {n} was interrupted; marked it abandoned")
            status = "abandoned"
        if row.diff and not _kept(store, run_id, n, row.candidate_commit):
            if status == "accepted" and n in on_branch:
                archive.keep_commit(n, on_branch[n], "accepted", verdict, row.rationale or "")
            elif row.parent_commit:
                archive.keep(n, row.parent_commit, row.rationale or "", row.diff,
                             verdict, status)
    return done


def _kept(store: GitStore, run_id: str, n: int, recorded: str | None) -> bool:
    from selfcode.git.archive import NOTES_REF, candidate_ref

    sha = store.ref_sha(candidate_ref(run_id, n))
    return sha is not None and sha == (recorded or sha) and store.note(NOTES_REF, sha) is not None


def summarize(history: History, run_id: str, status: str, stop: str, wall_s: float,
              tally: Tally | None = None) -> RunSummary:
    run = history.run(run_id)
    if run is None:
        raise KeyError(run_id)
    tally = tally or restore_tally(history, run_id)
    return RunSummary(
        run_id=run_id, repo=run.repo, branch=run.branch, base_commit=run.base_commit,
        sandbox=run.sandbox, goal=run.goal, status=status, stop_reason=stop,
        candidates=tally.candidates, accepted=tally.accepted, commits=tally.commits,
        best_speedup=tally.best_speedup, cost_usd=tally.cost_usd,
        cost_known=not tally.unpriced, tokens=tally.tokens, wall_s=round(wall_s, 2),
        aa_sentinels=tally.aa_sentinels, aa_false_accepts=tally.aa_false_accepts,
    )


def sweep_dead_runs(store: GitStore, history: History, archive_for: Callable[[str], Archive],
                    keep: str | None = None) -> list[str]:
    """Runs still marked running while we hold the lock died: settle and close them.

    `keep` (the run being resumed) is left for the resume to settle.
    """
    swept = []
    for run_id in history.running_runs():
        if run_id == keep:
            continue
        reconcile(store, history, archive_for(run_id), run_id, None, finish_commits=False)
        run = history.run(run_id)
        previous = (run.summary if run else None) or {}
        summary = summarize(history, run_id, "interrupted",
                            "the process died; resume it with --resume", 0.0)
        summary.wall_s = float(previous.get("wall_s", 0.0))
        history.finish_run(run_id, "interrupted", summary.model_dump())
        swept.append(run_id)
    return swept
