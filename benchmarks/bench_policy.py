"""Patch policy: reading candidate diffs the way the judge does before anything reaches the sandbox.

Covers src/selfcode/gate/diffs.py (`parse_unified_diff`: sections, extended git headers,
renames, modes, binary markers, hunk counting, `diff_stats`), paths.py (`validate_path`,
`lookalike_violations`), protected.py, shadowing.py and probes.py (`context_probes` over every
added line, and over the new Python files by their AST), and gitread.py's parsing of
`git apply --numstat --summary -z` output (synthesised here: no git runs): the host's side of
judge steps 1 to 3, which every candidate goes through.

Why this size: 100 multi-file patches (4 to 24 files each, about 35,000 diff lines in all) as a
long run's candidates write them: mostly modified files, with additions, deletions, renames
(with and without changes), executable files and missing final newlines, and one patch in six
hostile (a mode change, a binary change, a symbolic link, a path out of the tree, a protected
or look-alike path, a shadowing module, a context probe, a truncated hunk). Paths repeat across
patches as a run's do, so the path cache sees hits and misses; the baseline has 1,000 files.
About half a second natively.

stdout carries only what the policy decided (counts per outcome and a hash of every file list
and refusal), the same on every run and for every correct implementation.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections import Counter
from pathlib import Path

# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfcode.errors import EditError, PolicyError
from selfcode.gate.config import GateConfig
from selfcode.gate.diffs import DiffFile, diff_stats, parse_unified_diff
from selfcode.gate.gitread import parse_apply_output, parse_summary
from selfcode.gate.paths import lookalike_violations
from selfcode.gate.probes import NewFile, context_probes
from selfcode.gate.protected import protected_violations
from selfcode.gate.shadowing import shadowing_violations

SEED = 20_261_202
PATCHES = 100
BASELINE_FILES = 1_000
HOSTILE_EVERY = 6

CONTEXT = ["    value = compute(item, factor)", "    if value is None:", "        continue",
           "    total += value * weight", "    rows.append((key, total))", "    return rows",
           "", "def helper(items):", "    out = []", "    for item in items:"]
ADDED = ["    value = factor * compute(item)", "    cache[key] = value",
         "    total = sum(v for v in values if v)", "    return sorted(rows, key=len)",
         "    out.extend(x * 2 for x in items)", "    seen = set(items)"]


def baseline_paths(rng: random.Random) -> list[str]:
    dirs = [f"src/app/{d}" for d in ("core", "io", "util", "api", "model", "cli")] + \
           [f"src/app/plugins/p{i:02}" for i in range(20)]
    paths = {f"{rng.choice(dirs)}/mod_{i:04}.py" for i in range(BASELINE_FILES)}
    return sorted(paths | {"src/app/__init__.py", "README.md", "pyproject.toml"})


def hunks(rng: random.Random, count: int, start: int = 1) -> tuple[list[str], int, int]:
    """`count` hunks of context, removed and added lines, with headers that add up."""
    out, added, removed = [], 0, 0
    line = start
    for _ in range(count):
        before = [f" {rng.choice(CONTEXT)}" for _ in range(3)]
        minus = [f"-{rng.choice(CONTEXT)}" for _ in range(rng.randrange(0, 4))]
        plus = [f"+{rng.choice(ADDED)}" for _ in range(rng.randrange(1, 6))]
        after = [f" {rng.choice(CONTEXT)}" for _ in range(3)]
        old_n, new_n = 6 + len(minus), 6 + len(plus)
        out.append(f"@@ -{line},{old_n} +{line},{new_n} @@ def function_{line}(items):")
        out += before + minus + plus + after
        added, removed = added + len(plus), removed + len(minus)
        line += old_n + rng.randrange(5, 60)
    return out, added, removed


def modified(rng: random.Random, path: str, mode: str = "100644") -> list[str]:
    body, _, _ = hunks(rng, rng.randrange(1, 5), rng.randrange(1, 200))
    return [f"diff --git a/{path} b/{path}", f"index 3b18e51..a9c2f04 {mode}",
            f"--- a/{path}", f"+++ b/{path}", *body]


def added_file(rng: random.Random, path: str) -> list[str]:
    lines = [f"+{rng.choice(ADDED)}" for _ in range(rng.randrange(5, 40))]
    return [f"diff --git a/{path} b/{path}", "new file mode 100644", "index 0000000..e69de29",
            "--- /dev/null", f"+++ b/{path}", f"@@ -0,0 +1,{len(lines)} @@", *lines,
            "\\ No newline at end of file"]


def deleted_file(rng: random.Random, path: str) -> list[str]:
    lines = [f"-{rng.choice(CONTEXT)}" for _ in range(rng.randrange(3, 20))]
    return [f"diff --git a/{path} b/{path}", "deleted file mode 100644",
            "index e69de29..0000000", f"--- a/{path}", "+++ /dev/null",
            f"@@ -1,{len(lines)} +0,0 @@", *lines]


def renamed(rng: random.Random, old: str, new: str) -> list[str]:
    head = [f"diff --git a/{old} b/{new}", "similarity index 92%", f"rename from {old}",
            f"rename to {new}"]
    if rng.random() < 0.5:
        return head
    body, _, _ = hunks(rng, 1, rng.randrange(1, 50))
    return [*head, "index 3b18e51..a9c2f04 100644", f"--- a/{old}", f"+++ b/{new}", *body]


HOSTILE = [
    lambda p: [f"diff --git a/{p} b/{p}", "old mode 100644", "new mode 100755"],
    lambda p: [f"diff --git a/{p} b/{p}", "index 3b18e51..a9c2f04 100644",
               f"Binary files a/{p} and b/{p} differ"],
    lambda p: [f"diff --git a/{p} b/{p}", "new file mode 120000", "index 0000000..e69de29",
               "--- /dev/null", f"+++ b/{p}", "@@ -0,0 +1 @@", "+/etc/passwd"],
    lambda p: ["--- a/../outside.py", "+++ b/../outside.py", "@@ -1 +1 @@", "-x = 1", "+x = 2"],
    lambda p: [f"diff --git a/tests/test_{p[-8:]} b/tests/test_{p[-8:]}",
               "index 3b18e51..a9c2f04 100644", f"--- a/tests/test_{p[-8:]}",
               f"+++ b/tests/test_{p[-8:]}", "@@ -1 +1 @@", "-assert f()", "+assert True"],
    lambda p: ["diff --git a/TESTS/conftest.py b/TESTS/conftest.py", "new file mode 100644",
               "--- /dev/null", "+++ b/TESTS/conftest.py", "@@ -0,0 +1 @@", "+import os"],
    lambda p: ["diff --git a/src/json.py b/src/json.py", "new file mode 100644",
               "--- /dev/null", "+++ b/src/json.py", "@@ -0,0 +1 @@", "+dumps = repr"],
    lambda p: [f"diff --git a/{p} b/{p}", "index 3b18e51..a9c2f04 100644", f"--- a/{p}",
               f"+++ b/{p}", "@@ -1,2 +1,3 @@", " import sys", "+FAST = 'bench' in sys.argv[0]",
               " x = 1"],
    lambda p: [f"diff --git a/{p} b/{p}", "index 3b18e51..a9c2f04 100644", f"--- a/{p}",
               f"+++ b/{p}", "@@ -1,5 +1,5 @@", " a = 1", "-b = 2"],
]


def patch(rng: random.Random, n: int, baseline: list[str]) -> str:
    """Candidate `n`'s diff: git's format, or `diff -u` with timestamps for one in ten."""
    modules = [p for p in baseline if p.startswith("src/app/") and "mod_" in p]
    sections: list[list[str]] = []
    for _ in range(rng.randrange(4, 25)):
        path = rng.choice(modules[:400]) if rng.random() < 0.6 else rng.choice(modules)
        kind = rng.random()
        if kind < 0.70:
            sections.append(modified(rng, path, "100755" if kind < 0.03 else "100644"))
        elif kind < 0.82:
            sections.append(added_file(rng, path.replace("mod_", f"new_{n}_")))
        elif kind < 0.90:
            sections.append(deleted_file(rng, path))
        else:
            sections.append(renamed(rng, path, path.replace("mod_", "moved_")))
    if n % HOSTILE_EVERY == 0:
        sections.insert(rng.randrange(len(sections)),
                        HOSTILE[(n // HOSTILE_EVERY) % len(HOSTILE)](rng.choice(modules)))
    if n % 10 == 3:  # a plain `diff -u`: no git headers, names with timestamps
        sections = [[f"--- a/{s[2][6:]}\t2026-12-01 10:00:00", f"+++ b/{s[2][6:]}\t2026-12-01",
                     *s[4:]] for s in sections if s[0].startswith("diff --git")
                    and s[1].startswith("index") and len(s) > 4]
    return "\n".join(line for s in sections for line in s) + "\n"


def git_output(files: list[DiffFile]) -> bytes:
    """What `git apply --numstat --summary -z` prints for these files."""
    records = b"".join(f"{f.added}\t{f.removed}\t{f.path}\0".encode() for f in files)
    summary = []
    for f in files:
        if f.status in ("added", "deleted"):
            summary.append(f" {'create' if f.status == 'added' else 'delete'} mode 100644 "
                           f"{f.path}")
        elif f.status == "renamed":
            summary.append(f" rename {f.old_path} => {f.path} (92%)")
    return records + "\n".join(summary).encode() + b"\n"


def new_python_files(diff: str, files: list[DiffFile]) -> list[NewFile]:
    """The added Python files as git's reading would give them: every line new."""
    out = []
    for f in files:
        if f.status == "added" and f.path.endswith(".py"):
            marker = f"+++ b/{f.path}\n"
            start = diff.index(marker) + len(marker)
            body = diff[start:].split("\n@@", 1)[0].split("\n", 1)[-1]
            lines = [x[1:] for x in body.split("\n") if x.startswith("+")]
            out.append(NewFile(path=f.path, text="\n".join(lines) + "\n",
                               added=frozenset(range(1, len(lines) + 1))))
    return out


