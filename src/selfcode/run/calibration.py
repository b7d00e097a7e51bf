"""`selfcode bench --aa N`: how noisy are a repository's benchmarks on this machine?

The unchanged tree is measured against itself in the sandbox; the spread of those A/A pairs
is the noise any claimed speedup has to beat.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from selfcode.config import Settings
from selfcode.errors import ConfigError
from selfcode.gate.judge import Judge, discover_benchmarks
from selfcode.gate.measure import Calibration
from selfcode.git.store import GitStore
from selfcode.history.db import new_run_id
from selfcode.run.events import Observer
from selfcode.sandbox.factory import baseline_dependencies, open_sandbox
from selfcode.sandbox.trees import Trees


class NoiseReport(BaseModel):
    repo: str
    commit: str
    sandbox: str
    pairs: int
    calibration: Calibration
    instructions_repeatable: dict[str, bool]
    wall_s: float


def aa_calibration(path: Path, settings: Settings, pairs: int, observer: Observer) -> NoiseReport:
    store = GitStore(path)
    started = time.perf_counter()
    run_id = "bench-" + new_run_id()
    deps = baseline_dependencies(settings.sandbox, store, "HEAD")
    with open_sandbox(settings.sandbox, store.state_dir(), run_id, deps, observer) as sandbox:
        trees = Trees(sandbox, settings.sandbox.timeout)
        benchmarks = discover_benchmarks(store.list_files("HEAD"), settings.gate, sandbox.python)
        if not benchmarks:
            raise ConfigError("This repository declares no benchmarks: add benchmarks/bench_*.py "
                              "scripts or [tool.selfcode.benchmarks] commands.")
        gate = settings.gate.model_copy(update={"judge": "speed"})
        judge = Judge(trees, gate, benchmarks, progress=lambda m: observer.event("phase", m))
        trees.load_baseline(store.tracked_tar("HEAD"))
        calibration = judge.calibrate(pairs)
        assert calibration is not None
        repeatable: dict[str, bool] = {}
        if calibration.valgrind:
            observer.event("phase", "checking that instruction counts repeat")
            run = trees.run_benchmarks(benchmarks, 1, seed=1, metric="instructions", aa=True)
            repeatable = {b.name: bool(b.a) and b.a == b.b for b in run.benchmarks}
    return NoiseReport(repo=str(store.root), commit=store.head_commit(), sandbox=sandbox.kind,
                       pairs=pairs, calibration=calibration, instructions_repeatable=repeatable,
                       wall_s=round(time.perf_counter() - started, 2))
