"""The command line: parse options, build the configuration, call one function, render.

Progress and chatter go to stderr; data (`--json`) goes to stdout. Expected failures are one
sentence and exit code 2; Ctrl-C is exit 130; nothing prints a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from selfcode import __version__
from selfcode.cli.review import review_app
from selfcode.config import load_settings
from selfcode.errors import SelfcodeError

app = typer.Typer(
    help="Improve a Python repository with an LLM; commit only patches a sandboxed gate proves "
    "better.\n\nStart with `selfcode demo`, then `selfcode doctor`, then `selfcode improve`.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="Build and inspect the sandbox image.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(review_app)
err = Console(stderr=True)

PathArg = Annotated[Path, typer.Argument(help="A directory inside the target git repository.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SandboxOpt = Annotated[
    str | None,
    typer.Option("--sandbox", help="docker (default, isolated) or local (no isolation!)."),
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds each command in the sandbox may run.")
]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turns expected failures into one sentence and an exit code."""
    try:
        yield
    except SelfcodeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.[/] The current candidate was discarded; everything "
                  "before it is recorded and your checkout is untouched.")
        raise typer.Exit(130) from None


def _overrides(**flat: Any) -> dict[str, Any]:
    """CLI flags → nested config; unset flags are left out so lower layers show through."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        section, field = key.split("__")
        nested.setdefault(section, {})[field] = value
    return nested


def _version(value: bool) -> None:
    if value:
        print(f"selfcode {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """selfcode."""


@app.command()
def improve(
    path: PathArg = Path("."),
    goal: Annotated[str | None, typer.Option(
        help="What to improve, in words; 'speed', 'fix' or 'metric' also choose how "
        "candidates are judged.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Candidates to try.", min=1)] = None,
    model: Annotated[str | None, typer.Option(help="Model name at the endpoint.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. "
                                                 "http://localhost:11434/v1 for Ollama.")] = None,
    sandbox: SandboxOpt = None,
    timeout: TimeoutOpt = None,
    budget_usd: Annotated[float | None, typer.Option(help="Stop once this much is spent.")] = None,
    replay: Annotated[Path | None, typer.Option(help="Replay model replies from a JSONL file "
                                                "instead of calling an endpoint.")] = None,
    self_: Annotated[bool, typer.Option("--self", help="Improve selfcode's own source.")] = False,
    json_out: JsonOpt = False,
    ci: Annotated[bool, typer.Option("--ci", help="Unattended: no colour, writes report.md and "
                                     "summary.json to --out; exit 0 improved, 3 none, 2 error."
                                     )] = False,
    out: Annotated[Path, typer.Option("--out", help="Where --ci writes its files.")] = Path("."),
    resume: Annotated[str | None, typer.Option("--resume", metavar="RUN", help="Continue an "
                                               "interrupted run where it stopped.")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="Stop once the run has used this many tokens.")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop once the run has taken this long.")] = None,
    edit_format: Annotated[str | None, typer.Option(
        "--edit-format", help="How the model writes edits: auto, search-replace, udiff, "
        "whole.")] = None,
    record: Annotated[Path | None, typer.Option(
        "--record", help="Append every model exchange to this JSONL file; --replay plays it "
        "back.")] = None,
) -> None:
    """Ask the model for patches, judge each in the sandbox, commit the proven ones to a branch.

    Work happens on a new branch selfcode/<run-id> in a separate worktree: your checkout, index
    and current branch are never touched.
    """
    from selfcode.report.console import ConsoleObserver
    from selfcode.run.workflows import improve as run_improve
    from selfcode.run.workflows import resume_settings

    if self_:
        path = Path(__file__).resolve().parents[3]
    gate_goal = goal if goal in ("speed", "fix", "metric") else None
    console = Console(stderr=True, no_color=True, force_terminal=False) if ci else err
    with _errors():
        overrides = _overrides(
            agent__goal=None if gate_goal else goal, agent__iterations=iterations,
            agent__budget_usd=budget_usd, llm__model=model, llm__base_url=base_url,
            llm__replay=replay, sandbox__backend=sandbox, sandbox__timeout=timeout,
            gate__goal=gate_goal, agent__max_tokens_total=max_tokens,
            agent__max_minutes=max_minutes, llm__edit_format=edit_format, llm__record=record,
        )
        settings = (resume_settings(path, resume, overrides) if resume
                    else load_settings(path, overrides))
        with ConsoleObserver(console) as observer:
            if ci:
                from selfcode.run.ci import run_ci

                code, data = run_ci(path, settings, observer, out, resume=resume)
            else:
                summary = run_improve(path, settings, observer, resume=resume)
    if ci:
        if json_out:
            print(json.dumps(data, indent=2))
        console.print(f"{data['title']}; report in {data['report']} (exit {code}).",
                      markup=False, highlight=False)
        raise typer.Exit(code)
    _print_summary(summary.model_dump(), json_out)


def _print_summary(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print(json.dumps(summary, indent=2))
        return
    speed = (f", best gain {summary['best_speedup']:.2f}x in the judged metric"
             if summary["best_speedup"] else "")
    cost = f"${summary['cost_usd']:.4f}" + ("" if summary["cost_known"] else " (some unpriced)")
    err.print(f"\n[bold]{summary['accepted']} of {summary['candidates']} candidates accepted"
              f"{speed}[/]; {summary['tokens']} tokens, {cost}, {summary['wall_s']:.1f}s. "
              f"Stopped: {summary['stop_reason']}.", highlight=False)
    if summary.get("aa_sentinels"):
        err.print(f"A/A sentinels: {summary['aa_false_accepts']} of {summary['aa_sentinels']} "
                  "judged faster (the run's observed false-acceptance rate).", highlight=False)
    if summary["commits"]:
        err.print(f"Review: git log -p {summary['base_commit'][:10]}..{summary['branch']}",
                  highlight=False)


@app.command("eval")
def eval_(
    path: PathArg = Path("."),
    patch: Annotated[Path, typer.Option("--patch", help="Unified diff (git diff output); "
                                        "'-' reads stdin.")] = Path("-"),
    sandbox: SandboxOpt = None,
    timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Judge one patch with the same gate as `improve`, against HEAD; never commits.

    Exit 0 accepted, 1 rejected, 2 unusable input or infrastructure error.
    """
    from selfcode.report.console import ConsoleObserver, print_verdict
    from selfcode.run.workflows import eval_patch

    with _errors():
        try:
            diff = sys.stdin.read() if str(patch) == "-" else patch.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"Cannot read the patch {patch}: {exc}.")
        settings = load_settings(path, _overrides(sandbox__backend=sandbox,
                                                  sandbox__timeout=timeout))
        with ConsoleObserver(err) as observer:
            verdict = eval_patch(path, diff, settings, observer)
    if json_out:
        print(verdict.model_dump_json(indent=2))
    else:
        print_verdict(err, verdict)
    raise typer.Exit({"accepted": 0, "rejected": 1}.get(verdict.status, 2))


