"""The target's dependencies: what its declarations name, downloaded as wheels on the host.

    deps = collect_dependencies(repo)
    wheelhouse = build_wheelhouse(deps, python_info, state_dir / "wheelhouse")

The declarations are `[project] dependencies`, the `test`/`tests`/`testing` extras and
dependency groups of `pyproject.toml`, and `requirements*.txt`; pytest is always added. The
wheels are downloaded with `pip download --only-binary=:all:` for the base image's Python and
platform (see `image.python_info`), into `<state dir>/wheelhouse/<key>/`, so pip inside the image
build never touches an index.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selfcode.errors import SandboxError

# Always in the image: the harness runs pytest.
_ALWAYS = ("pytest",)
# Extras / dependency groups that a repository's tests usually need.
_TEST_GROUPS = ("test", "tests", "testing")

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

    def key(self) -> str:
        return json.dumps(
            [self.version, self.implementation, list(self.abis), list(self.platforms)]
        )


# --- the target's dependencies -----------------------------------------------------------------


@dataclass(frozen=True)
class Dependencies:
    requirements: tuple[str, ...]
    """Requirement lines for pip, in a stable order, pytest included."""
    fingerprint: bytes
    """What the image hash covers: the declarations, not unrelated pyproject.toml edits."""


def collect_dependencies(repo: Path) -> Dependencies:
    """Read `[project] dependencies`, test extras/groups and requirements*.txt of `repo`."""
    reqs: list[str] = []
    parts: list[bytes] = []
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SandboxError(f"Cannot read {pyproject} to find its dependencies: {exc}.") from exc
        project = data.get("project", {}) if isinstance(data.get("project"), dict) else {}
        found = _strings(project.get("dependencies"))
        extras = project.get("optional-dependencies")
        groups = data.get("dependency-groups")
        own = str(project.get("name", "")).strip()
        for table in (extras, groups):
            if isinstance(table, dict):
                for name in _TEST_GROUPS:
                    found += _strings(table.get(name))
        # `pkg[test]` pointing at the project itself (a common idiom in extras) is not on PyPI.
        found = [r for r in found if not own or _req_name(r) != _normalize(own)]
        reqs += found
        parts.append(b"pyproject:" + json.dumps(found).encode("utf-8"))
    root = repo.resolve()
    seen: set[Path] = set()
    for path in sorted(root.glob("requirements*.txt")):
        lines, files = _requirement_lines(path, root, seen)
        reqs += lines
        for file in files:
            parts.append(b"file:" + file.relative_to(root).as_posix().encode() + b"\0")
            parts.append(file.read_bytes())
    reqs += [r for r in _ALWAYS if _normalize(r) not in {_req_name(x) for x in reqs}]
    unique = tuple(dict.fromkeys(r.strip() for r in reqs if r.strip()))
    return Dependencies(unique, b"\0\0".join(parts))


def _strings(value: object) -> list[str]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return _normalize(match.group(1)) if match else ""


def _requirement_lines(path: Path, repo: Path, seen: set[Path]) -> tuple[list[str], list[Path]]:
    """Requirement lines of a requirements file, following `-r`; local/editable lines dropped."""
    path = path.resolve()
    if path in seen or not path.is_file() or not path.is_relative_to(repo):
        return [], []
    seen.add(path)
    lines: list[str] = []
    files = [path]
    text = path.read_text("utf-8", errors="replace")
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ", "-r", "--requirement=")):
            target = re.sub(r"^(-r|--requirement)[ =]?", "", line).strip()
            more, more_files = _requirement_lines(path.parent / target, repo, seen)
            lines += more
            files += more_files
            continue
        # Options (-e, -c, --index-url, --hash...) and local paths are not requirements the
        # host can download as wheels; the repository's own code goes in as a tree.
        if line.startswith(("-", ".", "/", "file:")):
            continue
        lines.append(line.split(" --hash", 1)[0].strip())
    return lines, files


def build_wheelhouse(
    deps: Dependencies, info: PythonInfo, wheelhouse_root: Path, progress: Progress = no_progress
) -> Path:
    """Download wheels for `deps` that `info`'s Python accepts; cached by (deps, platform)."""
    key = hashlib.sha256("\n".join([*deps.requirements, info.key()]).encode("utf-8")).hexdigest()[
        :20
    ]
    target = wheelhouse_root / key
    if (target / ".complete").is_file():
        progress(f"wheelhouse {target} is up to date")
        return target
    wheelhouse_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=wheelhouse_root))
    try:
        (partial / "requirements.txt").write_text("\n".join(deps.requirements) + "\n", "utf-8")
        argv = _pip_download(info, partial, partial / "requirements.txt")
        progress(
            f"downloading wheels for Python {info.version} ({info.platforms[0]}) on the host: "
            + ", ".join(deps.requirements)
        )
        start = time.monotonic()
        proc = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
        if proc.returncode != 0:
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
        wheels = sorted(p.name for p in partial.glob("*.whl"))
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


def _pip_download(info: PythonInfo, dest: Path, requirements: Path) -> list[str]:
    """`pip download` of binary wheels for `info`'s Python and platform only."""
    argv = [
        sys.executable, "-m", "pip", "download",
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
