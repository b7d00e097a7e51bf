"""Host-side unpacking of a tree that a sandbox then sees read-only."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from selfcode.errors import SandboxError


def unpack_tree(tar: bytes, target: Path) -> None:
    """Replace `target` with the files of `tar`; refuse members that would land outside it."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:*") as archive:
            archive.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SandboxError(f"Could not unpack the repository for the sandbox: {exc}.") from exc
