"""The `metric` judge: a number the repository's own command prints, better in one direction.

`[tool.selfcode.gate] metric_command` prints one JSON number; the baseline's and the
candidate's are compared in `metric_direction` (max or min). Tests must still pass; that is
the judge's part (gate/judge.py), this is only the number.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

from selfcode.gate.config import GateConfig
from selfcode.gate.verdict import BenchVerdict
from selfcode.sandbox.trees import Trees


def judge_metric(trees: Trees, config: GateConfig, seed: int,
                 progress: Callable[[str], None]) -> tuple[list[BenchVerdict], list[str]]:
    """The metric's verdict and the reasons it rejects, if any."""
    assert config.metric_command
    progress("measuring the metric")
    argv = shlex.split(config.metric_command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = trees.sandbox.python
    run = trees.run_benchmarks({"metric": argv}, 2, seed)
    (bench,) = run.benchmarks
    values = {}
    for side in ("a", "b"):
        out = bench.output.get(side)
        try:
            values[side] = float(json.loads(out.head)) if out else None
        except (ValueError, TypeError):
            values[side] = None
    a, b = values["a"], values["b"]
    if bench.failure or a is None or b is None:
        why = bench.failure or "the metric command did not print one JSON number"
        return [], [f"metric: {why}"]
    better = b > a if config.metric_direction == "max" else b < a
    verdict = BenchVerdict(name="metric", metric=f"metric ({config.metric_direction})",
                           baseline=[a], candidate=[b], ratio=b / a if a else None,
                           verdict="faster" if better else "same")
    reason = [] if better else [f"the metric did not improve ({a:g} → {b:g}, "
                                f"{config.metric_direction} is better)"]
    return [verdict], reason
