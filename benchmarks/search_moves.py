"""The scripted model's edits for bench_search: what each reply changes, and of which kind.

A `Move` is one SEARCH/REPLACE edit of one file with the kind of candidate it makes: `good`
(a real speedup, every test still passing), `broken` (faster, but exactly one test fails),
`slower` (same results, more instructions) or `duplicate` (a comment only: the tree is the
parent's, normalised). `malformed` replies carry no edit. A move applies to a parent when its
SEARCH text is in that file as the prompt shows it, so the same catalogue serves every parent.

`EXAMPLE_MOVES` edit examples/ (primes), `BIGLIB_MOVES` edit benchmarks/fixtures/biglib, and
`LANDSCAPE` holds the states of examples' `is_prime` for the deceptive landscape
(search_model.LandscapeModel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["good", "broken", "slower", "duplicate", "malformed"]

MALFORMED = (
    "The hot loop could be tightened, for instance by caching results or by trying fewer "
    "divisors, but I would need to see more of the code before I suggest an exact change."
)


@dataclass(frozen=True)
class Move:
    name: str
    kind: Kind
    path: str
    search: str
    replace: str
    rationale: str

    def reply(self) -> str:
        """The model's answer: rationale, then one block in the format the prompt asks for."""
        return (
            f"{self.rationale}\n\n{self.path}\n```python\n<<<<<<< SEARCH\n{self.search}"
            f"=======\n{self.replace}>>>>>>> REPLACE\n```\n"
        )

    def applies_to(self, files: dict[str, str]) -> bool:
        source = files.get(self.path)
        return source is not None and source.count(self.search) == 1


def duplicate_move(path: str, source: str) -> Move | None:
    """A comment above the first top-level function: a new tree, the same code as the parent."""
    for line in source.splitlines(keepends=True):
        if line.startswith("def ") and source.count(line) == 1:
            comment = "# Kept simple on purpose; see the tests for the cases it must cover.\n"
            return Move("comment-only", "duplicate", path, line, comment + line,
                        "Document why this function is written the way it is.")
    return None


# -- examples/ (src/primes/__init__.py) ---------------------------------------------------------

PRIMES = "src/primes/__init__.py"

EXAMPLE_MOVES = (
    Move("sqrt-bound", "good", PRIMES,
         "    for d in range(2, n):\n",
         "    for d in range(2, int(n**0.5) + 1):\n",
         "A composite number has a divisor no larger than its square root, so trial division "
         "can stop there."),
    Move("sieve", "good", PRIMES,
         "    return [n for n in range(2, limit + 1) if is_prime(n)]\n",
         "    if limit < 2:\n"
         "        return []\n"
         "    sieve = bytearray([1]) * (limit + 1)\n"
         "    sieve[0:2] = b\"\\x00\\x00\"\n"
         "    for p in range(2, int(limit**0.5) + 1):\n"
         "        if sieve[p]:\n"
         "            sieve[p * p :: p] = bytearray(len(range(p * p, limit + 1, p)))\n"
         "    return [n for n in range(limit + 1) if sieve[n]]\n",
         "A sieve of Eratosthenes crosses out each composite once instead of dividing every "
         "number by every smaller one."),
    # is_prime(1) becomes True: test_is_prime[1-False] fails, nothing else.
    Move("skip-the-one-check", "broken", PRIMES,
         "    if n < 2:\n        return False\n",
         "    if n < 1:\n        return False\n",
         "The loop already rejects every n it divides, so the guard only needs to exclude 0."),
    # primes_up_to(1) becomes [2]: test_small_limits fails, nothing else.
    Move("odd-candidates", "broken", PRIMES,
         "    return [n for n in range(2, limit + 1) if is_prime(n)]\n",
         "    return [2] + [n for n in range(3, limit + 1, 2) if is_prime(n)]\n",
         "No even number but 2 is prime, so only odd candidates need testing."),
    Move("no-modulo", "slower", PRIMES,
         "        if n % d == 0:\n",
         "        if n - (n // d) * d == 0:\n",
         "Compute the remainder with a floor division and a multiplication instead of %."),
)


# -- benchmarks/fixtures/biglib ----------------------------------------------------------------

NUMBERS, SEQUENCES, TEXT = ("src/biglib/numbers.py", "src/biglib/sequences.py",
                            "src/biglib/text.py")

