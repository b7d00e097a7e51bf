"""Sealed trees made ready to judge: installed the way users install them, and precompiled.

Standard library only, like the harness.

Install. A tree with a `setup.py`, or a `pyproject.toml` that declares a `[project]` or a
`[build-system]`, is installed as its users would: `pip install --no-deps --no-build-isolation
--no-index --target SITE COPY`, with the sandbox's own build backends (the image has the
baseline's `[build-system] requires`), run as the candidate uid (a build backend may run the
tree's code) on a scratch copy in a run directory, so no build artefact (`build/`, `*.egg-info`)
lands in the judged tree. Of the result the judge keeps only the `*.dist-info` directories
(metadata, entry points) and the console scripts (`bin/`), sealed read-only in
{judge_dir}/sites/NAME/{lib,bin}; the installed copy of the package is dropped, so the code that
runs is the tree's own (first on the import path, selfcode_trees.base_env). The console scripts'
shebang is the sandbox's Python; they import the tree's code through that path.

A candidate's install must look like the baseline's: the same distributions (names and
versions), the same entry points and the same console scripts, and nothing at the top of
site-packages that neither the baseline's install had nor the candidate's tree itself has at an
import root. A build is the one place where a patch could add a plugin (pytest loads every
distribution's `pytest11` entry points) or a `.pth`/`sitecustomize` that the judged processes or
the users' installs would run: such an install rejects the candidate, even though the judge
would drop those files anyway.

Precompile. The judged processes import with PYTHONDONTWRITEBYTECODE=1 from read-only trees,
so without bytecode every process compiles every module it imports, which dominates short
benchmarks. After sealing, the judge compiles every `.py` of the tree once, the same way on
both sides, outside every measured run: forced (whatever `__pycache__` the tree came with is
overwritten) and with checked hashes (copies keep no mtimes; a pyc whose source hash does not
match is never used, so a stale or forged one cannot stand in for the reviewed source).
"""

from __future__ import annotations

import hashlib
import json
import os
import py_compile
import stat
import sys
import time
from typing import Any

import selfcode_files as files
from selfcode_proc import run_measured
from selfcode_trees import RunDir, site_path, tree_path

KEEP_LIMIT = 32 * 1024 * 1024  # bytes of metadata and scripts kept of one install
MANIFEST = "manifest.json"
_IMPORT_ROOTS = ("", "src")
# pip's framing of a failed build: what is left is the backend's own last words.
_PIP_NOISE = ("note:", "hint:", "×", "╰─>", "│", "[end of output]", "error: subprocess-exited",
              "error: metadata-generation-failed", "See above for", "This error originates",
              "This is an issue with the package", "[notice]", "Processing ", "Preparing ",
              "Building ", "Getting requirements", "Installing build dependencies")


def installable(tree: str) -> bool:
    """Whether users would `pip install` the tree: a setup.py, or a pyproject.toml that names a
    project or a build system (one with only tool settings is no package)."""
    if _regular(os.path.join(tree, "setup.py")):
        return True
    text = files.read_regular(os.path.join(tree, "pyproject.toml"), 4 * 1024 * 1024)
    if text is None:
        return False
    try:
        import tomllib
        data = tomllib.loads(text.decode("utf-8"))
    except (ImportError, ValueError):
        return True  # let pip say what it makes of it
    return isinstance(data.get("project"), dict) or isinstance(data.get("build-system"), dict)


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def prepare(guard: Any, name: str, timeout: float, like: str | None = None) -> dict[str, Any]:
    """Precompile the sealed tree NAME and install it; the report's install fields.

    `like`: the tree whose install the new one must resemble (the baseline, for a candidate).
    """
    precompile(tree_path(guard, name))
    site = site_path(guard, name)
    files.remove_tree(site)
    if not installable(tree_path(guard, name)):
        return {}
    start = time.monotonic()
    problem = _install(guard, name, site, timeout, like)
    seconds = round(time.monotonic() - start, 3)
    if problem:
        files.remove_tree(site)
        return {"install_seconds": seconds, "install_error": problem}
    return {"install_seconds": seconds}


