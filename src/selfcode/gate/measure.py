"""Benchmark measurement: noise calibration, then a staged decision per candidate.

Instruction counts (valgrind) are deterministic and answer in one run each; CPU time needs
pairs: a screen, then a sequential confirmation on fresh pairs (gate/sequential.py) that stops
as soon as the evidence is clear. Which metric a benchmark uses, and the smallest gain it may claim,
are fixed once per run by an A/A calibration of the baseline against itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from selfcode.errors import SelfcodeError
from selfcode.gate.benchrules import (
    joined,
    judge_instructions,
    judge_look,
    judge_time,
    output_problem,
)
from selfcode.gate.config import GateConfig, Metric
from selfcode.gate.regressions import (
    Tolerances,
    check_resources,
    missing_resources,
    regression_reasons,
)
from selfcode.gate.sequential import Plan, futile, plan
from selfcode.gate.stats import aa_noise, implied_delta, log_ratios, screen
from selfcode.gate.verdict import BenchVerdict
from selfcode.sandbox.results import BenchSamples
from selfcode.sandbox.trees import Trees

CONFIRM_INSTRUCTION_WINS = 0.95  # wins of 5 % or more must show in CPU time too


class BenchSetting(BaseModel):
    metric: Metric
    delta: float
    cv: float
    p95_ratio: float
    native_s: float
    note: str = ""


class Calibration(BaseModel):
    valgrind: bool
    pairs: int
    benchmarks: dict[str, BenchSetting]


def _choose_metric(name: str, config: GateConfig, valgrind: bool, native_s: float,
                   cv: float) -> tuple[Metric, str]:
    wanted = config.metrics.get(name) or (None if config.metric == "auto" else config.metric)
    if wanted == "instructions" and not valgrind:
        raise SelfcodeError(f"Benchmark {name} is configured for instruction counts, but the "
                            "sandbox has no valgrind; install it in the image or use cpu_time.")
    if wanted:
        metric: Metric = wanted
    else:
        fast_enough = native_s <= config.instruction_native_limit
        metric = "instructions" if valgrind and fast_enough else "cpu_time"
    if metric == "cpu_time" and cv > config.max_time_noise:
        if not valgrind:
            raise SelfcodeError(
                f"CPU time of benchmark {name} varies by {cv:.0%} between identical runs "
                f"(limit {config.max_time_noise:.0%}), and valgrind is missing for instruction "
                "counts; quieten the machine or make the benchmark longer.")
        return "instructions", f"time noise {cv:.0%} is above {config.max_time_noise:.0%}"
    return metric, ""


def calibrate(trees: Trees, spec: dict[str, list[str]], config: GateConfig,
              pairs: int | None = None) -> Calibration:
    """Run the baseline against itself; derive each benchmark's metric and noise floor."""
    pairs = pairs or config.calibration_pairs
    valgrind = trees.probe().valgrind
    run = trees.run_benchmarks(spec, pairs, seed=0, aa=True)
    settings: dict[str, BenchSetting] = {}
    for bench in run.benchmarks:
        if bench.failure:
            raise SelfcodeError(f"Benchmark {bench.name} fails on the unchanged repository: "
                                f"{bench.failure.strip()[-300:]}")
        noise = aa_noise(bench.a, bench.b)
        native = statistics.median(bench.a + bench.b)
        metric, note = _choose_metric(bench.name, config, valgrind, native, noise.cv)
        settings[bench.name] = BenchSetting(
            metric=metric, delta=implied_delta(noise, config.min_improvement), cv=noise.cv,
            p95_ratio=noise.p95_ratio, native_s=native, note=note)
    return Calibration(valgrind=valgrind, pairs=pairs, benchmarks=settings)


class Measurement(BaseModel):
    verdicts: list[BenchVerdict]
    reasons: list[str]
    improved: bool
    why_not: str | None


Progress = Callable[[str], None]


@dataclass(frozen=True)
class _Context:
    """What every stage of one candidate's measurement needs."""

    trees: Trees
    spec: dict[str, list[str]]
    calibration: Calibration
    config: GateConfig
    seed: int
    progress: Progress

    def run(self, names: list[str], pairs: int, offset: int,
            metric: str = "cpu_time") -> list[BenchSamples]:
        return self.trees.run_benchmarks({n: self.spec[n] for n in names}, pairs,
                                         self.seed + offset, metric=metric).benchmarks

    def delta(self, name: str) -> float:
        return self.calibration.benchmarks[name].delta


