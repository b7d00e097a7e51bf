"""Where the time goes: the harness's profile, the targets drawn from it, and the prompt
aimed at them (issue 14).

The profile runs in the real Docker sandbox (the harness as root, the profiled benchmark as the
candidate uid); the run tests drive `improve` with a scripted model, so the prompts the model
would have seen can be read back.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfcode.config import load_settings
from selfcode.prompt.targets import Target, choose_target, targets_of
from selfcode.run.workflows import improve
from selfcode.sandbox.docker import DockerSandbox
from selfcode.sandbox.results import BenchProfile, Hotspot, ProfiledCaller, ProfileRun
from selfcode.sandbox.trees import Trees
from selfcode.testing import ScriptedLLM

from repos import GIT_ENV_ARGS, tar_of

pytest_plugins = ["docker_util"]

PYPROJECT = ('[project]\nname = "rowlib"\nversion = "0.1.0"\n\n[tool.pytest.ini_options]\n'
             'pythonpath = ["src"]\ntestpaths = ["tests"]\n')

# The benchmark imports the package; the time is in deep/rows.py, which it never imports
# itself, reached through a relative import.
DEEP = {
    "pyproject.toml": PYPROJECT,
    "src/rowlib/__init__.py": "from .api import load\n",
    "src/rowlib/api.py": "from .deep import rows\n\n\ndef load(n):\n"
                         "    return [rows.parse_row(f'{i},{i * 2},{i * 3}') for i in range(n)]\n",
    "src/rowlib/deep/__init__.py": "",
    "src/rowlib/deep/rows.py": "def parse_row(text):\n    parts = text.split(',')\n"
                               "    total = 0\n    for p in parts:\n        total += int(p)\n"
                               "    return total\n",
    "benchmarks/bench_load.py": "from rowlib import load\n\nprint(sum(load(150_000)))\n",
    "tests/test_rows.py": "from rowlib import load\n\n\ndef test_load():\n"
                          "    assert load(3) == [0, 6, 12]\n",
}

# Two unrelated hot functions, in two modules, each about half of the benchmark.
TWO = {
    "pyproject.toml": PYPROJECT,
    "src/rowlib/__init__.py": "",
    "src/rowlib/squares.py": "def squares(n):\n    total = 0\n    for i in range(n):\n"
                             "        total += i * i\n    return total\n",
    "src/rowlib/evens.py": "def evens(n):\n    count = 0\n    for i in range(n):\n"
                           "        if i % 2 == 0:\n            count += 1\n    return count\n",
    "benchmarks/bench_work.py": "from rowlib.evens import evens\nfrom rowlib.squares import "
                                "squares\n\nfor _ in range(20):\n"
                                "    print(squares(60_000), evens(20_000))\n",
    "tests/test_work.py": "from rowlib.evens import evens\n\n\ndef test_evens():\n"
                          "    assert evens(5) == 3\n",
}


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "slow"]):
        subprocess.run(["git", *GIT_ENV_ARGS, *args], cwd=root, check=True,
                       capture_output=True)
    return root


class Quiet:
    def event(self, kind: str, message: str, **data: Any) -> None:
        pass


def run_improve(repo: Path, backend: str, replies: list[Any], iterations: int) -> ScriptedLLM:
    import os

    settings = load_settings(repo, {
        "sandbox": {"backend": backend, "timeout": 120,
                    "base_image": os.environ.get("SELFCODE_BASE_IMAGE",
                                                 "selfcode-base:bookworm")},
        "agent": {"iterations": iterations, "repair_turns": 0},
        "gate": {"flaky_runs": 1}})
    llm = ScriptedLLM(replies)
    improve(repo, settings, Quiet(), llm=llm)
    return llm


def target_line(prompt: str) -> str:
    match = re.search(r"^## Your target\n(.+)$", prompt, re.M)
    assert match, prompt
    return match.group(1)


# --- pure: from a profile to the next candidate's target -----------------------------------


def spot(name: str, own: float, file: str = "src/m.py", line: int = 1, calls: int = 10,
         callers: tuple[tuple[str, int, str], ...] = ()) -> Hotspot:
    return Hotspot(file=file, line=line, name=name, calls=calls, own_s=own, cum_s=own,
                   own_share=own, cum_share=min(1.0, own * 1.2),
                   callers=[ProfiledCaller(file=f, line=li, name=n, calls=calls)
                            for f, li, n in callers])


def profile(*benches: tuple[str, list[Hotspot]]) -> ProfileRun:
    return ProfileRun(benchmarks=[BenchProfile(name=name, total_s=1.0, hotspots=spots)
                                  for name, spots in benches])


@pytest.mark.parametrize(("run", "expected"), [
    # hottest first; each function at its largest share over the benchmarks
    (profile(("a", [spot("f", 0.2), spot("g", 0.5, line=9)]), ("b", [spot("f", 0.7)])),
     [("f", "b", 0.7), ("g", "a", 0.5)]),
    # a comprehension's own time is its function's
    (profile(("a", [spot("f", 0.3, line=1), spot("<listcomp>", 0.4, line=2,
                                                 callers=(("src/m.py", 1, "f"),))])),
     [("f", "a", 0.7)]),
    # module bodies, protected or peripheral files and crumbs under 1 % are no targets
    (profile(("a", [spot("<module>", 0.5), spot("t", 0.4, file="tests/test_m.py"),
                    spot("h", 0.005)])), []),
])
def test_targets_of(run: ProfileRun, expected: list[tuple[str, str, float]]) -> None:
    found = targets_of(run, lambda path: not path.startswith("tests/"))
    assert [(t.name, t.bench, pytest.approx(t.share)) for t in found] == expected


def target(name: str, share: float) -> Target:
    return Target(file="src/m.py", line=1, name=name, bench="b", share=share, cum_share=share,
                  calls=1)


A, B, C, D = target("a", 0.5), target("b", 0.3), target("c", 0.1), target("d", 0.01)


@pytest.mark.parametrize(("history", "expected"), [
    ([], "a"),                                              # the hottest first
    ([("src/m.py:1:a", "rejected")], "b"),                  # then the next one
    ([("src/m.py:1:a", "rejected"), ("src/m.py:1:b", "rejected")], "c"),
    ([("src/m.py:1:a", "accepted"), ("src/m.py:1:b", "rejected"),
      ("src/m.py:1:c", "rejected")], "a"),                  # all tried once: the hottest again
    ([("src/m.py:1:a", "rejected")] * 2 + [("src/m.py:1:b", "rejected")] * 2
     + [("src/m.py:1:c", "malformed")], "c"),               # a and b keep failing: they yield
    ([(t.key, "rejected") for t in (A, B, C) for _ in range(2)], "a"),  # all did: start over
])
def test_choose_target_rotates_and_lets_failures_yield(history: list[tuple[str, str]],
                                                       expected: str) -> None:
    chosen = choose_target([A, B, C, D], history)
    assert chosen is not None and chosen.name == expected


def test_no_profile_no_target() -> None:
    assert targets_of(None, lambda p: True) == [] and choose_target([], []) is None


# --- the harness, in the real sandbox -------------------------------------------------------


@pytest.mark.docker
def test_the_harness_profiles_a_benchmark_as_the_candidate(sandbox: DockerSandbox,
                                                           tmp_path: Path) -> None:
    trees = Trees(sandbox, 60)
    trees.load_baseline(tar_of(DEEP))
    run = trees.profile({"load": [sandbox.python, "benchmarks/bench_load.py"],
                         "shell": ["sh", "-c", "true"]})
    load, shell = run.benchmarks
    assert load.failure is None and load.total_s > 0
    top = next(h for h in load.hotspots if h.name == "parse_row")
    # First or second by own time (the comprehension calling it can come first).
    assert (top.file, top.calls, top.rank_own in (1, 2)) == ("src/rowlib/deep/rows.py",
                                                             150_000, True)
    assert 0.2 < top.own_share < 0.95 and any(c.file == "src/rowlib/api.py" for c in top.callers)
    assert all(not h.file.startswith("/") for h in load.hotspots)  # only the tree's own code
    if run.python.startswith("3.11"):
        assert not load.line_level and "3.12" in (load.note or "")
    else:
        assert load.line_level and top.lines
    assert shell.failure is not None and "not a Python script" in shell.failure


# --- the prompt a run sends -----------------------------------------------------------------


@pytest.mark.docker
def test_the_first_prompt_aims_at_the_hottest_function_deep_in_the_package(
        sandbox_image: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "deep", DEEP)
    llm = run_improve(repo, "docker", ["no edit"], iterations=1)
    prompt = llm.calls[0][-1]["content"]
    line = target_line(prompt)
    share = int(re.search(r"it is (\d+) % of `load`'s time, in 150,000 call", line).group(1))
    assert "`parse_row` in src/rowlib/deep/rows.py" in line and 20 < share < 95
    assert re.search(r"`parse_row` \(src/rowlib/deep/rows.py, line 1\) is \d+ % of `load`'s "
                     r"time, 150,000 call", prompt)
    files = prompt.split("## Files\n", 1)[1]
    assert files.startswith("src/rowlib/deep/rows.py\n")  # its source goes first


def test_two_hotspots_two_candidates_two_targets(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "two", TWO)
    llm = run_improve(repo, "local", ["no edit", "no edit"], iterations=2)
    first, second = (target_line(call[-1]["content"]) for call in llm.calls)
    names = {re.search(r"Make `(\w+)`", line).group(1) for line in (first, second)}
    assert names == {"squares", "evens"}, (first, second)


def _pyenv_pythons() -> list[str]:
    try:
        return sorted(map(str, Path("/root/.pyenv/versions").glob("3.1[2-9]*/bin/python3")))
    except OSError:  # not readable (the judge's sandbox runs these tests as another user)
        return []


def test_line_timings_on_python_3_12_in_the_local_harness(tmp_path: Path) -> None:
    """The sandbox here has Python 3.11; sys.monitoring's line timings are proven on 3.12."""
    py312 = next((p for p in ("/usr/bin/python3.12", "/usr/local/bin/python3.12",
                              *_pyenv_pythons()) if Path(p).exists()), None)
    if py312 is None:
        pytest.skip("no Python 3.12+ on this machine")
    import json

    tree = make_repo(tmp_path / "tree", DEEP)
    judge = tmp_path / "judge"
    harness = Path(__file__).parents[1] / "sandbox" / "harness.py"
    subprocess.run([py312, str(harness), "seal", "--judge-dir", str(judge), "--src", str(tree),
                    "--tree", "a"], check=True, capture_output=True)
    out = subprocess.run([py312, str(harness), "profile", "--judge-dir", str(judge), "--tree",
                          "a", "--spec", json.dumps({"load": [py312, "benchmarks/bench_load.py"]})],
                         check=True, capture_output=True, text=True).stdout
    bench = json.loads(out)["benchmarks"][0]
    top = bench["hotspots"][0]
    assert bench["line_level"] and top["name"] == "parse_row"
    assert {x["line"] for x in top["lines"]} >= {2, 4, 5}  # split, the loop, the addition
    assert sys.version_info >= (3, 11)


