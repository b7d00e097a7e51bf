"""How selfcode runs git: the configuration forced on every command, the explicit
GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE, identities, commit message text and error messages.

Shared by the user's repository (store.py) and the run's worktree (worktree.py), so both
run git the same safe way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import git
from git.exc import GitCommandError, GitCommandNotFound

from selfcode.errors import GitError

# Configuration forced on every git command: no hook or fsmonitor of the target ever runs,
# and nothing may prompt for a signing passphrase.
SAFE_CONFIG = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgsign=false",
]
# In the run's worktree, files are checked out and committed exactly as the patch has them.
WORKTREE_CONFIG = [*SAFE_CONFIG, "core.autocrlf=false", "core.safecrlf=false"]

LINK_MODE = 0o120000
SUBMODULE_MODE = 0o160000

Trailers = Mapping[str, str] | Sequence[tuple[str, str]]

_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_IDENTITY = re.compile(r"\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>\s*")


def git_failure(exc: GitCommandError | GitCommandNotFound) -> str:
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


def configure(g: git.Git, git_dir: Path, work_tree: Path, options: list[str]) -> None:
    """Force `options` on every command of `g`, and name its repository explicitly, so that
    variables inherited from a calling git hook cannot redirect it to another index."""
    g.set_persistent_git_options(c=options)
    g.update_environment(
        GIT_DIR=str(git_dir),
        GIT_WORK_TREE=str(work_tree),
        GIT_INDEX_FILE=str(git_dir / "index"),
        # No system or global configuration: their filter drivers (git-lfs installs one) would
        # run on this machine at checkout and apply, reading settings the repository chose
        # (`.lfsconfig`: a URL to fetch from). The repository's own .git/config still applies.
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
    )


# Where git reads the user's own configuration (their `safe.directory` entries among it):
# kept when the ownership check runs, while every other GIT_* variable is dropped.
_USER_CONFIG_VARS = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM")
_NO_REPOSITORY = "not a git repository (or any of the parent directories)"


def check_git_accepts(path: Path) -> None:
    """Refuse a repository git itself refuses, in git's own words: "detected dubious
    ownership" (with GIT_DIR set explicitly git skips that check, and another user's
    .git/config would then run here), an unknown repository extension, a .git file that
    points nowhere. The user's `safe.directory` settings count, as they do for git; a
    directory that is in no repository at all is left for the caller to say."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") or k in _USER_CONFIG_VARS}
    try:
        proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"], env=env,
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return  # no git at all is reported by the caller, in its own words
    if proc.returncode == 0 or _NO_REPOSITORY in proc.stderr:
        return
    reason = " ".join(proc.stderr.replace("fatal: ", "").split())[:400] or (
        f"git exited with status {proc.returncode}")
    raise GitError(f"git refuses {path.resolve()}: {reason.rstrip('.')}.")


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


def commit_message(message: str, trailers: Trailers) -> str:
    """The full message: `message` (or a placeholder), then one line per trailer."""
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


def remove_tree(path: Path) -> None:
    """Remove a file, symlink or directory tree, if there is one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
