"""The machine: git, Python, and (for the docker backend) the engine and the base image."""

from __future__ import annotations

import shutil
import subprocess
import sys

from selfcode.config import Settings
from selfcode.doctor.checks import Check, Stopwatch


def git_check() -> Check:
    if not shutil.which("git"):
        return Check(name="git", ok=False, detail="git is not on PATH; install git.")
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    return Check(name="git", ok=out.returncode == 0,
                 detail=out.stdout.strip() or "git --version failed; reinstall git.")


def python_check() -> Check:
    ok = sys.version_info >= (3, 11)
    version = sys.version.split()[0]
    return Check(name="python", ok=ok, detail=version if ok else
                 f"{version}: selfcode needs Python 3.11 or newer; install it and reinstall "
                 "selfcode with it.")


def docker_checks(settings: Settings) -> list[Check]:
    """The engine (required when the run would use it) and the base image (pulled on first
    use when missing, so only a warning)."""
    from selfcode.sandbox.docker import base_image_present, docker_available
    from selfcode.sandbox.image import DEFAULT_BASE, OFFLINE_BASE

    watch = Stopwatch()
    needed = settings.sandbox.backend == "docker"
    reason = docker_available()
    if reason is not None:
        advice = ("start Docker, or pass --sandbox local (which does not isolate)" if needed
                  else "the local sandbox chosen works without it, but does not isolate")
        return [Check(name="docker engine", ok=False, required=needed, seconds=watch.seconds,
                      detail=f"{reason}; {advice}.")]
    checks = [Check(name="docker engine", ok=True, detail="answers", seconds=watch.seconds)]
    base = settings.sandbox.base_image
    present = base_image_present(base)
    if not present and base == DEFAULT_BASE and base_image_present(OFFLINE_BASE):
        checks.append(Check(name="base image", ok=True, detail=f"{base} is not present; the "
                            f"offline base {OFFLINE_BASE} will be used"))
        return checks
    checks.append(Check(
        name="base image", ok=present, required=False,
        detail=f"{base} is present" if present else
        f"{base} is not present; it is pulled on first use, or offline run "
        "sandbox/bootstrap-base.sh and set SELFCODE_BASE_IMAGE to the name it prints."))
    return checks