def test_a_context_overflow_is_remembered_for_the_rest_of_the_run(tmp_path: Path) -> None:
    from selfcode.llm import ContextLengthError

    repo = make_repo(tmp_path / "two", TWO)
    llm = run_improve(repo, "local", [ContextLengthError("too long", factor=0.5), "no edit",
                                      "no edit"], iterations=2)
    full, trimmed, second = (call[-1]["content"].count("```python") for call in llm.calls)
    # The second candidate starts at the size that fitted, not at the full prompt again.
    assert (full, trimmed, second) == (3, 1, 1)
    assert len(llm.calls) == 3  # so it overflowed no more


# --- visible to the user: doctor --profile and the run's reports ----------------------------


def test_doctor_profile_shows_where_the_time_goes(tmp_path: Path, openai_server: Any) -> None:
    import json

    from typer.testing import CliRunner

    from selfcode.cli.app import app

    openai_server.script("pong")
    repo = make_repo(tmp_path / "deep", DEEP)
    runner = CliRunner()
    args = ["doctor", str(repo), "--profile", "--sandbox", "local"]
    env = {"OPENAI_BASE_URL": openai_server.base_url}
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    table = result.stdout.splitlines()
    assert table[0].split()[:3] == ["benchmark", "function", "where"]
    row = next(line for line in table if " parse_row " in line)
    assert "src/rowlib/deep/rows.py:1" in row and "150,000" in row
    assert re.search(r"\b\d+%", row)
    result = runner.invoke(app, [*args, "--json"], env=env)
    doc = json.loads(result.stdout)
    assert {c["name"] for c in doc["checks"]} >= {"git", "python"}
    spots = doc["profile"]["benchmarks"][0]["hotspots"]
    assert any(s["name"] == "parse_row" and s["calls"] == 150_000 for s in spots)


