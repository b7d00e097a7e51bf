"""The differential runner: one fresh interpreter per side calls the changed functions on inputs.

Standard library only (plus Hypothesis on the baseline side, for drawn inputs). The harness
starts it as the candidate uid, in one sealed tree, with no pytest loaded:

    python selfcode_equiv_run.py ORDERS.json    (results: JSON lines on stdout, below the token)

On the baseline (`"side": "a"`) it reads the recorded calls, adds their neighbours and Hypothesis
draws (fixed seed; at most `calls` per function, within `seconds`), and calls the function on
each: a fresh unpickled copy of the input per call, the call under a time limit, stdout
captured; the first calls are repeated to find functions whose result varies by itself. It sends
each input (pickled, for the other side, and encoded, for messages) with its outcome. On the
candidate (`"side": "b"`) it calls the same function on each input it is given and sends the
outcomes. An outcome is plain data (selfcode_equiv_codec): what was returned or raised, the
arguments afterwards (in-place mutation), what was printed.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import inspect
import json
import os
import pickle
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import selfcode_equiv_codec as codec
import selfcode_equiv_inputs as inputs

MAX_STDOUT = 2000
REPEATED = 8
"""How many of a function's first inputs the baseline answers twice (is it deterministic?)."""


class _Timeout(BaseException):
    """The call's time is up (a BaseException, so `except Exception` in the code cannot eat it)."""


def _alarm(*_: object) -> None:
    raise _Timeout


