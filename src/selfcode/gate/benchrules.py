"""Benchmark rules: the output must match the baseline's, then instructions or CPU time decide.

Pure functions over the harness's samples; the statistics are in gate/stats.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from selfcode.gate.sequential import Decision, Plan, decide
from selfcode.gate.stats import (
    InstructionDecision,
    compare,
    instruction_decision,
    log_ratios,
    screen,
)
from selfcode.gate.verdict import BenchOutcome, BenchVerdict
from selfcode.sandbox.results import BenchSamples


def output_problem(bench: BenchSamples) -> tuple[BenchVerdict, str] | None:
    """A benchmark that failed, or printed another result than the baseline, rejects."""
    def verdict(kind: BenchOutcome) -> BenchVerdict:
        return BenchVerdict(name=bench.name, metric=bench.metric, baseline=bench.a,
                            candidate=bench.b, verdict=kind)

    if bench.failure or not bench.a or len(bench.a) != len(bench.b):
        return (verdict("failed"),
                f"benchmark {bench.name} failed: {bench.failure or 'no samples'}")
    a_out, b_out = bench.output.get("a"), bench.output.get("b")
    if a_out is None or b_out is None or a_out.sha256 != b_out.sha256:
        return (verdict("output differs"),
                f"benchmark {bench.name} printed a different result than the baseline")
    return None


def judge_time(bench: BenchSamples, delta: float, alpha: float,
               stage: Literal["screen", "confirm"]) -> tuple[BenchVerdict, str | None]:
    """Screen: p < 0.05 and half of delta earns a confirmation; confirm: p < alpha and delta."""
    problem = output_problem(bench)
    if problem:
        return problem
    cmp = screen(bench.a, bench.b, delta) if stage == "screen" else compare(
        bench.a, bench.b, alpha, delta)
    # Regressions are judged two-sided at alpha, at every stage.
    slower = cmp.p_slower < alpha / 2 and cmp.ratio >= 1 + delta
    verdict: BenchOutcome = "slower" if slower else (
        "faster" if cmp.verdict == "faster" else "same")
    result = BenchVerdict(name=bench.name, metric=bench.metric, baseline=bench.a,
                          candidate=bench.b, ratio=cmp.ratio, delta=delta, stage=stage,
                          p_value=cmp.p_slower if slower else cmp.p_faster, verdict=verdict)
    reason = (f"benchmark {bench.name} is slower: {cmp.ratio:.3f}x the baseline's CPU time "
              f"(p={cmp.p_slower:.2g})") if slower else None
    return result, reason


def judge_look(bench: BenchSamples, delta: float, alpha: float, plan: Plan,
               look: int) -> tuple[BenchVerdict, str | None, Decision]:
    """Look `look` of the sequential confirmation (gate/sequential.py) at all fresh pairs so far.

    A regression is judged as at every stage (two-sided at alpha); "continue" asks for the next
    group of pairs and is reported as "same" until then.
    """
    problem = output_problem(bench)
    if problem:
        return problem[0], problem[1], "same"
    final = look == len(plan.sizes) - 1
    seen = decide(log_ratios(bench.a, bench.b), delta, plan.alphas[look], final)
    slower = compare(bench.a, bench.b, alpha, delta)
    if slower.p_slower < alpha / 2 and slower.ratio >= 1 + delta:
        verdict, _ = judge_time(bench, delta, alpha, "confirm")
        return verdict, (f"benchmark {bench.name} is slower: {slower.ratio:.3f}x the baseline's "
                         f"CPU time (p={slower.p_slower:.2g})"), "same"
    result = BenchVerdict(
        name=bench.name, metric=bench.metric, baseline=bench.a, candidate=bench.b,
        ratio=seen.ratio, delta=delta, stage="confirm", p_value=seen.p_value,
        verdict="faster" if seen.decision == "faster" else "same")
    return result, None, seen.decision


def joined(first: BenchSamples | None, more: BenchSamples) -> BenchSamples:
    """The pairs of two runs of one benchmark as one sample (outputs: the later run's)."""
    if first is None:
        return more
    resources = {
        side: {r: [*first.resources.get(side, {}).get(r, []), *values]
               for r, values in more.resources.get(side, {}).items()}
        for side in more.resources}
    return more.model_copy(update={"a": [*first.a, *more.a], "b": [*first.b, *more.b],
                                   "resources": resources})


def judge_instructions(benches: Sequence[BenchSamples]) -> tuple[
        list[BenchVerdict], list[str], InstructionDecision]:
    verdicts: list[BenchVerdict] = []
    reasons: list[str] = []
    ratios: dict[str, float] = {}
    for bench in benches:
        problem = output_problem(bench)
        if problem:
            verdicts.append(problem[0])
            reasons.append(problem[1])
            continue
        ratio = statistics.median(bench.b) / statistics.median(bench.a)
        ratios[bench.name] = ratio
        verdict: BenchOutcome = (
            "faster" if ratio <= 0.99 else ("slower" if ratio > 1.01 else "same"))
        verdicts.append(BenchVerdict(name=bench.name, metric="instructions", baseline=bench.a,
                                     candidate=bench.b, ratio=ratio, verdict=verdict,
                                     stage="instructions"))
    decision = instruction_decision(ratios)
    reasons.extend(f"benchmark {name} runs {ratios[name]:.3f}x the baseline's instructions"
                   for name in decision.worse)
    return verdicts, reasons, decision
