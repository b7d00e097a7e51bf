"""Report rendering: the Markdown and HTML reports of a long run with many candidates.

Covers src/selfcode/report/markdown.py (`render_markdown`: the candidates' table, evidence
tables, text plots, diffs, the hotspot table, and the re-rendering with shorter diffs when the
report is over GitHub's limit), html.py (`render_html`: the same with an SVG plot of every
sample series), plots.py, units.py, and the models they read (`RunView`, `CandidateView`,
`Verdict`, built from plain data as `history/views.py load_run` builds them).

Why this size: 60 candidates (7 on the branch, 6 unusable replies, the rest rejected), each
verdict with 6 benchmarks of 20 paired samples, and for the accepted ones their CPU-time
confirmations, resource checks, equivalence results and a 100-line diff; plus a profile of 3
benchmarks. That is a report of 352 SVG plots and a Markdown body that has to be
re-rendered shorter to fit: what `selfcode report` and the CI summary do at the end of a run.
About half a second natively.

stdout carries only the sizes and a hash of both reports, the same on every run and for every
correct implementation.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from pathlib import Path
from typing import Any

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.gate.verdict import Verdict
from selfcode.history.views import CandidateView, Review, RunView, Usage
from selfcode.report.html import render_html
from selfcode.report.markdown import render_markdown
from selfcode.sandbox.results import ProfileRun

SEED = 20_261_205
RUN_ID = "20261201-120000-ab12"
CANDIDATES = 60
BENCHMARKS = 6
PAIRS = 20


def samples(rng: random.Random, scale: float) -> list[float]:
    return [scale * (1 + rng.random() / 40) for _ in range(PAIRS)]


def bench(rng: random.Random, b: int, accepted: bool) -> dict[str, Any]:
    time_metric = b % 3 == 2  # some benchmarks run too long for valgrind: CPU time
    metric, scale = ("cpu_time", 0.8) if time_metric else ("instructions", 2.4e9)
    gain = 0.82 if accepted and b < 3 else 1.0
    out: dict[str, Any] = {
        "name": f"bench_{b}", "metric": metric, "baseline": samples(rng, scale),
        "candidate": samples(rng, scale * gain), "ratio": gain, "p_value": 0.0004,
        "verdict": "faster" if gain < 1 else "same", "delta": 0.03,
        "stage": "confirm" if time_metric else "instructions",
        "resources": [{"resource": r, "baseline_median": 1.0, "candidate_median": 0.97,
                       "ratio": 0.97, "p_slower": 0.7, "tolerance": 0.1, "regressed": False}
                      for r in ("cpu", "wall", "rss")]}
    if accepted and not time_metric:
        out["confirmation"] = {"metric": "cpu_time", "baseline": samples(rng, 0.5),
                               "candidate": samples(rng, 0.5 * gain), "ratio": gain,
                               "p_value": 0.002}
    return out


def verdict(rng: random.Random, n: int, accepted: bool) -> dict[str, Any]:
    return {
        "accepted": accepted, "status": "accepted" if accepted else "rejected", "goal": "speed",
        "reasons": [] if accepted else [f"benchmark bench_{n % BENCHMARKS} was not faster "
                                        "(ratio 0.99, p = 0.3)"],
        "patch": {"files": [f"src/app/module_{n}.py", "src/app/util.py"], "added": 60,
                  "removed": 40},
        "tests": {"baseline": {"passed": 1180, "failed": 0, "skipped": 12},
                  "candidate": {"passed": 1180, "failed": 0, "skipped": 12},
                  "quarantined": ["tests/test_net.py::test_flaky"] if n % 5 == 0 else []},
        "benchmarks": [bench(rng, b, accepted) for b in range(BENCHMARKS)],
        "equivalence": {"functions": [f"src/app/module_{n}.py:compute_{k}" for k in range(3)],
                        "inputs_tried": 150, "not_checked": {"src/app/util.py:stream": "a "
                                                             "generator"}},
        "timings": {"total": 184.2, "tests": 40.1, "bench": 120.3}, "sandbox": "docker"}


def diff_of(n: int) -> str:
    body = "".join(f"@@ -{k * 12 + 1},4 +{k * 12 + 1},4 @@ def compute_{k}(values):\n"
                   f"     total = 0\n-    for v in values:\n-        total += v * {k}\n"
                   f"+    total = {k} * sum(values)\n     return total\n" for k in range(20))
    return (f"diff --git a/src/app/module_{n}.py b/src/app/module_{n}.py\n"
            f"--- a/src/app/module_{n}.py\n+++ b/src/app/module_{n}.py\n{body}")


def candidate(rng: random.Random, n: int) -> CandidateView:
    """Candidate `n` as `load_run` makes it from the history's row."""
    malformed, accepted = n % 10 == 9, n % 7 == 0
    status = "malformed" if malformed else "accepted" if accepted else "rejected"
    rationale = (f"Compute the sums of module {n} once | without the loop.\n\n"
                 + "The loop multiplied every value; one multiplication after the sum does "
                   "the same work.\n" * 3)
    v = None if malformed else Verdict.model_validate(verdict(rng, n, accepted))
    return CandidateView(
        run_id=RUN_ID, n=n, status=status, title=rationale.splitlines()[0], rationale=rationale,
        diff="" if malformed else diff_of(n), parent_commit=f"{n:040x}",
        commit=f"{n + 1:040x}" if accepted else None, candidate_commit=f"{n + 2:040x}",
        ref=f"refs/selfcode/{RUN_ID}/{n}", verdict=v, speedup=v.speedup() if v else None,
        usage=Usage(model="gpt-test", exchanges=1 + n % 3, prompt_tokens=14_000 + n,
                    completion_tokens=1_100, cost_usd=0.021 * (1 + n % 3), latency_s=5.5),
        review=Review(decision="approved", reviewer="ana", note="checked the numbers",
                      at="2026-12-01T12:00:00+00:00") if accepted else None,
        created_at="2026-12-01T12:00:00+00:00",
        reasons=["no usable edit: the SEARCH block matched nothing"] if malformed
        else (v.reasons if v else []))


