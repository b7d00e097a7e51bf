"""What builds leave behind and `selfcode sandbox prune` (issue 15, item 10).

The Docker tests only ever remove images they built themselves: each is labelled with a state
dir under the test's tmp_path (the scope a prune keeps to), and anything left is removed in a
finalizer. They never prune the machine's own state dirs.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.config import SandboxConfig
from selfcode.git.store import GitStore
from selfcode.sandbox.deps import DependencySet, dependencies_at, wheelhouse_dir
from selfcode.sandbox.image import build_image, image_tag, python_info
from selfcode.sandbox.leftovers import LABEL_BUILD, LABEL_SANDBOX, LABEL_STATE
from selfcode.sandbox.prune import ImageRecord, Scope, plan_images, plan_wheelhouses, prune

from repos import GIT_ENV_ARGS

pytest_plugins = ["docker_util"]

STATE = "/state/of/this/repo"
NOW = 1_000_000.0


def record(id_: str = "sha256:" + "a" * 64, tags: tuple[str, ...] = (), state: str | None = STATE,
           labelled: bool = True, age: float = 3600, dangling: bool = False,
           in_use: bool = False) -> ImageRecord:
    labels = {LABEL_SANDBOX: "1"} if labelled else {}
    if state is not None:
        labels[LABEL_STATE] = state
    return ImageRecord(id=id_, tags=tags, labels=labels, created=NOW - age, unique_bytes=400,
                       dangling=dangling, in_use=in_use)


SCOPE = Scope(state=STATE, needed=frozenset({"selfcode-sandbox:head"}), now=NOW)


@pytest.mark.parametrize(("image", "scope", "fate", "why"), [
    (record(tags=("selfcode-sandbox:head",)), SCOPE, "kept", "HEAD's dependencies"),
    (record(tags=("selfcode-sandbox:old",), in_use=True), SCOPE, "kept", "a container uses"),
    (record(tags=("selfcode-sandbox:old",)), SCOPE, "removed", ""),
    (record(dangling=True), SCOPE, "removed", ""),
    (record(dangling=True, age=60), SCOPE, "kept", "less than 10 minutes"),
    (record(tags=("selfcode-sandbox:x",), state="/other"), SCOPE, "left_alone",
     "another repository (state dir /other)"),
    (record(tags=("selfcode-sandbox:x",), state=None), SCOPE, "left_alone", "no repository"),
    (record(dangling=True, state=None), SCOPE, "left_alone", "no repository"),
    (record(tags=("selfcode-sandbox:x",), state="/other"),
     Scope(STATE, SCOPE.needed, NOW, everything=True), "removed", ""),
    (record(tags=("selfcode-sandbox:head",), state="/other"),
     Scope(STATE, SCOPE.needed, NOW, everything=True), "kept", "HEAD's"),
])
def test_plan_images(image: ImageRecord, scope: Scope, fate: str, why: str) -> None:
    (planned,) = plan_images([image], scope)
    assert planned.fate == fate and why in planned.item.why


def test_plan_images_never_lists_what_is_not_selfcodes() -> None:
    assert plan_images([record(tags=("postgres:16",), labelled=False, state=None),
                        record(dangling=True, labelled=False, state=None),
                        record(tags=("mine:latest",), labelled=False, state=STATE)], SCOPE) == []


def test_an_image_another_tag_keeps_frees_nothing_and_loses_only_selfcodes_tag() -> None:
    (planned,) = plan_images([record(tags=("selfcode-sandbox:old", "mine:latest"))], SCOPE)
    assert planned.fate == "removed" and planned.refs == ("selfcode-sandbox:old",)
    assert planned.item.bytes == 0


def test_plan_wheelhouses(tmp_path: Path) -> None:
    for name in ("needed", "old", "old.partial-x", "new.partial-y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.whl").write_bytes(b"x" * 100)
    (tmp_path / "python-abc.json").write_text("{}")
    stale = time.time() - 7200
    import os
    os.utime(tmp_path / "old.partial-x", (stale, stale))
    planned = plan_wheelhouses(tmp_path, tmp_path / "needed", Scope(STATE, frozenset(),
                                                                    time.time()))
    fates = {Path(p.item.name).name: p.fate for p in planned}
    assert fates == {"needed": "kept", "old": "removed", "old.partial-x": "removed",
                     "new.partial-y": "kept"}
    assert all(p.item.bytes == 100 for p in planned)
    assert plan_wheelhouses(tmp_path / "missing", tmp_path, SCOPE) == []


# -- the real engine ---------------------------------------------------------------------------


@pytest.fixture
def made(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Images (ids) and containers ('container:<id>') a test made: all removed at the end."""
    things: list[str] = []
    yield things
    for thing in reversed(things):
        try:
            if thing.startswith("container:"):
                docker_client.containers.get(thing.removeprefix("container:")).remove(force=True)
            else:
                docker_client.images.remove(thing, force=True)
        except docker.errors.NotFound:
            pass


def tiny_image(client: docker.DockerClient, made: list[str], base: str, labels: dict[str, str],
               *tags: str) -> str:
    """A metadata-only image on `base` with `labels`, tagged `tags` (none: untagged)."""
    dockerfile = f"FROM {base}\nLABEL selfcode.test={secrets.token_hex(8)}\n".encode()
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), labels=labels, rm=True)
    made.append(str(image.id))
    for tag in tags:
        repository, _, name = tag.partition(":")
        image.tag(repository, name)
        made.append(tag)
    return str(image.id)


