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
    "EndpointUnreachable",
    "LLMError",
    "Message",
    "OpenAILLM",
    "RecordingLLM",
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
    # Why the model stopped, as the endpoint says: "stop", or "length" when the reply hit
    # max_tokens and is cut off; None when unknown (replays, fakes, servers that do not say).
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    model: str

    def complete(self, messages: Sequence[Message]) -> Reply: ...


class ContextLengthError(LLMError):
    """The prompt did not fit the model's context window; trim it and try again.

    `factor` is how much of the prompt to keep (0.1-0.9): read from the server's message when it
    gives both the limit and the size ("maximum context length is 8192 tokens. However, your
    messages resulted in 9000 tokens"), with a margin, else 0.5. Pass it to `trim_context`.
    """

    def __init__(self, message: str, factor: float = 0.5) -> None:
        super().__init__(message)
        self.factor = factor


class EndpointUnreachable(LLMError):
    """No answer at all: the connection failed or timed out on every attempt."""


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


def _full_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        return str(body.get("message") or body)
    return str(body or "")


_LIMIT = re.compile(r"(?i)(?:context length|context size|context window|n_ctx)\D{0,24}?(\d+)")
_ASKED = re.compile(r"(?i)(?:resulted in|requested|request has|prompt has|prompt is)\D{0,12}?(\d+)")
_IN_MESSAGES = re.compile(r"(?i)(\d+) (?:tokens )?in the messages")
_IN_COMPLETION = re.compile(r"(?i)(\d+) (?:tokens )?in the completion")


def _first_int(pattern: re.Pattern[str], text: str) -> int | None:
    m = pattern.search(text)
    return int(m.group(1)) if m else None


def shrink_factor(message: str) -> float:
    """How much of a prompt to keep after a context-length error with this message (0.1-0.9).

    Reads OpenAI's "maximum context length is L tokens. However, your messages resulted in N
    tokens" and vLLM's "... you requested N tokens (M in the messages, C in the completion)";
    keeps 90 % of what would have fitted. 0.5 when the message gives no numbers.
    """
    limit = _first_int(_LIMIT, message)
    in_messages = _first_int(_IN_MESSAGES, message)
    asked = _first_int(_ASKED, message)
    if limit and in_messages:
        factor = (limit - (_first_int(_IN_COMPLETION, message) or 0)) / in_messages
    elif limit and asked and asked > limit:
        factor = limit / asked
    else:
        return 0.5
    return min(0.9, max(0.1, factor * 0.9))


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

    def __init__(self, problem: str, retry_after: float | None = None,
                 unreachable: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after
        self.unreachable = unreachable  # no HTTP answer at all (connection failed, timed out)


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
        finish = getattr(choices[0], "finish_reason", None) if choices else None
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
            finish_reason=finish if isinstance(finish, str) else None,
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
                    error = EndpointUnreachable if failure.unreachable else LLMError
                    raise error(
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
            raise _Retryable(f"no answer within {self.config.timeout:g}s",
                             unreachable=True) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            detail = _short(str(cause)) if cause is not None and str(cause) else "connection failed"
            raise _Retryable(f"connection error: {detail}", unreachable=True) from None
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
                "shorten the context or use a model with a larger context window.",
                factor=shrink_factor(_full_message(exc)),
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
# Replays and recordings
# --------------------------------------------------------------------------------------------

_ERROR_KINDS = ("context-length", "llm")


@dataclass(frozen=True)
class _Turn:
    line: int
    reply: str
    expect: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    cost_usd: float = 0.0
    priced: bool = True
    latency_s: float | None = None
    finish_reason: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content), when recorded
    error: tuple[str, str, float] | None = None  # (kind, message, factor): raised, not returned


_TURN_KEYS = {
    "reply", "expect", "prompt_tokens", "completion_tokens", "comment", "model", "cost_usd",
    "priced", "latency_s", "finish_reason", "messages", "error",
}


def _parse_messages(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str) for m in value
    ):
        raise ConfigError(f"Replay file {where}: 'messages' must be a list of objects with "
                          "'role' and 'content' strings.")
    return tuple((m["role"], m["content"]) for m in value)


