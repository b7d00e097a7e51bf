"""Where a benchmark's time goes, for selfcode's harness: cProfile, and lines where possible.

Standard library only, like the harness. Two halves:

- Run as a script, it *is* the profiled candidate process (demoted like every other one):

      python selfcode_profile.py OUT [--lines KEYS] -- script.py ARGS...
      python selfcode_profile.py OUT [--lines KEYS] -- -m module ARGS...

  It runs the benchmark under cProfile and writes a JSON summary to OUT. With --lines (a JSON
  list of [file, line, name]) and `sys.monitoring` (Python 3.12+), it times those functions'
  lines instead. What it writes is the benchmark process's own account: advisory (it decides
  no verdict, it only points the model somewhere), and bounded again by the harness and host.

- Imported by the harness, `profile_benchmark` runs one benchmark that way in the baseline
  tree, reads the summary once the process is dead, keeps the tree's own functions and ranks
  them by own time and by cumulative time per call.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

SUMMARY_LIMIT = 8 * 1024 * 1024
TOP = 25
"""Functions kept per ranking (own time; cumulative time per call)."""
LINE_TARGETS = 5
"""The hottest functions whose lines are timed (a second run of the benchmark)."""
MAX_CALLERS = 8
MAX_LINES = 12
LINES_NOTE = ("line timings need Python 3.12 or newer (sys.monitoring) in the sandbox; "
              "this one has {version}: function level only")

Key = tuple[str, int, str]


# --- the profiled process ------------------------------------------------------------------


def _inside(path: str, root: str) -> str | None:
    """`path` relative to `root` when it is a file inside it, else None."""
    if not path or path.startswith("<") or path == "~":  # "~": cProfile's built-ins
        return None
    full = os.path.realpath(path)
    if not full.startswith(root + os.sep):
        return None
    return full[len(root) + 1:]


def _function_stats(stats: dict[Any, Any], root: str) -> tuple[float, list[list[Any]]]:
    """Total time, and [file, line, name, calls, primitive, own, cum, callers] of the tree's
    own functions (files inside `root`; the rest only counts towards the total)."""
    total = 0.0
    rows: list[list[Any]] = []
    for (path, line, name), (prim, calls, own, cum, callers) in stats.items():
        total += own
        rel = _inside(path, root)
        if rel is None:
            continue
        listed = []
        for (cpath, cline, cname), value in callers.items():
            crel = _inside(cpath, root)
            ccalls = value[1] if isinstance(value, tuple) else value
            listed.append([crel or cpath, cline, cname, ccalls])
        listed.sort(key=lambda c: -c[3])
        rows.append([rel, line, name, calls, prim, own, cum, listed[:MAX_CALLERS]])
    return total, rows


class _LineTimer:
    """Inclusive wall time per line of chosen functions, with sys.monitoring (3.12+)."""

    def __init__(self, targets: set[Key], root: str) -> None:
        self.targets, self.root = targets, root
        self.mon: Any = sys.monitoring  # type: ignore[attr-defined]
        self.tool = self.mon.PROFILER_ID
        self.times: dict[Key, dict[int, list[float]]] = {}
        self.stack: list[list[Any]] = []  # [code, line, started]
        self.keys: dict[Any, Key | None] = {}  # realpath per event would dwarf the work timed

    def _key(self, code: Any) -> Key | None:
        if code not in self.keys:
            rel = _inside(code.co_filename, self.root)
            self.keys[code] = None if rel is None else (rel, code.co_firstlineno, code.co_name)
        return self.keys[code]

    def start(self) -> None:
        mon = self.mon
        mon.use_tool_id(self.tool, "selfcode")
        mon.register_callback(self.tool, mon.events.PY_START, self._on_start)
        mon.register_callback(self.tool, mon.events.LINE, self._on_line)
        for event in (mon.events.PY_RETURN, mon.events.PY_YIELD):
            mon.register_callback(self.tool, event, self._on_return)
        mon.set_events(self.tool, mon.events.PY_START)

    def stop(self) -> None:
        self.mon.set_events(self.tool, 0)
        self.mon.free_tool_id(self.tool)

    def _on_start(self, code: Any, offset: int) -> Any:
        key = self._key(code)
        if key not in self.targets:
            return self.mon.DISABLE
        mon = self.mon
        mon.set_local_events(self.tool, code, mon.events.LINE | mon.events.PY_RETURN
                             | mon.events.PY_YIELD)
        self.stack.append([code, None, time.perf_counter()])
        return None

    def _close(self, now: float) -> None:
        code, line, started = self.stack[-1]
        if line is not None:
            key = self._key(code)
            if key is not None:
                cell = self.times.setdefault(key, {}).setdefault(line, [0, 0.0])
                cell[0] += 1
                cell[1] += now - started

    def _on_line(self, code: Any, line: int) -> None:
        now = time.perf_counter()
        # A frame left by an exception sends no PY_RETURN: drop it when its caller runs on.
        while self.stack and self.stack[-1][0] is not code:
            self.stack.pop()
        if not self.stack:
            self.stack.append([code, None, now])
        self._close(now)
        self.stack[-1][1:] = [line, now]

    def _on_return(self, code: Any, offset: int, value: object) -> None:
        if self.stack and self.stack[-1][0] is code:
            self._close(time.perf_counter())
            self.stack.pop()

    def summary(self) -> list[list[Any]]:
        return [[*key, [[line, int(c[0]), c[1]] for line, c in lines.items()]]
                for key, lines in self.times.items()]


def _run_target(argv: list[str]) -> int:
    """Run the benchmark as `python ARGV` would, in this process; its exit code."""
    import runpy

    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            sys.path[0] = os.getcwd()  # as `python -m` does; never the harness's directory
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code


def _child(args: list[str]) -> int:
    out, rest = args[0], args[1:]
    lines: list[Key] | None = None
    if rest[:1] == ["--lines"]:
        lines = [tuple(k) for k in json.loads(rest[1])]
        rest = rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    root = os.path.realpath(os.getcwd())
    doc: dict[str, Any] = {}
    if lines is not None:
        timer = _LineTimer(set(lines), root)
        timer.start()
        try:
            code = _run_target(rest)
        finally:
            timer.stop()
        doc["lines"] = timer.summary()
    else:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            code = _run_target(rest)
        finally:
            profiler.disable()
        profiler.create_stats()
        doc["total"], doc["functions"] = _function_stats(profiler.stats, root)
    sys.stdout.flush()
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return code


# --- the harness's side --------------------------------------------------------------------


def wrap(argv: list[str], out: str, lines: list[Key] | None = None) -> list[str] | None:
    """The command that profiles benchmark `argv`, or None when it is no Python script."""
    if len(argv) < 2 or not os.path.basename(argv[0]).startswith("python"):
        return None
    if argv[1] != "-m" and (argv[1].startswith("-") or not argv[1].endswith(".py")):
        return None
    extra = ["--lines", json.dumps(lines)] if lines is not None else []
    return [argv[0], os.path.abspath(__file__), out, *extra, "--", *argv[1:]]


def _num(value: Any, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    number = kind(value)
    if number != number or number < 0 or number in (float("inf"),):
        raise ValueError("not a finite, non-negative number")
    return number


def _hotspot(row: list[Any], total: float) -> dict[str, Any]:
    path, line, name, calls, prim, own, cum, callers = row
    calls = _num(calls, int)
    return {
        "file": str(path)[:500], "line": _num(line, int), "name": str(name)[:200],
        "calls": calls, "primitive_calls": _num(prim, int),
        "own_s": _num(own), "cum_s": _num(cum),
        "own_share": min(1.0, _num(own) / total), "cum_share": min(1.0, _num(cum) / total),
        "cum_per_call_s": _num(cum) / max(calls, 1),
        "callers": [{"file": str(c[0])[:500], "line": _num(c[1], int), "name": str(c[2])[:200],
                     "calls": _num(c[3], int)} for c in callers[:MAX_CALLERS]],
        "lines": [],
    }


def rank(doc: Any, top: int = TOP) -> tuple[float, list[dict[str, Any]]]:
    """The total, and the top functions by own time then by cumulative time per call."""
    total = _num(doc["total"])
    if total <= 0:
        raise ValueError("the profile recorded no time")
    spots = [_hotspot(row, total) for row in doc["functions"]]
    by_own = sorted(spots, key=lambda s: (-s["own_s"], s["file"], s["line"]))[:top]
    by_call = sorted(spots, key=lambda s: (-s["cum_per_call_s"], s["file"], s["line"]))[:top]
    chosen: list[dict[str, Any]] = []
    for spot in [*by_own, *by_call]:
        if spot not in chosen:
            chosen.append(spot)
    for i, spot in enumerate(sorted(chosen, key=lambda s: -s["own_s"])):
        spot["rank_own"] = i + 1
    return total, chosen


def _merge_lines(spots: list[dict[str, Any]], doc: Any) -> None:
    by_key = {(s["file"], s["line"], s["name"]): s for s in spots}
    for path, first, name, lines in doc.get("lines", []):
        spot = by_key.get((path, first, name))
        if spot is None:
            continue
        timed = [{"line": _num(n, int), "hits": _num(h, int), "seconds": _num(t)}
                 for n, h, t in lines]
        spot["lines"] = sorted(timed, key=lambda x: -x["seconds"])[:MAX_LINES]


Run = Callable[[list[str]], Any]
"""Runs one candidate process in the baseline tree; returns the harness's `Measured`."""


