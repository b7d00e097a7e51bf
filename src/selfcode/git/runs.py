"""The run branches `selfcode/<run-id>` and their worktrees under `<state dir>/worktrees`:
naming a run, creating and reopening its worktree, rebuilding its branch from picks, and
removing the worktrees a crashed run left behind (never one the user made).

`GitStore` offers each of these as a method; they live here so that store.py stays about
the repository itself.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from selfcode.config import SELFCODE_IDENTITY
from selfcode.errors import GitError
from selfcode.git.command import remove_tree
from selfcode.git.lock import LockHolder, RepoLock
from selfcode.git.worktree import BRANCH_PREFIX, RunWorktree

if TYPE_CHECKING:  # store.py imports this module for its run methods
    from selfcode.git.store import GitStore

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_run_id(store: GitStore, run_id: str) -> str:
    """The branch of run `run_id`; GitError if the id cannot name a run."""
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id or run_id.endswith((".lock", ".")):
        raise GitError(
            f"'{run_id}' cannot name a run; use letters, digits, '.', '_' and '-' only."
        )
    branch = BRANCH_PREFIX + run_id
    try:
        store.git("check-ref-format", "--branch", branch)
    except GitError:
        raise GitError(
            f"'{run_id}' cannot name a run: {branch} is no valid branch name."
        ) from None
    return branch


def _branch_exists(store: GitStore, branch: str) -> bool:
    try:
        store.git("show-ref", "--verify", "--quiet", f"refs/heads/{branch}")
    except GitError:
        return False
    return True


def _worktrees(store: GitStore) -> dict[Path, str | None]:
    """The registered worktrees: path -> branch ref (None when detached)."""
    out = store.git("worktree", "list", "--porcelain")
    result: dict[Path, str | None] = {}
    current: Path | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree ") :]).resolve()
            result[current] = None
        elif line.startswith("branch ") and current is not None:
            result[current] = line[len("branch ") :]
    return result


def create_run(store: GitStore, run_id: str, base: str = "HEAD") -> RunWorktree:
    """Create branch `selfcode/<run-id>` at `base` and check it out in the run's worktree."""
    branch = check_run_id(store, run_id)
    base_sha = store.resolve(base)
    if _branch_exists(store, branch):
        raise GitError(
            f"Branch {branch} already exists; resume that run or choose another run id."
        )
    path = store.worktrees_dir() / run_id
    if path.exists() or path.is_symlink():
        raise GitError(f"{path} already exists; run `selfcode` again to prune leftovers first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    # --no-checkout: the checkout happens in the new worktree with its own index, never
    # with an index variable inherited from the caller.
    store.git("worktree", "add", "--quiet", "--no-checkout", "-b", branch, str(path), base_sha)
    try:
        run = RunWorktree(store, run_id, path)
        run.reset()
    except BaseException:
        with contextlib.suppress(GitError):
            store.git("worktree", "remove", "--force", str(path))
        with contextlib.suppress(GitError):
            store.git("branch", "-D", branch)
        raise
    return run


def open_run(store: GitStore, run_id: str, base: str | None = None) -> RunWorktree:
    """The worktree of an existing run branch (recreated if removed), reset to its HEAD.

    With `base` (the commit the run started at), a branch that was removed because it had
    no commit (`remove_branch_without_commits`) is made again there."""
    branch = check_run_id(store, run_id)
    if not _branch_exists(store, branch):
        if base is not None:
            return create_run(store, run_id, base)
        raise GitError(f"There is no run branch {branch} in the repository at {store.root}.")
    path = (store.worktrees_dir() / run_id).resolve()
    ref = f"refs/heads/{branch}"
    worktrees = _worktrees(store)
    for wt_path, wt_ref in worktrees.items():
        if wt_ref == ref and wt_path != path:
            raise GitError(
                f"Branch {branch} is checked out in {wt_path}; "
                "switch that worktree to another branch first."
            )
    if path in worktrees and not (path / ".git").exists():
        store.git("worktree", "remove", "--force", str(path))
        worktrees.pop(path)
    if path in worktrees:
        if worktrees[path] != ref:
            raise GitError(
                f"{path} holds another branch than {branch}; remove it and try again."
            )
    else:
        if path.exists() or path.is_symlink():
            remove_tree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        store.git("worktree", "add", "--quiet", "--no-checkout", str(path), branch)
    run = RunWorktree(store, run_id, path)
    run.reset()
    return run


def remove_branch_without_commits(store: GitStore, run_id: str, base: str) -> bool:
    """Delete the run's branch if it has no commit beyond `base`, the commit it started at;
    True if it did. A branch that moved (a commit, a rebuild, the user's own work) or that
    a worktree has checked out (the user's checkout too) is never touched, and the delete
    is a compare-and-swap, so a commit made meanwhile keeps it. The candidates' refs under
    refs/selfcode/<run-id>/ and their notes stay."""
    branch = check_run_id(store, run_id)
    ref = f"refs/heads/{branch}"
    # rev-parse in a process of its own: after a Ctrl-C, GitPython's long-lived helpers
    # (its object reader) died with the rest of the process group.
    base_sha = store.ref_sha(base)
    if base_sha is None or store.ref_sha(ref) != base_sha or ref in _worktrees(store).values():
        return False
    store.git("update-ref", "-m", "selfcode: the run made no commit", "-d", ref, base_sha)
    return True


def remove_run_worktree(store: GitStore, run_id: str) -> bool:
    """Remove the worktree of run `run_id` (a crashed process's, locks and all), if any."""
    check_run_id(store, run_id)
    path = (store.worktrees_dir() / run_id).resolve()
    found = path in _worktrees(store)
    if found:
        store.git("worktree", "remove", "--force", str(path))
    if path.exists() or path.is_symlink():
        remove_tree(path)
        found = True
    return found


def prune_leftovers(store: GitStore) -> list[str]:
    """Remove run worktrees left behind, except the one a live selfcode process holds.

    Returns the run ids whose worktrees were removed. Only worktrees under
    `state_dir()/worktrees` are touched, so unlike `git worktree prune` this never
    deregisters worktrees the user made. Branches are kept.
    """
    holder = RepoLock.holder(store.state_dir())
    keep = _runs_in_use(holder)
    if keep is None:
        return []  # a live run whose worktree we cannot tell apart: touch nothing
    if holder is None or not holder.alive or holder.pid == os.getpid():
        _clear_scratch(store)  # nobody else is running, so nobody else's scratch is there
    removed = _remove_registered(store, keep)
    removed |= _remove_unregistered(store, keep | removed)
    return sorted(removed)


def _runs_in_use(holder: LockHolder | None) -> set[str] | None:
    """The runs whose worktrees the lock's live holder may be using; None if it cannot be told."""
    if holder is None or not holder.alive:
        return set()
    if holder.run_id is None:
        return set() if holder.pid == os.getpid() else None
    return {holder.run_id}


def _clear_scratch(store: GitStore) -> None:
    scratch = store.scratch_dir()
    if scratch.is_dir():
        for leftover in scratch.iterdir():
            remove_tree(leftover)


def _remove_registered(store: GitStore, keep: set[str]) -> set[str]:
    """Remove the worktrees git knows under the worktrees dir, except `keep`; their names."""
    base = store.worktrees_dir().resolve()
    removed: set[str] = set()
    for path in sorted(p for p in _worktrees(store) if p.parent == base and p.name not in keep):
        store.git("worktree", "remove", "--force", str(path))
        if path.exists():
            remove_tree(path)
        removed.add(path.name)
    return removed


def _remove_unregistered(store: GitStore, skip: set[str]) -> set[str]:
    """Remove whatever else lies in the worktrees dir, except `skip`; their names."""
    base = store.worktrees_dir()
    if not base.is_dir():
        return set()
    removed: set[str] = set()
    for path in sorted(base.iterdir()):
        if path.name in skip:
            continue
        if _belongs_elsewhere(store, path):
            continue  # SELFCODE_HOME shared with another repository: its run, not ours
        remove_tree(path)
        removed.add(path.name)
    return removed


def _belongs_elsewhere(store: GitStore, path: Path) -> bool:
    """True if `path` is a live worktree of some other repository."""
    dot_git = path / ".git"
    try:
        text = dot_git.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    if not text.startswith("gitdir: "):
        return False
    admin = Path(text[len("gitdir: ") :])
    if not admin.is_absolute():
        admin = path / admin
    admin = admin.resolve()
    return admin.exists() and store.common_dir not in admin.parents


def rebuild_branch(store: GitStore, run_id: str, base: str, picks: Sequence[str], *,
                   identity: str = SELFCODE_IDENTITY) -> list[str]:
    """Make the run's branch `base` plus `picks` cherry-picked in order; the new shas.

    Picking happens in a temporary worktree under the state directory, never in a
    checkout of the user's; the branch moves only when every pick applied, and only if
    nobody moved it meanwhile. A pick that does not apply raises PickConflict.
    """
    ref = "refs/heads/" + check_run_id(store, run_id)
    old = store.ref_sha(ref)
    if old is None:
        raise GitError(f"There is no run branch {ref[11:]} in the repository at {store.root}.")
    base_sha = store.resolve(base)
    path = store.worktrees_dir() / f"{run_id}.rebuild"
    if path.exists():
        _discard_worktree(store, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.git("worktree", "add", "--quiet", "--no-checkout", "--detach", str(path), base_sha)
    new: list[str] = []
    tree = RunWorktree(store, run_id, path)
    try:
        tree.reset()
        for sha in picks:
            new.append(tree.cherry_pick(sha, identity))
    finally:
        tree.close()
        _discard_worktree(store, path)
    store.update_ref(ref, new[-1] if new else base_sha, old, identity)
    return new


def _discard_worktree(store: GitStore, path: Path) -> None:
    """Deregister and delete a temporary worktree, whatever state it was left in."""
    with contextlib.suppress(GitError):
        store.git("worktree", "remove", "--force", str(path))
    remove_tree(path)
