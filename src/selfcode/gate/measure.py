"""Benchmark measurement: noise calibration, then a staged decision per candidate.

Instruction counts (valgrind) are deterministic and answer in one run each; CPU time needs
pairs and a two-stage test. Which metric a benchmark uses, and the smallest gain it may claim,
are fixed once per run by an A/A calibration of the baseline against itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from pydantic import BaseModel

from selfcode.errors import SelfcodeError
from selfcode.gate.benchrules import judge_instructions, judge_time, output_problem
from selfcode.gate.config import GateConfig, Metric
from selfcode.gate.stats import aa_noise, implied_delta, screen
from selfcode.gate.verdict import BenchVerdict
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


def measure(trees: Trees, spec: dict[str, list[str]], calibration: Calibration,
            config: GateConfig, seed: int, progress: Callable[[str], None]) -> Measurement:
    names = {m: [n for n, s in calibration.benchmarks.items() if s.metric == m]
             for m in ("instructions", "cpu_time")}
    verdicts: list[BenchVerdict] = []
    reasons: list[str] = []
    improved = False
    if names["instructions"]:
        progress("counting instructions")
        run = trees.run_benchmarks({n: spec[n] for n in names["instructions"]}, 1, seed,
                                   metric="instructions")
        instr, instr_reasons, decision = judge_instructions(run.benchmarks)
        verdicts += instr
        reasons += instr_reasons
        improved = decision.improved
        big_wins = [v for v in instr if v.ratio and v.ratio <= CONFIRM_INSTRUCTION_WINS]
        if improved and big_wins and not reasons:
            reasons += _confirm_in_time(trees, spec, calibration, big_wins, seed,
                                        config.screen_pairs, progress)
    if names["cpu_time"] and not reasons:
        time_verdicts, time_reasons = _two_stage(trees, spec, calibration, config,
                                                 names["cpu_time"], seed, progress)
        verdicts += time_verdicts
        reasons += time_reasons
        improved = improved or any(v.verdict == "faster" for v in time_verdicts)
    return Measurement(verdicts=verdicts, reasons=reasons, improved=improved and not reasons,
                       why_not=None if improved else _why_not(verdicts, config))


def _confirm_in_time(trees: Trees, spec: dict[str, list[str]], calibration: Calibration,
                     wins: list[BenchVerdict], seed: int, pairs: int,
                     progress: Callable[[str], None]) -> list[str]:
    progress("confirming the instruction-count win in CPU time")
    # As many pairs as a time screen: fewer could never reach p < 0.05 (6 pairs: p >= 1/64).
    run = trees.run_benchmarks({v.name: spec[v.name] for v in wins}, pairs, seed + 500)
    reasons = []
    by_name = {v.name: v for v in wins}
    for bench in run.benchmarks:
        problem = output_problem(bench)
        if problem:
            reasons.append(problem[1])
            continue
        cmp = screen(bench.a, bench.b, calibration.benchmarks[bench.name].delta)
        by_name[bench.name].confirmation = {"ratio": cmp.ratio, "p_value": cmp.p_faster,
                                            "baseline": bench.a, "candidate": bench.b}
        if cmp.ratio >= 1 or cmp.p_faster >= 0.05:
            reasons.append(f"benchmark {bench.name} runs {by_name[bench.name].ratio:.3f}x the "
                           f"instructions, but CPU time does not confirm it ({cmp.ratio:.3f}x, "
                           f"p={cmp.p_faster:.2g})")
    return reasons


def _two_stage(trees: Trees, spec: dict[str, list[str]], calibration: Calibration,
               config: GateConfig, names: list[str], seed: int,
               progress: Callable[[str], None]) -> tuple[list[BenchVerdict], list[str]]:
    progress("benchmarking (screen)")
    first = trees.run_benchmarks({n: spec[n] for n in names}, config.screen_pairs, seed)
    final: dict[str, BenchVerdict] = {}
    reasons: list[str] = []
    promising: list[str] = []
    for bench in first.benchmarks:
        verdict, reason = judge_time(bench, calibration.benchmarks[bench.name].delta,
                                     config.alpha, "screen")
        final[bench.name] = verdict
        if reason or verdict.verdict in ("failed", "output differs"):
            reasons.append(reason or f"benchmark {bench.name}: {verdict.verdict}")
        elif verdict.verdict == "faster":
            promising.append(bench.name)
        else:
            final[bench.name] = verdict.model_copy(update={"verdict": "same"})
    if promising and not reasons:
        progress("benchmarking (confirmation on fresh pairs)")
        second = trees.run_benchmarks({n: spec[n] for n in promising}, config.confirm_pairs,
                                      seed + 1000)
        for bench in second.benchmarks:
            verdict, reason = judge_time(bench, calibration.benchmarks[bench.name].delta,
                                         config.alpha, "confirm")
            final[bench.name] = verdict
            if reason or verdict.verdict in ("failed", "output differs"):
                reasons.append(reason or f"benchmark {bench.name}: {verdict.verdict}")
    return list(final.values()), reasons


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
