"""A run's state, rebuilt from the history and git: for resuming it and for summing it up.

Everything a run does is recorded before its next step (invariant 5), so after a crash the
history plus the run's branch say exactly where it stopped. `reconcile` settles the one
candidate that was in flight; `restore_ledger` and `restore_attempts` give the loop back its
counts and its memory.
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
from selfcode.run.ledger import Ledger


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
    branch_removed: bool = False
    """The run made no commit, so its branch was deleted (the candidates' refs stay)."""


def _verdict(row: CandidateRow) -> Verdict | None:
    return Verdict.model_validate(row.verdict) if row.verdict else None


def restore_ledger(history: History, run_id: str, ledger: Ledger | None = None) -> Ledger:
    """The run's spend and candidates as recorded so far, counted into `ledger` (its caps,
    clock, unpriced flag and A/A counts stay as they are) or into a new one without caps."""
    ledger = Ledger() if ledger is None else ledger
    ledger.cost_usd = history.total_cost(run_id)
    usage = history.candidate_usage(run_id).values()
    ledger.tokens = sum(u.prompt_tokens + u.completion_tokens for u in usage)
    ledger.unpriced |= any(u.unpriced for u in usage)  # a reply before the resume had no price
    ledger.statuses, ledger.commits, ledger.best_speedup = {}, [], None
    for row in history.candidates(run_id):
        commit = row.commit_sha if row.status == "accepted" else None
        verdict = _verdict(row) if commit else None
        ledger.record(row.status, commit=commit, speedup=verdict.speedup() if verdict else None)
    return ledger


def restore_attempts(history: History, run_id: str) -> list[Attempt]:
    """The attempts the model is shown, as recorded so far: what the loop made of each
    candidate's verdict (`Attempt.from_verdict`), or of a malformed one's last reply error."""
    reply_errors = {e.candidate_n: e.message for e in history.events(run_id)
                    if e.kind == "edit-error" and e.candidate_n is not None}
    attempts = []
    for row in history.candidates(run_id):
        verdict = _verdict(row)
        reasons = verdict.reasons if verdict else (
            # As run/propose.py words a reply with no usable edit.
            [f"no usable edit after repairs: {reply_errors[row.n]}"]
            if row.status == "malformed" and row.n in reply_errors else [])
        attempts.append(Attempt.from_verdict(row.n, row.rationale, row.status, reasons,
                                             verdict))
    return attempts


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
    # A run that made no commit may have had its branch removed: then nothing is on it.
    branch_log = (store.trailer_log(f"{run.base_commit}..{run.branch}", "Selfcode-Candidate")
                  if store.ref_sha(f"refs/heads/{run.branch}") else [])
    for sha, value in branch_log:
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
            status, message = _settle_in_flight(store, history, archive, row, worktree,
                                                finish_commits)
            done.append(message)
            if status == "committed":
                continue
        if row.diff and not _kept(store, run_id, n, row.candidate_commit):
            if status == "accepted" and n in on_branch:
                archive.keep_commit(n, on_branch[n], "accepted", verdict, row.rationale or "")
            elif row.parent_commit:
                archive.keep(n, row.parent_commit, row.rationale or "", row.diff,
                             verdict, status)
    return done


def _settle_in_flight(store: GitStore, history: History, archive: Archive, row: CandidateRow,
                      worktree: RunWorktree | None, finish_commits: bool) -> tuple[str, str]:
    """A candidate in flight at the crash and not on the branch: (its status now, what was
    done). Committed beside the branch (built on another node of the archive) it is accepted;
    through the gate and built on the branch's head, committed now; else abandoned."""
    run_id, n, verdict = row.run_id, row.n, _verdict(row)
    accepted = verdict is not None and verdict.accepted
    if accepted and row.commit_sha and _kept(store, run_id, n, row.candidate_commit):
        history.update_candidate(run_id, n, status="accepted")
        return "accepted", (f"candidate {n} had been committed beside the branch; recorded it "
                            "as accepted")
    ready = (finish_commits and worktree is not None and accepted and row.diff
             and row.parent_commit == worktree.head())
    if ready and worktree is not None and verdict is not None and row.diff:
        sha = archive.commit_accepted(worktree, n, row.rationale or "", row.diff, verdict)
        history.update_candidate(run_id, n, status="accepted", commit_sha=sha)
        return "committed", f"candidate {n} had passed the gate; committed it now"
    history.update_candidate(run_id, n, status="abandoned")
    return "abandoned", f"candidate {n} was interrupted; marked it abandoned"


def _kept(store: GitStore, run_id: str, n: int, recorded: str | None) -> bool:
    from selfcode.git.archive import NOTES_REF, candidate_ref

    sha = store.ref_sha(candidate_ref(run_id, n))
    return sha is not None and sha == (recorded or sha) and store.note(NOTES_REF, sha) is not None


def summarize(history: History, run_id: str, status: str, stop: str, wall_s: float,
              ledger: Ledger | None = None, branch_removed: bool = False) -> RunSummary:
    """The run's summary, from `ledger` or else from what the history recorded."""
    run = history.run(run_id)
    if run is None:
        raise KeyError(run_id)
    ledger = restore_ledger(history, run_id) if ledger is None else ledger
    return RunSummary(
        run_id=run_id, repo=run.repo, branch=run.branch, base_commit=run.base_commit,
        sandbox=run.sandbox, goal=run.goal, status=status, stop_reason=stop,
        candidates=ledger.candidates, accepted=ledger.accepted, commits=list(ledger.commits),
        best_speedup=ledger.best_speedup, cost_usd=ledger.cost_usd,
        cost_known=not ledger.unpriced, tokens=ledger.tokens, wall_s=round(wall_s, 2),
        aa_sentinels=ledger.aa_sentinels, aa_false_accepts=ledger.aa_false_accepts,
        branch_removed=branch_removed,
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
