"""Everything selfcode does to a git repository: read it, keep two runs apart, work on a run's
own branch, and archive every candidate in refs and notes.

The user's working tree, index, HEAD and current branch are never written. Modules, lowest
layer first:

* `git_failure`, `identity_env`, `commit_message` (command.py): how every git command is run
  (no hooks, no fsmonitor, GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE explicit) and what
  identity and message text it is given.
* `RepoLock`, `LockHolder` (lock.py): one run per repository, and who holds the lock.
* `GitStore` (store.py): the user's repository: files and tars of a commit, refs, notes,
  commits made with plumbing only; the entry point to everything below.
* `RunWorktree`, `PickConflict` (worktree.py): the run's branch checked out in a linked
  worktree under the state directory, where candidates are committed.
* runs.py: creating, reopening, rebuilding and pruning run worktrees (as `GitStore` methods).
* archive.py, commits.py, importer.py, review.py: a run's candidates as commits and notes,
  their messages, rebuilding runs from git, and human review.

Import the names above from here. The modules of the last line are imported from themselves:
they sit above history/ and report/, which import this package, so re-exporting them here
would make an import cycle.

Inside this package `import git` is GitPython (imports are absolute), never this package.
"""

from selfcode.git.command import Trailers, commit_message, git_failure, identity_env
from selfcode.git.lock import LOCK_FILE, LockHolder, RepoLock
from selfcode.git.store import SCRATCH_DIR, WORKTREES_DIR, GitStore
from selfcode.git.worktree import BRANCH_PREFIX, PickConflict, RunWorktree

__all__ = [
    "BRANCH_PREFIX",
    "LOCK_FILE",
    "SCRATCH_DIR",
    "WORKTREES_DIR",
    "GitStore",
    "LockHolder",
    "PickConflict",
    "RepoLock",
    "RunWorktree",
    "Trailers",
    "commit_message",
    "git_failure",
    "identity_env",
]
