"""The run's linked worktree: its branch `selfcode/<run-id>` checked out under the state
directory, where candidates are applied and committed (the user's checkout never is).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import git
from git.exc import GitCommandError, GitCommandNotFound, InvalidGitRepositoryError, NoSuchPathError

from selfcode.config import SELFCODE_IDENTITY
from selfcode.errors import GitError
from selfcode.git.command import (
    WORKTREE_CONFIG,
    Trailers,
    commit_message,
    configure,
    git_failure,
    identity_env,
    remove_tree,
)

if TYPE_CHECKING:  # store.py imports this module to hand out worktrees
    from selfcode.git.store import GitStore

BRANCH_PREFIX = "selfcode/"


class PickConflict(GitError):
    """A commit could not be cherry-picked while rebuilding a run's branch."""

    def __init__(self, sha: str, detail: str) -> None:
        super().__init__(f"Commit {sha[:10]} does not apply on the rebuilt branch: {detail}")
        self.sha = sha


class RunWorktree:
    """The run's branch `selfcode/<run-id>`, checked out under the state directory."""

    def __init__(self, store: GitStore, run_id: str, path: Path) -> None:
        self.store = store
        self.run_id = run_id
        self.branch = BRANCH_PREFIX + run_id
        self.path = Path(path)
        try:
            self._repo = git.Repo(self.path)
        except (InvalidGitRepositoryError, NoSuchPathError) as exc:
            raise GitError(
                f"The worktree of run {run_id} at {self.path} is broken; remove it and try again."
            ) from exc
        self.git_dir = Path(self._repo.git_dir).resolve()
        configure(self._repo.git, self.git_dir, self.path.resolve(), WORKTREE_CONFIG)

    def _git(self, command: str, *args: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._repo.git, command)(*args, **kwargs)
        except (GitCommandError, GitCommandNotFound) as exc:
            raise GitError(
                f"git {command} failed in the worktree of run {self.run_id}: {git_failure(exc)}."
            ) from exc

    def reset(self) -> None:
        """Make the worktree and its index exactly the branch's HEAD."""
        self._git("reset", "--hard", "--quiet", "HEAD")
        self._git("clean", "-ffdxq")

    def close(self) -> None:
        self._repo.close()

    def move_to(self, sha: str) -> None:
        """Point the run's branch at `sha` (only if it is still where this worktree has it)
        and check it out: the branch follows the best lineage of the run's archive."""
        self.store.update_ref(f"refs/heads/{self.branch}", sha, old=self.head())
        self.reset()

    def head(self) -> str:
        return str(self._git("rev-parse", "--verify", "HEAD^{commit}")).strip()

    def tracked_tar(self) -> bytes:
        return self.store.tracked_tar(self.head())

    def read_files(self, paths: Iterable[str]) -> dict[str, str | None]:
        return self.store.read_files(self.head(), paths)

    def list_files(self) -> list[str]:
        return self.store.list_files(self.head())

    def is_clean(self) -> bool:
        """True if the worktree and its index match HEAD (untracked files count as changes)."""
        return not str(self._git("status", "--porcelain=v1", "-z", "--untracked-files=all")).strip(
            "\0"
        )

    def commit_patch(
        self,
        diff: str,
        message: str,
        trailers: Trailers | None = None,
        *,
        author: str = SELFCODE_IDENTITY,
        committer: str | None = None,
        hooks: bool = False,
    ) -> str:
        """Apply a unified diff to the run's branch and commit it; return the new commit's sha.

        No hook of the target runs unless `hooks` (the user's opt-in). On any failure the
        worktree is reset to its HEAD and GitError is raised.
        """
        env = identity_env(author, committer)
        text = commit_message(message, trailers or {})
        with self.store.scratch("commit-") as tmp:
            patch_file = Path(tmp) / "candidate.diff"
            message_file = Path(tmp) / "message.txt"
            with patch_file.open("w", encoding="utf-8", newline="") as fh:
                fh.write(diff if diff.endswith("\n") else diff + "\n")
            with message_file.open("w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            try:
                self.reset()
                self._git("apply", "--index", "--whitespace=nowarn", str(patch_file))
                args = ["--quiet", "--no-gpg-sign", "--cleanup=whitespace", "-F",
                        str(message_file)]
                if hooks:
                    try:
                        self._with_hooks().commit(*args, env=env)
                    except (GitCommandError, GitCommandNotFound) as exc:
                        raise GitError(f"git commit (with the target's hooks, as configured) "
                                       f"failed: {git_failure(exc)}.") from exc
                else:
                    self._git("commit", "--no-verify", *args, env=env)
            except GitError as exc:
                with contextlib.suppress(GitError):
                    self.reset()
                raise GitError(
                    f"Could not commit the patch on {self.branch}: {str(exc).split(': ', 1)[-1]}"
                ) from exc
        return self.head()

    def _with_hooks(self) -> git.Git:
        """A git command for this worktree that runs the target's hooks (the user opted in)."""
        hooked = git.Git(self.path)
        options = [o for o in WORKTREE_CONFIG if not o.startswith("core.hooksPath=")]
        configure(hooked, self.git_dir, self.path.resolve(), options)
        return hooked

    def cherry_pick(self, sha: str, identity: str = SELFCODE_IDENTITY) -> str:
        """Pick commit `sha` onto HEAD and return the new HEAD; PickConflict (after aborting
        the pick) if it does not apply."""
        try:
            self._git("cherry-pick", "--no-rerere-autoupdate", sha, env=identity_env(identity))
        except GitError as exc:
            with contextlib.suppress(GitError):
                self._git("cherry-pick", "--abort")
            raise PickConflict(sha, str(exc)) from exc
        return self.head()

    def remove(self) -> None:
        """Remove the worktree directory; the branch and its commits stay."""
        self.close()
        self.store.git("worktree", "remove", "--force", str(self.path))
        if self.path.exists():
            remove_tree(self.path)
