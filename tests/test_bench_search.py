"""bench_search's parts: the larger fixture's suite, the slow scripted server, the scripted models.

The benchmark itself (benchmarks/bench_search.py) is not run here: it takes minutes. What it
relies on is: biglib has >= 200 tests and they pass; the server holds each reply for its
latency and answers requests in flight concurrently; each scripted edit applies to the code
the prompt shows and is of the kind it claims (a broken one fails exactly one test).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from selfcode.edits import apply_edits, parse_reply

from openai_server import OpenAIServer

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from search_model import LandscapeModel, MixedModel, prompt_files  # noqa: E402
from search_moves import (  # noqa: E402
    BIGLIB_MOVES,
    EXAMPLE_MOVES,
    LANDSCAPE,
    MALFORMED,
    OFFERS,
    Move,
    landscape_move,
)

BIGLIB = BENCHMARKS / "fixtures" / "biglib"
EXAMPLES = Path(__file__).parents[1] / "examples"


def pytest_run(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
                           "-p", "no:randomly"], cwd=repo, capture_output=True, text=True,
                          timeout=120)


def test_biglib_has_at_least_200_tests_and_they_pass(tmp_path: Path) -> None:
    repo = tmp_path / "biglib"
    shutil.copytree(BIGLIB, repo, ignore=shutil.ignore_patterns("__pycache__"))
    started = time.monotonic()
    done = pytest_run(repo)
    assert done.returncode == 0, done.stdout[-2000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))  # type: ignore[union-attr]
    assert passed >= 200
    assert time.monotonic() - started < 30


def prompt(files: dict[str, str]) -> str:
    shown = "".join(f"{path}\n```python\n{source}```\n\n" for path, source in files.items())
    return (f"## Goal\nfaster\n\n## Files\n{shown}benchmarks/bench_x.py (read-only)\n"
            "```python\nprint(1)\n```\n\n## Repository map\nsrc/x.py\n")


def ask(server: OpenAIServer, text: str) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "s"},
                                       {"role": "user", "content": text}])
    return reply.choices[0].message.content or ""


def test_the_slow_server_answers_requests_in_flight_concurrently(openai_server: OpenAIServer
                                                                 ) -> None:
    source = (EXAMPLES / "src/primes/__init__.py").read_text()
    openai_server.responder = MixedModel(EXAMPLE_MOVES, rotation=("good",))
    openai_server.latency = 1.0
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: ask(openai_server, prompt({"src/primes/__init__.py":
                                                                      source})), range(4)))
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.5, f"4 requests of 1 s each took {elapsed:.2f} s"
    # Good moves are offered once each: the first two, then the fallback (slower).
    assert [r.splitlines()[0][:20] for r in replies].count(MALFORMED[:20]) == 0
    assert sum("<<<<<<< SEARCH" in r for r in replies) == 4
    assert len(openai_server.requests) == 4


def test_a_script_still_comes_first_and_no_latency_by_default(openai_server: OpenAIServer
                                                              ) -> None:
    openai_server.script("scripted")
    openai_server.responder = lambda body: "from the responder"
    started = time.monotonic()
    assert ask(openai_server, "x") == "scripted"
    assert ask(openai_server, "x") == "from the responder"
    assert time.monotonic() - started < 0.9


def test_prompt_files_leaves_out_read_only_files() -> None:
    files = prompt_files(prompt({"src/a.py": "x = 1\n", "src/b.py": "def f():\n    pass\n"}))
    assert files == {"src/a.py": "x = 1\n", "src/b.py": "def f():\n    pass\n"}


def apply(root: Path, move: Move, tmp_path: Path, start: str | None = None) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(root, repo, ignore=shutil.ignore_patterns("__pycache__"))
    target = repo / move.path
    text = target.read_text()
    if start is not None:
        text = text.replace(LANDSCAPE["S0"], LANDSCAPE[start])
    edited = apply_edits({move.path: text}, parse_reply(move.reply()).edits)[move.path]
    assert edited is not None and edited != text
    target.write_text(edited)
    return repo


def failing(repo: Path) -> list[str]:
    return re.findall(r"^FAILED (\S+)", pytest_run(repo).stdout, re.MULTILINE)


@pytest.mark.parametrize("root, move", [(EXAMPLES, m) for m in EXAMPLE_MOVES]
                         + [(BIGLIB, m) for m in BIGLIB_MOVES if m.kind == "broken"],
                         ids=lambda v: getattr(v, "name", str(v)[-8:]))
def test_each_scripted_edit_is_of_its_kind(root: Path, move: Move, tmp_path: Path) -> None:
    failed = failing(apply(root, move, tmp_path))
    assert len(failed) == (1 if move.kind == "broken" else 0), failed


def test_the_landscape_offers_each_state_its_moves_in_turn(tmp_path: Path) -> None:
    model = LandscapeModel()
    base = (EXAMPLES / "src/primes/__init__.py").read_text()
    body = {"messages": [{"role": "user", "content": prompt({"src/primes/__init__.py": base})}]}
    first, second = model(body), model(body)
    assert first == landscape_move("S0", "A").reply()
    assert second == landscape_move("S0", "B").reply()
    assert [a.move for a in model.log] == ["S0->A", "S0->B"]
    # A's children are dead ends; C, reached only through B, is the best state.
    assert {landscape_move("A", o).kind for o in OFFERS["A"]} <= {"broken", "slower"}
    assert failing(apply(EXAMPLES, landscape_move("B", "C"), tmp_path, start="B")) == []
