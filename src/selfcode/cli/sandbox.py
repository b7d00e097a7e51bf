"""`selfcode sandbox build` and `sandbox prune`: the sandbox image of a repository.

Registered on the main app by cli/app.py; errors go through `common.errors()`, like every other
command's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from selfcode.cli.common import JsonOpt, PathArg, err, errors
from selfcode.config import load_settings

sandbox_app = typer.Typer(help="Build, inspect and prune the sandbox images.",
                          no_args_is_help=True, rich_markup_mode="rich")


@sandbox_app.command("build")
def sandbox_build(path: PathArg = Path(".")) -> None:
    """Build (or find) the sandbox image for a repository, with its dependencies."""
    with errors():
        from selfcode.git.store import GitStore
        from selfcode.sandbox.deps import dependencies_at
        from selfcode.sandbox.image import ensure_image

        store = GitStore(path)
        settings = load_settings(store.root)
        tag = ensure_image(settings.sandbox, store.state_dir(), dependencies_at(store, "HEAD"),
                           progress=lambda msg: err.print(Text(msg, style="dim"),
                                                          highlight=False))
        print(tag)


PRUNE_HELP = "\n\n".join((
    "Remove the sandbox images and wheelhouses no run of this repository needs.",
    "Kept: the image HEAD's dependencies run in (or SELFCODE_IMAGE) and the wheelhouse it is "
    "built from; every image a container uses, running or stopped; untagged images younger "
    "than 10 minutes and wheelhouse downloads touched within them (a build or a download may "
    "be under way).",
    "Removed: this repository's other selfcode-sandbox images and the untagged images its "
    "builds left (those labelled with its state dir), and its other wheelhouses (under the "
    "state dir).",
    "Left alone: images labelled for another repository, and those an older selfcode built "
    "without that label, since this repository cannot know whether they are still needed; "
    "--all removes them too (a repository rebuilds its image on its next run). An image that "
    "is neither tagged nor labelled by selfcode is never touched.",
    "Prints each image or folder, what it frees, and the space freed in all (--json: bytes).",
))


@sandbox_app.command("prune", help=PRUNE_HELP)
def sandbox_prune(
    path: PathArg = Path("."),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be removed and the space freed; remove nothing.")
    ] = False,
    everything: Annotated[bool, typer.Option(
        "--all", help="Also remove other repositories' and unlabelled selfcode images (never "
        "this repository's kept ones, nor any a container uses).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove unneeded sandbox images and wheelhouses (help: PRUNE_HELP)."""
    with errors():
        from selfcode.git.store import GitStore
        from selfcode.sandbox.deps import dependencies_at
        from selfcode.sandbox.prune import prune

        with GitStore(path) as store:
            settings = load_settings(store.root)
            report = prune(settings.sandbox, store.state_dir(), dependencies_at(store, "HEAD"),
                           dry_run=dry_run, everything=everything)
        print(report.model_dump_json(indent=2) if json_out else "\n".join(report.lines()))
