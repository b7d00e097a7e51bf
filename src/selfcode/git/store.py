"""The user's repository, as selfcode sees it: read-only, except for run branches.

The user's working tree, index, HEAD and current branch are never written (invariant 1):
a run works on its own branch, `selfcode/<run-id>`, checked out in a linked worktree under
`<state dir>/worktrees/<run-id>` (runs.py, worktree.py). Every git command runs with the
target's hooks and fsmonitor disabled, and with GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE set
explicitly (command.py), so that variables inherited from a calling git hook cannot redirect a
command to another index. Besides reading files and exporting tars, the store writes the
run's archive with plumbing only: loose commits, refs and notes.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import git
from git.exc import GitCommandError, GitCommandNotFound, InvalidGitRepositoryError, NoSuchPathError
from git.objects import Blob, Commit, Tree

from selfcode import config
from selfcode.config import SELFCODE_IDENTITY
from selfcode.errors import GitError
from selfcode.git import runs
from selfcode.git.command import (
    LINK_MODE,
    SAFE_CONFIG,
    SUBMODULE_MODE,
    Trailers,
    check_git_accepts,
    commit_message,
    configure,
    git_failure,
    identity_env,
)
from selfcode.git.lock import RepoLock
from selfcode.git.worktree import RunWorktree

WORKTREES_DIR = "worktrees"
SCRATCH_DIR = "tmp"


class GitStore:
    """The user's repository, as selfcode sees it: read-only, except for run branches."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.exists():
            raise GitError(f"{path} does not exist.")
        check_git_accepts(path)
        try:
            repo = git.Repo(path, search_parent_directories=True)
        except (InvalidGitRepositoryError, NoSuchPathError):
            raise GitError(
                f"{path} is not inside a git repository; run `git init` and commit your code first."
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            repo.close()
            raise GitError(f"{path} is a bare git repository; selfcode needs a working tree.")
        self._repo = repo
        self.root = Path(repo.working_tree_dir).resolve()
        self.git_dir = Path(repo.git_dir).resolve()
        self.common_dir = Path(repo.common_dir).resolve()
        configure(repo.git, self.git_dir, self.root, SAFE_CONFIG)
        # Reading the status must never rewrite the user's index.
        repo.git.update_environment(GIT_OPTIONAL_LOCKS="0")
        try:
            has_commits = repo.head.is_valid()
        except (GitCommandError, ValueError):
            has_commits = False
        if not has_commits:
            reason = _unreadable_head(repo, self.root)
            repo.close()
            raise GitError(reason)

    # -- plumbing ---------------------------------------------------------------------------

    def _git(self, command: str, *args: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._repo.git, command)(*args, **kwargs)
        except (GitCommandError, GitCommandNotFound) as exc:
            raise GitError(f"git {command} failed in {self.root}: {git_failure(exc)}.") from exc

    def _commit(self, rev: str) -> Commit:
        unknown = GitError(f"'{rev}' is not a commit in the repository at {self.root}.")
        if not rev or rev.startswith("-"):
            raise unknown
        try:
            sha = str(self._repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")).strip()
            return self._repo.commit(sha)
        except (GitCommandError, ValueError) as exc:
            raise unknown from exc

    def close(self) -> None:
        """Stop the git helper processes GitPython keeps open."""
        self._repo.close()

    def __enter__(self) -> GitStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def state_dir(self) -> Path:
        return config.state_dir(self.common_dir)

    def worktrees_dir(self) -> Path:
        return self.state_dir() / WORKTREES_DIR

    def scratch_dir(self) -> Path:
        return self.state_dir() / SCRATCH_DIR

    def scratch(self, prefix: str) -> tempfile.TemporaryDirectory[str]:
        """A temporary directory under the state dir, so a crash's leftovers are found again."""
        base = self.scratch_dir()
        base.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=prefix, dir=base)

    def lock(self, run_id: str | None = None) -> RepoLock:
        return RepoLock(self.state_dir(), run_id)

    def head_commit(self) -> str:
        return self._commit("HEAD").hexsha

    def resolve(self, rev: str) -> str:
        """The full sha of the commit `rev` names."""
        return self._commit(rev).hexsha

    def is_dirty(self) -> bool:
        """True if tracked files are modified or staged; untracked files do not count."""
        out = self._git("status", "--porcelain=v1", "-z", "--untracked-files=no")
        return bool(str(out).strip("\0\n "))

    def tracked_tar(self, rev: str = "HEAD") -> bytes:
        """A tar of the files committed at `rev`, and nothing else (no .git, no untracked files).

        Built from the commit's tree rather than with `git archive`, which would honour the
        target's `export-ignore` / `export-subst` attributes and so could drop its tests.
        """
        commit = self._commit(rev)
        mtime = commit.committed_date
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            entries = sorted(commit.tree.traverse(), key=lambda o: str(o.path))
            for obj in entries:
                info = tarfile.TarInfo(str(obj.path))  # type: ignore[union-attr]
                info.mtime = mtime
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                mode = int(obj.mode)  # type: ignore[union-attr]
                if isinstance(obj, Blob) and mode != SUBMODULE_MODE:
                    data = obj.data_stream.read()
                    if mode == LINK_MODE:
                        info.type = tarfile.SYMTYPE
                        info.linkname = data.decode("utf-8", "surrogateescape")
                        info.mode = 0o777
                        tar.addfile(info)
                    else:
                        info.size = len(data)
                        info.mode = 0o755 if mode & 0o111 else 0o644
                        tar.addfile(info, io.BytesIO(data))
                else:  # a directory, or a submodule (an empty directory, as git archive does)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
        return buf.getvalue()

    def read_files(self, rev: str, paths: Iterable[str]) -> dict[str, str | None]:
        """The text of each path at `rev` (bad UTF-8 replaced); None where there is no file."""
        tree = self._commit(rev).tree
        out: dict[str, str | None] = {}
        for path in paths:
            out[path] = _blob_text(tree, path)
        return out

    def list_files(self, rev: str = "HEAD") -> list[str]:
        """Every file (symlinks included, submodules not) committed at `rev`, sorted."""
        tree = self._commit(rev).tree
        return sorted(
            str(obj.path)
            for obj in tree.traverse()
            if isinstance(obj, Blob) and int(obj.mode) != SUBMODULE_MODE
        )

    # -- plumbing for the run's archive: loose commits, refs, notes --------------------------

    def git(self, command: str, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run one git command in the user's repository (no hooks, no fsmonitor); its stdout.

        Never use it for porcelain that writes the user's index or working tree.
        """
        kwargs: dict[str, Any] = {"env": dict(env)} if env else {}
        return str(self._git(command, *args, **kwargs))

    def commit_diff(self, parent: str, diff: str, message: str, trailers: Trailers = (), *,
                    author: str = SELFCODE_IDENTITY, committer: str | None = None) -> str:
        """Commit `diff` applied to `parent` without any worktree, branch or the user's index.

        The commit is made with plumbing (a private index, write-tree, commit-tree), so no
        hook can run; it is reachable only through the ref the caller points at it.
        """
        parent_sha = self._commit(parent).hexsha
        env = identity_env(author, committer)
        with self.scratch("candidate-") as tmp:
            env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
            patch_file, message_file = Path(tmp) / "candidate.diff", Path(tmp) / "message.txt"
            patch_file.write_text(diff if diff.endswith("\n") else diff + "\n", "utf-8")
            message_file.write_text(commit_message(message, trailers), "utf-8")
            self._git("read-tree", parent_sha, env=env)
            self._git("apply", "--cached", "--whitespace=nowarn", str(patch_file), env=env)
            tree = str(self._git("write-tree", env=env)).strip()
            return str(self._git("commit-tree", tree, "-p", parent_sha, "-F", str(message_file),
                                 env=env)).strip()

    def diff(self, old: str, new: str) -> str:
        """The patch from commit `old` to commit `new` (binary-safe, no external diff)."""
        return self.git("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                        "--full-index", old, new) + "\n"

    def applies(self, parent: str, diff: str) -> bool:
        """Whether `diff` applies to `parent`'s tree (read only: a private index, no hook)."""
        with self.scratch("applies-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            patch = Path(tmp) / "p.diff"
            patch.write_text(diff, "utf-8")
            try:
                self._git("read-tree", self._commit(parent).hexsha, env=env)
                self._git("apply", "--cached", "--check", str(patch), env=env)
            except GitError:
                return False
        return True

    def ref_sha(self, ref: str) -> str | None:
        """The commit `ref` points at, or None if there is no such ref."""
        try:
            out = self._repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except GitCommandError:
            return None
        return str(out).strip() or None

    def update_ref(self, ref: str, sha: str, old: str | None = None,
                   identity: str = SELFCODE_IDENTITY) -> None:
        """Point `ref` at `sha`; with `old`, only if it still points there (compare-and-swap)."""
        args = ["-m", "selfcode", ref, sha, *([old] if old is not None else [])]
        self._git("update-ref", *args, env=identity_env(identity))

    def refs(self, prefix: str) -> dict[str, str]:
        """Refs under `prefix` (e.g. 'refs/selfcode/<run>/') and the objects they name."""
        out = str(self._git("for-each-ref", "--format=%(refname) %(objectname)", prefix))
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def add_note(self, notes_ref: str, sha: str, text: str,
                 identity: str = SELFCODE_IDENTITY) -> None:
        """Attach (or replace) the note of `sha` under `notes_ref`."""
        with self.scratch("note-") as tmp:
            note_file = Path(tmp) / "note"
            note_file.write_text(text, "utf-8")
            self._git("notes", f"--ref={notes_ref}", "add", "-f", "-F", str(note_file), sha,
                      env=identity_env(identity))

    def note(self, notes_ref: str, sha: str) -> str | None:
        try:
            return str(self._repo.git.notes(f"--ref={notes_ref}", "show", sha))
        except GitCommandError:
            return None

    def trailer_log(self, rev_range: str, key: str) -> list[tuple[str, str]]:
        """(sha, value of trailer `key`) for each commit of `rev_range`, oldest first."""
        fmt = f"--format=%H %(trailers:key={key},valueonly,separator=%x2C)"
        out = str(self._git("log", "--reverse", fmt, rev_range))
        return [(line[:40], line[41:].strip()) for line in out.splitlines() if len(line) >= 40]

    def commits_between(self, base: str, head: str) -> set[str]:
        """The commits reachable from `head` and not from `base` (`git rev-list base..head`):
        which of a run's commits its branch ends up holding."""
        old, new = self._commit(base).hexsha, self._commit(head).hexsha
        return set(str(self._git("rev-list", f"{old}..{new}")).split())

    def clear_ref_locks(self, *prefixes: str) -> list[str]:
        """Remove `*.lock` files a killed git left on refs under `prefixes` (ours only)."""
        removed = []
        for prefix in prefixes:
            target = self.common_dir / prefix
            candidates = [Path(str(target) + ".lock")]
            if target.is_dir():
                candidates.extend(target.rglob("*.lock"))
            for lock in candidates:
                if lock.is_file():
                    lock.unlink()
                    removed.append(str(lock.relative_to(self.common_dir)))
        return removed

    # -- runs (runs.py) ---------------------------------------------------------------------

    def create_run(self, run_id: str, base: str = "HEAD") -> RunWorktree:
        """Create branch `selfcode/<run-id>` at `base` and check it out in the run's worktree."""
        return runs.create_run(self, run_id, base)

    def open_run(self, run_id: str, base: str | None = None) -> RunWorktree:
        """The worktree of an existing run branch (recreated if removed), reset to its HEAD;
        a branch removed for having no commit is made again at `base`, if given."""
        return runs.open_run(self, run_id, base)

    def remove_branch_without_commits(self, run_id: str, base: str) -> bool:
        """Delete the run's branch if it is still at `base` and checked out nowhere."""
        return runs.remove_branch_without_commits(self, run_id, base)

    def remove_run_worktree(self, run_id: str) -> bool:
        """Remove the worktree of run `run_id` (a crashed process's, locks and all), if any."""
        return runs.remove_run_worktree(self, run_id)

    def prune_leftovers(self) -> list[str]:
        """Remove run worktrees left behind, except the one a live selfcode process holds."""
        return runs.prune_leftovers(self)

    def rebuild_branch(self, run_id: str, base: str, picks: Sequence[str], *,
                       identity: str = SELFCODE_IDENTITY) -> list[str]:
        """Make the run's branch `base` plus `picks` cherry-picked in order; the new shas."""
        return runs.rebuild_branch(self, run_id, base, picks, identity=identity)


def _unreadable_head(repo: git.Repo, root: Path) -> str:
    """Why HEAD names no commit selfcode can read, as one sentence: an unborn branch has no
    commits yet; anything else (a missing object, a repository git refuses) in git's words,
    never mistaken for an empty repository."""
    try:
        repo.git.rev_parse("--verify", "--quiet", "HEAD")
    except GitCommandError as exc:
        if exc.status == 1 and not str(exc.stderr or "").strip():  # --quiet: no such ref
            return f"The git repository at {root} has no commits yet; commit your code first."
        return f"git cannot read the repository at {root}: {git_failure(exc)}."
    try:
        repo.git.log("-1", "--format=%H", "HEAD")
    except GitCommandError as exc:
        return f"git cannot read the commit HEAD names in {root}: {git_failure(exc)}."
    return (f"selfcode cannot read the commit HEAD names in {root}, though git can; run "
            "`git fsck` there.")


def _blob_text(tree: Tree, path: str) -> str | None:
    try:
        obj = tree / path.strip("/")
    except (KeyError, ValueError):
        return None
    if not isinstance(obj, Blob) or int(obj.mode) == SUBMODULE_MODE:
        return None
    data: bytes = obj.data_stream.read()
    return data.decode("utf-8", "replace")
