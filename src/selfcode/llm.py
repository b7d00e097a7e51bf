"""Talking to a model: the `LLM` protocol, the openai-SDK client, the price table and replays.

Every failure leaves this module as a `selfcode.errors` exception whose message is one sentence
saying what went wrong and what to do; no exception from the `openai` SDK escapes.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import openai
from openai.types.chat import ChatCompletion

from selfcode.config import LLMConfig
from selfcode.errors import ConfigError, LLMError

__all__ = [
    "LLM",
    "PRICES",
    "ContextLengthError",
    "LLMError",
    "Message",
    "OpenAILLM",
    "ReplayDiverged",
    "ReplayExhausted",
    "ReplayLLM",
    "Reply",
    "Usage",
    "cost_of",
    "make_llm",
]

Message = dict[str, str]
"""One chat message: {"role": "system" | "user" | "assistant", "content": "..."}."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage
    cost_usd: float  # 0.0 when the model is not in the price table
    model: str
    latency_s: float  # wall time of the whole complete() call, retries and waits included
    priced: bool  # False when the model had no price, so the UI can say "cost unknown"
    attempts: int = 1  # HTTP attempts it took (retries + 1)


@runtime_checkable
class LLM(Protocol):
    model: str

    def complete(self, messages: Sequence[Message]) -> Reply: ...


class ContextLengthError(LLMError):
    """The prompt did not fit the model's context window; trim it and try again."""


class ReplayExhausted(LLMError):
    """A replay (or scripted fake) was asked for more replies than it holds."""


class ReplayDiverged(LLMError):
    """A prompt no longer contains what the replay file expects, so its replies no longer fit."""


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------

PRICES: dict[str, dict[str, float]] = {
    # USD per 1M tokens, standard (non-batch, uncached) OpenAI list prices as of mid-2025.
    # Extend or override them with `prices` in [tool.selfcode.llm].
    "gpt-5": {"input": 1.25, "output": 10.00},
    "gpt-5-mini": {"input": 0.25, "output": 2.00},
    "gpt-5-nano": {"input": 0.05, "output": 0.40},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "o3": {"input": 2.00, "output": 8.00},
    "o3-mini": {"input": 1.10, "output": 4.40},
    "o4-mini": {"input": 1.10, "output": 4.40},
}

_DATED_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _price_keys(model: str) -> Iterator[str]:
    """The names to look a model up under: as given, without `openai/`, without a date suffix."""
    yield model
    bare = model.removeprefix("openai/")
    undated = _DATED_SNAPSHOT.sub("", bare)
    if bare != model:
        yield bare
    if undated != bare:
        yield undated


