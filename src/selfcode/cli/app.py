"""The command line: parse options, build the configuration, call one function, render.

Progress and chatter go to stderr; data (`--json`) goes to stdout. Every command runs inside
`common.errors()`: expected failures are one sentence and their exit code (2), Ctrl-C is 130,
a bug is one sentence saying so, exit 1; nothing prints a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from selfcode import __version__
from selfcode.cli.common import (
    JUDGES_HELP,
    AllowJudgeEditsOpt,
    BaseUrlOpt,
    BudgetOpt,
    CiOpt,
    EditFormatOpt,
    EndpointOpt,
    ExecutorOpt,
    IterationsOpt,
    JobsOpt,
    JsonOpt,
    JudgeMode,
    JudgeOpt,
    MaxMinutesOpt,
    MaxTokensOpt,
    ModelOpt,
    OutOpt,
    PathArg,
    RayAddressOpt,
    RecordOpt,
    ReplayOpt,
    ResumeOpt,
    SandboxOpt,
    SeedOpt,
    SelfOpt,
    StrategyOpt,
    TimeoutOpt,
    err,
    errors,
)
from selfcode.cli.review import review_app
from selfcode.cli.sandbox import sandbox_app
from selfcode.config import load_settings
from selfcode.errors import ConfigError, SelfcodeError

app = typer.Typer(
    help="Improve a Python repository with an LLM; commit only patches a sandboxed gate proves "
    "better.\n\nStart with `selfcode demo`, then `selfcode doctor`, then `selfcode improve`.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(review_app)
RUN_INTERRUPTED = ("Interrupted. The current candidate was discarded; everything before it "
                   "is recorded and your checkout is untouched.")
GoalOpt = Annotated[str | None, typer.Option(
    "--goal", help="What the model is asked to do, in words (config: \\[tool.selfcode.agent] "
    "goal); it does not change how candidates are judged, --judge does.")]


def _judge_of(judge: JudgeMode | None) -> str | None:
    return judge.value if judge is not None else None


def _check_goal(goal: str | None) -> None:
    # Before --judge existed, `--goal speed` chose the judge; the same words now would quietly
    # become the model's instructions instead.
    if goal is not None and goal.strip().lower() in {m.value for m in JudgeMode}:
        raise ConfigError(f"--goal is now only what the model is asked to do; to choose how "
                          f"candidates are judged, use --judge {goal.strip().lower()}.")


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


IMPROVE_HELP = f"""Ask the model for patches, judge each in the sandbox, commit the proven
ones to a branch.

Work happens on a new branch selfcode/<run-id> in a separate worktree: your checkout, index
and current branch are never touched. --goal is what the model is asked to do; --judge is how
its candidates are judged.

{JUDGES_HELP}"""

EVAL_HELP = f"""Judge one patch with the same gate as `improve`, against HEAD; never commits.

Exit 0 accepted, 1 rejected, 2 unusable input or infrastructure error.

