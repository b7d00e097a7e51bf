"""Parsing speed: a 1 MB model reply with many SEARCH/REPLACE blocks against a 5,000-line file.

Run from the repository root: `python benchmarks/bench_edits.py`.

stdout carries only the evidence that the work was done (sizes, counts and a hash of the
rendered diff), which is the same on every run and for every correct implementation; the
timing table goes to stderr, because the gate compares a benchmark's stdout between baseline
and candidate.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.edits import (
    apply_edits,
    parse_reply,
    parse_unified_diff,
    render_diff,
)

FILE_LINES = 5_000
LINES_PER_BLOCK = 20
REPLY_BYTES = 1_000_000
RUNS = 7
TARGET_MS = 50.0
PATH = "src/pkg/big_module.py"


def build_file() -> str:
    lines = []
    for i in range(FILE_LINES):
        if i % 10 == 0:
            lines.append(f"def function_{i}(values, factor={i % 97}):")
        elif i % 10 == 9:
            lines.append("")
        else:
            lines.append(f"    total_{i} = sum(v * factor for v in values[{i}:{i + 50}])  # {i}")
    return "\n".join(lines) + "\n"


def build_reply(text: str) -> str:
    lines = text.splitlines(keepends=True)
    parts = ["I rewrite every generator expression as a multiplication after the sum, which "
             "does the same work with one multiplication per call instead of one per value.\n\n"]
    blocks = len(lines) // LINES_PER_BLOCK
    prose_budget = max(0, (REPLY_BYTES - len(text) * 2) // blocks)
    sentence = "This block keeps the surrounding lines as context so it matches once. "
    for b in range(blocks):
        chunk = lines[b * LINES_PER_BLOCK:(b + 1) * LINES_PER_BLOCK]
        search = "".join(chunk)
        changed = chunk[:]
        k = next(j for j, line in enumerate(changed) if "sum(v * factor" in line)
        changed[k] = changed[k].replace("sum(v * factor for v in", "factor * sum(")
        changed[k] = changed[k].replace("])", "]))", 1)
        prose = (sentence * (prose_budget // len(sentence) + 1))[:prose_budget].rstrip()
        parts.append(f"Change {b + 1}. {prose}\n\n{PATH}\n```python\n<<<<<<< SEARCH\n{search}"
                     f"=======\n{''.join(changed)}>>>>>>> REPLACE\n```\n\n")
    return "".join(parts)


def median_ms(fn: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples)


def main() -> None:
    text = build_file()
    reply = build_reply(text)
    old: dict[str, str | None] = {PATH: text}

    parsed = parse_reply(reply)
    new = apply_edits(old, parsed.edits)
    diff = render_diff(old, new)
    files = parse_unified_diff(diff)

    rows = [
        ("parse_reply", median_ms(lambda: parse_reply(reply))),
        ("apply_edits", median_ms(lambda: apply_edits(old, parsed.edits))),
        ("render_diff", median_ms(lambda: render_diff(old, new))),
        ("parse_unified_diff", median_ms(lambda: parse_unified_diff(diff))),
    ]

    print(f"reply_bytes {len(reply.encode())}")
    print(f"blocks {len(parsed.edits)}")
    print(f"file_lines {len(text.splitlines())}")
    print(f"diff_lines {len(diff.splitlines())} added {files[0].added} removed {files[0].removed}")
    print(f"diff_sha256 {hashlib.sha256(diff.encode()).hexdigest()}")

    err = sys.stderr
    print(f"\n{len(reply.encode()) / 1e6:.2f} MB reply, {len(parsed.edits)} blocks, "
          f"{FILE_LINES}-line file; median and best of {RUNS} runs", file=err)
    print(f"{'step':<20}{'median ms':>11}{'best ms':>10}{'target':>11}  status", file=err)
    for name, (median, best) in rows:
        status = "ok" if median < TARGET_MS else "SLOW"
        print(f"{name:<20}{median:>11.2f}{best:>10.2f}{'< 50 ms':>11}  {status}", file=err)


if __name__ == "__main__":
    main()
