"""`selfcode doctor`: one line per prerequisite, each saying ok or what to do; with
`--profile`, where the repository's benchmarks spend their time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from selfcode.config import Settings, load_settings
from selfcode.errors import SelfcodeError

if TYPE_CHECKING:
    from selfcode.llm import OpenAILLM
    from selfcode.run.events import Observer
    from selfcode.sandbox.results import ProfileRun


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
    from selfcode.sandbox.image import DEFAULT_BASE, OFFLINE_BASE

    reason = docker_available()
    if reason is not None:
        return [Check(name="docker engine", ok=False, required=False,
                      detail=f"{reason} (the local sandbox works without it, but does not "
                             "isolate)")]
    checks = [Check(name="docker engine", ok=True, detail="answers")]
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
        "sandbox/bootstrap-base.sh and set SELFCODE_BASE_IMAGE to the name it prints"))
    return checks


_DOCTOR_TIMEOUT = 15.0  # seconds; a doctor that hangs for the run's long timeout helps nobody


def _endpoint(settings: Settings, environ: Mapping[str, str] | None = None) -> Check:
    """Reachable or not, and if reachable, whether it answers a one-token request."""
    from selfcode.llm import EndpointUnreachable, OpenAILLM

    name = "model endpoint"
    config = settings.llm.model_copy(
        update={"timeout": min(settings.llm.timeout, _DOCTOR_TIMEOUT)})
    try:
        llm = OpenAILLM(config, environ=environ)
    except SelfcodeError as exc:
        return Check(name=name, ok=False, required=False, detail=f"not configured: {exc}")
    target = llm.base_url
    try:
        llm.ping(retries=0)
    except EndpointUnreachable as exc:
        return Check(name=name, ok=False, required=False,
                     detail=f"{target} is unreachable: {exc}")
    except SelfcodeError as exc:
        served = _served_models(llm)
        return Check(name=name, ok=False, required=False,
                     detail=f"{target} is reachable, but the request failed: {exc}{served}")
    return Check(name=name, ok=True,
                 detail=f"{target} is reachable and answers with model "
                        f"{settings.llm.model}{_served_models(llm)}")


def _served_models(llm: OpenAILLM) -> str:
    """"; models: a, b, ..." when the endpoint lists its models, else ""."""
    try:
        names = llm.list_models(retries=0)
    except SelfcodeError:
        return ""
    if not names:
        return ""
    shown = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
    missing = "" if llm.model in names else f" ({llm.model} is not among them)"
    return f"; models: {shown}{missing}"


def run_checks(path: Path, environ: Mapping[str, str] | None = None,
               settings: Settings | None = None) -> list[Check]:
    """Every check, in order. `environ` (default: os.environ) and `settings` (default: loaded
    for `path`) are for tests and callers that already hold them."""
    if settings is None:
        settings = load_settings(path if (path / ".git").exists() else None,
                                 environ=None if environ is None else dict(environ))
    checks: list[Check] = [_git(), _python()]
    steps: list[Callable[[], list[Check]]] = [
        lambda: _docker(settings), lambda: [_endpoint(settings, environ)]]
    for step in steps:
        checks.extend(step())
    return checks


def profile_repository(path: Path, settings: Settings, observer: Observer) -> ProfileRun:
    """Where the benchmarks of HEAD spend their time, measured in the sandbox as a run would
    (`doctor --profile`): what selfcode will aim the model at, before any model is paid."""
    from selfcode.errors import ConfigError
    from selfcode.gate.judge import discover_benchmarks
    from selfcode.git.store import GitStore
    from selfcode.history.db import new_run_id
    from selfcode.sandbox.factory import baseline_dependencies, open_sandbox
    from selfcode.sandbox.trees import Trees

    store = GitStore(path)
    deps = baseline_dependencies(settings.sandbox, store, "HEAD")
    with open_sandbox(settings.sandbox, store.state_dir(), "doctor-" + new_run_id(), deps,
                      observer) as sandbox:
        benchmarks = discover_benchmarks(store.list_files("HEAD"), settings.gate, sandbox.python)
        if not benchmarks:
            raise ConfigError("This repository declares no benchmarks to profile: add "
                              "benchmarks/bench_*.py scripts or [tool.selfcode.benchmarks] "
                              "commands.")
        trees = Trees(sandbox, settings.sandbox.timeout)
        trees.load_baseline(store.tracked_tar("HEAD"))
        observer.event("phase", f"profiling {len(benchmarks)} benchmark(s)")
        return trees.profile(benchmarks)
