"""Rendering for people: live progress on stderr, verdicts and run summaries as rich tables."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self, assert_never

from rich import box
from rich.console import Console
from rich.markup import escape as esc
from rich.panel import Panel
from rich.status import Status
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from selfcode.gate.verdict import Verdict
from selfcode.history.tree import BASELINE, TreeNode
from selfcode.history.views import CandidateView, RunView, tests_cell
from selfcode.report.markdown import (
    MODEL_COLUMNS,
    ON_BRANCH,
    equivalence_sentence,
    headline,
    model_cells,
    outcome_cell,
    speed_cell,
    tests_sentence,
    tree_label,
    tree_legend,
    usage_sentence,
)
from selfcode.report.plots import series_of, text_plot
from selfcode.report.units import fmt_cost, fmt_sample, fmt_speedup, median
from selfcode.run.events import EventKind

_STATUS_STYLE = {"accepted": "bold green", "rejected": "red", "malformed": "yellow",
                 "unusable": "yellow", "abandoned": "dim", "infrastructure": "magenta"}


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
            self.console.print(f"[dim]· {where}{esc(message)}[/]", highlight=False)

    def event(self, kind: EventKind, message: str, **data: Any) -> None:
        if "n" in data:
            self.n = int(data["n"])
        # One case per kind, checked by assert_never: a new kind must say how it is shown.
        match kind:
            case "phase":
                self._show_phase(message)
            case "spend":  # "$0.0123", "$0" or "unpriced" (report/units.py: fmt_cost)
                spent = f"spent {message}" if message.startswith("$") else message
                self.spend = f"{spent}, {data.get('tokens', 0)} tokens"
            case "repair":
                first = message.strip().splitlines()[0] if message.strip() else message
                self.console.print(f"  [yellow]↻ candidate {self.n}: reply unusable, asking "
                                   f"for a repair[/] [dim]({esc(first[:120])})[/]",
                                   highlight=False)
            case "candidate":
                self._print_candidate(message, data.get("reasons") or [], data.get("verdict"))
            case "warning":
                self.console.print(f"[bold yellow]warning:[/] {esc(message)}", highlight=False)
            case "retry":
                self.console.print(f"  [yellow]retrying:[/] {esc(message)}", highlight=False)
            case "start" | "note":
                self.console.print(message, highlight=False, markup=False)
            case _:
                assert_never(kind)

    def _print_candidate(self, status: str, reasons: list[str],
                         verdict: dict[str, Any] | None) -> None:
        style = _STATUS_STYLE.get(status, "default")  # never an empty tag: '[]' is markup
        line = f"[{style}]candidate {self.n}: {status}[/]"
        if verdict and status == "accepted":
            gain = Verdict.model_validate(verdict).gain()
            line += f" — {gain}" if gain else ""
        self.console.print(line, highlight=False)
        for reason in reasons[:4]:
            self.console.print(f"    [dim]{esc(reason[:300])}[/]", highlight=False)


def verdict_table(verdict: Verdict) -> Table:
    table = Table(title="benchmarks (baseline and candidate measured in pairs)",
                  title_justify="left")
    for column in ("benchmark", "metric", "baseline median", "candidate median", "change", "p",
                   "runs", "verdict"):
        table.add_column(column)
    for bench in verdict.benchmarks:
        for s in series_of(bench):
            mb, mc = median(s.baseline), median(s.candidate)
            table.add_row(s.name, s.metric,
                          fmt_sample(s.metric, mb) if mb is not None else "-",
                          fmt_sample(s.metric, mc) if mc is not None else "-",
                          fmt_speedup(s.ratio) if s.ratio else "-",
                          f"{s.p_value:.2g}" if s.p_value is not None else "-",
                          str(len(s.baseline)), s.verdict)
    return table


def print_verdict(console: Console, verdict: Verdict) -> None:
    style = _STATUS_STYLE.get(verdict.status, "")
    console.print(f"[{style}]{verdict.status.upper()}[/] (goal: {verdict.goal}, "
                  f"sandbox: {verdict.sandbox})", highlight=False)
    for reason in verdict.reasons:
        console.print(f"  - {esc(reason)}", highlight=False)
    if verdict.tests:
        t = verdict.tests
        console.print(f"tests: baseline {t.baseline.passed} passed / {t.baseline.failed} failed"
                      f" / {t.baseline.skipped} skipped; candidate {t.candidate.passed} / "
                      f"{t.candidate.failed} / {t.candidate.skipped}", highlight=False)
    if equivalence_sentence(verdict):
        console.print(f"behaviour: {equivalence_sentence(verdict)}", highlight=False, markup=False)
    if verdict.benchmarks:
        console.print(verdict_table(verdict))
    console.print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in verdict.timings.items()),
                  highlight=False)


# -- history: `selfcode runs` and `selfcode show` -----------------------------------------------


def runs_table(views: list[RunView]) -> Table:
    targets = sorted({v.repo for v in views})
    table = Table(title=f"selfcode runs of {', '.join(targets)}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True,
                  expand=True)
    table.add_column("run", no_wrap=True, min_width=20)
    table.add_column("date", no_wrap=True)
    table.add_column("status", no_wrap=True)
    # One line per run: the goal takes the width the other columns leave and is cut with an
    # ellipsis (`show` has it whole), never wrapped a word per line.
    table.add_column("goal", min_width=8, no_wrap=True, overflow="ellipsis", ratio=1)
    for column in ("accepted", "best", "cost"):
        table.add_column(column, no_wrap=True, justify="right")
    for v in views:
        table.add_row(v.run_id, v.started_at[5:16].replace("T", " "), v.status,
                      " ".join(v.goal.split()),
                      f"{v.accepted} of {len(v.candidates)}",
                      f"{v.best_speedup:.2f}x" if v.best_speedup else "-",
                      fmt_cost(v.cost_usd, v.cost_known))
    return table


def print_run(console: Console, view: RunView) -> None:
    """A run: what it was asked, what it found, and a line per candidate."""
    console.print(f"[bold]{esc(headline(view))}[/]", highlight=False)
    console.print(f"run {view.run_id} on {view.repo}; base {view.base_commit[:10]}, branch "
                  f"{view.branch}" + (f" at {view.branch_head[:10]}" if view.branch_head else "")
                  + f"\nmodel {view.model}, {view.sandbox} sandbox, status {view.status}"
                  + (f" ({view.stop_reason})" if view.stop_reason else "")
                  + f"\ngoal: {view.goal}\ncost {fmt_cost(view.cost_usd, view.cost_known)}, "
                  f"{view.tokens} tokens, {view.wall_s:.1f}s", highlight=False, markup=False)
    table = Table(title_justify="left")
    for column in ("#", "status", "change", "speed", "tests p/f/s", "review"):
        table.add_column(column, overflow="fold")
    for c in view.candidates:
        tests = tests_cell(c, missing="-")
        style = _STATUS_STYLE.get(c.status, "")
        table.add_row(str(c.n), f"[{style}]{c.status}[/]", esc(c.title), speed_cell(c), tests,
                      c.review.decision if c.review else "")
    console.print(table)
    if view.candidates:
        console.print(candidate_tree(view))
        console.print(tree_legend(view.branch), style="dim", highlight=False, markup=False)
    if len(view.models) > 1:
        models = Table(title_justify="left")
        for column in MODEL_COLUMNS:
            models.add_column(column, overflow="fold")
        for fig in view.models:
            models.add_row(*(esc(cell) for cell in model_cells(fig)))
        console.print(models)
    console.print(f"[dim]selfcode show {view.run_id}/N for one candidate[/]", highlight=False)


def _tree_text(view: RunView, node: TreeNode) -> Text:
    """A node's line: the candidate's own words as plain text, never markup."""
    text = Text(tree_label(view, node), style=_STATUS_STYLE.get(node.status, ""))
    if node.on_branch and node.n != BASELINE:
        text.append(f"  \u25c6 {ON_BRANCH}", style="bold green")
    return text


def candidate_tree(view: RunView) -> Tree:
    """The run's tree of candidates: the baseline at the root, each candidate under the one
    it was built on, the branch's lineage marked."""
    root = view.tree
    tree = Tree(_tree_text(view, root), guide_style="dim")
    branches: dict[int, Tree] = {BASELINE: tree}
    for _, node in root.walk():
        for child in node.children:
            branches[child.n] = branches[node.n].add(_tree_text(view, child))
    return tree