@app.command()
def demo(
    sandbox: SandboxOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole loop on a copy of a small example repository, with replayed model replies.

    No API key needed. Uses Docker when an engine answers, the local sandbox otherwise.
    """
    from selfcode.report.console import ConsoleObserver
    from selfcode.run.workflows import improve as run_improve
    from selfcode.run.workflows import prepare_demo_repo

    with _errors():
        backend = sandbox or _best_backend()
        repo, replay = prepare_demo_repo()
        err.print(f"[bold]selfcode demo[/]: improving a copy of the example repository at {repo}\n"
                  f"The model's replies are [bold]replayed[/] from {replay.name} (no API calls); "
                  f"sandbox: [bold]{backend}[/].", highlight=False)
        settings = load_settings(repo, _overrides(
            llm__replay=replay, llm__model="replay", sandbox__backend=backend,
            agent__iterations=3,
        ))
        with ConsoleObserver(err) as observer:
            summary = run_improve(repo, settings, observer)
    _print_summary(summary.model_dump(), json_out)
    if not json_out:
        err.print(f"The demo repository stays at {repo} for you to inspect.", highlight=False)


def _best_backend() -> str:
    from selfcode.sandbox.docker import docker_available

    reason = docker_available()
    if reason is None:
        return "docker"
    err.print(f"[yellow]No Docker engine ({reason}); using the local sandbox.[/]", highlight=False)
    return "local"


@app.command()
def doctor(json_out: JsonOpt = False, path: PathArg = Path(".")) -> None:
    """Check git, Python, the Docker engine, the base image and the model endpoint."""
    from selfcode.doctor import run_checks

    with _errors():
        checks = run_checks(path)
    if json_out:
        print(json.dumps([c.model_dump() for c in checks], indent=2))
    else:
        for check in checks:
            mark = "[green]ok[/]  " if check.ok else "[red]fail[/]"
            err.print(f"{mark} {check.name}: {check.detail}", highlight=False)
    raise typer.Exit(0 if all(c.ok or not c.required for c in checks) else 1)


@sandbox_app.command("build")
def sandbox_build(path: PathArg = Path(".")) -> None:
    """Build (or find) the sandbox image for a repository, with its dependencies."""
    from selfcode.git.store import GitStore
    from selfcode.sandbox.deps import dependencies_at
    from selfcode.sandbox.image import ensure_image

    with _errors():
        store = GitStore(path)
        settings = load_settings(store.root)
        tag = ensure_image(settings.sandbox, store.state_dir(), dependencies_at(store, "HEAD"),
                           progress=lambda msg: err.print(f"[dim]{msg}[/]", highlight=False))
    print(tag)



@app.command()
def bench(
    path: PathArg = Path("."),
    aa: Annotated[int, typer.Option("--aa", min=3, help="A/A pairs to measure.")] = 20,
    sandbox: SandboxOpt = None,
    timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure the benchmarks' noise: the unchanged code against itself (A/A), in the sandbox.

    Prints, per benchmark, the CPU-time spread of identical runs, the smallest speedup the gate
    would then claim, and whether instruction counts repeat exactly.
    """
    from selfcode.report.console import ConsoleObserver
    from selfcode.report.noise import print_noise
    from selfcode.run.calibration import aa_calibration

    with _errors():
        settings = load_settings(path, _overrides(sandbox__backend=sandbox,
                                                  sandbox__timeout=timeout))
        with ConsoleObserver(err) as observer:
            report = aa_calibration(path, settings, aa, observer)
    if json_out:
        print(report.model_dump_json(indent=2))
    else:
        print_noise(err, report)
