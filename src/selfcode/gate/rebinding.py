"""Rebinding the judge from outside it: a self-candidate may not change another module's names.

Every module of selfcode runs in the judge's process, so a candidate of selfcode's own source
could leave `src/selfcode/gate/**` untouched and still change the judge the next run uses: an
`import selfcode.gate.protected as p; p.protected_violations = lax` anywhere that is imported,
switched on only where the canary cannot look (on a host with a Docker engine, say). For a
repository with a canary (selfcode itself), the added lines of every Python file are scanned for
code that rebinds a name of a module of the package (`mod.name = ...`, `del mod.name`,
`setattr(mod, ...)`, `delattr`, `mod.__dict__[...] = ...`, `vars(mod)[...] = ...`).

Like the context-probe scan (probes.py) this is advisory: code that computes its target at run
time gets past any static reading. What would hold is the judge in a process of its own that
imports only protected code; until then this turns the plain attempts away, with a reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence

from selfcode.gate.probes import NewFile, _Names, _touches

_REBINDERS = ("setattr", "delattr", "builtins.setattr", "builtins.delattr")


def judged_packages(judge_paths: Iterable[str]) -> set[str]:
    """The top-level packages the judge's globs lie in: `src/selfcode/gate/**` -> selfcode."""
    found = set()
    for glob in judge_paths:
        parts = [p for p in glob.split("/") if p]
        if parts[:1] == ["src"]:
            parts = parts[1:]
        if parts and parts[0].isidentifier():
            found.add(parts[0])
    return found


def rebindings(files: Sequence[NewFile], packages: set[str]) -> list[str]:
    """'path:line rebinds pkg.mod.name' for each added line that rebinds a module's name."""
    found: list[str] = []
    for new in files:
        if not new.path.endswith((".py", ".pyw")) or not new.added:
            continue
        try:
            tree = ast.parse(new.text)
        except (SyntaxError, ValueError):
            continue  # the tests and the install refuse what does not parse
        names, lines = _Names(tree), sorted(new.added)
        for node in ast.walk(tree):
            if _touches(node, lines):
                target = _rebound(node, names)
                if target and target.split(".", 1)[0] in packages and "." in target:
                    found.append(f"{new.path}:{getattr(node, 'lineno', '?')} rebinds {target}")
    return found


def _rebound(node: ast.AST, names: _Names) -> str | None:
    """The dotted module name whose attribute `node` assigns or deletes, if any."""
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    elif isinstance(node, ast.Delete):
        targets = list(node.targets)
    elif isinstance(node, ast.Call) and names.resolve(node.func) in _REBINDERS and node.args:
        return names.resolve(node.args[0])
    for target in targets:
        if isinstance(target, ast.Attribute):
            owner = names.resolve(target.value)
            if owner:
                return owner
        if isinstance(target, ast.Subscript):  # mod.__dict__[...] / vars(mod)[...]
            owner = names.resolve(target.value)
            if owner and owner.endswith(".__dict__"):
                return owner.removesuffix(".__dict__")
    return None
