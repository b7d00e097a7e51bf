"""`selfcode sandbox prune`: the sandbox images and wheelhouses no run of a repository needs.

What the repository needs, and so is kept:
- the image its HEAD's dependencies run in: the tag `ensure_image` would build (same base,
  Dockerfile and declarations), and `SELFCODE_IMAGE` when set; and the wheelhouse that image
  is (or would be) built from;
- every image a container uses, running or stopped (a run's sandbox, its re-check's);
- what may still be under way: an untagged image younger than `MIN_AGE_S` (a build copies from
  its `deps` stage), a wheelhouse download (`*.partial-*`) touched within `MIN_AGE_S`.

What is removed: the repository's other `selfcode-sandbox:*` tags and untagged images (those
labelled with its state dir, `selfcode.state`) and its other wheelhouses.

What is left alone: images labelled with another repository's state dir, or with none (built by
a selfcode older than the labels): one state dir cannot know what another repository needs.
`everything` (`--all`) removes those too, but never what is kept above; another repository
then rebuilds its image on its next run. An image with neither selfcode's tag nor its label is
never touched, nor listed.

Planning is pure (`plan_images`) or reads only the state dir (`plan_wheelhouses`); `prune`
reads the engine, plans, and removes unless `dry_run`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import requests.exceptions
from pydantic import BaseModel, Field
from rich.filesize import decimal

from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.sandbox.deps import DependencySet, wheelhouse_dir
from selfcode.sandbox.engine import docker_client, engine_error, short_error
from selfcode.sandbox.image import IMAGE_REPOSITORY, base_image_of, image_tag, python_info
from selfcode.sandbox.leftovers import LABEL_SANDBOX, LABEL_STATE

MIN_AGE_S = 600.0
"""Untagged images and partial downloads younger than this may belong to work under way."""
_PARTIAL = ".partial-"

Kind = Literal["image", "untagged image", "wheelhouse"]


class Item(BaseModel):
    kind: Kind
    name: str = Field(description="the tag(s), the image id (12 hex digits), or the folder")
    bytes: int = Field(default=0, description="what removing it frees: an image's layers no other "
                       "image shares (0 while another tag keeps it), a folder's files")
    why: str = Field(default="", description="why it is kept or left alone, or why removing it "
                     "failed")


class PruneReport(BaseModel):
    dry_run: bool
    removed: list[Item] = Field(default_factory=list, description="(would be) removed")
    kept: list[Item] = Field(default_factory=list)
    left_alone: list[Item] = Field(default_factory=list, description="other repositories' "
                                   "images and unlabelled ones: removed only with --all")
    failed: list[Item] = Field(default_factory=list)
    freed_bytes: int = 0

    def lines(self) -> list[str]:
        """The report for a person, one line per image or folder."""
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} {i.kind} {i.name} ({decimal(i.bytes)})" for i in self.removed]
        out += [f"kept {i.kind} {i.name}: {i.why}" for i in self.kept]
        out += [f"left alone: {i.kind} {i.name}, {i.why} (--all removes it)"
                for i in self.left_alone]
        out += [f"could not remove {i.kind} {i.name}: {i.why}" for i in self.failed]
        out.append(f"{'would free' if self.dry_run else 'freed'} {decimal(self.freed_bytes)}")
        return out


@dataclass(frozen=True)
class ImageRecord:
    """One image as the engine lists it."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: float
    unique_bytes: int
    dangling: bool
    in_use: bool


@dataclass(frozen=True)
class Scope:
    """Whose images a prune may remove, and which it must keep."""

    state: str
    """This repository's state dir, as its images' `selfcode.state` label names it."""
    needed: frozenset[str]
    """Tags kept whoever built them."""
    now: float
    everything: bool = False
    min_age: float = MIN_AGE_S


@dataclass(frozen=True)
class Planned:
    fate: Literal["removed", "kept", "left_alone"]
    item: Item
    refs: tuple[str, ...] = field(default=())
    """What to remove: the image's selfcode tags, or its id; a wheelhouse's folder."""


def plan_images(images: Iterable[ImageRecord], scope: Scope) -> list[Planned]:
    """What becomes of each of selfcode's images (others are not listed)."""
    return [p for p in (_plan_image(image, scope) for image in images) if p is not None]


def _plan_image(image: ImageRecord, scope: Scope) -> Planned | None:
    ours = tuple(t for t in image.tags if t.startswith(IMAGE_REPOSITORY + ":"))
    untagged = image.dangling and image.labels.get(LABEL_SANDBOX) == "1"
    if not ours and not untagged:
        return None  # not selfcode's: never touched
    item = Item(kind="image" if ours else "untagged image",
                name=", ".join(ours) or image.id.removeprefix("sha256:")[:12],
                bytes=image.unique_bytes if len(ours) == len(image.tags) else 0)
    kept = _kept_because(image, ours, scope)
    if kept:
        return Planned("kept", item.model_copy(update={"why": kept}))
    owner = image.labels.get(LABEL_STATE, "")
    if owner != scope.state and not scope.everything:
        why = (f"built for another repository (state dir {owner})" if owner else
               "built by an older selfcode, which labelled no repository" if ours else
               "labelled with no repository (an older selfcode's, or a failed build's)")
        return Planned("left_alone", item.model_copy(update={"why": why}))
    return Planned("removed", item, ours or (image.id,))


