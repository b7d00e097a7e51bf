"""Promotion in the Docker sandbox: a self-candidate's own judge runs the canary corpus there.

A copy of this checkout (as `demo --self` makes it: a quick part of the suite, one benchmark),
with the corpus cut to two cases so the test stays within minutes: the genuine speedup to
accept and the test edit to reject. `selfcode eval --allow-judge-edits` of the honest speedup of
protected-path matching must pass the ordinary gate and then the canary, whose cases the
candidate's selfcode judged inside the container (with its local backend).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from selfcode.edits import parse_and_apply
from selfcode.gate.paths import read_tree
from selfcode.run.selfdemo import SELF_DEMO_REPLAY, prepare_self_demo_repo

from environment import needs_checkout

ROOT = Path(__file__).resolve().parents[1]
KEEP = ("genuine-speedup", "edits-a-test")

pytest_plugins = ["docker_util"]


def _two_case_corpus(repo: Path) -> None:
    cases = repo / "tests/canary/cases.toml"
    text = cases.read_text("utf-8")
    blocks = text.split("[[case]]")
    kept = [b for b in blocks[1:] if any(f'name = "{k}"' in b for k in KEEP)]
    cases.write_text(blocks[0] + "".join("[[case]]" + b for b in kept), "utf-8")
    assert [c["name"] for c in tomllib.loads(cases.read_text())["case"]] == list(KEEP)
    for args in (["add", "-A"], ["commit", "-q", "-m", "two canary cases"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True, capture_output=True)


def _honest_patch(repo: Path, replay: Path) -> str:
    """The demo's second reply, applied by selfcode's parser and turned into a diff by git."""
    reply = json.loads(replay.read_text().splitlines()[1])["reply"]
    _, _, new = parse_and_apply(reply, "search-replace", lambda paths: read_tree(repo, paths))
    for path, text in new.items():
        assert text is not None
        (repo / path).write_text(text, "utf-8")
    diff = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo, check=True)
    assert "src/selfcode/gate/protected.py" in diff
    return diff


@pytest.mark.docker
@needs_checkout
def test_an_honest_self_speedup_passes_the_canary_in_docker(tmp_path: Path,
                                                            base_image: str) -> None:
    repo, replay = prepare_self_demo_repo(ROOT, tmp_path / "self")
    assert replay.name.endswith(SELF_DEMO_REPLAY)
    _two_case_corpus(repo)
    patch = tmp_path / "speedup.diff"
    patch.write_text(_honest_patch(repo, replay))
    env = {**os.environ, "SELFCODE_BASE_IMAGE": base_image,
           "SELFCODE_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "selfcode", "eval", str(repo), "--patch",
                           str(patch), "--allow-judge-edits", "--json"], env=env,
                          capture_output=True, text=True, timeout=2400)
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 0, (verdict["reasons"], proc.stderr[-2000:])
    assert verdict["sandbox"] == "docker"
    assert verdict["canary"]["passed"]
    assert [(c["name"], c["got"]) for c in verdict["canary"]["cases"]] == [
        ("genuine-speedup", "accepted"), ("edits-a-test", "rejected")]
    assert verdict["timings"]["canary"] > 0


@needs_checkout
def test_without_the_flag_the_judge_stays_protected(tmp_path: Path) -> None:
    repo, replay = prepare_self_demo_repo(ROOT, tmp_path / "self")
    patch = tmp_path / "speedup.diff"
    patch.write_text(_honest_patch(repo, replay))
    proc = subprocess.run([sys.executable, "-m", "selfcode", "eval", str(repo), "--patch",
                           str(patch), "--sandbox", "local", "--json"],
                          env={**os.environ, "SELFCODE_HOME": str(tmp_path / "home")},
                          capture_output=True, text=True, timeout=600)
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert verdict["reasons"] == ["protected path touched: src/selfcode/gate/protected.py"]
