"""The model client against a real local server; replays, fakes and the network guard."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from selfcode.config import LLMConfig
from selfcode.errors import ConfigError, LLMError
from selfcode.llm import (
    PRICES,
    ContextLengthError,
    OpenAILLM,
    ReplayDiverged,
    ReplayExhausted,
    ReplayLLM,
    Reply,
    Usage,
    cost_of,
    make_llm,
)
from selfcode.llm.retry import _retry_after
from selfcode.testing import FunctionLLM, ScriptedLLM

from openai_server import Answer, Fault, OpenAIServer

USER = [{"role": "system", "content": "You write patches."}, {"role": "user", "content": "hi"}]


class Recorder:
    """Stands in for time.sleep and on_retry: records, never waits."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.messages: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_retry(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def make(openai_server: OpenAIServer, rec: Recorder) -> Callable[..., OpenAILLM]:
    """An OpenAILLM aimed at the local server, with small timeouts and a recording sleep."""

    def build(**overrides: Any) -> OpenAILLM:
        settings: dict[str, Any] = {
            "base_url": openai_server.base_url,
            "timeout": 2.0,
            "max_retries": 2,
            "backoff_base": 0.01,
            "backoff_max": 1.0,
        }
        settings.update(overrides)
        environ = settings.pop("environ", {"OPENAI_API_KEY": "sk-local-test"})
        return OpenAILLM(
            LLMConfig(**settings), environ=environ, sleep=rec.sleep, on_retry=rec.on_retry
        )

    return build


# ------------------------------------------------------------------------------------------
# OpenAILLM over HTTP
# ------------------------------------------------------------------------------------------


def test_success_reports_text_usage_and_cost_from_the_price_table(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Answer("the patch", prompt_tokens=1000, completion_tokens=500))
    reply = make(model="gpt-4o-mini").complete(USER)

    assert reply.text == "the patch"
    assert reply.usage == Usage(prompt_tokens=1000, completion_tokens=500)
    assert reply.cost_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert reply.priced is True
    assert reply.model == "gpt-4o-mini"
    assert reply.attempts == 1
    assert 0 < reply.latency_s < 2
    assert rec.sleeps == [] and rec.messages == []

    [body] = openai_server.requests
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == USER
    assert body["max_tokens"] == 4096
    assert body["temperature"] == 0.2
    [call] = openai_server.calls
    assert call.path == "/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer sk-local-test"


