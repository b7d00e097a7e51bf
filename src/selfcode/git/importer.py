"""Runs that exist only in git: a reviewer who fetched `refs/selfcode/*` and
`refs/notes/selfcode` (say, from the nightly CI job) has no history database of those runs.
This rebuilds their records from the candidate commits and their notes, so `runs`, `show`,
`report` and `review` work on any clone.
"""

from __future__ import annotations

from typing import Any

from selfcode.errors import GitError
from selfcode.git.archive import REFS_PREFIX, read_note
from selfcode.git.store import GitStore
from selfcode.history.db import CANDIDATE_STATUSES, History
from selfcode.history.rows import Exchange

IMPORTED = "imported from git refs and notes"


def runs_in_git(store: GitStore) -> list[str]:
    return sorted({ref.split("/")[2] for ref in store.refs(f"{REFS_PREFIX}/")
                   if ref.count("/") == 3})


def _branch_ref(store: GitStore, run_id: str) -> str | None:
    """The run's branch: local, or as fetched from a remote."""
    local = f"refs/heads/selfcode/{run_id}"
    if store.ref_sha(local):
        return local
    return next((ref for ref in store.refs("refs/remotes/")
                 if ref.endswith(f"/selfcode/{run_id}")), None)


def import_run(store: GitStore, history: History, run_id: str) -> bool:
    """Record run `run_id` from git if the history does not know it; True if it did."""
    if history.run(run_id) is not None:
        return False
    kept: dict[int, tuple[str, str, dict[str, Any]]] = {}
    for ref, sha in store.refs(f"{REFS_PREFIX}/{run_id}/").items():
        number = ref.rsplit("/", 1)[1]
        note = read_note(store, sha)
        if not number.isdigit() or note is None:
            continue
        try:
            parent = store.git("rev-parse", f"{sha}^").strip()
        except GitError:
            continue
        kept[int(number)] = (sha, parent, note)
    if not kept:
        return False
    shas = {sha for sha, _, _ in kept.values()}
    base = next(parent for _, (_, parent, _) in sorted(kept.items()) if parent not in shas)
    first = kept[min(kept)][2]
    verdict = first.get("verdict") or {}
    history.start_run(run_id, str(store.root), base, f"selfcode/{run_id}",
                      str(first.get("goal", "")), str(first.get("model", "")),
                      str(verdict.get("sandbox", "")))
    on_branch: dict[int, str] = {}
    branch = _branch_ref(store, run_id)
    if branch:
        for sha, value in store.trailer_log(f"{base}..{branch}", "Selfcode-Candidate"):
            if value.isdigit():
                on_branch[int(value)] = sha
    for n, (sha, parent, note) in sorted(kept.items()):
        status = str(note.get("status", "rejected"))
        history.add_candidate(run_id, n, parent)
        history.update_candidate(
            run_id, n, rationale=str(note.get("rationale", "")),
            diff=store.git("diff", "--no-color", "--no-ext-diff", parent, sha),
            status=status if status in CANDIDATE_STATUSES else "rejected",
            verdict=note.get("verdict"), commit_sha=on_branch.get(n), candidate_commit=sha)
        tokens = note.get("tokens") or {}
        history.add_exchange(Exchange(
            run_id=run_id, candidate_n=n, turn=0, model=str(note.get("model", "")),
            messages=[], reply=None, prompt_tokens=int(tokens.get("prompt", 0)),
            completion_tokens=int(tokens.get("completion", 0)),
            cost_usd=None if note.get("unpriced") else float(note.get("cost_usd", 0.0)),
            latency_s=None, error=IMPORTED))
        review = note.get("review")
        if isinstance(review, dict) and review.get("decision") in ("approved", "rejected"):
            history.add_review(run_id, n, review["decision"], str(review.get("by", "")),
                               str(review.get("note", "")))
    history.finish_run(run_id, "finished", {"stop_reason": IMPORTED})
    return True


def import_all(store: GitStore, history: History) -> list[str]:
    return [run for run in runs_in_git(store) if import_run(store, history, run)]
