"""What a project declares about itself (sandbox/declared.py), and the wheelhouse built from it.

Pure tables on `dependencies_from_files`, the requires-python check, and one real `pip
download` from the index: a dependency that depends on the target does not bring the target.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.errors import ConfigError
from selfcode.sandbox.declared import python_refusal
from selfcode.sandbox.deps import PythonInfo, build_wheelhouse, dependencies_from_files
from selfcode.sandbox.image import build_image
from selfcode.sandbox.requirements import Refused

from environment import needs_index
from repos import make_repo

pytest_plugins = ["docker_util"]

SETUP_PY = '''import setuptools

setuptools.setup(
    name="Sym_Py",
    install_requires=["mpmath>=1.1", "sym-py[extra]"],
    extras_require={"dev": ["black"], "test": ["pytest-xdist"], **{"x": ["y"]}},
)
'''
SETUP_CFG = '''[metadata]
name = dateutil-lite

[options]
install_requires =
    six>=1.5
    # a comment between requirements
    tzdata; python_version >= "3.9"

[options.extras_require]
testing = freezegun
docs = sphinx

[flake8]
max-line-length = 100
'''
COMPUTED = '''from setuptools import setup
REQS = open("requirements.in").read().splitlines()
setup(name="computed", install_requires=REQS, extras_require=EXTRAS)
'''

PROJECT_TOOLS = ("pytest", "hypothesis")
DEFAULT_BUILD = ("setuptools>=40.8.0", "wheel")

# (files, requirements pip gets, the project's own name)
CASES = [
    # setup.py only: literal install_requires and the test extra; the self-reference dropped.
    ({"setup.py": SETUP_PY},
     ("mpmath>=1.1", "pytest-xdist", *DEFAULT_BUILD, *PROJECT_TOOLS), "sym-py"),
    # setup.cfg only: install_requires with a marker and a comment, the `testing` extra.
    ({"setup.cfg": SETUP_CFG},
     ("six>=1.5", 'tzdata; python_version >= "3.9"', "freezegun", *PROJECT_TOOLS),
     "dateutil-lite"),
    # setup.cfg beside setup.py: both read, the build backend is the default one.
    ({"setup.cfg": SETUP_CFG, "setup.py": "from setuptools import setup\nsetup()\n"},
     ("six>=1.5", 'tzdata; python_version >= "3.9"', "freezegun", *DEFAULT_BUILD,
      *PROJECT_TOOLS), "dateutil-lite"),
    # A declared build system is installed instead of the default one.
    ({"pyproject.toml": '[build-system]\nrequires = ["hatchling>=1.21", "hatch-vcs"]\n'
                        'build-backend = "hatchling.build"\n[project]\nname = "x"\n'
                        'dependencies = ["attrs"]\n'},
     ("attrs", "hatchling>=1.21", "hatch-vcs", *PROJECT_TOOLS), "x"),
    # A pyproject.toml of tool settings only is no package: nothing to build it with.
    ({"pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-q"\n'}, PROJECT_TOOLS, ""),
    # setup.py's computed arguments are skipped, not run.
    ({"setup.py": COMPUTED}, (*DEFAULT_BUILD, *PROJECT_TOOLS), "computed"),
]


@pytest.mark.parametrize(("files", "requirements", "name"), CASES)
def test_what_a_project_declares(files: dict[str, str], requirements: tuple[str, ...],
                                 name: str) -> None:
    deps = dependencies_from_files(files, "commit abc")
    assert deps.requirements == requirements
    assert deps.project == name


def test_computed_setup_py_arguments_are_noted_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile = f"open({str(marker)!r}, 'w').write('ran')\n" + COMPUTED
    deps = dependencies_from_files({"setup.py": hostile})
    assert not marker.exists()
    assert any("computes install_requires" in n for n in deps.notes)
    assert any("computes extras_require" in n for n in deps.notes)
    assert dependencies_from_files({"setup.py": "setup(\n"}).notes == (
        "setup.py does not parse; its dependencies are not read",)


def test_setup_declarations_pass_the_line_policy() -> None:
    with pytest.raises(Refused, match=r"setup\.py install_requires \(commit abc\)"):
        dependencies_from_files({"setup.py": 'setup(install_requires=["x @ http://h/x.whl"])'},
                                "commit abc")
    with pytest.raises(Refused, match=r"setup\.cfg \[options\] install_requires"):
        dependencies_from_files({"setup.cfg": "[options]\ninstall_requires =\n  -e .\n"})
    with pytest.raises(Refused, match=r"\[build-system\] requires"):
        dependencies_from_files({"pyproject.toml": '[build-system]\nrequires = ["./backend"]\n'})


def test_the_declarations_decide_the_image_not_unrelated_edits() -> None:
    first = dependencies_from_files({"setup.cfg": SETUP_CFG})
    edited = dependencies_from_files({"setup.cfg": SETUP_CFG + "[isort]\nprofile = black\n"})
    assert edited.fingerprint == first.fingerprint
    more = dependencies_from_files({"setup.cfg": SETUP_CFG.replace("six>=1.5", "six>=1.16")})
    assert more.fingerprint != first.fingerprint
    built = dependencies_from_files({"pyproject.toml": '[build-system]\nrequires = ["flit_core"]\n'})
    other = dependencies_from_files({"pyproject.toml": '[build-system]\nrequires = ["hatchling"]\n'})
    assert built.fingerprint != other.fingerprint


@pytest.mark.parametrize(("requires", "python", "refused"), [
    ("", "3.11.2", None),
    (">=3.10", "3.11.2", None),
    (">=3.11.4", "3.11.2", "python:3.12-slim"),
    (">=3.12", "3.11.2", "python:3.12-slim"),
    (">=3.13", "3.11.2", "python:3.14-slim"),
    ("<3.11", "3.11.2", "python:3.10-slim"),
    ("~=3.9.0", "3.11.2", "python:3.9-slim"),
    (">=4", "3.11.2", "an image whose python3 satisfies it"),
])
def test_requires_python_against_the_sandboxs_python(requires: str, python: str,
                                                     refused: str | None) -> None:
    message = python_refusal(requires, python, "selfcode-base:bookworm")
    if refused is None:
        assert message is None
        return
    assert message is not None and refused in message
    assert f"Python is {python}" in message and requires in message
    assert "SELFCODE_BASE_IMAGE" in message and "\n" not in message


def test_an_unreadable_requires_python_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match="requires-python 'three' is not a version specifier"):
        python_refusal("three", "3.11.2", "x")


CP311 = PythonInfo(version="3.11", implementation="cp", abis=("cp311", "abi3", "none"),
                   platforms=("manylinux_2_36_x86_64", "manylinux2014_x86_64", "linux_x86_64"),
                   full_version="3.11.2")


def _wheels(folder: Path) -> dict[str, str]:
    out = {}
    for wheel in folder.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            out[wheel.name.split("-")[0].lower()] = wheel.name
            assert archive.namelist()
    return out


@needs_index
def test_a_dependency_that_depends_on_the_target_does_not_bring_the_target(
        tmp_path: Path) -> None:
    """freezegun depends on python-dateutil; judging python-dateutil itself, the index's
    python-dateutil (and six, which only it needs) must not be in the image: the tree is."""
    deps = dependencies_from_files({
        "setup.cfg": "[metadata]\nname = python-dateutil\n[options.extras_require]\n"
                     "test = freezegun\n",
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=70.1"]\n'
                          'build-backend = "setuptools.build_meta"\n'})
    assert deps.project == "python-dateutil"
    house = build_wheelhouse(deps, CP311, tmp_path / "wheelhouse")
    wheels = _wheels(house)
    assert "freezegun" in wheels and "setuptools" in wheels and "pytest" in wheels
    assert "python_dateutil" not in wheels and "six" not in wheels
    pins = (house / "requirements.txt").read_text().split()
    assert len(pins) == len(wheels) and all("==" in p for p in pins)
    assert not any(p.startswith("python-dateutil") for p in pins)
    # Another target, another dependent: the same.
    bound = dependencies_from_files({
        "setup.cfg": "[metadata]\nname = six\n[options]\ninstall_requires = python-dateutil\n"})
    assert "six" not in _wheels(build_wheelhouse(bound, CP311, tmp_path / "other"))


@pytest.mark.docker
def test_eval_stops_in_one_sentence_when_the_sandboxs_python_is_too_old(
        tmp_path: Path, base_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFCODE_BASE_IMAGE", base_image)
    monkeypatch.setenv("SELFCODE_HOME", str(tmp_path / "home"))
    repo = make_repo(tmp_path / "repo", {
        "pyproject.toml": '[project]\nname = "future"\nversion = "1"\n'
                          'requires-python = ">=3.99"\n',
        "future.py": "X = 1\n", "tests/test_future.py": "def test_x():\n    pass\n"})
    (tmp_path / "p.diff").write_text("--- a/future.py\n+++ b/future.py\n@@ -1 +1 @@\n-X = 1\n"
                                     "+X = 2\n")
    result = CliRunner().invoke(app, ["eval", str(repo), "--patch", str(tmp_path / "p.diff")],
                                env={"SELFCODE_SANDBOX": "docker"})
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "The sandbox's Python is 3." in message and "requires Python >=3.99" in message
    assert "SELFCODE_BASE_IMAGE" in message and "Traceback" not in result.output


@pytest.mark.docker
def test_the_image_installs_without_the_target_a_dependency_needs(
        tmp_path: Path, base_image: str, docker_client: docker.DockerClient) -> None:
    """The image's pip install of the pruned wheelhouse succeeds (--no-deps: nothing asks for
    the missing python-dateutil) and the venv has freezegun but no dateutil: the tree is it."""

    deps = dependencies_from_files({
        "setup.cfg": "[metadata]\nname = python-dateutil\n[options.extras_require]\n"
                     "test = freezegun\n", "setup.py": "from setuptools import setup\nsetup()\n"})
    tag = f"selfcode-sandbox:test-no-target-{os.getpid()}"
    build_image(deps, tmp_path / "state", base_image, client=docker_client, tag=tag)
    try:
        probe = ("import importlib.util as u; print(u.find_spec('freezegun') is not None, "
                 "u.find_spec('dateutil') is None, u.find_spec('setuptools') is not None)")
        out = docker_client.containers.run(
            tag, ["/opt/venv/bin/python", "-c", probe], remove=True, network_mode="none")
        assert out.decode().split() == ["True", "True", "True"]
    finally:
        docker_client.images.remove(tag, force=True)
