"""Finds the files that ship beside the code: prompts, the sandbox harness, examples, Dockerfile.

A wheel carries them under `selfcode/_data/`; an editable install reads them from the source tree.
"""

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


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
