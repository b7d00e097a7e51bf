"""The repository as a run will see it: HEAD, its benchmarks, its dependency declarations.

A run judges the committed tree (HEAD), never the working directory: a benchmark that is on
disk but not committed does not exist for it, and with no benchmark left the `auto` judge
quietly becomes `fix`. These checks read git's objects and the file names on disk; nothing of
the repository runs here.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from selfcode.config import Settings
from selfcode.doctor.checks import Check, Stopwatch
from selfcode.errors import ConfigError
from selfcode.gate.config import GateConfig
from selfcode.gate.judge import discover_benchmarks
from selfcode.git.store import GitStore
from selfcode.sandbox.deps import DependencySet, collect_dependencies

BENCH_GLOB = "benchmarks/bench_*.py"


def head_check(store: GitStore) -> Check:
    dirty = store.is_dirty()
    return Check(name="commit", ok=True, detail=f"the run starts from HEAD "
                 f"({store.head_commit()[:10]})" + ("; uncommitted changes to tracked files are "
                                                    "ignored" if dirty else ""))


def benchmark_files(root: Path, config: GateConfig) -> list[str]:
    """The benchmark scripts in the working directory (relative paths): every
    benchmarks/bench_*.py, or the files the declared commands name."""
    if config.benchmarks:
        named = {token for command in config.benchmarks.values()
                 for token in shlex.split(command)[1:] if not token.startswith("-")}
        return sorted(t for t in named if _inside(root, t) and (root / t).is_file())
    return sorted(p.relative_to(root).as_posix() for p in root.glob(BENCH_GLOB) if p.is_file())


def _inside(root: Path, relative: str) -> bool:
    return not Path(relative).is_absolute() and ".." not in Path(relative).parts


def uncommitted(on_disk: list[str], committed: set[str]) -> list[str]:
    """The benchmark files of the working directory that HEAD does not have."""
    return [path for path in on_disk if path not in committed]


def benchmark_check(store: GitStore, settings: Settings) -> Check:
    """Found, and committed; and which judge they make."""
    watch = Stopwatch()
    head = store.list_files("HEAD")
    found = discover_benchmarks(head, settings.gate, "python")
    goal = _goal(settings.gate, found)
    on_disk = benchmark_files(store.root, settings.gate)
    missing = uncommitted(on_disk, set(head))
    source = ("[tool.selfcode.benchmarks]" if settings.gate.benchmarks else BENCH_GLOB)
    if missing:
        names = " ".join(shlex.quote(p) for p in missing)
        effect = (f"so candidates would be judged by {goal} instead of speed" if not found
                  else "so the run would measure without it")
        return Check(name="benchmarks", ok=False, seconds=watch.seconds, detail=(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} on disk but not "
            f"committed, {effect}; commit {'it' if len(missing) == 1 else 'them'}: "
            f"git add {names} && git commit"))
    if not found:
        if goal == "speed":
            return Check(name="benchmarks", ok=False, seconds=watch.seconds, detail=(
                f"--judge speed needs benchmarks and none are committed; add {BENCH_GLOB} "
                "scripts (or [tool.selfcode.benchmarks] commands) and commit them."))
        return Check(name="benchmarks", ok=True, seconds=watch.seconds, detail=(
            f"none committed ({BENCH_GLOB} or [tool.selfcode.benchmarks]); candidates are "
            f"judged by {goal}: add benchmark scripts and commit them to judge by speed"))
    used = "" if goal == "speed" else f"; not used: candidates are judged by {goal}"
    changed = _changed(store, [p for p in on_disk if p in set(head)])
    check = Check(name="benchmarks", ok=True, seconds=watch.seconds, detail=(
        f"{len(found)} committed ({source}): {', '.join(found)}{used}"))
    if changed:
        check = check.model_copy(update={"ok": False, "required": False, "detail": (
            f"{', '.join(changed)} {'has' if len(changed) == 1 else 'have'} uncommitted "
            f"changes, and the run measures the committed version; commit them: git commit "
            f"{' '.join(shlex.quote(p) for p in changed)}")})
    return check


def _goal(config: GateConfig, found: dict[str, list[str]]) -> str:
    """The judge `auto` becomes (gate/judge.py decides it the same way, for the dry run)."""
    return config.judge if config.judge != "auto" else ("speed" if found else "fix")


def _changed(store: GitStore, paths: list[str]) -> list[str]:
    """Which of `paths` (tracked) differ from HEAD in the index or the working directory."""
    if not paths:
        return []
    out = store.git("diff", "--no-ext-diff", "--no-textconv", "--name-only", "HEAD", "--",
                    *paths)
    return [line for line in out.splitlines() if line.strip()]


def dependency_check(store: GitStore, settings: Settings) -> tuple[Check, DependencySet | None]:
    """The declarations the image is built from, read from HEAD's objects as a run reads them
    (`sandbox.deps.collect_dependencies`), and which files they came from."""
    watch = Stopwatch()
    sha = store.resolve("HEAD")
    listing = store.list_files(sha)
    read: list[str] = []

    def reader(path: str) -> str | None:
        read.append(path)
        return store.read_files(sha, [path]).get(path)

    docker = settings.sandbox.backend == "docker"
    try:
        deps = collect_dependencies(reader, listing, origin=f"commit {sha[:10]}")
    except ConfigError as exc:
        return Check(name="dependencies", ok=False, required=docker, seconds=watch.seconds,
                     detail=str(exc)), None
    return Check(name="dependencies", ok=True, seconds=watch.seconds,
                 detail=dependency_sentence(deps, read, docker)), deps


def dependency_sentence(deps: DependencySet, read: list[str], docker: bool) -> str:
    files = ", ".join(dict.fromkeys(read)) or "no declaration files (pyproject.toml, setup.cfg, " \
        "setup.py, requirements*.txt)"
    added = [tool for tool in ("pytest", "hypothesis") if tool in deps.requirements]
    sentence = (f"read {files} at {deps.origin}: {len(deps.requirements)} requirement(s)"
                + (f" ({' and '.join(added)} added for the judge)" if added else "")
                + (f", {len(deps.constraints)} constraint(s)" if deps.constraints else ""))
    if deps.notes:
        sentence += "; not read: " + "; ".join(deps.notes)
    if not docker:
        sentence += ("; the local sandbox installs none of them: they must be importable by the "
                     "Python that runs selfcode")
    return sentence
