"""Parsing speed: 1 MB model replies against a 5,000-line file, in every edit format.

SEARCH/REPLACE blocks, a unified diff and a whole-file reply each make the same change (one line
in every 20) and are parsed, applied, rendered as a diff and checked, as the agent does.

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
    apply_udiff,
    apply_whole,
    parse_and_apply,
    parse_reply,
    parse_udiff_reply,
    parse_unified_diff,
    parse_whole_reply,
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


def changed_chunks(text: str) -> list[tuple[int, list[str], list[str]]]:
    """(first line index, old lines, new lines) of every 20-line chunk, one line changed each."""
    lines = text.splitlines(keepends=True)
    out = []
    for b in range(len(lines) // LINES_PER_BLOCK):
        chunk = lines[b * LINES_PER_BLOCK:(b + 1) * LINES_PER_BLOCK]
        changed = chunk[:]
        k = next(j for j, line in enumerate(changed) if "sum(v * factor" in line)
        changed[k] = changed[k].replace("sum(v * factor for v in", "factor * sum(")
        changed[k] = changed[k].replace("])", "]))", 1)
        out.append((b * LINES_PER_BLOCK, chunk, changed))
    return out


def build_udiff_reply(text: str) -> str:
    """The same change as a unified diff: one hunk a chunk, the chunk's other lines as context,
    padded with prose between hunks to about REPLY_BYTES."""
    chunks = changed_chunks(text)
    body = []
    for start, old, new in chunks:
        hunk = [f"@@ -{start + 1},{len(old)} +{start + 1},{len(new)} @@\n"]
        for a, b in zip(old, new, strict=True):
            hunk += [f" {a}"] if a == b else [f"-{a}", f"+{b}"]
        body.append("".join(hunk))
    size = sum(len(h) for h in body)
    sentence = "Each hunk keeps its chunk as context so that it fits one place. "
    per = max(0, (REPLY_BYTES - size) // len(body))
    parts = ["I rewrite every generator expression as one multiplication after the sum.\n\n"]
    for b, hunk in enumerate(body):
        prose = (sentence * (per // len(sentence) + 1))[:per].rstrip()
        parts.append(f"Change {b + 1}. {prose}\n\n```diff\n--- a/{PATH}\n+++ b/{PATH}\n"
                     f"{hunk}```\n\n")
    return "".join(parts)


def build_whole_reply(text: str) -> str:
    """The same change as one whole-file block, after prose that brings it to REPLY_BYTES."""
    lines = text.splitlines(keepends=True)
    for start, old, changed in changed_chunks(text):
        lines[start:start + len(old)] = changed
    new = "".join(lines)
    sentence = "The whole file follows, with every generator expression rewritten. "
    pad = max(0, REPLY_BYTES - len(new) - 100)
    prose = (sentence * (pad // len(sentence) + 1))[:pad].rstrip()
    return f"{prose}\n\n{PATH}\n```python\n{new}```\n"


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
    udiff_reply = build_udiff_reply(text)
    whole_reply = build_whole_reply(text)
    old: dict[str, str | None] = {PATH: text}

    def reader(paths: list[str]) -> dict[str, str | None]:
        return {path: old.get(path) for path in paths}

    parsed = parse_reply(reply)
    new = apply_edits(old, parsed.edits)
    diff = render_diff(old, new)
    files = parse_unified_diff(diff)
    parsed_udiff = parse_udiff_reply(udiff_reply)
    parsed_whole = parse_whole_reply(whole_reply)
    new_udiff = apply_udiff(old, parsed_udiff)
    new_whole = apply_whole(old, parsed_whole)
    if not new == new_udiff == new_whole:
        raise SystemExit("the three formats disagree about the change")

    rows = [
        ("search-replace", "parse_reply", median_ms(lambda: parse_reply(reply))),
        ("search-replace", "apply_edits", median_ms(lambda: apply_edits(old, parsed.edits))),
        ("search-replace", "parse_and_apply",
         median_ms(lambda: parse_and_apply(reply, "search-replace", reader))),
        ("udiff", "parse_udiff_reply", median_ms(lambda: parse_udiff_reply(udiff_reply))),
        ("udiff", "apply_udiff", median_ms(lambda: apply_udiff(old, parsed_udiff))),
        ("udiff", "parse_and_apply",
         median_ms(lambda: parse_and_apply(udiff_reply, "udiff", reader))),
        ("whole", "parse_whole_reply", median_ms(lambda: parse_whole_reply(whole_reply))),
        ("whole", "apply_whole", median_ms(lambda: apply_whole(old, parsed_whole))),
        ("whole", "parse_and_apply",
         median_ms(lambda: parse_and_apply(whole_reply, "whole", reader))),
        ("diff", "render_diff", median_ms(lambda: render_diff(old, new))),
        ("diff", "parse_unified_diff", median_ms(lambda: parse_unified_diff(diff))),
    ]

    print(f"reply_bytes {len(reply.encode())}")
    print(f"udiff_reply_bytes {len(udiff_reply.encode())} hunks "
          f"{sum(len(f.hunks) for f in parsed_udiff.files)}")
    print(f"whole_reply_bytes {len(whole_reply.encode())} files {len(parsed_whole.files)}")
    print(f"blocks {len(parsed.edits)}")
    print(f"file_lines {len(text.splitlines())}")
    print(f"diff_lines {len(diff.splitlines())} added {files[0].added} removed {files[0].removed}")
    print(f"diff_sha256 {hashlib.sha256(diff.encode()).hexdigest()}")

    err = sys.stderr
    print(f"\n~{REPLY_BYTES / 1e6:.0f} MB replies, {len(parsed.edits)} changes, {FILE_LINES}-line "
          f"file; median and best of {RUNS} runs", file=err)
    print(f"{'format':<16}{'step':<20}{'median ms':>11}{'best ms':>10}{'target':>11}  status",
          file=err)
    for fmt, name, (median, best) in rows:
        status = "ok" if median < TARGET_MS else "SLOW"
        print(f"{fmt:<16}{name:<20}{median:>11.2f}{best:>10.2f}{'< 50 ms':>11}  {status}",
              file=err)


if __name__ == "__main__":
    main()
