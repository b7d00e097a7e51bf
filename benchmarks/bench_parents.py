"""The archive's parent rule against greedy on two simulated landscapes, seeded and pure.

* deceptive (the landscape of bench_search.py --landscape, as a simulation): from the baseline,
  A (1.46x) is a dead end and B (1.17x) leads to C (17x). How often does each rule reach C
  within a budget of candidates?
* monotone: every attempt on any node finds a 1.2x child with probability 0.3, so the best node
  is always the right parent. What final speedup does each rule reach in 30 candidates?

Run: .venv/bin/python benchmarks/bench_parents.py [--seeds 2000]. Figures go to stderr;
stdout gets one stable line.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.search.parents import Node, ParentRule, Strategy, choose_parent

Score = Callable[[float], float]


def _draw(nodes: dict[int, Node], kids: dict[int, int], strategy: Strategy,
          rng: random.Random, rule: ParentRule, score: Score) -> int:
    view = [Node(k, v.sha, v.parent, score(v.score), kids[k]) for k, v in nodes.items()]
    chosen = choose_parent(view, strategy, rng, rule).n
    kids[chosen] += 1
    return chosen


def deceptive(seed: int, budget: int, strategy: Strategy, rule: ParentRule,
              score: Score) -> bool:
    rng = random.Random(seed)
    nodes, kids, state = {0: Node(0, "0", None, 1.0)}, {0: 0}, {0: "base"}
    offered = 0
    for n in range(1, budget + 1):
        parent = _draw(nodes, kids, strategy, rng, rule, score)
        if state[parent] == "B":
            return True  # C: the square-root bound, reachable only from B
        if state[parent] == "base" and offered < 2:
            move, speedup = ("A", 1.46) if offered == 0 else ("B", 1.17)
            offered += 1
            nodes[n], kids[n], state[n] = Node(n, str(n), parent, speedup), 0, move
    return False


def monotone(seed: int, budget: int, strategy: Strategy, rule: ParentRule,
             score: Score) -> float:
    rng, world = random.Random(seed), random.Random(seed + 10_007)
    nodes, kids = {0: Node(0, "0", None, 1.0)}, {0: 0}
    for n in range(1, budget + 1):
        parent = _draw(nodes, kids, strategy, rng, rule, score)
        if world.random() < 0.3:
            nodes[n], kids[n] = Node(n, str(n), parent, nodes[parent].score * 1.2), 0
    return max(node.score for node in nodes.values())


RULES: list[tuple[str, Strategy, ParentRule, Score]] = [
    ("greedy", "greedy", ParentRule(), lambda s: s),
    ("archive (DGM, λ=10, speedup; the default)", "archive", ParentRule(), lambda s: s),
    ("archive, λ=10 on ln(speedup)", "archive", ParentRule(), math.log),
    ("archive, λ=3 on ln(speedup)", "archive", ParentRule(sharpness=3), math.log),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=2000)
    seeds = range(parser.parse_args().seeds)
    err = sys.stderr
    header = ("rule", "deceptive: reach C within 8 / 12 / 16", "monotone: final (median, mean)")
    print(f"{header[0]:44} {header[1]:>40} {header[2]:>32}", file=err)
    for name, strategy, rule, score in RULES:
        reach = [100 * sum(deceptive(s, b, strategy, rule, score) for s in seeds) / len(seeds)
                 for b in (8, 12, 16)]
        finals = [monotone(s, 30, strategy, rule, score) for s in seeds]
        print(f"{name:44} {' / '.join(f'{r:4.0f} %' for r in reach):>40} "
              f"{statistics.median(finals):>15.2f}x {statistics.mean(finals):>9.2f}x", file=err)
    print("bench_parents done")


if __name__ == "__main__":
    main()
