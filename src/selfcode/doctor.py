"""`selfcode doctor`: one line per prerequisite, each saying ok or what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from selfcode.config import Settings, load_settings
from selfcode.errors import SelfcodeError


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    required: bool = True


def _git() -> Check:
    if not shutil.which("git"):
        return Check(name="git", ok=False, detail="not found; install git")
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    return Check(name="git", ok=out.returncode == 0, detail=out.stdout.strip())


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check(name="python", ok=ok, detail=sys.version.split()[0]
                 + ("" if ok else " (selfcode needs 3.11 or newer)"))


def _docker(settings: Settings) -> list[Check]:
    from selfcode.sandbox.docker import base_image_present, docker_available

    reason = docker_available()
    if reason is not None:
        return [Check(name="docker engine", ok=False, required=False,
                      detail=f"{reason} (the local sandbox works without it, but does not "
                             "isolate)")]
    checks = [Check(name="docker engine", ok=True, detail="answers")]
    base = settings.sandbox.base_image
    present = base_image_present(base)
    checks.append(Check(
        name="base image", ok=present, required=False,
        detail=f"{base} is present" if present else
        f"{base} is not present; it is pulled on first use, or offline run "
        "sandbox/bootstrap-base.sh and set SELFCODE_BASE_IMAGE to the name it prints"))
    return checks


def _endpoint(settings: Settings) -> Check:
    from selfcode.llm import OpenAILLM

    try:
        llm = OpenAILLM(settings.llm)
        llm.ping(retries=0)
    except SelfcodeError as exc:
        return Check(name="model endpoint", ok=False, required=False, detail=str(exc))
    target = llm.base_url
    models = ""
    try:
        names = llm.list_models()
        models = f"; models: {', '.join(names[:8])}" + (" …" if len(names) > 8 else "")
    except SelfcodeError:
        pass
    return Check(name="model endpoint", ok=True,
                 detail=f"{target} answers with model {settings.llm.model}{models}")


def run_checks(path: Path) -> list[Check]:
    settings = load_settings(path if (path / ".git").exists() else None)
    checks: list[Check] = [_git(), _python()]
    steps: list[Callable[[], list[Check]]] = [
        lambda: _docker(settings), lambda: [_endpoint(settings)]]
    for step in steps:
        checks.extend(step())
    return checks
