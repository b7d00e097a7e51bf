"""Everything selfcode does to a git repository, and the lock that keeps two runs apart.

The user's working tree, index, HEAD and current branch are never written (invariant 1):
a run works on its own branch, `selfcode/<run-id>`, checked out in a linked worktree under
`<state dir>/worktrees/<run-id>`. Every git command runs with the target's hooks and
fsmonitor disabled, and with GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE set explicitly, so
that variables inherited from a calling git hook cannot redirect a command to another index.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import secrets
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import git
from git.exc import GitCommandError, GitCommandNotFound, InvalidGitRepositoryError, NoSuchPathError
from git.objects import Blob, Commit, Tree

from selfcode import config
from selfcode.errors import GitError, LockedError

BRANCH_PREFIX = "selfcode/"
DEFAULT_IDENTITY = "selfcode <selfcode@localhost>"
LOCK_FILE = "lock"
WORKTREES_DIR = "worktrees"
SCRATCH_DIR = "tmp"

# Configuration forced on every git command: no hook or fsmonitor of the target ever runs,
# and nothing may prompt for a signing passphrase.
_SAFE_CONFIG = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgsign=false",
]
# In the run's worktree, files are checked out and committed exactly as the patch has them.
_WORKTREE_CONFIG = [*_SAFE_CONFIG, "core.autocrlf=false", "core.safecrlf=false"]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_IDENTITY = re.compile(r"\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>\s*")
_LINK_MODE = 0o120000
_SUBMODULE_MODE = 0o160000


def _git_failure(exc: GitCommandError | GitCommandNotFound) -> str:
    """The useful part of a failed git command's stderr, on one line."""
    if isinstance(exc, GitCommandNotFound):
        return "git is not installed or not on PATH"
    raw = str(exc.stderr or "").strip()
    prefix = "stderr: '"
    if raw.startswith(prefix) and raw.endswith("'"):
        raw = raw[len(prefix) : -1]
    lines = []
    for line in raw.splitlines():
        line = line.strip()
        for tag in ("error: ", "fatal: "):
            if line.startswith(tag):
                line = line[len(tag) :]
        if line:
            lines.append(line.rstrip("."))
    text = "; ".join(lines) or f"git exited with status {exc.status}"
    return text if len(text) <= 400 else text[:397] + "..."


def _configure(g: git.Git, git_dir: Path, work_tree: Path, options: list[str]) -> None:
    g.set_persistent_git_options(c=options)
    g.update_environment(
        GIT_DIR=str(git_dir),
        GIT_WORK_TREE=str(work_tree),
        GIT_INDEX_FILE=str(git_dir / "index"),
    )


def _parse_identity(identity: str) -> tuple[str, str]:
    match = _IDENTITY.fullmatch(identity)
    if not match or not match["name"]:
        raise ValueError(f"identity must look like 'Name <email>', got {identity!r}")
    return match["name"], match["email"]


def identity_env(author: str, committer: str | None = None) -> dict[str, str]:
    """GIT_AUTHOR_* / GIT_COMMITTER_* for 'Name <email>' identities."""
    author_name, author_email = _parse_identity(author)
    committer_name, committer_email = _parse_identity(committer or author)
    return {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": committer_name,
        "GIT_COMMITTER_EMAIL": committer_email,
    }


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


