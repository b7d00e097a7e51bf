"""What the model sees: a map of the repository, the code the benchmarks run, past attempts.

Everything here is bounded by size, not by the repository's: the map is capped and ranked (the
files that matter first), imports are followed (relative ones too) only as far as a budget
allows, and tests, docs, examples, CI and packaging files stay out unless asked for.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from selfcode.gate.protected import protected_violations
from selfcode.prompt.attempts import SUMMARY_CHARS as SUMMARY_CHARS  # re-exported
from selfcode.prompt.attempts import Attempt as Attempt
from selfcode.prompt.clipping import clip as clip

_SRC_ROOTS = ("src/", "")
MAP_CHARS = 12_000
"""The repository map's cap: an outline of the most relevant modules, not of all of them."""
MAX_FOLLOWED = 300
"""Modules read when following imports from the benchmarks (without a profile)."""
PERIPHERAL = ("test/*", "tests/*", "*/tests/*", "*/test/*", "test_*.py", "*/test_*.py",
              "*_test.py", "conftest.py", "*/conftest.py", "doc/*", "docs/*", "*/docs/*",
              "example/*", "examples/*", "*/examples/*", "benchmarks/*", "bench/*", "ci/*",
              "ci_tools/*", ".*", "*/.*", "setup.py", "conf.py", "*/conf.py", "noxfile.py",
              "tasks.py", "scripts/*", "tools/*")


def peripheral(path: str) -> bool:
    """Tests, docs, examples, benchmarks, CI and packaging: not where the time goes."""
    return any(fnmatchcase(path, pattern) for pattern in PERIPHERAL)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return f"def {node.name}({ast.unparse(node.args)})"


def outline(source: str) -> list[str]:
    """Top-level functions and classes (with their methods) of one module, or [] if unparsable."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.append(_signature(node))
        elif isinstance(node, ast.ClassDef):
            lines.append(f"class {node.name}")
            lines.extend(
                f"    {_signature(item)}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return lines


def repo_map(root: Path, files: list[str], first: Iterable[str] = (),
             max_chars: int = MAP_CHARS, include_peripheral: bool = False,
             read: Callable[[str], str | None] | None = None) -> str:
    """Outlines of the modules, `first` (most relevant first) then the rest by path, until
    `max_chars`; once an outline no longer fits, only names follow. Only the modules outlined
    are read and parsed, so the cost follows the cap, not the repository. `read` (a cache)
    returns a file's text, or None."""
    python = [f for f in files if f.endswith(".py")]
    known = set(python)
    lead = [f for f in dict.fromkeys(first) if f in known]
    rest = sorted(f for f in python if f not in set(lead)
                  and (include_peripheral or not peripheral(f)))
    parts: list[str] = []
    used, names_only = 0, False
    for path in [*lead, *rest]:
        if used + len(path) + 1 > max_chars:
            break
        source = None if names_only else (read or (lambda p: _read(root, p)))(path)
        body = outline(source) if source else []
        entry = path + ("\n" + "\n".join(f"  {line}" for line in body) if body else "")
        if used + len(entry) + 1 > max_chars:
            entry, names_only = path, True
        parts.append(entry)
        used += len(entry) + 1
    return "\n".join(parts)


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def module_name(path: str) -> str:
    """The dotted module a repository file is (src/pkg/a.py and pkg/a.py are `pkg.a`)."""
    rel = path.removeprefix("src/").removesuffix(".py").removesuffix("/__init__")
    return rel.replace("/", ".")


def imported_modules(source: str, package: str = "") -> set[str]:
    """The modules `source` imports; relative imports resolved against `package`, the
    package the importing module is in."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                parent = parts[:len(parts) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            if not base:
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def package_of(path: str) -> str:
    """The package relative imports in `path` are resolved against."""
    name = module_name(path)
    return name if path.endswith("__init__.py") else name.rpartition(".")[0]


def module_file(module: str, files: set[str]) -> str | None:
    rel = module.replace(".", "/")
    for prefix in _SRC_ROOTS:
        for candidate in (f"{prefix}{rel}.py", f"{prefix}{rel}/__init__.py"):
            if candidate in files:
                return candidate
    return None


def exercised_files(root: Path, files: list[str], entry_points: list[str],
                    limit: int = MAX_FOLLOWED, max_chars: int | None = None) -> list[str]:
    """Repository modules reachable by imports from the benchmark scripts (or tests), nearest
    first: at most `limit` of them, and no more once they hold `max_chars` characters."""
    known = set(files)
    seen: list[str] = []
    queue = [p for p in entry_points if p in known]
    read = 0
    while queue and len(seen) < limit and (max_chars is None or read < max_chars):
        path = queue.pop(0)
        if path in seen:
            continue
        seen.append(path)
        try:
            source = (root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        read += len(source)
        for module in sorted(imported_modules(source, package_of(path))):
            found = module_file(module, known)
            if found and found not in seen:
                queue.append(found)
    return seen


def editable_sources(
    root: Path, files: list[str], entry_points: list[str], protected: list[str], max_chars: int
) -> dict[str, str]:
    """The source of the files the benchmarks run, nearest first, within a size budget; never
    a file they do not reach (an alphabetical filler of docs and setup scripts helps nobody)."""
    # Nearest first: more than twice the budget read is more than can be shown.
    ordered = exercised_files(root, files, entry_points, max_chars=max(2 * max_chars, 100_000))
    chosen: dict[str, str] = {}
    used = 0
    for path in ordered:
        if protected_violations([path], protected) and path not in entry_points:
            continue
        try:
            source = (root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if used + len(path) + len(source) > max_chars:  # as PromptSections.chars() counts
            continue
        chosen[path] = source
        used += len(path) + len(source)
    return chosen


def function_spans(source: str) -> dict[str, list[tuple[int, int]]]:
    """Every function and method of `source` by name: its (first, last) lines, the first being
    its first decorator's, as code objects count; {} if unparsable."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans.setdefault(node.name, []).append((start, node.end_lineno or node.lineno))
    return spans


def function_at(source: str | dict[str, list[tuple[int, int]]], line: int,
                name: str) -> tuple[int, int] | None:
    """The (first, last) line of the function `name` that starts at `line`, or of the nearest
    function of that name. `source`: the module's text, or its `function_spans`."""
    spans = function_spans(source) if isinstance(source, str) else source
    found = spans.get(name, [])
    return min(found, key=lambda span: (abs(span[0] - line), span)) if found else None
