"""Host-side unpacking of a tree that a sandbox then sees read-only."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from selfcode.errors import SandboxError

# `extractall(filter="data")` arrived in 3.11.4 (and Debian bookworm ships 3.11.2): without it
# the members are checked here first, to the same rule for what selfcode's trees hold.
_HAS_FILTER = hasattr(tarfile, "data_filter")


def unpack_tree(tar: bytes, target: Path) -> None:
    """Replace `target` with the files of `tar`; refuse members that would land outside it."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:*") as archive:
            if _HAS_FILTER:
                archive.extractall(target, filter="data")
            else:
                archive.extractall(target, members=_checked_members(archive))
    except (tarfile.TarError, OSError) as exc:
        raise SandboxError(f"Could not unpack the repository for the sandbox: {exc}.") from exc


def _checked_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members as the "data" filter would allow them: regular files, directories and links
    that stay inside the target, with no set-id bits; anything else raises `tarfile.TarError`."""
    members = archive.getmembers()
    for member in members:
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise tarfile.TarError(f"{member.name!r} is not a regular file or directory")
        member.name = member.name.lstrip("/")  # as the filter does: inside the target
        _inside(member.name, member.name)
        if member.issym():
            _inside(str(PurePosixPath(member.name).parent / member.linkname), member.name)
        elif member.islnk():
            _inside(member.linkname, member.name)
        member.mode &= 0o755  # no set-id, sticky or group/other write bits
        member.uid, member.gid = os.getuid(), os.getgid()  # owned by whoever unpacks
        member.uname = member.gname = ""
    return members


def _inside(path: str, name: str) -> None:
    """Raise unless `path` (relative, POSIX) stays below the target directory."""
    parts: list[str] = []
    if path.startswith("/"):
        raise tarfile.TarError(f"{name!r} points to an absolute path")
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                raise tarfile.TarError(f"{name!r} would be extracted outside the target")
            parts.pop()
        elif part != ".":
            parts.append(part)
