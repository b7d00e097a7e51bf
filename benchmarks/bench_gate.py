"""How often does the gate call noise an improvement, and how often does it see a real one?

Runs selfcode's real measurement path (harness, local sandbox, `selfcode.gate.measure`) on a small
fixture repository, many times:

* A/A false acceptance: the unchanged tree judged against itself, with the time gate and with
  the instruction gate. Targets: <= 1 % (time), 0 (instructions).
* Power: a candidate with a true ~3 % instruction reduction and one with a true ~8 % CPU-time
  reduction. Target: >= 90 % accepted.
* Side by side: the same screen samples judged by rules other tools use — one run each > 5 %
  faster, min of runs > 5 % (Codeflash's noise floor), median 5 % (pytest-benchmark's
  --benchmark-compare-fail=median:5%).

Run from the repository root (takes about 5-10 minutes on 2 cores; --quick for a smoke run):

    .venv/bin/python benchmarks/bench_gate.py [--aa 200] [--power 50] [--quick]

Figures go to stderr; stdout gets one stable line, because selfcode's own gate compares what
its benchmarks print.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.gate.config import GateConfig
from selfcode.gate.measure import BenchSetting, Calibration, calibrate, measure
from selfcode.gate.stats import median_rule, min_of_runs_rule, single_run_rule
from selfcode.resources import harness_dir
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.trees import Trees

WORK = '''def work(n, reps):
    total = 0
    for _ in range(reps):
        for i in range(n):
            total += i * i % 7
    return total % 1000003
'''
UNIT = 100_000  # one unit of work: about 6 ms of CPU here
BENCH = "from work import work\nprint(work({unit}, 12))\nwork({waste}, 1)\n"


def tar_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree(waste_units: float) -> bytes:
    """12 units of useful work plus some waste: the printed result never changes."""
    bench = BENCH.format(unit=UNIT, waste=int(UNIT * waste_units))
    return tar_of({"src/work.py": WORK, "benchmarks/bench_work.py": bench})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Experiment:
    def __init__(self, sandbox: LocalSandbox) -> None:
        self.trees = Trees(sandbox, timeout=120)
        self.spec = {"work": [sandbox.python, "benchmarks/bench_work.py"]}

    def load(self, baseline: bytes, candidate: bytes | None) -> None:
        self.trees.load_baseline(baseline)
        if candidate is None:
            self.trees.reset_candidate()
            return
        # The candidate tree: baseline files replaced by the candidate's, via a plain copy.
        self.trees.reset_candidate()
        staged = self.trees.sandbox.stage("cand.tar", candidate)
        self.trees.sandbox.exec(["tar", "-xf", staged, "-C", self.trees.b], timeout=60)

    def calibration(self, config: GateConfig, metric: str) -> Calibration:
        cal = calibrate(self.trees, self.spec, config)
        setting = cal.benchmarks["work"]
        forced = BenchSetting(**{**setting.model_dump(), "metric": metric})
        return cal.model_copy(update={"benchmarks": {"work": forced}})

    def judge(self, cal: Calibration, config: GateConfig, seed: int) -> tuple[bool, list, list]:
        result = measure(self.trees, self.spec, cal, config, seed, lambda _m: None)
        (verdict,) = [v for v in result.verdicts if v.name == "work"]
        return result.improved, verdict.baseline, verdict.candidate


def rates(name: str, outcomes: list[bool]) -> str:
    n = len(outcomes)
    return f"{name}: {sum(outcomes)}/{n} = {100 * sum(outcomes) / max(n, 1):.1f} %"


def run_time_series(exp: Experiment, cal: Calibration, config: GateConfig, count: int,
                    label: str) -> dict[str, list[bool]]:
    outcomes: dict[str, list[bool]] = {"selfcode": [], "single run > 5 %": [],
                                       "min of runs > 5 %": [], "median 5 %": []}
    ratios = []
    start = time.perf_counter()
    for i in range(count):
        improved, a, b = exp.judge(cal, config, seed=i + 1)
        outcomes["selfcode"].append(improved)
        outcomes["single run > 5 %"].append(single_run_rule(a, b))
        outcomes["min of runs > 5 %"].append(min_of_runs_rule(a, b))
        outcomes["median 5 %"].append(median_rule(a, b))
        ratios.extend(y / x for x, y in zip(a, b, strict=True))
        if (i + 1) % 25 == 0:
            log(f"  {label}: {i + 1}/{count} ({time.perf_counter() - start:.0f}s)")
    log(f"  {label}: median pair ratio over all screen samples {statistics.median(ratios):.3f}")
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aa", type=int, default=200, help="A/A comparisons per gate")
    parser.add_argument("--power", type=int, default=50, help="comparisons per power test")
    parser.add_argument("--quick", action="store_true", help="10 comparisons each")
    args = parser.parse_args()
    if args.quick:
        args.aa = args.power = 10
    config = GateConfig()
    table: list[tuple[str, str, str]] = []
    with LocalSandbox(harness_dir()) as sandbox:
        exp = Experiment(sandbox)
        base = tree(4)

        log("A/A, time gate")
        exp.load(base, None)
        time_cal = exp.calibration(config, "cpu_time")
        log(f"  calibration: CV {time_cal.benchmarks['work'].cv:.2%}, "
            f"delta {time_cal.benchmarks['work'].delta:.2%}")
        aa = run_time_series(exp, time_cal, config, args.aa, "A/A")

        log("A/A, instruction gate")
        instr_cal = exp.calibration(config, "instructions")
        instr_aa = [exp.judge(instr_cal, config, seed=i)[0] for i in range(max(args.aa // 20, 3))]
        counts = [exp.judge(instr_cal, config, seed=99)[1][0] for _ in range(3)]
        log(f"  instruction counts of the same tree, three runs: {counts}")

        log("Power, ~8 % less CPU time")
        # 16 units against 14.6: about 8 % less work once interpreter start-up is counted.
        exp.load(tree(4), tree(2.6))
        power = run_time_series(exp, time_cal, config, args.power, "8 %")

        log("Power, ~3 % fewer instructions")
        exp.load(tree(4), tree(3.5))
        instr_power = []
        for i in range(max(args.power // 10, 3)):
            improved, a, b = exp.judge(instr_cal, config, seed=i)
            instr_power.append(improved)
        log(f"  instruction ratio: {b[0] / a[0]:.4f}")

    for rule in aa:
        table.append((rule, rates("false acceptance", aa[rule]), rates("power", power[rule])))
    print("\nrule                 | A/A false acceptance (time)      | power at ~8 % CPU time",
          file=sys.stderr)
    for rule, fa, pw in table:
        print(f"{rule:20} | {fa:32} | {pw}", file=sys.stderr)
    print(f"\ninstruction gate: {rates('A/A false acceptance', instr_aa)}; "
          f"{rates('power at ~3 %', instr_power)}", file=sys.stderr)
    print("bench_gate done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
