"""Values as data, for the equivalence check: encoded by the judged process, decoded by the judge.

Standard library only, like the harness. A differential runner (a candidate-uid process that
imported one side's code) turns every return value, exception and argument into plain data with
`encode`: builtin scalars and containers, a few value types (Decimal, Fraction, datetime), and
for any other object a structural record (type qualname, its `__dict__`/slots encoded the same
way, a bounded repr with memory addresses removed). The harness reads those pickles back with
`decode`, a restricted unpickler: its `find_class` knows a short allowlist of constructors, each
checking its arguments, so no byte the judged process wrote can name a callable to run (a
`GLOBAL os system` is refused) or build something huge from a few bytes (`bytearray(10**12)`,
`Fraction("1e999999999")`). `difference` compares two decoded values with a node budget, cycles
and a float tolerance; `show` renders one for a message.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import io
import math
import pickle
import re
from typing import Any

MARK = "\x00selfcode"
"""First item of a structural record: (MARK, kind, ...). kind: obj, fn, iter, cut."""
MAX_PICKLE = 4 * 1024 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 40
MAX_SHOWN = 300
MAX_ITEMS = 200
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SCALARS = (type(None), bool, int, float, complex, str, bytes, bytearray, decimal.Decimal,
            fractions.Fraction, datetime.date, datetime.time, datetime.datetime,
            datetime.timedelta, datetime.timezone)
_CONTAINERS = (list, tuple, dict, set, frozenset)


class DecodeError(Exception):
    """The bytes are not data this module wrote: refused, never executed."""


# --- encoding (in the judged process) ----------------------------------------------------------


def qualname(cls: type) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


def shown(value: object) -> str:
    """A bounded repr without memory addresses (they differ between any two processes)."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ is still a value's behaviour
        text = f"<repr raised {type(exc).__name__}>"
    return _ADDRESS.sub("", text)[:MAX_SHOWN]