def test_dated_snapshot_reported_by_the_server_is_priced_as_its_base_model(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script(
        Answer("ok", prompt_tokens=1_000_000, completion_tokens=0, model="gpt-4o-2024-08-06")
    )
    reply = make(model="my-alias").complete(USER)
    assert reply.model == "gpt-4o-2024-08-06"
    assert reply.priced is True
    assert reply.cost_usd == pytest.approx(PRICES["gpt-4o"]["input"])


def test_unknown_model_costs_nothing_and_is_marked_unpriced(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script(Answer("ok", prompt_tokens=10_000, completion_tokens=10_000))
    reply = make(model="llama3.2").complete(USER)
    assert reply.text == "ok"
    assert reply.cost_usd == 0.0
    assert reply.priced is False


def test_configured_prices_extend_the_table(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script(Answer("ok", prompt_tokens=2_000_000, completion_tokens=1_000_000))
    reply = make(model="llama3.2", prices={"llama3.2": {"input": 0.5, "output": 2.0}}).complete(
        USER
    )
    assert reply.priced is True
    assert reply.cost_usd == pytest.approx(3.0)


def test_rate_limit_waits_as_long_as_retry_after_says_then_succeeds(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.status(429, retry_after=0.25), "after the wait")
    reply = make(backoff_max=5.0).complete(USER)

    assert reply.text == "after the wait"
    assert reply.attempts == 2
    assert rec.sleeps == [pytest.approx(0.25)]
    [message] = rec.messages
    assert "429" in message and "retrying in 0.25s" in message and "attempt 2 of 3" in message
    assert len(openai_server.requests) == 2


def test_retry_after_is_capped_at_backoff_max(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.status(429, retry_after=120), "ok")
    assert make(backoff_max=0.5).complete(USER).text == "ok"
    assert rec.sleeps == [0.5]


def test_server_errors_back_off_exponentially_with_jitter_up_to_the_cap(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.status(500), Fault.status(502), Fault.status(503), "finally")
    reply = make(max_retries=3, backoff_base=0.1, backoff_max=0.3).complete(USER)

    assert reply.text == "finally"
    assert reply.attempts == 4
    assert len(rec.sleeps) == 3 and len(rec.messages) == 3
    for wait, base in zip(rec.sleeps, [0.1, 0.2, 0.3], strict=True):
        assert base <= wait <= base * 1.25
    assert "HTTP 502" in rec.messages[1]


def test_exhausted_retries_raise_one_clear_sentence(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(*[Fault.status(500, body={"error": {"message": "overloaded"}})] * 3)
    with pytest.raises(LLMError) as info:
        make(max_retries=2).complete(USER)

    message = str(info.value)
    assert not isinstance(info.value, ContextLengthError)
    assert message.startswith("The model endpoint at " + openai_server.base_url)
    assert "after 3 attempts" in message and "HTTP 500: overloaded" in message
    assert message.endswith("or try again later.") and "\n" not in message
    assert len(openai_server.requests) == 3
    assert len(rec.messages) == 2


def test_stalled_server_times_out_and_is_retried(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.stall(5), "second try")
    started = time.monotonic()
    reply = make(timeout=0.3).complete(USER)

    assert reply.text == "second try"
    assert reply.attempts == 2
    assert 0.3 <= time.monotonic() - started < 3
    [message] = rec.messages
    assert "no answer within 0.3s" in message.lower()


@pytest.mark.parametrize("content_type", ["application/json", "text/html"])
def test_garbage_body_is_an_error_and_not_retried(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], content_type: str
) -> None:
    openai_server.script(Fault.garbage(content_type), "never reached")
    with pytest.raises(LLMError, match="did not answer like an OpenAI-compatible API"):
        make().complete(USER)
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize("item", [Fault.empty(), Answer(""), Answer("  \n")])
def test_empty_reply_is_an_error(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], item: Fault | Answer
) -> None:
    openai_server.script(item)
    with pytest.raises(LLMError) as info:
        make().complete(USER)
    assert str(info.value) == "The model returned an empty reply."


def test_context_length_raises_its_own_error_without_retrying(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.context_length(), "never reached")
    with pytest.raises(ContextLengthError, match="too long") as info:
        make().complete(USER)
    assert isinstance(info.value, LLMError)
    assert "HTTP 400" in str(info.value)
    assert len(openai_server.requests) == 1 and rec.sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        {"message": "prompt exceeds the model's context length (8192)"},
        {"message": "Requested 9000 tokens, over the maximum context of 8192"},
        {"message": "too many tokens", "code": "context_length_exceeded"},
    ],
)
def test_context_length_is_recognised_by_code_or_message(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], error: dict[str, str]
) -> None:
    openai_server.script(Fault.status(400, body={"error": error}))
    with pytest.raises(ContextLengthError):
        make().complete(USER)


def test_other_bad_requests_are_not_context_length_errors(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script(Fault.status(400, body={"error": {"message": "bad temperature"}}))
    with pytest.raises(LLMError) as info:
        make().complete(USER)
    assert not isinstance(info.value, ContextLengthError)


def test_dropped_connection_is_retried(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.disconnect(), "reconnected")
    reply = make().complete(USER)
    assert reply.text == "reconnected"
    assert reply.attempts == 2
    [message] = rec.messages
    assert "connection" in message.lower()


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "OPENAI_API_KEY"), (404, "ends in /v1"), (400, "request settings")],
)
def test_client_errors_are_not_retried_and_say_what_to_do(
    openai_server: OpenAIServer,
    make: Callable[..., OpenAILLM],
    rec: Recorder,
    status: int,
    hint: str,
) -> None:
    openai_server.script(Fault.status(status, body={"error": {"message": "nope"}}), "unused")
    with pytest.raises(LLMError) as info:
        make().complete(USER)
    assert f"HTTP {status}: nope" in str(info.value)
    assert hint in str(info.value)
    assert len(openai_server.requests) == 1 and rec.sleeps == []


def test_exhausted_quota_is_not_retried(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    body = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    openai_server.script(Fault.status(429, body=body), "unused")
    with pytest.raises(LLMError, match="billing"):
        make().complete(USER)
    assert len(openai_server.requests) == 1


def test_unreachable_endpoint_raises_llm_error_not_an_sdk_exception(rec: Recorder) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_base=0.01)
    llm = OpenAILLM(config, environ={}, sleep=rec.sleep, on_retry=rec.on_retry)
    with pytest.raises(LLMError, match="after 2 attempts") as info:
        llm.complete(USER)
    assert not isinstance(info.value, openai.OpenAIError)
    assert len(rec.sleeps) == 1


