"""Rendering for people: live progress on stderr, verdicts and run summaries as rich tables."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.status import Status
from rich.table import Table

from selfcode.gate import Verdict

_STATUS_STYLE = {"accepted": "bold green", "rejected": "red", "malformed": "yellow",
                 "unusable": "yellow", "abandoned": "dim"}


class ConsoleObserver:
    """Shows what the run is doing on stderr; stdout stays free for data."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.spend = ""
        self.n: int | None = None
        self._status: Status | None = None

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            self._status = self.console.status("starting")
            self._status.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def _show_phase(self, message: str) -> None:
        where = f"candidate {self.n}: " if self.n else ""
        spend = f"  [dim]{self.spend}[/]" if self.spend else ""
        if self._status is not None:
            self._status.update(f"{where}{message}{spend}")
        else:
            self.console.print(f"[dim]· {where}{message}[/]", highlight=False)

    def event(self, kind: str, message: str, **data: Any) -> None:
        if "n" in data:
            self.n = int(data["n"])
        if kind == "phase":
            self._show_phase(message)
        elif kind == "spend":
            self.spend = f"spent {message}, {data.get('tokens', 0)} tokens"
        elif kind == "repair":
            first = message.strip().splitlines()[0] if message.strip() else message
            self.console.print(f"  [yellow]↻ candidate {self.n}: reply unusable, asking for a "
                               f"repair[/] [dim]({first[:120]})[/]", highlight=False)
        elif kind == "candidate":
            self._print_candidate(message, data.get("reasons") or [], data.get("verdict"))
        elif kind == "warning":
            self.console.print(f"[bold yellow]warning:[/] {message}", highlight=False)
        elif kind == "retry":
            self.console.print(f"  [yellow]retrying:[/] {message}", highlight=False)
        else:
            self.console.print(message, highlight=False)

    def _print_candidate(self, status: str, reasons: list[str],
                         verdict: dict[str, Any] | None) -> None:
        style = _STATUS_STYLE.get(status, "")
        line = f"[{style}]candidate {self.n}: {status}[/]"
        if verdict:
            speedup = Verdict.model_validate(verdict).speedup()
            if speedup and status == "accepted":
                line += f" — {speedup:.2f}x faster"
        self.console.print(line, highlight=False)
        for reason in reasons[:4]:
            self.console.print(f"    [dim]{reason[:300]}[/]", highlight=False)


def verdict_table(verdict: Verdict) -> Table:
    table = Table(title="benchmarks (CPU seconds, paired)", title_justify="left")
    for column in ("benchmark", "baseline median", "candidate median", "ratio", "p", "verdict"):
        table.add_column(column)
    for bench in verdict.benchmarks:
        def median(xs: list[float]) -> str:
            return f"{sorted(xs)[len(xs) // 2]:.4f}" if xs else "-"
        table.add_row(bench.name, median(bench.baseline), median(bench.candidate),
                      f"{bench.ratio:.3f}" if bench.ratio else "-",
                      f"{bench.p_value:.2g}" if bench.p_value is not None else "-",
                      bench.verdict)
    return table


def print_verdict(console: Console, verdict: Verdict) -> None:
    style = _STATUS_STYLE.get(verdict.status, "")
    console.print(f"[{style}]{verdict.status.upper()}[/] (goal: {verdict.goal}, "
                  f"sandbox: {verdict.sandbox})", highlight=False)
    for reason in verdict.reasons:
        console.print(f"  - {reason}", highlight=False)
    if verdict.tests:
        t = verdict.tests
        console.print(f"tests: baseline {t.baseline.passed} passed / {t.baseline.failed} failed"
                      f" / {t.baseline.skipped} skipped; candidate {t.candidate.passed} / "
                      f"{t.candidate.failed} / {t.candidate.skipped}", highlight=False)
    if verdict.benchmarks:
        console.print(verdict_table(verdict))
    console.print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in verdict.timings.items()),
                  highlight=False)
