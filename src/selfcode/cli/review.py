"""The history commands: `selfcode runs`, `show RUN[/N]`, `review RUN`, `report RUN`.

Registered on the main app by cli/app.py; each opens the repository's history read-only except
`review`, which records decisions and may rebuild the run's branch (under the lock). Errors go
through `common.errors()`, like every other command's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from selfcode.cli.common import JsonOpt, PathArg, RunArg, err, errors
from selfcode.errors import SelfcodeError

if TYPE_CHECKING:
    from selfcode.git.review import ReviewOutcome
    from selfcode.git.store import GitStore
    from selfcode.history.db import History

review_app = typer.Typer()
out = Console()


class _NoHistory(SelfcodeError):
    pass


@contextmanager
def _repo(path: Path, quiet: bool = False) -> Iterator[tuple[GitStore, History]]:
    """The repository and its history.

    With `quiet`, a repository without any run raises _NoHistory instead of an error.
    """
    from selfcode.git.importer import import_all, runs_in_git
    from selfcode.git.store import GitStore
    from selfcode.history.db import HISTORY_FILE, History

    store = GitStore(path)
    try:
        db = store.state_dir() / HISTORY_FILE
        if not db.exists() and not runs_in_git(store):
            if quiet:
                raise _NoHistory("no runs")
            raise SelfcodeError("This repository has no selfcode runs yet; start one with "
                                "`selfcode improve`.")
        with History(db) as history:
            import_all(store, history)  # runs fetched from elsewhere, known only to git
            yield store, history
    finally:
        store.close()


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@review_app.command()
def runs(path: PathArg = Path("."), json_out: JsonOpt = False) -> None:
    """List the runs of a repository: date, target, goal, candidates, accepted, speedup, cost.

    Ends with the size of the repository's history database (its file and write-ahead log,
    under the state dir); with --json, every run's entry carries it as `history_bytes`.
    """
    with errors():
        from rich.filesize import decimal

        from selfcode.history.views import load_run
        from selfcode.report.console import runs_table

        size, where = 0, ""
        try:
            with _repo(path, quiet=True) as (store, history):
                views = [load_run(history, r.id, store) for r in history.runs()]
                size, where = history.file_bytes(), str(history.path)
        except _NoHistory:
            views = []
        if not views and not json_out:
            err.print("No selfcode runs in this repository yet; start one with "
                      "`selfcode improve`.", markup=False)
            return
        if json_out:
            # One line of figures per run: the candidates and their tree are `show`'s.
            _dump([v.model_dump(exclude={"candidates", "tree"})
                   | {"candidates": len(v.candidates), "on_branch": len(v.on_branch),
                      "history_bytes": size} for v in views])
        else:
            out.print(runs_table(views))
            out.print(f"history: {decimal(size)} in {where}", highlight=False, markup=False,
                      soft_wrap=True)


@review_app.command()
def show(
    spec: Annotated[str, typer.Argument(metavar="RUN[/N]", help="A run, or one candidate.")],
    path: PathArg = Path("."),
    json_out: JsonOpt = False,
) -> None:
    """Show a run, or one candidate: diff, rationale, verdict, benchmarks, tests and cost.

    A run's candidates are also shown as a tree: each under the candidate it was built on
    (the baseline at the root), the lineage the run's branch ends in marked; --json has it
    under `tree`, and each candidate its `parent`.
    """
    with errors():
        from selfcode.history.views import load_run, resolve_run, split_spec
        from selfcode.report.console import print_candidate, print_run

        with _repo(path) as (store, history):
            run_spec, n = split_spec(spec) if "/" in spec else (spec, None)
            view = load_run(history, resolve_run(history, run_spec), store)
            cand = view.candidate(n) if n is not None else None
        if json_out:
            _dump(cand.model_dump() if cand else view.model_dump())
        elif cand:
            print_candidate(out, view, cand)
        else:
            print_run(out, view)


@review_app.command()
def review(
    run: RunArg,
    path: PathArg = Path("."),
    approve: Annotated[list[int] | None, typer.Option(
        "--approve", help="Approve candidate N (repeatable); no prompts.")] = None,
    reject: Annotated[list[int] | None, typer.Option(
        "--reject", help="Reject candidate N (repeatable): it leaves the branch.")] = None,
    note: Annotated[str, typer.Option(help="A note recorded with the decisions.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Step through a run's accepted candidates and approve or reject each.

    A rejected candidate is removed from the branch selfcode/<run-id> by rebuilding the
    branch without it (no revert commits). Decisions are kept in the history and in the git
    notes. Without --approve/--reject, asks for each candidate on the terminal.
    """
    with errors():
        from selfcode.config import load_settings
        from selfcode.git.commits import git_config_of
        from selfcode.git.review import apply_review, reviewer_name
        from selfcode.history.views import load_run, resolve_run

        with _repo(path) as (store, history):
            run_id = resolve_run(history, run)
            decisions = {n: "approved" for n in approve or []}
            decisions.update({n: "rejected" for n in reject or []})
            if not decisions:
                decisions = _ask(load_run(history, run_id, store))
            outcome = apply_review(store, history, run_id, decisions, reviewer_name(store),
                                   git_config_of(load_settings(store.root)), note)
        _print_outcome(outcome, json_out)


def _print_outcome(outcome: ReviewOutcome, json_out: bool) -> None:
    if json_out:
        _dump(outcome.model_dump())
        return
    for n, decision in sorted(outcome.decisions.items()):
        err.print(f"candidate {n}: {decision}", highlight=False, markup=False)
    head = outcome.branch_head[:10] if outcome.branch_head else "?"
    err.print(f"{outcome.branch} {'rebuilt, now' if outcome.rebuilt else 'unchanged,'} at "
              f"{head} with candidates {outcome.on_branch or 'none'}.", highlight=False,
              markup=False)
    for warning in outcome.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _interactive() -> bool:
    return sys.stdin.isatty()


def _ask(view: Any) -> dict[int, str]:
    from rich.prompt import Prompt

    from selfcode.report.console import print_candidate

    if not _interactive():
        raise SelfcodeError("Reviewing needs a terminal; without one, pass --approve N "
                            "and --reject N.")
    decisions: dict[int, str] = {}
    for cand in [c for c in view.candidates if c.status == "accepted"]:
        print_candidate(out, view, cand)
        answer = Prompt.ask(f"candidate {cand.n}: [a]pprove, [r]eject, [s]kip, [q]uit",
                            choices=["a", "r", "s", "q"], default="s", console=err)
        if answer == "q":
            break
        if answer in ("a", "r"):
            decisions[cand.n] = "approved" if answer == "a" else "rejected"
    if not decisions:
        raise SelfcodeError("No decision was made; nothing changed.")
    return decisions


@review_app.command()
def report(
    run: RunArg,
    path: PathArg = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="md (a pull-request body) or html.")] = "md",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """A self-contained report of a run: summary, candidates, diffs and benchmark plots."""
    with errors():
        from selfcode.history.views import load_run, resolve_run
        from selfcode.report.html import render_html
        from selfcode.report.markdown import render_markdown

        if fmt not in ("md", "html"):
            raise SelfcodeError(f"--format must be md or html, not {fmt!r}.")
        from selfcode.prompt.profile import recorded_profile

        with _repo(path) as (store, history):
            view = load_run(history, resolve_run(history, run), store)
            profile = recorded_profile(history, view.run_id)
        text = render_html(view, profile) if fmt == "html" else render_markdown(
            view, profile=profile)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, "utf-8")
            err.print(f"Wrote {output}.", highlight=False, markup=False)