def police(diff: str, baseline: list[str], protected: list[str]) -> tuple[str, str]:
    """(outcome, what it saw): the judge's host-side reading of one patch."""
    try:
        files = parse_unified_diff(diff)
    except PolicyError as exc:
        return "refused", str(exc)
    except EditError as exc:
        return "unusable", str(exc)
    stats = diff_stats(files)
    entries, summary_lines = parse_apply_output(git_output(files))
    summary = parse_summary(summary_lines, [e.path for e in entries])
    touched = sorted({f.path for f in files} | {f.old_path for f in files if f.old_path})
    seen = (f"{stats['added']}+{stats['removed']}- {len(entries)} entries "
            f"{len(summary.created)}c{len(summary.deleted)}d{len(summary.renames)}r "
            + " ".join(f"{f.status[0]}:{f.path}" for f in files))
    violations = protected_violations(touched, protected) or lookalike_violations(
        touched, protected)
    if violations:
        return "protected", f"{seen} {violations}"
    shadows = shadowing_violations(touched, baseline)
    if shadows:
        return "shadowing", f"{seen} {shadows}"
    probes = context_probes(diff, new_python_files(diff, files))
    if probes:
        return "probe", f"{seen} {probes}"
    return "clean", seen


def main() -> None:
    started = time.perf_counter()
    rng = random.Random(SEED)
    baseline = baseline_paths(rng)
    patches = [patch(rng, n, baseline) for n in range(1, PATCHES + 1)]
    protected = GateConfig().protected
    built = time.perf_counter()
    outcomes: Counter[str] = Counter()
    digest = hashlib.sha256()
    for diff in patches:
        outcome, seen = police(diff, baseline, protected)
        outcomes[outcome] += 1
        digest.update(f"{outcome}\0{seen}\0".encode())
    done = time.perf_counter()
    print(f"patches {len(patches)} lines {sum(p.count(chr(10)) for p in patches)} "
          f"bytes {sum(len(p) for p in patches)}")
    print("outcomes " + " ".join(f"{k} {outcomes[k]}" for k in sorted(outcomes)))
    print(f"digest {digest.hexdigest()}")
    print(f"generate {built - started:.3f} s, police {done - built:.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
