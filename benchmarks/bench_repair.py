"""Repair turns: how often a malformed reply is caught and fixed with the help of our error message.

Run from the repository root: `python benchmarks/bench_repair.py`.

Each fixture in tests/fixtures/malformed/*.json holds a small tree, an edit format, and two
turns in ReplayLLM's format: a malformed reply of a kind small models really send (paraphrased
SEARCH lines, a missing path, a cut-off reply, "# ... rest unchanged ...", a hunk without its
file header...), and the repaired reply a model would send after reading our error message.
The repaired turn's "expect" lists what that repair relies on, such as the real lines the
error quotes; the replay checks that the repair prompt, rendered from prompts/repair.j2 with
the real error message, contains them.

A case succeeds when, in this order:
  1. the malformed reply is refused by `parse_and_apply` (EditError or PolicyError);
  2. the repair prompt built from that error contains everything the repair relies on;
  3. the repaired reply applies, after the error was produced, and makes the intended change.

What this measures, honestly: that every malformed reply is caught, that our messages carry
the facts a repair needs, and that a repair built from them applies. The repaired replies are
written by hand, so it does NOT measure how often a real model repairs; that needs recorded
runs (`selfcode improve --record FILE`) against real endpoints.

stdout is deterministic (the gate compares it between baseline and candidate); timing goes
to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.edits import parse_and_apply
from selfcode.errors import EditError
from selfcode.llm import Message, ReplayDiverged, ReplayLLM
from selfcode.prompt.render import render

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "malformed"


@dataclass(frozen=True)
class Outcome:
    name: str
    fmt: str
    ok: bool
    stage: str  # "repaired", or where it failed: "not-caught", "uninformative", "repair-failed"...
    error: str  # the first line of our error message for the malformed reply
    detail: str = ""


def run_case(path: Path) -> Outcome:
    data = json.loads(path.read_text("utf-8"))
    name, fmt = path.stem, data["format"]
    files: dict[str, str | None] = data["files"]

    def reader(paths: list[str]) -> dict[str, str | None]:
        return {p: files.get(p) for p in paths}

    llm = ReplayLLM.from_turns(data["turns"], source=path.name)
    messages: list[Message] = [{"role": "user", "content": "(the propose prompt)"}]
    bad = llm.complete(messages)
    try:
        parse_and_apply(bad.text, fmt, reader)
    except EditError as exc:
        error = str(exc)
    else:
        return Outcome(name, fmt, False, "not-caught", "", "the malformed reply applied")
    first_line = error.splitlines()[0]
    messages += [{"role": "assistant", "content": bad.text},
                 {"role": "user", "content": render("repair", error=error, edit_format=fmt)}]
    try:
        good = llm.complete(messages)
    except ReplayDiverged as exc:
        return Outcome(name, fmt, False, "uninformative", first_line, str(exc))
    try:
        _, _, new = parse_and_apply(good.text, fmt, reader)
    except EditError as exc:
        return Outcome(name, fmt, False, "repair-failed", first_line, str(exc).splitlines()[0])
    for target, needle in data["check"].items():
        if needle not in (new.get(target) or ""):
            return Outcome(name, fmt, False, "wrong-change", first_line,
                           f"{target} lacks {needle!r}")
    return Outcome(name, fmt, True, "repaired", first_line)


def main() -> int:
    paths = sorted(FIXTURES.glob("*.json"))
    if not paths:
        print(f"no fixtures in {FIXTURES}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    outcomes = [run_case(path) for path in paths]
    elapsed = time.perf_counter() - started

    for o in outcomes:
        print(f"{o.name:<36} {o.fmt:<15} {o.stage:<14} {o.error[:90]}")
        if o.detail:
            print(f"{'':<36} {'':<15} {'':<14} {o.detail[:120]}")
    by_format: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_format.setdefault(o.fmt, []).append(o)
    for fmt, group in sorted(by_format.items()):
        good = sum(o.ok for o in group)
        print(f"repair_success[{fmt}] {good}/{len(group)}")
    caught = sum(o.stage != "not-caught" for o in outcomes)
    good = sum(o.ok for o in outcomes)
    print(f"caught {caught}/{len(outcomes)}")
    print(f"repair_success {good}/{len(outcomes)} ({100 * good / len(outcomes):.1f}%)")
    print(f"\n{len(outcomes)} cases in {elapsed * 1000:.1f} ms; the repaired replies are "
          "hand-written, so this measures our error messages and parser, not a model.",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
