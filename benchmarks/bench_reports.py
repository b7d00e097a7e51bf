"""Report parsing: the evidence of one judged candidate, read as the harness and the host read it.

Covers sandbox/selfcode_evidence.py (`parse_junit` over pytest's JUnit XML, `parse_stream` over
the plugin's record stream, `cross_check` of the two, `count_instructions` over valgrind's log),
src/selfcode/sandbox/results.py (`parse_report`: the harness's JSON report validated as
untrusted input, for the tests, benchmark and profile reports; `check_complete`) and
src/selfcode/prompt/profile.py (the hotspot table `doctor --profile` prints from the profile).

Why this size: a repository with 3,000 tests (one in ten parametrised, a few failing, skipped,
xfailed or erroring with pytest's long tracebacks) run as the judge runs them, the benchmark
report of seven benchmarks of 20 pairs each with their CPU, wall and memory samples, a profile
of seven benchmarks with 60 hotspots each, and a valgrind log of 60 traced processes: the
reports of one judged candidate, parsed once each. About half a second natively.

stdout carries only what was read (counts, and a hash of the outcomes, instruction counts and
rendered table), the same on every run and for every correct implementation.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

# Measure this tree's code, not an installed copy: the host's package and the harness's modules.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.append(str(Path(__file__).resolve().parents[1] / "sandbox"))

from selfcode_evidence import count_instructions, cross_check, parse_junit, parse_stream

from selfcode.prompt.profile import hotspot_text
from selfcode.sandbox.base import ExecResult
from selfcode.sandbox.results import (
    BenchReport,
    ProfileReport,
    TestsReport,
    check_complete,
    parse_report,
)

SEED = 20_261_203
TESTS = 3_000
BENCHMARKS = 7
PAIRS = 20
HOTSPOTS = 60
COUNTED_RUNS = 40
NONCE = "5f1c0a4e9b7d3c2a8e6f4b1d0c9a7e5f"
TRACEBACK = "".join(f"    frame {i}: value = compute(item)  # in module_{i}.py\n"
                    for i in range(12))


def test_ids(rng: random.Random) -> list[str]:
    ids = []
    for i in range(TESTS):
        module = f"tests/unit/test_area{i % 60:02}.py"
        owner = f"TestThing{i % 7}::" if i % 3 == 0 else ""
        param = f"[case{i % 5}-{rng.choice(('a', 'b', 'long-name'))}]" if i % 10 == 0 else ""
        ids.append(f"{module}::{owner}test_behaviour_{i:04}{param}")
    return ids


def outcome_of(rng: random.Random) -> str:
    roll = rng.random()
    return ("failed" if roll < 0.01 else "error" if roll < 0.015 else "skipped" if roll < 0.05
            else "xfailed" if roll < 0.06 else "passed")


def junit_xml(ids: list[str], outcomes: dict[str, str]) -> bytes:
    """pytest's JUnit file (xunit2) for these outcomes."""
    cases = []
    for nodeid in ids:
        path, _, rest = nodeid.partition("::")
        names = rest.split("::")
        classname = ".".join([path.removesuffix(".py").replace("/", "."), *names[:-1]])
        head = f"<testcase classname={quoteattr(classname)} name={quoteattr(names[-1])} " \
               f'time="0.004"'
        outcome = outcomes[nodeid]
        body = {
            "passed": "",
            "failed": f'<failure message="AssertionError: 3 != 4">{TRACEBACK}E  assert 3 == 4'
                      "</failure>",
            "error": f'<error message="failed on setup with &quot;fixture&quot;">{TRACEBACK}'
                     "</error>",
            "skipped": '<skipped type="pytest.skip" message="needs the network">'
                       "tests/unit/x.py:12: needs the network</skipped>",
            "xfailed": '<skipped type="pytest.xfail" message="known bug" />',
        }[outcome]
        cases.append(f"{head}>{body}</testcase>" if body else f"{head} />")
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
            f'errors="0" failures="0" skipped="0" tests="{len(ids)}" time="12.5">'
            + "".join(cases) + "</testsuite></testsuites>").encode()


