"""Recording and exact replay, budgets, prompt trimming, and `selfcode doctor`'s endpoint check."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from selfcode.config import AgentConfig, LLMConfig, load_settings
from selfcode.doctor import run_checks
from selfcode.errors import ConfigError, LLMError
from selfcode.llm import (
    ContextLengthError,
    OpenAILLM,
    RecordingLLM,
    ReplayDiverged,
    ReplayLLM,
    Reply,
    Usage,
    make_llm,
)
from selfcode.llm.recording import distinctive_substring
from selfcode.llm.retry import shrink_factor
from selfcode.prompt.context import Attempt
from selfcode.prompt.trim import PromptSections, trim_context
from selfcode.run.ledger import Ledger
from selfcode.testing import FakeClock, ScriptedLLM

from openai_server import Answer, Fault, OpenAIServer

SYSTEM = {"role": "system", "content": "You write patches."}


def conversation(*users: str) -> list[list[dict[str, str]]]:
    """The message lists an agent sends: each turn adds the previous reply and a user message."""
    out = []
    messages = [SYSTEM]
    for user in users:
        messages = [*messages, {"role": "user", "content": user}]
        out.append(messages)
        messages = [*messages, {"role": "assistant", "content": f"reply to {user[:10]}"}]
    return out


PROMPTS = [
    "## Goal\nMake it faster.\n## Files\nsrc/a.py\nx = 1\nPropose one improvement now.",
    "Your last reply could not be applied, so nothing was changed:\n\nSEARCH/REPLACE block 1 "
    "(for src/a.py) does not match.\n\nReply again.",
    "## Goal\nMake it faster.\n## Earlier attempts\n- #1 rejected: tests failed in test_a\n"
    "Propose one improvement now.",
]


# =============================================================================================
# Recording, and replaying exactly
# =============================================================================================


def test_a_recorded_run_replays_exactly(openai_server: OpenAIServer, tmp_path: Path) -> None:
    openai_server.script(Answer("first", prompt_tokens=100, completion_tokens=10),
                         Answer("second", prompt_tokens=120, completion_tokens=12,
                                model="gpt-4o-2024-08-06"),
                         Answer("third", prompt_tokens=130, completion_tokens=13))
    path = tmp_path / "runs" / "rec.jsonl"
    live = RecordingLLM(OpenAILLM(LLMConfig(base_url=openai_server.base_url, model="gpt-4o"),
                                  environ={}), path)
    turns = conversation(*PROMPTS)
    originals = [live.complete(messages) for messages in turns]

    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [line["reply"] for line in lines] == ["first", "second", "third"]
    assert lines[1]["messages"] == turns[1]
    assert lines[1]["model"] == "gpt-4o-2024-08-06" and lines[1]["finish_reason"] == "stop"
    assert lines[0]["cost_usd"] == originals[0].cost_usd > 0
    for line, messages in zip(lines, turns, strict=True):
        [needle] = line["expect"]
        assert 0 < len(needle) <= 60 and needle in messages[-1]["content"]
    assert "does not match" in lines[1]["expect"][0]
    assert "#1 rejected" in lines[2]["expect"][0]

    replay = ReplayLLM(path, strict=True)
    again = [replay.complete(messages) for messages in turns]
    for old, new in zip(originals, again, strict=True):
        assert (new.text, new.usage, new.cost_usd, new.model, new.priced, new.finish_reason) \
            == (old.text, old.usage, old.cost_usd, old.model, old.priced, old.finish_reason)
        assert new.latency_s == pytest.approx(old.latency_s, abs=1e-6)


def test_a_replay_whose_prompts_changed_says_so(openai_server: OpenAIServer,
                                                tmp_path: Path) -> None:
    openai_server.script("first", "second")
    path = tmp_path / "rec.jsonl"
    live = RecordingLLM(OpenAILLM(LLMConfig(base_url=openai_server.base_url), environ={}), path)
    turns = conversation(PROMPTS[0], PROMPTS[1])
    for messages in turns:
        live.complete(messages)

    changed = conversation(PROMPTS[0], PROMPTS[1].replace("does not match", "is ambiguous"))
    replay = ReplayLLM(path)
    replay.complete(changed[0])
    with pytest.raises(ReplayDiverged) as info:
        replay.complete(changed[1])
    assert "line 2" in str(info.value) and "does not match" in str(info.value)

    strict = ReplayLLM(path, strict=True)
    system_changed = [[{"role": "system", "content": "Other."}, *m[1:]] for m in turns]
    with pytest.raises(ReplayDiverged) as info:
        strict.complete(system_changed[0])
    assert "message 1 (system) differs from character 1" in str(info.value)


def test_llm_errors_are_recorded_and_replayed_as_errors(openai_server: OpenAIServer,
                                                        tmp_path: Path) -> None:
    openai_server.script(Fault.context_length(), "short enough")
    path = tmp_path / "rec.jsonl"
    live = RecordingLLM(OpenAILLM(LLMConfig(base_url=openai_server.base_url, max_retries=0),
                                  environ={}), path)
    long, short = conversation("a very long prompt"), conversation("a short prompt")
    with pytest.raises(ContextLengthError) as first:
        live.complete(long[0])
    assert first.value.factor == pytest.approx(0.9 * 128000 / 130123)
    assert live.complete(short[0]).text == "short enough"

    replay = ReplayLLM(path)
    with pytest.raises(ContextLengthError) as again:
        replay.complete(long[0])
    assert str(again.value) == str(first.value) and again.value.factor == first.value.factor
    assert replay.complete(short[0]).text == "short enough"


def test_recording_wraps_any_llm_and_make_llm_wires_it(tmp_path: Path) -> None:
    replay_file = tmp_path / "in.jsonl"
    replay_file.write_text(json.dumps({"reply": "hello"}) + "\n")
    llm = make_llm(LLMConfig(replay=replay_file, record=tmp_path / "out.jsonl"), environ={})
    assert isinstance(llm, RecordingLLM) and llm.model == "replay"
    assert llm.complete(conversation("hi there")[0]).text == "hello"
    assert json.loads((tmp_path / "out.jsonl").read_text())["reply"] == "hello"


def test_recording_appends_and_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    for _ in range(2):
        RecordingLLM(ScriptedLLM(["x"]), path).complete(conversation("hi")[0])
    assert len(path.read_text().splitlines()) == 2
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="Cannot write the record file"):
        RecordingLLM(ScriptedLLM([]), blocker / "rec.jsonl")


def test_distinctive_substring_prefers_what_is_new() -> None:
    seen: set[str] = set()
    first = distinctive_substring(PROMPTS[0], seen)
    assert first == "Propose one improvement now."
    seen.update(line.strip() for line in PROMPTS[0].splitlines())
    assert distinctive_substring(PROMPTS[2], seen) == "- #1 rejected: tests failed in test_a"
    assert distinctive_substring("x" * 500, set()) == "x" * 60
    assert distinctive_substring(" \n ", set()) == ""
    assert distinctive_substring("same", {"same"}) == "same"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ({"reply": "x", "error": {"kind": "nope", "message": "m"}}, "'error' must be an object"),
        ({"error": {"kind": "llm", "message": "m", "factor": 2}}, "'factor' must be"),
        ({"reply": "x", "messages": [{"role": "user"}]}, "'messages' must be a list"),
        ({"reply": "x", "cost_usd": -1}, "'cost_usd' must be a non-negative number"),
        ({"reply": "x", "priced": "yes"}, "'priced' must be true or false"),
        ({"reply": "x", "model": 3}, "'model' must be a string"),
    ],
)
def test_malformed_recorded_fields_are_config_errors(tmp_path: Path, line: dict[str, object],
                                                     fragment: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(ConfigError) as info:
        ReplayLLM(path)
    assert fragment in str(info.value)


def test_from_turns_and_scripted_errors() -> None:
    llm = ReplayLLM.from_turns([{"reply": "a", "expect": ["hi"]},
                                {"error": {"kind": "llm", "message": "boom"}}])
    assert llm.complete(conversation("hi")[0]).text == "a"
    with pytest.raises(LLMError, match="boom"):
        llm.complete(conversation("hi")[0])
    scripted = ScriptedLLM(["ok", ContextLengthError("too long", factor=0.3)],
                           usage=Usage(10, 5), cost_usd=0.01)
    reply = scripted.complete(conversation("x")[0])
    assert reply.usage.total_tokens == 15 and reply.cost_usd == 0.01
    with pytest.raises(ContextLengthError) as info:
        scripted.complete(conversation("x")[0])
    assert info.value.factor == 0.3


# =============================================================================================
# Context-length errors and trimming
# =============================================================================================


@pytest.mark.parametrize(
    ("message", "factor"),
    [
        ("This model's maximum context length is 8192 tokens. However, your messages resulted "
         "in 16384 tokens. Please reduce the length of the messages.", 0.45),
        ("This model's maximum context length is 4096 tokens. However, you requested 5000 "
         "tokens (4000 in the messages, 1000 in the completion).", 0.9 * 3096 / 4000),
        ("the request exceeds the available context size, try increasing it", 0.5),
        ("maximum context length is 1000 tokens, your messages resulted in 100000 tokens", 0.1),
    ],
)
def test_shrink_factor(message: str, factor: float) -> None:
    assert shrink_factor(message) == pytest.approx(factor)


def sections() -> PromptSections[Attempt]:
    return PromptSections(
        files={"src/main.py": "m" * 1000, "src/big.py": "b" * 3000, "src/small.py": "s" * 400},
        attempts=[Attempt(n=i, summary=f"try {i}", status="rejected", reasons=[])
                  for i in range(1, 5)],
        repo_map="\n".join(f"line {i}" for i in range(10)),
    )


def test_trim_keeps_the_most_important_files_that_fit_and_the_latest_attempts() -> None:
    trimmed = trim_context(sections(), 0.5)
    assert list(trimmed.files) == ["src/main.py", "src/small.py"]
    assert trimmed.omitted_paths == ("src/big.py",) and trimmed.files_omitted == 1
    assert [a.n for a in trimmed.attempts] == [3, 4] and trimmed.attempts_omitted == 2
    assert trimmed.repo_map.splitlines() == [f"line {i}" for i in range(5)]
    assert trimmed.repo_map_lines_omitted == 5
    assert trimmed.chars() < sections().chars() * 0.5


def test_trim_never_drops_the_first_file_or_the_last_attempt_and_adds_up() -> None:
    once = trim_context(sections(), 0.1)
    assert list(once.files) == ["src/main.py"]
    twice = trim_context(once, 0.1)
    assert list(twice.files) == ["src/main.py"] and [a.n for a in twice.attempts] == [4]
    assert twice.files_omitted == 2 and twice.attempts_omitted == 3
    assert twice.repo_map == "" and twice.repo_map_lines_omitted == 10


@pytest.mark.parametrize("factor", [0.0, 1.0, -0.5, 2.0])
def test_trim_factor_must_shrink(factor: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        trim_context(sections(), factor)


# =============================================================================================
# Budgets
# =============================================================================================


def reply(tokens: int, cost: float, priced: bool = True) -> Reply:
    return Reply(text="x", usage=Usage(tokens, 0), cost_usd=cost, model="m", latency_s=0.1,
                 priced=priced)


def test_budget_says_which_cap_is_reached() -> None:
    clock = FakeClock()
    budget = Ledger(max_usd=0.10, max_tokens=1000, max_minutes=2, clock=clock)
    budget.charge(reply(400, 0.04))
    assert budget.exceeded() is None
    budget.charge(reply(700, 0.04))
    assert budget.exceeded() == "The limit of 1,000 tokens is reached (1,100 used)."
    budget.charge(reply(0, 0.03))
    assert budget.exceeded() == "The budget of $0.10 is spent ($0.1100 used)."
    clock.advance(200)
    only_time = Ledger(max_minutes=2, clock=clock, started=clock() - 121)
    assert only_time.exceeded() == "The time limit of 2 minutes is reached (2.0 minutes)."


def test_budget_from_config_and_resumed_runs() -> None:
    clock = FakeClock()
    agent = AgentConfig(budget_usd=1.0, max_tokens_total=500, max_minutes=10)
    budget = Ledger.from_config(agent, elapsed_minutes=9.5, clock=clock)
    budget.charge(reply(400, 0.5))  # what the run had spent before it was resumed
    assert budget.exceeded() is None and budget.minutes == pytest.approx(9.5)
    clock.advance(31)
    assert budget.exceeded() is not None and "time limit of 10 minutes" in budget.exceeded()
    assert Ledger().exceeded() is None  # no caps, no limit


def test_an_unpriced_model_makes_the_usd_cap_unenforceable_and_says_so() -> None:
    budget = Ledger(max_usd=1.0)
    budget.charge(reply(10, 0.0, priced=False))
    assert budget.exceeded() is None
    assert "cannot be enforced" in (budget.unenforced() or "")
    assert Ledger(max_tokens=5).unenforced() is None


def test_the_ledger_counts_candidates_by_status_and_keeps_the_best_speedup() -> None:
    ledger = Ledger()
    ledger.begin()
    assert (ledger.candidates, ledger.accepted) == (1, 0)  # in flight, counted as proposed
    ledger.settle("accepted", commit="c1", speedup=1.5)
    ledger.begin()
    ledger.settle("rejected")
    ledger.begin()
    ledger.settle("accepted", commit="c2", speedup=1.2)  # slower than the best: kept as it was
    ledger.record("malformed")
    assert ledger.statuses == {"proposed": 0, "accepted": 2, "rejected": 1, "malformed": 1}
    assert (ledger.candidates, ledger.accepted, ledger.commits) == (4, 2, ["c1", "c2"])
    assert ledger.best_speedup == 1.5


def test_config_fields_and_environment() -> None:
    settings = load_settings(None, environ={"SELFCODE_MAX_TOKENS_TOTAL": "5000",
                                            "SELFCODE_MAX_MINUTES": "1.5",
                                            "SELFCODE_EDIT_FORMAT": "udiff",
                                            "SELFCODE_RECORD": "/tmp/r.jsonl"})
    assert settings.agent.max_tokens_total == 5000 and settings.agent.max_minutes == 1.5
    assert settings.llm.edit_format == "udiff" and settings.llm.record == Path("/tmp/r.jsonl")
    with pytest.raises(ConfigError, match="max_tokens_total"):
        load_settings(None, environ={"SELFCODE_MAX_TOKENS_TOTAL": "0"})


# =============================================================================================
# selfcode doctor: the endpoint check
# =============================================================================================


def endpoint(checks: list[object]) -> object:
    return next(c for c in checks if getattr(c, "name", "") == "model endpoint")


def test_doctor_reports_a_reachable_endpoint_and_its_models(
        openai_server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFCODE_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("SELFCODE_MODEL", "llama3.2")
    openai_server.script("ok")
    check = endpoint(run_checks(tmp_path))
    assert check.ok is True  # type: ignore[attr-defined]
    detail = check.detail  # type: ignore[attr-defined]
    assert f"{openai_server.base_url} is reachable" in detail
    assert "models: gpt-4o-mini, llama3.2" in detail and "not among" not in detail
    assert openai_server.requests[0]["max_tokens"] == 1


def test_doctor_reports_a_dead_port_as_unreachable(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SELFCODE_BASE_URL", f"http://127.0.0.1:{port}/v1")
    check = endpoint(run_checks(tmp_path))
    assert check.ok is False  # type: ignore[attr-defined]
    assert f"http://127.0.0.1:{port}/v1 is unreachable" in check.detail  # type: ignore[attr-defined]
    assert "connection error" in check.detail  # type: ignore[attr-defined]


def test_doctor_tells_reachable_but_failing_from_unreachable(
        openai_server: OpenAIServer, tmp_path: Path) -> None:
    openai_server.script(Fault.status(404, body={"error": {"message": "model 'nope' not found",
                                                           "code": None}}))
    settings = load_settings(None, overrides={"llm": {"base_url": openai_server.base_url,
                                                      "model": "nope"}}, environ={})
    check = endpoint(run_checks(tmp_path, environ={}, settings=settings))
    assert check.ok is False  # type: ignore[attr-defined]
    detail = check.detail  # type: ignore[attr-defined]
    assert "is reachable" in detail and "but the request failed" in detail
    assert "HTTP 404" in detail
    assert "(models: gpt-4o-mini, llama3.2; nope is not among them)" in detail


def test_doctor_without_any_endpoint_says_it_is_not_configured(tmp_path: Path) -> None:
    check = endpoint(run_checks(tmp_path, environ={}))
    assert check.ok is False and "not configured" in check.detail  # type: ignore[attr-defined]