def print_candidate(console: Console, view: RunView, cand: CandidateView) -> None:
    """One candidate: what changed, why, the evidence, the tests, the cost."""
    style = _STATUS_STYLE.get(cand.status, "")
    console.rule(f"[bold]candidate {cand.n}[/] of run {view.run_id}: [{style}]{cand.status}[/]"
                 f" — {esc(outcome_cell(cand))}")
    console.print(f"[bold]{esc(cand.title)}[/]", highlight=False)
    if cand.rationale.strip():
        console.print(Panel(Text(cand.rationale.strip()), title="why (the model's rationale)",
                            title_align="left"))
    v = cand.verdict
    for reason in cand.reasons:
        console.print(f"[red]- {esc(reason)}[/]", highlight=False)
    if v is not None and v.benchmarks:
        console.print(verdict_table(v))
        for b in v.benchmarks:
            for series in series_of(b):
                console.print(text_plot(series), highlight=False, markup=False)
    console.print(f"tests: {tests_sentence(v)}", highlight=False, markup=False)
    if equivalence_sentence(v):
        console.print(f"behaviour: {equivalence_sentence(v)}", highlight=False, markup=False)
    console.print(f"cost: {usage_sentence(cand)}"
                  + (f"; judged in {v.timings.get('total', 0):.1f}s ({v.sandbox} sandbox)"
                     if v else ""), highlight=False, markup=False)
    where = (f"commit {cand.commit[:10]} on {view.branch}" if cand.on_branch and cand.commit
             else "not on the branch")
    built_on = ("the baseline" if cand.parent == BASELINE else f"candidate {cand.parent}"
                if cand.parent is not None else "an unrecorded commit")
    console.print(f"git: built on {built_on}; {where}; ref {cand.ref or 'none'}"
                  + (f" ({cand.candidate_commit[:10]})" if cand.candidate_commit else ""),
                  highlight=False, markup=False)
    if cand.review:
        console.print(f"review: {cand.review.decision} by {cand.review.reviewer} "
                      f"{cand.review.note}".rstrip(), highlight=False, markup=False)
    if cand.diff:
        console.print(Syntax(cand.diff, "diff", theme="ansi_dark", word_wrap=True))
