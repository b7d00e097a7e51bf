"""The pure parts of the equivalence check: which functions changed, which inputs are tried, and
how the judge reads the judged process's answers (a restricted unpickler that runs nothing).

The whole check, in the Docker sandbox, is in the hostile corpus (tests/hostile/equivalence-*).
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import math
import pickle
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.equivalence import changed_functions, module_name, plan, reasons
from selfcode.gate.verdict import Counterexample, EquivalenceVerdict
from selfcode.resources import harness_dir

sys.path.insert(0, str(harness_dir()))

import selfcode_equiv_codec as codec
import selfcode_equiv_inputs as inputs

pytest_plugins = ["docker_util"]

BASE = '''"""A module."""
import math

LIMIT = 10


def helper(x):
    """Squares."""
    return x * x


def public(x):
    return helper(x) + 1


def _private_caller(x):
    return helper(x)


def outer(x):
    return public(x)


def uses_limit(x):
    return min(x, LIMIT)


class Box:
    size = 3

    def area(self):
        return self.size * self.size

    def twice(self):
        return 2 * self.area()


def untouched(x):
    return x
'''


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


@pytest.mark.parametrize("new, expected", [
    (BASE, []),
    # Docstrings, comments and formatting are not behaviour.
    (edit('    """Squares."""\n    return x * x', "    # squares\n    return (x *\n            x)"), []),
    # A changed body, and every public caller up the chain (not the private one).
    (edit("return x * x", "return x ** 2"), ["helper", "public", "outer"]),
    # A module-level name read by a function.
    (edit("LIMIT = 10", "LIMIT = 11"), ["uses_limit"]),
    # A method, and the methods of its class that call it through self.
    (edit("return self.size * self.size", "return self.size ** 2"), ["Box.area", "Box.twice"]),
    # The class body outside its methods changes every method.
    (edit("    size = 3", "    size = 4"), ["Box.area", "Box.twice"]),
    # A removed public function is listed (the candidate must still answer it).
    (edit("def untouched(x):\n    return x\n", ""), ["untouched"]),
    # A new function is nothing to compare; its changed caller is.
    (edit("def public(x):\n    return helper(x) + 1", "def public(x):\n    return _new(x)\n\n\n"
          "def _new(x):\n    return x * x + 1"), ["public", "outer"]),
    # Rebinding a function's name after its def.
    (BASE + "\nuntouched = abs\n", ["untouched"]),
    # A call at import could patch anything: every function is compared.
    (BASE + "\nglobals().update(helper=abs)\n", ["helper", "public", "_private_caller", "outer",
                                                 "uses_limit", "Box.area", "Box.twice",
                                                 "untouched"]),
    # The module's docstring is no behaviour.
    (edit('"""A module."""', '"""Another module."""'), []),
])
def test_changed_functions(new: str, expected: list[str]) -> None:
    assert changed_functions(BASE, new) == expected


@pytest.mark.parametrize("path, module", [
    ("src/primes/__init__.py", "primes"), ("src/pkg/mod.py", "pkg.mod"),
    ("pkg/sub/__init__.py", "pkg.sub"), ("tool.py", "tool"), ("scripts/my-tool.py", None),
    ("README.md", None), ("src/__init__.py", None),
])
def test_module_name(path: str, module: str | None) -> None:
    assert module_name(path) == module


def test_plan_names_what_it_cannot_check_and_why() -> None:
    old = "def read(p):\n    return open(p).read()\n\n\ndef add(a, b):\n    return a + b\n"
    new = "def read(p):\n    with open(p) as f:\n        return f.read()\n\n\n" \
          "def add(a, b):\n    return b + a\n"
    found = plan({"src/m.py": old, "src/gone.py": "def f():\n    pass\n", "src/bad.py": old},
                 {"src/m.py": new, "src/gone.py": None, "src/bad.py": "def (:", "src/new.py": ""})
    assert [t.key for t in found.targets] == ["m:add"]
    assert "files" in found.not_checked["m:read"] and "open" in found.not_checked["m:read"]
    assert found.not_checked["gone:*"] == "its module was removed by the patch"
    assert "does not parse" in found.not_checked["bad:*"]
    assert not any(k.startswith("new:") for k in found.not_checked)
    # Only the baseline's nature counts: naming `open` in the candidate skips nothing.
    sneaky = plan({"m.py": "def f(x):\n    return x\n"},
                  {"m.py": "def f(x):\n    open\n    return x\n"})
    assert [t.key for t in sneaky.targets] == ["m:f"] and not sneaky.not_checked
    # Text the parser cannot take is named, never a crash of the judge.
    for text in ("x = " + "-" * 200_000 + "1\n", "def f():\n    return \0\n"):
        assert "m:*" in plan({"m.py": "def f():\n    return 1\n"}, {"m.py": text}).not_checked


def test_reasons_reject_a_counterexample_and_not_checked_only_when_required() -> None:
    example = Counterexample(function="m:f", input="f(0)", candidate="raised IndexError('x')",
                             baseline="returned []")
    report = EquivalenceVerdict(functions=["m:f", "m:g"], not_checked={"m:g": "a generator"},
                                counterexample=example)
    assert reasons(report, require=False, pytest_imported=False) == [
        "behaviour differs from the baseline: f(0) raised IndexError('x'), the baseline "
        "returned []"]
    quiet = EquivalenceVerdict(functions=["m:g"], not_checked={"m:g": "a generator"})
    assert reasons(quiet, require=False, pytest_imported=False) == []
    assert reasons(quiet, require=True, pytest_imported=False) == [
        "equivalence not checked for m:g: a generator (require_equivalence is on)"]
    assert "loads pytest" in reasons(quiet, require=False, pytest_imported=True)[0]


# --- new inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, must_include", [
    (5000, [0, 1, -1, 4999, 5001, 10000, -5000]),
    (1, [0, 2, -1]),
    (2.5, [0.0, -1.0, 1.5, 3.5, -2.5]),
    ("Hello world", ["", "Hello worl", "HELLO WORLD", "hello world", "naïve café", "straße",
                     "Hello world!"]),
    ([1, 2, 3], [[], [1], [1, 2], [2, 3], [3, 2, 1], [1, 2, 3, 3], [0, 2, 3], [1, 2, 4]]),
    ((1, 2), [(), (1,), (2, 1)]),
    ({"a": 1, "b": 2}, [{}, {"b": 2}, {"a": 1}]),
    (True, [False]),
    (b"ab", [b"", b"a", b"abab"]),
])
def test_neighbours_of_a_value(value: Any, must_include: list[Any]) -> None:
    found = inputs.scalar_neighbours(value)
    for expected in must_include:
        assert any(type(f) is type(expected) and f == expected for f in found), expected


def test_neighbours_change_one_argument_at_a_time() -> None:
    calls = list(inputs.neighbours(((3, "ab"), {"k": 1})))
    assert ((2, "ab"), {"k": 1}) in calls and ((3, ""), {"k": 1}) in calls
    assert ((3, "ab"), {"k": 0}) in calls
    assert all(sum(a != b for a, b in zip((3, "ab", 1), (*c[0], c[1]["k"]), strict=True)) == 1
               for c in calls)


def primes_up_to(limit: int) -> list[int]:
    return []


def untyped(text, n):  # type: ignore[no-untyped-def]
    return text * n


def test_hypothesis_draws_are_fixed_by_the_seed_and_bounded_by_the_recordings() -> None:
    recorded = [((5000,), {})]
    first = inputs.drawn(primes_up_to, recorded, 30, seed=7)
    assert first == inputs.drawn(primes_up_to, recorded, 30, seed=7)
    assert len(first) > 10 and all(type(c[0][0]) is int for c in first)
    # Near the recorded sizes: the slow baseline must still answer them.
    assert all(abs(c[0][0]) <= 5010 for c in first)
    # Without hints, shaped like the recorded values.
    shaped = inputs.drawn(untyped, [(("ab", 2), {})], 20, seed=1)
    assert shaped and all(type(a) is str and type(n) is int for (a, n), _ in shaped)
    # Nothing to go on: no draws.
    assert inputs.drawn(untyped, [], 20, seed=1) == []


# --- the restricted decoding -------------------------------------------------------------------


class Point:
    def __init__(self, x: int, y: list[int]) -> None:
        self.x, self.y = x, y


class Slotted:
    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        self.a = a


class Opaque:
    __slots__ = ()


VALUES: list[Any] = [
    None, True, 3, -2**100, 1.5, math.inf, complex(1, 2), "naïve", b"\x00\xff",
    bytearray(b"ab"), [1, [2, (3,)]], {"a": {1, 2}, 2: frozenset({3})}, set(), (),
    decimal.Decimal("1.10"), fractions.Fraction(1, 3),
    datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.UTC),
    datetime.date(2024, 1, 2), datetime.timedelta(seconds=5),
]


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ for v in VALUES])
def test_plain_data_survives_the_round_trip(value: Any) -> None:
    back = codec.decode(codec.dumps(value))
    assert type(back) is type(value) and back == value


def test_objects_become_their_structure() -> None:
    back = codec.decode(codec.dumps(Point(1, [2])))
    assert back[:3] == (codec.MARK, "obj", f"{__name__}.Point")
    assert back[3] == {"attrs": {"x": 1, "y": [2]}, "items": None}
    assert codec.show(back) == "Point(x=1, y=[2])"
    assert codec.decode(codec.dumps(Slotted(4)))[3]["attrs"] == {"a": 4}
    # No state: the repr, without the memory address that differs between processes.
    one, two = codec.decode(codec.dumps(Opaque())), codec.decode(codec.dumps(Opaque()))
    assert " at 0x" not in one[4] and not codec.difference(one, two)
    assert codec.decode(codec.dumps(iter([1, 2])))[1:] == ("iter", "builtins.list_iterator",
                                                           [1, 2])
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert codec.decode(codec.dumps(cyclic)) == [1, (codec.MARK, "cut")]


class FixedOffset(datetime.tzinfo):
    """A tzinfo of the package under test (python-dateutil's tzoffset is one)."""

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes

    def utcoffset(self, dt: object) -> datetime.timedelta:
        return datetime.timedelta(minutes=self.minutes)

    def dst(self, dt: object) -> datetime.timedelta:
        return datetime.timedelta(0)

    def __repr__(self) -> str:
        return f"FixedOffset({self.minutes})"


def test_a_time_aware_in_a_tzinfo_of_the_package_is_its_structure_not_a_global() -> None:
    """Pickling it would name the package's class, which the judge must refuse to load: the
    honest speedup of python-dateutil's isoparse was rejected as a lost report."""
    stamp = datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=FixedOffset(90))
    back = codec.decode(codec.dumps([stamp, stamp.timetz()]))
    assert [b[:3] for b in back] == [(codec.MARK, "obj", "datetime.datetime"),
                                     (codec.MARK, "obj", "datetime.time")]
    assert back[0][3]["attrs"]["naive"] == datetime.datetime(2024, 1, 2, 3, 4, 5, 6)
    assert back[0][3]["attrs"]["utcoffset"] == datetime.timedelta(minutes=90)
    assert back[0][3]["attrs"]["tzinfo"][2] == f"{__name__}.FixedOffset"
    assert "tzinfo=FixedOffset(minutes=90)" in codec.show(back[0])
    same = codec.decode(codec.dumps(datetime.datetime(2024, 1, 2, 3, 4, 5, 6,
                                                      tzinfo=FixedOffset(90))))
    other = codec.decode(codec.dumps(stamp.replace(tzinfo=FixedOffset(60))))
    assert not codec.difference(back[0], same) and codec.difference(back[0], other)


