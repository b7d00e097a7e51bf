"""File work for selfcode's harness: tree copies, emptying directories, SysV IPC, bounded reads.

Standard library only, like the harness. Everything here runs either as the judge (root in the
docker sandbox) on files no candidate process can touch at that moment (the harness kills every
candidate process first), or demoted to the candidate uid, on the candidate's own files. Nothing
follows a symbolic link: a tree may contain links, and they are copied as links.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20


def copy_tree(src: str, dst: str, *, readonly: bool, skip: frozenset[str] = frozenset()) -> None:
    """Copy the directories, regular files and symlinks under `src` into a new `dst`, leaving
    out every entry named in `skip`.

    Modes are normalised (0755 directories, 0644 or 0755 files), so a baseline and a candidate
    copied the same way differ in content only. `readonly` marks files and directories
    unwritable, which is what the candidate uid sees anyway when the judge owns the copy.
    """
    dir_mode = 0o555 if readonly else 0o755
    os.mkdir(dst, 0o700)
    stack = [(src, dst)]
    made = [dst]
    while stack:
        source, target = stack.pop()
        with os.scandir(source) as entries:
            for entry in entries:
                if entry.name in skip:
                    continue
                out = os.path.join(target, entry.name)
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), out)
                elif entry.is_dir(follow_symlinks=False):
                    os.mkdir(out, 0o700)
                    made.append(out)
                    stack.append((entry.path, out))
                elif entry.is_file(follow_symlinks=False):
                    _copy_file(entry.path, out, readonly)
                # Sockets, fifos and devices are no part of a source tree: they are left out.
    for directory in reversed(made):
        os.chmod(directory, dir_mode)


def _copy_file(src: str, dst: str, readonly: bool) -> None:
    fd = os.open(src, _FILE_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return
        executable = bool(info.st_mode & 0o111)
        mode = (0o555 if executable else 0o444) if readonly else (0o755 if executable else 0o644)
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while chunk := os.read(fd, _CHUNK):
                os.write(out, chunk)
            os.fchmod(out, mode)
        finally:
            os.close(out)
    finally:
        os.close(fd)


def clear_dir(path: str) -> None:
    """Remove everything inside `path` (not `path` itself), at any depth, following no link.

    Iterative and through directory descriptors, so neither a deep nest of directories nor
    path-length limits stop it; a directory its owner made unreadable is opened up first.
    """
    top = os.open(path, _DIR_FLAGS)
    stack: list[tuple[int, str]] = [(top, "")]  # (directory fd, its name in the parent)
    try:
        while stack:
            child = _clear_level(stack[-1][0])
            if child is not None:
                stack.append(child)
                continue
            fd, name = stack.pop()
            os.close(fd)
            if stack:
                os.rmdir(name, dir_fd=stack[-1][0])
    finally:
        for fd, _name in stack:
            os.close(fd)


def _clear_level(fd: int) -> tuple[int, str] | None:
    """Unlink the non-directories in `fd`; return the first subdirectory to descend into."""
    with os.scandir(fd) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in names:
        if not is_dir:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
            continue
        # Read-only copies and directories their owner locked are opened up first; the owner
        # may always change a directory's mode.
        with contextlib.suppress(PermissionError):
            os.chmod(name, 0o700, dir_fd=fd)
        return os.open(name, _DIR_FLAGS, dir_fd=fd), name
    return None


def remove_tree(path: str) -> None:
    """Remove `path` and everything in it; no error when it does not exist."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o700)
    clear_dir(path)
    os.rmdir(path)


def is_empty(path: str) -> bool:
    try:
        return not os.listdir(path)
    except FileNotFoundError:
        return True


def read_regular(path: str, limit: int) -> bytes | None:
    """At most `limit` bytes of the regular file `path` (never through a link), or None."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = bytearray()
        while len(data) <= limit and (chunk := os.read(fd, _CHUNK)):
            data += chunk
        return None if len(data) > limit else bytes(data)
    finally:
        os.close(fd)


# --- SysV IPC: shared memory, message queues and semaphores outlive their processes ---------

_IPC_RMID = 0
_IPC_KINDS = ("shm", "msg", "sem")


def ipc_objects(uid: int) -> dict[str, list[int]]:
    """Ids of the SysV IPC objects that `uid` owns or created, by kind (from /proc/sysvipc)."""
    found: dict[str, list[int]] = {}
    for kind in _IPC_KINDS:
        try:
            with open(f"/proc/sysvipc/{kind}", encoding="ascii") as fh:
                header, *rows = fh.read().splitlines()
        except (OSError, ValueError):
            continue
        names = header.split()
        key = names[1]  # shmid, msqid or semid
        for row in rows:
            fields = dict(zip(names, row.split(), strict=False))
            if str(uid) in (fields.get("uid"), fields.get("cuid")):
                found.setdefault(kind, []).append(int(fields[key]))
    return found


def remove_ipc(objects: dict[str, list[int]]) -> None:
    """IPC_RMID each object; run as its owner. Raises OSError when one cannot be removed."""
    libc = ctypes.CDLL(None, use_errno=True)
    calls = {
        "shm": lambda i: libc.shmctl(i, _IPC_RMID, None),
        "msg": lambda i: libc.msgctl(i, _IPC_RMID, None),
        "sem": lambda i: libc.semctl(i, 0, _IPC_RMID),
    }
    for kind, ids in objects.items():
        for ident in ids:
            if calls[kind](ident) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot remove SysV {kind} {ident}: {os.strerror(err)}")
