"""`OpenAILLM`: any OpenAI-compatible chat-completions endpoint, through the official `openai` SDK.

Every failure leaves this module as a `selfcode.errors` exception whose message is one sentence
saying what went wrong and what to do; no exception from the `openai` SDK escapes. Failures
worth another try become `retry.Retryable` and are retried by `retry.Retrier`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from selfcode.config import LLMConfig
from selfcode.errors import ConfigError, LLMError
from selfcode.llm.prices import check_price, cost_of
from selfcode.llm.protocol import Message, Reply, Usage
from selfcode.llm.retry import (
    CallStats,
    ContextLengthError,
    Retrier,
    Retryable,
    retryable_status,
    shrink_factor,
)
from selfcode.llm.text import one_line

__all__ = ["OpenAILLM"]

_T = TypeVar("_T")

_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def _is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models take `max_completion_tokens` and no `temperature`."""
    return bool(_REASONING_MODEL.match(model.removeprefix("openai/")))


# --------------------------------------------------------------------------------------------
# What an HTTP error says
# --------------------------------------------------------------------------------------------


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            return one_line(message)
    if isinstance(body, str) and body.strip():
        return one_line(body)
    return one_line(exc.response.reason_phrase or "no message")


def _full_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        return str(body.get("message") or body)
    return str(body or "")


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


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


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
        self._retrier = Retrier(config, sleep=sleep, on_retry=on_retry)
        for name, price in config.prices.items():
            check_price(name, price)

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
            raise ConfigError(f"Cannot set up the OpenAI client: {one_line(str(exc))}.") from exc

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

        return self._with_retries(attempt, CallStats(), retries, what="list its models")

    # -- internals --------------------------------------------------------------------------

    def _chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        allow_empty: bool,
        retries: int | None = None,
    ) -> Reply:
        stats = CallStats()
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

    def _to_reply(self, completion: Any, stats: CallStats, allow_empty: bool) -> Reply:
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
        self, attempt: Callable[[], _T], stats: CallStats, retries: int | None, what: str
    ) -> _T:
        return self._retrier.run(lambda: self._one_attempt(attempt), stats, retries,
                                 endpoint=self.base_url, what=what)

    def _one_attempt(self, attempt: Callable[[], _T]) -> _T:
        """Run one request; map every SDK failure to `Retryable`, `LLMError` or a subclass."""
        try:
            return attempt()
        except openai.APITimeoutError:
            raise Retryable(f"no answer within {self.config.timeout:g}s",
                            unreachable=True) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            detail = "connection failed"
            if cause is not None and str(cause):
                detail = one_line(str(cause))
            raise Retryable(f"connection error: {detail}", unreachable=True) from None
        except openai.APIStatusError as exc:
            raise self._status_failure(exc) from exc
        except openai.OpenAIError as exc:
            raise LLMError(
                f"The model endpoint at {self.base_url} gave an unusable answer "
                f"({one_line(str(exc))}); check the base URL and the model name."
            ) from exc
        except ValueError as exc:  # e.g. a JSON content type with a body that is not JSON
            raise LLMError(
                f"The endpoint at {self.base_url} did not answer like an OpenAI-compatible API "
                f"(the reply could not be parsed: {one_line(str(exc), 80)}); check the base URL."
            ) from exc

    def _status_failure(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        message = _server_message(exc)
        if status == 429 and _error_code(exc) == "insufficient_quota":
            return LLMError(
                f"The model endpoint refused the request for lack of quota (HTTP 429: {message}); "
                "check the account's plan and billing."
            )
        retryable = retryable_status(status, message, exc.response.headers)
        if retryable is not None:
            return retryable
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