def _parse_error(value: object, where: str) -> tuple[str, str, float]:
    if not isinstance(value, dict) or value.get("kind") not in _ERROR_KINDS \
            or not isinstance(value.get("message"), str):
        raise ConfigError(f"Replay file {where}: 'error' must be an object with 'kind' "
                          f"({' or '.join(_ERROR_KINDS)}) and a 'message' string.")
    factor = value.get("factor", 0.5)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= 1:
        raise ConfigError(f"Replay file {where}: the error's 'factor' must be a number in (0, 1].")
    return str(value["kind"]), str(value["message"]), float(factor)


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
    error = _parse_error(obj["error"], where) if obj.get("error") is not None else None
    reply = obj.get("reply", "" if error else None)
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
    numbers: dict[str, float | None] = {}
    for key in ("cost_usd", "latency_s"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value < 0 or not math.isfinite(value)):
            raise ConfigError(f"Replay file {where}: '{key}' must be a non-negative number.")
        numbers[key] = None if value is None else float(value)
    texts: dict[str, str | None] = {}
    for key in ("model", "finish_reason"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"Replay file {where}: '{key}' must be a string.")
        texts[key] = value
    priced = obj.get("priced", True)
    if not isinstance(priced, bool):
        raise ConfigError(f"Replay file {where}: 'priced' must be true or false.")
    messages = obj.get("messages")
    return _Turn(
        line=line, reply=reply, expect=tuple(expect), **tokens,
        model=texts["model"], cost_usd=numbers["cost_usd"] or 0.0, priced=priced,
        latency_s=numbers["latency_s"], finish_reason=texts["finish_reason"],
        messages=None if messages is None else _parse_messages(messages, where), error=error,
    )


