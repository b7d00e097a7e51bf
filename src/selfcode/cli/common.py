"""What every command shares: the option types, and the one place errors are printed.

Every command runs its work inside `errors()`, so a failure looks and exits the same whatever
command hit it: an expected failure (`SelfcodeError`) is its own one sentence and its own
exit code, Ctrl-C is 130, and anything else is reported as the bug it is, exit 2 (no verdict,
as `eval` promises: 1 means rejected). Messages are printed as plain text, never as Rich
markup: they quote config keys such as `[tool.selfcode.gate]` and user paths, which markup
would eat or choke on.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from typer.exceptions import TyperException

from selfcode.errors import SelfcodeError

err = Console(stderr=True)

INTERRUPTED = "Interrupted."
# A bug gives no verdict: 2, like every other "no verdict" (eval keeps 1 for "rejected").
BUG_EXIT = 2
INTERRUPT_EXIT = 130
# Where a bug report goes when the installed metadata names no tracker.
FALLBACK_TRACKER = "the issue tracker of selfcode's source repository"


class Strategy(StrEnum):
    """How the search picks each candidate's parent (search/parents.py)."""

    greedy = "greedy"
    archive = "archive"


class ExecutorKind(StrEnum):
    """Where candidates are judged (executors/)."""

    local = "local"
    ray = "ray"


class JudgeMode(StrEnum):
    """How candidates are judged; the verdict JSON keeps calling this field `goal`."""

    speed = "speed"
    fix = "fix"
    metric = "metric"
    auto = "auto"


# Rich markup: `\\[` keeps the config table names visible in --help.
JUDGES_HELP = """How candidates are judged (--judge; config \\[tool.selfcode.gate] judge, or
SELFCODE_GATE_JUDGE):

[bold]speed[/]: accepted when a benchmark gets faster by the gate's rule (instruction counts, or
CPU time at p < alpha) with the same output, and every test that passed still passes; e.g. a
sieve replacing trial division that makes bench_primes 3x faster.

[bold]fix[/]: accepted when at least one failing test passes and none newly fails; e.g. the
off-by-one a red test points at, corrected.

[bold]metric[/]: accepted when the number printed by \\[tool.selfcode.gate] metric_command
improves in metric_direction (max or min), tests still passing; e.g. `python tools/score.py`
printing 12 where the baseline printed 10.

[bold]auto[/] (the default): speed when the repository has benchmarks, fix otherwise.

The verdict JSON keeps the field name `goal` for the judge mode it was judged by."""

JUDGE_HELP = "How candidates are judged: speed, fix, metric or auto (see above)."

PathArg = Annotated[Path, typer.Argument(help="A directory inside the target git repository.")]
RunArg = Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or 'latest'.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SandboxOpt = Annotated[
    str | None,
    typer.Option("--sandbox", help="docker (default, isolated) or local (no isolation!)."),
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds each command in the sandbox may run.")
]
JudgeOpt = Annotated[
    JudgeMode | None, typer.Option("--judge", case_sensitive=False, help=JUDGE_HELP)
]

# The options of `improve`: declared here, as the shared ones are, so that the command's
# signature stays a list of names.
IterationsOpt = Annotated[int | None, typer.Option(help="Candidates to try.", min=1)]
ModelOpt = Annotated[str | None, typer.Option(
    help="Model name at the endpoint; a comma-separated list (a,b,c) lets a cost-aware bandit "
         "choose the model for each candidate.")]
EndpointOpt = Annotated[list[str] | None, typer.Option(
    "--endpoint", metavar="MODEL=URL",
    help="Where one model of --model is asked, when not at --base-url (repeatable; "
         "SELFCODE_ENDPOINTS='a=URL b=URL').")]
