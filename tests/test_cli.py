"""The command line end to end: real git repositories, the local sandbox, real HTTP."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.run.workflows import prepare_demo_repo

from repos import git

runner = CliRunner()


def replies() -> list[str]:
    replay = Path(__file__).parents[1] / "examples" / "demo-replies.jsonl"
    return [json.loads(line)["reply"] for line in replay.read_text().splitlines()]


def snapshot(repo: Path) -> tuple[str, str, str]:
    return (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
            git(repo, "symbolic-ref", "HEAD"))


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    repo, _ = prepare_demo_repo(tmp_path / "demo")
    return repo


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("selfcode ")


def test_demo_tells_the_story_and_commits_the_speedup():
    result = runner.invoke(app, ["demo", "--sandbox", "local", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["candidates"], summary["accepted"]) == (3, 1)
    assert summary["best_speedup"] > 2
    assert "replayed" in result.stderr and "protected path touched" in result.stderr
    repo = Path(summary["repo"])
    message = git(repo, "log", "-1", "--format=%B", summary["branch"])
    trailers = git(repo, "interpret-trailers", "--parse", input_text=message)
    assert f"Selfcode-Run: {summary['run_id']}" in trailers
    assert "Selfcode-Speedup: " in trailers and "Selfcode-Tests: 11 passed" in trailers
    # The user's side of the demo repository is as it was.
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-list", "--count", "main").strip() == "1"


def test_improve_over_http_records_every_exchange(demo_repo, openai_server):
    openai_server.script(replies()[3])
    before = snapshot(demo_repo)
    result = runner.invoke(app, [
        "improve", str(demo_repo), "--base-url", f"{openai_server.base_url}",
        "--model", "gpt-4o-mini", "--iterations", "1", "--sandbox", "local", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["accepted"] == 1 and summary["cost_usd"] > 0 and summary["cost_known"]
    prompt = openai_server.requests[0]["messages"][-1]["content"]
    assert "def primes_up_to" in prompt and "benchmarks/bench_primes.py (read-only)" in prompt
    assert snapshot(demo_repo) == before
    db = sqlite3.connect(demo_repo / ".git" / "selfcode" / "history.db")
    (tokens, cost), = db.execute("select prompt_tokens + completion_tokens, cost_usd "
                                 "from exchanges").fetchall()
    assert tokens > 0 and cost == pytest.approx(summary["cost_usd"])


def test_budget_stops_the_run(demo_repo, openai_server):
    openai_server.script("no blocks here", "still none", "nothing", "x", "y", "z")
    result = runner.invoke(app, [
        "improve", str(demo_repo), "--base-url", openai_server.base_url, "--model", "gpt-4o",
        "--iterations", "5", "--budget-usd", "0.000001", "--sandbox", "local", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["candidates"] == 1 and "budget" in summary["stop_reason"]


def test_no_endpoint_is_one_sentence_and_exit_2(demo_repo, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    result = runner.invoke(app, ["improve", str(demo_repo), "--sandbox", "local"])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.output
    assert "selfcode/" not in git(demo_repo, "branch")


def test_not_a_repository(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path), "--patch", "-"], input="")
    assert result.exit_code == 2 and "git" in result.stderr.lower()


def eval_json(repo: Path, patch: str, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["eval", str(repo), "--patch", "-", "--json",
                                 "--sandbox", "local", *extra], input=patch)
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else {})


SIEVE = Path(__file__).parents[1] / "examples" / "src" / "primes" / "__init__.py"


def sieve_diff(repo: Path) -> str:
    source = (repo / "src/primes/__init__.py").read_text()
    fast = source.replace(
        "    return [n for n in range(2, limit + 1) if is_prime(n)]",
        "    if limit < 2:\n        return []\n    sieve = bytearray([1]) * (limit + 1)\n"
        "    sieve[0:2] = b'\\x00\\x00'\n    for p in range(2, int(limit**0.5) + 1):\n"
        "        if sieve[p]:\n            sieve[p * p :: p] = bytearray(len(range(p * p, "
        "limit + 1, p)))\n    return [n for n in range(limit + 1) if sieve[n]]")
    (repo / "src/primes/__init__.py").write_text(fast)
    diff = git(repo, "diff")
    git(repo, "checkout", "--", ".")
    return diff


def test_eval_accepts_a_hand_written_speedup(demo_repo):
    (demo_repo / "notes.txt").write_text("the user's own uncommitted file\n")
    before = snapshot(demo_repo)
    code, verdict = eval_json(demo_repo, sieve_diff(demo_repo))
    assert code == 0, verdict
    assert verdict["accepted"] is True and verdict["reasons"] == []
    assert verdict["patch"] == {"files": ["src/primes/__init__.py"], "added": 8, "removed": 1}
    assert verdict["tests"]["baseline"] == verdict["tests"]["candidate"]
    (bench,) = verdict["benchmarks"]
    assert bench["name"] == "primes" and bench["verdict"] == "faster" and bench["ratio"] < 0.5
    # Short benchmarks are judged by instruction counts (one deterministic run each), and a
    # win that large must show in CPU time too.
    assert bench["metric"] == "instructions" and len(bench["baseline"]) == 1
    assert bench["confirmation"]["ratio"] < 1 and len(bench["confirmation"]["candidate"]) >= 3
    assert set(verdict["timings"]) >= {"sandbox_start", "apply", "tests", "benchmarks", "total"}
    assert snapshot(demo_repo) == before
    assert "selfcode/" not in git(demo_repo, "branch")


@pytest.mark.parametrize(
    "patch, code, reason",
    [
        ("--- a/tests/test_primes.py\n+++ b/tests/test_primes.py\n@@ -1,1 +1,1 @@\n-import pytest\n"
         "+import pytest  # cheat\n", 1, "protected path touched: tests/test_primes.py"),
        ("--- a/../outside.py\n+++ b/../outside.py\n@@ -1 +1 @@\n-a\n+b\n", 1, ".."),
        ("this is not a patch at all\n", 2, "diff"),
        ("--- a/src/primes/__init__.py\n+++ b/src/primes/__init__.py\n@@ -1,1 +1,1 @@\n"
         "-no such line\n+x\n", 2, "does not apply"),
    ],
)
def test_eval_rejects_or_refuses(demo_repo, patch, code, reason):
    before = snapshot(demo_repo)
    exit_code, verdict = eval_json(demo_repo, patch)
    assert exit_code == code
    assert verdict["accepted"] is False
    assert any(reason in r for r in verdict["reasons"]), verdict["reasons"]
    assert snapshot(demo_repo) == before


def test_eval_rejects_a_patch_that_breaks_a_test(demo_repo):
    source = (demo_repo / "src/primes/__init__.py").read_text()
    (demo_repo / "src/primes/__init__.py").write_text(source.replace("if n < 2:", "if n < 3:"))
    diff = git(demo_repo, "diff")
    git(demo_repo, "checkout", "--", ".")
    code, verdict = eval_json(demo_repo, diff)
    assert code == 1
    assert "tests/test_primes.py::test_is_prime[2-True]" in verdict["tests"]["newly_failing"]
    assert verdict["benchmarks"] == []  # a broken candidate is not worth measuring


# --- one error path for every command ------------------------------------------------------

# Text that Rich markup would eat ([tool.selfcode.gate]) or choke on ([/x]: MarkupError).
MARKUP = "[tool.selfcode.gate]/[/x]"


@pytest.mark.parametrize("command", [
    "improve {}", "eval {} --patch -", "bench {}", "sandbox build {}", "runs {}",
    "show latest {}", "review latest {} --approve 1", "report latest {}",
])
def test_every_command_prints_its_error_verbatim(tmp_path, command):
    missing = tmp_path / MARKUP / "repo"
    args = [str(missing) if word == "{}" else word for word in command.split()]
    result = runner.invoke(app, args, input="")
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"error: {missing} does not exist." in result.stderr
    assert "Traceback" not in result.output and "MarkupError" not in result.output


def test_a_config_key_in_an_error_is_printed_as_written(demo_repo):
    result = runner.invoke(app, ["eval", str(demo_repo), "--patch", "-", "--judge", "metric",
                                 "--sandbox", "local"], input="")
    assert result.exit_code == 2
    assert "needs [tool.selfcode.gate] metric_command" in result.stderr


def test_errors_keep_their_exit_code_interrupts_are_130_and_bugs_say_so(monkeypatch):
    import selfcode.doctor
    from selfcode.errors import SelfcodeError

    class Refused(SelfcodeError):
        exit_code = 7

    def raising(exc: BaseException):
        def diagnose(*_args: object, **_kwargs: object) -> None:
            raise exc
        return diagnose

    monkeypatch.setattr(selfcode.doctor, "diagnose", raising(Refused("No [/x] today.")))
    result = runner.invoke(app, ["doctor"])
    assert (result.exit_code, result.stderr.strip()) == (7, "error: No [/x] today.")
    monkeypatch.setattr(selfcode.doctor, "diagnose", raising(KeyboardInterrupt()))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 130 and "Interrupted" in result.stderr
    monkeypatch.setattr(selfcode.doctor, "diagnose", raising(ZeroDivisionError("[bold]x")))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert "ZeroDivisionError: [bold]x" in line and "this is a bug in selfcode" in line
    assert "report it" in line and len(line.splitlines()) == 1


# --- --judge chooses how candidates are judged, --goal only what the model is asked ---------

def test_judge_modes_are_taught_in_help():
    for command in ("improve", "eval"):
        text = " ".join(runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
                        .output.split())
        for mode in ("speed:", "fix:", "metric:", "auto (the default)"):
            assert mode in text, (command, mode)
        assert text.count("e.g.") >= 3 and "[tool.selfcode.gate] metric_command" in text
        assert "[tool.selfcode.gate] judge" in text and "field name `goal`" in text


@pytest.mark.parametrize("word", ["speed", "fix", "metric"])
def test_goal_no_longer_chooses_the_judge(demo_repo, word):
    result = runner.invoke(app, ["improve", str(demo_repo), "--goal", word])
    assert result.exit_code == 2
    assert f"use --judge {word}" in result.stderr and "selfcode/" not in git(demo_repo, "branch")


def test_eval_judges_by_the_judge_flag(demo_repo):
    code, verdict = eval_json(demo_repo, sieve_diff(demo_repo), "--judge", "fix")
    assert code == 1 and verdict["goal"] == "fix" and verdict["benchmarks"] == []
    assert verdict["reasons"] == ["no failing test was made to pass"]