def _once(run: Run, argv: list[str], out: str, lines: list[Key] | None) -> tuple[Any, str | None]:
    wrapped = wrap(argv, out, lines)
    if wrapped is None:
        return None, "not a Python script (python FILE.py or python -m MODULE): not profiled"
    res = run(wrapped)
    if res.problem or res.timed_out or res.exit_code != 0:
        why = res.problem or ("timed out" if res.timed_out else
                              f"exit code {res.exit_code}: {res.stderr_tail[-300:]}")
        return None, f"the profiled run failed ({why})"
    import selfcode_files as files

    data = files.read_regular(out, SUMMARY_LIMIT)
    if data is None:
        return None, "the profiled run left no readable summary"
    try:
        return json.loads(data), None
    except ValueError:
        return None, "the profiled run's summary is not JSON"


def profile_benchmark(name: str, argv: list[str], workdir: str, run: Run) -> dict[str, Any]:
    """One benchmark's hotspots; `workdir` is writable by the candidate uid, `run` runs there."""
    result: dict[str, Any] = {"name": name, "total_s": 0.0, "hotspots": [],
                              "line_level": False, "note": None, "failure": None}
    doc, failure = _once(run, argv, os.path.join(workdir, "profile.json"), None)
    try:
        if doc is not None:
            result["total_s"], result["hotspots"] = rank(doc)
    except (KeyError, TypeError, ValueError) as exc:
        failure = f"the profiled run's summary is malformed ({exc})"
    if failure:
        result["failure"] = failure
        return result
    if sys.version_info < (3, 12):
        result["note"] = LINES_NOTE.format(version=sys.version.split()[0])
        return result
    hot = [(s["file"], s["line"], s["name"]) for s in result["hotspots"][:LINE_TARGETS]]
    lines_doc, problem = _once(run, argv, os.path.join(workdir, "lines.json"), hot)
    try:
        if lines_doc is not None:
            _merge_lines(result["hotspots"], lines_doc)
            result["line_level"] = True
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"malformed line timings ({exc})"
    result["note"] = problem and f"no line timings: {problem}"
    return result


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
