"""New inputs for the equivalence check: neighbours of the recorded calls, and Hypothesis draws.

Standard library only, plus Hypothesis where the sandbox has it (selfcode ships it there). A
call is `(args, kwargs)`. `neighbours` changes one argument at a time into values a test rarely
tries: the boundary numbers 0, 1, -1, n±1, -n, 2n, n//2; empty, shorter, longer and reversed
sequences; strings with punctuation, case and non-ASCII letters mixed in. `drawn` asks
Hypothesis for calls shaped like the function's type hints (or, without hints, like the
recorded values), from a fixed seed and with sizes near the recorded ones, so the slow baseline
can still answer them.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Iterator
from typing import Any

Call = tuple[tuple[Any, ...], dict[str, Any]]

_TEXTS = ("", " ", "a", "A", "Hello, World!", "don't stop-me now", "naïve café", "straße",
          "İstanbul", "ǅ", "日本語 テキスト", "emoji 🙂 ok", "tab\tand\nnewline", "ÀÉÎÕÜ", "x" * 64)


def number_neighbours(n: int) -> list[int]:
    return list(dict.fromkeys([0, 1, -1, n - 1, n + 1, -n, 2 * n, n // 2, n - 2, n + 2]))


def float_neighbours(x: float) -> list[float]:
    if not math.isfinite(x):
        return [0.0, 1.0, -1.0]
    return list(dict.fromkeys([0.0, -0.0, 1.0, -1.0, x - 1, x + 1, -x, 2 * x, x / 2, 0.5,
                               x + 1e-9]))


def text_neighbours(s: str) -> list[str]:
    mixed = [s[:-1], s[1:], s + s, s.upper(), s.lower(), s.swapcase(), s.title(), s + "!",
             s + ", and more.", f"'{s}'", s.replace(" ", "-"), s + " é", "É" + s, s[::-1]]
    return list(dict.fromkeys([*mixed, *_TEXTS]))


def sequence_neighbours(seq: list[Any] | tuple[Any, ...]) -> list[Any]:
    kind = type(seq)
    items = list(seq)
    out: list[list[Any]] = [[], items[:1], items[:-1], items[1:], items[::-1]]
    if items:
        out += [items + items[-1:], items + items, items[:1] * 3]
        for i in dict.fromkeys([0, len(items) - 1]):  # one element moved to a neighbour
            for value in scalar_neighbours(items[i])[:5]:
                out.append([*items[:i], value, *items[i + 1:]])
    return [kind(x) for x in out]


def scalar_neighbours(value: Any) -> list[Any]:
    kind = type(value)
    if kind is bool:
        return [not value]
    if kind is int:
        return number_neighbours(value)
    if kind is float:
        return float_neighbours(value)
    if kind is str:
        return text_neighbours(value)
    if kind is bytes:
        return [b"", value[:-1], value + value, value.upper(), value + b"\xff", b"\x00"]
    if kind in (list, tuple):
        return sequence_neighbours(value)
    if kind is dict:
        keys = list(value)
        return [{}, *({k: v for k, v in value.items() if k != key} for key in keys[:2])]
    if kind in (set, frozenset):
        return [kind(), *(kind(value - {x}) for x in list(value)[:2])]
    return []


def neighbours(call: Call) -> Iterator[Call]:
    """Calls that differ from `call` in one argument, that argument moved to a neighbour."""
    args, kwargs = call
    for i, value in enumerate(args):
        for other in _others(value):
            yield (*args[:i], other, *args[i + 1:]), dict(kwargs)
    for key, value in kwargs.items():
        for other in _others(value):
            yield tuple(args), {**kwargs, key: other}


def _others(value: Any) -> Iterator[Any]:
    for other in scalar_neighbours(value):
        if type(other) is not type(value) or other != value:
            yield other


# --- Hypothesis --------------------------------------------------------------------------------


def _magnitude(samples: list[Any]) -> int:
    ints = [abs(s) for s in samples if type(s) is int]
    return max([10, *ints])


def _for_value(st: Any, value: Any, size: int) -> Any:
    kind = type(value)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-size - 10, size + 10)
    if kind is float:
        return st.floats(-size - 10.0, size + 10.0, allow_nan=False)
    if kind is str:
        return st.text(max_size=max(8, 2 * len(value)))
    if kind is bytes:
        return st.binary(max_size=max(8, 2 * len(value)))
    if kind in (list, tuple) and value:
        inner = _for_value(st, value[0], size)
        if inner is not None:
            return st.lists(inner, max_size=max(8, 2 * len(value))).map(kind)
    return None


def _for_hint(st: Any, hint: Any, size: int) -> Any:
    """Bounded strategies for builtin hints (an unbounded int would hang the slow baseline)."""
    sized = {int: st.integers(-size - 10, size + 10), bool: st.booleans(),
             float: st.floats(-size - 10.0, size + 10.0, allow_nan=False),
             str: st.text(max_size=32), bytes: st.binary(max_size=32)}
    if hint in sized:
        return sized[hint]
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, set, frozenset) and len(params) == 1:
        inner = _for_hint(st, params[0], size)
        return st.lists(inner, max_size=16).map(origin) if inner is not None else None
    if origin is tuple and params and params[-1] is not Ellipsis:
        parts = [_for_hint(st, p, size) for p in params]
        return st.tuples(*parts) if all(p is not None for p in parts) else None
    if origin is dict and len(params) == 2:
        k, v = _for_hint(st, params[0], size), _for_hint(st, params[1], size)
        return st.dictionaries(k, v, max_size=8) if k is not None and v is not None else None
    if origin is typing.Union:
        parts = [_for_hint(st, p, size) for p in params]
        return st.one_of(*parts) if all(p is not None for p in parts) else None
    if hint is type(None):
        return st.none()
    try:
        return st.from_type(hint)
    except Exception:  # a hint Hypothesis cannot build: no draws for that parameter
        return None


def strategy(func: Callable[..., Any], recorded: list[Call]) -> Any:
    """A strategy of calls shaped like `func`'s hints, else like its recorded calls; or None.

    Only positional-or-keyword parameters without a bound `self`; a parameter that neither
    hints nor recordings describe makes the whole function undrawable.
    """
    try:
        import hypothesis.strategies as st
    except ImportError:
        return None
    try:
        params = list(inspect.signature(func).parameters.values())
        hints = typing.get_type_hints(func)
    except Exception:
        return None
    parts = []
    for index, param in enumerate(params):
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        seen = [c[0][index] for c in recorded if len(c[0]) > index]
        size = _magnitude(seen)
        part = _for_hint(st, hints[param.name], size) if param.name in hints else None
        if part is None and seen:
            part = _for_value(st, seen[0], size)
        if part is None:
            if param.default is not param.empty:
                break
            return None
        parts.append(part)
    if not parts:
        return None
    return st.tuples(*parts).map(lambda args: (tuple(args), {}))


def drawn(func: Callable[..., Any], recorded: list[Call], count: int, seed: int) -> list[Call]:
    """Up to `count` calls drawn by Hypothesis from a fixed seed; [] without Hypothesis."""
    calls = strategy(func, recorded)
    if calls is None or count <= 0:
        return []
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    out: list[Call] = []

    @fixed_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(calls)
    def collect(call: Call) -> None:
        out.append(call)

    try:
        collect()
    except Exception:  # generation itself failed: the recorded and neighbour calls remain
        return out
    return out
