"""The harness's side of the judge's cascade (gate/cascade.py): the cheap stages that may reject
a candidate before its full test suite runs. Standard library only, like the harness.

    python harness.py tests OPTIONS --tree NAME --coverage ...   (the baseline's map, once)
    python harness.py tests OPTIONS --tree NAME --select FILE ... (those tests, with -x)
    python harness.py imports OPTIONS --a NAME --b NAME --paths JSON [--timeout S]

`--coverage` loads selfcode_coverage.py into the run and reports, per file of the tree, which of
the collected tests executed it, as ranges of their positions in the collected ids (tests of a
module are adjacent, so a file's tests are a few ranges). `--select` keeps only the named tests
(selfcode_select.py) and stops at the first failure. `imports` imports the changed modules of
tree B in a fresh interpreter as the candidate; a module that fails is imported in tree A too,
and counts as broken only where A's imports (or A has no such file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import selfcode_files as files
from selfcode_proc import HarnessError, run_measured

COVER_ENV = "SELFCODE_COVERAGE_FD"
COVER_FD = 1018
SELECT_ENV = "SELFCODE_SELECT_FILE"
SELECT_LIMIT = 16 * 1024 * 1024
MAX_FILES = 100_000
MAX_PATH = 1_000
MAX_MODULES = 1_000
ERROR_KEEP = 300

# Run by the candidate uid in a fresh interpreter: one JSON line per module. Its output is the
# candidate's to forge, which can only spare it this early rejection (the tests still run).
_IMPORT_SCRIPT = r"""
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
        error = None
    except BaseException as exc:
        lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
        error = lines[0] if lines else type(exc).__name__
    sys.stdout.write("\n" + json.dumps({"selfcode_module": name, "error": error}) + "\n")
    sys.stdout.flush()
"""


def add_options(tests: argparse.ArgumentParser) -> None:
    tests.add_argument("--coverage", action="store_true")
    tests.add_argument("--select", default=None)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    imports = sub.add_parser("imports", parents=[common])
    imports.add_argument("--a", required=True)
    imports.add_argument("--b", required=True)
    imports.add_argument("--paths", required=True)


class TestExtras:
    """What `--coverage` and `--select` add to one tests run: plugins, pipes, environment."""

    def __init__(self, args: argparse.Namespace, run_path: str, env: dict[str, str]) -> None:
        self.argv: list[str] = []
        self.pass_fds: dict[int, int] = {}
        self.drain: list[int] = []
        self.cover_read: int | None = None
        if getattr(args, "select", None):
            data = files.read_regular(os.path.abspath(args.select), SELECT_LIMIT)
            if data is None:
                raise HarnessError("the selection of tests is missing or too large")
            path = os.path.join(run_path, "selected.txt")
            with open(path, "wb") as fh:
                fh.write(data)
            os.chmod(path, 0o444)
            env[SELECT_ENV] = path
            self.argv += ["-p", "selfcode_select", "-x"]
        if getattr(args, "coverage", False):
            read_end, write_end = os.pipe()
            self.pass_fds[COVER_FD] = write_end
            self.drain.append(read_end)
            self.cover_read = read_end
            env[COVER_ENV] = str(COVER_FD)
            self.argv += ["-p", "selfcode_coverage"]

    def close(self) -> None:
        for fd in self.drain:
            os.close(fd)

    def report(self, streams: dict[int, bytes], collected: list[str] | None) -> dict[str, Any]:
        """The coverage map, for a recording run (streams are keyed by our fd numbers)."""
        if self.cover_read is None:
            return {}
        return {"coverage": coverage_ranges(streams.get(self.cover_read, b""), collected)}


def coverage_ranges(data: bytes, collected: list[str] | None) -> dict[str, list[list[int]]] | None:
    """The plugin's records as {path: [[start, stop], ...]} over positions in `collected`;
    None when the records cannot be read (the map is then not used)."""
    if collected is None or (data and not data.endswith(b"\n")):
        return None
    position = {nodeid: i for i, nodeid in enumerate(collected)}
    paths: list[str] = []
    hits: dict[int, list[int]] = {}
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        if "t" not in record:
            path = record.get("f")
            if not isinstance(path, str) or len(path) > MAX_PATH or len(paths) >= MAX_FILES:
                return None
            paths.append(path)
            continue
        test, found = position.get(record["t"]), record.get("f")
        if not isinstance(found, list):
            return None
        for index in found:
            if isinstance(index, int) and 0 <= index < len(paths) and test is not None:
                hits.setdefault(index, []).append(test)
    return {paths[i]: _ranges(sorted(set(tests))) for i, tests in hits.items()}


def _ranges(positions: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for p in positions:
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return out


def module_name(tree: str, path: str) -> str | None:
    """The importable module of the tree's file `path`, if it lies in one of its packages
    (every directory on the way has an `__init__.py`); `__main__` modules are never imported."""
    root = "src/" if os.path.isdir(os.path.join(tree, "src")) and path.startswith("src/") else ""
    parts = path[len(root):].removesuffix(".py").split("/")
    if not path.endswith(".py") or len(parts) < 2 or parts[-1] == "__main__":
        return None
    if not all(part.isidentifier() for part in parts):
        return None
    for depth in range(1, len(parts)):
        if not os.path.isfile(os.path.join(tree, root, *parts[:depth], "__init__.py")):
            return None
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import(guard: Any, tools: Any, name: str, modules: list[str],
            timeout: float) -> dict[str, str | None]:
    """Each module's import error (None: it imported) in a fresh interpreter of tree NAME;
    a module missing from the result did not say (the interpreter died or hung)."""
    tree = tools.tree_path(guard, name)
    env = tools.base_env(tree, tools.site_path(guard, name))
    argv = [sys.executable, "-c", _IMPORT_SCRIPT, json.dumps(modules)]
    result = run_measured(guard, argv, tree, env, timeout)
    found: dict[str, str | None] = {}
    for line in result.stdout.splitlines():
        if not line.startswith(b'{"selfcode_module"'):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        error = record.get("error")
        if record.get("selfcode_module") in modules and (error is None or isinstance(error, str)):
            found[record["selfcode_module"]] = error[:ERROR_KEEP] if error else None
    return found


def cmd_imports(args: argparse.Namespace, guard: Any, tools: Any) -> dict[str, Any]:
    paths = json.loads(args.paths)
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise HarnessError("imports: --paths must be a list of paths")
    tree_a, tree_b = tools.tree_path(guard, args.a), tools.tree_path(guard, args.b)
    by_module = {}
    for path in paths[:MAX_MODULES]:
        name = module_name(tree_b, path)
        if name and os.path.isfile(os.path.join(tree_b, path)):
            by_module[name] = path
    modules = sorted(by_module)
    if not modules:
        return {"kind": "imports", "modules": [], "broken": {}}
    candidate = _import(guard, tools, args.b, modules, args.timeout)
    failed = [m for m in modules if candidate.get(m)]
    old = [m for m in failed if os.path.isfile(os.path.join(tree_a, by_module[m]))]
    baseline = _import(guard, tools, args.a, old, args.timeout) if old else {}
    broken = {m: candidate[m] for m in failed
              if m not in old or (m in baseline and baseline[m] is None)}
    return {"kind": "imports", "modules": modules, "broken": broken}