def _install(guard: Any, name: str, site: str, timeout: float, like: str | None) -> str | None:
    with RunDir(guard) as run:
        work = run.copy_of(tree_path(guard, name))
        target = os.path.join(run.path, "site")
        argv = [sys.executable, "-I", "-m", "pip", "install", "--isolated", "--no-deps",
                "--no-build-isolation", "--no-index", "--no-cache-dir",
                "--disable-pip-version-check", "--no-input", "--no-compile",
                "--no-warn-script-location", "--progress-bar", "off", "--target", target, work]
        result = run_measured(guard, argv, run.path, _pip_env(run.path), timeout)
        guard.kill_all()  # nothing of the build may still change what is read below
        if result.problem:
            return result.problem
        if result.timed_out:
            return f"pip did not finish within {timeout:g}s"
        if result.exit_code != 0:
            output = result.stderr_tail or result.stdout.decode("utf-8", "replace")
            return pip_reason(output.replace(work + "/", "").replace(run.path + "/", ""))
        manifest, problem = survey(target)
        if problem is None and like is not None:
            problem = differs(manifest, _manifest_of(site_path(guard, like)),
                              tree_path(guard, name))
        if problem is None:
            _keep(target, site, manifest)
        return problem


def _pip_env(home: str) -> dict[str, str]:
    """pip's whole environment: no configuration, no index, no cache, nothing of the judge's."""
    return {
        "PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": home,
        "TMPDIR": home, "PIP_CONFIG_FILE": os.devnull, "PYTHONDONTWRITEBYTECODE": "1",
        # The judged trees carry no .git: a version taken from git (setuptools-scm, hatch-vcs)
        # would stop the build, so both sides get this one.
        "SETUPTOOLS_SCM_PRETEND_VERSION": "0+selfcode",
        "SOURCE_DATE_EPOCH": "315532800",
    }


def pip_reason(output: str) -> str:
    """The last lines of a failed pip run that say why, without pip's framing."""
    lines = []
    for raw in output.splitlines():
        line = raw.strip()
        if line and not line.startswith(_PIP_NOISE) and line.strip("^~ "):
            lines.append(line)
    return " | ".join(lines[-3:])[-600:] or "pip failed without saying why"


# --- what an install made ----------------------------------------------------------------------


def survey(site: str) -> tuple[dict[str, Any], str | None]:
    """What a `pip install --target` made: its distributions, their entry points (hashed), its
    console scripts and its other top-level names; and why it cannot be kept, if it cannot."""
    manifest: dict[str, Any] = {"dists": [], "entry_points": {}, "scripts": [], "others": []}
    size = 0
    for entry in sorted(os.listdir(site)) if os.path.isdir(site) else []:
        path = os.path.join(site, entry)
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        if is_dir and entry.endswith(".dist-info"):
            manifest["dists"].append(entry)
            points = files.read_regular(os.path.join(path, "entry_points.txt"), KEEP_LIMIT)
            manifest["entry_points"][entry] = hashlib.sha256(points or b"").hexdigest()
        elif is_dir and entry == "bin":
            manifest["scripts"] = sorted(os.listdir(path))
        else:
            manifest["others"].append(entry)
            continue
        found, problem = _plain_files(path)
        size += found
        if problem or size > KEEP_LIMIT:
            return manifest, problem or f"its install keeps more than {KEEP_LIMIT} bytes"
    return manifest, None


def _plain_files(top: str) -> tuple[int, str | None]:
    """Total size of the regular files under `top`; a problem for anything else (a link...)."""
    size = 0
    for folder, dirs, names in os.walk(top):
        for name in [*dirs, *names]:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                size += info.st_size
            elif not stat.S_ISDIR(info.st_mode):
                rel = os.path.relpath(os.path.join(folder, name), os.path.dirname(top))
                return size, f"its install made {rel}, which is not a regular file"
    return size, None