def test_reasoning_models_get_max_completion_tokens_and_no_temperature(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script("ok")
    make(model="o4-mini", max_tokens=777).complete(USER)
    [body] = openai_server.requests
    assert body["max_completion_tokens"] == 777
    assert "max_tokens" not in body and "temperature" not in body


def test_no_key_and_no_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        OpenAILLM(LLMConfig(), environ={})
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "--base-url" in message
    assert "http://localhost:11434/v1" in message


def test_the_key_comes_from_the_configured_variable(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    with pytest.raises(ConfigError, match="MY_KEY"):
        OpenAILLM(LLMConfig(api_key_env="MY_KEY"), environ={"OPENAI_API_KEY": "ignored"})
    openai_server.script("ok")
    make(api_key_env="MY_KEY", environ={"MY_KEY": "sk-mine"}).complete(USER)
    assert openai_server.calls[0].headers["authorization"] == "Bearer sk-mine"


def test_a_base_url_without_a_key_uses_a_dummy_key(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script("ok")
    assert make(environ={}).complete(USER).text == "ok"
    assert openai_server.calls[0].headers["authorization"] == "Bearer not-needed"


def test_openai_base_url_from_the_environment_is_honoured(openai_server: OpenAIServer) -> None:
    openai_server.script("via env")
    llm = OpenAILLM(LLMConfig(), environ={"OPENAI_BASE_URL": openai_server.base_url})
    assert llm.base_url == openai_server.base_url
    assert llm.complete(USER).text == "via env"


def test_a_base_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        OpenAILLM(LLMConfig(base_url="localhost:11434/v1"), environ={})


def test_a_malformed_configured_price_is_a_config_error() -> None:
    config = LLMConfig(base_url="http://127.0.0.1:9/v1", prices={"m": {"input": 1.0}})
    with pytest.raises(ConfigError, match="'m'"):
        OpenAILLM(config, environ={})


def test_list_models(openai_server: OpenAIServer, make: Callable[..., OpenAILLM]) -> None:
    openai_server.models = ["zeta", "alpha"]
    assert make().list_models() == ["alpha", "zeta"]
    assert openai_server.calls[-1].method == "GET"
    assert openai_server.calls[-1].path == "/v1/models"


def test_list_models_unsupported_is_an_llm_error(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.models = None
    with pytest.raises(LLMError, match="HTTP 404"):
        make().list_models()


def test_ping_asks_for_one_token_and_accepts_an_empty_answer(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM]
) -> None:
    openai_server.script(Answer("", prompt_tokens=5, completion_tokens=1))
    reply = make().ping()
    assert isinstance(reply, Reply)
    assert reply.usage.completion_tokens == 1
    assert openai_server.requests[0]["max_tokens"] == 1


def test_ping_without_retries_fails_fast(
    openai_server: OpenAIServer, make: Callable[..., OpenAILLM], rec: Recorder
) -> None:
    openai_server.script(Fault.status(503), "unused")
    with pytest.raises(LLMError, match="after 1 attempt "):
        make().ping(retries=0)
    assert rec.sleeps == []


# ------------------------------------------------------------------------------------------
# Prices and Retry-After parsing
# ------------------------------------------------------------------------------------------


def test_cost_of() -> None:
    usage = Usage(prompt_tokens=2_000_000, completion_tokens=1_000_000)
    assert cost_of("gpt-4o", usage) == (pytest.approx(2 * 2.50 + 10.00), True)
    assert cost_of("openai/gpt-4o-mini", usage) == (pytest.approx(2 * 0.15 + 0.60), True)
    assert cost_of("gpt-4o-2024-11-20", usage)[1] is True
    assert cost_of("mystery", usage) == (0.0, False)
    override = {"gpt-4o": {"input": 0.0, "output": 1.0}}
    assert cost_of("gpt-4o", usage, override) == (pytest.approx(1.0), True)
    for name, price in PRICES.items():
        assert set(price) == {"input", "output"}, name
        assert 0 < price["input"] <= price["output"], name


def test_retry_after_parsing() -> None:
    assert _retry_after({"retry-after": "3"}) == 3.0
    assert _retry_after({"retry-after": "0.5"}) == 0.5
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({"retry-after": "-1"}) is None
    assert _retry_after({}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    waited = _retry_after({"retry-after": later})
    assert waited is not None and 25 <= waited <= 30


# ------------------------------------------------------------------------------------------
# ReplayLLM and make_llm
# ------------------------------------------------------------------------------------------


def _write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
        "utf-8",
    )
    return path


def test_replay_plays_replies_in_order(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"reply": "first", "prompt_tokens": 7, "completion_tokens": 3},
            "",
            {"reply": "second", "expect": ["hi"], "comment": "blank lines are skipped"},
        ],
    )
    llm = ReplayLLM(path)
    assert llm.model == "replay" and llm.remaining == 2
    one = llm.complete(USER)
    two = llm.complete(USER)
    assert (one.text, two.text) == ("first", "second")
    assert one.usage == Usage(7, 3) and two.usage == Usage()
    assert one.cost_usd == 0.0 and one.priced is True
    assert llm.remaining == 0


def test_replay_exhausted(tmp_path: Path) -> None:
    llm = ReplayLLM(_write_jsonl(tmp_path / "r.jsonl", [{"reply": "only"}]))
    llm.complete(USER)
    with pytest.raises(ReplayExhausted, match="no reply left after 1") as info:
        llm.complete(USER)
    assert isinstance(info.value, LLMError)


def test_replay_diverged_names_the_line_and_the_missing_text(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "r.jsonl",
        [{"reply": "a", "expect": ["hi"]}, "", {"reply": "b", "expect": ["hi", "make it faster"]}],
    )
    llm = ReplayLLM(path)
    llm.complete(USER)
    with pytest.raises(ReplayDiverged) as info:
        llm.complete(USER)
    assert "line 3" in str(info.value) and "'make it faster'" in str(info.value)
    assert isinstance(info.value, LLMError)


def test_replay_expectations_look_at_the_last_user_message_only(tmp_path: Path) -> None:
    llm = ReplayLLM(_write_jsonl(tmp_path / "r.jsonl", [{"reply": "a", "expect": ["patches"]}]))
    with pytest.raises(ReplayDiverged):
        llm.complete(USER)  # "patches" is only in the system message


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([{"reply": "ok"}, "{not json"], "line 2 is not valid JSON"),
        (["[1, 2]"], "line 1 must be a JSON object"),
        ([{"text": "wrong key"}], "unknown key 'text'"),
        ([{"expect": ["x"]}], "line 1 needs a 'reply' string"),
        ([{"reply": "ok", "expect": [1]}], "'expect' must be a list of strings"),
        ([{"reply": "ok", "prompt_tokens": -1}], "'prompt_tokens' must be a non-negative"),
    ],
)
def test_malformed_replay_file_is_a_config_error(
    tmp_path: Path, lines: list[Any], fragment: str
) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConfigError) as info:
        ReplayLLM(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_replay_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ReplayLLM(tmp_path / "nope.jsonl")


def test_replay_from_replies() -> None:
    llm = ReplayLLM.from_replies(["x", "y"])
    assert [llm.complete(USER).text for _ in range(2)] == ["x", "y"]
    with pytest.raises(ReplayExhausted):
        llm.complete(USER)


def test_make_llm_picks_replay_or_the_real_client(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "r.jsonl", [{"reply": "replayed"}])
    replay = make_llm(LLMConfig(replay=path), environ={})
    assert isinstance(replay, ReplayLLM)
    assert replay.complete(USER).text == "replayed"
    real = make_llm(LLMConfig(model="gpt-4o"), environ={"OPENAI_API_KEY": "sk-x"})
    assert isinstance(real, OpenAILLM) and real.model == "gpt-4o"
    assert real.base_url == "https://api.openai.com/v1"
    with pytest.raises(ConfigError):
        make_llm(LLMConfig(), environ={})


# ------------------------------------------------------------------------------------------
# selfcode.testing
# ------------------------------------------------------------------------------------------


def test_function_llm_answers_with_the_function_and_records_calls() -> None:
    llm = FunctionLLM(lambda messages: f"{len(messages)} messages, last: {messages[-1]['content']}")
    reply = llm.complete(USER)
    assert reply.text == "2 messages, last: hi"
    assert reply.model == "function" and reply.cost_usd == 0.0
    assert llm.calls == [USER]


def test_scripted_llm_records_calls_and_runs_out() -> None:
    llm = ScriptedLLM(["one", "two"])
    assert llm.complete(USER).text == "one"
    assert llm.complete([{"role": "user", "content": "again"}]).text == "two"
    assert llm.calls[1] == [{"role": "user", "content": "again"}]
    with pytest.raises(ReplayExhausted, match="reply 3"):
        llm.complete(USER)


# ------------------------------------------------------------------------------------------
# The network guard in conftest.py
# ------------------------------------------------------------------------------------------


def test_real_network_is_blocked() -> None:
    with pytest.raises(RuntimeError, match="tests must not reach the network"):
        socket.create_connection(("8.8.8.8", 443), timeout=1)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(RuntimeError, match="tests must not reach the network"),
    ):
        sock.connect(("8.8.8.8", 443))
    with pytest.raises(RuntimeError, match="tests must not reach the network"):
        socket.create_connection(("api.openai.com", 443), timeout=1)


def test_the_real_provider_cannot_be_reached() -> None:
    llm = OpenAILLM(LLMConfig(max_retries=0), environ=dict(os.environ))
    with pytest.raises(RuntimeError, match="tests must not reach the network"):
        llm.complete(USER)


def test_environment_is_faked() -> None:
    assert os.environ["OPENAI_API_KEY"].startswith("sk-test")
    assert "OPENAI_BASE_URL" not in os.environ


def test_loopback_and_unix_sockets_still_work(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        socket.create_connection(server.getsockname(), timeout=1).close()

    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