def _kept_because(image: ImageRecord, ours: tuple[str, ...], scope: Scope) -> str:
    if set(ours) & scope.needed:
        return "the image HEAD's dependencies run in"
    if image.in_use:
        return "a container uses it"
    if not ours and scope.now - image.created < scope.min_age:
        return (f"untagged for less than {scope.min_age / 60:.0f} minutes: a build may still "
                "use it")
    return ""


def plan_wheelhouses(root: Path, needed: Path, scope: Scope) -> list[Planned]:
    """What becomes of each wheelhouse folder under `root`: all but `needed` and downloads
    that may be under way are removed."""
    planned: list[Planned] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        item = Item(kind="wheelhouse", name=str(folder), bytes=_folder_bytes(folder))
        if folder.name == needed.name:
            planned.append(Planned("kept", item.model_copy(
                update={"why": "the wheelhouse HEAD's image is built from"})))
        elif _PARTIAL in folder.name and scope.now - folder.stat().st_mtime < scope.min_age:
            planned.append(Planned("kept", item.model_copy(
                update={"why": "a download may be under way"})))
        else:
            planned.append(Planned("removed", item, (str(folder),)))
    return planned


def prune(config: SandboxConfig, state_dir: Path, deps: DependencySet, *, dry_run: bool,
          everything: bool = False, client: docker.DockerClient | None = None,
          min_age: float = MIN_AGE_S) -> PruneReport:
    """Remove (or with `dry_run`, list) what no run of the repository with `state_dir` and
    HEAD dependencies `deps` needs; see the module's docstring for what that is."""
    client = client or docker_client()
    state = state_dir.resolve()
    tags, wheelhouse = _needed(config, state, deps, client)
    scope = Scope(str(state), frozenset(tags), time.time(), everything, min_age)
    planned = plan_images(_image_records(client), scope)
    planned += plan_wheelhouses(state / "wheelhouse", wheelhouse, scope)
    report = PruneReport(dry_run=dry_run)
    for plan in planned:
        failure = None if dry_run or plan.fate != "removed" else _remove(client, plan)
        if failure:
            report.failed.append(plan.item.model_copy(update={"why": failure}))
        else:
            getattr(report, plan.fate).append(plan.item)
    report.freed_bytes = sum(i.bytes for i in report.removed)
    return report


def _needed(config: SandboxConfig, state: Path, deps: DependencySet,
            client: docker.DockerClient) -> tuple[set[str], Path]:
    """The tags HEAD's runs use, and the wheelhouse its image is built from."""
    base = base_image_of(config, client)
    try:
        base_id = str(client.images.get(base).id)
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(
            f"The base image {base} is not present, so which sandbox image HEAD needs cannot "
            "be told; build it with sandbox/bootstrap-base.sh (or pull it) and prune again."
        ) from exc
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise engine_error("pruning the sandbox images", exc) from exc
    tags = {image_tag(deps, base, base_id), *([config.image] if config.image else [])}
    info = python_info(client, base, base_id, state / "wheelhouse")
    return tags, wheelhouse_dir(deps, info, state / "wheelhouse")


def _image_records(client: docker.DockerClient) -> list[ImageRecord]:
    try:
        listed: list[dict[str, Any]] = client.df().get("Images") or []
        dangling = set(client.api.images(filters={"dangling": True}, quiet=True))
        in_use = {str(c.get("ImageID", "")) for c in client.api.containers(all=True)}
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise engine_error("listing the sandbox images", exc) from exc
    records = []
    for image in listed:
        size, shared = int(image.get("Size") or 0), int(image.get("SharedSize") or 0)
        records.append(ImageRecord(
            id=str(image["Id"]),
            tags=tuple(t for t in image.get("RepoTags") or () if t != "<none>:<none>"),
            labels=dict(image.get("Labels") or {}), created=float(image.get("Created") or 0),
            unique_bytes=max(size - max(shared, 0), 0), dangling=image["Id"] in dangling,
            in_use=image["Id"] in in_use or int(image.get("Containers") or 0) > 0))
    return records


def _remove(client: docker.DockerClient, plan: Planned) -> str | None:
    """Remove what `plan` names; None, or why it could not be."""
    if plan.item.kind == "wheelhouse":
        try:
            shutil.rmtree(plan.refs[0])
        except OSError as exc:
            return str(exc)
        return None
    for ref in plan.refs:
        try:
            client.images.remove(ref)  # never forced: an image a container uses stays
        except docker.errors.ImageNotFound:
            continue
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            return short_error(exc)
    return None


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