def differs(new: dict[str, Any], old: dict[str, Any] | None, tree: str) -> str | None:
    """Why the candidate's install (`new`) does not look like the baseline's (`old`)."""
    old = old or {"dists": [], "entry_points": {}, "scripts": [], "others": []}
    if new["dists"] != old["dists"]:
        return (f"its install makes the distributions {new['dists']} where the baseline's made "
                f"{old['dists']}")
    if new["entry_points"] != old["entry_points"]:
        return "its install declares other entry points than the baseline's"
    if new["scripts"] != old["scripts"]:
        return (f"its install makes the console scripts {new['scripts']} where the baseline's "
                f"made {old['scripts']}")
    own = set()
    for root in _IMPORT_ROOTS:
        with_root = os.path.join(tree, root)
        own |= set(os.listdir(with_root)) if os.path.isdir(with_root) else set()
    added = [n for n in new["others"] if n not in old["others"] and n not in own]
    if added:
        return (f"its install adds {', '.join(added)} to site-packages, which neither its tree "
                "nor the baseline's install has")
    return None


def _manifest_of(site: str) -> dict[str, Any] | None:
    data = files.read_regular(os.path.join(site, MANIFEST), KEEP_LIMIT)
    return None if data is None else dict(json.loads(data))


def _keep(target: str, site: str, manifest: dict[str, Any]) -> None:
    """Copy the distributions and scripts into `site`, read-only, with the manifest."""
    os.makedirs(os.path.dirname(site), mode=0o755, exist_ok=True)
    os.mkdir(site, 0o700)
    lib = os.path.join(site, "lib")
    os.mkdir(lib, 0o700)
    for dist in manifest["dists"]:
        files.copy_tree(os.path.join(target, dist), os.path.join(lib, dist), readonly=True)
    if os.path.isdir(os.path.join(target, "bin")):
        files.copy_tree(os.path.join(target, "bin"), os.path.join(site, "bin"), readonly=True)
    path = os.path.join(site, MANIFEST)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    os.chmod(path, 0o444)
    os.chmod(lib, 0o555)
    os.chmod(site, 0o555)


# --- bytecode ----------------------------------------------------------------------------------


def precompile(tree: str) -> int:
    """Compile every regular `.py` of the sealed tree into its `__pycache__`, forced (a pyc
    already there is replaced), with checked hashes; the number compiled. The tree's own
    `__pycache__` directories go first, whatever is in them (nothing here follows a link)."""
    compiled = 0
    for folder, dirs, names in os.walk(tree):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        sources = [n for n in names if n.endswith(".py") and _regular(os.path.join(folder, n))]
        cache = os.path.join(folder, "__pycache__")
        if not sources:
            continue
        mode = stat.S_IMODE(os.lstat(folder).st_mode)
        os.chmod(folder, 0o755)
        try:
            if os.path.lexists(cache):
                # Whatever bytecode the tree came with goes (an optimised or another tag's pyc
                # would not be replaced), and a link of that name, which Python would follow.
                files.remove_tree(cache)
            for name in sources:
                compiled += _compile(os.path.join(folder, name), cache)
            _seal_cache(cache, mode)
        finally:
            os.chmod(folder, mode)
    return compiled


def _compile(source: str, cache: str) -> bool:
    """What `compileall -f --invalidation-mode checked-hash` does for one file, into the
    tree's own `__pycache__` (the harness runs with a pycache prefix of its own, which
    compileall would follow). A file that does not compile is left to fail where it is run."""
    stem = os.path.basename(source)[:-3]
    target = os.path.join(cache, f"{stem}.{sys.implementation.cache_tag}.pyc")
    try:
        return py_compile.compile(source, cfile=target, doraise=True, quiet=2,
                                  invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
                                  ) is not None
    except (py_compile.PyCompileError, OSError, RecursionError, MemoryError):
        return False


def _seal_cache(cache: str, mode: int) -> None:
    if not os.path.isdir(cache):
        return
    for name in os.listdir(cache):
        path = os.path.join(cache, name)
        if _regular(path):
            os.chmod(path, 0o444)
    os.chmod(cache, mode)