BaseUrlOpt = Annotated[str | None, typer.Option(
    help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 for Ollama.")]
BudgetOpt = Annotated[float | None, typer.Option(help="Stop once this much is spent.")]
ReplayOpt = Annotated[Path | None, typer.Option(
    help="Replay model replies from a JSONL file instead of calling an endpoint.")]
SelfOpt = Annotated[bool, typer.Option("--self", help="Improve selfcode's own source: a git "
                                       "checkout, SELFCODE_SOURCE or the editable install's.")]
AllowJudgeEditsOpt = Annotated[bool, typer.Option(
    "--allow-judge-edits",
    help="Let candidates edit the judge's own files ([tool.selfcode] judge_paths, for selfcode "
         "src/selfcode/gate/**). Only with a canary corpus: each accepted candidate's own judge "
         "must then reproduce every known verdict of it before it is accepted.")]
CiOpt = Annotated[bool, typer.Option("--ci", help="Unattended: no colour, writes report.md and "
                                     "summary.json to --out; exit 0 improved, 3 none, 2 error.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Where --ci writes its files.")]
ResumeOpt = Annotated[str | None, typer.Option(
    "--resume", metavar="RUN", help="Continue an interrupted run where it stopped.")]
MaxTokensOpt = Annotated[int | None, typer.Option(
    "--max-tokens", help="Stop once the run has used this many tokens.")]
JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, max=16,
    help="Candidates in flight at once: model requests overlap and candidates are judged in "
         "that many sandboxes; CPU-time measurements still take turns (one timing slot). "
         "Default: the machine's cores, up to 4, with Docker; 1 with --sandbox local or "
         "--replay.")]
StrategyOpt = Annotated[Strategy | None, typer.Option(
    "--strategy", case_sensitive=False,
    help="How each candidate's parent is chosen: 'archive' (default) draws it from every "
         "accepted candidate, favouring high scores and nodes with few children yet "
         "(Darwin Gödel Machine); 'greedy' always builds on the best. --replay defaults to "
         "greedy.")]
ExecutorOpt = Annotated[ExecutorKind | None, typer.Option(
    "--executor", case_sensitive=False,
    help="Where candidates are judged: 'local' (default) in this machine's sandboxes, 'ray' on "
         "the nodes of a Ray cluster, each in its own Docker engine (pip install "
         "'selfcode[ray]'; every node started with --resources '{\"selfcode_timing\": 1}').")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", metavar="HOST:PORT",
    help="The Ray cluster's head for --executor ray (default: the cluster on this machine).")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", help="Seed of the archive's parent draws and of the model choice (default 0).")]
MaxMinutesOpt = Annotated[float | None, typer.Option(
    "--max-minutes", help="Stop once the run has taken this long.")]
EditFormatOpt = Annotated[str | None, typer.Option(
    "--edit-format", help="How the model writes edits: auto, search-replace, udiff, whole.")]
RecordOpt = Annotated[Path | None, typer.Option(
    "--record", help="Append every model exchange to this JSONL file; --replay plays it back.")]


def print_error(message: str) -> None:
    """One error line on stderr; the message is never parsed as markup."""
    err.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)


def _tracker() -> str:
    try:
        urls = metadata.metadata("selfcode").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "tracker", "bugs"):
            return str(url).strip()
    return FALLBACK_TRACKER


def bug_message(exc: BaseException) -> str:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (f"selfcode hit an unexpected error ({what}); this is a bug in selfcode, please "
            f"report it with the command you ran to {_tracker()} (SELFCODE_DEBUG=1 prints "
            "the traceback).")


@contextmanager
def errors(interrupted: str = INTERRUPTED) -> Iterator[None]:
    """Every command's error path: one sentence on stderr and the matching exit code.

    `interrupted` is what Ctrl-C prints: a run says what was kept, other commands just stop.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, TyperException):
        raise  # typer's own exits and usage errors already carry their code and message
    except SelfcodeError as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print(Text(interrupted, style="yellow"), highlight=False, soft_wrap=True)
        raise typer.Exit(INTERRUPT_EXIT) from None
    except Exception as exc:
        if os.environ.get("SELFCODE_DEBUG"):
            traceback.print_exc()
        print_error(bug_message(exc))
        raise typer.Exit(BUG_EXIT) from None
