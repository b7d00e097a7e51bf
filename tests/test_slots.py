"""The exclusive timing slot (sandbox/slots.py), with real threads and the real harness."""

import sys
import threading
import time
from collections.abc import Callable

import pytest

from selfcode.resources import harness_dir
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.slots import TimingSlot, process_timing_slot
from selfcode.sandbox.trees import Trees

from repos import tar_of

HOLD = 0.4


def _hold_in_thread(slot: TimingSlot, reason: str, held: threading.Event,
                    release: threading.Event) -> threading.Thread:
    def body() -> None:
        with slot.hold(reason):
            held.set()
            release.wait(10)
    thread = threading.Thread(target=body)
    thread.start()
    assert held.wait(10)
    return thread


def test_the_second_holder_waits_for_the_first_and_its_wait_is_recorded():
    slot = TimingSlot()
    held, release = threading.Event(), threading.Event()
    first = _hold_in_thread(slot, "cpu_time of a", held, release)
    assert slot.holder == "cpu_time of a"
    threading.Timer(HOLD, release.set).start()
    start = time.monotonic()
    with slot.hold("cpu_time of b") as mine:
        assert time.monotonic() - start >= HOLD * 0.9
        assert slot.holder == "cpu_time of b"
    first.join()
    assert mine.waited >= HOLD * 0.9 and slot.waited_seconds >= mine.waited
    assert slot.holds == 2 and slot.holder is None


def test_the_same_thread_may_hold_it_again_without_waiting():
    slot = TimingSlot()
    with slot.hold("outer"), slot.hold("inner") as inner:
        assert inner.waited < 0.1 and slot.holder == "outer"
    assert slot.holder is None


def test_every_trees_without_a_slot_gets_its_own_and_the_process_has_one():
    with LocalSandbox(harness_dir()) as box:
        first, second = Trees(box, timeout=60), Trees(box, timeout=60)
        assert first.timing_slot is not second.timing_slot
        assert Trees(box, 60, process_timing_slot()).timing_slot is process_timing_slot()


BENCH_REPO = {"lib.py": "def work():\n    return sum(range(1000))\n",
              "benchmarks/bench_work.py": "from lib import work\nprint(work())\n"}
SPEC = {"work": [sys.executable, "benchmarks/bench_work.py"]}


@pytest.fixture(scope="module")
def shared_trees():
    slot = TimingSlot()
    with LocalSandbox(harness_dir()) as box:
        trees = Trees(box, timeout=60, timing_slot=slot)
        trees.load_baseline(tar_of(BENCH_REPO))
        trees.reset_candidate()
        yield trees, slot


def _run_while_held(trees: Trees, metric: str) -> float:
    """Seconds a `metric` run of `trees` took while another judge held the slot for HOLD s."""
    held, release = threading.Event(), threading.Event()
    other = _hold_in_thread(trees.timing_slot, "another judge's cpu_time", held, release)
    threading.Timer(HOLD, release.set).start()
    start = time.monotonic()
    trees.run_benchmarks(SPEC, 1, seed=0, metric=metric)
    took = time.monotonic() - start
    other.join()
    return took


def test_cpu_time_runs_wait_for_the_slot(shared_trees):
    trees, slot = shared_trees
    before = slot.waited_seconds
    assert _run_while_held(trees, "cpu_time") >= HOLD * 0.9
    assert slot.waited_seconds - before >= HOLD * 0.9


def _waits_for_a_timing_run(trees: Trees, run: Callable[[], object]) -> bool:
    """Whether `run` (a harness run of another judge) waits while a CPU-time run holds the
    slot: given twice its own time and a second more, it has not finished until released."""
    start = time.monotonic()
    run()
    alone = time.monotonic() - start
    held, release = threading.Event(), threading.Event()
    other = _hold_in_thread(trees.timing_slot, "another judge's cpu_time", held, release)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(2 * alone + 1)
    waited = worker.is_alive()
    release.set()
    other.join()
    worker.join(60)
    assert not worker.is_alive()
    return waited


def test_instruction_counts_wait_for_a_timing_run_of_another_judge(shared_trees):
    """Valgrind beside a timing run loads the cores that run measures."""
    trees, _ = shared_trees
    if not trees.probe().valgrind:
        pytest.skip("valgrind is missing here; instruction counts cannot run")
    assert _waits_for_a_timing_run(
        trees, lambda: trees.run_benchmarks(SPEC, 1, seed=0, metric="instructions"))


def test_every_harness_run_of_another_judge_waits_for_a_timing_run(shared_trees):
    """A candidate's tests (or its install, its equivalence check...) in another sandbox must
    not run while a CPU-time run is measured: their load would be measured into it, and a
    candidate could time that load on purpose."""
    trees, _ = shared_trees
    assert _waits_for_a_timing_run(trees, trees.probe)
    assert _waits_for_a_timing_run(trees, lambda: trees.run_tests("a"))


def test_shared_holders_run_side_by_side_and_a_waiting_timing_run_goes_first():
    slot = TimingSlot()
    held, release = threading.Event(), threading.Event()

    def reader() -> None:
        with slot.share():
            held.set()
            release.wait(10)
    first = threading.Thread(target=reader)
    first.start()
    assert held.wait(10)
    start = time.monotonic()
    with slot.share():  # beside the other shared holder: no wait
        assert time.monotonic() - start < 0.1
    order: list[str] = []

    def timed() -> None:
        with slot.hold("cpu_time"):
            order.append("timed")
    writer = threading.Thread(target=timed)
    writer.start()
    time.sleep(0.1)  # the timing run now waits for the first reader
    def late_reader() -> None:
        with slot.share():
            order.append("late")
    late = threading.Thread(target=late_reader)
    late.start()
    time.sleep(0.1)
    assert order == []
    release.set()
    for thread in (first, writer, late):
        thread.join(10)
    assert order == ["timed", "late"]


def test_the_timing_holder_may_share_and_hold_again_without_waiting():
    slot = TimingSlot()
    with slot.hold("outer"), slot.share(), slot.hold("inner") as inner:
        assert inner.waited < 0.1
    with slot.share(), slot.share():
        pass
    assert slot.holder is None
