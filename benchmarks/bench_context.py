"""Context building: what the model sees of a 3,000-module repository, candidate after candidate.

Covers src/selfcode/prompt/context.py (the repository map, outlines, following imports,
peripheral filtering), focus.py (`ContextBuilder`: the target's file or its excerpt, callers,
other hotspots, imports, the benchmarks), targets.py (`targets_of` over a profile,
`choose_target`) and trim.py, as `run/propose.py` drives them: one builder per baseline, one
`sections()` per candidate, a trim after a context overflow.

Why this size: a large library (3,000 modules in 30 packages plus tests, docs and examples,
3,400 files, with five 15 kB hot modules) is where the per-candidate costs show: the map filters
and sorts every path of the tree for every candidate, imports are followed through relative
and absolute imports, and large hot files are cut into excerpts by the AST. A run judged by
speed (four candidates aimed at targets, the last one trimmed) and one judged by its tests
(two candidates given the files the benchmarks import, tests and docs in the map) keep it at
about half a second natively. Generating the tree (a template per module, each file written
once) is a tenth of that.

stdout carries only a digest of every candidate's context (paths, sizes, a hash of each text),
which is the same on every run and for every correct implementation; timings go to stderr.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.gate.config import GateConfig
from selfcode.gate.protected import protected_violations
from selfcode.prompt.context import Attempt, peripheral
from selfcode.prompt.focus import ContextBuilder
from selfcode.prompt.targets import Target, choose_target, targets_of
from selfcode.prompt.trim import PromptSections, trim_context
from selfcode.sandbox.results import ProfileRun

SEED = 20_261_201
PACKAGES = 30
MODULES_PER_PACKAGE = 100
HOT_MODULES = 5
HOT_FUNCTIONS = 64
SPEED_CANDIDATES = 4
FIX_CANDIDATES = 2
MAX_CONTEXT_CHARS = 60_000  # config.AgentConfig.max_context_chars
ENTRY_POINTS = ["benchmarks/bench_app.py"]

MODULE = '''"""{pkg}.{mod}: generated."""

from __future__ import annotations

import os
from . import {sibling}
from ..{other_pkg} import {other_mod}
from lib.{far_pkg}.{far_mod} import compute_0

LIMIT_{n} = {n}


class Record{n}:
    """A row of {mod}."""

    def __init__(self, value: int = {n}, name: str = "{mod}") -> None:
        self.value, self.name = value, name

    def scaled(self, factor: float = 1.5) -> float:
        return self.value * factor + {sibling}.LIMIT_{sib_n}

    def label(self, *parts: str, sep: str = "-") -> str:
        return sep.join([self.name, *parts])

'''

FUNCTION = '''
def compute_{k}(values: list[int], factor: int = {k}, *, cap: int | None = None) -> int:
    total = 0
    for v in values[{k}:]:
        total += v * factor
    return min(total, cap) if cap is not None else total + compute_0(values[:1])
'''


FUNCTIONS = ["".join(FUNCTION.format(k=k) for k in range(n)) for n in range(HOT_FUNCTIONS + 1)]
"""The first n functions of a module, formatted once: generating the tree stays cheap."""


def module_text(rng: random.Random, p: int, m: int) -> str:
    sib = rng.randrange(MODULES_PER_PACKAGE)
    head = MODULE.format(
        pkg=f"p{p:02}", mod=f"m{m:03}", n=p * MODULES_PER_PACKAGE + m, sibling=f"m{sib:03}",
        sib_n=p * MODULES_PER_PACKAGE + sib, other_pkg=f"p{rng.randrange(PACKAGES):02}",
        other_mod=f"m{rng.randrange(MODULES_PER_PACKAGE):03}",
        far_pkg=f"p{rng.randrange(PACKAGES):02}",
        far_mod=f"m{rng.randrange(MODULES_PER_PACKAGE):03}")
    return head + FUNCTIONS[rng.randrange(3, 9)]


def hot_text(h: int) -> str:
    body = FUNCTIONS[HOT_FUNCTIONS]
    return (f'"""The hot path {h}."""\n\nfrom lib.p{h:02} import m000\nfrom . import '
            f"engine{(h + 1) % HOT_MODULES}\n\nLIMIT_{h} = {h}\n\ndef compute_0(values):\n"
            f"    return sum(values)\n{body}")


def generate(root: Path) -> list[str]:
    """The tree, written under `root`; its file list as `git ls-files` gives it."""
    rng = random.Random(SEED)
    files: dict[str, str] = {"src/lib/__init__.py": "from .core import engine0\n",
                             "src/lib/core/__init__.py": "", "pyproject.toml": "[project]\n",
                             "README.md": "# lib\n", "docs/conf.py": "project = 'lib'\n"}
    for p in range(PACKAGES):
        files[f"src/lib/p{p:02}/__init__.py"] = f"from . import m000, m{p + 1:03}\n"
        for m in range(MODULES_PER_PACKAGE):
            files[f"src/lib/p{p:02}/m{m:03}.py"] = module_text(rng, p, m)
        for t in range(0, MODULES_PER_PACKAGE, 25):
            files[f"tests/p{p:02}/test_m{t:03}.py"] = f"from lib.p{p:02} import m{t:03}\n"
            files[f"docs/p{p:02}/page{t:03}.rst"] = "Title\n=====\n"
            files[f"examples/p{p:02}_{t:03}.py"] = f"import lib.p{p:02}.m{t:03}\n"
    for h in range(HOT_MODULES):
        files[f"src/lib/core/engine{h}.py"] = hot_text(h)
    files[ENTRY_POINTS[0]] = ("import lib\nfrom lib.core import engine0, engine1\n"
                              + "".join(f"import lib.p{p:02}.m{p:03}\n" for p in range(PACKAGES))
                              + "print(engine0.compute_3([1, 2, 3]))\n")
    for folder in sorted({path.rpartition("/")[0] for path in files}):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for path, text in files.items():
        with open(os.path.join(root, path), "w", encoding="utf-8") as out:
            out.write(text)
    return sorted(files)


def profile_of(files: list[str]) -> ProfileRun:
    """A baseline's profile: three benchmarks, each time spread over hot and ordinary modules,
    with comprehensions that stand for their functions and callers in other modules."""
    rng = random.Random(SEED + 1)
    modules = [f for f in files if f.startswith("src/lib/p") and not f.endswith("__init__.py")]
    benches = []
    for b in range(3):
        spots = []
        for s in range(60):
            hot = s < 20
            file = f"src/lib/core/engine{s % HOT_MODULES}.py" if hot else rng.choice(modules)
            k = rng.randrange(1, HOT_FUNCTIONS if hot else 3)
            line = 10 + 6 * k if hot else 30 + 6 * k
            name = "<listcomp>" if s % 7 == 6 else f"compute_{k}"
            callers = [{"file": file, "line": line, "name": f"compute_{k}", "calls": 3}] \
                if name.startswith("<") else \
                [{"file": rng.choice(modules), "line": 40, "name": "compute_1", "calls": c}
                 for c in range(rng.randrange(1, 6))]
            share = (0.30 / (s + 1)) if hot else 0.002
            spots.append({"file": file, "line": line, "name": name, "calls": 100 + s,
                          "own_s": share, "cum_s": share * 2, "own_share": share,
                          "cum_share": min(1.0, share * 2), "callers": callers,
                          "lines": [{"line": line + d, "hits": 10, "seconds": 0.01 * d}
                                    for d in range(1, 5)]})
        benches.append({"name": f"bench{b}", "total_s": 1.0, "hotspots": spots})
    return ProfileRun.model_validate({"python": "3.11.2", "benchmarks": benches})


def digest(sections: PromptSections[Attempt]) -> str:
    h = hashlib.sha256()
    for path, text in sections.files.items():
        h.update(f"{path}\0{len(text)}\0".encode())
        h.update(text.encode())
    h.update(sections.repo_map.encode())
    h.update("\0".join(sorted(sections.partial)).encode())
    return h.hexdigest()


def speed_baseline(root: Path, files: list[str], profile: ProfileRun,
                   protected: list[str]) -> list[str]:
    """A run judged by speed: one builder, one context per candidate aimed at a target."""
    builder = ContextBuilder(root, files, protected, MAX_CONTEXT_CHARS, ENTRY_POINTS)
    targets: list[Target] = targets_of(profile, lambda p: not peripheral(p)
                                       and not protected_violations([p], protected))
    lines = [f"targets {len(targets)} {' '.join(t.key for t in targets)}"]
    attempts: list[Attempt] = []
    history: list[tuple[str, str]] = []
    for n in range(1, SPEED_CANDIDATES + 1):
        target = choose_target(targets, history)
        assert target is not None
        sections = builder.sections(target, targets, attempts)
        if n == SPEED_CANDIDATES:  # the model said the prompt is too long
            sections = trim_context(sections, 0.6)
        status = "accepted" if n == 2 else "rejected"
        lines.append(f"candidate {n} {target.key} files {len(sections.files)} partial "
                     f"{len(sections.partial)} chars {sections.chars()} {digest(sections)}")
        attempts.append(Attempt(n=n, summary=f"attempt {n}", status=status,
                                reasons=["benchmark bench0 was not faster"]))
        history.append((target.key, status))
    return lines


def fix_baseline(root: Path, files: list[str], protected: list[str]) -> list[str]:
    """A run judged by its tests: no profile, so every candidate gets the files the
    benchmarks import, and the map includes tests and docs."""
    builder = ContextBuilder(root, files, protected, MAX_CONTEXT_CHARS, ENTRY_POINTS,
                             include_peripheral=True, excerpts=False)
    lines = []
    attempts: list[Attempt] = []
    for n in range(1, FIX_CANDIDATES + 1):
        sections = builder.fallback(attempts)
        lines.append(f"fix candidate {n} files {len(sections.files)} chars {sections.chars()} "
                     f"{digest(sections)}")
        attempts.append(Attempt(n=n, summary=f"fix {n}", status="rejected",
                                reasons=["1 newly failing test"]))
    return lines


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-context-") as tmp:
        root = Path(tmp)
        files = generate(root)
        generated = time.perf_counter()
        profile = profile_of(files)
        protected = GateConfig().protected
        lines = [f"files {len(files)} python {sum(f.endswith('.py') for f in files)}"]
        lines += speed_baseline(root, files, profile, protected)
        lines += fix_baseline(root, files, protected)
        done = time.perf_counter()
    print("\n".join(lines))
    print(f"digest {hashlib.sha256(chr(10).join(lines).encode()).hexdigest()}")
    print(f"generate {generated - started:.3f} s, contexts {done - generated:.3f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
