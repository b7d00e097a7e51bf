"""The host's reading of candidate patches against one baseline, before any of a patch runs.

Nothing here executes a patch: selfcode's policy parser and git's own reading of it in a
throwaway repository (gitpatch.py: which paths, which modes, whether it applies), the protected
paths, the modules it must not shadow and the context-probe scan. `selfcode eval` asks first,
so a patch refused here costs no sandbox, no baseline run and no calibration; the `Judge` asks
again for every candidate, before the sandbox sees it.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import NamedTuple

from selfcode.edits import DiffFile, PathPolicy, diff_stats, parse_unified_diff
from selfcode.errors import ConfigError, EditError, PolicyError
from selfcode.gate.config import GateConfig
from selfcode.gate.equivalence import Plan, plan, python_sources
from selfcode.gate.gitpatch import GitBaseline, GitReading
from selfcode.gate.paths import lookalike_violations
from selfcode.gate.probes import context_probes
from selfcode.gate.protected import protected_violations
from selfcode.gate.rebinding import judged_packages, rebindings
from selfcode.gate.shadowing import shadowing_violations
from selfcode.gate.verdict import Goal, PatchSummary, Status, Verdict

Refusal = tuple[Status, list[str]]


def judge_goal(config: GateConfig, benchmarks: dict[str, list[str]]) -> Goal:
    """How candidates are judged: the configured judge, or by speed when there are benchmarks
    and by fixed tests otherwise; a metric judge needs its command."""
    goal: Goal = config.judge if config.judge != "auto" else ("speed" if benchmarks else "fix")
    if goal == "metric" and not config.metric_command:
        raise ConfigError("The judge 'metric' needs [tool.selfcode.gate] metric_command, a "
                          "command that prints one JSON number.")
    return goal


def make_verdict(status: str, reasons: list[str], summary: PatchSummary,
                 timings: dict[str, float], goal: Goal, sandbox: tuple[str, tuple[str, ...]],
                 **fields: object) -> Verdict:
    """A verdict; `sandbox` is the backend's kind and what it cannot rule out."""
    kind, gaps = sandbox
    return Verdict.model_validate({
        "accepted": status == "accepted", "status": status, "goal": goal,
        "reasons": reasons, "patch": summary, "timings": timings, "sandbox": kind,
        "integrity_gaps": list(gaps), **fields,
    })


class Reading(NamedTuple):
    """What the host made of one patch."""

    diff: str
    """The text to judge and commit (with the last line's newline git would assume)."""
    summary: PatchSummary
    refusal: Refusal | None
    checks: Plan | None = None
    """The changed functions to compare with the baseline's (speed only)."""


class Police:
    """One baseline's scratch git repository, file list and Python sources, for reading patches."""

    def __init__(self, tar: bytes, config: GateConfig, goal: Goal) -> None:
        self.tar = tar
        self.config = config
        self.goal = goal
        with tarfile.open(fileobj=io.BytesIO(tar)) as listing:
            self.paths = frozenset(m.name.removeprefix("./") for m in listing)
        self.sources = python_sources(tar)
        self._git = GitBaseline(tar)  # git's own reading of each patch, on the host

    def close(self) -> None:
        self._git.close()

    def read(self, diff: str, timings: dict[str, float]) -> Reading:
        """Read `diff`; its refusal as (status, reasons), or None. Adds the `read` timing."""
        # git ignores a last header line with no newline, while the commit applies the patch
        # with one: judge exactly the lines that will be committed.
        diff = diff if not diff or diff.endswith("\n") else diff + "\n"
        try:
            summary, reading, refusal = self._police(diff, timings)
            checks = None if refusal or reading is None else self._equivalence_plan(reading)
        except RecursionError:
            # Candidate text nested deeper than Python's parser goes: refuse, never crash.
            return Reading(diff, PatchSummary(), ("rejected", [
                "the patch's code is nested too deeply for the gate to read it; write it "
                "flatter"]))
        except (ValueError, UnicodeError) as exc:
            # Whatever else in the text the readers choke on is the patch's fault, not a crash.
            return Reading(diff, PatchSummary(),
                           ("unusable", [f"the gate could not read the patch: {exc}"[:500]]))
        return Reading(diff, summary, refusal, checks)

    def _police(self, diff: str, timings: dict[str, float]) -> tuple[
            PatchSummary, GitReading | None, Refusal | None]:
        """Nothing of the patch runs here, and any doubt refuses it."""
        try:
            files: list[DiffFile] = parse_unified_diff(diff, PathPolicy())
        except PolicyError as exc:
            return PatchSummary(), None, ("rejected", [str(exc)])
        except EditError as exc:
            return PatchSummary(), None, ("unusable", [str(exc)])
        summary = PatchSummary.model_validate(diff_stats(files))
        t0 = time.perf_counter()
        reading = self._git.read(diff, files)  # every path either reading names is checked
        timings["read"] = round(time.perf_counter() - t0, 4)
        touched = sorted({f.path for f in files} | {f.old_path for f in files if f.old_path}
                         | reading.paths)
        protected = (protected_violations(touched, self.config.protected)
                     or lookalike_violations(touched, self.config.protected))
        if protected:
            return summary, reading, ("rejected",
                                      [f"protected path touched: {p}" for p in protected])
        if reading.refusal:
            return summary, reading, (reading.status, [reading.refusal])
        shadows = shadowing_violations(touched, self.paths)
        if shadows:
            return summary, reading, ("rejected", shadows)
        probes = (context_probes(diff, self._git.new_files(reading))
                  if self.config.refuse_context_probes else [])
        if probes:
            return summary, reading, ("rejected", [
                f"the patch inspects how it is run ({', '.join(probes)}); a change must be "
                "faster everywhere, not only under the benchmark"])
        judged = judged_packages(self.config.judge_paths)
        rebound = (rebindings(self._git.new_files(reading), judged)
                   if self.config.canary else [])
        if rebound:
            return summary, reading, ("rejected", [
                f"the patch rebinds names of the judge's package from outside "
                f"({'; '.join(rebound[:3])}); change a module's own code instead"])
        return summary, reading, None

    def _equivalence_plan(self, reading: GitReading) -> Plan | None:
        """The changed functions to compare, read on the host; None when not judging speed
        (a fix or a metric is meant to change behaviour)."""
        if self.goal != "speed" or not self.config.equivalence:
            return None
        paths = {c.path for c in reading.changes if c.path.endswith(".py")}
        texts: dict[str, str | None] = {f.path: f.text for f in self._git.new_files(reading)
                                        if f.path in paths}
        texts.update({c.path: None for c in reading.changes
                      if c.path in paths and c.new_mode == "000000"})
        checks = plan(self.sources, texts)
        for path in sorted(paths - texts.keys()):
            checks.not_checked[f"{path}:*"] = "its text after the patch could not be read"
        return checks
