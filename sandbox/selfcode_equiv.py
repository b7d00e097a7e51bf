"""The harness's equivalence check: do the changed functions behave as the baseline's do?

Standard library only, like the harness (`harness.py equiv`, which passes itself as `tools` for
its RunDir, tree paths and environment). Three steps, each a fresh candidate-uid process:

1. record (baseline, once per baseline and function): the baseline's tests run with
   selfcode_equiv_record as a pytest plugin and each Python benchmark under it; the samples come
   back through a pipe and are kept in the judge's private directory;
2. answer (baseline, once per baseline and function): selfcode_equiv_run derives new inputs and
   calls the baseline on them; inputs and outcomes are kept privately as well;
3. differ (candidate, every time): selfcode_equiv_run calls the candidate on the same inputs.

Outcomes are compared here with selfcode_equiv_codec's restricted decoding (nothing is ever
unpickled as such); the report names the first difference as a counterexample.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
from typing import Any

import selfcode_equiv_codec as codec
import selfcode_files as files
from selfcode_proc import HarnessError, Measured, run_measured

FD = 1018
RECORDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "selfcode_equiv_record.py")
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "selfcode_equiv_run.py")
CACHE_LIMIT = 256 * 1024 * 1024


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    equiv = sub.add_parser("equiv", parents=[common])
    equiv.add_argument("--a", required=True)
    equiv.add_argument("--b", required=True)
    equiv.add_argument("--spec", required=True)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


class Store:
    """The judge's private files for one baseline: recordings and the baseline's answers."""

    def __init__(self, private: str, baseline: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{8,64}", baseline):
            raise HarnessError("invalid baseline id")
        root = os.path.join(private, "equiv")
        os.makedirs(root, mode=0o700, exist_ok=True)
        for old in os.listdir(root):  # another baseline's files answer nothing any more
            if old != baseline:
                files.remove_tree(os.path.join(root, old))
        self.dir = os.path.join(root, baseline)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def get(self, kind: str, key: str) -> Any:
        raw = files.read_regular(os.path.join(self.dir, f"{kind}-{key}.json"), CACHE_LIMIT)
        return None if raw is None else json.loads(raw)

    def put(self, kind: str, key: str, value: Any) -> None:
        with open(os.path.join(self.dir, f"{kind}-{key}.json"), "w", encoding="utf-8") as fh:
            json.dump(value, fh)


def _lines(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a pipe's lines; anything else is dropped."""
    out = []
    for line in data.split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _piped(guard: Any, argv: list[str], cwd: str, env: dict[str, str],
           timeout: float) -> tuple[Measured, list[dict[str, Any]]]:
    read_end, write_end = os.pipe()
    try:
        result = run_measured(guard, argv, cwd, env, timeout, pass_fds={FD: write_end},
                              drain=[read_end])
    finally:
        os.close(read_end)
    return result, _lines(result.streams.get(read_end, b""))


# --- 1. record ---------------------------------------------------------------------------------