def _last_user_message(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""


def _first_difference(recorded: tuple[tuple[str, str], ...],
                      messages: Sequence[Message]) -> str | None:
    """Where `messages` stop being the recorded conversation, in words; None if they are it."""
    now = tuple((m.get("role", ""), m.get("content", "")) for m in messages)
    if now == recorded:
        return None
    for index, (old, new) in enumerate(zip(recorded, now, strict=False), start=1):
        if old == new:
            continue
        if old[0] != new[0]:
            return f"message {index} is from the {new[0]} now, the {old[0]} when recorded"
        at = next((k for k, (a, b) in enumerate(zip(old[1], new[1], strict=False)) if a != b),
                  min(len(old[1]), len(new[1])))
        return (f"message {index} ({new[0]}) differs from character {at + 1}: recorded "
                f"{old[1][at:at + 40]!r}, now {new[1][at:at + 40]!r}")
    return f"the conversation has {len(now)} messages now, {len(recorded)} when recorded"


class ReplayLLM:
    """Plays recorded replies in order, from a JSONL file (one JSON object a line).

    Each line: {"reply": "...", "expect": ["substrings of the last user message"],
    "prompt_tokens": 0, "completion_tokens": 0}; blank lines are skipped and a "comment"
    key is allowed. What `RecordingLLM` writes is replayed exactly: "model", "cost_usd",
    "priced", "latency_s" and "finish_reason" come back in the `Reply`, and a line with
    "error": {"kind": "context-length" | "llm", "message": "...", "factor": 0.5} raises that
    error instead of replying. Without them a reply costs nothing and counts as priced.

    A prompt without an "expect" substring raises ReplayDiverged; with `strict=True`, so does
    any difference from a line's recorded "messages", with the first difference named.
    """

    def __init__(self, path: Path | str, model: str = "replay", strict: bool = False) -> None:
        self.model: str = model
        self.source = str(path)
        self.strict = strict
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
        return cls.from_turns([{"reply": reply} for reply in replies], model=model,
                              source="<replies>")

    @classmethod
    def from_turns(cls, turns: Sequence[Mapping[str, Any]], model: str = "replay",
                   source: str = "<turns>", strict: bool = False) -> ReplayLLM:
        """A replay of turns given as the objects a replay file holds, one a line."""
        llm = cls.__new__(cls)
        llm.model = model
        llm.source = source
        llm.strict = strict
        llm._turns = [_parse_turn(dict(turn), i, source) for i, turn in enumerate(turns, start=1)]
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
        if self.strict and turn.messages is not None:
            difference = _first_difference(turn.messages, messages)
            if difference is not None:
                raise ReplayDiverged(
                    f"The replay {self.source} line {turn.line} was recorded for another "
                    f"conversation: {difference}; re-record the replay for the current prompts."
                )
        self._next += 1
        if turn.error is not None:
            kind, message, factor = turn.error
            if kind == "context-length":
                raise ContextLengthError(message, factor=factor)
            raise LLMError(message)
        return Reply(
            text=turn.reply,
            usage=Usage(turn.prompt_tokens, turn.completion_tokens),
            cost_usd=turn.cost_usd,
            model=turn.model or self.model,
            latency_s=time.monotonic() - started if turn.latency_s is None else turn.latency_s,
            priced=turn.priced,
            finish_reason=turn.finish_reason,
        )


_EXPECT_CHARS = 60
_EXPECT_MIN_CHARS = 16


def distinctive_substring(prompt: str, seen: set[str]) -> str:
    """A short piece of `prompt` that earlier prompts (whose lines are in `seen`) lacked.

    The last new line of at least 16 characters (what changes between turns, such as an error
    message or the latest attempt, comes last), else the last new line, else the longest line;
    stripped and cut to 60 characters. "" for a blank prompt.
    """
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    if not lines:
        return ""
    fresh = [line for line in lines if line not in seen]
    long_fresh = [line for line in fresh if len(line) >= _EXPECT_MIN_CHARS]
    pick = long_fresh[-1] if long_fresh else fresh[-1] if fresh else max(lines, key=len)
    return pick[:_EXPECT_CHARS].strip()


class RecordingLLM:
    """Wraps a model and appends every exchange to a JSONL file that `ReplayLLM` replays exactly.

    Each line holds the messages, the reply, its usage, cost, model, latency and finish reason,
    and an "expect" substring of the last user message, so that a replay whose prompts drift
    says so. An `LLMError` (a context-length error included) is recorded as an "error" line and
    raised again. Lines are appended and flushed to disk one exchange at a time, so a crash
    loses nothing; an existing file is appended to.
    """

    def __init__(self, inner: LLM, path: Path | str) -> None:
        self.inner = inner
        self.model: str = inner.model
        self.path = Path(path)
        self._seen: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as exc:
            raise ConfigError(f"Cannot write the record file {self.path}: "
                              f"{_short(str(exc))}.") from None

    def __repr__(self) -> str:
        return f"RecordingLLM({self.inner!r}, path={str(self.path)!r})"

    def complete(self, messages: Sequence[Message]) -> Reply:
        prompt = _last_user_message(messages)
        expect = distinctive_substring(prompt, self._seen)
        entry: dict[str, Any] = {"expect": [expect] if expect else []}
        try:
            reply = self.inner.complete(messages)
        except LLMError as exc:
            kind = "context-length" if isinstance(exc, ContextLengthError) else "llm"
            error: dict[str, Any] = {"kind": kind, "message": str(exc)}
            if isinstance(exc, ContextLengthError):
                error["factor"] = exc.factor
            entry.update(reply="", error=error, model=self.model)
            self._write(entry, messages, prompt)
            raise
        entry.update(
            reply=reply.text, prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens, model=reply.model,
            cost_usd=reply.cost_usd, priced=reply.priced, latency_s=round(reply.latency_s, 6),
            finish_reason=reply.finish_reason,
        )
        self._write(entry, messages, prompt)
        return reply

    def _write(self, entry: dict[str, Any], messages: Sequence[Message], prompt: str) -> None:
        entry["messages"] = [{"role": m.get("role", ""), "content": m.get("content", "")}
                             for m in messages]
        self._seen.update(line.strip() for line in prompt.splitlines() if line.strip())
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise ConfigError(f"Cannot append to the record file {self.path}: "
                              f"{_short(str(exc))}.") from None


def make_llm(
    config: LLMConfig,
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
) -> LLM:
    """The model `config` asks for: a replay when `config.replay` is set, else the real client;
    wrapped in a `RecordingLLM` when `config.record` names a file."""
    llm: LLM
    if config.replay is not None:
        llm = ReplayLLM(config.replay)
    else:
        llm = OpenAILLM(config, environ=environ, sleep=sleep, on_retry=on_retry)
    if config.record is not None:
        llm = RecordingLLM(llm, config.record)
    return llm
