"""The docker sandbox's image: the target's dependencies resolved on the host, built offline.

    tag = ensure_image(settings.sandbox, state_dir, dependencies_at(store, base), progress=print)

1. The base image is asked once (per image id, cached in the state dir) which Python it has and
   which wheel platforms it accepts.
2. The target's dependencies are downloaded as wheels on the HOST for that Python and platform
   (see `deps.py`).
3. The top-level `Dockerfile` is built with a context of just itself and that wheelhouse, so pip
   inside the build never touches an index (`--no-index`).

The image is tagged `selfcode-sandbox:<hash>`, hash = sha256 of the Dockerfile, the base image's
name and id, and the target's dependency declarations (a `DependencySet`, read from the run's
base commit: never from a candidate's files); it is rebuilt only when that tag is missing.
Every failure is a `SandboxError` whose message says how to fix it.

Every build is labelled (`LABEL_*`, set by the Dockerfile for its stages and by the build for
the final image) with its own id and the state dir it was built for; when it ends, the untagged
`deps`-stage image it left behind, found by that id, is removed. `prune.py` reads the same
labels to remove the images no run of a repository needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from selfcode import resources
from selfcode.config import SandboxConfig
from selfcode.errors import SandboxError
from selfcode.sandbox.declared import python_refusal
from selfcode.sandbox.deps import (
    DependencySet,
    Progress,
    PythonInfo,
    build_wheelhouse,
    no_progress,
)
from selfcode.sandbox.engine import docker_client, engine_error, short_error
from selfcode.sandbox.leftovers import (
    LABEL_BUILD,
    LABEL_SANDBOX,
    LABEL_STATE,
    remove_build_leftovers,
)

IMAGE_REPOSITORY = "selfcode-sandbox"
# Bump when the way the image is assembled changes in a way the Dockerfile's bytes do not show.
_RECIPE_VERSION = "2"  # 2: pinned wheels, --no-deps, the target's build backends
_BOOTSTRAP_FIX = "run sandbox/bootstrap-base.sh and set SELFCODE_BASE_IMAGE to the name it prints"
_BUILD_LOG_TAIL = 25


@dataclass(frozen=True)
class BuildResult:
    tag: str
    built: bool
    """False when the image already existed and nothing was done."""
    duration: float
    build_id: str = ""
    """The build's `selfcode.build` label ("" when nothing was built)."""


@dataclass(frozen=True)
class _Recipe:
    """One build: what goes into it, and the labels and arguments that mark what it makes."""

    dockerfile: Path
    wheelhouse: Path
    base_image: str
    tag: str
    state_dir: Path
    build_id: str
    no_cache: bool = False

    def labels(self) -> dict[str, str]:
        """The final image's labels (a custom Dockerfile's too, which may not set them)."""
        return {LABEL_SANDBOX: "1", "selfcode.base": self.base_image,
                LABEL_BUILD: self.build_id, LABEL_STATE: str(self.state_dir)}

    def buildargs(self) -> dict[str, str]:
        return {"BASE": self.base_image, "SELFCODE_BUILD": self.build_id,
                "SELFCODE_STATE": str(self.state_dir)}


# Runs inside the base image with its own python3; stdlib (and pip's vendored packaging) only.
_PYTHON_PROBE = r"""
import json, os, platform, sys
impl = {"cpython": "cp", "pypy": "pp"}.get(sys.implementation.name, sys.implementation.name)
info = {"version": "%d.%d" % sys.version_info[:2], "implementation": impl,
        "full": platform.python_version()}
try:
    from pip._vendor.packaging import tags
    found = list(tags.sys_tags())
    info["abis"] = list(dict.fromkeys(t.abi for t in found))
    info["platforms"] = list(dict.fromkeys(t.platform for t in found))
except Exception:
    machine = platform.machine()
    nodot = "%d%d" % sys.version_info[:2]
    info["abis"] = [impl + nodot, "abi3", "none"]
    plats = []
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
        major, minor = (int(x) for x in libc.split()[1].split(".")[:2])
        plats += ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        plats += ["%s_%s" % (name, machine) for m, name in legacy.items() if m <= minor]
    except Exception:
        pass
    info["platforms"] = plats + ["linux_" + machine]
print(json.dumps(info))
"""


# --- the base image ----------------------------------------------------------------------------


def ensure_base_image(client: docker.DockerClient, base_image: str, progress: Progress) -> str:
    """Return the base image's id, pulling it when absent; offline, say how to build one."""
    try:
        return str(client.images.get(base_image).id)
    except docker.errors.ImageNotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise engine_error("preparing the sandbox image", exc) from exc
    progress(f"base image {base_image} is not present; trying to pull it")
    try:
        image = client.images.pull(base_image)
    except (docker.errors.APIError, requests.exceptions.RequestException, ValueError) as exc:
        raise SandboxError(
            f"The base image {base_image} is not present and could not be pulled "
            f"({short_error(exc)}); {_BOOTSTRAP_FIX}."
        ) from exc
    return str(image.id)


