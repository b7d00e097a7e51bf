"""What to do when a request fails: wait and retry it, or give up, or shrink the prompt.

`Retrier` runs an attempt up to `max_retries + 1` times with exponential backoff and jitter,
honouring the server's `Retry-After`, and reports each retry through `on_retry`. An attempt
asks for another try by raising `Retryable`; `retryable_status` says which HTTP statuses do.
When the attempts run out the failure is an `LLMError` (`EndpointUnreachable` when no attempt
got an answer at all). A prompt too long for the model is no case for a retry as it is:
`ContextLengthError` carries how much of it to keep (`shrink_factor`), for `trim_context`.

Nothing here knows the openai SDK; `openai_client` maps the SDK's exceptions onto these.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from selfcode.config import LLMConfig
from selfcode.errors import LLMError

__all__ = [
    "CallStats",
    "ContextLengthError",
    "EndpointUnreachable",
    "Retrier",
    "RetriesExhausted",
    "Retryable",
    "retryable_status",
    "shrink_factor",
]

_T = TypeVar("_T")


class ContextLengthError(LLMError):
    """The prompt did not fit the model's context window; trim it and try again.

    `factor` is how much of the prompt to keep (0.1-0.9): read from the server's message when it
    gives both the limit and the size ("maximum context length is 8192 tokens. However, your
    messages resulted in 9000 tokens"), with a margin, else 0.5. Pass it to `trim_context`.
    """

    def __init__(self, message: str, factor: float = 0.5) -> None:
        super().__init__(message)
        self.factor = factor


class RetriesExhausted(LLMError):
    """Every attempt failed in a way worth another try (429, 5xx, no answer); `problem` is the
    last failure's phrase ("rate limited, HTTP 429: ..."), for callers that word it themselves."""

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem


class EndpointUnreachable(RetriesExhausted):
    """No answer at all: the connection failed or timed out on every attempt."""


# --------------------------------------------------------------------------------------------
# Context length
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------


def _retry_after_ms(headers: Mapping[str, str]) -> float | None:
    millis = headers.get("retry-after-ms")
    if not millis:
        return None
    try:
        value = float(millis) / 1000
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or date)."""
    if not headers:
        return None
    millis = _retry_after_ms(headers)
    if millis is not None:
        return millis
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


class Retryable(Exception):
    """An attempt failed in a way that may pass on retry; `problem` is a phrase for messages."""

    def __init__(self, problem: str, retry_after: float | None = None,
                 unreachable: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after
        self.unreachable = unreachable  # no HTTP answer at all (connection failed, timed out)


def retryable_status(status: int, message: str,
                     headers: Mapping[str, str] | None) -> Retryable | None:
    """A `Retryable` for an HTTP status worth another try (408, 429, 5xx), else None."""
    if status not in (408, 429) and status < 500:
        return None
    kind = "rate limited" if status == 429 else "server error"
    return Retryable(f"{kind}, HTTP {status}: {message}", _retry_after(headers))


@dataclass
class CallStats:
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value >= 1 else f"{value:.2g}s"


class Retrier:
    """Retries an attempt as `config` says (`max_retries`, `backoff_base`, `backoff_max`)."""

    def __init__(self, config: LLMConfig, sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._sleep = sleep
        self._on_retry = on_retry

    def run(self, attempt: Callable[[], _T], stats: CallStats, retries: int | None, *,
            endpoint: str, what: str) -> _T:
        """`attempt()`, retried while it raises `Retryable`; `retries` overrides the config.

        `endpoint` and `what` ("answer", "list its models") make the final error's sentence.
        """
        max_retries = max(0, self.config.max_retries if retries is None else retries)
        for index in range(max_retries + 1):
            stats.attempts += 1
            try:
                return attempt()
            except Retryable as failure:
                if index >= max_retries:
                    tries = "attempt" if stats.attempts == 1 else "attempts"
                    error = EndpointUnreachable if failure.unreachable else RetriesExhausted
                    raise error(
                        f"The model endpoint at {endpoint} failed to {what} after "
                        f"{stats.attempts} {tries} ({failure.problem}); check that it is running "
                        "and reachable, or try again later.",
                        problem=failure.problem,
                    ) from None
                wait = self.backoff(index, failure.retry_after)
                if self._on_retry is not None:
                    self._on_retry(
                        f"{failure.problem[0].upper()}{failure.problem[1:]}; retrying in "
                        f"{_seconds(wait)} (attempt {stats.attempts + 1} of {max_retries + 1})."
                    )
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def backoff(self, index: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `index + 1`: the server's ask, else 2**index, capped."""
        cap = self.config.backoff_max
        if retry_after is not None:
            return min(retry_after, cap)
        delay: float = min(self.config.backoff_base * 2**index, cap)
        return delay + random.uniform(0, delay * 0.25)