def measure(trees: Trees, spec: dict[str, list[str]], calibration: Calibration,
            config: GateConfig, seed: int, progress: Progress) -> Measurement:
    ctx = _Context(trees, spec, calibration, config, seed, progress)
    names = {m: [n for n, s in calibration.benchmarks.items() if s.metric == m]
             for m in ("instructions", "cpu_time")}
    verdicts: list[BenchVerdict] = []
    reasons: list[str] = []
    timed: dict[str, BenchSamples] = {}  # the last paired time samples of each benchmark
    improved = False
    if names["instructions"]:
        progress("counting instructions")
        instr, instr_reasons, decision = judge_instructions(
            ctx.run(names["instructions"], 1, 0, metric="instructions"))
        verdicts += instr
        reasons += instr_reasons
        improved = decision.improved
    if names["cpu_time"] and not reasons:
        time_verdicts, time_reasons, timed = _time_stages(ctx, names["cpu_time"], improved)
        verdicts += time_verdicts
        reasons += time_reasons
        improved = improved or any(v.verdict == "faster" for v in time_verdicts)
    if improved and not reasons:
        reasons += _check_every_resource(ctx, verdicts, timed)
    return Measurement(verdicts=verdicts, reasons=reasons, improved=improved and not reasons,
                       why_not=None if improved else _why_not(verdicts, config))


def _check_every_resource(ctx: _Context, verdicts: list[BenchVerdict],
                          timed: dict[str, BenchSamples]) -> list[str]:
    """Before any acceptance: no benchmark may regress in CPU, wall time or peak memory.

    Benchmarks judged by instruction counts get a paired time run for this (their count says
    nothing about sleeping or kernel time); those judged by CPU time reuse their last stage.
    Large instruction wins must also show in CPU time.
    """
    counted = [v.name for v in verdicts if v.name not in timed]
    if counted:
        ctx.progress("checking CPU, wall time and memory against the baseline")
        # As many pairs as a time screen: fewer could never reach p < 0.05 (6 pairs: p >= 1/64).
        timed = {**timed, **{b.name: b for b in ctx.run(counted, ctx.config.screen_pairs, 500)}}
    reasons: list[str] = []
    for verdict in verdicts:
        bench = timed.get(verdict.name)
        problem = output_problem(bench) if bench else None
        if bench is None or problem:
            reasons.append(problem[1] if problem else
                           f"benchmark {verdict.name} could not be timed against the baseline")
            continue
        if verdict.metric == "instructions" and verdict.verdict == "faster":
            reasons += _confirm_in_time(ctx, verdict, bench)
        reasons += _attach_resources(ctx, verdict, bench)
    return reasons


def _attach_resources(ctx: _Context, verdict: BenchVerdict, bench: BenchSamples) -> list[str]:
    delta = ctx.delta(verdict.name)
    tolerances = Tolerances(cpu=delta, wall=delta,
                            rss=max(ctx.config.max_memory_growth, ctx.config.min_improvement))
    checks = check_resources(bench.resource_pairs(), tolerances, ctx.config.alpha)
    verdict.resources = checks
    missing = missing_resources(checks)
    if missing:
        # A report without them cannot show the candidate is no worse: never accept on it.
        return [f"the judge's report was tampered with or lost: benchmark {verdict.name} has no "
                f"{', '.join(missing)} samples"]
    return regression_reasons(verdict.name, checks)


def _confirm_in_time(ctx: _Context, verdict: BenchVerdict, bench: BenchSamples) -> list[str]:
    if verdict.ratio is None or verdict.ratio > CONFIRM_INSTRUCTION_WINS:
        return []
    cmp = screen(bench.a, bench.b, ctx.delta(verdict.name))
    verdict.confirmation = {"ratio": cmp.ratio, "p_value": cmp.p_faster,
                            "baseline": bench.a, "candidate": bench.b}
    if cmp.ratio < 1 and cmp.p_faster < 0.05:
        return []
    return [f"benchmark {verdict.name} runs {verdict.ratio:.3f}x the instructions, but CPU time "
            f"does not confirm it ({cmp.ratio:.3f}x, p={cmp.p_faster:.2g})"]


