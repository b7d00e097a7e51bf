"""Which functions a patch changes, read from source text on the host (nothing is imported).

The equivalence check (sandbox/selfcode_equiv*.py) calls the changed functions of the baseline
and of the candidate on the same inputs. Which ones: for each changed .py file, from the
baseline's and the candidate's text, by AST (docstrings, comments and formatting do not count):

- functions and methods whose definition changed (decorators, signature or body), or that were
  removed while public;
- functions that read a module-level name whose definition changed (a constant, an import), or
  whose own name is rebound at module level; every function when a module-level statement that
  binds no name changed (a call at import could patch anything); the methods of a class whose
  body outside its methods changed;
- the public functions of the same module that call any of those, transitively (by name, or as
  `self.name` / `cls.name` for methods), since a public caller is what a user sees.

`plan` turns the texts into `Target`s (module, qualname) for the harness, and `reasons` turns the
harness's report into the verdict's sentences.
"""

from __future__ import annotations

import ast
import io
import tarfile
from dataclasses import dataclass, field

from selfcode.gate.verdict import EquivalenceVerdict

__all__ = ["Plan", "Target", "changed_functions", "module_name", "plan", "python_sources",
           "reasons"]

# Names whose use means a function may touch files, processes or the network: its outcome is
# more than its return value, and calling it twice on two trees is not a fair comparison.
_EFFECTS = frozenset({"open", "os", "shutil", "socket", "subprocess", "urllib", "requests",
                      "http", "tempfile", "sqlite3", "pathlib", "Path", "ftplib", "smtplib",
                      "asyncio", "threading", "multiprocessing"})


_ANY = "<module code>"


@dataclass(frozen=True)
class Target:
    module: str
    qualname: str
    path: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.qualname}"


@dataclass
class Plan:
    targets: list[Target] = field(default_factory=list)
    not_checked: dict[str, str] = field(default_factory=dict)
    recorded: list[Target] = field(default_factory=list)
    """Every function of the changed modules: recorded together, once per baseline."""


def module_name(path: str) -> str | None:
    """The module a repository path imports as (a `src/` layout or the root); None if none."""
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    if parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
            first.value.value, str):
        return body[1:]
    return body


def _fingerprint(node: ast.AST) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        clone = type(node)(**{f: getattr(node, f) for f in node._fields})
        clone.body = _strip_docstring(node.body)
        return ast.dump(clone)
    return ast.dump(node)


Functions = dict[str, ast.FunctionDef | ast.AsyncFunctionDef]


def _definitions(tree: ast.Module) -> tuple[Functions, dict[str, str], dict[str, str]]:
    """(functions by qualname, module-level names -> fingerprint, class -> fingerprint of
    its body outside its methods)."""
    functions: Functions = {}
    names: dict[str, str] = {}
    classes: dict[str, str] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        rest = []
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[prefix + stmt.name] = stmt
            elif isinstance(stmt, ast.ClassDef):
                visit(stmt.body, f"{prefix}{stmt.name}.")
                names.setdefault(prefix + stmt.name, "class")
            elif prefix:
                rest.append(stmt)
            else:
                # A statement that binds no name (a call, an `if` around a def) may change any
                # function as the module is imported: it counts as changing them all.
                for name in _bound_names(stmt) or {_ANY}:
                    names[name] = names.get(name, "") + _fingerprint(stmt)
        if prefix:
            classes[prefix.rstrip(".")] = ast.dump(ast.Module(body=_strip_docstring(rest),
                                                              type_ignores=[]))

    visit(_strip_docstring(tree.body), "")
    return functions, names, classes