class Out:
    """Results, kept in memory and written to stdout after the last call, below a line with the
    run's token: while the judged code runs, this process holds no descriptor a benchmark's
    process would not (a well-known pipe would tell the code it is being checked)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lines: list[str] = []

    def send(self, record: dict[str, Any]) -> None:
        self.lines.append(json.dumps(record))

    def close(self) -> None:
        sys.stdout.flush()
        view = memoryview("\n".join(["", self.token, *self.lines, ""]).encode())
        while view:
            view = view[os.write(1, view):]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stdout_end() -> int | None:
    """Where stdout (the harness's regular file) ends now; None when it is no file."""
    sys.stdout.flush()
    try:
        return os.lseek(1, 0, os.SEEK_END)
    except OSError:
        return None


def _printed_since(start: int | None) -> str:
    end = _stdout_end()
    if start is None or end is None or end <= start:
        return ""
    return os.pread(1, min(end - start, MAX_STDOUT), start).decode("utf-8", "replace")


def call_one(func: Callable[..., Any], data: bytes,
             limit: float | None) -> tuple[dict[str, Any], float]:
    """Call `func` on a fresh copy of the pickled call `data`; (outcome as plain data, seconds).

    What it prints is read back from stdout itself (sys.stdout is not replaced), and only the
    baseline's calls run under a timer (`limit`): the candidate's whole run has the harness's
    time limit, so nothing in its process differs from an ordinary one but the caller.
    """
    args, kwargs = pickle.loads(data)
    outcome: dict[str, Any]
    printed_from = _stdout_end()
    start = time.perf_counter()
    if limit is not None:
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        value = func(*args, **kwargs)
        outcome = {"kind": "return", "value": codec.encode(value)}
    except _Timeout:
        outcome = {"kind": "timeout", "limit": limit}
    except BaseException as exc:  # SystemExit and the rest are behaviour too
        try:
            message = str(exc)[:200]
        except BaseException:
            message = "?"
        outcome = {"kind": "raise", "exc": codec.qualname(type(exc)), "msg": message}
    finally:
        if limit is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.perf_counter() - start
    if outcome["kind"] != "timeout":
        outcome["args"] = codec.encode([list(args), kwargs])
        outcome["stdout"] = _printed_since(printed_from)
    return outcome, elapsed


def resolve(target: dict[str, str]) -> tuple[Callable[..., Any] | None, str | None]:
    """The callable a target names in its freshly imported module, or why there is none."""
    try:
        obj: Any = importlib.import_module(target["module"])
    except BaseException as exc:
        return None, f"its module could not be imported ({type(exc).__name__}: {exc})"[:300]
    for part in target["qualname"].split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None, "it is not defined after importing its module"
    if inspect.isgeneratorfunction(obj) or inspect.isasyncgenfunction(obj):
        return None, "it is a generator function (its values are produced lazily)"
    if inspect.iscoroutinefunction(obj):
        return None, "it is an async function"
    if isinstance(obj, property) or not callable(obj):
        return None, "it is not a plain callable (a property or a value)"
    return obj, None


def _unique(calls: Iterator[tuple[Any, ...]], seen: set[bytes]) -> Iterator[bytes]:
    for call in calls:
        try:
            data = pickle.dumps(call, protocol=4)
        except Exception:
            continue
        if data not in seen:
            seen.add(data)
            yield data


def baseline_inputs(func: Callable[..., Any], recorded: list[bytes], calls: int,
                    seed: int) -> list[bytes]:
    """Recorded calls first, then their neighbours in turn, then Hypothesis draws."""
    decoded = []
    for data in recorded:
        with contextlib.suppress(Exception):
            decoded.append(pickle.loads(data))
    seen: set[bytes] = set()
    out = list(_unique(iter(decoded), seen))
    around = [inputs.neighbours(c) for c in decoded]
    while around and len(out) < calls:
        for gen in list(around):
            step = next(_unique(gen, seen), None)
            if step is None:
                around.remove(gen)
            else:
                out.append(step)
    draws = max(10, calls // 4)
    out += list(_unique(iter(inputs.drawn(func, decoded, draws, seed)), seen))
    return out[:calls]


def run_baseline(orders: dict[str, Any], out: Out) -> None:
    targets = orders["targets"]
    deadline = time.monotonic() + float(orders["seconds"])
    recorded: dict[str, list[str]] = orders["recorded"]
    for n, target in enumerate(targets):
        key = target["key"]
        func, why = resolve(target)
        if func is None:
            out.send({"f": key, "not_checked": why})
            continue
        calls = baseline_inputs(func, [base64.b64decode(d) for d in recorded.get(key, [])],
                                int(orders["calls"]), int(orders["seed"]))
        if not calls:
            out.send({"f": key, "not_checked": "no calls were seen in the tests or benchmarks, "
                      "and its parameters have no type hints to draw inputs from"})
            continue
        # Each function gets an equal share of what is left, so a slow one cannot starve the rest.
        until = time.monotonic() + max(0.0, deadline - time.monotonic()) / (len(targets) - n)
        _answer(func, key, calls, until, float(orders["call_seconds"]), orders, out)


def _answer(func: Callable[..., Any], key: str, calls: list[bytes], until: float,
            limit: float, orders: dict[str, Any], out: Out) -> None:
    slow = 0
    for index, data in enumerate(calls):
        if time.monotonic() > until:
            out.send({"f": key, "budget_spent": len(calls) - index})
            break
        outcome, elapsed = call_one(func, data, limit)
        if outcome["kind"] == "timeout":
            slow += 1
            continue
        if index < REPEATED:
            again, _ = call_one(func, data, limit)
            if codec.difference(outcome, again, float(orders["rel_tol"])):
                out.send({"f": key, "not_checked": "its result varies from call to call on the "
                          "baseline (randomness, time, or state kept between calls)"})
                return
        shown = codec.dumps(pickle.loads(data))
        out.send({"f": key, "i": index, "input": b64(data), "shown": b64(shown),
                  "outcome": b64(pickle.dumps(outcome, protocol=5)), "t": elapsed})
    if slow:
        out.send({"f": key, "slow": slow})


def run_candidate(orders: dict[str, Any], out: Out) -> None:
    funcs = {t["key"]: resolve(t) for t in orders["targets"]}
    out.send({"pytest": any(m == "pytest" or m.startswith("_pytest") for m in sys.modules)})
    for key, index, data, _limit in orders["inputs"]:
        func, why = funcs.get(key, (None, "unknown function"))
        if func is None:
            outcome: dict[str, Any] = {"kind": "missing", "why": why}
        else:
            outcome, _ = call_one(func, base64.b64decode(data), None)
        out.send({"f": key, "i": index, "outcome": b64(pickle.dumps(outcome, protocol=5))})


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as fh:
        orders = json.load(fh)
    out = Out(str(orders["token"]))
    if orders["side"] == "a":
        signal.signal(signal.SIGALRM, _alarm)
        # Hypothesis keeps caches in a directory: a fresh one, never the (read-only) tree.
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = tempfile.mkdtemp(prefix="selfcode-hyp-")
        # Imports of the baseline happen before the budget starts, as on the other side.
        for target in orders["targets"]:
            with contextlib.suppress(BaseException):
                importlib.import_module(target["module"])
        out.send({"pytest": any(m == "pytest" or m.startswith("_pytest") for m in sys.modules)})
        run_baseline(orders, out)
    else:
        run_candidate(orders, out)
    out.send({"done": True})
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
