"""History writes: one long run recorded into a fresh SQLite file, then read back for a review.

Covers src/selfcode/history/db.py (`History`: opening and migrating a new database, and every
write a run makes: the run, its settings, candidates and their updates, model exchanges with
their full prompts, events, verdicts, reviews, the summary) and rows.py (the typed rows read
back by `runs`, `show` and `review`: candidates with decoded verdicts, exchanges with their
messages, events, per-candidate usage and cost), in the order `run/loop.py` makes them.

Why this size: 60 candidates, each asked one to three times (a repair turn after an unusable
reply) with the prompt the proposer really sends (a 4 kB system prompt and a 40 kB user prompt
of sources and a repository map, mostly the same from one candidate to the next, as they are
within one baseline), with a 5 kB diff, a verdict with every benchmark sample and a dozen
events: about 1,000 statements, each committed on its own as the history requires (invariant 5),
and everything read back once. About half a second natively on a RAM-backed /tmp (as the
sandbox's is); on a disk, the fsync of every commit adds wall time but no instructions.

stdout carries only what was read back (counts and a hash of every row without its time
stamps), the same on every run and for every correct implementation.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.history.db import History
from selfcode.history.rows import Exchange

SEED = 20_261_204
RUN_ID = "20261201-120000-ab12"
CANDIDATES = 60
BENCHMARKS = 6
PAIRS = 10
SOURCE = "".join(f"def function_{i}(values, factor={i}):\n    return sum(v * factor for v in "
                 f"values[{i}:])\n\n" for i in range(400))


def system_prompt() -> str:
    rules = "".join(f"- Rule {i}: the judge measures instructions and CPU time; keep outputs "
                    f"identical and tests passing ({i}).\n" for i in range(40))
    return "You improve a Python repository's speed.\n" + rules


def user_prompt(n: int, attempts: list[str]) -> str:
    """The context of candidate `n`: the same sources within a baseline, new attempts below."""
    baseline = n // 10
    files = "".join(f"### src/app/module_{baseline}_{f}.py\n```python\n{SOURCE[:6_000]}```\n"
                    for f in range(6))
    repo_map = "\n".join(f"src/app/pkg{k // 20}/mod_{k:03}.py\n  def run_{k}(x)"
                         for k in range(120))
    return (f"Goal: make the benchmarks faster.\n\n## Repository map\n{repo_map}\n\n## Files\n"
            f"{files}\n## Earlier attempts\n" + "\n".join(attempts[-10:])
            + f"\n\nThis is candidate {n}.")


def reply(rng: random.Random, n: int, turn: int) -> str:
    lines = [f"    total = factor * sum(values[{k}:])  # {n}.{turn}" for k in range(60)]
    return (f"I hoist the multiplication out of the loop ({n}, {turn}).\n\nsrc/app/m.py\n"
            "```python\n<<<<<<< SEARCH\n" + SOURCE[:2_000] + "=======\n" + "\n".join(lines)
            + f"\n>>>>>>> REPLACE\n```\n{'x' * rng.randrange(100, 800)}")


def diff_of(n: int) -> str:
    hunks = "".join(f"@@ -{10 * k + 1},3 +{10 * k + 1},3 @@\n def f_{k}(values):\n-    return "
                    f"sum(v * {k} for v in values)\n+    return {k} * sum(values)\n \n"
                    for k in range(50))
    return f"diff --git a/src/app/m{n}.py b/src/app/m{n}.py\n--- a/src/app/m{n}.py\n" \
           f"+++ b/src/app/m{n}.py\n{hunks}"


def verdict(rng: random.Random, n: int, accepted: bool) -> dict[str, Any]:
    def samples(scale: float) -> list[float]:
        return [scale * (1 + rng.random() / 100) for _ in range(PAIRS)]

    benches = [{"name": f"bench{b}", "metric": "instructions", "baseline": samples(1e9),
                "candidate": samples(9.5e8 if accepted else 1e9), "ratio": 0.95,
                "p_value": 0.001, "verdict": "faster" if accepted else "same", "delta": 0.03,
                "stage": "instructions", "resources": [
                    {"resource": r, "baseline_median": 1.0, "candidate_median": 0.99,
                     "ratio": 0.99, "p_slower": 0.6, "tolerance": 0.1, "regressed": False}
                    for r in ("cpu", "wall", "rss")]} for b in range(BENCHMARKS)]
    return {"accepted": accepted, "status": "accepted" if accepted else "rejected",
            "goal": "speed", "reasons": [] if accepted else ["no benchmark was faster"],
            "patch": {"files": [f"src/app/m{n}.py"], "added": 50, "removed": 50},
            "tests": {"baseline": {"passed": 900, "failed": 0, "skipped": 4},
                      "candidate": {"passed": 900, "failed": 0, "skipped": 4}},
            "benchmarks": benches, "timings": {"total": 31.5, "tests": 12.0},
            "sandbox": "docker"}


def record_candidate(history: History, rng: random.Random, n: int,
                     attempts: list[str]) -> None:
    """Everything the loop records for candidate `n`, in its order, each write on its own."""
    history.add_candidate(RUN_ID, n, f"{n:040x}")
    history.add_event(RUN_ID, "phase", "asking the model", candidate_n=n)
    messages = [{"role": "system", "content": system_prompt()},
                {"role": "user", "content": user_prompt(n, attempts)}]
    turns = 1 + (n % 7 == 3) + (n % 11 == 5)
    for turn in range(turns):
        text = reply(rng, n, turn)
        history.add_exchange(Exchange(
            run_id=RUN_ID, candidate_n=n, turn=turn, model="gpt-test", messages=messages,
            reply=text, prompt_tokens=12_000 + n, completion_tokens=900 + turn,
            cost_usd=0.012 + n / 1000, latency_s=4.5))
        if turn + 1 < turns:
            history.add_event(RUN_ID, "repair", "the reply had no usable edit", candidate_n=n)
            messages = [*messages, {"role": "assistant", "content": text},
                        {"role": "user", "content": "Your SEARCH block matched nothing."}]
    rationale = f"Hoist the multiplication out of the loop in m{n}.\n\nIt is done once."
    history.update_candidate(RUN_ID, n, rationale=rationale, diff=diff_of(n))
    for phase in ("applying", "testing", "checking behaviour", "benchmarking"):
        history.add_event(RUN_ID, "phase", phase, candidate_n=n)
    accepted = n % 8 == 0
    history.update_candidate(RUN_ID, n, verdict=verdict(rng, n, accepted),
                             candidate_commit=f"{n + 1:040x}")
    if accepted:
        history.add_event(RUN_ID, "phase", "committing", candidate_n=n)
        history.update_candidate(RUN_ID, n, commit_sha=f"{n + 2:040x}")
    status = "accepted" if accepted else "rejected"
    history.update_candidate(RUN_ID, n, status=status)
    history.add_event(RUN_ID, "candidate", status, candidate_n=n)
    attempts.append(f"{n}. {rationale.splitlines()[0]} -> {status}")


def read_back(history: History) -> list[str]:
    """What `runs`, `show` and `review` read, without the time stamps."""
    run = history.run(RUN_ID)
    assert run is not None
    lines = [f"runs {len(history.runs())} {run.status} {json.dumps(run.summary)}"]
    for c in history.candidates(RUN_ID):
        lines.append(f"candidate {c.n} {c.status} {c.commit_sha} "
                     f"{hashlib.sha256((c.diff or '').encode()).hexdigest()[:16]} "
                     f"{json.dumps(c.verdict, sort_keys=True)}")
    for e in history.exchanges(RUN_ID):
        text = json.dumps([dict(m) for m in e.messages])
        lines.append(f"exchange {e.id} {e.candidate_n}.{e.turn} {len(text)} "
                     f"{hashlib.sha256(text.encode()).hexdigest()[:16]} {len(e.reply or '')}")
    lines += [f"event {e.candidate_n} {e.kind} {e.message}" for e in history.events(RUN_ID)]
    lines += [f"usage {n} {u.exchanges} {u.prompt_tokens} {u.cost_usd:.4f}"
              for n, u in sorted(history.candidate_usage(RUN_ID).items())]
    lines.append(f"cost {history.total_cost(RUN_ID):.4f} settings "
                 f"{json.dumps(history.run_settings(RUN_ID), sort_keys=True)}")
    lines += [f"review {n} {r.decision}" for n, r in sorted(history.decisions(RUN_ID).items())]
    return lines


def write_run(history: History, rng: random.Random) -> None:
    """The run as the loop records it: start, settings, every candidate, reviews, the end."""
    history.start_run(RUN_ID, "/work/repo", "a" * 40, "selfcode/run", "speed", "gpt-test",
                      "docker")
    history.set_run_settings(RUN_ID, {"llm": {"model": "gpt-test"}, "iterations": CANDIDATES})
    attempts: list[str] = []
    for n in range(1, CANDIDATES + 1):
        record_candidate(history, rng, n, attempts)
    for n in range(8, CANDIDATES + 1, 8):
        history.add_review(RUN_ID, n, "approved", "reviewer", "looks right")
    history.finish_run(RUN_ID, "finished", {"candidates": CANDIDATES,
                                            "accepted": CANDIDATES // 8,
                                            "stop_reason": "iterations"})


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp, \
            History(Path(tmp) / "selfcode" / "history.db") as history:
        write_run(history, random.Random(SEED))
        written = time.perf_counter()
        lines = read_back(history)
    done = time.perf_counter()
    print(f"rows {len(lines)} exchanges {sum(x.startswith('exchange') for x in lines)} "
          f"events {sum(x.startswith('event') for x in lines)}")
    print(f"digest {hashlib.sha256(chr(10).join(lines).encode()).hexdigest()}")
    print(f"write {written - started:.3f} s, read {done - written:.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