BIGLIB_MOVES = (
    Move("sqrt-bound", "good", NUMBERS,
         "    d = 2\n    while d < n:\n        if n % d == 0:\n            return False\n"
         "        d += 1\n",
         "    for d in range(2, int(n**0.5) + 1):\n        if n % d == 0:\n"
         "            return False\n",
         "Stop trial division at the square root: a composite has a divisor no larger."),
    Move("dict-counts", "good", TEXT,
         "    words = text.lower().split()\n    seen: list[str] = []\n    for word in words:\n"
         "        if word not in seen:\n            seen.append(word)\n"
         "    return {word: words.count(word) for word in seen}\n",
         "    counts: dict[str, int] = {}\n    for word in text.lower().split():\n"
         "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
         "Count in one pass with a dict (insertion-ordered, so first appearances keep their "
         "order) instead of one list scan per distinct word."),
    Move("seen-set", "good", SEQUENCES,
         "    out: list[T] = []\n    for item in items:\n        if item not in out:\n"
         "            out.append(item)\n    return out\n",
         "    out: list[T] = []\n    seen: set[object] = set()\n    for item in items:\n"
         "        try:\n            if item in seen:\n                continue\n"
         "            seen.add(item)\n        except TypeError:  # unhashable: the slow way\n"
         "            if item in out:\n                continue\n        out.append(item)\n"
         "    return out\n",
         "Remember hashable items in a set, so each membership test is O(1); unhashable items "
         "still fall back to the list."),
    Move("sliding-window", "good", SEQUENCES,
         "    sums: list[int] = []\n    for start in range(len(values) - window + 1):\n"
         "        total = 0\n        for value in values[start : start + window]:\n"
         "            total += value\n        sums.append(total)\n    return sums\n",
         "    if window > len(values):\n        return []\n    total = sum(values[:window])\n"
         "    sums = [total]\n    for i in range(window, len(values)):\n"
         "        total += values[i] - values[i - window]\n        sums.append(total)\n"
         "    return sums\n",
         "Slide the window: add the value entering it and subtract the one leaving it."),
    Move("divisor-pairs", "good", NUMBERS,
         "    return [d for d in range(1, n + 1) if n % d == 0]\n",
         "    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]\n"
         "    large = [n // d for d in reversed(small) if d * d != n]\n"
         "    return small + large\n",
         "Divisors come in pairs d and n // d; find the small ones up to the square root."),
    # dedupe of unhashable items raises: test_dedupe_of_unhashable_items fails, nothing else.
    Move("dict-fromkeys", "broken", SEQUENCES,
         "    out: list[T] = []\n    for item in items:\n        if item not in out:\n"
         "            out.append(item)\n    return out\n",
         "    return list(dict.fromkeys(items))\n",
         "dict.fromkeys keeps the first appearance of every item, in order, in C."),
    # moving_sums([1, 2], 3) becomes [3]: test_moving_sums_window_longer_than_the_values fails.
    Move("window-no-guard", "broken", SEQUENCES,
         "    sums: list[int] = []\n    for start in range(len(values) - window + 1):\n"
         "        total = 0\n        for value in values[start : start + window]:\n"
         "            total += value\n        sums.append(total)\n    return sums\n",
         "    total = sum(values[:window])\n    sums = [total]\n"
         "    for i in range(window, len(values)):\n"
         "        total += values[i] - values[i - window]\n        sums.append(total)\n"
         "    return sums\n",
         "A running total: each step adds the entering value and drops the leaving one."),
    # is_prime(1) becomes True: test_is_prime_agrees_with_the_table[1] fails, nothing else.
    Move("skip-the-one-check", "broken", NUMBERS,
         "    if n < 2:\n        return False\n",
         "    if n < 1:\n        return False\n",
         "The loop rejects every n it divides, so the guard only needs to exclude 0."),
    Move("no-modulo", "slower", NUMBERS,
         "    return [d for d in range(1, n + 1) if n % d == 0]\n",
         "    return [d for d in range(1, n + 1) if d * (n // d) == n]\n",
         "Test divisibility with a floor division and a multiplication instead of %."),
    Move("generator-count", "slower", TEXT,
         "    return {word: words.count(word) for word in seen}\n",
         "    return {word: sum(1 for w in words if w == word) for word in seen}\n",
         "Count with a generator, which reads more plainly than list.count."),
    Move("no-modulo-prime", "slower", NUMBERS,
         "        if n % d == 0:\n            return False\n",
         "        if n - (n // d) * d == 0:\n            return False\n",
         "Compute the remainder with a floor division and a multiplication instead of %."),
)


# -- the deceptive landscape: states of examples' is_prime -------------------------------------

def _is_prime(loop: str, guard: str = "    if n < 2:\n        return False\n") -> str:
    return (f"def is_prime(n: int) -> bool:\n{guard}    for d in {loop}:\n"
            "        if n % d == 0:\n            return False\n    return True\n")


LANDSCAPE: dict[str, str] = {
    "S0": _is_prime("range(2, n)"),  # the baseline: every d below n
    # A, about 1.5x: no divisor above two thirds of n. The trap: every child of A is a dead end.
    "A": _is_prime("range(2, 2 * n // 3 + 1)"),
    # B, about 1.2x: none above five sixths. Worse than A, but its child is C.
    "B": _is_prime("range(2, 5 * n // 6 + 1)"),
    # C, B's child, about 20x: up to the square root.
    "C": _is_prime("range(2, int(n**0.5) + 1)"),
}
# Dead ends: A with a bound too low for small composites (4, 9: broken tests).
A_BROKEN = {
    "A-third": _is_prime("range(2, n // 3)"),
    "A-half": _is_prime("range(2, n // 2)"),
}
# What the model offers from each state, in turn; the last entry repeats. "slower" is the
# state itself with the remainder computed the long way (more instructions, same answers).
OFFERS: dict[str, tuple[str, ...]] = {
    "S0": ("A", "B", "slower"),
    "A": ("A-third", "slower", "A-half"),
    "B": ("C", "slower"),
    "C": ("slower",),
}
RATIONALES = {
    "A": "A proper divisor of n is at most n // 2, so stop at two thirds of n.",
    "B": "A proper divisor of n is at most n // 2, so stop at five sixths of n.",
    "C": "A composite number has a divisor no larger than its square root.",
    "A-third": "A proper divisor of a composite is below n // 3.",
    "A-half": "A proper divisor of a composite is below n // 2.",
    "slower": "Compute the remainder with a floor division and a multiplication instead of %.",
}


def landscape_move(state: str, offer: str) -> Move:
    """The edit `offer` from `state`: a whole is_prime replaced, so it names both ends."""
    source = LANDSCAPE[state]
    if offer == "slower":
        target = source.replace("if n % d == 0:", "if n - (n // d) * d == 0:")
        kind: Kind = "slower"
    elif offer in A_BROKEN:
        target, kind = A_BROKEN[offer], "broken"
    else:
        target, kind = LANDSCAPE[offer], "good"
    return Move(f"{state}->{offer}", kind, PRIMES, source, target, RATIONALES[offer])
