"""Does judging candidates in parallel add noise to a CPU-time verdict? The A/A test against N.

`selfcode improve --jobs N` judges up to N candidates at once, one sandbox each
(search/pool.py). CPU-time runs hold the process-wide `TimingSlot` (sandbox/slots.py), so two
time measurements never overlap; tests and instruction counts of the other judges still run
beside them. This benchmark measures what that leaves:

* one A/A judge: the unchanged tree judged against itself by the real gate (`measure` with a
  calibration from `calibrate`, taken on a quiet machine as a run does, forced to cpu_time);
* N-1 busy judges, each in its own sandbox, cycling through what candidates in flight do: the
  test suite, an instruction count (when the sandbox has valgrind), a short CPU-time benchmark
  (which takes the slot);
* settings N = 1, 2, 4 with the slot as selfcode has it (CPU-time runs hold it alone, every
  other harness run of a judge shares it), and N = 4 with the first slot (CPU-time runs
  exclude only each other) and with none (what each buys), interleaved in blocks so that
  drift in the machine's load (other work on the host) falls on every setting alike.

Per setting: A/A false acceptances / trials (Clopper-Pearson 95 % interval), the A/A noise
(robust CV of the log ratios, as the calibration computes it, over every pair of the
setting's verdicts) and the median wall time per verdict (slot waits included). Docker when an
engine and the base image are there (SELFCODE_BASE_IMAGE, default selfcode-base:bookworm),
else the local sandbox (no isolation; the figures then include every process's interference).

    .venv/bin/python benchmarks/bench_parallel_aa.py [--trials 40] [--quick] [--backend auto]

About 11 minutes on a quiet 2-core machine, 23 under a host load of 3-11 (--quick, one round:
about 2-3 minutes quiet). 40 verdicts per setting bound the false acceptance only to < 9 %
(the gate's alpha is 1 %, guaranteed by the exact test); the noise figures are the sensitive
ones. Figures go to stderr; stdout gets one stable
line, because selfcode's own gate compares what its benchmarks print.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# bench_gate.py's fixture (the same work function) and helpers; this directory is on the path.
from bench_gate import WORK, log, tar_of
from scipy.stats import binomtest

from selfcode.config import SandboxConfig
from selfcode.gate.config import GateConfig
from selfcode.gate.measure import BenchSetting, Calibration, calibrate, measure
from selfcode.gate.stats import Noise, aa_noise, log_ratios
from selfcode.resources import harness_dir
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.slots import Hold, TimingSlot
from selfcode.sandbox.trees import Trees

BENCH = "from work import work\nprint(work(100000, 12))\n"
TESTS = '''import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pytest
from work import work


@pytest.mark.parametrize("reps", range(1, 9))
def test_work_is_stable(reps):
    assert work(60000, reps) == work(60000, reps)
'''
FIXTURE = {"src/work.py": WORK, "benchmarks/bench_work.py": BENCH, "tests/test_work.py": TESTS}




class TimingOnlySlot(TimingSlot):
    """The slot as it was first (e6bde07): CPU-time runs exclude each other, and nothing else;
    tests, instruction counts and installs of other judges run beside a timing run."""

    @contextlib.contextmanager
    def share(self) -> Iterator[None]:
        yield


class NoSlot(TimingOnlySlot):
    """The slot disabled: every hold is granted at once, however many are held."""

    @contextlib.contextmanager
    def hold(self, reason: str) -> Iterator[Hold]:
        yield Hold(reason)


SLOTS: dict[str, type[TimingSlot]] = {
    "exclusive": TimingSlot, "timing-only": TimingOnlySlot, "none": NoSlot}


@dataclass(frozen=True)
class Setting:
    label: str
    busy: int
    """Busy judges beside the A/A judge (N - 1)."""
    slot: str
    """A key of SLOTS: the slot as selfcode has it (exclusive against every other harness
    run), the first one (against other CPU-time runs only), or none."""


SETTINGS = (Setting("N=1", 0, "exclusive"), Setting("N=2", 1, "exclusive"),
            Setting("N=4", 3, "exclusive"), Setting("N=4 timing-only", 3, "timing-only"),
            Setting("N=4 no slot", 3, "none"))


class Busy(threading.Thread):
    """A judge with candidates in flight: tests, an instruction count, a CPU-time run, again."""

    def __init__(self, trees: Trees, spec: dict[str, list[str]], valgrind: bool,
                 index: int) -> None:
        super().__init__(name=f"busy-judge-{index}", daemon=True)
        self.trees = trees
        self.spec = spec
        self._cond = threading.Condition()
        self._wanted = False
        self._working = False
        self._stop = False
        self.failure: BaseException | None = None
        self.steps: dict[str, int] = {}
        steps: list[tuple[str, Callable[[int], object]]] = [("tests", self._tests)]
        if valgrind:
            steps.append(("instructions", self._instructions))
        steps.append(("cpu_time", self._cpu_time))
        self._cycle = steps[index % len(steps):] + steps[:index % len(steps)]  # staggered

    def _tests(self, _seed: int) -> object:
        return self.trees.run_tests("b")

    def _instructions(self, seed: int) -> object:
        return self.trees.run_benchmarks(self.spec, 1, seed, metric="instructions")

    def _cpu_time(self, seed: int) -> object:
        return self.trees.run_benchmarks(self.spec, 3, seed)

    def set_active(self, active: bool) -> None:
        """Start or stop working; stopping waits until the step under way has finished."""
        with self._cond:
            self._wanted = active
            self._cond.notify_all()
            if not active:
                self._cond.wait_for(lambda: not self._working)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def run(self) -> None:
        seeds = count(1)
        try:
            while True:
                for name, step in self._cycle:
                    with self._cond:
                        self._working = False
                        self._cond.notify_all()
                        self._cond.wait_for(lambda: self._wanted or self._stop)
                        if self._stop:
                            return
                        self._working = True
                    step(next(seeds))
                    self.steps[name] = self.steps.get(name, 0) + 1
        except BaseException as exc:  # reported by the main thread
            self.failure = exc
            with self._cond:
                self._working = False
                self._cond.notify_all()


@dataclass
class Outcome:
    accepted: list[bool] = field(default_factory=list)
    ratios: list[list[float]] = field(default_factory=list)
    """Each verdict's log ratios (candidate over baseline, every pair it measured)."""
    walls: list[float] = field(default_factory=list)