def _check_price(model: str, price: Mapping[str, float]) -> tuple[float, float]:
    try:
        rates = (float(price["input"]), float(price["output"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"The price of model '{model}' must be a table with numeric 'input' and 'output' "
            "entries (USD per million tokens)."
        ) from exc
    if any(rate < 0 or not math.isfinite(rate) for rate in rates):
        raise ConfigError(f"The price of model '{model}' must not be negative.")
    return rates


def cost_of(
    model: str,
    usage: Usage,
    extra_prices: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[float, bool]:
    """What `usage` cost on `model` in USD, and whether the model had a price at all.

    `extra_prices` (USD per 1M tokens) take precedence over `PRICES`. A dated snapshot such as
    `gpt-4o-2024-08-06` and an `openai/` prefix (OpenRouter) fall back to the base model's price.
    An unknown model costs 0.0 and is reported as unpriced.
    """
    for table in (extra_prices or {}, PRICES):
        for key in _price_keys(model):
            if key in table:
                rate_in, rate_out = _check_price(key, table[key])
                cost = (usage.prompt_tokens * rate_in + usage.completion_tokens * rate_out) / 1e6
                return cost, True
    return 0.0, False


# --------------------------------------------------------------------------------------------
# The real client
# --------------------------------------------------------------------------------------------

_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def _is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models take `max_completion_tokens` and no `temperature`."""
    return bool(_REASONING_MODEL.match(model.removeprefix("openai/")))


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value >= 1 else f"{value:.2g}s"


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            return _short(message)
    if isinstance(body, str) and body.strip():
        return _short(body)
    return _short(exc.response.reason_phrase or "no message")


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    code = exc.code
    if not code and isinstance(body, Mapping):
        code = body.get("code") or body.get("type")
    return str(code or "")


def _is_context_length(exc: openai.APIStatusError) -> bool:
    if exc.status_code not in (400, 413, 422):
        return False
    if _error_code(exc) == "context_length_exceeded":
        return True
    message = _server_message(exc).lower()
    return "context length" in message or "maximum context" in message


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - time.time())
    return value if math.isfinite(value) and value >= 0 else None


class _Retryable(Exception):
    """An attempt failed in a way that may pass on retry; `problem` is a phrase for messages."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


@dataclass
class _CallStats:
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)


class OpenAILLM:
    """Any OpenAI-compatible chat-completions endpoint, through the official `openai` SDK.

    The SDK's own retries are off; this class retries 429, 408, 5xx, timeouts and dropped
    connections itself (exponential backoff with jitter, `Retry-After` honoured) so that
    every retry can be reported through `on_retry`.
    """

    def __init__(
        self,
        config: LLMConfig,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.config = config
        self.model: str = config.model
        self._sleep = sleep
        self._on_retry = on_retry
        for name, price in config.prices.items():
            _check_price(name, price)

        base_url = config.base_url or environ.get("OPENAI_BASE_URL") or None
        api_key = environ.get(config.api_key_env) or None
        if api_key is None and base_url is None:
            raise ConfigError(
                f"No model endpoint is configured: set {config.api_key_env} to use OpenAI, or "
                "pass --base-url for a local OpenAI-compatible server such as Ollama "
                "(http://localhost:11434/v1)."
            )
        if base_url is not None and not re.match(r"^https?://[^/\s]+", base_url):
            raise ConfigError(
                f"The base URL '{base_url}' is not an http(s) URL; "
                "use one like http://localhost:11434/v1."
            )
        self.base_url: str = (base_url or "https://api.openai.com/v1").rstrip("/")
        try:
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=api_key or "not-needed",  # local servers ignore the key
                timeout=config.timeout,
                max_retries=0,
            )
        except openai.OpenAIError as exc:
            raise ConfigError(f"Cannot set up the OpenAI client: {_short(str(exc))}.") from exc

    def __repr__(self) -> str:
        return f"OpenAILLM(model={self.model!r}, base_url={self.base_url!r})"

    # -- public API -------------------------------------------------------------------------

    def complete(self, messages: Sequence[Message]) -> Reply:
        return self._chat(messages, max_tokens=self.config.max_tokens, allow_empty=False)

    def ping(self, retries: int | None = None) -> Reply:
        """A one-token request, to check the endpoint, the key and the model name."""
        return self._chat(
            [{"role": "user", "content": "Reply with the word: ok"}],
            max_tokens=1,
            allow_empty=True,
            retries=retries,
        )

    def list_models(self, retries: int | None = None) -> list[str]:
        """The model ids the endpoint offers (GET /models)."""

        def attempt() -> list[str]:
            page = self._client.models.list()
            data = getattr(page, "data", None)
            if not isinstance(data, list):
                raise LLMError(
                    f"The endpoint at {self.base_url} did not answer the model list like an "
                    "OpenAI-compatible API; check the base URL."
                )
            return sorted(str(getattr(item, "id", "")) for item in data if getattr(item, "id", ""))

        return self._with_retries(attempt, _CallStats(), retries, what="list its models")

    # -- internals --------------------------------------------------------------------------

    def _chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        allow_empty: bool,
        retries: int | None = None,
    ) -> Reply:
        stats = _CallStats()
        params: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages]}
        if _is_reasoning_model(self.model):
            params["max_completion_tokens"] = max_tokens
        else:
            params["max_tokens"] = max_tokens
            params["temperature"] = self.config.temperature

        def attempt() -> Any:
            return self._client.chat.completions.create(**params)

        completion = self._with_retries(attempt, stats, retries, what="answer")
        return self._to_reply(completion, stats, allow_empty)

    def _to_reply(self, completion: Any, stats: _CallStats, allow_empty: bool) -> Reply:
        if not isinstance(completion, ChatCompletion):
            raise LLMError(
                f"The endpoint at {self.base_url} did not answer like an OpenAI-compatible API "
                "(the reply was not chat-completion JSON); check the base URL."
            )
        choices = getattr(completion, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        text = getattr(message, "content", None) if message is not None else None
        if not isinstance(text, str):
            text = ""
        if not text.strip() and not allow_empty:
            raise LLMError("The model returned an empty reply.")
        raw_usage = getattr(completion, "usage", None)
        usage = Usage(
            prompt_tokens=int(getattr(raw_usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(raw_usage, "completion_tokens", 0) or 0),
        )
        served_model = getattr(completion, "model", None)
        served_model = served_model if isinstance(served_model, str) and served_model else None
        cost, priced = cost_of(self.model, usage, self.config.prices)
        if not priced and served_model:
            cost, priced = cost_of(served_model, usage, self.config.prices)
        return Reply(
            text=text,
            usage=usage,
            cost_usd=cost,
            model=served_model or self.model,
            latency_s=time.monotonic() - stats.started,
            priced=priced,
            attempts=stats.attempts,
        )

    def _with_retries(
        self, attempt: Callable[[], _T], stats: _CallStats, retries: int | None, what: str
    ) -> _T:
        max_retries = max(0, self.config.max_retries if retries is None else retries)
        for index in range(max_retries + 1):
            stats.attempts += 1
            try:
                return self._one_attempt(attempt)
            except _Retryable as failure:
                if index >= max_retries:
                    tries = "attempt" if stats.attempts == 1 else "attempts"
                    raise LLMError(
                        f"The model endpoint at {self.base_url} failed to {what} after "
                        f"{stats.attempts} {tries} ({failure.problem}); check that it is running "
                        "and reachable, or try again later."
                    ) from None
                wait = self._backoff(index, failure.retry_after)
                if self._on_retry is not None:
                    self._on_retry(
                        f"{failure.problem[0].upper()}{failure.problem[1:]}; retrying in "
                        f"{_seconds(wait)} (attempt {stats.attempts + 1} of {max_retries + 1})."
                    )
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, index: int, retry_after: float | None) -> float:
        cap = self.config.backoff_max
        if retry_after is not None:
            return min(retry_after, cap)
        delay = min(self.config.backoff_base * 2**index, cap)
        return delay + random.uniform(0, delay * 0.25)

    def _one_attempt(self, attempt: Callable[[], _T]) -> _T:
        """Run one request; map every SDK failure to `_Retryable`, `LLMError` or a subclass."""
        try:
            return attempt()
        except openai.APITimeoutError:
            raise _Retryable(f"no answer within {self.config.timeout:g}s") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            detail = _short(str(cause)) if cause is not None and str(cause) else "connection failed"
            raise _Retryable(f"connection error: {detail}") from None
        except openai.APIStatusError as exc:
            raise self._status_failure(exc) from exc
        except openai.OpenAIError as exc:
            raise LLMError(
                f"The model endpoint at {self.base_url} gave an unusable answer "
                f"({_short(str(exc))}); check the base URL and the model name."
            ) from exc
        except ValueError as exc:  # e.g. a JSON content type with a body that is not JSON
            raise LLMError(
                f"The endpoint at {self.base_url} did not answer like an OpenAI-compatible API "
                f"(the reply could not be parsed: {_short(str(exc), 80)}); check the base URL."
            ) from exc

    def _status_failure(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        message = _server_message(exc)
        code = _error_code(exc)
        if status == 429 and code == "insufficient_quota":
            return LLMError(
                f"The model endpoint refused the request for lack of quota (HTTP 429: {message}); "
                "check the account's plan and billing."
            )
        if status in (408, 429) or status >= 500:
            kind = "rate limited" if status == 429 else "server error"
            return _Retryable(
                f"{kind}, HTTP {status}: {message}", _retry_after(exc.response.headers)
            )
        if _is_context_length(exc):
            return ContextLengthError(
                f"The prompt is too long for model '{self.model}' (HTTP {status}: {message}); "
                "shorten the context or use a model with a larger context window."
            )
        advice = {
            401: f"check the API key in {self.config.api_key_env}",
            403: "check that the key may use this model",
            404: "check the model name and that the base URL ends in /v1",
        }.get(status, "check the model name, the base URL and the request settings")
        return LLMError(
            f"The model endpoint rejected the request (HTTP {status}: {message}); {advice}."
        )


# --------------------------------------------------------------------------------------------
# Replays
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Turn:
    line: int
    reply: str
    expect: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0


_TURN_KEYS = {"reply", "expect", "prompt_tokens", "completion_tokens", "comment"}


def _parse_turn(obj: object, line: int, source: str) -> _Turn:
    where = f"{source} line {line}"
    if not isinstance(obj, dict):
        raise ConfigError(f"Replay file {where} must be a JSON object with a 'reply' string.")
    unknown = sorted(set(obj) - _TURN_KEYS)
    if unknown:
        raise ConfigError(
            f"Replay file {where} has unknown key '{unknown[0]}'; "
            f"allowed keys are {', '.join(sorted(_TURN_KEYS))}."
        )
    reply = obj.get("reply")
    if not isinstance(reply, str):
        raise ConfigError(f"Replay file {where} needs a 'reply' string.")
    expect = obj.get("expect", [])
    if isinstance(expect, str):
        expect = [expect]
    if not isinstance(expect, list) or not all(isinstance(item, str) for item in expect):
        raise ConfigError(f"Replay file {where}: 'expect' must be a list of strings.")
    tokens: dict[str, int] = {}
    for key in ("prompt_tokens", "completion_tokens"):
        value = obj.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"Replay file {where}: '{key}' must be a non-negative integer.")
        tokens[key] = value
    return _Turn(line=line, reply=reply, expect=tuple(expect), **tokens)


def _last_user_message(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""


class ReplayLLM:
    """Plays recorded replies in order, from a JSONL file (one JSON object a line).

    Each line: {"reply": "...", "expect": ["substrings of the last user message"],
    "prompt_tokens": 0, "completion_tokens": 0}; blank lines are skipped and a "comment"
    key is allowed. Replies cost nothing and count as priced.
    """

    def __init__(self, path: Path | str, model: str = "replay") -> None:
        self.model: str = model
        self.source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"The replay file {path} does not exist.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read the replay file {path}: {_short(str(exc))}.") from None
        turns: list[_Turn] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"Replay file {path} line {number} is not valid JSON ({exc.msg})."
                ) from None
            turns.append(_parse_turn(obj, number, str(path)))
        self._turns: list[_Turn] = turns
        self._next = 0

    @classmethod
    def from_replies(cls, replies: Sequence[str], model: str = "replay") -> ReplayLLM:
        """A replay of the given texts, in order, with no expectations."""
        llm = cls.__new__(cls)
        llm.model = model
        llm.source = "<replies>"
        llm._turns = [_Turn(line=i, reply=r) for i, r in enumerate(replies, start=1)]
        llm._next = 0
        return llm

    @property
    def remaining(self) -> int:
        return len(self._turns) - self._next

    def complete(self, messages: Sequence[Message]) -> Reply:
        started = time.monotonic()
        if self._next >= len(self._turns):
            raise ReplayExhausted(
                f"The replay {self.source} has no reply left after {len(self._turns)}; "
                "record more replies or run fewer iterations."
            )
        turn = self._turns[self._next]
        prompt = _last_user_message(messages)
        for needle in turn.expect:
            if needle not in prompt:
                raise ReplayDiverged(
                    f"The replay {self.source} line {turn.line} expects the prompt to contain "
                    f"{needle!r}, but it does not; re-record the replay for the current prompts."
                )
        self._next += 1
        return Reply(
            text=turn.reply,
            usage=Usage(turn.prompt_tokens, turn.completion_tokens),
            cost_usd=0.0,
            model=self.model,
            latency_s=time.monotonic() - started,
            priced=True,
        )


def make_llm(
    config: LLMConfig,
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
) -> LLM:
    """The model `config` asks for: a replay when `config.replay` is set, else the real client."""
    if config.replay is not None:
        return ReplayLLM(config.replay)
    return OpenAILLM(config, environ=environ, sleep=sleep, on_retry=on_retry)
