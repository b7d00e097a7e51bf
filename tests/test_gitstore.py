"""gitstore.py against real git repositories: run worktrees, commits, tars and the lock."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcode.errors import GitError, LockedError
from selfcode.git.lock import RepoLock
from selfcode.git.store import GitStore
from selfcode.git.worktree import RunWorktree
from selfcode.processes import process_start

CORE = (
    "def total(xs):\n    result = 0\n    for x in xs:\n        result = result + x\n"
    "    return result\n"
)
FASTER = "def total(xs):\n    return sum(xs)\n"
TEST = "from pkg.core import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"

CORE_DIFF = """\
--- a/pkg/core.py
+++ b/pkg/core.py
@@ -1,5 +1,2 @@
 def total(xs):
-    result = 0
-    for x in xs:
-        result = result + x
-    return result
+    return sum(xs)
"""

NEW_FILE_DIFF = """\
--- /dev/null
+++ b/pkg/extra.py
@@ -0,0 +1 @@
+EXTRA = 1
"""

BAD_CONTEXT_DIFF = """\
--- a/pkg/core.py
+++ b/pkg/core.py
@@ -1,2 +1,2 @@
 def nothing_like_this(xs):
-    pass
+    return 0
"""


def git(repo: Path, *args: str, check: bool = True) -> str:
    out = subprocess.run(["git", *args], cwd=repo, check=check, capture_output=True, text=True)
    return out.stdout


@pytest.fixture(autouse=True)
def _isolated_git(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No global or system git config of the machine, a fixed identity, default state dir."""
    home = tmp_path_factory.mktemp("githome")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Test User")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@example.com")
    for var in ("SELFCODE_HOME", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def make_repo(root: Path) -> Path:
    """A repository with a package, a test, a script and a symlink, in two commits."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "core.py").write_text(CORE)
    (root / "README.md").write_text("first\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    (root / "tests").mkdir()
    (root / "tests" / "test_core.py").write_text(TEST)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "docs").symlink_to("README.md")
    # Packagers often keep tests out of archives; selfcode's tar must still contain them.
    (root / ".gitattributes").write_text("tests export-ignore\n")
    (root / "README.md").write_text("second\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "second")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "target")


@pytest.fixture
def store(repo: Path) -> Iterator[GitStore]:
    s = GitStore(repo)
    yield s
    s.close()


def snapshot(repo: Path) -> dict[str, object]:
    """Every byte of the user's checkout: working tree, index, HEAD, branches."""
    files = {
        str(p.relative_to(repo)): (p.readlink() if p.is_symlink() else p.read_bytes())
        for p in sorted(repo.rglob("*"))
        if ".git" not in p.relative_to(repo).parts and (p.is_file() or p.is_symlink())
    }
    return {
        "files": files,
        "index": (repo / ".git" / "index").read_bytes(),
        "HEAD": (repo / ".git" / "HEAD").read_bytes(),
        "head_sha": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "main": git(repo, "rev-parse", "refs/heads/main"),
    }


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def tar_bytes(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        fh = tar.extractfile(name)
        assert fh is not None
        return fh.read()


def worktree_status(run: RunWorktree) -> str:
    return git(run.path, "status", "--porcelain", "--untracked-files=all")


# -- opening ------------------------------------------------------------------------------------


def test_opens_from_any_path_inside_the_work_tree(repo: Path) -> None:
    store = GitStore(repo / "pkg")
    assert store.root == repo.resolve()
    assert store.common_dir == (repo / ".git").resolve()
    assert store.state_dir() == (repo / ".git" / "selfcode").resolve()
    assert store.head_commit() == git(repo, "rev-parse", "HEAD").strip()
    store.close()


def test_not_a_repository_is_a_git_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match=r"not (inside )?a git repository") as info:
        GitStore(plain)
    assert "\n" not in str(info.value)
    with pytest.raises(GitError, match="does not exist"):
        GitStore(tmp_path / "missing")


def test_repository_without_commits_is_a_git_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(GitError, match="no commits") as info:
        GitStore(empty)
    assert str(info.value).endswith(".")


def _unknown_extension(repo: Path) -> None:
    git(repo, "config", "core.repositoryformatversion", "1")
    git(repo, "config", "extensions.frobnicate", "yes")


def _missing_head_commit(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD").strip()
    (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()


def _gitfile_to_nowhere(repo: Path) -> None:
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)
    (repo / ".git").write_text(f"gitdir: {repo.parent / 'gone'}\n")


@pytest.mark.parametrize(("breakage", "gits_words"), [
    (_unknown_extension, "unknown repository extension found: frobnicate"),
    (_missing_head_commit, "bad object HEAD"),
    (_gitfile_to_nowhere, "not a git repository: "),
])
def test_what_git_refuses_is_said_in_gits_words_not_as_an_empty_repository(
        repo: Path, breakage: object, gits_words: str) -> None:
    breakage(repo)  # type: ignore[operator]
    with pytest.raises(GitError) as info:
        GitStore(repo)
    message = str(info.value)
    assert gits_words in message and "no commits" not in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to hand the repository to another uid")
def test_another_users_repository_is_refused_unless_safe_directory_trusts_it(
        repo: Path) -> None:
    """A tree unpacked as root keeps the archive's owner: git refuses it ("dubious
    ownership"), and so does selfcode, in git's words, until the user's own configuration
    names it in `safe.directory`, as git would have it."""
    from typer.testing import CliRunner

    from selfcode.cli.app import app

    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 4321, 4321)
    with pytest.raises(GitError, match="detected dubious ownership") as info:
        GitStore(repo)
    assert "safe.directory" in str(info.value) and "no commits" not in str(info.value)
    result = CliRunner().invoke(app, ["runs", str(repo)])
    assert result.exit_code == 2 and "detected dubious ownership" in result.stderr

    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text(f"[safe]\n\tdirectory = {repo}\n")
    with GitStore(repo) as trusted:
        assert trusted.head_commit() == git(repo, "rev-parse", "HEAD").strip()
        assert "pkg/core.py" in trusted.list_files()


def test_selfcode_home_moves_the_state_dir(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("SELFCODE_HOME", str(home))
    store = GitStore(repo)
    assert store.state_dir().parent == home
    run = store.create_run("r1")
    assert run.path == store.state_dir() / "worktrees" / "r1"
    assert (run.path / "pkg" / "core.py").read_text() == CORE
    assert not (repo / ".git" / "selfcode").exists()
    store.close()


# -- reading ------------------------------------------------------------------------------------


def test_is_dirty_counts_tracked_changes_only_and_never_writes_the_index(
    store: GitStore, repo: Path
) -> None:
    assert store.is_dirty() is False
    (repo / "untracked.txt").write_text("new\n")
    assert store.is_dirty() is False
    # A touched but unchanged file: `git diff` would refresh and rewrite the index here.
    os.utime(repo / "README.md", (2_000_000_000, 2_000_000_000))
    index = (repo / ".git" / "index").read_bytes()
    assert store.is_dirty() is False
    assert (repo / ".git" / "index").read_bytes() == index
    (repo / "README.md").write_text("changed\n")
    assert store.is_dirty() is True
    git(repo, "checkout", "--", "README.md")
    (repo / "pkg" / "new.py").write_text("x = 1\n")
    git(repo, "add", "pkg/new.py")
    assert store.is_dirty() is True


def test_read_and_list_files_at_a_revision(store: GitStore, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD~1").strip()
    assert store.read_files("HEAD", ["README.md", "pkg/core.py", "nope.py", "pkg"]) == {
        "README.md": "second\n",
        "pkg/core.py": CORE,
        "nope.py": None,
        "pkg": None,
    }
    assert store.read_files(first, ["README.md", "tests/test_core.py"]) == {
        "README.md": "first\n",
        "tests/test_core.py": None,
    }
    assert store.list_files() == [
        ".gitattributes",
        "README.md",
        "docs",
        "pkg/__init__.py",
        "pkg/core.py",
        "run.sh",
        "tests/test_core.py",
    ]
    assert store.list_files(first) == ["README.md", "pkg/__init__.py", "pkg/core.py"]
    with pytest.raises(GitError, match="not a commit"):
        store.read_files("no-such-branch", ["README.md"])


def test_tracked_tar_holds_tracked_files_only(store: GitStore, repo: Path) -> None:
    (repo / "untracked.py").write_text("secret = 1\n")
    (repo / "README.md").write_text("uncommitted edit\n")
    data = store.tracked_tar()
    members = tar_members(data)
    names = {n for n, m in members.items() if not m.isdir()}
    assert names == set(store.list_files())
    assert not any(n == ".git" or n.startswith(".git/") for n in members)
    assert "untracked.py" not in members
    assert "tests/test_core.py" in members  # despite export-ignore
    assert tar_bytes(data, "README.md") == b"second\n"  # the commit, not the working tree
    assert tar_bytes(data, "pkg/core.py") == CORE.encode()
    assert members["run.sh"].mode & 0o111
    assert not members["pkg/core.py"].mode & 0o111
    assert members["docs"].issym() and members["docs"].linkname == "README.md"
    assert members["pkg"].isdir()
    older = tar_members(store.tracked_tar("HEAD~1"))
    assert "tests/test_core.py" not in older


# -- runs ---------------------------------------------------------------------------------------


def test_create_run_never_touches_the_users_checkout(store: GitStore, repo: Path) -> None:
    (repo / "README.md").write_text("uncommitted modification\n")
    (repo / "pkg" / "staged.py").write_text("staged = True\n")
    git(repo, "add", "pkg/staged.py")
    (repo / "untracked.txt").write_text("untracked\n")
    before = snapshot(repo)
    head = store.head_commit()

    run = store.create_run("r1")
    assert run.branch == "selfcode/r1"
    assert run.path == store.common_dir / "selfcode" / "worktrees" / "r1"
    assert git(repo, "rev-parse", "refs/heads/selfcode/r1").strip() == head
    assert str(run.path) in git(repo, "worktree", "list", "--porcelain")
    # The run starts from HEAD: none of the user's uncommitted work is in it.
    assert (run.path / "README.md").read_text() == "second\n"
    assert not (run.path / "pkg" / "staged.py").exists()
    assert not (run.path / "untracked.txt").exists()
    assert worktree_status(run) == ""

    sha = run.commit_patch(CORE_DIFF, "Use sum", {"Selfcode-Run": "r1"})
    store.is_dirty()
    store.tracked_tar()
    run.tracked_tar()
    store.list_files()
    run.remove()
    store.prune_leftovers()

    assert snapshot(repo) == before
    assert git(repo, "rev-parse", "selfcode/r1").strip() == sha


def test_git_variables_inherited_from_a_hook_of_another_repository_are_ignored(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(repo)
    tracked = sorted(git(repo, "ls-files").split())
    decoy = make_repo(tmp_path / "decoy")
    (decoy / "only-in-decoy.txt").write_text("decoy\n")
    git(decoy, "add", "only-in-decoy.txt")
    decoy_before = snapshot(decoy)
    # What git exports to a hook; a careless `git worktree add` or `git status` would
    # read or rewrite the decoy's index, or work on the decoy altogether.
    for var, value in {
        "GIT_DIR": decoy / ".git",
        "GIT_WORK_TREE": decoy,
        "GIT_INDEX_FILE": decoy / ".git" / "index",
    }.items():
        monkeypatch.setenv(var, str(value))
    store = GitStore(repo)
    assert store.root == repo.resolve()
    assert store.is_dirty() is False
    assert store.list_files() == tracked
    run = store.create_run("r1")
    run.commit_patch(CORE_DIFF, "Use sum", {})
    store.close()
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var)
    assert snapshot(repo) == before
    assert snapshot(decoy) == decoy_before
    assert "selfcode/r1" in git(repo, "branch", "--list", "selfcode/*")
    assert git(decoy, "branch", "--list", "selfcode/*") == ""
    assert (run.path / "pkg" / "core.py").read_text() == FASTER


def test_create_run_from_another_base(store: GitStore, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD~1").strip()
    run = store.create_run("old", base="HEAD~1")
    assert run.head() == first
    assert run.read_files(["README.md"]) == {"README.md": "first\n"}
    assert run.list_files() == ["README.md", "pkg/__init__.py", "pkg/core.py"]


def test_a_run_branch_without_commits_is_removed_and_one_with_commits_never(
        store: GitStore, repo: Path) -> None:
    base = store.head_commit()
    empty, kept, _busy = (store.create_run(name) for name in ("empty", "kept", "busy"))
    kept_head = kept.commit_patch(CORE_DIFF, "Use sum", {})
    store.update_ref("refs/selfcode/empty/1", store.commit_diff(base, CORE_DIFF, "rejected"))
    for run in (empty, kept):
        run.remove()
    before = snapshot(repo)

    assert store.remove_branch_without_commits("empty", base) is True
    assert git(repo, "branch", "--list", "selfcode/empty") == ""
    assert store.ref_sha("refs/selfcode/empty/1") is not None  # the candidates stay
    assert store.remove_branch_without_commits("empty", base) is False  # already gone
    assert store.remove_branch_without_commits("kept", base) is False  # it has a commit
    assert store.ref_sha("refs/heads/selfcode/kept") == kept_head
    assert store.remove_branch_without_commits("busy", base) is False  # checked out
    assert "selfcode/busy" in git(repo, "branch", "--list", "selfcode/busy")
    assert snapshot(repo) == before

    again = store.open_run("empty", base=base)  # a resume: made again where it started
    assert again.head() == base and again.branch == "selfcode/empty"
    with pytest.raises(GitError, match="no run branch"):
        store.open_run("never")


def test_a_branch_the_user_checked_out_is_never_removed(store: GitStore, repo: Path) -> None:
    base = store.head_commit()
    store.create_run("mine").remove()
    git(repo, "checkout", "-q", "selfcode/mine")  # the user's own checkout now holds it
    assert store.remove_branch_without_commits("mine", base) is False
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/selfcode/mine"


def test_create_run_refuses_bad_or_taken_run_ids(store: GitStore) -> None:
    for bad in ("../escape", "a b", "x..y", "", "-flag", "name.lock"):
        with pytest.raises(GitError, match="cannot name a run"):
            store.create_run(bad)
    store.create_run("taken")
    with pytest.raises(GitError, match="already exists"):
        store.create_run("taken")
    with pytest.raises(GitError, match="not a commit"):
        store.create_run("other", base="no-such-rev")


def test_commit_patch_commits_with_trailers_and_selfcode_identity(
    store: GitStore, repo: Path
) -> None:
    run = store.create_run("r1")
    base = run.head()
    trailers = {"Selfcode-Run": "r1", "Selfcode-Candidate": "3", "Selfcode-Speedup": "1.42x"}
    sha = run.commit_patch(
        CORE_DIFF, "Use sum()\n\n# a line git would strip as a comment", trailers
    )

    assert sha == run.head() == git(repo, "rev-parse", "refs/heads/selfcode/r1").strip()
    assert git(repo, "rev-parse", f"{sha}^").strip() == base
    assert run.read_files(["pkg/core.py"]) == {"pkg/core.py": FASTER}
    assert (run.path / "pkg" / "core.py").read_text() == FASTER
    assert worktree_status(run) == ""
    body = git(repo, "log", "-1", "--format=%B", sha)
    assert body.startswith("Use sum()\n\n# a line git would strip as a comment\n")
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=body, capture_output=True, text=True
    ).stdout
    assert parsed.splitlines() == [
        "Selfcode-Run: r1",
        "Selfcode-Candidate: 3",
        "Selfcode-Speedup: 1.42x",
    ]
    who = git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha).strip()
    assert who == "selfcode <selfcode@localhost>|selfcode <selfcode@localhost>"
    assert git(repo, "rev-parse", "HEAD").strip() != sha  # the user's branch did not move

    second = run.commit_patch(NEW_FILE_DIFF, "Add extra", {}, author="Ada <ada@example.com>")
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", second).strip() == (
        "Ada <ada@example.com>|Ada <ada@example.com>"
    )
    assert git(repo, "rev-parse", f"{second}^").strip() == sha
    assert (
        subprocess.run(
            ["git", "interpret-trailers", "--parse"],
            input=git(repo, "log", "-1", "--format=%B", second),
            capture_output=True,
            text=True,
        ).stdout
        == ""
    )


HOOK = "#!/bin/sh\necho ran >> '{marker}'\nexit 1\n"


def test_hooks_of_the_target_never_run(repo: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    hook_dirs = [repo / "custom-hooks", repo / ".git" / "hooks"]
    names = [
        "pre-commit",
        "prepare-commit-msg",
        "commit-msg",
        "post-commit",
        "post-checkout",
        "post-index-change",
        "reference-transaction",
    ]
    for hooks in hook_dirs:
        hooks.mkdir(exist_ok=True)
        for name in names:
            hook = hooks / name
            hook.write_text(HOOK.format(marker=markers / f"{hooks.name}-{name}"))
            hook.chmod(0o755)
    git(repo, "config", "core.hooksPath", str(repo / "custom-hooks"))

    store = GitStore(repo)
    run = store.create_run("r1")
    sha = run.commit_patch(CORE_DIFF, "Use sum", {"Selfcode-Run": "r1"})
    assert git(repo, "rev-parse", "selfcode/r1").strip() == sha
    assert list(markers.iterdir()) == []

    # The hooks are real: a plain commit in the same worktree runs them and is refused.
    refused = subprocess.run(
        ["git", "commit", "--allow-empty", "-m", "plain"], cwd=run.path, capture_output=True
    )
    assert refused.returncode != 0
    assert (markers / "custom-hooks-pre-commit").exists()
    store.close()


def test_a_bad_patch_raises_and_leaves_the_worktree_clean(store: GitStore) -> None:
    run = store.create_run("r1")
    head = run.head()
    for diff in (BAD_CONTEXT_DIFF, NEW_FILE_DIFF + BAD_CONTEXT_DIFF, "", "not a diff at all\n"):
        with pytest.raises(GitError, match="Could not commit the patch on selfcode/r1") as info:
            run.commit_patch(diff, "broken", {"Selfcode-Run": "r1"})
        assert "\n" not in str(info.value)
        assert run.head() == head
        assert worktree_status(run) == ""
        assert not (run.path / "pkg" / "extra.py").exists()
    # After the failures the worktree still takes a good patch.
    assert run.commit_patch(CORE_DIFF, "Use sum", {}) != head


def test_a_failed_commit_after_a_good_apply_resets_the_worktree(
    store: GitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = store.create_run("r1")
    head = run.head()
    real_git = run._git

    def failing_commit(command: str, *args: str, **kwargs: object) -> object:
        if command == "commit":
            assert worktree_status(run) != ""  # the patch was applied and staged
            raise GitError("git commit failed: disk full.")
        return real_git(command, *args, **kwargs)

    monkeypatch.setattr(run, "_git", failing_commit)
    with pytest.raises(GitError, match="disk full"):
        run.commit_patch(NEW_FILE_DIFF, "Add extra", {})
    assert run.head() == head
    assert worktree_status(run) == ""


def test_commit_patch_ignores_stray_files_in_the_worktree(store: GitStore, repo: Path) -> None:
    run = store.create_run("r1")
    (run.path / "stray.py").write_text("junk\n")
    (run.path / "README.md").write_text("half-written\n")
    sha = run.commit_patch(NEW_FILE_DIFF, "Add extra", {})
    changed = git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", sha).split()
    assert changed == ["pkg/extra.py"]
    assert not (run.path / "stray.py").exists()
    assert worktree_status(run) == ""


def test_bad_trailer_key_is_refused_before_anything_happens(store: GitStore) -> None:
    run = store.create_run("r1")
    head = run.head()
    with pytest.raises(ValueError, match="trailer key"):
        run.commit_patch(CORE_DIFF, "x", {"Bad Key": "v"})
    assert run.head() == head


def test_remove_keeps_the_branch_and_open_run_brings_the_worktree_back(
    store: GitStore, repo: Path
) -> None:
    run = store.create_run("r1")
    sha = run.commit_patch(CORE_DIFF, "Use sum", {})
    run.remove()
    assert not run.path.exists()
    assert str(run.path) not in git(repo, "worktree", "list", "--porcelain")
    assert git(repo, "rev-parse", "selfcode/r1").strip() == sha

    again = store.open_run("r1")
    assert again.path == run.path
    assert again.head() == sha
    assert (again.path / "pkg" / "core.py").read_text() == FASTER
    # A crash mid-patch leaves junk; resuming resets it.
    (again.path / "README.md").write_text("half-applied\n")
    (again.path / "junk.py").write_text("x\n")
    resumed = store.open_run("r1")
    assert worktree_status(resumed) == ""
    assert resumed.commit_patch(NEW_FILE_DIFF, "Add extra", {}) != sha

    with pytest.raises(GitError, match="no run branch"):
        store.open_run("never-created")


def test_open_run_after_the_worktree_directory_vanished(store: GitStore, repo: Path) -> None:
    import shutil

    run = store.create_run("r1")
    sha = run.commit_patch(CORE_DIFF, "Use sum", {})
    run.close()
    shutil.rmtree(run.path)
    again = store.open_run("r1")
    assert again.head() == sha
    assert (again.path / "pkg" / "core.py").read_text() == FASTER


def test_prune_leftovers_spares_the_run_of_the_lock_holder(store: GitStore, repo: Path) -> None:
    a = store.create_run("a")
    b = store.create_run("b")
    stray = store.worktrees_dir() / "stray"
    stray.mkdir()
    (stray / "file").write_text("x")
    with RepoLock(store.state_dir(), "a"):
        assert store.prune_leftovers() == ["b", "stray"]
    assert a.path.exists() and worktree_status(a) == ""
    assert not b.path.exists() and not stray.exists()
    listing = git(repo, "worktree", "list", "--porcelain")
    assert str(a.path) in listing and str(b.path) not in listing
    assert git(repo, "rev-parse", "--verify", "selfcode/b").strip()  # branch kept
    # Nobody holds the lock: everything under worktrees/ is a leftover.
    assert store.prune_leftovers() == ["a"]
    assert not a.path.exists()
    assert store.prune_leftovers() == []


def test_prune_leftovers_never_touches_the_users_own_worktrees(
    store: GitStore, repo: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "my-worktree"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(mine))
    gone = tmp_path / "on-a-usb-stick"
    git(repo, "worktree", "add", "-q", "-b", "usb", str(gone))
    import shutil

    shutil.rmtree(gone)  # unmounted, say; `git worktree prune` would deregister it
    store.create_run("r1")
    assert store.prune_leftovers() == ["r1"]
    listing = git(repo, "worktree", "list", "--porcelain")
    assert str(mine) in listing and str(gone) in listing


# -- the lock -----------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from selfcode.git.lock import RepoLock
lock = RepoLock(Path(sys.argv[1]), "other-run")
lock.acquire()
print("ready", flush=True)
time.sleep(120)
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with RepoLock(state, "r1") as lock:
        assert lock.stale_pid is None
        content = json.loads((state / "lock").read_text())
        assert content["pid"] == os.getpid() and content["run_id"] == "r1"
        with pytest.raises(LockedError) as info:
            RepoLock(state, "r2").acquire()
        assert str(info.value) == (
            f"Another selfcode run (pid {os.getpid()}) is working on this repository; "
            "wait for it or stop it."
        )
        holder = RepoLock.holder(state)
        assert holder is not None and holder.alive and holder.run_id == "r1"
    assert not (state / "lock").exists()
    with RepoLock(state, "r2"):  # free again
        pass


def test_lock_held_by_another_live_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(LockedError, match=rf"\(pid {proc.pid}\)"):
            RepoLock(state, "mine").acquire()
    finally:
        proc.kill()
        proc.wait()
    # Its holder died without releasing: the lock is now stale and is taken over.
    lock = RepoLock(state, "mine")
    assert lock.acquire() == proc.pid
    assert lock.stale_pid == proc.pid
    lock.release()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    pid = dead_pid()
    (state / "lock").write_text(json.dumps({"pid": pid, "run_id": "crashed"}))
    with RepoLock(state, "r2") as lock:
        assert lock.stale_pid == pid
        assert lock.took_over
        content = json.loads((state / "lock").read_text())
        assert content["pid"] == os.getpid() and content["run_id"] == "r2"
        assert content["start"] == process_start(os.getpid())
    assert not (state / "lock").exists()
    # A live pid that started after the lock was written is another process: its owner died.
    reused = {"pid": os.getpid(), "start": "1", "run_id": "crashed"}
    (state / "lock").write_text(json.dumps(reused))
    with RepoLock(state, "r3") as lock:
        assert lock.stale_pid == os.getpid() and lock.took_over


def test_half_written_lock_is_taken_over(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "lock").write_text("")
    with RepoLock(state) as lock:
        assert lock.took_over and lock.stale_pid is None


def test_release_leaves_a_lock_that_is_not_ours(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = RepoLock(state, "r1")
    lock.acquire()
    (state / "lock").unlink()  # broken by hand, and someone else took it
    other = RepoLock(state, "r2")
    other.acquire()
    lock.release()
    assert json.loads((state / "lock").read_text())["run_id"] == "r2"
    other.release()
    assert not (state / "lock").exists()


def test_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(RuntimeError), RepoLock(state, "r1"):
        raise RuntimeError("boom")
    assert not (state / "lock").exists()


def test_store_lock_lives_in_the_state_dir(store: GitStore) -> None:
    with store.lock("r1") as lock:
        assert lock.path == store.state_dir() / "lock"
        assert lock.path.exists()
        with pytest.raises(LockedError):
            store.lock("r2").acquire()
