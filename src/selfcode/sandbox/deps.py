"""The target's dependencies: the baseline's declarations, downloaded as wheels on the host.

    deps = dependencies_at(store, base_commit)      # once per run, from git objects
    wheelhouse = build_wheelhouse(deps, python_info, state_dir / "wheelhouse")

The declarations are the project's own (`declared.py`: `[project] dependencies`, the
`test`/`tests`/`testing` extras and dependency groups of `pyproject.toml`, `setup.cfg`'s
`install_requires` and test extras, the literal ones of `setup.py`, read with `ast` and never
run, and the build system's requirements, which the sandbox installs the tree with) and the
top-level `requirements*.txt` (with the files they include by `-r`/`-c`); pytest and Hypothesis
are always added. They are read from a COMMIT's objects, never from a working directory: a run
collects them once from its base commit and passes the `DependencySet` down, so nothing a
candidate writes (into its tree or the run's worktree) is ever read by the host to decide what
to download.

The project's own distribution never comes from the index, even when a dependency depends on
it: the download sees a metadata-only stand-in for it (highest version, no dependencies) and
the wheelhouse keeps no wheel of that name; the image installs exactly the wheels resolved, with
`--no-deps` (the sandbox installs the tree itself, `sandbox/selfcode_install.py`).

The host runs pip, so every line is policed first (`requirement_entry`): only a plain
`name[extras] specifier ; marker`, optionally with `--hash`, and `-r`/`-c` to another committed
file; a URL, a local path, any other option line and any environment variable (`${...}`) is
refused with one sentence naming the file and the line, before anything runs. pip then gets a
requirements file selfcode wrote itself, `--only-binary=:all:` (no sdist is built, so no
repository's build backend ever runs on the host), an environment of PATH, LANG and a fresh
HOME (plus trust-store paths and credential-free proxies; `PIP_CONFIG_FILE` = os.devnull, so no
pip.conf either), and `python -I` in a temporary directory (nothing there can shadow pip).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Protocol

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from selfcode.errors import ConfigError, SandboxError
from selfcode.sandbox.declared import read_project
from selfcode.sandbox.requirements import Include, logical_lines, requirement_entry

# Bump when what a wheelhouse holds changes in a way its key does not show.
_WHEELHOUSE_RECIPE = "pinned-1"
# The files a project declares itself in (read by `declared.read_project`).
_PROJECT_FILES = ("pyproject.toml", "setup.cfg", "setup.py")

Progress = Callable[[str], None]


def no_progress(_: str) -> None:
    pass


@dataclass(frozen=True)
class PythonInfo:
    """What the base image's `python3` accepts, for `pip download --platform ...`."""

    version: str  # "3.11"
    implementation: str  # "cp"
    abis: tuple[str, ...]  # ("cp311", "abi3", "none")
    platforms: tuple[str, ...]  # ("manylinux_2_36_x86_64", ..., "linux_x86_64")
    full_version: str = ""  # "3.11.2", for requires-python

    def key(self) -> str:
        return json.dumps([self.version, self.implementation, [*self.abis], [*self.platforms]])


@dataclass(frozen=True)
class DependencySet:
    """What the image is built from: the baseline's declarations, collected once, immutable."""

    requirements: tuple[str, ...]
    """Requirements for pip, in a stable order, pytest included; each passed the line policy."""
    fingerprint: bytes
    """What the image hash covers: the declarations, not unrelated pyproject.toml edits."""
    constraints: tuple[str, ...] = ()
    origin: str = ""
    """Where the declarations were read, for messages ("commit 1a2b3c4d5e")."""
    project: str = ""
    """The project's own canonical distribution name: never installed from the index."""
    requires_python: str = ""
    """Its `[project] requires-python`, checked against the sandbox's Python."""
    notes: tuple[str, ...] = ()
    """Declarations that could not be read (a computed setup.py argument...)."""


class CommitReader(Protocol):
    """What `dependencies_at` needs of a repository (`selfcode.git.store.GitStore` has it)."""

    def resolve(self, rev: str) -> str: ...
    def list_files(self, rev: str = "HEAD") -> list[str]: ...
    def read_files(self, rev: str, paths: Iterable[str]) -> dict[str, str | None]: ...


def dependencies_at(store: CommitReader, rev: str = "HEAD") -> DependencySet:
    """The declarations committed at `rev`, read from git objects (no working directory)."""
    sha = store.resolve(rev)
    listing = store.list_files(sha)

    def read(path: str) -> str | None:
        return store.read_files(sha, [path]).get(path)

    return collect_dependencies(read, listing, origin=f"commit {sha[:10]}")