def test_a_baseline_answer_the_judge_cannot_read_leaves_the_function_unchecked() -> None:
    """Before the codec knew such values, the baseline's answer made the harness fail, and the
    honest candidate was rejected as if the judge's report had been forged."""
    import base64

    import selfcode_equiv as equiv

    def row(data: bytes) -> dict[str, Any]:
        return {"f": "m:f", "i": 0, "outcome": base64.b64encode(data).decode()}

    readable = row(codec.dumps({"kind": "return", "value": 1}))
    foreign = row(pickle.dumps({"kind": "return", "value": Point(1, 2)}))
    assert equiv.unreadable_answer([readable]) is None
    why = equiv.unreadable_answer([readable, foreign]) or ""
    assert why.startswith("the baseline's answer could not be read as data (refused to load")
    assert "Point" in why


def _global_call(module: str, name: str, arg: bytes) -> bytes:
    # PROTO 2, GLOBAL module name, arg, TUPLE1, REDUCE, STOP
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + arg
            + b"\x85R.")


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data  # BINUNICODE


@pytest.mark.parametrize("module, name, arg", [
    ("os", "system", "touch {marker}"),
    ("builtins", "eval", "open('{marker}', 'w')"),
    ("builtins", "exec", "open('{marker}', 'w')"),
    ("subprocess", "getoutput", "touch {marker}"),
    ("builtins", "getattr", "x"),
    ("posix", "system", "touch {marker}"),
])
def test_a_malicious_pickle_runs_nothing(tmp_path: Path, module: str, name: str,
                                         arg: str) -> None:
    marker = tmp_path / "ran"
    data = _global_call(module, name, _str(arg.format(marker=marker)))
    assert len(data) < 200
    with pytest.raises(codec.DecodeError, match="refused"):
        codec.decode(data)
    assert not marker.exists()
    # The same bytes through plain pickle would have run it: the test's pickle is real.
    if (module, name) == ("os", "system"):
        pickle.loads(data)
        assert marker.exists()