class Bench:
    """The A/A judge and the busy judges, over sandboxes opened by `open_sandbox`."""

    def __init__(self, open_sandbox: Callable[[], Sandbox], busy: int) -> None:
        self.spec: dict[str, list[str]] = {}
        self.slots = {name: kind() for name, kind in SLOTS.items()}
        self.slot = self.slots["exclusive"]
        self.trees: list[Trees] = []
        for _ in range(busy + 1):
            box = open_sandbox()
            trees = Trees(box, timeout=120, timing_slot=self.slot)
            trees.load_baseline(tar_of(FIXTURE))
            trees.reset_candidate()
            self.trees.append(trees)
            self.spec = {"work": [box.python, "benchmarks/bench_work.py"]}
        self.valgrind = self.trees[0].probe().valgrind
        self.busy = [Busy(t, self.spec, self.valgrind, i) for i, t in enumerate(self.trees[1:])]
        for worker in self.busy:
            worker.start()

    def calibration(self, config: GateConfig) -> Calibration:
        """Calibrated as a run is, before any candidate: on a quiet machine; forced to time."""
        cal = calibrate(self.trees[0], self.spec, config)
        forced = BenchSetting(**{**cal.benchmarks["work"].model_dump(), "metric": "cpu_time"})
        return cal.model_copy(update={"benchmarks": {"work": forced}})

    def configure(self, setting: Setting) -> None:
        """Busy judges beyond the setting's stop (their step under way first); when the slot
        changes, all of them, so that no hold of the old slot overlaps the new setting."""
        slot = self.slots[setting.slot]
        changed = slot is not self.trees[0].timing_slot
        for worker in self.busy[0 if changed else setting.busy:]:
            worker.set_active(False)
            self._check(worker)
        for trees in self.trees:
            trees.timing_slot = slot
        for worker in self.busy[:setting.busy]:
            worker.set_active(True)

    def trial(self, cal: Calibration, config: GateConfig, seed: int, into: Outcome) -> None:
        start = time.perf_counter()
        result = measure(self.trees[0], self.spec, cal, config, seed, lambda _m: None)
        into.walls.append(time.perf_counter() - start)
        into.accepted.append(result.improved)
        into.ratios.append([r for v in result.verdicts
                            for r in log_ratios(v.baseline, v.candidate)])
        for worker in self.busy:
            self._check(worker)

    @staticmethod
    def _check(worker: Busy) -> None:
        if worker.failure is not None:
            raise RuntimeError(f"{worker.name} failed: {worker.failure}") from worker.failure

    def close(self) -> None:
        for worker in self.busy:
            worker.stop()


def docker_opener(stack: contextlib.ExitStack) -> Callable[[], Sandbox] | None:
    """Opens hardened Docker sandboxes for the fixture, or None without an engine or image."""
    from selfcode.sandbox.deps import dependencies_from_files
    from selfcode.sandbox.docker import DockerSandbox, build_image, docker_available

    reason = docker_available()
    if reason is not None:
        log(f"no Docker engine ({reason}); using the local sandbox")
        return None
    config = SandboxConfig(base_image=os.environ.get("SELFCODE_BASE_IMAGE")
                           or "selfcode-base:bookworm")
    state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="selfcode-bench-")))
    deps = dependencies_from_files(FIXTURE, "bench_parallel_aa fixture")
    image = build_image(deps, state, config.base_image, progress=log).tag
    names = count(1)

    def open_sandbox() -> Sandbox:
        box = DockerSandbox.start(config, image, f"bench-aa-{os.getpid()}-{next(names)}",
                                  harness_dir())
        return stack.enter_context(box)

    return open_sandbox


def local_opener(stack: contextlib.ExitStack) -> Callable[[], Sandbox]:
    return lambda: stack.enter_context(LocalSandbox(harness_dir()))