def dependencies_from_files(files: Mapping[str, str], origin: str = "") -> DependencySet:
    """The declarations among `files` (repository path -> text): for tests and tools."""
    return collect_dependencies(files.get, list(files), origin=origin)


def collect_dependencies(read: Callable[[str], str | None], listing: Iterable[str],
                         origin: str = "") -> DependencySet:
    """The project's declarations (`declared.py`: pyproject.toml, setup.cfg, setup.py, its
    build system's requirements) and the top-level requirements*.txt, policed."""
    names = set(listing)
    project = read_project({n: read(n) for n in _PROJECT_FILES if n in names}, origin)
    reqs = [r for r, _ in project.requirements] + project.build
    # The declarations, not the files: an unrelated pyproject.toml edit keeps the image tag.
    parts: list[bytes] = [b"project:" + project.fingerprint()]
    constraints: list[str] = []
    seen: set[str] = set()
    for name in sorted(n for n in names if "/" not in n and fnmatchcase(n, "requirements*.txt")):
        _requirements_file(name, read, names, seen, (reqs, constraints, parts), origin)
    named = {canonicalize_name(Requirement(r).name) for r in reqs}
    # The harness's own: pytest runs the tests, Hypothesis draws the equivalence check's inputs.
    reqs += [tool for tool in ("pytest", "hypothesis") if tool not in named]
    unique = tuple(dict.fromkeys(reqs))
    return DependencySet(unique, b"\0\0".join(parts), tuple(dict.fromkeys(constraints)), origin,
                         project=project.name, requires_python=project.requires_python,
                         notes=tuple(project.notes))


def _requirements_file(name: str, read: Callable[[str], str | None], names: set[str],
                       seen: set[str], out: tuple[list[str], list[str], list[bytes]],
                       origin: str, constraint: bool = False) -> None:
    """Police one requirements file and those it includes; add to (reqs, constraints, parts)."""
    if name in seen:
        return
    seen.add(name)
    text = read(name) if name in names else None
    if text is None:
        raise ConfigError(f"A requirements file includes {name}, which is not committed "
                          f"({origin}); commit it or remove the include.")
    reqs, constraints, parts = out
    parts += [b"file:" + name.encode() + b"\0", text.encode("utf-8")]
    for number, line in logical_lines(text):
        where = f"{name} line {number}" + (f" ({origin})" if origin else "")
        entry = requirement_entry(line, where, name)
        if isinstance(entry, Include):
            _requirements_file(entry.path, read, names, seen, out, origin,
                               constraint or entry.constraint)
        elif entry is not None:
            (constraints if constraint else reqs).append(entry)


def wheelhouse_dir(deps: DependencySet, info: PythonInfo, wheelhouse_root: Path) -> Path:
    """The folder `build_wheelhouse` keeps the wheels for `deps` on `info`'s Python in (whether
    or not it exists yet): named by both, so `sandbox prune` can tell which one HEAD needs."""
    keyed = [_WHEELHOUSE_RECIPE, *deps.requirements, info.key(), "project:" + deps.project]
    if deps.constraints:
        keyed += ["-c", *deps.constraints]
    return wheelhouse_root / hashlib.sha256("\n".join(keyed).encode("utf-8")).hexdigest()[:20]


def build_wheelhouse(
    deps: DependencySet, info: PythonInfo, wheelhouse_root: Path, progress: Progress = no_progress
) -> Path:
    """Download wheels for `deps` that `info`'s Python accepts; cached by (deps, platform)."""
    target = wheelhouse_dir(deps, info, wheelhouse_root)
    key = target.name
    if (target / ".complete").is_file():
        progress(f"wheelhouse {target} is up to date")
        return target
    wheelhouse_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=wheelhouse_root))
    try:
        (partial / "declared.txt").write_text("\n".join(deps.requirements) + "\n", "utf-8")
        argv = _pip_download(info, partial, partial / "declared.txt")
        if deps.constraints:
            (partial / "constraints.txt").write_text("\n".join(deps.constraints) + "\n", "utf-8")
            argv += ["-c", str(partial / "constraints.txt")]
        if deps.project:
            argv += ["--find-links", str(_stand_in(partial / "stand-in", deps.project))]
        for note in deps.notes:
            progress(f"note: {note}")
        progress(
            f"downloading wheels for Python {info.version} ({info.platforms[0]}) on the host: "
            + ", ".join(deps.requirements)
        )
        start = time.monotonic()
        _run_pip(argv, info)
        shutil.rmtree(partial / "stand-in", ignore_errors=True)
        wheels = _pin(partial, deps.project)
        progress(f"downloaded {len(wheels)} wheels in {time.monotonic() - start:.1f}s")
        (partial / ".complete").write_text("\n".join(wheels) + "\n", "utf-8")
        try:
            partial.rename(target)
        except OSError:
            # Another process finished the same wheelhouse first; theirs is as good as ours.
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                partial.rename(target)
        return target
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


