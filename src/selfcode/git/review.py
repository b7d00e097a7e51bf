"""Human review of a run's accepted candidates.

Each decision (approved / rejected) is recorded in the history and in the candidate's git
note. A rejected candidate leaves the run's branch by a revert-free rebuild: the branch is
made again from the run's base by cherry-picking the candidates still wanted, in a
temporary worktree, and moved only if every pick applied.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from selfcode.config import GitConfig
from selfcode.errors import GitError, SelfcodeError
from selfcode.git.archive import NOTES_REF, Archive
from selfcode.git.lock import RepoLock
from selfcode.git.store import GitStore
from selfcode.git.worktree import PickConflict
from selfcode.history.db import History
from selfcode.history.views import CandidateView, RunView, load_run


class ReviewOutcome(BaseModel):
    run_id: str
    branch: str
    branch_head: str | None
    decisions: dict[int, str] = Field(default_factory=dict)
    rebuilt: bool = False
    on_branch: list[int] = Field(default_factory=list)
    dropped: list[int] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def reviewer_name(store: GitStore) -> str:
    """The reviewer as git knows them ('Name <email>'), else the login name."""
    try:
        name = store.git("config", "user.name").strip()
        email = store.git("config", "user.email").strip()
    except GitError:
        return getpass.getuser()
    return f"{name} <{email}>" if name and email else (name or getpass.getuser())


def _branch_candidates(store: GitStore, base: str, branch: str) -> list[int]:
    return [int(v) for _, v in store.trailer_log(f"{base}..{branch}", "Selfcode-Candidate")
            if v.isdigit()]


def _reviewable(store: GitStore, history: History, view: RunView) -> dict[int, CandidateView]:
    """The accepted candidates of the branch's lineage: those on it now, and those a review
    took off it (they may be approved again). Accepted candidates the search kept beside
    the branch, on other lineages, are not: the branch never held them."""
    on_branch = (set(_branch_candidates(store, view.base_commit, view.branch))
                 if store.ref_sha(f"refs/heads/{view.branch}") else set())
    reviewed = set(history.decisions(view.run_id))
    return {c.n: c for c in view.candidates
            if c.status == "accepted" and (c.n in on_branch or c.n in reviewed)}


def apply_review(store: GitStore, history: History, run_id: str, decisions: dict[int, str],
                 reviewer: str, git: GitConfig, note: str = "") -> ReviewOutcome:
    """Record `decisions` (n -> 'approved' | 'rejected') and rebuild the branch if needed."""
    view = load_run(history, run_id, store)
    accepted = _reviewable(store, history, view)
    for n in decisions:
        if n not in accepted:
            listed = ", ".join(map(str, sorted(accepted))) or "none"
            beside = any(c.n == n and c.status == "accepted" for c in view.candidates)
            why = (f"Candidate {n} of run {run_id} is on another lineage of the run's archive "
                   "than its branch (it is kept under its ref; `selfcode show` has its tree)"
                   if beside else f"Candidate {n} of run {run_id} was not accepted by the gate")
            raise SelfcodeError(f"{why}; only the branch's accepted candidates are reviewed "
                                f"({listed}).")
    outcome = ReviewOutcome(run_id=run_id, branch=view.branch, branch_head=view.branch_head,
                            decisions=decisions)
    with RepoLock(store.state_dir(), f"{run_id}.rebuild"):
        store.prune_leftovers()
        archive = Archive(store, history, run_id, view.model, git)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        for n, decision in decisions.items():
            history.add_review(run_id, n, decision, reviewer, note)
            sha = accepted[n].candidate_commit
            if sha:
                archive.annotate(sha, review={"decision": decision, "by": reviewer,
                                              "note": note, "at": at})
        latest = history.decisions(run_id)
        keep = [n for n in sorted(accepted)
                if n not in latest or latest[n].decision != "rejected"]
        outcome.on_branch = keep
        outcome.dropped = [n for n in sorted(accepted) if n not in keep]
        if _branch_candidates(store, view.base_commit, view.branch) != keep:
            _rebuild(store, history, archive, view.base_commit, [accepted[n] for n in keep],
                     [accepted[n] for n in outcome.dropped])
            outcome.rebuilt = True
        outcome.branch_head = store.ref_sha(f"refs/heads/{view.branch}")
    outcome.warnings = _stale_measurements(keep, outcome.dropped)
    return outcome


def _rebuild(store: GitStore, history: History, archive: Archive, base: str,
             keep: list[CandidateView], dropped: list[CandidateView]) -> None:
    picks = []
    for cand in keep:
        sha = cand.candidate_commit or cand.commit
        if sha is None:
            raise SelfcodeError(f"Candidate {cand.n} has no commit to rebuild the branch from.")
        picks.append(sha)
    try:
        new = store.rebuild_branch(archive.run_id, base, picks, identity=archive.identity)
    except PickConflict as exc:
        n = next((c.n for c, sha in zip(keep, picks, strict=True) if sha == exc.sha), "?")
        raise SelfcodeError(
            f"Candidate {n} does not apply without the rejected candidate(s) "
            f"{', '.join(str(c.n) for c in dropped)}; the branch is unchanged. "
            f"Reject candidate {n} too, or approve what it builds on."
        ) from exc
    for cand, old, sha in zip(keep, picks, new, strict=True):
        history.update_candidate(archive.run_id, cand.n, commit_sha=sha)
        text = store.note(NOTES_REF, old)
        if text and sha != old:
            store.add_note(NOTES_REF, sha, text, identity=archive.identity)
    for cand in dropped:
        history.update_candidate(archive.run_id, cand.n, commit_sha=None)


def _stale_measurements(keep: list[int], dropped: list[int]) -> list[str]:
    if not dropped:
        return []
    first = min(dropped)
    return [f"candidate {n} was measured on top of candidate {first}, which is no longer on "
            f"the branch; re-measure it with `selfcode eval` before merging"
            for n in keep if n > first]
