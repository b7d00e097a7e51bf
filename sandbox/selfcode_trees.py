"""Where the harness keeps the judged trees and their installed metadata, and the environment
every candidate process of a tree starts with.

Standard library only, like the harness. Trees live in {judge_dir}/trees/NAME, their installed
metadata (the `*.dist-info` directories and console scripts of `pip install` of the tree,
selfcode_install.py) in {judge_dir}/sites/NAME/{lib,bin}; both owned by the judge and read-only
to candidates, laid out alike for every NAME (the host uses "a" and "b": same path lengths).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import selfcode_files as files
from selfcode_proc import HarnessError


def git_env(run_path: str) -> dict[str, str]:
    """For git run as the candidate in a run directory: that directory is its home and its
    ceiling, and no system or global configuration is read."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env.update(HOME=run_path, GIT_CEILING_DIRECTORIES=run_path, GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=os.devnull)
    return env


# The judge's bytecode (selfcode_install.py precompiles every sealed tree) stays out of copies.
PYCACHE = frozenset({"__pycache__"})


def _checked(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise HarnessError(f"invalid tree name {name!r}")
    return name


def tree_path(guard: Any, name: str) -> str:
    return os.path.join(guard.setup.judge_dir, "trees", _checked(name))


def site_path(guard: Any, name: str) -> str:
    """Where tree NAME's installed metadata is kept (it may not exist: nothing installed)."""
    return os.path.join(guard.setup.judge_dir, "sites", _checked(name))


def base_env(tree: str, site: str) -> dict[str, str]:
    """The same environment on both sides; nothing of the harness's own (its nonce) leaks.

    The tree comes first on the import path (its own code is what runs); its installed
    metadata after it (importlib.metadata finds the distribution, entry points included), and
    its console scripts first on PATH. `site` is the tree's `site_path`.
    """
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    src = os.path.join(tree, "src")
    paths = [src if os.path.isdir(src) else "", tree]
    if os.path.isdir(site):
        paths.append(os.path.join(site, "lib"))
        env["PATH"] = os.pathsep.join([os.path.join(site, "bin"), env.get("PATH", os.defpath)])
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class RunDir:
    """A directory for one run's candidate-owned files, removed (as their owner) on exit."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        self.path = os.path.join(guard.setup.judge_dir, "runs", secrets.token_hex(8))
        os.mkdir(self.path)
        # Root-owned, so no candidate can rename it; writable, so the candidate uid can fill it.
        os.chmod(self.path, 0o777 if guard.setup.user else 0o700)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.guard.kill_all()
        self.guard.as_candidate(lambda: files.clear_dir(self.path))
        os.rmdir(self.path)

    def copy_of(self, tree: str, name: str = "tree") -> str:
        """A writable copy of `tree` owned by the candidate uid, without the judge's bytecode:
        what the candidate's processes see of the tree is the repository's files (a test that
        lists or reads its own tree must not meet __pycache__), and nothing timed runs here."""
        work = os.path.join(self.path, name)
        problem = self.guard.as_candidate(
            lambda: files.copy_tree(tree, work, readonly=False, skip=PYCACHE))
        if problem:
            raise HarnessError(f"could not copy the tree as the candidate uid: {problem}")
        return work