# A stand-in's version: above any real release, so a dependency's `>=` on the project takes it;
# a tighter bound (`<3`) falls back to the index's copy, which is dropped all the same.
_STAND_IN_VERSION = "999999999"


def _stand_in(folder: Path, project: str) -> Path:
    """A find-links folder with a metadata-only wheel of the project (no dependencies)."""
    folder.mkdir()
    stem = f"{project.replace('-', '_')}-{_STAND_IN_VERSION}"
    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{stem}.dist-info/METADATA", "Metadata-Version: 2.1\nName: "
                       f"{project}\nVersion: {_STAND_IN_VERSION}\n")
        wheel.writestr(f"{stem}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: selfcode\n"
                       "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{stem}.dist-info/RECORD", "")
    return folder


def _pin(wheelhouse: Path, project: str) -> list[str]:
    """Drop the project's own wheels; write requirements.txt pinning every other one (the image
    installs them with --no-deps: the resolution was made here). The wheels kept."""
    pins, kept = [], []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        try:
            name, version, _, _ = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename as exc:
            raise SandboxError(f"pip downloaded a wheel with an unreadable name ({exc}); "
                               "remove the wheelhouse and build again.") from exc
        if project and name == project:
            wheel.unlink()
            continue
        pins.append(f"{name}=={version}")
        kept.append(wheel.name)
    (wheelhouse / "requirements.txt").write_text("\n".join(pins) + "\n", "utf-8")
    return kept


# Where the host's trusted certificates are (a TLS-inspecting proxy's CA, say): paths, no secret.
_TRUST = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def pip_environment(home: Path, source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of the host's pip: no key, token, proxy credential or PIP_*.

    PATH, LANG and a fresh HOME; the trust-store paths; proxies only when their URL carries no
    user name or password.
    """
    source = os.environ if source is None else source
    env = {
        "PATH": source.get("PATH") or os.defpath,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # Ours, not the user's: with os.devnull pip reads no pip.conf at all (user, site or
        # global), so no configured index, find-links or credentials come along.
        "PIP_CONFIG_FILE": os.devnull,
    }
    env.update({k: source[k] for k in _TRUST if source.get(k)})
    env.update({k: source[k] for k in _PROXIES if source.get(k) and "@" not in source[k]})
    return env


def _run_pip(argv: list[str], info: PythonInfo) -> None:
    with tempfile.TemporaryDirectory(prefix="selfcode-pip-") as home:
        proc = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
            env=pip_environment(Path(home)), cwd=home,
        )  # fmt: skip
    if proc.returncode == 0:
        return
    tail = _tail(proc.stderr or proc.stdout, 6)
    if "No module named pip" in (proc.stderr or ""):
        raise SandboxError(
            "pip is missing from the Python that runs selfcode; install pip into "
            "selfcode's environment to build the sandbox image."
        )
    raise SandboxError(
        "pip could not download binary wheels of the target's dependencies for Python "
        f"{info.version} on {info.platforms[0]} ({tail}); make every dependency "
        "available as a wheel (or use a base image with a matching Python via "
        "SELFCODE_BASE_IMAGE), and check that the host can reach the package index."
    )


def _pip_download(info: PythonInfo, dest: Path, requirements: Path) -> list[str]:
    """`pip download` of binary wheels for `info`'s Python and platform only.

    `-I`: no PYTHON* variable and no module of the working directory can change what runs;
    `--isolated`: pip ignores its environment variables and the user's configuration.
    """
    argv = [
        sys.executable, "-I", "-m", "pip", "download", "--isolated",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--dest", str(dest), "--only-binary=:all:",
        "--python-version", info.version, "--implementation", info.implementation,
    ]  # fmt: skip
    for abi in info.abis:
        argv += ["--abi", abi]
    for plat in info.platforms:
        argv += ["--platform", plat]
    return [*argv, "-r", str(requirements)]


def _tail(text: str, lines: int) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-600:]
