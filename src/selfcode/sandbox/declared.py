"""What a project declares about itself, read from its files as text: pure functions.

`pyproject.toml` (`[project]` dependencies, name and requires-python, the test extras and
dependency groups, `[build-system] requires`), `setup.cfg` (`[metadata] name`, `[options]
install_requires`, the test extras of `[options.extras_require]`) and `setup.py`. A setup.py is
never executed on the host: it is parsed with `ast`, and only literal `name=`,
`install_requires=[...]` and `extras_require={...}` keyword arguments of a `setup(...)` call are
read; anything computed is skipped with a note. Every requirement still passes the line policy
(`requirements.requirement_entry`) before pip may see it.
"""

from __future__ import annotations

import ast
import configparser
import json
import tomllib
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from selfcode.errors import ConfigError, SandboxError
from selfcode.sandbox.requirements import requirement_entry

# Extras / dependency groups that a repository's tests usually need.
TEST_GROUPS = ("test", "tests", "testing")
# What pip builds a project with when pyproject.toml names no build system (PEP 517's fallback);
# `wheel` for setuptools older than 70.1, which cannot build a wheel without it.
DEFAULT_BUILD = ("setuptools>=40.8.0", "wheel")


@dataclass
class Project:
    """The project's own declarations, gathered from its files."""

    requirements: list[tuple[str, str]] = field(default_factory=list)
    """(requirement for pip, as declared) of the project and its test extras."""
    build: list[str] = field(default_factory=list)
    """Its build system's requirements (the default one's when it declares none)."""
    name: str = ""
    """Its canonical distribution name ("" when no file names it)."""
    requires_python: str = ""
    notes: list[str] = field(default_factory=list)
    """What could not be read (a computed setup.py argument...), for the user."""
    installable: bool = False
    """Whether `pip install .` applies (a setup.py, or a pyproject.toml with a project or a
    build system); the sandbox installs the tree exactly then."""

    def fingerprint(self) -> bytes:
        """What the image hash covers of these declarations (not unrelated edits)."""
        return json.dumps({"requirements": self.requirements, "build": self.build,
                           "name": self.name}).encode("utf-8")

    def own(self, requirement: str) -> bool:
        """Whether `requirement` names the project itself (`pkg[test]` in its own extras)."""
        return bool(self.name) and canonicalize_name(Requirement(requirement).name) == self.name


def read_project(files: dict[str, str | None], origin: str) -> Project:
    """The declarations of `files` (pyproject.toml, setup.cfg, setup.py; None: not committed)."""
    project = Project()
    pyproject, cfg, setup_py = (files.get(n) for n in ("pyproject.toml", "setup.cfg", "setup.py"))
    build_system = False
    if pyproject is not None:
        build_system = _pyproject(pyproject, origin, project)
    if cfg is not None:
        _setup_cfg(cfg, origin, project)
    if setup_py is not None:
        _setup_py(setup_py, origin, project)
        project.installable = True
    if project.installable and not build_system:
        project.build = list(DEFAULT_BUILD)
    project.requirements = [(r, w) for r, w in project.requirements if not project.own(r)]
    return project


def _policed(raw: str, where: str, origin: str) -> str | None:
    entry = requirement_entry(raw, f"{where} ({origin})".replace(" ()", ""))
    return entry if isinstance(entry, str) else None