REPORT = ('{{"t":"report","id":"{id}","when":"{when}","outcome":"{outcome}",'
          '"xfail":{xfail},"sub":false}}\n')


def phase_records(nodeid: str, outcome: str) -> str:
    """The plugin's reports for one test (setup, call, teardown), as it writes them."""
    setup = "failed" if outcome == "error" else "skipped" if outcome in ("skipped", "xfailed") \
        else "passed"
    xfail = "true" if outcome == "xfailed" else "false"
    records = REPORT.format(id=nodeid, when="setup", outcome=setup, xfail=xfail)
    if setup == "passed":
        records += REPORT.format(id=nodeid, when="call", outcome=outcome, xfail="false")
    return records + REPORT.format(id=nodeid, when="teardown", outcome="passed", xfail="false")


def stream_bytes(ids: list[str], outcomes: dict[str, str], exit_code: int) -> bytes:
    collected = json.dumps({"t": "collected", "ids": ids}, separators=(",", ":"))
    reports = "".join(phase_records(nodeid, outcomes[nodeid]) for nodeid in ids)
    return f'{collected}\n{reports}{{"t":"finish","exit":{exit_code}}}\n'.encode()


def valgrind_log(rng: random.Random, processes: int) -> tuple[bytes, int, int]:
    """valgrind -v's log of one counted run and its children; (log, root pid, instructions)."""
    lines, total = [], 0
    pids = [rng.randrange(100, 30_000) * 2 + i for i in range(processes)]
    for pid in pids:
        count = rng.randrange(10**6, 10**9)
        total += count
        lines += [f"=={pid}== Cachegrind, a cache and branch-prediction profiler",
                  f"=={pid}== Command: /usr/bin/python3 benchmarks/bench_x.py --part {pid}",
                  f"=={pid}== Parent PID: {pid - 1}", f"=={pid}== ", f"--{pid}-- "]
        lines += [f"--{pid}-- Reading syms from /usr/lib/x86_64-linux-gnu/lib{k}.so.6"
                  for k in range(40)]
        lines += [f"=={pid}== ", f"=={pid}== I   refs:      {count:,}"]
    return ("\n".join(lines) + "\n").encode(), pids[0], total


def tests_report(ids: list[str], outcomes: dict[str, str]) -> bytes:
    report = {"kind": "tests", "nonce": NONCE, "exit_code": 1, "timed_out": False,
              "duration": 12.5, "collected": ids, "outcomes": outcomes, "junit_cases": len(ids),
              "output_tail": "F" * 2_000, "stderr_tail": ""}
    return b"harness: tests\n" + json.dumps(report).encode() + b"\n"


def bench_report(rng: random.Random) -> bytes:
    def samples(scale: float) -> list[float]:
        return [scale * (1 + rng.random() / 50) for _ in range(PAIRS)]

    benches = [{"name": f"bench{b}", "metric": "instructions", "a": samples(1e9),
                "b": samples(9e8), "output": {side: {"sha256": "ab" * 32, "head": "digest x"}
                                              for side in ("a", "b")},
                "resources": {side: {"cpu": samples(0.5), "wall": samples(0.6),
                                     "rss": samples(50_000)} for side in ("a", "b")}}
               for b in range(BENCHMARKS)]
    return json.dumps({"kind": "bench", "nonce": NONCE, "benchmarks": benches}).encode()


