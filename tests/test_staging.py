"""Unpacking a tree on the host, with and without tarfile's extraction filters (3.11.4+)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from selfcode.errors import SandboxError
from selfcode.sandbox import staging


def _tar(*members: tuple[str, bytes | None, str]) -> bytes:
    """A tar of (name, data or None, link target or "")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o4777
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(params=["filter", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # Python 3.11.0-3.11.3 (Debian bookworm's 3.11.2) has no extraction filters.
    if request.param == "filter" and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no extraction filters (3.11.4+)")
    monkeypatch.setattr(staging, "_HAS_FILTER", request.param == "filter")
    return str(request.param)


def test_a_plain_tree_unpacks(tmp_path: Path, mode: str) -> None:
    staging.unpack_tree(_tar(("pkg", None, ""), ("pkg/a.py", b"x = 1\n", ""),
                             ("pkg/link.py", None, "a.py")), tmp_path / "t")
    assert (tmp_path / "t/pkg/a.py").read_text() == "x = 1\n"
    assert (tmp_path / "t/pkg/link.py").read_text() == "x = 1\n"
    assert (tmp_path / "t/pkg/a.py").stat().st_mode & 0o7022 == 0


@pytest.mark.parametrize("members", [
    [("../escape.py", b"x", "")],
    [("a/../../escape.py", b"x", "")],
    [("link", None, "../../etc/passwd")],
    [("link", None, "/etc/passwd")],
], ids=["dotdot", "nested-dotdot", "symlink-out", "symlink-absolute"])
def test_members_outside_the_target_are_refused(tmp_path: Path, mode: str,
                                                members: list[tuple[str, bytes | None, str]]
                                                ) -> None:
    with pytest.raises(SandboxError, match="Could not unpack"):
        staging.unpack_tree(_tar(*members), tmp_path / "t")
    assert not (tmp_path / "escape.py").exists()


def test_an_absolute_name_lands_inside_the_target(tmp_path: Path, mode: str) -> None:
    staging.unpack_tree(_tar(("/abs.py", b"x", "")), tmp_path / "t")
    assert (tmp_path / "t/abs.py").read_bytes() == b"x"