{JUDGES_HELP}"""


@app.command(help=IMPROVE_HELP)
def improve(
    path: PathArg = Path("."),
    goal: GoalOpt = None,
    judge: JudgeOpt = None,
    iterations: IterationsOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    endpoint: EndpointOpt = None,
    sandbox: SandboxOpt = None,
    timeout: TimeoutOpt = None,
    budget_usd: BudgetOpt = None,
    replay: ReplayOpt = None,
    self_: SelfOpt = False,
    allow_judge_edits: AllowJudgeEditsOpt = False,
    json_out: JsonOpt = False,
    ci: CiOpt = False,
    out: OutOpt = Path("."),
    resume: ResumeOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_minutes: MaxMinutesOpt = None,
    edit_format: EditFormatOpt = None,
    record: RecordOpt = None,
    jobs: JobsOpt = None,
    strategy: StrategyOpt = None,
    seed: SeedOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Run the loop (help: IMPROVE_HELP, which shares the judges' description with eval)."""
    with errors(RUN_INTERRUPTED):
        from selfcode.report.console import ConsoleObserver
        from selfcode.resources import self_source
        from selfcode.run.workflows import improve as run_improve
        from selfcode.run.workflows import resume_settings

        console = Console(stderr=True, no_color=True, force_terminal=False) if ci else err
        _check_goal(goal)
        if self_:
            path = self_source()
        overrides = _overrides(
            agent__goal=goal, agent__iterations=iterations,
            agent__budget_usd=budget_usd, llm__model=model, llm__base_url=base_url,
            llm__endpoints=endpoint or None,
            llm__replay=replay, sandbox__backend=sandbox, sandbox__timeout=timeout,
            gate__judge=_judge_of(judge), agent__max_tokens_total=max_tokens,
            agent__max_minutes=max_minutes, llm__edit_format=edit_format, llm__record=record,
            gate__allow_judge_edits=allow_judge_edits or None,
            agent__jobs=jobs, agent__strategy=strategy.value if strategy else None,
            agent__seed=seed, executor__kind=executor.value if executor else None,
            executor__ray_address=ray_address,
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
    from selfcode.report.units import fmt_cost

    cost = fmt_cost(summary["cost_usd"], summary["cost_known"])
    err.print(f"\n[bold]{summary['accepted']} of {summary['candidates']} candidates accepted"
              f"{speed}[/]; {summary['tokens']} tokens, {cost}, {summary['wall_s']:.1f}s. "
              f"Stopped: {escape(str(summary['stop_reason']))}.", highlight=False)
    if summary.get("aa_sentinels"):
        err.print(f"A/A sentinels: {summary['aa_false_accepts']} of {summary['aa_sentinels']} "
                  "judged faster (the run's observed false-acceptance rate).", highlight=False)
    if summary["commits"]:
        err.print(f"Review: git log -p {summary['base_commit'][:10]}..{summary['branch']}",
                  highlight=False, markup=False)
    elif summary.get("branch_removed"):
        err.print(f"No improvement; branch {summary['branch']} removed (its candidates stay: "
                  f"selfcode show {summary['run_id']}).", highlight=False, markup=False)


@app.command("eval", help=EVAL_HELP)
def eval_(
    path: PathArg = Path("."),
    patch: Annotated[Path, typer.Option("--patch", help="Unified diff (git diff output); "
                                        "'-' reads stdin.")] = Path("-"),
    judge: JudgeOpt = None,
    sandbox: SandboxOpt = None,
    timeout: TimeoutOpt = None,
    allow_judge_edits: AllowJudgeEditsOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Judge one patch (help: EVAL_HELP)."""
    started = time.perf_counter()  # the verdict's timings count from here
    with errors():
        from selfcode.report.console import ConsoleObserver, print_verdict
        from selfcode.run.workflows import eval_patch

        try:
            diff = sys.stdin.read() if str(patch) == "-" else patch.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SelfcodeError(f"Cannot read the patch {patch}: {exc}.") from exc
        settings = load_settings(path, _overrides(sandbox__backend=sandbox,
                                                  sandbox__timeout=timeout,
                                                  gate__judge=_judge_of(judge),
                                                  gate__allow_judge_edits=allow_judge_edits
                                                  or None))
        with ConsoleObserver(err) as observer:
            verdict = eval_patch(path, diff, settings, observer, started=started)
        if json_out:
            print(verdict.model_dump_json(indent=2))
        else:
            print_verdict(err, verdict)
        raise typer.Exit({"accepted": 0, "rejected": 1}.get(verdict.status, 2))


@app.command()
def demo(
    sandbox: SandboxOpt = None,
    self_: Annotated[bool, typer.Option(
        "--self", help="Improve a copy of selfcode's own source instead (needs its checkout): "
        "a speedup of its judge is promoted only after the candidate's own judge passes the "
        "canary corpus, and a judge-weakening candidate is stopped by it. A few minutes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole loop on a copy of a small example repository, with replayed model replies.

    No API key needed. Uses Docker when an engine answers, the local sandbox otherwise.
    """
    with errors():
        from selfcode.report.console import ConsoleObserver
        from selfcode.run.workflows import improve as run_improve

        backend = sandbox or _best_backend()
        from selfcode.cli.demo import demo_repo, print_candidates

        repo, replay, overrides = demo_repo(self_, backend)
        settings = load_settings(repo, _overrides(
            llm__replay=replay, llm__model="replay", sandbox__backend=backend, **overrides))
        with ConsoleObserver(err) as observer:
            summary = run_improve(repo, settings, observer)
        _print_summary(summary.model_dump(), json_out)
        if self_ and not json_out:
            print_candidates(repo, summary.run_id)
        if not json_out:
            err.print(f"The demo repository stays at {repo} for you to inspect.",
                      highlight=False, markup=False)


def _best_backend() -> str:
    from selfcode.sandbox.docker import docker_available

    reason = docker_available()
    if reason is None:
        return "docker"
    err.print(f"[yellow]No Docker engine ({escape(reason)}); using the local sandbox.[/]",
              highlight=False)
    return "local"


DOCTOR_HELP = """Check that `selfcode improve` will work here, before any model is paid.

The machine (git, Python, the Docker engine and base image), the model endpoint (a one-token
request), and the repository as a run sees it: HEAD, its benchmarks committed, its dependency
declarations; with --executor ray, the cluster and each of its live nodes (its Docker engine,
the run's image there or buildable from the shipped wheels); then HEAD in the sandbox: install,
the tests once, each benchmark's metric, and an estimate of the time per candidate. Takes tens
of seconds; progress on stderr.

Exit 0 when everything improve needs works, 1 when a check failed (each says the next step),
2 for unusable input (no git repository, a configuration that does not load)."""


@app.command(help=DOCTOR_HELP)
def doctor(
    json_out: JsonOpt = False,
    path: PathArg = Path("."),
    profile: Annotated[bool, typer.Option(
        "--profile", help="Also profile the benchmarks in the sandbox and print where their "
        "time goes: the functions selfcode will aim the model at.")] = False,
    sandbox: SandboxOpt = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    endpoint: EndpointOpt = None,
    timeout: TimeoutOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Check that improve will work (help: DOCTOR_HELP)."""
    with errors():
        from selfcode.doctor import diagnose
        from selfcode.prompt.profile import hotspot_text
        from selfcode.report.console import ConsoleObserver

        overrides = _overrides(llm__base_url=base_url, llm__model=model,
                               llm__endpoints=endpoint or None,
                               sandbox__backend=sandbox, sandbox__timeout=timeout,
                               executor__kind=executor.value if executor else None,
                               executor__ray_address=ray_address)
        with ConsoleObserver(err) as observer:
            result = diagnose(path, overrides, observer, report=_print_check, profile=profile)
        if json_out:
            print(result.model_dump_json(indent=2))
        elif result.profile is not None:
            print(hotspot_text(result.profile))
        failed = [c.name for c in result.checks if c.failed]
        err.print("Ready: selfcode improve has what it needs." if not failed else
                  f"Not ready: {len(failed)} check(s) failed ({', '.join(failed)}); fix "
                  "them as said above and run selfcode doctor again.",
                  highlight=False, markup=False)
        raise typer.Exit(result.exit_code)


def _print_check(check: Any) -> None:
    mark = ("[green]ok[/]  " if check.ok else "[red]fail[/]" if check.required
            else "[yellow]warn[/]")
    err.print(f"{mark} {escape(check.name)}: {escape(check.detail)}", highlight=False)


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
    with errors():
        from selfcode.report.console import ConsoleObserver
        from selfcode.report.noise import print_noise
        from selfcode.run.calibration import aa_calibration

        settings = load_settings(path, _overrides(sandbox__backend=sandbox,
                                                  sandbox__timeout=timeout))
        with ConsoleObserver(err) as observer:
            report = aa_calibration(path, settings, aa, observer)
        if json_out:
            print(report.model_dump_json(indent=2))
        else:
            print_noise(err, report)