def profile_report(rng: random.Random) -> bytes:
    benches = []
    for b in range(BENCHMARKS):
        spots = []
        for s in range(HOTSPOTS):
            share = 0.4 / (s + 1)
            spots.append({
                "file": f"src/app/module_{rng.randrange(200):03}.py", "line": 10 + s,
                "name": f"function_{s}", "calls": rng.randrange(1, 10**6),
                "primitive_calls": 1, "own_s": share, "cum_s": 2 * share,
                "own_share": share, "cum_share": min(1.0, 2 * share),
                "cum_per_call_s": share / 1000, "rank_own": s,
                "callers": [{"file": f"src/app/module_{c:03}.py", "line": c, "name": f"caller_{c}",
                             "calls": c + 1} for c in range(rng.randrange(1, 20))],
                "lines": [{"line": 10 + s + k, "hits": k + 1, "seconds": share / (k + 1)}
                          for k in range(rng.randrange(0, 30))]})
        benches.append({"name": f"bench{b}", "total_s": 1.5, "hotspots": spots,
                        "line_level": b % 2 == 0,
                        "note": None if b % 2 == 0 else "line timings need Python 3.12"})
    return json.dumps({"kind": "profile", "nonce": NONCE, "python": "3.11.2",
                       "benchmarks": benches}).encode()


def harness_result(stdout: bytes) -> ExecResult:
    return ExecResult(exit_code=0, stdout=stdout, stderr=b"", duration=1.0)


class TestRun:
    """One pytest run's evidence, as the harness gets it and as it reports it to the host."""

    def __init__(self, ids: list[str], outcomes: dict[str, str]) -> None:
        self.outcomes = outcomes
        self.junit = junit_xml(ids, outcomes)
        self.stream = stream_bytes(ids, outcomes, 1)
        self.report = tests_report(ids, outcomes)

    def read(self) -> str:
        """Harness side: JUnit, stream and their cross-check; host side: the JSON report."""
        junit = parse_junit(self.junit)
        stream = parse_stream(self.stream)
        problem = stream.problem or cross_check(stream, junit, 1)
        tests = parse_report(harness_result(self.report), TestsReport, NONCE)
        if stream.outcomes() != self.outcomes or tests.outcomes != self.outcomes:
            raise SystemExit("a parser read other outcomes than were written")
        return f"tests {tests.summary()} collected {len(tests.collected or [])} problem {problem}"


def main() -> None:
    started = time.perf_counter()
    rng = random.Random(SEED)
    ids = test_ids(rng)
    baseline = {nodeid: outcome_of(rng) for nodeid in ids}
    candidate = {nodeid: "failed" if i % 500 == 7 else outcome for i, (nodeid, outcome)
                 in enumerate(baseline.items())}
    runs = [TestRun(ids, baseline), TestRun(ids, candidate)]
    logs = [valgrind_log(rng, 1 + i % 3) for i in range(COUNTED_RUNS)]
    bench_data, profile_data = bench_report(rng), profile_report(rng)
    built = time.perf_counter()

    lines = [runs[i].read() for i in (0, 0, 0, 1)]  # the baseline's flaky runs, the candidate
    counts = [count_instructions(log, pid) for log, pid, _ in logs]
    if [c.instructions for c in counts] != [total for _, _, total in logs]:
        raise SystemExit("the instruction counts were read wrong")
    bench = parse_report(harness_result(bench_data), BenchReport, NONCE)
    check_complete(bench, [f"bench{b}" for b in range(BENCHMARKS)], PAIRS, "instructions")
    profile = parse_report(harness_result(profile_data), ProfileReport, NONCE)
    table = hotspot_text(profile)
    done = time.perf_counter()

    lines.append(f"valgrind logs {len(counts)} processes {sum(c.processes for c in counts)} "
                 f"instructions {sum(c.instructions or 0 for c in counts):.0f}")
    lines.append(f"bench {len(bench.benchmarks)} x {PAIRS} pairs, profile "
                 f"{sum(len(b.hotspots) for b in profile.benchmarks)} hotspots, table "
                 f"{len(table.splitlines())} lines")
    digest = hashlib.sha256()
    for part in (*lines, table, json.dumps([b.resource_pairs() for b in bench.benchmarks])):
        digest.update(part.encode())
    print("\n".join(lines))
    print(f"digest {digest.hexdigest()}")
    print(f"generate {built - started:.3f} s, parse {done - built:.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
