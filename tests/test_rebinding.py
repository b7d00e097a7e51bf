"""A self-candidate may not rebind the judge's names from outside the judge's files.

The attack (found by attacking the canary with the source in hand): a patch that leaves
`src/selfcode/gate/**` alone and, from `src/selfcode/__init__.py`, replaces
`selfcode.gate.protected.protected_violations` with a faster one that drops the test globs
wherever a Docker engine answers (on the host, never in the sandbox where the canary looks).
It was accepted, canary 11 of 11, without --allow-judge-edits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfcode.gate.probes import NewFile
from selfcode.gate.rebinding import judged_packages, rebindings
from selfcode.run.selfdemo import prepare_self_demo_repo

from environment import needs_checkout

ROOT = Path(__file__).resolve().parents[1]
PKG = {"selfcode"}


def _scan(source: str) -> list[str]:
    lines = frozenset(range(1, source.count("\n") + 2))
    return rebindings([NewFile("src/selfcode/x.py", source, lines)], PKG)


@pytest.mark.parametrize("source", [
    "import selfcode.gate.protected as p\np.protected_violations = lambda a, b: []\n",
    "from selfcode.gate import probes\nprobes.CONTEXT_PROBES = {}\n",
    "from selfcode.gate import probes\nsetattr(probes, 'CONTEXT_PROBES', {})\n",
    "from selfcode.gate import probes\ndelattr(probes, 'context_probes')\n",
    "from selfcode.gate.judge import Judge\nJudge.promote = False\n",
    "from selfcode.gate import probes\nprobes.__dict__['CONTEXT_PROBES'] = {}\n",
    "import selfcode.gate.testrules\nselfcode.gate.testrules.judge_tests = print\n",
    "from selfcode.gate import stats as s\ns.ALPHA += 1\n",
    "from selfcode.gate import stats\ndel stats.wilcoxon_p\n",
], ids=["alias", "from-import", "setattr", "delattr", "class", "dict", "dotted", "augmented",
        "del"])
def test_rebinding_a_name_of_the_package_is_found(source: str) -> None:
    assert _scan(source)


@pytest.mark.parametrize("source", [
    "class A:\n    def f(self):\n        self.x = 1\n",
    "import os\nos.environ['X'] = '1'\n",
    "from selfcode.gate.judge import Judge\njudge = Judge\nx = judge\n",
    "def f(settings):\n    settings.timeout = 3\n",
], ids=["self", "other-package", "plain-alias", "argument"])
def test_ordinary_code_is_not_flagged(source: str) -> None:
    assert _scan(source) == []


def test_selfcodes_own_source_rebinds_nothing() -> None:
    files = [NewFile(str(p.relative_to(ROOT)), t, frozenset(range(1, t.count("\n") + 2)))
             for p in (ROOT / "src/selfcode").rglob("*.py") for t in [p.read_text()]]
    assert rebindings(files, judged_packages(["src/selfcode/gate/**"])) == []


@needs_checkout
def test_the_attack_is_refused_before_any_sandbox(tmp_path: Path) -> None:
    repo, _ = prepare_self_demo_repo(ROOT, tmp_path / "self")
    patch = ROOT / "tests/fixtures/rebinds-the-judge.diff"
    proc = subprocess.run([sys.executable, "-m", "selfcode", "eval", str(repo), "--patch",
                           str(patch), "--sandbox", "local", "--json"],
                          env={**os.environ, "SELFCODE_HOME": str(tmp_path / "home")},
                          capture_output=True, text=True, timeout=300)
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "rebinds selfcode.gate.protected" in verdict["reasons"][0]
    assert "tests" not in verdict["timings"]  # refused by the host's reading, unrun