def profile_of(rng: random.Random) -> ProfileRun:
    return ProfileRun.model_validate({"python": "3.11.2", "benchmarks": [
        {"name": f"bench_{b}", "total_s": 1.2, "line_level": False,
         "note": "line timings need Python 3.12 or newer in the sandbox",
         "hotspots": [{"file": f"src/app/module_{s}.py", "line": 10 + s, "name": f"compute_{s}",
                       "calls": rng.randrange(1, 10**6), "own_s": 0.3 / (s + 1),
                       "cum_s": 0.5 / (s + 1), "own_share": 0.3 / (s + 1),
                       "cum_share": 0.5 / (s + 1), "cum_per_call_s": 1e-6,
                       "callers": [{"file": "benchmarks/bench_x.py", "line": 3,
                                    "name": "main", "calls": 10}]} for s in range(30)]}
        for b in range(3)]})


def run_view(rng: random.Random) -> RunView:
    view = RunView(run_id=RUN_ID, repo="/work/repo", branch=f"selfcode/{RUN_ID}",
                   base_commit="a" * 40, goal="make the benchmarks faster", model="gpt-test",
                   sandbox="docker", status="finished", started_at="2026-12-01T12:00:00+00:00",
                   stop_reason="iterations", wall_s=7_320.5, cost_usd=2.52)
    for n in range(1, CANDIDATES + 1):
        cand = candidate(rng, n)
        view.candidates.append(cand)
        view.tokens += cand.usage.prompt_tokens + cand.usage.completion_tokens
        view.accepted += cand.status == "accepted"
        if cand.on_branch and cand.speedup and (view.best_speedup or 0) < cand.speedup:
            view.best_speedup = cand.speedup
    return view


def main() -> None:
    started = time.perf_counter()
    rng = random.Random(SEED)
    view, profile = run_view(rng), profile_of(rng)
    built = time.perf_counter()
    markdown = render_markdown(view, profile=profile)
    html = render_html(view, profile)
    done = time.perf_counter()
    print(f"candidates {len(view.candidates)} on the branch {len(view.on_branch)}")
    print(f"markdown {len(markdown)} chars {hashlib.sha256(markdown.encode()).hexdigest()}")
    print(f"html {len(html)} chars {html.count('<svg')} plots "
          f"{hashlib.sha256(html.encode()).hexdigest()}")
    print(f"models {built - started:.3f} s, render {done - built:.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
