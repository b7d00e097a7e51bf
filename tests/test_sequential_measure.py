"""The sequential time rule through gate/measure.py and the real harness (local sandbox)."""

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.measure import BenchSetting, Calibration, measure
from selfcode.resources import harness_dir
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.slots import TimingSlot
from selfcode.sandbox.trees import Trees

from repos import tar_of

LIB = ("def work(n):\n"
       "    wasted = sum(i * i % 7 for i in range(n))\n"
       "    return sum(i * i % 7 for i in range(n))\n")
REPO = {"lib.py": LIB,
        "benchmarks/bench_work.py": "from lib import work\nprint(work(400_000))\n"}
# Half the work, the same printed result: a clear win (about 0.6x with the interpreter's start).
TWICE_AS_FAST = ("--- a/lib.py\n+++ b/lib.py\n@@ -1,3 +1,2 @@\n def work(n):\n"
                 "-    wasted = sum(i * i % 7 for i in range(n))\n"
                 "     return sum(i * i % 7 for i in range(n))\n")
TWICE_AS_SLOW = ("--- a/lib.py\n+++ b/lib.py\n@@ -1,3 +1,4 @@\n def work(n):\n"
                 "     wasted = sum(i * i % 7 for i in range(n))\n"
                 "+    wasted = sum(i * i % 7 for i in range(2 * n))\n"
                 "     return sum(i * i % 7 for i in range(n))\n")


@pytest.fixture(scope="module")
def trees():
    with LocalSandbox(harness_dir()) as box:
        t = Trees(box, timeout=60, timing_slot=TimingSlot())
        t.load_baseline(tar_of(REPO))
        yield t


def _measure(trees: Trees, patch: str):
    applied = trees.apply(patch)
    assert applied.ok, applied.message
    spec = {"work": [trees.sandbox.python, "benchmarks/bench_work.py"]}
    calibration = Calibration(valgrind=False, pairs=6, benchmarks={"work": BenchSetting(
        metric="cpu_time", delta=0.05, cv=0.01, p95_ratio=1.02, native_s=0.1)})
    result = measure(trees, spec, calibration, GateConfig(), seed=1, progress=lambda _m: None)
    (verdict,) = result.verdicts
    return result, verdict


def test_a_clear_win_is_accepted_at_the_first_look_of_the_confirmation(trees):
    holds = trees.timing_slot.holds
    result, verdict = _measure(trees, TWICE_AS_FAST)
    assert result.improved, result.reasons
    assert verdict.verdict == "faster" and verdict.stage == "confirm"
    # The screen's 10 pairs and the first look's 10 fresh ones, of at most 30.
    assert verdict.pairs == 20 and len(verdict.baseline) == 10
    assert {r.resource for r in verdict.resources} == {"cpu", "wall", "rss"}
    # Screen (two runs) and one look, each holding the timing slot.
    assert trees.timing_slot.holds - holds == 3


def test_a_clear_loss_stops_half_way_through_the_screen(trees):
    result, verdict = _measure(trees, TWICE_AS_SLOW)
    assert not result.improved and verdict.stage == "screen"
    assert verdict.pairs == 5 and len(verdict.candidate) == 5
    assert verdict.ratio is not None and verdict.ratio > 1.3