# --------------------------------------------------------------------------------------------
# The lock


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the process that wrote it."""

    pid: int
    run_id: str | None
    host: str | None
    alive: bool


class RepoLock:
    """One selfcode run per repository: `<state_dir>/lock` holds the owner's PID and run id.

    The file is created with O_CREAT|O_EXCL; a lock whose process is dead is taken over and
    `stale_pid` tells the caller whose it was. The short critical section (read, check,
    replace) is serialised with flock on `lock.guard`, so two processes can never both take
    over the same stale lock, and a half-written lock can only come from a dead writer.
    """

    def __init__(self, state_dir: Path, run_id: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self.run_id = run_id
        self.stale_pid: int | None = None
        self.took_over = False
        self.held = False
        self._token = secrets.token_hex(8)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / (LOCK_FILE + ".guard"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        """The lock's content; None if it is unreadable (its writer died while writing)."""
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError):
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, int):  # a bare PID, written by hand
            data = {"pid": data}
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        return data

    @staticmethod
    def _describe(data: Mapping[str, Any]) -> LockHolder:
        pid = int(data["pid"])
        host = data.get("host")
        run_id = data.get("run_id")
        # A PID from another machine (shared file system) cannot be checked: assume it lives.
        alive = True if host and host != socket.gethostname() else _pid_alive(pid)
        return LockHolder(
            pid=pid,
            run_id=run_id if isinstance(run_id, str) else None,
            host=host if isinstance(host, str) else None,
            alive=alive,
        )

    @classmethod
    def holder(cls, state_dir: Path) -> LockHolder | None:
        """Who holds the lock in `state_dir`, if anyone wrote one (alive or not)."""
        try:
            data = cls._read(Path(state_dir) / LOCK_FILE)
        except FileNotFoundError:
            return None
        return cls._describe(data) if data is not None else None

    def acquire(self) -> int | None:
        """Take the lock; return the PID of the dead process it was taken over from, if any."""
        if self.held:
            raise RuntimeError("this RepoLock is already held")
        with self._guard():
            for _ in range(3):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    try:
                        data = self._read(self.path)
                    except FileNotFoundError:
                        continue
                    if data is not None:
                        holder = self._describe(data)
                        if holder.alive:
                            where = (
                                f" on {holder.host}"
                                if holder.host and holder.host != socket.gethostname()
                                else ""
                            )
                            raise LockedError(
                                f"Another selfcode run (pid {holder.pid}{where}) is working on "
                                "this repository; wait for it or stop it."
                            ) from None
                        self.stale_pid = holder.pid
                    self.took_over = True
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                content = {
                    "pid": os.getpid(),
                    "run_id": self.run_id,
                    "host": socket.gethostname(),
                    "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "token": self._token,
                }
                try:
                    os.write(fd, (json.dumps(content) + "\n").encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.held = True
                return self.stale_pid
        raise LockedError(
            f"Could not take the selfcode lock {self.path}; remove it if no run is active."
        )

    def release(self) -> None:
        """Give the lock up; does nothing if it is not held, or was broken by someone else."""
        if not self.held:
            return
        self.held = False
        with self._guard():
            try:
                data = self._read(self.path)
            except FileNotFoundError:
                return
            if data is not None and data.get("token") == self._token:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# The repository


class GitStore:
    """The user's repository, as selfcode sees it: read-only, except for run branches."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.exists():
            raise GitError(f"{path} does not exist.")
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
        _configure(repo.git, self.git_dir, self.root, _SAFE_CONFIG)
        # Reading the status must never rewrite the user's index.
        repo.git.update_environment(GIT_OPTIONAL_LOCKS="0")
        try:
            has_commits = repo.head.is_valid()
        except (GitCommandError, ValueError):
            has_commits = False
        if not has_commits:
            repo.close()
            raise GitError(
                f"The git repository at {self.root} has no commits yet; commit your code first."
            )

    # -- plumbing ---------------------------------------------------------------------------

    def _git(self, command: str, *args: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._repo.git, command)(*args, **kwargs)
        except (GitCommandError, GitCommandNotFound) as exc:
            raise GitError(f"git {command} failed in {self.root}: {_git_failure(exc)}.") from exc

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

    def scratch(self, prefix: str) -> tempfile.TemporaryDirectory[str]:
        """A temporary directory under the state dir, so a crash's leftovers are found again."""
        base = self.state_dir() / SCRATCH_DIR
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
                if isinstance(obj, Blob) and mode != _SUBMODULE_MODE:
                    data = obj.data_stream.read()
                    if mode == _LINK_MODE:
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
            if isinstance(obj, Blob) and int(obj.mode) != _SUBMODULE_MODE
        )

    def _branch_exists(self, branch: str) -> bool:
        try:
            self._repo.git.show_ref("--verify", "--quiet", f"refs/heads/{branch}")
        except GitCommandError:
            return False
        return True

    def _worktrees(self) -> dict[Path, str | None]:
        """The registered worktrees: path -> branch ref (None when detached)."""
        out = str(self._git("worktree", "list", "--porcelain"))
        result: dict[Path, str | None] = {}
        current: Path | None = None
        for line in out.splitlines():
            if line.startswith("worktree "):
                current = Path(line[len("worktree ") :]).resolve()
                result[current] = None
            elif line.startswith("branch ") and current is not None:
                result[current] = line[len("branch ") :]
        return result

    # -- plumbing for the run's archive: loose commits, refs, notes --------------------------

    def git(self, command: str, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run one git command in the user's repository (no hooks, no fsmonitor); its stdout.

        Never use it for porcelain that writes the user's index or working tree.
        """
        kwargs: dict[str, Any] = {"env": dict(env)} if env else {}
        return str(self._git(command, *args, **kwargs))

    def commit_diff(self, parent: str, diff: str, message: str, trailers: Trailers = (), *,
                    author: str = DEFAULT_IDENTITY, committer: str | None = None) -> str:
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
            message_file.write_text(_commit_message(message, trailers), "utf-8")
            self._git("read-tree", parent_sha, env=env)
            self._git("apply", "--cached", "--whitespace=nowarn", str(patch_file), env=env)
            tree = str(self._git("write-tree", env=env)).strip()
            return str(self._git("commit-tree", tree, "-p", parent_sha, "-F", str(message_file),
                                 env=env)).strip()

    def ref_sha(self, ref: str) -> str | None:
        """The commit `ref` points at, or None if there is no such ref."""
        try:
            out = self._repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except GitCommandError:
            return None
        return str(out).strip() or None

    def update_ref(self, ref: str, sha: str, old: str | None = None,
                   identity: str = DEFAULT_IDENTITY) -> None:
        """Point `ref` at `sha`; with `old`, only if it still points there (compare-and-swap)."""
        args = ["-m", "selfcode", ref, sha, *([old] if old is not None else [])]
        self._git("update-ref", *args, env=identity_env(identity))

    def refs(self, prefix: str) -> dict[str, str]:
        """Refs under `prefix` (e.g. 'refs/selfcode/<run>/') and the objects they name."""
        out = str(self._git("for-each-ref", "--format=%(refname) %(objectname)", prefix))
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def add_note(self, notes_ref: str, sha: str, text: str,
                 identity: str = DEFAULT_IDENTITY) -> None:
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

    def rebuild_branch(self, run_id: str, base: str, picks: Sequence[str], *,
                       identity: str = DEFAULT_IDENTITY) -> list[str]:
        """Make the run's branch `base` plus `picks` cherry-picked in order; the new shas.

        Picking happens in a temporary worktree under the state directory, never in a
        checkout of the user's; the branch moves only when every pick applied, and only if
        nobody moved it meanwhile. A pick that does not apply raises PickConflict.
        """
        ref = "refs/heads/" + self._check_run_id(run_id)
        old = self.ref_sha(ref)
        if old is None:
            raise GitError(f"There is no run branch {ref[11:]} in the repository at {self.root}.")
        base_sha = self._commit(base).hexsha
        path = self.worktrees_dir() / f"{run_id}.rebuild"
        if path.exists():
            with contextlib.suppress(GitError):
                self._git("worktree", "remove", "--force", str(path))
            _remove_tree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._git("worktree", "add", "--quiet", "--no-checkout", "--detach", str(path), base_sha)
        new: list[str] = []
        tree = RunWorktree(self, run_id, path)
        try:
            tree._reset()
            for sha in picks:
                try:
                    tree._git("cherry-pick", "--no-rerere-autoupdate", sha,
                              env=identity_env(identity))
                except GitError as exc:
                    with contextlib.suppress(GitError):
                        tree._git("cherry-pick", "--abort")
                    raise PickConflict(sha, str(exc)) from exc
                new.append(tree.head())
        finally:
            tree.close()
            with contextlib.suppress(GitError):
                self._git("worktree", "remove", "--force", str(path))
            _remove_tree(path)
        self.update_ref(ref, new[-1] if new else base_sha, old, identity)
        return new

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

    # -- runs -------------------------------------------------------------------------------

    def _check_run_id(self, run_id: str) -> str:
        if not _RUN_ID.fullmatch(run_id) or ".." in run_id or run_id.endswith((".lock", ".")):
            raise GitError(
                f"'{run_id}' cannot name a run; use letters, digits, '.', '_' and '-' only."
            )
        branch = BRANCH_PREFIX + run_id
        try:
            self._repo.git.check_ref_format("--branch", branch)
        except GitCommandError:
            raise GitError(
                f"'{run_id}' cannot name a run: {branch} is no valid branch name."
            ) from None
        return branch

    def create_run(self, run_id: str, base: str = "HEAD") -> RunWorktree:
        """Create branch `selfcode/<run-id>` at `base` and check it out in the run's worktree."""
        branch = self._check_run_id(run_id)
        base_sha = self._commit(base).hexsha
        if self._branch_exists(branch):
            raise GitError(
                f"Branch {branch} already exists; resume that run or choose another run id."
            )
        path = self.worktrees_dir() / run_id
        if path.exists() or path.is_symlink():
            raise GitError(f"{path} already exists; run `selfcode` again to prune leftovers first.")
        path.parent.mkdir(parents=True, exist_ok=True)
        # --no-checkout: the checkout happens in the new worktree with its own index, never
        # with an index variable inherited from the caller.
        self._git("worktree", "add", "--quiet", "--no-checkout", "-b", branch, str(path), base_sha)
        try:
            run = RunWorktree(self, run_id, path)
            run._reset()
        except BaseException:
            with contextlib.suppress(GitError):
                self._git("worktree", "remove", "--force", str(path))
            with contextlib.suppress(GitError):
                self._git("branch", "-D", branch)
            raise
        return run

    def open_run(self, run_id: str) -> RunWorktree:
        """The worktree of an existing run branch (recreated if removed), reset to its HEAD."""
        branch = self._check_run_id(run_id)
        if not self._branch_exists(branch):
            raise GitError(f"There is no run branch {branch} in the repository at {self.root}.")
        path = (self.worktrees_dir() / run_id).resolve()
        ref = f"refs/heads/{branch}"
        worktrees = self._worktrees()
        for wt_path, wt_ref in worktrees.items():
            if wt_ref == ref and wt_path != path:
                raise GitError(
                    f"Branch {branch} is checked out in {wt_path}; "
                    "switch that worktree to another branch first."
                )
        if path in worktrees and not (path / ".git").exists():
            self._git("worktree", "remove", "--force", str(path))
            worktrees.pop(path)
        if path in worktrees:
            if worktrees[path] != ref:
                raise GitError(
                    f"{path} holds another branch than {branch}; remove it and try again."
                )
        else:
            if path.exists() or path.is_symlink():
                _remove_tree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._git("worktree", "add", "--quiet", "--no-checkout", str(path), branch)
        run = RunWorktree(self, run_id, path)
        run._reset()
        return run

    def remove_run_worktree(self, run_id: str) -> bool:
        """Remove the worktree of run `run_id` (a crashed process's, locks and all), if any."""
        self._check_run_id(run_id)
        path = (self.worktrees_dir() / run_id).resolve()
        found = path in self._worktrees()
        if found:
            self._git("worktree", "remove", "--force", str(path))
        if path.exists() or path.is_symlink():
            _remove_tree(path)
            found = True
        return found

    def prune_leftovers(self) -> list[str]:
        """Remove run worktrees left behind, except the one a live selfcode process holds.

        Returns the run ids whose worktrees were removed. Only worktrees under
        `state_dir()/worktrees` are touched, so unlike `git worktree prune` this never
        deregisters worktrees the user made. Branches are kept.
        """
        base = self.worktrees_dir()
        holder = RepoLock.holder(self.state_dir())
        keep: set[str] = set()
        if holder is not None and holder.alive:
            if holder.run_id is None and holder.pid != os.getpid():
                return []  # a live run whose worktree we cannot tell apart: touch nothing
            if holder.run_id is not None:
                keep.add(holder.run_id)
        if holder is None or not holder.alive or holder.pid == os.getpid():
            scratch = self.state_dir() / SCRATCH_DIR
            if scratch.is_dir():
                for leftover in scratch.iterdir():
                    _remove_tree(leftover)
        base_resolved = base.resolve()
        registered = {
            p for p in self._worktrees() if p.parent == base_resolved and p.name not in keep
        }
        removed: set[str] = set()
        for path in sorted(registered):
            self._git("worktree", "remove", "--force", str(path))
            if path.exists():
                _remove_tree(path)
            removed.add(path.name)
        if base.is_dir():
            for path in sorted(base.iterdir()):
                if path.name in keep or path.name in removed:
                    continue
                if self._belongs_elsewhere(path):
                    continue  # SELFCODE_HOME shared with another repository: its run, not ours
                _remove_tree(path)
                removed.add(path.name)
        return sorted(removed)

    def _belongs_elsewhere(self, path: Path) -> bool:
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
        return admin.exists() and self.common_dir not in admin.parents


class PickConflict(GitError):
    """A commit could not be cherry-picked while rebuilding a run's branch."""

    def __init__(self, sha: str, detail: str) -> None:
        super().__init__(f"Commit {sha[:10]} does not apply on the rebuilt branch: {detail}")
        self.sha = sha


def _blob_text(tree: Tree, path: str) -> str | None:
    try:
        obj = tree / path.strip("/")
    except (KeyError, ValueError):
        return None
    if not isinstance(obj, Blob) or int(obj.mode) == _SUBMODULE_MODE:
        return None
    return obj.data_stream.read().decode("utf-8", "replace")


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


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
        _configure(self._repo.git, self.git_dir, self.path.resolve(), _WORKTREE_CONFIG)

    def _git(self, command: str, *args: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._repo.git, command)(*args, **kwargs)
        except (GitCommandError, GitCommandNotFound) as exc:
            raise GitError(
                f"git {command} failed in the worktree of run {self.run_id}: {_git_failure(exc)}."
            ) from exc

    def _reset(self) -> None:
        """Make the worktree and its index exactly the branch's HEAD."""
        self._git("reset", "--hard", "--quiet", "HEAD")
        self._git("clean", "-ffdxq")

    def close(self) -> None:
        self._repo.close()

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
        author: str = DEFAULT_IDENTITY,
        committer: str | None = None,
        hooks: bool = False,
    ) -> str:
        """Apply a unified diff to the run's branch and commit it; return the new commit's sha.

        No hook of the target runs unless `hooks` (the user's opt-in). On any failure the
        worktree is reset to its HEAD and GitError is raised.
        """
        env = identity_env(author, committer)
        text = _commit_message(message, trailers or {})
        with self.store.scratch("commit-") as tmp:
            patch_file = Path(tmp) / "candidate.diff"
            message_file = Path(tmp) / "message.txt"
            with patch_file.open("w", encoding="utf-8", newline="") as fh:
                fh.write(diff if diff.endswith("\n") else diff + "\n")
            with message_file.open("w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            try:
                self._reset()
                self._git("apply", "--index", "--whitespace=nowarn", str(patch_file))
                args = ["--quiet", "--no-gpg-sign", "--cleanup=whitespace", "-F",
                        str(message_file)]
                if hooks:
                    try:
                        self._with_hooks().commit(*args, env=env)
                    except (GitCommandError, GitCommandNotFound) as exc:
                        raise GitError(f"git commit (with the target's hooks, as configured) "
                                       f"failed: {_git_failure(exc)}.") from exc
                else:
                    self._git("commit", "--no-verify", *args, env=env)
            except GitError as exc:
                with contextlib.suppress(GitError):
                    self._reset()
                raise GitError(
                    f"Could not commit the patch on {self.branch}: {str(exc).split(': ', 1)[-1]}"
                ) from exc
        return self.head()

    def _with_hooks(self) -> git.Git:
        """A git command for this worktree that runs the target's hooks (the user opted in)."""
        hooked = git.Git(self.path)
        options = [o for o in _WORKTREE_CONFIG if not o.startswith("core.hooksPath=")]
        _configure(hooked, self.git_dir, self.path.resolve(), options)
        return hooked

    def remove(self) -> None:
        """Remove the worktree directory; the branch and its commits stay."""
        self.close()
        self.store._git("worktree", "remove", "--force", str(self.path))
        if self.path.exists():
            _remove_tree(self.path)


Trailers = Mapping[str, str] | Sequence[tuple[str, str]]


def _commit_message(message: str, trailers: Trailers) -> str:
    body = message.strip() or "selfcode candidate"
    lines = []
    pairs = list(trailers.items()) if isinstance(trailers, Mapping) else list(trailers)
    for key, value in pairs:
        if not _TRAILER_KEY.fullmatch(key):
            raise ValueError(f"trailer key {key!r} must be letters, digits and '-'")
        lines.append(f"{key}: {' '.join(str(value).split())}")
    if lines:
        body += "\n\n" + "\n".join(lines)
    return body + "\n"