def _pyproject(text: str, origin: str, project: Project) -> bool:
    """Read pyproject.toml into `project`; whether it declares a build system."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SandboxError(f"Cannot read pyproject.toml ({origin}) to find its dependencies: "
                           f"{exc}; fix the file and commit it.") from exc
    table = data.get("project")
    meta = table if isinstance(table, dict) else {}
    declared = [("[project] dependencies", r) for r in _strings(meta.get("dependencies"))]
    for key, groups in (("[project.optional-dependencies]", meta.get("optional-dependencies")),
                        ("[dependency-groups]", data.get("dependency-groups"))):
        if isinstance(groups, dict):
            for group in TEST_GROUPS:
                declared += [(f"{key} {group}", r) for r in _strings(groups.get(group))]
    for key, raw in declared:
        entry = _policed(raw, f"pyproject.toml {key}", origin)
        if entry is not None:
            project.requirements.append((entry, raw))
    if isinstance(meta.get("name"), str) and meta["name"].strip():
        project.name = canonicalize_name(meta["name"].strip())
    if isinstance(meta.get("requires-python"), str):
        project.requires_python = meta["requires-python"].strip()
    system = data.get("build-system")
    for raw in _strings(system.get("requires")) if isinstance(system, dict) else []:
        entry = _policed(raw, "pyproject.toml [build-system] requires", origin)
        if entry is not None:
            project.build.append(entry)
    project.installable |= isinstance(table, dict) or isinstance(system, dict)
    return isinstance(system, dict)


def _setup_cfg(text: str, origin: str, project: Project) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        project.notes.append(f"setup.cfg could not be read ({str(exc).splitlines()[0]}); "
                             "its dependencies are not installed in the sandbox")
        return
    name = parser.get("metadata", "name", fallback="").strip()
    if name and not project.name:
        project.name = canonicalize_name(name)
    values = [("[options] install_requires",
               parser.get("options", "install_requires", fallback=""))]
    values += [(f"[options.extras_require] {g}", parser.get("options.extras_require", g,
                                                            fallback="")) for g in TEST_GROUPS]
    for key, value in values:
        if value.strip().startswith(("file:", "attr:")):
            project.notes.append(f"setup.cfg {key} is read from elsewhere "
                                 f"({value.strip()[:80]}); selfcode does not follow it")
            continue
        for line in value.splitlines():
            entry = _policed(line, f"setup.cfg {key}", origin)
            if entry is not None:
                project.requirements.append((entry, line.strip()))


def _setup_py(text: str, origin: str, project: Project) -> None:
    try:
        tree = ast.parse(text)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_setup(n.func)]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        project.notes.append("setup.py does not parse; its dependencies are not read")
        return
    for call in calls:
        for keyword in call.keywords:
            if keyword.arg == "name":
                name = _literal(keyword.value)
                if isinstance(name, str) and name.strip() and not project.name:
                    project.name = canonicalize_name(name.strip())
            elif keyword.arg == "install_requires":
                _setup_py_list(keyword.value, "install_requires", origin, project)
            elif keyword.arg == "extras_require":
                for group, node in _test_extras(keyword.value, project):
                    _setup_py_list(node, f"extras_require {group}", origin, project)


def _is_setup(func: ast.expr) -> bool:
    return ((isinstance(func, ast.Name) and func.id == "setup")
            or (isinstance(func, ast.Attribute) and func.attr == "setup"))


_NOT_LITERAL = object()


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NOT_LITERAL


def _test_extras(node: ast.expr, project: Project) -> list[tuple[str, ast.expr]]:
    """The test groups of an `extras_require={...}` literal, each value still a node."""
    if not isinstance(node, ast.Dict):
        project.notes.append("setup.py computes extras_require; its test extras are not read")
        return []
    found = []
    for key, value in zip(node.keys, node.values, strict=True):
        group = _literal(key) if key is not None else _NOT_LITERAL
        if isinstance(group, str) and group in TEST_GROUPS:
            found.append((group, value))
    return found


def _setup_py_list(node: ast.expr, key: str, origin: str, project: Project) -> None:
    value = _literal(node)
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        project.notes.append(f"setup.py computes {key}; those dependencies are not read "
                             "(declare them in pyproject.toml or a requirements file)")
        return
    for raw in value:
        entry = _policed(raw, f"setup.py {key}", origin)
        if entry is not None:
            project.requirements.append((entry, raw))


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# Official images to suggest (`python:3.X-slim`): selfcode's default base first, then newest first.
_IMAGES = ("3.12", "3.14", "3.13", "3.11", "3.10", "3.9")


def python_refusal(requires: str, python: str, base_image: str) -> str | None:
    """Why a project that requires `requires` cannot be judged with the sandbox's `python`
    (a full version, "3.11.2"), as one sentence naming an image that fits; None when it can."""
    if not requires:
        return None
    try:
        wanted = SpecifierSet(requires)
    except InvalidSpecifier:
        raise ConfigError(f"pyproject.toml [project] requires-python {requires!r} is not a "
                          "version specifier (like '>=3.10'); fix it and commit it.") from None
    if wanted.contains(python, prereleases=True):
        return None
    fits = next((v for v in _IMAGES if wanted.contains(f"{v}.99", prereleases=True)), None)
    image = (f"SELFCODE_BASE_IMAGE=python:{fits}-slim" if fits
             else "SELFCODE_BASE_IMAGE set to an image whose python3 satisfies it")
    return (f"The sandbox's Python is {python} (base image {base_image}) but the project "
            f"requires Python {requires} ([project] requires-python); run again with {image}.")
