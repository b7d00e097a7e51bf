"""Modules a candidate may not add: new top-level names that would shadow what the judge imports.

The judged processes put the tree's root and its `src/` first on `sys.path` (that is how the
tests import the code under test), so a new `src/pytest.py`, a root `selfcode_pytest_plugin.py`,
`pluggy/`, or `json.py` is imported *instead of* the real one by the test run itself, and then
controls it from the inside: no protected pattern names such a file, because any name could be
one. The rule is about names, not paths: at each import root, a top-level module or package
that the baseline did not have may not take the name of a standard-library module, of the
tooling the judge runs in the sandbox, or of selfcode's own harness modules, nor the name of a
module the baseline has at another import root (the package under test). Editing a module the
baseline already had is unaffected.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

# Where the judged processes look first (sandbox/harness.py puts `src` and the tree's root on
# PYTHONPATH, and `python -m pytest` adds the working directory).
IMPORT_ROOTS = ("", "src/")
# What the judge's own processes import from the sandbox's site-packages.
TOOL_MODULES = frozenset({
    "pytest", "_pytest", "pluggy", "py", "iniconfig", "packaging", "hypothesis",
    "_hypothesis_pytestplugin", "_hypothesis_globals", "sortedcontainers", "attr", "attrs",
    "exceptiongroup", "tomli", "typing_extensions", "coverage", "pip", "setuptools",
    "pkg_resources", "_distutils_hack", "site", "sitecustomize", "usercustomize",
})
_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".pyi", ".so", ".pyd", ".pth")


def top_level_name(path: str, root: str) -> str | None:
    """The importable top-level name `path` defines under import root `root`, or None."""
    if not path.startswith(root):
        return None
    rest = path[len(root):]
    head, slash, _ = rest.partition("/")
    if slash:
        return head or None  # a package (or namespace package) directory
    for suffix in _MODULE_SUFFIXES:
        if head.endswith(suffix):
            return head.split(".", 1)[0] or None
    return None


def _reserved(name: str) -> bool:
    return (name in sys.stdlib_module_names or name in TOOL_MODULES
            or name.startswith("selfcode_") or name == "__main__")


def shadowing_violations(touched: Iterable[str], baseline: Iterable[str]) -> list[str]:
    """One sentence per path that would add a reserved top-level name the baseline lacks."""
    have = {root: {n for p in baseline if (n := top_level_name(p, root))}
            for root in IMPORT_ROOTS}
    out: list[str] = []
    for path in sorted(set(touched)):
        for root in IMPORT_ROOTS:
            name = top_level_name(path, root)
            if not name or name in have[root]:
                continue
            # The same name at another import root is the code under test itself: a root
            # calc.py beside src/calc/ would be what the tests import, not what is committed.
            elsewhere = any(name in names for other, names in have.items() if other != root)
            if _reserved(name) or elsewhere:
                out.append(f"the patch adds {path}, which would shadow the module {name!r} that "
                           "the judged processes import; choose another name")
                break
    return out