def python_info(
    client: docker.DockerClient, base_image: str, image_id: str, cache_dir: Path
) -> PythonInfo:
    """Ask the base image's python3 which wheels it accepts; cached by image id."""
    cache = cache_dir / f"python-{image_id.removeprefix('sha256:')[:24]}.json"
    raw: dict[str, Any] | None = None
    if cache.is_file():
        try:
            raw = json.loads(cache.read_text("utf-8"))
        except (OSError, ValueError):
            raw = None
    if not isinstance(raw, dict) or "full" not in raw:
        raw = None  # an older probe's answer: ask again
        try:
            out = client.containers.run(
                image_id,
                ["python3", "-c", _PYTHON_PROBE],
                remove=True,
                network_mode="none",
                stdout=True,
                stderr=True,
                entrypoint=[],
            )
            raw = json.loads(out)
        except docker.errors.ContainerError as exc:
            raise SandboxError(
                f"The base image {base_image} has no working python3 ({short_error(exc)}); "
                f"{_BOOTSTRAP_FIX}, or name an image with Python 3 in SELFCODE_BASE_IMAGE."
            ) from exc
        except (ValueError, TypeError) as exc:
            raise SandboxError(
                f"The base image {base_image} answered the Python probe with garbage; "
                f"{_BOOTSTRAP_FIX}."
            ) from exc
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise engine_error("preparing the sandbox image", exc) from exc
        cache_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(cache, json.dumps(raw).encode("utf-8"))
    try:
        return PythonInfo(
            version=str(raw["version"]),
            implementation=str(raw["implementation"]),
            abis=tuple(str(a) for a in raw["abis"]),
            platforms=tuple(str(p) for p in raw["platforms"]),
            full_version=str(raw["full"]),
        )
    except (KeyError, TypeError) as exc:
        cache.unlink(missing_ok=True)
        raise SandboxError(
            f"The base image {base_image} did not report its Python platform; {_BOOTSTRAP_FIX}."
        ) from exc


# --- the image ---------------------------------------------------------------------------------


def image_tag(
    deps: DependencySet,
    base_image: str,
    base_id: str,
    dockerfile: Path | None = None,
) -> str:
    """`selfcode-sandbox:<hash>` of (Dockerfile, base name + id, dependency declarations)."""
    dockerfile = dockerfile or _dockerfile()
    digest = hashlib.sha256()
    for part in (
        _RECIPE_VERSION.encode(),
        dockerfile.read_bytes(),
        base_image.encode("utf-8"),
        base_id.encode("utf-8"),
        deps.fingerprint,
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:20]}"


DEFAULT_BASE = SandboxConfig.model_fields["base_image"].default
OFFLINE_BASE = "selfcode-base:bookworm"  # what sandbox/bootstrap-base.sh builds by default


def ensure_image(
    config: SandboxConfig,
    state_dir: Path,
    deps: DependencySet,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = no_progress,
) -> str:
    """The image a sandbox with `deps` runs: `config.image` as given, else built when missing."""
    client = client or docker_client()
    if config.image:
        if not image_exists(client, config.image):
            raise SandboxError(
                f"The sandbox image {config.image} (SELFCODE_IMAGE) does not exist; build it "
                "with `selfcode sandbox build` after unsetting SELFCODE_IMAGE, or name an "
                "existing image."
            )
        return config.image
    base = base_image_of(config, client, progress)
    return build_image(deps, state_dir, base, client=client, progress=progress).tag


def base_image_of(config: SandboxConfig, client: docker.DockerClient,
                  progress: Progress = no_progress) -> str:
    """The base image a build for `config` starts from."""
    base = config.base_image
    if base == DEFAULT_BASE and not image_exists(client, base) and image_exists(
            client, OFFLINE_BASE):
        # An air-gapped machine that ran sandbox/bootstrap-base.sh has no use for a pull.
        progress(f"{base} is not present; using the offline base image {OFFLINE_BASE}")
        base = OFFLINE_BASE
    return base