def record(args: argparse.Namespace, guard: Any, tools: Any, spec: dict[str, Any],
           targets: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Samples of each target's calls: the test run's first, then each benchmark's in turn."""
    orders = {"fd": FD, "samples": spec["samples"], "targets": targets}
    sources: list[list[dict[str, Any]]] = []
    with tools.RunDir(guard) as run:
        work = run.copy_of(tools.tree_path(guard, args.a))
        env = tools.base_env(work, tools.site_path(guard, args.a))
        env["PYTHONPATH"] = os.pathsep.join([tools.HARNESS_DIR, env["PYTHONPATH"]])
        env["SELFCODE_EQUIV_RECORD"] = json.dumps(orders)
        argv = [sys.executable, "-m", "pytest", "-p", "selfcode_equiv_record",
                "-p", "no:cacheprovider", "-q", *spec.get("pytest_args", [])]
        sources.append(_piped(guard, argv, work, env, args.timeout)[1])
    tree = tools.tree_path(guard, args.a)
    for bench in spec.get("benchmarks", {}).values():
        if not bench or not os.path.basename(bench[0]).startswith("python"):
            continue  # not a Python script: nothing to wrap
        env = tools.base_env(tree, tools.site_path(guard, args.a))
        env["SELFCODE_EQUIV_RECORD"] = json.dumps(orders)
        sources.append(_piped(guard, [bench[0], RECORDER, *bench[1:]], tree, env,
                              args.timeout)[1])
    return {t["key"]: _merge(t["key"], sources, int(spec["samples"])) for t in targets}


def _merge(key: str, sources: list[list[dict[str, Any]]], cap: int) -> dict[str, Any]:
    """Round-robin over the sources, so the benchmark's inputs are kept beside the tests'."""
    per = [[r["p"] for r in s if r.get("f") == key and isinstance(r.get("p"), str)]
           for s in sources]
    samples: list[str] = []
    seen: set[str] = set()
    for row in range(max([0, *map(len, per)])):
        for column in per:
            if row < len(column) and column[row] not in seen and len(samples) < cap:
                seen.add(column[row])
                samples.append(column[row])
    skipped: dict[str, int] = {}
    for source in sources:
        for r in source:
            if r.get("f") == key and isinstance(r.get("skipped"), int):
                why = str(r.get("why", "?"))[:200]
                skipped[why] = skipped.get(why, 0) + r["skipped"]
    return {"samples": samples, "skipped": skipped}


# --- 2. and 3. answer and differ -------------------------------------------------------------


def _run_side(guard: Any, tools: Any, tree_name: str, orders: dict[str, Any],
              timeout: float) -> tuple[Measured, list[dict[str, Any]]]:
    tree = tools.tree_path(guard, tree_name)
    orders = {**orders, "token": "selfcode-equiv-" + secrets.token_hex(8)}
    # A directory of the judge's, readable by the candidate uid, which cannot replace the file.
    folder = os.path.join(guard.setup.judge_dir, "runs", "equiv-" + secrets.token_hex(8))
    os.mkdir(folder, 0o755)
    path = os.path.join(folder, "orders.json")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(orders, fh)
        os.chmod(path, 0o644)
        env = tools.base_env(tree, tools.site_path(guard, tree_name))
        result = run_measured(guard, [sys.executable, RUNNER, path], tree, env, timeout)
        # Only what follows the last token line is the runner's; before it, what calls printed.
        _, found, tail = result.stdout.rpartition(b"\n" + orders["token"].encode() + b"\n")
        return result, _lines(tail) if found else []
    finally:
        files.remove_tree(folder)


def answer(args: argparse.Namespace, guard: Any, tools: Any, spec: dict[str, Any],
           targets: list[dict[str, str]], recorded: dict[str, dict[str, Any]]
           ) -> dict[str, dict[str, Any]]:
    orders = {"side": "a", "targets": targets, "seed": spec["seed"], "calls": spec["calls"],
              "seconds": spec["seconds"], "call_seconds": spec["call_seconds"],
              "rel_tol": spec["rel_tol"], "recorded": {k: v["samples"]
                                                       for k, v in recorded.items()}}
    result, lines = _run_side(guard, tools, args.a, orders, args.timeout)
    pytest_loaded = any(r.get("pytest") is True for r in lines)
    done = any(r.get("done") for r in lines)
    out: dict[str, dict[str, Any]] = {}
    for target in targets:
        key = target["key"]
        mine = [r for r in lines if r.get("f") == key]
        why = next((str(r["not_checked"]) for r in mine if "not_checked" in r), None)
        if why is None and not done:
            why = (f"the baseline's run did not finish (exit code {result.exit_code}"
                   f"{', timed out' if result.timed_out else ''})")
        why = why or unreadable_answer(mine)
        out[key] = {"not_checked": why, "pytest": pytest_loaded,
                    "inputs": [r for r in mine if "outcome" in r] if why is None else [],
                    "slow": sum(int(r.get("slow", 0)) for r in mine),
                    "unspent": sum(int(r.get("budget_spent", 0)) for r in mine)}
    return out


def cmd_equiv(args: argparse.Namespace, guard: Any, tools: Any) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(args.spec)
    store = Store(guard.private, str(spec["baseline"]))
    targets = [{"key": f"{t['module']}:{t['qualname']}", "module": t["module"],
                "qualname": t["qualname"]} for t in spec["targets"]]
    params = [spec[k] for k in ("samples", "calls", "seconds", "call_seconds", "seed")]
    def unrecorded(wanted: list[dict[str, str]]) -> list[dict[str, str]]:
        return [t for t in wanted if store.get("rec", _digest(t["key"], spec["samples"])) is None]

    # One recording run serves every function of the changed modules (`record`), so a later
    # candidate that changes another function of the same module costs no test run.
    pool = [{"key": f"{t['module']}:{t['qualname']}", **t} for t in spec.get("record", [])]
    missing = list({t["key"]: t for t in unrecorded(pool + targets)}.values()) \
        if unrecorded(targets) else []
    if missing:
        for key, value in record(args, guard, tools, spec, missing).items():
            store.put("rec", _digest(key, spec["samples"]), value)
    recorded = {t["key"]: store.get("rec", _digest(t["key"], spec["samples"])) for t in targets}
    fresh = [t for t in targets if store.get("base", _digest(t["key"], params)) is None]
    if fresh:
        for key, value in answer(args, guard, tools, spec, fresh, recorded).items():
            store.put("base", _digest(key, params), value)
    base = {t["key"]: store.get("base", _digest(t["key"], params)) for t in targets}
    return differ(args, guard, tools, spec, targets, recorded, base)


def differ(args: argparse.Namespace, guard: Any, tools: Any, spec: dict[str, Any],
           targets: list[dict[str, str]], recorded: dict[str, Any],
           base: dict[str, Any]) -> dict[str, Any]:
    not_checked = {key: why for key, why in ((k, _why_not(recorded[k], v))
                                             for k, v in base.items()) if why}
    checked = [t for t in targets if t["key"] not in not_checked]
    limits = {t["key"]: [(r["i"], r["input"], max(1.0, 10 * float(r.get("t", 0))))
                         for r in base[t["key"]]["inputs"]] for t in checked}
    inputs = [[key, i, data, limit] for key, rows in limits.items() for i, data, limit in rows]
    report: dict[str, Any] = {"kind": "equiv", "functions": [t["key"] for t in targets],
                              "not_checked": not_checked, "inputs_tried": 0,
                              "counterexample": None, "pytest_imported": False}
    if not inputs:
        return report
    orders = {"side": "b", "targets": checked, "inputs": inputs}
    result, lines = _run_side(guard, tools, args.b, orders, args.timeout)
    got: dict[tuple[str, int], str] = {}
    for r in lines:
        if isinstance(r.get("f"), str) and isinstance(r.get("i"), int) and isinstance(
                r.get("outcome"), str):
            got.setdefault((r["f"], r["i"]), r["outcome"])
    baseline_pytest = any(v.get("pytest") for v in base.values())
    report["pytest_imported"] = any(r.get("pytest") is True for r in lines) and not baseline_pytest
    ended = (f"the candidate's run ended without an answer (exit code {result.exit_code}"
             f"{', timed out' if result.timed_out else ''})")
    for t in checked:
        for row in base[t["key"]]["inputs"]:
            report["inputs_tried"] += 1
            theirs = got.get((t["key"], row["i"]))
            example = compare(t, row, theirs, float(spec["rel_tol"]), ended)
            if example and report["counterexample"] is None:
                report["counterexample"] = example
    return report


def _why_not(recorded: dict[str, Any], base: dict[str, Any]) -> str | None:
    if base["not_checked"]:
        return str(base["not_checked"])
    if base["inputs"]:
        return None
    if base["slow"]:
        return f"the baseline took longer than the call limit on all {base['slow']} inputs"
    skipped = recorded.get("skipped", {})
    if skipped:
        return "; ".join(f"{n} calls with {why}" for why, n in skipped.items())
    return "no calls were seen in the tests or benchmarks"


def unreadable_answer(rows: list[dict[str, Any]]) -> str | None:
    """Why the baseline's answers cannot be compared, or None: one the judge cannot read back
    is a gap of the codec, not the candidate's doing (the baseline's tree answered it), so the
    function is not checked instead of the harness failing as if its report were forged."""
    for row in rows:
        if "outcome" not in row:
            continue
        try:
            _decoded(str(row["outcome"]))
        except (codec.DecodeError, ValueError) as exc:
            return f"the baseline's answer could not be read as data ({exc})"[:300]
    return None


# --- comparing -------------------------------------------------------------------------------


def _decoded(text: str) -> Any:
    return codec.decode(base64.b64decode(text, validate=True))


def compare(target: dict[str, str], row: dict[str, Any], theirs: str | None, rel_tol: float,
            ended: str) -> dict[str, Any] | None:
    """The counterexample for one input, or None when the candidate behaved as the baseline."""
    ours = _decoded(row["outcome"])
    try:
        call = _decoded(row["shown"])
        shown = call_text(target["qualname"], call)
    except (codec.DecodeError, ValueError, TypeError):
        shown = f"{target['qualname']}(…)"
    if theirs is None:
        return _example(target, shown, ours, {"kind": "missing", "why": ended}, rel_tol)
    try:
        other = _decoded(theirs)
    except (codec.DecodeError, ValueError) as exc:
        other = {"kind": "missing", "why": f"its answer could not be read ({exc})"}
    if not isinstance(other, dict) or other.get("kind") != ours.get("kind") or \
            _outcome_differs(ours, other, rel_tol):
        return _example(target, shown, ours, other if isinstance(other, dict) else
                        {"kind": "missing", "why": "its answer was not an outcome"}, rel_tol)
    return None


def _outcome_differs(a: dict[str, Any], b: dict[str, Any], rel_tol: float) -> bool:
    if a["kind"] == "raise" and a.get("exc") != b.get("exc"):
        return True
    if a["kind"] == "return" and codec.difference(a.get("value"), b.get("value"), rel_tol):
        return True
    return (codec.difference(a.get("args"), b.get("args"), rel_tol)
            or a.get("stdout") != b.get("stdout"))


def call_text(name: str, call: Any) -> str:
    ok = isinstance(call, (list, tuple)) and len(call) == 2 and isinstance(call[1], dict)
    args, kwargs = call if ok else ([], {})
    parts = [codec.show(a, 80) for a in args]
    parts += [f"{k}={codec.show(v, 80)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"[:400]


def describe(outcome: dict[str, Any]) -> str:
    kind = outcome.get("kind")
    if kind == "return":
        return f"returned {codec.show(outcome.get('value'), 120)}"
    if kind == "raise":
        return f"raised {str(outcome.get('exc', '?')).rsplit('.', 1)[-1]}({outcome.get('msg')!r})"
    if kind == "timeout":
        return f"did not return within {outcome.get('limit', 0):.1f}s"
    return f"gave no answer: {str(outcome.get('why', '?'))[:300]}"


def _example(target: dict[str, str], shown: str, ours: dict[str, Any],
             theirs: dict[str, Any], rel_tol: float) -> dict[str, Any]:
    """The counterexample's two sides, naming what differs: the result, the arguments after
    the call (an in-place mutation), or what was printed."""
    candidate, baseline = describe(theirs), describe(ours)
    same_result = ours.get("kind") == theirs.get("kind") and not (
        ours.get("exc") != theirs.get("exc")
        or codec.difference(ours.get("value"), theirs.get("value"), rel_tol))
    if not same_result and candidate == baseline and ours.get("kind") == "return":
        spot = codec.where(theirs.get("value"), ours.get("value"), rel_tol)
        candidate += f" (differing at {spot})"
    elif same_result and codec.difference(ours.get("args"), theirs.get("args"), rel_tol):
        candidate += f", leaving its arguments as {call_text('', theirs.get('args'))}"
        baseline += f", leaving them as {call_text('', ours.get('args'))}"
    elif same_result:
        candidate += f" and printed {str(theirs.get('stdout', ''))[:80]!r}"
        baseline += f" and printed {str(ours.get('stdout', ''))[:80]!r}"
    return {"function": target["key"], "input": shown, "candidate": candidate,
            "baseline": baseline}