def git_repo(root: Path) -> Path:
    """A repository whose dependencies no other test declares, so its image tag is its own."""
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "tiny"\nversion = "0"\n')
    (root / "requirements.txt").write_text(f"pytest!=0.0.{secrets.randbelow(10**9)}\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "tiny"]):
        subprocess.run(["git", *GIT_ENV_ARGS, *args], cwd=root, check=True, capture_output=True)
    return root


def test_a_build_removes_the_intermediate_image_it_left(
    docker_client: docker.DockerClient, base_image: str, tmp_path: Path, made: list[str]
) -> None:
    repo = git_repo(tmp_path / "repo")
    with GitStore(repo) as store:
        deps, state = dependencies_at(store, "HEAD"), store.state_dir()
    tag = f"selfcode-sandbox:test-build-{secrets.token_hex(4)}"
    said: list[str] = []
    made.append(tag)
    result = build_image(deps, state, base_image, client=docker_client, tag=tag,
                         progress=said.append)
    assert result.built and result.build_id
    # The multi-stage build left its `deps` stage untagged; the build removed it, and only it.
    assert any("removed the build's intermediate image" in line for line in said), said
    ours = {"label": f"{LABEL_BUILD}={result.build_id}"}
    assert docker_client.images.list(filters={**ours, "dangling": True}) == []
    labelled = docker_client.images.list(filters=ours)  # top-level images: the one tagged
    assert [i.tags for i in labelled] == [[tag]]
    labels = labelled[0].labels
    assert labels[LABEL_SANDBOX] == "1" and labels[LABEL_STATE] == str(state.resolve())


def test_prune_removes_what_no_run_of_the_repository_needs(
    docker_client: docker.DockerClient, base_image: str, tmp_path: Path, made: list[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_repo(tmp_path / "repo")
    with GitStore(repo) as store:
        deps, state = dependencies_at(store, "HEAD"), store.state_dir().resolve()
    config = SandboxConfig(base_image=base_image)
    mine = {LABEL_SANDBOX: "1", LABEL_STATE: str(state)}
    nonce = secrets.token_hex(4)
    head = head_tag(docker_client, deps, base_image)
    tiny_image(docker_client, made, base_image, mine, head)
    tiny_image(docker_client, made, base_image, mine, f"selfcode-sandbox:test-{nonce}-old")
    busy = tiny_image(docker_client, made, base_image, mine, f"selfcode-sandbox:test-{nonce}-busy")
    container = docker_client.containers.create(busy, ["true"], network_mode="none")
    made.append(f"container:{container.id}")
    shared = tiny_image(docker_client, made, base_image, mine,
                        f"selfcode-sandbox:test-{nonce}-shared", f"selfcode-test-keep:{nonce}")
    other = tiny_image(docker_client, made, base_image, {**mine, LABEL_STATE: "/elsewhere"},
                       f"selfcode-sandbox:test-{nonce}-other")
    untagged = tiny_image(docker_client, made, base_image, mine)
    wheels = state / "wheelhouse"
    base_id = str(docker_client.images.get(base_image).id)
    needed = wheelhouse_dir(deps, python_info(docker_client, base_image, base_id, wheels), wheels)
    for folder in (needed, wheels / "0123456789abcdef0123"):
        folder.mkdir(parents=True)
        (folder / "w.whl").write_bytes(b"w" * 1000)

    planned = prune(config, state, deps, dry_run=True, client=docker_client, min_age=0)
    expected = {f"selfcode-sandbox:test-{nonce}-old", f"selfcode-sandbox:test-{nonce}-shared",
                untagged.removeprefix("sha256:")[:12], str(wheels / "0123456789abcdef0123")}
    assert {i.name for i in planned.removed} == expected
    kept = {i.name: i.why for i in planned.kept}
    assert "HEAD" in kept[head] and "container" in kept[f"selfcode-sandbox:test-{nonce}-busy"]
    assert kept[str(needed)] == "the wheelhouse HEAD's image is built from"
    assert f"selfcode-sandbox:test-{nonce}-other" in {i.name for i in planned.left_alone}
    assert exists(docker_client, f"selfcode-sandbox:test-{nonce}-old")  # a dry run: nothing
    assert (wheels / "0123456789abcdef0123").is_dir()

    done = prune(config, state, deps, dry_run=False, client=docker_client, min_age=0)
    assert {i.name for i in done.removed} == expected and not done.failed
    assert done.freed_bytes >= 1000
    for gone in (f"selfcode-sandbox:test-{nonce}-old", untagged,
                 f"selfcode-sandbox:test-{nonce}-shared"):
        assert not exists(docker_client, gone), gone
    for there in (head, busy, other, f"selfcode-test-keep:{nonce}"):  # others' stay
        assert exists(docker_client, there), there
    assert docker_client.images.get(shared).tags == [f"selfcode-test-keep:{nonce}"]
    assert needed.is_dir() and not (wheels / "0123456789abcdef0123").exists()

    monkeypatch.setenv("SELFCODE_BASE_IMAGE", base_image)
    cli = CliRunner().invoke(app, ["sandbox", "prune", str(repo), "--dry-run", "--json"])
    assert cli.exit_code == 0, cli.output
    report = json.loads(cli.stdout)
    assert report["dry_run"] and head in {i["name"] for i in report["kept"]}
    text = CliRunner().invoke(app, ["sandbox", "prune", str(repo), "--dry-run"])
    assert text.exit_code == 0 and "would free" in text.stdout and f"kept image {head}" in (
        text.stdout)


def head_tag(client: docker.DockerClient, deps: DependencySet, base: str) -> str:
    tag: str = image_tag(deps, base, str(client.images.get(base).id))
    return tag


def exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_prune_help_says_what_is_kept_and_what_is_removed() -> None:
    result = CliRunner().invoke(app, ["sandbox", "prune", "--help"], terminal_width=100)
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0
    for expected in ("Kept:", "Removed:", "Left alone:", "--dry-run", "--all", "--json",
                     "a container uses", "never touched"):
        assert expected in text, expected
