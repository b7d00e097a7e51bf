"""Finds the files that ship beside the code, and the source checkout `--self` improves.

A wheel carries prompts, the sandbox harness, examples and the Dockerfile under
`selfcode/_data/`; an editable install reads them from the source tree. Improving selfcode
itself needs more than those files: a git checkout of its source, which a wheel never is.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from selfcode.errors import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent

SOURCE_ENV = "SELFCODE_SOURCE"
NO_CHECKOUT = ("--self needs a git checkout of selfcode's source: clone it and "
               "`pip install -e .`, or set SELFCODE_SOURCE=PATH.")


@cache
def data_dir() -> Path:
    packaged = _PACKAGE_DIR / "_data"
    if packaged.is_dir():
        return packaged
    source_tree = _PACKAGE_DIR.parent.parent
    if (source_tree / "prompts").is_dir():
        return source_tree
    raise FileNotFoundError(f"selfcode's data files are missing (looked in {packaged})")


def prompts_dir() -> Path:
    return data_dir() / "prompts"


def harness_dir() -> Path:
    """The directory holding `harness.py`; mounted read-only into every sandbox."""
    return data_dir() / "sandbox"


def examples_dir() -> Path:
    return data_dir() / "examples"


def dockerfile() -> Path:
    return data_dir() / "Dockerfile"


def checkout_problem(root: Path) -> str | None:
    """Why `root` is not the top of a git checkout of selfcode's source, or None if it is."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text("utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "it has no readable pyproject.toml"
    if project.get("name") != "selfcode":
        return "its pyproject.toml is not selfcode's (project name is not 'selfcode')"
    if not (root / "src" / "selfcode").is_dir():
        return "it has no src/selfcode"
    # `.git` is a directory in a clone and a file in a worktree; either way this is the top.
    # Only the top counts: GitStore would otherwise search upward into some other project.
    if not (root / ".git").exists():
        return "it is not the top of a git repository"
    return None


def self_source(environ: Mapping[str, str] | None = None) -> Path:
    """The checkout `selfcode improve --self` works on.

    SELFCODE_SOURCE if set (and then it must be a checkout); else the source tree of an
    editable install, which is where this package is imported from. A wheel in site-packages
    has no source tree, and saying so beats improving whatever project its venv sits in.
    """
    environ = os.environ if environ is None else environ
    given = environ.get(SOURCE_ENV)
    if given:
        root = Path(given).expanduser().resolve()
        problem = checkout_problem(root)
        if problem:
            raise ConfigError(f"SELFCODE_SOURCE={given} is not a git checkout of selfcode's "
                              f"source ({problem}); point it at a clone of selfcode.")
        return root
    editable = _PACKAGE_DIR.parent.parent  # src/selfcode -> the checkout, in an editable install
    if _PACKAGE_DIR.parent.name == "src" and checkout_problem(editable) is None:
        return editable
    raise ConfigError(NO_CHECKOUT)
