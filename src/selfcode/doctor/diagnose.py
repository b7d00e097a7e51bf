"""Every check in order, each reported as soon as it is made: the machine, the endpoint, the
repository on the host, with `--executor ray` the cluster and each of its nodes, then the dry
run in the sandbox (skipped, with the reason, when what it needs failed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from selfcode.config import Settings, load_settings
from selfcode.doctor.checks import Check, Report
from selfcode.doctor.endpoint import endpoint_checks
from selfcode.doctor.estimate import Estimate
from selfcode.doctor.machine import docker_checks, git_check, python_check
from selfcode.run.events import Observer
from selfcode.sandbox.results import ProfileRun


class Diagnosis(BaseModel):
    """What `selfcode doctor --json` prints."""

    ok: bool
    """Everything `improve` needs works (exit 0)."""
    checks: list[Check]
    estimate: Estimate | None = None
    profile: ProfileRun | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def run_checks(path: Path, environ: Mapping[str, str] | None = None,
               settings: Settings | None = None, report: Report | None = None) -> list[Check]:
    """The machine's and the endpoint's checks. `environ` (default: os.environ) and `settings`
    (default: loaded for `path`) are for tests and callers that already hold them."""
    if settings is None:
        settings = load_settings(path if (path / ".git").exists() else None,
                                 environ=None if environ is None else dict(environ))
    loaded = settings
    steps: list[Callable[[], list[Check]]] = [
        lambda: [git_check(), python_check()], lambda: docker_checks(loaded),
        lambda: endpoint_checks(loaded, environ)]
    checks: list[Check] = []
    for step in steps:
        for check in step():  # each reported as soon as it is made: some take seconds
            checks.append(check)
            if report is not None:
                report(check)
    return checks


def diagnose(path: Path, overrides: dict[str, Any], observer: Observer,
             report: Report | None = None, profile: bool = False,
             environ: Mapping[str, str] | None = None) -> Diagnosis:
    """All checks for the repository at `path`, with the command line's `overrides`.

    Raises `SelfcodeError` (exit 2) only for input it cannot work with: a path that is no git
    repository with a commit, a configuration that does not load.
    """
    from selfcode.doctor.dryrun import dry_run
    from selfcode.doctor.repository import benchmark_check, dependency_check, head_check
    from selfcode.git.store import GitStore

    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        if report is not None:
            report(check)

    with GitStore(path) as store:
        settings = load_settings(path, overrides,
                                 environ=None if environ is None else dict(environ))
        observer.event("phase", "checking the machine and the model endpoint")
        run_checks(path, environ, settings, add)
        observer.event("phase", "reading the repository's HEAD")
        add(head_check(store))
        add(benchmark_check(store, settings))
        deps_check, deps = dependency_check(store, settings)
        add(deps_check)
        if settings.executor.kind == "ray":  # the nodes judge; the driver's checks stay
            from selfcode.doctor.cluster import cluster_checks

            observer.event("phase", "asking each node of the Ray cluster")
            cluster_checks(settings, deps, add)
        blocking = [c.name for c in checks if c.failed and c.name in _SANDBOX_NEEDS]
        result = None
        if blocking:
            add(Check(name="dry run", ok=False, detail=(
                f"not run in the sandbox, because the {' and '.join(blocking)} check failed; "
                "fix that first, then run doctor again.")))
        else:
            # As a run: the local backend installs nothing, so it gets no declarations.
            docker = settings.sandbox.backend == "docker"
            result = dry_run(store, settings, deps if docker else None, observer, add, profile)
    return Diagnosis(ok=not any(c.failed for c in checks), checks=checks,
                     estimate=result.estimate if result else None,
                     profile=result.profile if result else None)


# What the dry run cannot do without (the endpoint is not among them: it needs no model).
_SANDBOX_NEEDS = ("docker engine", "dependencies")
