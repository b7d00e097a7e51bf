"""The gate's rules for one run, as the prompts state them.

The model is told how it will be judged, and that statement must be the rule the gate really
applies, or the model optimises for the wrong thing. So the values come from the gate itself:
its configuration, the run's calibration (which metric each benchmark is judged by, and the
smallest CPU-time gain it may claim), and the thresholds the gate's code uses. The words are
in prompts/rules.j2; this module only collects the numbers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from selfcode.gate.config import GateConfig, Metric
from selfcode.gate.measure import CONFIRM_INSTRUCTION_WINS, Calibration, confirm_plan
from selfcode.gate.probes import CONTEXT_PROBES
from selfcode.gate.stats import instruction_decision, screen
from selfcode.gate.verdict import Goal


def _default(function: Callable[..., Any], parameter: str) -> float:
    """A threshold the gate takes as a default argument, read from the gate's own signature
    so that the prompt cannot drift from it."""
    return float(inspect.signature(function).parameters[parameter].default)


@dataclass(frozen=True)
class BenchmarkRule:
    name: str
    metric: Metric | None
    """None before calibration: then the run's A/A calibration decides."""
    delta: float
    """The smallest CPU-time gain this benchmark may claim (from the run's A/A noise)."""


@dataclass(frozen=True)
class GateRules:
    """Everything the prompts say about how a candidate is judged in this run."""

    judge: Goal
    benchmarks: tuple[BenchmarkRule, ...]
    alpha: float
    min_improvement: float
    screen_alpha: float
    screen_pairs: int
    confirm_pairs: int
    confirm_looks: tuple[int, ...]
    """The sequential confirmation's looks: fresh pairs measured by each (the last is the cap)."""
    look_alphas: tuple[float, ...]
    """The significance level of each look; they add up to `alpha`."""
    instructions_overall: float
    """The geometric mean of the instruction ratios must be at most this."""
    instructions_single: float
    """No single benchmark's instruction ratio may be above this."""
    confirm_below: float
    """Instruction ratios at or below this must also show in CPU time."""
    native_limit: float
    memory_growth: float
    """Peak memory may grow this much before a significant growth rejects."""
    metric_command: str | None
    metric_direction: Literal["max", "min"]
    protected: tuple[str, ...]
    refuse_context_probes: bool
    probes: tuple[str, ...]
    """What the context-probe check refuses, in the gate's own words."""

    @classmethod
    def of(cls, config: GateConfig, judge: Goal, benchmarks: Iterable[str],
           calibration: Calibration | None) -> GateRules:
        """The rules of a run judged by `judge`, with `benchmarks` calibrated as `calibration`."""
        return cls(
            judge=judge,
            benchmarks=tuple(_benchmark(name, config, calibration)
                             for name in sorted(benchmarks)),
            alpha=config.alpha,
            min_improvement=config.min_improvement,
            screen_alpha=_default(screen, "alpha"),
            screen_pairs=config.screen_pairs,
            confirm_pairs=config.confirm_pairs,
            confirm_looks=confirm_plan(config).sizes,
            look_alphas=tuple(float(f"{a:.4g}") for a in confirm_plan(config).alphas),
            instructions_overall=_default(instruction_decision, "max_geomean"),
            instructions_single=_default(instruction_decision, "max_single"),
            confirm_below=CONFIRM_INSTRUCTION_WINS,
            native_limit=config.instruction_native_limit,
            # As gate/measure.py's tolerance for peak memory.
            memory_growth=max(config.max_memory_growth, config.min_improvement),
            metric_command=config.metric_command,
            metric_direction=config.metric_direction,
            protected=tuple(config.protected),
            refuse_context_probes=config.refuse_context_probes,
            probes=tuple(dict.fromkeys(CONTEXT_PROBES.values())),
        )

    def judged_by(self, metric: Metric | None) -> list[BenchmarkRule]:
        return [b for b in self.benchmarks if b.metric == metric]


def _benchmark(name: str, config: GateConfig,
               calibration: Calibration | None) -> BenchmarkRule:
    if calibration is not None and name in calibration.benchmarks:
        setting = calibration.benchmarks[name]
        return BenchmarkRule(name=name, metric=setting.metric, delta=setting.delta)
    # Before calibration only a configured instruction count is certain (a configured CPU
    # time still turns into counts when the A/A noise is too high); the delta is then the
    # floor that calibration never goes below.
    configured = config.metrics.get(name) or config.metric
    return BenchmarkRule(name=name, metric="instructions" if configured == "instructions" else None,
                         delta=config.min_improvement)
