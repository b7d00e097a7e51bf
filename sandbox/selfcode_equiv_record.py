"""Records the arguments the baseline's changed functions get, for the equivalence check.

Standard library only. Loaded by selfcode's harness into the *baseline's* processes only: into
its pytest run as a plugin (`-p selfcode_equiv_record`) and around each benchmark script
(`python selfcode_equiv_record.py SCRIPT ARGS...` or `... -m MODULE ARGS...`). It reads its
orders from SELFCODE_EQUIV_RECORD (JSON: targets, sample size, the fd of a pipe the harness
reads), installs an import hook that wraps each target right after its module has executed, and
sends every new, picklable `(args, kwargs)` (pickled before the call, so a mutation cannot
change it) as one JSON line into the pipe, up to the sample size per function; what could not
be pickled is counted and sent once, at exit.
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import json
import os
import pickle
import runpy
import sys
import threading
from typing import Any

ENV = "SELFCODE_EQUIV_RECORD"
MAX_SAMPLE_BYTES = 256 * 1024


class Sink:
    """Deduplicated, bounded samples per target, written to the harness's pipe."""

    def __init__(self, fd: int, samples: int) -> None:
        self.fd, self.samples = fd, samples
        self.seen: dict[str, set[str]] = {}
        self.skipped: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()

    def full(self, key: str) -> bool:
        return len(self.seen.get(key, ())) >= self.samples

    def record(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            data = pickle.dumps((args, kwargs), protocol=4)
        except Exception as exc:  # a lambda, an open file, a generator...
            self._skip(key, f"arguments that cannot be pickled ({type(exc).__name__})")
            return
        if len(data) > MAX_SAMPLE_BYTES:
            self._skip(key, "arguments larger than 256 KiB pickled")
            return
        digest = hashlib.sha256(data).hexdigest()
        with self.lock:
            seen = self.seen.setdefault(key, set())
            if digest in seen or len(seen) >= self.samples:
                return
            seen.add(digest)
            self._send({"f": key, "p": base64.b64encode(data).decode()})

    def _skip(self, key: str, why: str) -> None:
        with self.lock:
            counts = self.skipped.setdefault(key, {})
            counts[why] = counts.get(why, 0) + 1

    def close(self) -> None:
        with self.lock:
            for key, counts in self.skipped.items():
                for why, n in counts.items():
                    self._send({"f": key, "skipped": n, "why": why})
            self.skipped = {}

    def _send(self, record: dict[str, Any]) -> None:
        view = memoryview((json.dumps(record) + "\n").encode())
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:
            pass  # the harness stopped reading: the recording is only ever advisory


def _wrapper(sink: Sink, key: str, func: Any) -> Any:
    @functools.wraps(func)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        if not sink.full(key):
            sink.record(key, args, kwargs)
        return func(*args, **kwargs)
    return recorded


def _class_wrapper(sink: Sink, key: str, func: Any) -> Any:
    """A class method's recorder: the call is recorded without `cls`, as it is made."""
    @functools.wraps(func)
    def recorded(cls: Any, *args: Any, **kwargs: Any) -> Any:
        if not sink.full(key):
            sink.record(key, args, kwargs)
        return func(cls, *args, **kwargs)
    return recorded


def _patch(module: Any, qualnames: list[str], sink: Sink) -> None:
    """Wrap each `name` or `Class.name` of `module` (plain, static and class methods)."""
    for qualname in qualnames:
        key = f"{module.__name__}:{qualname}"
        owner_name, _, name = qualname.rpartition(".")
        owner = getattr(module, owner_name, None) if owner_name else module
        if owner is None:
            continue
        raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if isinstance(raw, staticmethod):
            setattr(owner, name, staticmethod(_wrapper(sink, key, raw.__func__)))
        elif isinstance(raw, classmethod):
            inner = raw.__func__

            setattr(owner, name, classmethod(_class_wrapper(sink, key, inner)))
        elif callable(raw) and not isinstance(raw, type):
            setattr(owner, name, _wrapper(sink, key, raw))


class _Finder:
    """A meta-path finder that lets the real finders find a target module, then wraps its
    functions right after the module's code has run."""

    def __init__(self, targets: dict[str, list[str]], sink: Sink) -> None:
        self.targets, self.sink = targets, sink

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.targets:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None and spec.loader is not None:
                self._hook(spec.loader, name)
                return spec
        return None

    def _hook(self, loader: Any, name: str) -> None:
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _patch(module, self.targets[name], self.sink)
        loader.exec_module = exec_module


def install() -> Sink | None:
    raw = os.environ.pop(ENV, "")
    if not raw:
        return None
    orders = json.loads(raw)
    fd = int(orders["fd"])
    os.set_inheritable(fd, False)  # a test's subprocesses get no copy of the pipe
    sink = Sink(fd, int(orders["samples"]))
    targets: dict[str, list[str]] = {}
    for target in orders["targets"]:
        targets.setdefault(target["module"], []).append(target["qualname"])
    for name, qualnames in targets.items():
        if name in sys.modules:
            _patch(sys.modules[name], qualnames, sink)
    sys.meta_path.insert(0, _Finder(targets, sink))
    atexit.register(sink.close)
    return sink


def _run_script(argv: list[str]) -> None:
    """Run a benchmark the way `python SCRIPT ARGS` or `python -m MODULE ARGS` would."""
    if argv[:1] == ["-m"] and len(argv) > 1:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return
    script = os.path.abspath(argv[0])
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


_SINK = install()  # as a pytest plugin: at import, before any test module imports a target

if __name__ == "__main__":
    _run_script(sys.argv[1:])
