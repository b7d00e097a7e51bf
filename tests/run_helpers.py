"""Targets, replies and a stand-in judge for the tests of runs, review, reports and crashes.

`FakeJudge` replaces the sandboxed gate where a test is about what happens around a verdict
(git archive, review, reports, CI files): it accepts a diff that contains the marker
`# fast`, with deterministic benchmark samples, and needs no sandbox. Tests about the gate's
own phases (applying, testing) use the real local sandbox instead.

`isolated_run` is the setup of every test that runs `selfcode improve` with it (import it, and
it applies to the whole module), `improve` is that run, and `improved_target` a new target
after one.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.gate.config import GateConfig
from selfcode.gate.verdict import BenchVerdict, PatchSummary, TestCounts, TestsVerdict, Verdict

from repos import GIT_ENV_ARGS

LIB = '''def squares(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def evens(n):
    count = 0
    for i in range(n):
        if i % 2 == 0:
            count += 1
    return count
'''

TARGET = {
    "pyproject.toml": '[project]\nname = "fastlib"\nversion = "0.1.0"\n\n'
                      '[tool.pytest.ini_options]\npythonpath = ["src"]\ntestpaths = ["tests"]\n',
    "src/fastlib/__init__.py": LIB,
    "tests/test_fastlib.py": "from fastlib import evens, squares\n\n\ndef test_squares():\n"
                             "    assert [squares(n) for n in range(6)] == [0, 0, 1, 5, 14, 30]"
                             "\n\n\ndef test_evens():\n"
                             "    assert [evens(n) for n in range(6)] == [0, 1, 1, 2, 2, 3]\n",
    "benchmarks/bench_work.py": "from fastlib import evens, squares\n\n"
                                "print(squares(300_000), evens(300_000))\n",
}


def edit(rationale: str, search: str, replace: str, path: str = "src/fastlib/__init__.py") -> str:
    return (f"{rationale}\n\n{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}"
            ">>>>>>> REPLACE\n```\n")


SQUARES_LOOP = "    total = 0\n    for i in range(n):\n        total += i * i\n    return total\n"
SQUARES_FAST = ("    # fast: closed form (0 for n <= 0, as the loop gives)\n    n = max(n, 0)\n"
                "    return (n - 1) * n * (2 * n - 1) // 6\n")
EVENS_LOOP = ("    count = 0\n    for i in range(n):\n        if i % 2 == 0:\n"
              "            count += 1\n    return count\n")

REPLY_SQUARES = edit("squares() adds i*i one at a time; the closed form n(n-1)(2n-1)/6 gives "
                     "the same sum at once. Nothing else changes.", SQUARES_LOOP, SQUARES_FAST)
REPLY_BAD_EVENS = edit("Count evens as n // 2, which is simpler.", EVENS_LOOP,
                       "    return n // 2\n")
REPLY_EVENS = edit("evens() counts even numbers one by one; there are (n + 1) // 2 of them.",
                   EVENS_LOOP, "    # fast: closed form\n    return max(0, (n + 1) // 2)\n")
REPLY_SQUARES_AGAIN = edit("Guard squares() against negative n explicitly.", SQUARES_FAST,
                           "    # fast: closed form, guarded\n    if n <= 0:\n        return 0\n"
                           "    return (n - 1) * n * (2 * n - 1) // 6\n")
NO_EDIT = "I have no idea, sorry."


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *GIT_ENV_ARGS, *args], cwd=repo, check=True,
                         capture_output=True, text=True)
    return out.stdout


def make_target(root: Path, extra: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for path, text in {**TARGET, **(extra or {})}.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fastlib: slow but correct")
    return root


def write_replay(path: Path, *replies: str) -> Path:
    path.write_text("".join(json.dumps({"reply": r, "prompt_tokens": 1000 + 10 * i,
                                        "completion_tokens": 100 + i}) + "\n"
                            for i, r in enumerate(replies)))
    return path


def snapshot(repo: Path) -> tuple[str, str, str, str]:
    """What the user sees of their repository: HEAD, status, current branch, index."""
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
            git(repo, "symbolic-ref", "HEAD"), git(repo, "ls-files", "-s"))


def samples(centre: float, n: int, seed: int) -> list[float]:
    return [round(centre * (1 + 0.03 * math.sin(seed * 7 + i * 2.3)), 6) for i in range(n)]


class FakeJudge:
    """Accepts diffs containing '# fast'; everything else breaks a test."""

    goal = "speed"
    benchmarks: ClassVar[dict[str, list[str]]] = {"work": ["python", "benchmarks/bench_work.py"]}

    def __init__(self) -> None:
        self.config = GateConfig()  # the prompt states the gate's rules from it
        self.calibration: Any = None
        self.quarantined: set[str] = set()
        self.seed = 0

    def fork(self, sandbox: object, sandbox_start: float = 0.0) -> FakeJudge:
        """The re-check's judge, as `Judge.fork`: same noise floor and quarantine."""
        twin = FakeJudge()
        twin.calibration = self.calibration
        twin.quarantined = set(self.quarantined)
        return twin

    baseline_tests: Any = None  # no test run to hand on: the pool sets each baseline again

    def set_baseline(self, tar: bytes, runs: int = 1, now: int | None = None) -> None:
        pass

    def confirm_baseline(self, runs: int) -> None:
        pass

    def calibrate(self, pairs: int | None = None) -> None:
        return None

    def judge(self, diff: str) -> Verdict:
        self.seed += 1
        files = sorted({line[6:] for line in diff.splitlines() if line.startswith("+++ b/")})
        added = sum(1 for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++"))
        removed = sum(1 for x in diff.splitlines()
                      if x.startswith("-") and not x.startswith("---"))
        patch = PatchSummary(files=files, added=added, removed=removed)
        counts = TestCounts(passed=2, failed=0, skipped=0)
        common: dict[str, Any] = {"goal": "speed", "patch": patch, "sandbox": "fake",
                                  "timings": {"tests": 0.5, "benchmarks": 2.0, "total": 2.6}}
        if "# fast" not in diff:
            tests = TestsVerdict(baseline=counts, candidate=TestCounts(passed=1, failed=1),
                                 newly_failing=["tests/test_fastlib.py::test_evens"])
            return Verdict(accepted=False, status="rejected", tests=tests,
                           reasons=["newly failing: tests/test_fastlib.py::test_evens"],
                           **common)
        base, cand = samples(0.2, 8, self.seed), samples(0.11, 8, self.seed + 1)
        bench = BenchVerdict(name="work", metric="cpu_time", baseline=base, candidate=cand,
                             ratio=0.55, p_value=0.0039, verdict="faster")
        return Verdict(accepted=True, status="accepted", benchmarks=[bench],
                       tests=TestsVerdict(baseline=counts, candidate=counts), **common)


class _NoSandbox:
    kind = "fake"

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def use_fake_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    import selfcode.run.workflows as workflows

    monkeypatch.setattr(workflows, "open_sandbox", lambda *a, **k: _NoSandbox())
    monkeypatch.setattr(workflows, "_judge_in", lambda *a, **k: FakeJudge())
    monkeypatch.setattr(workflows, "describe_judging", lambda *a, **k: None)


@pytest.fixture(autouse=True)
def isolated_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The stand-in judge, and nothing of the machine or the caller that could change a run:
    no global or system git configuration, no SELFCODE_* or GIT_* variable.

    An autouse fixture: a test module that imports it has it for every test.
    """
    use_fake_judge(monkeypatch)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("SELFCODE_HOME", "SELFCODE_GIT_AUTHOR", "SELFCODE_GIT_HOOKS", "GIT_DIR",
                "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def improve(repo: Path, replay: Path, *extra: str) -> dict[str, Any]:
    """`selfcode improve --json` on `repo` with the replies of `replay`, in the local sandbox;
    the run's summary. The run must succeed."""
    result = CliRunner().invoke(app, ["improve", str(repo), "--replay", str(replay),
                                      "--sandbox", "local", "--json", *extra])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def improved_target(root: Path, *replies: str) -> tuple[Path, dict[str, Any]]:
    """A new target under `root` after a run of one candidate per reply: (repo, summary)."""
    repo = make_target(root / "target")
    replay = write_replay(root / "r.jsonl", *replies)
    return repo, improve(repo, replay, "--iterations", str(len(replies)))
