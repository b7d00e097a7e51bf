"""Pairs spent and false acceptance: the old two fixed stages against the sequential test.

Simulated paired CPU times (no sandbox): each pair's log ratio log(candidate/baseline) is the
candidate's true effect plus normal noise, i.e. lognormal run times at a CV per run that the
gate's A/A calibration sees (1 %, 3 %, 6 %; above `max_time_noise` = 10 % a benchmark is counted
in instructions instead). The smallest claimable gain is the gate's: max(3 %, 2 x CV).

For each noise level and each kind of candidate (clear win 0.5x, clear loss 2x, borderline win
1 - 1.3 delta, A/A), both rules judge the same number of independent candidates:

* old: screen on 10 pairs, then 20 fresh pairs at alpha (gate/sequential.py `fixed_rule`);
* new: the screen with its half-way look, then the sequential confirmation of the gate's
  default plan (`sequential_rule`, what gate/measure.py runs).

Printed: pairs used (median, 10th-90th percentile, mean), the acceptance rate, and for A/A the
false acceptance with its 95 % Clopper-Pearson interval. Run from the repository root:

    .venv/bin/python benchmarks/bench_sequential.py [--runs 2000] [--aa-runs 20000]

Figures go to stderr; stdout gets one stable line.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.gate.config import GateConfig
from selfcode.gate.measure import confirm_plan
from selfcode.gate.sequential import Draw, Outcome, fixed_rule, sequential_rule

NOISE = (0.01, 0.03, 0.06)


def draws(rng: random.Random, effect: float, cv: float) -> Draw:
    return lambda n: [rng.gauss(effect, cv * math.sqrt(2)) for _ in range(n)]


def interval(hits: int, runs: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(hits, runs).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def summary(outcomes: list[Outcome]) -> str:
    pairs = sorted(o.pairs for o in outcomes)
    decile = statistics.quantiles(pairs, n=10, method="inclusive")
    accepted = sum(o.faster for o in outcomes)
    return (f"pairs median {statistics.median(pairs):4.0f}  p10-p90 {decile[0]:2.0f}-"
            f"{decile[-1]:2.0f}  mean {statistics.fmean(pairs):5.1f}  accepted "
            f"{accepted / len(outcomes):6.1%}")


def simulate(rule: Callable[[Draw, float], Outcome], effect: float, cv: float, delta: float,
             runs: int, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    return [rule(draws(rng, effect, cv), delta) for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000, help="candidates per kind")
    parser.add_argument("--aa-runs", type=int, default=10000, help="A/A candidates per noise")
    args = parser.parse_args()
    config = GateConfig()
    plan = confirm_plan(config)
    rules: dict[str, Callable[[Draw, float], Outcome]] = {
        "old": lambda draw, delta: fixed_rule(draw, config.screen_pairs, config.confirm_pairs,
                                              delta, config.alpha),
        "new": lambda draw, delta: sequential_rule(draw, config.screen_pairs, plan, delta),
    }
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log(f"screen {config.screen_pairs} pairs; confirmation up to {config.confirm_pairs} fresh "
        f"pairs, looks at {plan.sizes}, alphas {tuple(round(a, 5) for a in plan.alphas)}")
    start = time.perf_counter()
    for cv in NOISE:
        delta = max(config.min_improvement, 2 * cv)
        kinds = {"clear win 0.5x": math.log(0.5), "clear loss 2x": math.log(2.0),
                 f"borderline {1 - 1.3 * delta:.3f}x": math.log(1 - 1.3 * delta), "A/A": 0.0}
        log(f"\nCV {cv:.0%} per run, delta {delta:.1%}")
        for seed, (kind, effect) in enumerate(kinds.items()):
            runs = args.aa_runs if kind == "A/A" else args.runs
            for name, rule in rules.items():
                outcomes = simulate(rule, effect, cv, delta, runs, seed)
                line = f"  {kind:18s} {name}: {summary(outcomes)}"
                if kind == "A/A":
                    hits = sum(o.faster for o in outcomes)
                    low, high = interval(hits, runs)
                    line += f"  false acceptance {hits}/{runs}, 95 % CI {low:.4%}-{high:.4%}"
                log(line)
    log(f"\n({time.perf_counter() - start:.0f} s)")
    print("bench_sequential done")


if __name__ == "__main__":
    main()
