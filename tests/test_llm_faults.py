"""Faults end to end: the local OpenAI-compatible server -> the real openai client -> edits.

Every case runs the path the agent runs: `OpenAILLM.complete` (wrapped in `RecordingLLM`, so
each exchange is recorded), then `parse_and_apply` with `read_tree` on a real directory. Each
ends in a clear error (or a clean success after retries), and neither the repository on disk
nor anything outside it changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from selfcode.config import LLMConfig
from selfcode.edits import NoEditsFound, parse_and_apply, read_tree
from selfcode.errors import EditError, LLMError, PolicyError
from selfcode.llm import EndpointUnreachable, OpenAILLM, RecordingLLM

from openai_server import Fault, OpenAIServer

CORE = ("def total(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n\n\n"
        "def count(xs):\n    t = 0\n    for x in xs:\n        t += 1\n    return t\n")
PROMPT = [{"role": "system", "content": "You write patches."},
          {"role": "user", "content": "Make total faster."}]


# =============================================================================================
# A real repository on disk, with a symbolic link out of it
# =============================================================================================


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under root, links not followed: file bytes, or "link -> target"."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                out[key] = f"link -> {os.readlink(path)}"
            elif path.is_file():
                out[key] = path.read_bytes()
            else:
                out[key] = "dir"
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "world" / "repo"  # the snapshot covers world/: the repo and outside/
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "core.py").write_text(CORE)
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    outside = tmp_path / "world" / "outside"
    outside.mkdir()
    (outside / "core.py").write_text(CORE)
    (root / "lib").symlink_to(outside, target_is_directory=True)
    return root


@pytest.fixture
def tree_guard(repo: Path) -> Callable[[], None]:
    """Call it at the end of a test: asserts that nothing in or around the repo changed."""
    before = snapshot(repo.parent)

    def check() -> None:
        assert snapshot(repo.parent) == before

    return check


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.messages: list[str] = []


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(openai_server: OpenAIServer, sleeps: Sleeps,
           tmp_path: Path) -> Callable[..., RecordingLLM]:
    def make(**overrides: object) -> RecordingLLM:
        settings = {"model": "gpt-4o-mini", "base_url": openai_server.base_url, "timeout": 5.0,
                    "max_retries": 2, "backoff_base": 0.01, "backoff_max": 1.0, **overrides}
        inner = OpenAILLM(LLMConfig.model_validate(settings), environ={},
                          sleep=sleeps.waits.append, on_retry=sleeps.messages.append)
        return RecordingLLM(inner, tmp_path / "record.jsonl")

    return make


def recorded(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "record.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def ask_and_apply(llm: RecordingLLM, repo: Path,
                  fmt: str) -> tuple[str, dict[str, str | None], dict[str, str | None]]:
    reply = llm.complete(PROMPT)
    return parse_and_apply(reply.text, fmt, lambda paths: read_tree(repo, paths))


# =============================================================================================
# Replies in each format
# =============================================================================================


def sr(path: str, search: str, replace: str) -> str:
    return (f"Sum in C.\n\n{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}"
            ">>>>>>> REPLACE\n```\n")


def udiff(path: str, search: str, replace: str, new_file: bool = False) -> str:
    old = "/dev/null" if new_file else f"a/{path}"
    minus = "".join(f"-{line}\n" for line in search.splitlines())
    plus = "".join(f"+{line}\n" for line in replace.splitlines())
    return f"Sum in C.\n\n```diff\n--- {old}\n+++ b/{path}\n@@ -1 +1 @@\n{minus}{plus}```\n"


def whole(path: str, search: str, replace: str) -> str:
    return f"Sum in C.\n\n{path}\n```python\n{CORE.replace(search, replace)}```\n"


BUILDERS = {"search-replace": sr, "udiff": udiff, "whole": whole}
LOOP = "    t = 0\n    for x in xs:\n        t += x\n    return t\n"
FAST = "    return sum(xs)\n"
GOOD = {fmt: build("src/pkg/core.py", LOOP, FAST) for fmt, build in BUILDERS.items()}


# =============================================================================================
# Transport faults
# =============================================================================================


def test_429_with_retry_after_is_waited_out_then_the_edit_applies(
        openai_server: OpenAIServer, client: Callable[..., RecordingLLM], repo: Path,
        sleeps: Sleeps, tree_guard: Callable[[], None], tmp_path: Path) -> None:
    openai_server.script(Fault.status(429, retry_after=0.25), GOOD["search-replace"])
    rationale, old, new = ask_and_apply(client(), repo, "search-replace")
    assert rationale == "Sum in C."
    assert new["src/pkg/core.py"] == CORE.replace(LOOP, FAST)
    assert old["src/pkg/core.py"] == CORE
    assert sleeps.waits == [0.25]
    assert "Rate limited, HTTP 429" in sleeps.messages[0] and "retrying in 0.25s" in sleeps.messages[0]
    assert len(openai_server.requests) == 2
    assert recorded(tmp_path)[0]["reply"] == GOOD["search-replace"]
    tree_guard()


def test_429_that_never_ends_is_one_clear_error_and_recorded(
        openai_server: OpenAIServer, client: Callable[..., RecordingLLM], repo: Path,
        tree_guard: Callable[[], None], tmp_path: Path) -> None:
    openai_server.script(*[Fault.status(429, retry_after=0.01)] * 3)
    with pytest.raises(LLMError) as info:
        ask_and_apply(client(), repo, "search-replace")
    message = str(info.value)
    assert "failed to answer after 3 attempts" in message and "HTTP 429" in message
    assert "\n" not in message and not isinstance(info.value, EndpointUnreachable)
    [line] = recorded(tmp_path)
    assert line["error"] == {"kind": "llm", "message": message}
    tree_guard()


def test_500_is_retried_with_backoff_then_the_edit_applies(
        openai_server: OpenAIServer, client: Callable[..., RecordingLLM], repo: Path,
        sleeps: Sleeps, tree_guard: Callable[[], None]) -> None:
    openai_server.script(Fault.status(500), Fault.status(503), GOOD["udiff"])
    _, _, new = ask_and_apply(client(), repo, "udiff")
    assert new["src/pkg/core.py"] == CORE.replace(LOOP, FAST)
    assert len(sleeps.waits) == 2 and sleeps.waits[1] > sleeps.waits[0]
    assert "Server error, HTTP 500" in sleeps.messages[0]
    tree_guard()


def test_a_stalled_connection_times_out_and_says_so(
        openai_server: OpenAIServer, client: Callable[..., RecordingLLM], repo: Path,
        tree_guard: Callable[[], None], tmp_path: Path) -> None:
    openai_server.script(Fault.stall(5.0, GOOD["whole"]), Fault.stall(5.0, GOOD["whole"]))
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        ask_and_apply(client(timeout=0.3, max_retries=1), repo, "whole")
    assert time.monotonic() - started < 3
    assert "no answer within 0.3s" in str(info.value)
    assert "after 2 attempts" in str(info.value)
    assert recorded(tmp_path)[0]["error"]["kind"] == "llm"  # type: ignore[index]
    tree_guard()


def test_a_refused_connection_is_unreachable(repo: Path, tmp_path: Path,
                                             tree_guard: Callable[[], None]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    llm = OpenAILLM(LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0),
                    environ={})
    with pytest.raises(EndpointUnreachable, match="connection error"):
        llm.complete(PROMPT)
    tree_guard()


# =============================================================================================
# Content faults, in every format that can express them
# =============================================================================================

CUT = {
    "search-replace": GOOD["search-replace"][:GOOD["search-replace"].index("=======") + 12],
    "udiff": "Sum.\n\n```diff\n--- a/src/pkg/core.py\n+++ b/src/pkg/core.py\n@@ -2,4 +2,1 @@\n-    t = 0\n",
    "whole": GOOD["whole"][:len(GOOD["whole"]) // 2],
}
PROSE = "I would replace the loop in total with the built-in sum, which is implemented in C."


def content_cases() -> list[object]:
    cases: list[object] = []
    for fmt, build in BUILDERS.items():
        cases += [
            pytest.param(fmt, CUT[fmt], EditError, "probably cut off", id=f"{fmt}-cut-mid-block"),
            pytest.param(fmt, PROSE, NoEditsFound, "nothing can be changed", id=f"{fmt}-prose-only"),
            pytest.param(fmt, build("../outside/core.py", LOOP, FAST), PolicyError,
                         "'..' component", id=f"{fmt}-path-traversal"),
            pytest.param(fmt, build("lib/core.py", LOOP, FAST), PolicyError,
                         "lib is a symbolic link", id=f"{fmt}-symlink-trick"),
            pytest.param(fmt, build(".git/hooks/pre-commit", LOOP, FAST), PolicyError,
                         "inside the .git directory", id=f"{fmt}-git-hook"),
        ]
    cases += [
        pytest.param("search-replace", sr("src/pkg/missing.py", LOOP, FAST), EditError,
                     "src/pkg/missing.py does not exist", id="search-replace-missing-file"),
        pytest.param("udiff", udiff("src/pkg/missing.py", LOOP, FAST), EditError,
                     "src/pkg/missing.py (line 4 of your reply), which does not exist",
                     id="udiff-missing-file"),
        pytest.param("search-replace", sr("src/pkg/core.py", "    t = 0\n    for x in xs:\n",
                                          "    t = 0\n    for x in list(xs):\n"),
                     EditError, "matches 2 places", id="search-replace-ambiguous"),
        pytest.param("udiff", udiff("src/pkg/core.py", "    t = 0\n    for x in xs:\n",
                                    "    t = 0\n    for x in list(xs):\n"),
                     EditError, "matches 2 places", id="udiff-ambiguous"),
    ]
    return cases


@pytest.mark.parametrize(("fmt", "text", "error", "fragment"), content_cases())
def test_a_bad_reply_is_refused_clearly_and_changes_nothing(
        openai_server: OpenAIServer, client: Callable[..., RecordingLLM], repo: Path, fmt: str,
        text: str, error: type[Exception], fragment: str, tree_guard: Callable[[], None],
        tmp_path: Path) -> None:
    openai_server.script(text)
    with pytest.raises(error) as info:
        ask_and_apply(client(), repo, fmt)
    assert fragment in str(info.value)
    assert recorded(tmp_path)[0]["reply"] == text
    tree_guard()


@pytest.mark.parametrize("fmt", list(BUILDERS))
def test_an_absolute_path_is_refused(openai_server: OpenAIServer,
                                     client: Callable[..., RecordingLLM], repo: Path, fmt: str,
                                     tree_guard: Callable[[], None]) -> None:
    target = str(repo.parent / "outside" / "core.py")
    openai_server.script(BUILDERS[fmt](target, LOOP, FAST))
    with pytest.raises(PolicyError) as info:
        ask_and_apply(client(), repo, fmt)
    assert target in str(info.value) and "absolute" in str(info.value)
    tree_guard()


@pytest.mark.parametrize("fmt", list(BUILDERS))
def test_a_10_mb_reply_is_refused_quickly(openai_server: OpenAIServer,
                                          client: Callable[..., RecordingLLM], repo: Path,
                                          fmt: str, tree_guard: Callable[[], None]) -> None:
    huge = GOOD[fmt] + ("# padding that a runaway model keeps producing\n" * 220_000)
    assert len(huge) > 10_000_000
    openai_server.script(huge)
    reply = client().complete(PROMPT)
    assert len(reply.text) == len(huge)
    started = time.perf_counter()
    with pytest.raises(PolicyError) as info:
        parse_and_apply(reply.text, fmt, lambda paths: read_tree(repo, paths))
    assert time.perf_counter() - started < 0.2
    assert "over the limit of 2,000,000 bytes for one reply" in str(info.value)
    tree_guard()


def test_the_edit_applies_when_nothing_is_wrong_in_every_format(
        openai_server: OpenAIServer, client: Callable[..., RecordingLLM], repo: Path,
        tree_guard: Callable[[], None]) -> None:
    for fmt, text in GOOD.items():
        openai_server.script(text)
        _, old, new = ask_and_apply(client(), repo, fmt)
        assert (old, new) == ({"src/pkg/core.py": CORE},
                              {"src/pkg/core.py": CORE.replace(LOOP, FAST)}), fmt
    tree_guard()