class _Encoder:
    def __init__(self) -> None:
        self.nodes = 0
        self.path: set[int] = set()

    def __call__(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            return (MARK, "cut")
        kind = type(value)
        if kind in _SCALARS and not _foreign_tzinfo(value):
            return value
        if id(value) in self.path:
            return (MARK, "cut")
        self.path.add(id(value))
        try:
            if kind in _CONTAINERS:
                return self._container(value, depth)
            return self._object(value, depth)
        finally:
            self.path.discard(id(value))

    def _container(self, value: Any, depth: int) -> Any:
        if isinstance(value, dict):
            return {self._key(k, depth): self(v, depth + 1) for k, v in value.items()}
        items = [self(v, depth + 1) for v in value]
        if isinstance(value, (set, frozenset)):
            return type(value)(self._key(v, depth) for v in value)
        return items if isinstance(value, list) else tuple(items)

    def _key(self, key: Any, depth: int) -> Any:
        data = self(key, depth + 1)
        try:
            hash(data)
        except TypeError:
            return (MARK, "key", shown(key))
        return data

    def _object(self, value: Any, depth: int) -> Any:
        cls = type(value)
        if _foreign_tzinfo(value):
            return self._aware(value, depth)
        if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
            name = getattr(value, "__qualname__", "?")
            return (MARK, "fn", f"{getattr(value, '__module__', '?')}.{name}")
        if _is_iterator(value):
            items = []
            for item in value:
                items.append(self(item, depth + 1))
                if len(items) >= MAX_ITEMS:
                    break
            return (MARK, "iter", qualname(cls), items)
        state = self._state(value, depth)
        return (MARK, "obj", qualname(cls), state, shown(value))

    def _aware(self, value: datetime.datetime | datetime.time, depth: int) -> Any:
        """A datetime or time in a tzinfo of the package: its naive value, its offset and its
        tzinfo's structure (pickled whole, it would name the package's class)."""
        try:
            offset: Any = value.utcoffset()
        except Exception as exc:  # the tzinfo's own code: its failure is its behaviour
            offset = f"<utcoffset raised {type(exc).__name__}>"
        attrs = {"naive": value.replace(tzinfo=None), "utcoffset": offset,
                 "tzinfo": value.tzinfo}
        state = self({"attrs": attrs, "items": None}, depth)
        return (MARK, "obj", qualname(type(value)), state, shown(value))

    def _state(self, value: Any, depth: int) -> Any:
        attrs: dict[str, Any] = {}
        raw = getattr(value, "__dict__", None)
        if isinstance(raw, dict):
            attrs.update({str(k): v for k, v in raw.items()})
        for cls in type(value).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            for name in [slots] if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                    attrs[name] = getattr(value, name)
        items: Any = None
        if isinstance(value, dict):
            items = dict(value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
        if not attrs and items is None:
            return None
        return self({"attrs": attrs, "items": items}, depth)


def _foreign_tzinfo(value: Any) -> bool:
    """A datetime or time whose tzinfo is not the standard library's own `timezone`."""
    if type(value) not in (datetime.datetime, datetime.time) or value.tzinfo is None:
        return False
    return type(value.tzinfo) is not datetime.timezone


def _is_iterator(value: Any) -> bool:
    try:
        return hasattr(value, "__next__") and iter(value) is value
    except Exception:
        return False


def encode(value: Any) -> Any:
    """`value` as plain data (see the module docstring); never raises for a strange object."""
    return _Encoder()(value)


def dumps(value: Any) -> bytes:
    """The encoded `value`, pickled (protocol 5: sets, bytearrays without any global)."""
    return pickle.dumps(encode(value), protocol=5)


# --- restricted decoding (in the judge) --------------------------------------------------------

_DIGITS = re.compile(r"-?\d{1,4000}(/\d{1,4000})?")


def _complex(*args: Any) -> complex:
    if len(args) <= 2 and all(type(a) in (int, float) for a in args):
        return complex(*args)
    raise DecodeError("complex() with other than two numbers")


def _bytearray(*args: Any) -> bytearray:
    if not args:
        return bytearray()
    if len(args) == 1 and type(args[0]) is bytes:
        return bytearray(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] == "latin-1":
        return bytearray(args[0], "latin-1")
    raise DecodeError("bytearray() from other than bytes")  # an int would allocate that many


def _collection(kind: type) -> Any:
    def build(*args: Any) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and type(args[0]) in (list, tuple):
            return kind(args[0])
        raise DecodeError(f"{kind.__name__}() from other than a list")
    return build


def _decimal(*args: Any) -> decimal.Decimal:
    if len(args) == 1 and type(args[0]) in (str, int) and len(str(args[0])) < 5000:
        return decimal.Decimal(args[0])
    raise DecodeError("Decimal() from other than a short string")


def _fraction(*args: Any) -> fractions.Fraction:
    # Fraction("1e999999999") would compute 10**999999999: only plain digits are accepted.
    if len(args) == 1 and type(args[0]) is str and _DIGITS.fullmatch(args[0]):
        return fractions.Fraction(args[0])
    if 1 <= len(args) <= 2 and all(type(a) is int for a in args):
        return fractions.Fraction(*args)
    raise DecodeError("Fraction() from other than digits")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", "complex"): _complex,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "set"): _collection(set),
    ("builtins", "frozenset"): _collection(frozenset),
    ("decimal", "Decimal"): _decimal,
    ("_pydecimal", "Decimal"): _decimal,
    ("fractions", "Fraction"): _fraction,
    # The C types validate their own arguments (ranges, a bytes state of fixed size).
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DecodeError(f"refused to load {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DecodeError("refused a persistent id")


def decode(data: bytes) -> Any:
    """Read back what `dumps` wrote; `DecodeError` for anything else (never runs a callable
    outside the allowlist)."""
    if len(data) > MAX_PICKLE:
        raise DecodeError("larger than any encoded value")
    try:
        return _Restricted(io.BytesIO(data)).load()
    except DecodeError:
        raise
    except Exception as exc:  # truncated, malformed, a constructor refusing its arguments
        raise DecodeError(f"not an encoded value ({type(exc).__name__}: {exc})"[:300]) from None


# --- comparing and showing (in the judge) ------------------------------------------------------


class _Budget(Exception):
    pass


class _Compare:
    def __init__(self, rel_tol: float, nodes: int) -> None:
        self.rel_tol = rel_tol
        self.nodes = nodes
        self.seen: set[tuple[int, int]] = set()

    def differs(self, a: Any, b: Any, depth: int = 0) -> bool:
        self.nodes -= 1
        if self.nodes < 0 or depth > 4 * MAX_DEPTH:
            raise _Budget
        if type(a) is not type(b):
            return True
        if isinstance(a, float):
            return not (a == b or (math.isnan(a) and math.isnan(b))
                        or math.isclose(a, b, rel_tol=self.rel_tol))
        if isinstance(a, complex):
            return self.differs(a.real, b.real, depth) or self.differs(a.imag, b.imag, depth)
        if not isinstance(a, (list, tuple, dict)):
            return bool(a != b)
        pair = (id(a), id(b))
        if pair in self.seen:  # a cycle: equal so far is equal
            return False
        self.seen.add(pair)
        if isinstance(a, dict):
            # Iteration order is a dict's behaviour too, where keys are values that hash alike
            # in every process (the hash seed is fixed); objects hashed by identity are not.
            if a.keys() != b.keys() or (list(a) != list(b) and all(map(_plain, a))):
                return True
            return any(self.differs(v, b[k], depth + 1) for k, v in a.items())
        if _kind(a) == "obj" and _kind(b) == "obj" and len(a) == len(b) == 5:
            # Compare by state where both have one; a repr may name memory, a state cannot.
            if a[3] is not None and b[3] is not None:
                return a[2] != b[2] or self.differs(a[3], b[3], depth + 1)
            return a[2:] != b[2:] if (a[3] is None) == (b[3] is None) else True
        return len(a) != len(b) or any(self.differs(x, y, depth + 1)
                                       for x, y in zip(a, b, strict=True))


def _plain(key: Any) -> bool:
    """A decoded key that is data throughout (no object's record), hashed alike everywhere."""
    if type(key) is tuple:
        return _kind(key) is None and all(map(_plain, key))
    if type(key) is frozenset:
        return all(map(_plain, key))
    return type(key) in _SCALARS


def _kind(value: Any) -> str | None:
    if type(value) is tuple and len(value) >= 2 and value[0] == MARK:
        return str(value[1])
    return None


def difference(a: Any, b: Any, rel_tol: float = 0.0, nodes: int = 4 * MAX_NODES) -> bool:
    """True when the decoded values differ (floats within `rel_tol` are equal); too large or
    too deep to compare counts as different."""
    try:
        return _Compare(rel_tol, nodes).differs(a, b)
    except (_Budget, RecursionError):
        return True


def where(a: Any, b: Any, rel_tol: float = 0.0) -> str:
    """Where two decoded values first differ, for a message: "[168]: 1009 vs nothing"."""
    path = ""
    for _ in range(MAX_DEPTH):
        if type(a) is not type(b) or not isinstance(a, (list, tuple, dict)) or _kind(a):
            break
        keys: list[Any] = list(a) if isinstance(a, dict) else list(range(max(len(a), len(b))))
        if isinstance(a, dict):
            keys += [k for k in b if k not in a]
        for key in keys:
            x = _at(a, key)
            y = _at(b, key)
            if x is _NOTHING or y is _NOTHING or difference(x, y, rel_tol):
                path += f"[{show(key, 40)}]"
                a, b = x, y
                break
        else:
            break
    return f"{path}: {_shown_or_nothing(a)} vs {_shown_or_nothing(b)}"


_NOTHING = object()


def _at(container: Any, key: Any) -> Any:
    try:
        return container[key]
    except (IndexError, KeyError, TypeError):
        return _NOTHING


def _shown_or_nothing(value: Any) -> str:
    return "nothing" if value is _NOTHING else show(value, 80)


def show(value: Any, limit: int = MAX_SHOWN) -> str:
    """A short, readable rendering of a decoded value."""
    out: list[str] = []
    _show(value, out, [limit * 4], 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _show(value: Any, out: list[str], budget: list[int], depth: int) -> None:
    budget[0] -= 1
    if budget[0] < 0 or depth > 12:
        out.append("…")
        return
    kind = _kind(value)
    if kind == "obj":
        state = value[3] if len(value) > 3 else None
        attrs = state.get("attrs") if isinstance(state, dict) else None
        if attrs:
            out.append(str(value[2]).rsplit(".", 1)[-1] + "(")
            for i, (k, v) in enumerate(attrs.items()):
                out.append((", " if i else "") + f"{k}=")
                _show(v, out, budget, depth + 1)
            out.append(")")
        else:
            out.append(str(value[4]) if len(value) > 4 else "?")
    elif kind in ("fn", "key"):
        out.append(str(value[2]))
    elif kind == "iter":
        out.append(f"<{value[2]} yielding ")
        _show(value[3], out, budget, depth + 1)
        out.append(">")
    elif kind == "cut":
        out.append("…")
    elif isinstance(value, (list, tuple, set, frozenset)) and type(value) in _CONTAINERS:
        _show_items(value, out, budget, depth)
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            out.append(", " if i else "")
            _show(k, out, budget, depth + 1)
            out.append(": ")
            _show(v, out, budget, depth + 1)
            if budget[0] < 0:
                break
        out.append("}")
    else:
        out.append(repr(value)[:MAX_SHOWN])


def _show_items(value: Any, out: list[str], budget: list[int], depth: int) -> None:
    brackets: dict[type, str] = {list: "[]", tuple: "()"}
    pair = brackets.get(type(value), "{}")
    opening, closing = pair[0], pair[1]
    if isinstance(value, (set, frozenset)) and not value:
        out.append(f"{type(value).__name__}()")
        return
    out.append(opening)
    for i, item in enumerate(value):
        out.append(", " if i else "")
        _show(item, out, budget, depth + 1)
        if budget[0] < 0:
            break
    out.append("," if type(value) is tuple and len(value) == 1 else "")
    out.append(closing)
