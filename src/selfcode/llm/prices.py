"""What a reply cost: the built-in price table, overrides from the config, and `cost_of`.

A model found in no table costs 0.0 and is reported as unpriced, so that the UI can say
"cost unknown" rather than show a cost of nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

from selfcode.errors import ConfigError
from selfcode.llm.protocol import Usage

__all__ = ["PRICES", "check_price", "cost_of"]

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


def check_price(model: str, price: Mapping[str, float]) -> tuple[float, float]:
    """The (input, output) rates of one price entry; ConfigError if they are not usable."""
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
                rate_in, rate_out = check_price(key, table[key])
                cost = (usage.prompt_tokens * rate_in + usage.completion_tokens * rate_out) / 1e6
                return cost, True
    return 0.0, False
