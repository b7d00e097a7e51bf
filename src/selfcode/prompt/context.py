"""What the model sees: a map of the repository, the code the benchmarks run, past attempts."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from selfcode.gate.protected import protected_violations

_SRC_ROOTS = ("src/", "")


@dataclass(frozen=True)
class Attempt:
    n: int
    summary: str
    status: str
    reasons: list[str]


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


def repo_map(root: Path, files: list[str]) -> str:
    parts: list[str] = []
    for path in sorted(f for f in files if f.endswith(".py")):
        try:
            source = (root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        body = outline(source)
        parts.append(path + ("\n" + "\n".join(f"  {line}" for line in body) if body else ""))
    return "\n".join(parts)


def imported_modules(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_file(module: str, files: set[str]) -> str | None:
    rel = module.replace(".", "/")
    for prefix in _SRC_ROOTS:
        for candidate in (f"{prefix}{rel}.py", f"{prefix}{rel}/__init__.py"):
            if candidate in files:
                return candidate
    return None


def exercised_files(root: Path, files: list[str], entry_points: list[str]) -> list[str]:
    """Repository modules reachable by imports from the benchmark scripts (or tests)."""
    known = set(files)
    seen: list[str] = []
    queue = [p for p in entry_points if p in known]
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.append(path)
        try:
            source = (root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for module in sorted(imported_modules(source)):
            found = module_file(module, known)
            if found and found not in seen:
                queue.append(found)
    return seen


def editable_sources(
    root: Path, files: list[str], entry_points: list[str], protected: list[str], max_chars: int
) -> dict[str, str]:
    """The source of the files worth editing, most relevant first, within a size budget."""
    ordered = exercised_files(root, files, entry_points)
    ordered += [f for f in sorted(files) if f.endswith(".py") and f not in ordered]
    chosen: dict[str, str] = {}
    used = 0
    for path in ordered:
        if protected_violations([path], protected) and path not in entry_points:
            continue
        try:
            source = (root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if used + len(source) > max_chars:
            continue
        chosen[path] = source
        used += len(source)
    return chosen
