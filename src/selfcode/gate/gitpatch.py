"""git's own reading of a candidate patch, on the host, against a scratch copy of the baseline.

The sandbox applies patches with `git apply`, so git's reading is what a patch does. Here the
patch is applied, with the same git options, to the *index* of a throwaway bare repository that
holds the baseline (`git apply --numstat --summary -z --apply --cached`), and the resulting
index is compared with the baseline (`git diff-index --raw -p -U0`). Nothing is checked out and
nothing from the candidate runs: git only parses text and writes blobs. The repository has no
hooks, no attributes, no filters and no configuration but ours; git runs with a scrubbed
environment and a timeout.

Cost: two short git processes per patch (about 5-15 ms), three with the probe scan; building
the scratch repository is one `git fast-import` per baseline.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from selfcode.errors import GitError
from selfcode.gate.agreement import Readings, disagreement, git_paths
from selfcode.gate.diffs import DiffFile
from selfcode.gate.gitread import (
    Change,
    c_quote,
    parse_apply_output,
    parse_diff_index,
    parse_summary,
)
from selfcode.gate.probes import NewFile

__all__ = ["APPLY_OPTIONS", "GitBaseline", "GitReading"]

# The options the sandbox gives `git apply` (sandbox/harness.py, cmd_apply, outside any
# repository); the host reads with the same ones, so the two parse the patch alike.
APPLY_OPTIONS = ("--whitespace=nowarn",)
_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.attributesFile=/dev/null",
           "-c", "core.fsmonitor=false", "-c", "core.quotePath=true", "-c", "gc.auto=0",
           "-c", "core.autocrlf=false", "-c", "core.safecrlf=false",
           "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false")
_BRANCH = "refs/heads/baseline"
_FAKE_GITLINK = "1" * 40  # a submodule's commit is not in the tar; any id marks the path


@dataclass
class GitReading:
    """git's reading of one patch, and whether it agrees with the policy parser's."""

    paths: set[str] = field(default_factory=set)
    refusal: str | None = None
    status: Literal["rejected", "unusable"] = "rejected"
    changes: list[Change] = field(default_factory=list)


def _quoted(path: str) -> bytes:
    """A path for fast-import: C-quoted whenever it is not plain, so no name can end a line."""
    return c_quote(path).encode("utf-8", "surrogateescape")  # a leading '"' is quoted too


def fast_import_stream(tar: bytes) -> bytes:
    """A `git fast-import` stream committing the tar's files, links and submodules (which the
    tar holds as empty directories) to one branch."""
    out = io.BytesIO()
    commit = [f"commit {_BRANCH}\ncommitter s <s> 0 +0000\ndata 0\n".encode()]
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = archive.getmembers()
        parents = {m.name.rsplit("/", 1)[0] for m in members if "/" in m.name}
        for mark, member in enumerate(members, 1):
            if member.isfile():
                handle = archive.extractfile(member)
                data = handle.read() if handle else b""
                mode = "100755" if member.mode & 0o111 else "100644"
            elif member.issym():
                data, mode = member.linkname.encode("utf-8", "surrogateescape"), "120000"
            elif member.isdir() and member.name not in parents:
                commit.append(b"M 160000 %s %s\n" % (_FAKE_GITLINK.encode(),
                                                     _quoted(member.name)))
                continue
            else:
                continue
            out.write(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data))
            commit.append(b"M %s :%d %s\n" % (mode.encode(), mark, _quoted(member.name)))
    out.write(b"".join(commit))
    return out.getvalue()


class GitBaseline:
    """A scratch bare repository holding one baseline, for reading candidate patches."""

    def __init__(self, tar: bytes, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._dir = tempfile.TemporaryDirectory(prefix="selfcode-gitpatch-")
        root = Path(self._dir.name)
        self._repo, self._patch = root / "repo.git", root / "candidate.diff"
        self._pristine, self._index = root / "pristine.index", root / "candidate.index"
        git = shutil.which("git") or "git"
        self._git = git
        self._env = {
            "PATH": os.pathsep.join(dict.fromkeys([os.path.dirname(git) or "/usr/bin",
                                                   "/usr/bin", "/bin"])),
            "HOME": str(root), "LC_ALL": "C", "LANG": "C", "TZ": "UTC",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0",
            "GIT_DIR": str(self._repo),
        }
        try:
            self._run("init", "-q", "--bare", str(self._repo))
            self._run("fast-import", "--quiet", "--done",
                      data=fast_import_stream(tar) + b"done\n")
            self._run("read-tree", _BRANCH, index=self._pristine)
        except (OSError, _GitFailed, subprocess.TimeoutExpired) as exc:
            self.close()
            raise GitError(f"git could not build the scratch copy of the baseline that every "
                           f"patch is read against ({exc}); check that git works.") from exc

    def close(self) -> None:
        self._dir.cleanup()

    def _run(self, *args: str, data: bytes | None = None,
             index: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        env = dict(self._env)
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        result = subprocess.run([self._git, *_CONFIG, *args], input=data, env=env,
                                capture_output=True, timeout=self.timeout,
                                cwd=self._dir.name, check=False, stdin=None if data else
                                subprocess.DEVNULL)
        if result.returncode != 0:
            raise _GitFailed(result.stderr.decode("utf-8", "replace").strip())
        return result

    def read(self, diff: str, files: Sequence[DiffFile]) -> GitReading:
        """Apply `diff` to a fresh copy of the baseline's index and compare the readings."""
        try:
            self._patch.write_bytes(diff.encode("utf-8"))
        except UnicodeEncodeError:
            return GitReading(refusal="The patch is not valid UTF-8 text.")
        shutil.copyfile(self._pristine, self._index)
        try:
            applied = self._run("apply", "--numstat", "--summary", "-z", "--apply", "--cached",
                                *APPLY_OPTIONS, str(self._patch), index=self._index)
        except _GitFailed as exc:
            return GitReading(refusal=f"the patch does not apply: {str(exc)[-1000:]}",
                              status="unusable")
        except subprocess.TimeoutExpired:
            return GitReading(refusal=f"git could not read the patch within {self.timeout:g}s",
                              status="unusable")
        try:
            entries, lines = parse_apply_output(applied.stdout)
            summary = parse_summary(lines, [e.path for e in entries])
            raw = self._run("diff-index", "--cached", "--raw", "-z", "-p", "-U0", "--no-renames",
                            "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/",
                            "--dst-prefix=b/", _BRANCH, index=self._index)
            changes = parse_diff_index(raw.stdout)
        except (ValueError, _GitFailed, subprocess.TimeoutExpired) as exc:
            return GitReading(refusal=f"git's reading of the patch could not be read ({exc}); "
                                      "the patch is refused.")
        readings = Readings(files=files, entries=entries, summary=summary, changes=changes)
        return GitReading(paths=git_paths(readings), refusal=disagreement(readings),
                          changes=changes)

    def new_files(self, reading: GitReading) -> list[NewFile]:
        """The content after the patch of every regular file it adds or changes, with the line
        numbers that are new, for the probe scan."""
        wanted = [c for c in reading.changes if c.new_mode in ("100644", "100755")]
        if not wanted:
            return []
        try:
            batch = self._run("cat-file", "--batch", data="".join(
                f"{c.new_oid}\n" for c in wanted).encode())
        except (OSError, _GitFailed, subprocess.TimeoutExpired):
            return []  # the scan is advisory; the patch text is still scanned
        out, files, pos = batch.stdout, [], 0
        for change in wanted:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split(b" ")[2])
            body = out[header_end + 1:header_end + 1 + size]
            pos = header_end + 1 + size + 1
            files.append(NewFile(path=change.path, text=body.decode("utf-8", "replace"),
                                 added=change.added))
        return files


class _GitFailed(Exception):
    """git exited with an error; the message is its stderr."""