def _bound_names(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    found = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
    return found


def _uses(node: ast.AST) -> set[str]:
    """Names a function reads: plain names, and attributes of self/cls."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and \
                sub.value.id in ("self", "cls"):
            out.add("." + sub.attr)
    return out


def _public(qualname: str) -> bool:
    return not any(part.startswith("_") and not part.startswith("__")
                   for part in qualname.split("."))


def _reaches(qualname: str, names: set[str], target: str) -> bool:
    """Whether the function `qualname`, reading `names`, calls `target` within the module."""
    owner, _, simple = target.rpartition(".")
    if not owner:
        return simple in names
    return qualname.rpartition(".")[0] == owner and "." + simple in names


def _callers(functions: Functions, changed: set[str]) -> set[str]:
    """Public functions that reach a changed one through calls within the module."""
    uses = {q: _uses(node) for q, node in functions.items()}
    reached = set(changed)
    grew = True
    while grew:
        grew = False
        for qualname, names in uses.items():
            if qualname not in reached and any(_reaches(qualname, names, r) for r in reached):
                reached.add(qualname)
                grew = True
    return {q for q in reached - changed if _public(q)}


def changed_functions(old: str, new: str) -> list[str]:
    """Qualnames of the baseline's functions whose behaviour the change may alter (see the
    module docstring), in the baseline's order; SyntaxError if either side does not parse."""
    before, after = ast.parse(old), ast.parse(new)
    old_funcs, old_names, old_classes = _definitions(before)
    new_funcs, new_names, new_classes = _definitions(after)
    names = {n for n in old_names.keys() | new_names.keys()
             if old_names.get(n) != new_names.get(n)}
    changed = set()
    for qualname, node in old_funcs.items():
        other = new_funcs.get(qualname)
        owner = qualname.rpartition(".")[0]
        if other is None:
            if _public(qualname):
                changed.add(qualname)
        elif (_fingerprint(node) != _fingerprint(other) or _uses(node) & names
              or qualname in names or _ANY in names
              or (owner and old_classes.get(owner) != new_classes.get(owner))):
            changed.add(qualname)
    changed |= _callers(old_funcs, changed)
    return [q for q in old_funcs if q in changed]


def _effects(node: ast.AST | None) -> set[str]:
    return _uses(node) & _EFFECTS if node is not None else set()


def plan(baseline: dict[str, str], candidate: dict[str, str | None]) -> Plan:
    """Targets for the harness from each changed file's texts; `candidate` maps a path to its
    text after the patch (None: deleted). New files have no baseline to compare with."""
    out = Plan()
    for path, new in sorted(candidate.items()):
        old = baseline.get(path)
        module = module_name(path)
        if old is None or module is None:
            continue
        if new is None:
            out.not_checked[f"{module}:*"] = "its module was removed by the patch"
            continue
        try:
            qualnames = changed_functions(old, new)
            old_funcs = _definitions(ast.parse(old))[0]
            out.recorded += [Target(module, q, path) for q in old_funcs]
        except SyntaxError as exc:
            out.not_checked[f"{module}:*"] = f"it does not parse ({exc.msg}, line {exc.lineno})"
            continue
        except (RecursionError, MemoryError, ValueError) as exc:  # nesting too deep, NUL bytes
            out.not_checked[f"{module}:*"] = f"it could not be read ({type(exc).__name__})"
            continue
        for qualname in qualnames:
            target = Target(module, qualname, path)
            # The baseline's nature decides: were the candidate's counted, a cheat could skip the
            # check by naming `open` once; its file access is compared (and fails) like the rest.
            used = _effects(old_funcs.get(qualname))
            if used:
                out.not_checked[target.key] = ("it may touch files, processes or the network "
                                               f"(it uses {', '.join(sorted(used))})")
            else:
                out.targets.append(target)
    return out


def reasons(report: EquivalenceVerdict, require: bool, pytest_imported: bool) -> list[str]:
    """The verdict's sentences for an equivalence report: a counterexample rejects; so does a
    candidate module that loads pytest; "not checked" rejects only when `require`."""
    out = []
    example = report.counterexample
    if example is not None:
        out.append(f"behaviour differs from the baseline: {example.input} {example.candidate}, "
                   f"the baseline {example.baseline}")
    if pytest_imported:
        out.append("behaviour differs from the baseline: the candidate's module loads pytest "
                   "when it is imported (the baseline's does not); code under test has no "
                   "business with the test runner")
    if require and report.not_checked:
        out += [f"equivalence not checked for {name}: {why} (require_equivalence is on)"
                for name, why in sorted(report.not_checked.items())]
    return out


def python_sources(tar: bytes) -> dict[str, str]:
    """The text of every .py file in a tree's tar (what the baseline's functions are read from)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".py") and member.size < 2_000_000:
                handle = archive.extractfile(member)
                if handle is not None:
                    out[member.name] = handle.read().decode("utf-8", "replace")
    return out
