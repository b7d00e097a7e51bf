"""`selfcode demo --self`: selfcode improves a copy of its own source, and proves each new judge.

The copy is the tracked source of the checkout `--self` would use, committed in a fresh
repository with a `selfcode.toml` of its own: selfcode's protected globs, its judge paths and its
canary, plus what keeps the demo to minutes on two cores — a quick part of the suite
(`DEMO_TESTS`) and one benchmark (`benchmarks/bench_protected.py`, protected-path matching).
The file is committed with the baseline, so it is the judge's configuration, not a candidate's.

Two replies are replayed (`selfdemo-replies.jsonl`, beside this module), with judge edits allowed:
1. a real speedup of `protected_violations` that also switches off the gate's context-probe
   scan: the ordinary gate passes it (faster, tests pass), and the canary stops it, because the
   candidate's own judge accepts a known cheat;
2. the same speedup alone: it passes the gate and the canary, and is committed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

from selfcode.errors import SelfcodeError
from selfcode.git.store import GitStore
from selfcode.sandbox.staging import unpack_tree

SELF_DEMO_REPLAY = "selfdemo-replies.jsonl"
DEMO_TESTS = ("tests/test_canary.py", "tests/test_staging.py")
DEMO_BENCHMARK = "benchmarks/bench_protected.py"


def _demo_config(pyproject: str) -> str:
    """selfcode.toml for the copy: selfcode's own boundaries, the demo's tests and benchmark."""
    own = tomllib.loads(pyproject).get("tool", {}).get("selfcode", {})
    lines = ["# Written by `selfcode demo --self`: selfcode's own boundaries and canary, with a",
             "# quick part of its suite and one benchmark, so the demo takes minutes.", ""]
    for key in ("protect_also", "judge_paths"):
        lines.append(f"{key} = {json.dumps(own.get(key, []))}")
    lines.append(f"canary = {json.dumps(own.get('canary', 'tests/canary'))}")
    lines += ["", "[gate]", f"pytest_args = {json.dumps(list(DEMO_TESTS))}", "flaky_runs = 1",
              "", "[benchmarks]", f'protected = "python {DEMO_BENCHMARK}"', ""]
    return "\n".join(lines)


def prepare_self_demo_repo(source: Path, target: Path | None = None) -> tuple[Path, Path]:
    """Copy selfcode's committed source at `source` into a fresh repository configured for the
    demo; return it and the replay file (beside it, outside the repository)."""
    store = GitStore(source)
    tar = store.tracked_tar("HEAD")
    repo = target or Path(tempfile.mkdtemp(prefix="selfcode-self-demo-"))
    unpack_tree(tar, repo)
    pyproject = repo / "pyproject.toml"
    needed = ("pyproject.toml", DEMO_BENCHMARK, *DEMO_TESTS)
    missing = [p for p in needed if not (repo / p).is_file()]
    if missing:
        raise SelfcodeError(f"The selfcode checkout at {source} lacks {', '.join(missing)}; "
                            "`demo --self` needs a complete checkout of selfcode's source.")
    (repo / "selfcode.toml").write_text(_demo_config(pyproject.read_text("utf-8")), "utf-8")
    replay = repo.parent / f"{repo.name}.{SELF_DEMO_REPLAY}"
    shutil.copyfile(Path(__file__).with_name(SELF_DEMO_REPLAY), replay)
    commit_demo_repo(repo, "selfcode's own source, configured for the self demo")
    return repo, replay


def commit_demo_repo(repo: Path, message: str) -> None:
    """Make `repo` a git repository whose one commit holds all its files (both demos)."""
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-c", "user.name=selfcode demo", "-c",
                        "user.email=demo@selfcode.local", "-c", "init.defaultBranch=main",
                        "-c", "core.hooksPath=/dev/null", *args],
                       cwd=repo, check=True, capture_output=True)
