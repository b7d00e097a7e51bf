"""`selfcode improve --self` works on a real checkout of selfcode, and says how to get one.

The resolver is tested directly; the CLI is tested from this editable checkout, from a
SELFCODE_SOURCE checkout, and from a wheel installed into a fresh venv inside another git
project (where the old `Path(__file__).parents[...]` quietly picked that project).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.errors import ConfigError
from selfcode.resources import NO_CHECKOUT, self_source

from environment import needs_checkout
from repos import git, make_repo

ROOT = Path(__file__).resolve().parents[1]
SELFCODE_PYPROJECT = '[project]\nname = "selfcode"\nversion = "0"\n'
runner = CliRunner()


def fake_checkout(path: Path, pyproject: str = SELFCODE_PYPROJECT) -> Path:
    return make_repo(path, {"pyproject.toml": pyproject, "src/selfcode/__init__.py": ""})


@needs_checkout
def test_the_editable_install_resolves_to_this_checkout():
    assert self_source(environ={}) == ROOT
    assert (ROOT / ".git").exists() and (ROOT / "src" / "selfcode").is_dir()


def test_selfcode_source_wins_and_must_be_a_checkout(tmp_path):
    good = fake_checkout(tmp_path / "good")
    assert self_source(environ={"SELFCODE_SOURCE": str(good)}) == good.resolve()
    other = fake_checkout(tmp_path / "other", '[project]\nname = "somebody-else"\n')
    nested = good / "src"
    plain = tmp_path / "plain"
    (plain / "src" / "selfcode").mkdir(parents=True)
    (plain / "pyproject.toml").write_text(SELFCODE_PYPROJECT)
    for bad, why in [(tmp_path / "missing", "no readable pyproject.toml"),
                     (other, "not selfcode's"), (nested, "no readable pyproject.toml"),
                     (plain, "not the top of a git repository")]:
        with pytest.raises(ConfigError) as info:
            self_source(environ={"SELFCODE_SOURCE": str(bad)})
        message = str(info.value)
        assert f"SELFCODE_SOURCE={bad}" in message and why in message, message


@needs_checkout
def test_improve_self_gets_past_resolution_from_the_checkout(tmp_path, monkeypatch):
    # A replay file that does not exist stops the run right after the path is resolved and
    # opened, before anything is written to the checkout.
    monkeypatch.delenv("SELFCODE_SOURCE", raising=False)
    missing = tmp_path / "no-such-replay.jsonl"
    result = runner.invoke(app, ["improve", "--self", "--replay", str(missing)])
    assert result.exit_code == 2 and f"The replay file {missing} does not exist." in result.stderr
    assert "--self needs" not in result.stderr


def test_improve_self_uses_selfcode_source(tmp_path, monkeypatch):
    checkout = fake_checkout(tmp_path / "checkout")
    monkeypatch.setenv("SELFCODE_SOURCE", str(checkout))
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-replay.jsonl"
    result = runner.invoke(app, ["improve", "--self", "--replay", str(missing)])
    assert result.exit_code == 2 and "The replay file" in result.stderr
    monkeypatch.setenv("SELFCODE_SOURCE", str(tmp_path))
    result = runner.invoke(app, ["improve", "--self", "--replay", str(missing)])
    assert result.exit_code == 2 and f"SELFCODE_SOURCE={tmp_path} is not" in result.stderr


def _install_wheel(tmp_path: Path, project: Path) -> Path:
    """selfcode built as a wheel and installed into a fresh venv inside `project`; the
    dependencies are this venv's, reached through a .pth file (no network, no editable)."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("selfcode-*.whl")
    env_dir = project / ".venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Appended after the venv's own site-packages: the wheel's selfcode is found first.
    Path(purelib, "_deps_from_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin" / "selfcode"


@needs_checkout
def test_an_installed_wheel_refuses_self_in_one_sentence(tmp_path):
    project = make_repo(tmp_path / "project", {"pyproject.toml": '[project]\nname = "app"\n',
                                               "app.py": "x = 1\n"})
    selfcode = _install_wheel(tmp_path, project)
    env = {k: v for k, v in os.environ.items()
           if k not in ("SELFCODE_SOURCE", "PYTHONPATH", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    where = subprocess.run([str(selfcode.parent / "python"), "-c",
                            "import selfcode; print(selfcode.__file__)"],
                           capture_output=True, text=True, env=env, check=True).stdout
    assert where.startswith(str(project / ".venv"))  # the wheel, not this checkout
    result = subprocess.run([str(selfcode), "improve", "--self"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {NO_CHECKOUT}"
    assert "selfcode/" not in git(project, "branch", "--all")