def _judge_stage(ctx: _Context, benches: list[BenchSamples],
                 stage: Literal["screen", "confirm"]) -> tuple[list[BenchVerdict], list[str]]:
    verdicts, reasons = [], []
    for bench in benches:
        verdict, reason = judge_time(bench, ctx.delta(bench.name), ctx.config.alpha, stage)
        verdicts.append(verdict)
        if reason or verdict.verdict in ("failed", "output differs"):
            reasons.append(reason or f"benchmark {bench.name}: {verdict.verdict}")
    return verdicts, reasons


Timed = tuple[list[BenchVerdict], list[str], dict[str, BenchSamples]]


def _screen(ctx: _Context, names: list[str], counted_win: bool) -> Timed:
    """The screen, with a look half-way: when no benchmark shows any gain in its median there
    (and no instruction count won, whose CPU, wall and memory check needs the full screen's
    pairs), the candidate stops; else the rest of the screen's pairs are measured."""
    ctx.progress("benchmarking (screen)")
    half = ctx.config.screen_pairs // 2
    first = {b.name: b for b in ctx.run(names, half, 0)}
    broken = any(output_problem(b) for b in first.values())
    if not broken and (counted_win or not all(futile(log_ratios(b.a, b.b))
                                              for b in first.values())):
        rest = ctx.run(names, ctx.config.screen_pairs - half, 250)
        first = {b.name: joined(first[b.name], b) for b in rest}
    verdicts, reasons = _judge_stage(ctx, list(first.values()), "screen")
    return verdicts, reasons, first


def _time_stages(ctx: _Context, names: list[str], counted_win: bool) -> Timed:
    """The screen; what looks faster earns the sequential confirmation on fresh pairs."""
    screened, reasons, samples = _screen(ctx, names, counted_win)
    for verdict in screened:
        verdict.pairs = len(verdict.baseline)
    final = {v.name: v if v.verdict == "faster" else v.model_copy(update={"verdict": "same"})
             for v in screened}
    promising = [v.name for v in screened if v.verdict == "faster"]
    if promising and not reasons:
        confirmed, reasons, fresh = _confirm(ctx, promising)
        for verdict in confirmed:
            verdict.pairs = len(samples[verdict.name].a) + len(verdict.baseline)
        final.update({v.name: v for v in confirmed})
        samples.update(fresh)
    return list(final.values()), reasons, samples


def _confirm(ctx: _Context, names: list[str]) -> Timed:
    """Look after look of fresh pairs (gate/sequential.py) until each benchmark is decided."""
    plan = confirm_plan(ctx.config)
    samples: dict[str, BenchSamples] = {}
    verdicts: dict[str, BenchVerdict] = {}
    reasons: list[str] = []
    undecided = list(names)
    for look, size in enumerate(plan.sizes):
        ctx.progress(f"benchmarking (confirmation on fresh pairs, look {look + 1} of "
                     f"{len(plan.sizes)})")
        done = len(samples[undecided[0]].a) if undecided[0] in samples else 0
        for bench in ctx.run(undecided, size - done, 1000 + look):
            samples[bench.name] = joined(samples.get(bench.name), bench)
            verdict, reason, decision = judge_look(
                samples[bench.name], ctx.delta(bench.name), ctx.config.alpha, plan, look)
            verdicts[bench.name] = verdict
            if reason or verdict.verdict in ("failed", "output differs"):
                reasons.append(reason or f"benchmark {bench.name}: {verdict.verdict}")
            if decision != "continue":
                undecided.remove(bench.name)
        if reasons or not undecided:
            break
    return list(verdicts.values()), reasons, samples


def confirm_plan(config: GateConfig) -> Plan:
    return plan(config.alpha, config.confirm_pairs, config.confirm_looks)


def _why_not(verdicts: list[BenchVerdict], config: GateConfig) -> str:
    measured = [v for v in verdicts if v.ratio is not None]
    if not measured:
        return "no benchmark could be measured"
    best = min(measured, key=lambda v: v.ratio or 1.0)
    if best.metric == "instructions":
        return (f"instruction counts did not fall by 1 % overall (best: {best.name} at "
                f"{best.ratio:.3f}x)")
    p = f", p={best.p_value:.2g}" if best.p_value is not None else ""
    delta = best.delta if best.delta is not None else config.min_improvement
    return (f"no benchmark is at least {delta:.1%} faster with p < {config.alpha:g} "
            f"(best: {best.name} at {best.ratio:.3f}x{p})")
