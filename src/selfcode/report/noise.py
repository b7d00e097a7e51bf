"""Rendering of `selfcode bench --aa` for people."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from selfcode.run.calibration import NoiseReport


def print_noise(console: Console, report: NoiseReport) -> None:
    table = Table(title=f"A/A noise, {report.pairs} pairs, {report.sandbox} sandbox",
                  title_justify="left")
    for column in ("benchmark", "CPU s", "noise (CV)", "p95 pair ratio", "smallest claim",
                   "judged by", "instructions repeat"):
        table.add_column(column)
    for name, s in report.calibration.benchmarks.items():
        repeat = report.instructions_repeatable.get(name)
        table.add_row(name, f"{s.native_s:.3f}", f"{s.cv:.1%}", f"{s.p95_ratio:.3f}",
                      f"{s.delta:.1%}", s.metric.replace("_", " ") + (f" ({s.note})"
                                                                      if s.note else ""),
                      "-" if repeat is None else ("yes" if repeat else "NO"))
    console.print(table)
    if not report.calibration.valgrind:
        console.print("valgrind is not in the sandbox: only CPU time can be used.")