def test_the_run_reports_show_the_hotspot_table(tmp_path: Path) -> None:
    from selfcode.git.store import GitStore
    from selfcode.history.db import HISTORY_FILE, History
    from selfcode.history.views import load_run
    from selfcode.prompt.profile import recorded_profile
    from selfcode.report.html import render_html
    from selfcode.report.markdown import render_markdown

    repo = make_repo(tmp_path / "two", TWO)
    run_improve(repo, "local", ["no edit"], iterations=1)
    store = GitStore(repo)
    with History(store.state_dir() / HISTORY_FILE) as history:
        run_id = history.runs()[0].id
        view, profile = load_run(history, run_id, store), recorded_profile(history, run_id)
    assert profile is not None
    md = render_markdown(view, profile=profile)
    assert "### Where the time goes" in md
    assert re.search(r"\| work \| (squares|evens) \| src/rowlib/\w+\.py:1 \| \d+% \|", md)
    assert "<h2>Where the time goes</h2>" in render_html(view, profile)
    assert "Where the time goes" not in render_markdown(view)  # no profile, no table


def test_the_baseline_is_profiled_again_when_it_moves(tmp_path: Path) -> None:
    from selfcode.git.store import GitStore
    from selfcode.history.db import HISTORY_FILE, History

    repo = make_repo(tmp_path / "two", TWO)
    loop = "    total = 0\n    for i in range(n):\n        total += i * i\n    return total\n"
    closed = "    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0\n"
    fast = ("squares() adds i*i one at a time; the closed form gives the same sum at once.\n\n"
            f"src/rowlib/squares.py\n```python\n<<<<<<< SEARCH\n{loop}=======\n{closed}"
            ">>>>>>> REPLACE\n```\n")
    llm = run_improve(repo, "local", [fast, "no edit"], iterations=2)
    assert "`squares` in src/rowlib/squares.py" in target_line(llm.calls[0][-1]["content"])
    store = GitStore(repo)
    with History(store.state_dir() / HISTORY_FILE) as history:
        run = history.runs()[0]
        events = [e for e in history.events(run.id) if e.kind == "profile"]
        statuses = [c.status for c in history.candidates(run.id)]
    assert statuses[0] == "accepted", statuses
    first, second = (ProfileRun.model_validate_json(e.message) for e in events)
    names = [{h.name for h in p.benchmarks[0].hotspots} for p in (first, second)]
    assert "squares" in names[0] and "evens" in names[1]
    # The second profile is the new baseline's: squares is no longer where the time goes.
    after = next(h for h in second.benchmarks[0].hotspots if h.name == "evens")
    assert after.own_share > 0.8 and "`evens`" in target_line(llm.calls[1][-1]["content"])
