"""A run's archive in git: every candidate with a diff is a commit under
`refs/selfcode/<run-id>/<n>` whose parent is the state it was built on, with a note on
`refs/notes/selfcode` holding its verdict, model, tokens and cost. Accepted candidates are
the commits of the branch `selfcode/<run-id>`.

`git log --graph --glob='refs/selfcode/<run-id>/*'` shows the lineage; pushing
`refs/selfcode/*` and `refs/notes/selfcode` shares it. Nothing here runs a hook.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from selfcode.config import GitConfig
from selfcode.errors import GitError
from selfcode.gate.verdict import Verdict
from selfcode.git.commits import candidate_message, note_json
from selfcode.git.store import GitStore
from selfcode.git.worktree import RunWorktree
from selfcode.history.db import History

REFS_PREFIX = "refs/selfcode"
NOTES_REF = "refs/notes/selfcode"
# Lock files a killed git may leave on the refs selfcode owns.
OWN_REFS = ("refs/heads/selfcode", REFS_PREFIX, NOTES_REF)


def candidate_ref(run_id: str, n: int) -> str:
    return f"{REFS_PREFIX}/{run_id}/{n}"


def read_note(store: GitStore, sha: str) -> dict[str, Any] | None:
    text = store.note(NOTES_REF, sha)
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


class Archive:
    """Writes one run's candidates into git and remembers the commits in the history."""

    def __init__(self, store: GitStore, history: History, run_id: str, model: str,
                 git: GitConfig) -> None:
        self.store, self.history, self.run_id = store, history, run_id
        self.model, self.git = model, git

    @property
    def identity(self) -> str:
        return self.git.committer or self.git.author

    def _usage(self, n: int) -> dict[str, Any]:
        usage = self.history.candidate_usage(self.run_id).get(n)
        return asdict(usage) if usage else {}

    def _model(self, usage: dict[str, Any]) -> str:
        return str(usage.get("model") or self.model)

    def _goal(self) -> str:
        run = self.history.run(self.run_id)
        return run.goal if run else ""

    def _message(self, n: int, rationale: str, verdict: Verdict | None,
                 status: str) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
        usage = self._usage(n)
        message, trailers = candidate_message(self.run_id, n, rationale, verdict, status,
                                              self._model(usage), usage, self.git)
        return message, trailers, usage

    def commit_accepted(self, worktree: RunWorktree, n: int, rationale: str, diff: str,
                        verdict: Verdict) -> str:
        """Commit an accepted candidate on the run's branch, then keep its ref and note."""
        message, trailers, usage = self._message(n, rationale, verdict, "accepted")
        sha = worktree.commit_patch(diff, message, trailers, author=self.git.author,
                                    committer=self.git.committer, hooks=self.git.hooks)
        self.keep_commit(n, sha, "accepted", verdict, rationale, usage)
        return sha

    def commit_beside(self, n: int, parent: str, rationale: str, diff: str,
                      verdict: Verdict) -> str:
        """Commit an accepted candidate built on another node than the branch's head (the
        archive's search): a commit on `parent` under its ref, off the branch until it is
        the best (then the branch moves to it, `RunWorktree.move_to`)."""
        message, trailers, usage = self._message(n, rationale, verdict, "accepted")
        sha = self.store.commit_diff(parent, diff, message, trailers,
                                     author=self.git.author, committer=self.git.committer)
        self.keep_commit(n, sha, "accepted", verdict, rationale, usage)
        return sha

    def keep(self, n: int, parent: str, rationale: str, diff: str, verdict: Verdict | None,
             status: str) -> str | None:
        """Keep a candidate that is not on the branch; None when its diff does not apply."""
        message, trailers, usage = self._message(n, rationale, verdict, status)
        try:
            sha = self.store.commit_diff(parent, diff, message, trailers,
                                         author=self.git.author, committer=self.git.committer)
        except GitError as exc:
            self.history.add_event(self.run_id, "archive",
                                   f"candidate {n} is kept in the history only: {exc}", n)
            return None
        self.keep_commit(n, sha, status, verdict, rationale, usage)
        return sha

    def keep_commit(self, n: int, sha: str, status: str, verdict: Verdict | None,
                    rationale: str, usage: dict[str, Any] | None = None) -> None:
        """Point the candidate's ref at `sha`, note it, and record it in the history."""
        usage = self._usage(n) if usage is None else usage
        self.store.update_ref(candidate_ref(self.run_id, n), sha, identity=self.identity)
        note = note_json(self.run_id, n, status, verdict, self._model(usage), usage,
                         rationale=rationale, goal=self._goal())
        self.store.add_note(NOTES_REF, sha, note, identity=self.identity)
        self.history.update_candidate(self.run_id, n, candidate_commit=sha)

    def annotate(self, sha: str, **fields: Any) -> None:
        """Add fields (e.g. a review decision) to the note of `sha`."""
        data = read_note(self.store, sha) or {"selfcode": 1, "run": self.run_id}
        data.update(fields)
        self.store.add_note(NOTES_REF, sha, json.dumps(data, indent=1) + "\n",
                            identity=self.identity)
