"""The harness's promotion stage: a self-candidate's own selfcode judges one canary case.

Standard library only, like the harness (`harness.py canary`, which passes itself as `tools`
for its RunDir, trees and environment). Everything here runs as the candidate uid in a fresh
run directory: a copy of the candidate tree (its selfcode), a git repository made of the
fixture the judge staged, and `python -m selfcode eval --sandbox local --json` of the case's
patch. What that judge prints is returned as it is, bounded, for the host to read as untrusted
text (gate/canary.py). The expected verdicts are never passed here, but they are not secret: the
candidate tree holds the corpus (tests/canary), as the sealed trees do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import selfcode_files as files
from selfcode_proc import HarnessError, run_measured
from selfcode_trees import git_env

STDOUT_KEEP = 256 * 1024
_GIT_IDENTITY = {"GIT_AUTHOR_NAME": "selfcode canary", "GIT_AUTHOR_EMAIL": "canary@selfcode.local",
                 "GIT_COMMITTER_NAME": "selfcode canary",
                 "GIT_COMMITTER_EMAIL": "canary@selfcode.local"}


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    canary = sub.add_parser("canary", parents=[common])
    canary.add_argument("--tree", required=True)
    canary.add_argument("--fixture", required=True)
    canary.add_argument("--diff", required=True)


def _git_repo(guard: Any, repo: str, home: str, timeout: float) -> None:
    """Make `repo` a git repository with one commit, as the candidate uid."""
    env = {**git_env(home), **_GIT_IDENTITY}  # `repo` lies directly in `home`, the run dir
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "--no-verify", "-m", "canary fixture"]):
        try:
            proc = subprocess.run(argv, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout, **guard.demote)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"canary: {' '.join(argv)} timed out") from exc
        if proc.returncode != 0:
            raise HarnessError(f"canary: {' '.join(argv)} failed: "
                               + proc.stderr.decode("utf-8", "replace")[-300:])


def cmd_canary(args: argparse.Namespace, guard: Any, tools: Any) -> dict[str, Any]:
    fixture = os.path.abspath(args.fixture)
    if not os.path.isdir(fixture):
        raise HarnessError("canary: the staged fixture is missing")
    with tools.RunDir(guard) as run:
        selfcode = run.copy_of(tools.tree_path(guard, args.tree))
        repo = os.path.join(run.path, "repo")
        problem = guard.as_candidate(lambda: files.copy_tree(fixture, repo, readonly=False))
        if problem:
            raise HarnessError(f"canary: could not copy the fixture: {problem}")
        _git_repo(guard, repo, run.path, args.timeout)
        env = tools.base_env(selfcode, tools.site_path(guard, args.tree))
        env.update(HOME=run.path, PYTHONDONTWRITEBYTECODE="1")
        argv = [sys.executable, "-m", "selfcode", "eval", repo, "--patch",
                os.path.abspath(args.diff), "--sandbox", "local", "--json"]
        result = run_measured(guard, argv, repo, env, args.timeout)
    return {
        "kind": "canary",
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "duration": result.wall,
        "stdout": result.stdout[-STDOUT_KEEP:].decode("utf-8", "replace"),
        "stderr_tail": result.stderr_tail,
        "problem": result.problem,
    }