@pytest.mark.parametrize("data", [
    # bytearray(10**10): a few bytes asking for 10 GB.
    _global_call("builtins", "bytearray", b"\x8a\x05\x00\xe4\x0bT\x02"),
    # Fraction("1e999999999") would compute 10**999999999.
    _global_call("fractions", "Fraction", _str("1e999999999")),
    b"\x80\x05garbage",
    b"",
])
def test_a_bomb_or_garbage_is_refused_quickly(data: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(codec.DecodeError):
        codec.decode(data)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("a, b, rel_tol, differs", [
    (1, 1, 0.0, False), (1, 1.0, 0.0, True), (1, True, 0.0, True),
    (0.1 + 0.2, 0.3, 1e-9, False), (0.1 + 0.2, 0.3, 0.0, True), (math.nan, math.nan, 0.0, False),
    ([1, 2], [1, 2], 0.0, False), ([1, 2], (1, 2), 0.0, True), ([1, 2], [1, 2, 3], 0.0, True),
    ({"a": [1.0]}, {"a": [1.0 + 1e-12]}, 1e-9, False), ({"a": 1}, {"b": 1}, 0.0, True),
    ({1, 2}, {2, 1}, 0.0, False), (complex(1, 2), complex(1, 2 + 1e-12), 1e-9, False),
    # A dict's order is what iterating it gives (toolz.frequencies, sorted, kept every test).
    ({"b": 2, "a": 1}, {"a": 1, "b": 2}, 0.0, True), ({(1, "x"): 0, 2: 0}, {2: 0, (1, "x"): 0},
                                                      0.0, True),
    # Keys of objects hashed by identity may come in another order in another process.
    ({Opaque(): 1, Point(1, [2]): 1}, {Point(1, [2]): 1, Opaque(): 1}, 0.0, False),
])
def test_difference(a: Any, b: Any, rel_tol: float, differs: bool) -> None:
    left, right = codec.decode(codec.dumps(a)), codec.decode(codec.dumps(b))
    assert codec.difference(left, right, rel_tol) is differs


def test_difference_is_bounded_on_a_shared_structure_and_cycles() -> None:
    shared: list[Any] = [0]
    for _ in range(200):  # 2**200 leaves as a tree, 200 nodes as pickled
        shared = [shared, shared]
    twin: list[Any] = [1]
    for _ in range(200):
        twin = [twin, twin]
    start = time.perf_counter()
    assert codec.difference(shared, twin) is True  # too large to compare is different
    assert time.perf_counter() - start < 2.0
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert codec.difference(a, b) is False


def test_where_points_at_the_first_difference() -> None:
    assert codec.where([2, 3, 5], [2, 3]) == "[2]: 5 vs nothing"
    assert codec.where({"k": [1, 2]}, {"k": [1, 3]}) == "['k'][1]: 2 vs 3"


def test_the_next_prompt_shows_the_counterexample() -> None:
    """The model reads its earlier attempts' reasons: the counterexample is one of them."""
    from selfcode.prompt.render import render
    from selfcode.prompt.rules import GateRules
    from selfcode.run.loop import attempt

    example = Counterexample(function="primes:primes_up_to", input="primes_up_to(0)",
                             candidate="raised IndexError('bytearray index out of range')",
                             baseline="returned []")
    why = reasons(EquivalenceVerdict(functions=["primes:primes_up_to"], inputs_tried=116,
                                     counterexample=example), require=False,
                  pytest_imported=False)
    prompt = render("propose", goal="Make it faster.", rules=GateRules.of(GateConfig(), "fix", [], None),
                    repo_map="lib.py", files={"lib.py": "x = 1\n"}, readonly=[],
                    attempts=[attempt(1, "A sieve.", "rejected", why)], files_omitted=0)
    assert ("primes_up_to(0) raised IndexError('bytearray index out of range'), the baseline "
            "returned []") in prompt


# --- in the Docker sandbox: a tokenizer, and what cannot be checked -----------------------------

WORDS = '''def tokens(text: str) -> list[str]:
    """Words: letters, digits, apostrophes and hyphens kept together."""
    out, word = [], ""
    for ch in text:
        if ch.isalnum() or ch in "'-":
            word += ch
        elif word:
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out


def pairs(text: str):
    words = tokens(text)
    yield from zip(words, words[1:])
'''
WORD_FILES = {
    "src/words/__init__.py": WORDS,
    "tests/test_words.py": "from words import pairs, tokens\n\n\n"
                           "def test_tokens():\n    assert tokens('hello big world') == "
                           "['hello', 'big', 'world']\n    assert tokens('a, b.') == ['a', 'b']\n\n\n"
                           "def test_pairs():\n    assert list(pairs('a b c')) == [('a', 'b'), "
                           "('b', 'c')]\n",
    "benchmarks/bench_words.py": "from words import tokens\n\nprint(len(tokens('lorem ipsum "
                                 "dolor ' * 3000)))\n",
    "pyproject.toml": '[project]\nname = "words"\nversion = "0"\n',
}
SPLITS = WORDS.replace('''    out, word = [], ""
    for ch in text:
        if ch.isalnum() or ch in "'-":
            word += ch
        elif word:
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out''', '''    return re.findall(r"[^\\W_]+", text)''')
LISTS = WORDS.replace('''    out, word = [], ""
    for ch in text:
        if ch.isalnum() or ch in "'-":
            word += ch
        elif word:
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out''', '''    out, word = [], []
    for ch in text:
        if ch.isalnum() or ch in "'-":
            word.append(ch)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out''')


@pytest.fixture
def words_judge(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from selfcode.gate.judge import Judge, discover_benchmarks
    from selfcode.git.store import GitStore
    from selfcode.sandbox.trees import Trees

    from repos import make_repo, unified_diff

    box = request.getfixturevalue("sandbox")
    repo = make_repo(tmp_path / "words", WORD_FILES)
    store = GitStore(repo)

    def make(**config: Any) -> Judge:
        gate = GateConfig(**config)
        judge = Judge(Trees(box, timeout=60), gate,
                      discover_benchmarks(store.list_files(), gate, box.python))
        judge.set_baseline(store.tracked_tar())
        return judge

    make.diff = lambda new: unified_diff(repo, {"src/words/__init__.py": new})  # type: ignore[attr-defined]
    return make


@pytest.mark.docker
def test_a_tokenizer_that_splits_words_is_rejected_and_a_generator_is_not_checked(
        words_judge: Any) -> None:
    verdict = words_judge().judge(words_judge.diff("import re\n\n\n" + SPLITS))
    assert verdict.status == "rejected", verdict.reasons
    example = verdict.equivalence.counterexample
    assert example is not None and example.function == "words:tokens"
    # The tests tried "hello big world" and "a, b."; the neighbour has an apostrophe or hyphen.
    assert re.search(r"tokens\(.*['-].*\) returned", verdict.reasons[0]), verdict.reasons
    assert "generator" in verdict.equivalence.not_checked["words:pairs"]


@pytest.mark.docker
def test_not_checked_rejects_only_when_equivalence_is_required(words_judge: Any) -> None:
    diff = words_judge.diff(LISTS)
    lenient = words_judge().judge(diff)
    assert lenient.equivalence.counterexample is None and lenient.equivalence.inputs_tried > 20
    assert not any("behaviour" in r or "not checked" in r for r in lenient.reasons)
    strict = words_judge(require_equivalence=True).judge(diff)
    assert strict.status == "rejected"
    assert strict.reasons == ["equivalence not checked for words:pairs: it is a generator "
                              "function (its values are produced lazily) (require_equivalence "
                              "is on)"]


def test_the_reports_state_what_was_compared() -> None:
    from selfcode.gate.verdict import Verdict
    from selfcode.report.markdown import equivalence_sentence

    verdict = Verdict(accepted=False, status="rejected", goal="speed", equivalence=(
        EquivalenceVerdict(functions=["m:f", "m:g"], inputs_tried=40,
                           not_checked={"m:g": "it is an async function"},
                           counterexample=Counterexample(function="m:f", input="f(0)",
                                                         candidate="returned 1",
                                                         baseline="returned 0"))))
    assert equivalence_sentence(verdict) == (
        "1 changed function(s) called on 40 inputs on both trees; they differ: f(0) returned 1, "
        "the baseline returned 0; not checked: m:g (it is an async function)")
    verdict.equivalence = EquivalenceVerdict(functions=["m:f"], inputs_tried=9)
    assert equivalence_sentence(verdict).endswith("9 inputs on both trees, all alike")
    verdict.equivalence = None
    assert equivalence_sentence(verdict) == ""


def shout(word: str) -> int:
    print(word.upper())
    return len(word)


def test_a_call_is_captured_from_stdout_itself() -> None:
    """sys.stdout is left as it is: what a call prints is read back from the file behind fd 1."""
    import selfcode_equiv_run as run

    before = sys.stdout
    outcome, _ = run.call_one(shout, pickle.dumps((("hey",), {})), None)
    assert sys.stdout is before
    assert outcome == {"kind": "return", "value": 3, "args": [["hey"], {}], "stdout": "HEY\n"}