def run(bench: Bench, trials: int, block: int) -> tuple[Calibration, dict[str, Outcome]]:
    config = GateConfig()
    bench.configure(SETTINGS[0])
    cal = bench.calibration(config)
    quiet = cal.benchmarks["work"]
    log(f"calibration (quiet): CV {quiet.cv:.2%}, delta {quiet.delta:.2%}, "
        f"{quiet.native_s * 1000:.0f} ms per run; valgrind: {bench.valgrind}")
    outcomes = {s.label: Outcome() for s in SETTINGS}
    seeds = count(1)
    start = time.perf_counter()
    rounds = math.ceil(trials / block)
    for r in range(rounds):
        # Rotated each round: no setting always follows the same one.
        for setting in SETTINGS[r % len(SETTINGS):] + SETTINGS[:r % len(SETTINGS)]:
            bench.configure(setting)
            outcome = outcomes[setting.label]
            for _ in range(min(block, trials - len(outcome.accepted))):
                bench.trial(cal, config, next(seeds), outcome)
        log(f"  round {r + 1}/{rounds} ({time.perf_counter() - start:.0f}s)")
    bench.configure(SETTINGS[0])
    return cal, outcomes


def noise_of(trials: list[list[float]]) -> Noise:
    """The calibration's noise figures over every pair of `trials` (lists of log ratios)."""
    logs = [r for trial in trials for r in trial]
    return aa_noise([1.0] * len(logs), [math.exp(r) for r in logs])


def cv_ratio_interval(trials: list[list[float]], reference: list[list[float]],
                      rounds: int = 1000) -> tuple[float, float]:
    """A 95 % bootstrap interval of CV(trials) / CV(reference), resampling whole verdicts."""
    rng = random.Random(0)
    ratios = sorted(
        noise_of(rng.choices(trials, k=len(trials))).cv
        / max(noise_of(rng.choices(reference, k=len(reference))).cv, 1e-12)
        for _ in range(rounds))
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def report(cal: Calibration, outcomes: dict[str, Outcome], bench: Bench) -> None:
    log("\nsetting         | A/A false acceptances | 95 % CI (Clopper-Pearson) | noise CV "
        "| CV / CV(N=1), 95 % CI | p95 ratio | wall s/verdict (median) | pairs")
    reference = outcomes[SETTINGS[0].label].ratios
    said = []
    alpha = GateConfig().alpha
    for label, out in outcomes.items():
        k, n = sum(out.accepted), len(out.accepted)
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        noise = noise_of(out.ratios)
        rel = noise.cv / max(noise_of(reference).cv, 1e-12)
        low, high = cv_ratio_interval(out.ratios, reference)
        log(f"{label:15} | {k:>3}/{n:<3} = {100 * k / max(n, 1):5.1f} %   | "
            f"{100 * ci.low:4.1f}-{100 * ci.high:4.1f} %{'':14} | {noise.cv:7.2%} | "
            f"{rel:4.2f} ({low:4.2f}-{high:4.2f}){'':8} | {noise.p95_ratio:9.3f} | "
            f"{statistics.median(out.walls):23.2f} | {noise.pairs}")
        if label != SETTINGS[0].label:
            said.append(f"{label}: false acceptance "
                        f"{'RISES above' if ci.low > alpha else 'is not shown above'} "
                        f"alpha = {alpha:g} ({k}/{n}); noise {rel:.2f}x that of N=1 "
                        + ("(RISES: the interval excludes 1)" if low > 1 else
                           "(not shown to rise: the interval includes 1)" if high >= 1 else
                           "(falls)"))
    log(f"calibration CV {cal.benchmarks['work'].cv:.2%}; exclusive slot: "
        f"{bench.slot.holds} timing holds, {bench.slot.waited_seconds:.0f} s waited for in all; "
        "busy steps: "
        + "; ".join(f"{w.name} {w.steps}" for w in bench.busy))
    slotted = outcomes["N=4"].ratios
    for label in ("N=4 timing-only", "N=4 no slot"):
        other = outcomes[label].ratios
        low, high = cv_ratio_interval(other, slotted)
        said.append(f"what the exclusive slot buys at N=4: noise with '{label}' is "
                    f"{noise_of(other).cv / max(noise_of(slotted).cv, 1e-12):.2f}x that with "
                    f"it (95 % CI {low:.2f}-{high:.2f})")
    for line in said:
        log(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40, help="A/A verdicts per setting")
    parser.add_argument("--block", type=int, default=8, help="verdicts per setting per round")
    parser.add_argument("--quick", action="store_true", help="8 verdicts per setting")
    parser.add_argument("--backend", choices=("auto", "docker", "local"), default="auto")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.block = 8, 4
    with contextlib.ExitStack() as stack:
        opener = None if args.backend == "local" else docker_opener(stack)
        if opener is None and args.backend == "docker":
            log("the docker backend was asked for but is not available")
            return 2
        log(f"backend: {'docker' if opener else 'local'}")
        bench = Bench(opener or local_opener(stack), busy=max(s.busy for s in SETTINGS))
        stack.callback(bench.close)
        cal, outcomes = run(bench, args.trials, args.block)
        report(cal, outcomes, bench)
    print("bench_parallel_aa done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