def build_image(
    deps: DependencySet,
    state_dir: Path,
    base_image: str,
    *,
    client: docker.DockerClient | None = None,
    dockerfile: Path | None = None,
    progress: Progress = no_progress,
    force: bool = False,
    tag: str | None = None,
    no_cache: bool = False,
) -> BuildResult:
    """Build the sandbox image for `deps` on `base_image` unless its tag already exists.

    `force` rebuilds even when the tag exists; `tag` overrides the computed tag (benchmarks use
    a throw-away one); `no_cache` ignores the engine's layer cache (a truly cold build).
    """
    start = time.monotonic()
    client = client or docker_client()
    dockerfile = dockerfile or _dockerfile()
    base_id = ensure_base_image(client, base_image, progress)
    info = python_info(client, base_image, base_id, state_dir / "wheelhouse")  # cached by id
    refusal = python_refusal(deps.requires_python, info.full_version, base_image)
    if refusal:
        raise SandboxError(refusal)
    tag = tag or image_tag(deps, base_image, base_id, dockerfile)
    if not force and image_exists(client, tag):
        progress(f"sandbox image {tag} is up to date")
        return BuildResult(tag, built=False, duration=time.monotonic() - start)

    wheelhouse = build_wheelhouse(deps, info, state_dir / "wheelhouse", progress)
    progress(f"building {tag} from {base_image}")
    recipe = _Recipe(dockerfile, wheelhouse, base_image, tag, state_dir.resolve(),
                     f"{tag.rpartition(':')[2]}-{secrets.token_hex(4)}", no_cache)
    try:
        _build(client, recipe, progress)
    finally:
        remove_build_leftovers(client, recipe.build_id, progress)
    duration = time.monotonic() - start
    progress(f"built {tag} in {duration:.1f}s")
    return BuildResult(tag, built=True, duration=duration, build_id=recipe.build_id)


def _build(client: docker.DockerClient, recipe: _Recipe, progress: Progress) -> None:
    log: list[str] = []
    tag = recipe.tag
    with tempfile.TemporaryFile() as context:
        _write_context(context, recipe.dockerfile, recipe.wheelhouse)
        context.seek(0)
        try:
            stream: Iterable[dict[str, Any]] = client.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs=recipe.buildargs(),
                pull=False,
                nocache=recipe.no_cache,
                rm=True,
                forcerm=True,
                decode=True,
                labels=recipe.labels(),
                timeout=3600,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = str(chunk.get("error", "")).strip()
                    log.append(detail)
                    raise SandboxError(
                        f"Building the sandbox image {tag} failed: {detail[-300:]} "
                        f"(last lines of the build log: {' | '.join(log[-_BUILD_LOG_TAIL:])}); "
                        "fix the cause above, or if the base image lacks git/valgrind and the "
                        f"build has no network, {_BOOTSTRAP_FIX}."
                    )
                text = str(chunk.get("stream", "")).rstrip()
                for line in text.splitlines():
                    log.append(line)
                    if line.startswith("Step "):
                        progress(line if len(line) <= 100 else line[:97] + "...")
        except (docker.errors.APIError, docker.errors.BuildError) as exc:
            raise SandboxError(
                f"Building the sandbox image {tag} failed ({short_error(exc)}; last lines of the "
                f"build log: {' | '.join(log[-_BUILD_LOG_TAIL:])}); fix the cause, or "
                f"{_BOOTSTRAP_FIX}."
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise engine_error("preparing the sandbox image", exc) from exc
    if not image_exists(client, tag):
        raise SandboxError(
            f"The Docker engine finished building {tag} but the image is missing (last lines of "
            f"the build log: {' | '.join(log[-_BUILD_LOG_TAIL:])}); run `selfcode sandbox "
            "build` again."
        )


def _write_context(out: Any, dockerfile: Path, wheelhouse: Path) -> None:
    """A tar build context: the Dockerfile and wheelhouse/ (wheels, requirements.txt); no more."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.read_bytes())
        _add_bytes(
            tar, "wheelhouse/requirements.txt", (wheelhouse / "requirements.txt").read_bytes()
        )
        for wheel in sorted(wheelhouse.glob("*.whl")):
            info = tar.gettarinfo(str(wheel), arcname=f"wheelhouse/{wheel.name}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with wheel.open("rb") as fh:
                tar.addfile(info, fh)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


# --- helpers -----------------------------------------------------------------------------------


def _dockerfile() -> Path:
    try:
        path = resources.dockerfile()
    except FileNotFoundError:
        path = Path(__file__).resolve().parents[3] / "Dockerfile"
    if not path.is_file() or not path.read_bytes().strip():
        raise SandboxError(
            f"selfcode's Dockerfile is missing or empty ({path}); reinstall selfcode."
        )
    return path


def image_exists(client: docker.DockerClient, tag: str,
                 doing: str = "preparing the sandbox image") -> bool:
    """Whether the engine has image `tag`; a failing engine is one sentence (`doing`)."""
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise engine_error(doing, exc) from exc
    return True


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
