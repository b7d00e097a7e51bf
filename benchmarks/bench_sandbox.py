"""Docker sandbox costs: image build, cold start, per-exec overhead, stage()+exec round trip.

Run from the repository root, with a Docker engine and a base image:

    SELFCODE_BASE_IMAGE=selfcode-base:bookworm python benchmarks/bench_sandbox.py
    python benchmarks/bench_sandbox.py --repo examples --execs 20 --skip-build

Figures, not asserts. The image build is cold: the layers are built with the engine's cache
off under a throw-away tag that is removed afterwards (the wheelhouse is downloaded into a
temporary state directory too, unless --keep-wheelhouse reuses the cached one in pytest's cache
or the repository's state directory). The other figures use the regular sandbox image of
--repo (built first when missing) with the default limits.

stdout carries only what is the same on every run (which steps ran and how many commands
succeeded); the timing table goes to stderr. Without an engine (for instance inside selfcode's
own sandbox) it prints one line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Measure this tree's code, not an installed copy.
sys.path.insert(0, str(ROOT / "src"))

from selfcode.config import SandboxConfig  # noqa: E402
from selfcode.sandbox.deps import dependencies_from_files  # noqa: E402
from selfcode.sandbox.docker import (  # noqa: E402
    DockerSandbox,
    build_image,
    docker_available,
    docker_client,
)

EXAMPLE_DIFF = """\
--- a/src/primes/__init__.py
+++ b/src/primes/__init__.py
@@ -4,7 +4,7 @@
 def is_prime(n: int) -> bool:
     if n < 2:
         return False
-    for d in range(2, n):
+    for d in range(2, int(n**0.5) + 1):
         if n % d == 0:
             return False
     return True
"""


def _tar_of(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


def _fmt(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"median {statistics.median(ms):8.1f} ms   range {min(ms):7.1f} .. {max(ms):7.1f} ms"
        f"   (n={len(ms)})"
    )


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "examples",
                        help="repository whose sandbox image is built (default: examples/)")
    parser.add_argument("--base", default=os.environ.get("SELFCODE_BASE_IMAGE")
                        or "selfcode-base:bookworm", help="base image (SELFCODE_BASE_IMAGE)")
    parser.add_argument("--execs", type=int, default=20, help="warm `true` execs to time")
    parser.add_argument("--starts", type=int, default=5, help="cold starts to time")
    parser.add_argument("--skip-build", action="store_true", help="skip the cold image build")
    parser.add_argument("--keep-wheelhouse", action="store_true",
                        help="reuse the cached wheelhouse for the cold build (docker build only)")
    args = parser.parse_args()
    err = sys.stderr

    reason = docker_available()
    if reason is not None:
        print("docker sandbox benchmark skipped: no engine")
        print(reason, file=err)
        return 0

    client = docker_client()
    repo = args.repo.resolve()
    # selfcode's own example (a directory, not a repository): its declarations as files.
    deps = dependencies_from_files({p.name: p.read_text("utf-8") for p in sorted(
        [repo / "pyproject.toml", *repo.glob("requirements*.txt")]) if p.is_file()}, str(repo))
    config = SandboxConfig(base_image=args.base)
    harness = ROOT / "sandbox"
    rows: list[tuple[str, str]] = []
    state = Path(tempfile.mkdtemp(prefix="selfcode-bench-state-"))
    cached_state = ROOT / ".pytest_cache" / "d" / "selfcode-docker-state"

    # 1. Cold image build under a throw-away tag.
    if not args.skip_build:
        tag = f"selfcode-sandbox:bench-{uuid.uuid4().hex[:10]}"
        build_state = cached_state if args.keep_wheelhouse and cached_state.is_dir() else state
        start = time.perf_counter()
        try:
            build_image(deps, build_state, args.base, client=client, tag=tag, force=True,
                        no_cache=True, progress=lambda m: print(f"  {m}", file=err))
            rows.append(("image build (cold, no layer cache)",
                         f"{time.perf_counter() - start:8.1f} s"
                         + ("  (wheelhouse cached)" if build_state == cached_state else "")))
        finally:
            try:
                client.images.remove(tag, force=True)
            except Exception as exc:  # a failed build leaves nothing to remove
                print(f"  (could not remove {tag}: {exc})", file=err)
        print("image build: done")

    # The regular image (built if missing) for the rest.
    image = build_image(deps, state, args.base, client=client).tag

    # 2. Cold start: container create + start + first exec, image present.
    starts, firsts, closes = [], [], []
    for i in range(args.starts):
        t0 = time.perf_counter()
        box = DockerSandbox.start(config, image, f"bench-{os.getpid()}-{i}", harness,
                                  client=client)
        t1 = time.perf_counter()
        ok = box.exec(["true"], timeout=30).ok
        t2 = time.perf_counter()
        box.close()
        t3 = time.perf_counter()
        assert ok
        starts.append(t1 - t0)
        firsts.append(t2 - t0)
        closes.append(t3 - t2)
    rows.append(("cold start (create + start)", _fmt(starts)))
    rows.append(("cold start + first exec", _fmt(firsts)))
    rows.append(("close (kill + remove)", _fmt(closes)))
    print(f"cold starts: {args.starts}")

    with DockerSandbox.start(config, image, f"bench-{os.getpid()}-warm", harness,
                             client=client) as box:
        box.exec(["true"], timeout=30)  # warm-up
        # 3. Per-exec overhead on a warm container, interleaved with the floor: a bare
        # `docker exec true` through the same API, without selfcode's wrapper and watchdog.
        api = client.api

        def bare() -> None:
            exec_id = api.exec_create(box.container_id, ["true"], user="1000:1000")["Id"]
            api.exec_start(exec_id)
            api.exec_inspect(exec_id)

        results: list[bool] = []
        warm: list[float] = []
        floor: list[float] = []
        for _ in range(args.execs):
            warm += _timed(lambda: results.append(box.exec(["true"], timeout=30).ok), 1)
            floor += _timed(bare, 1)
        rows.append(("warm exec of `true`", _fmt(warm)))
        rows.append(("  floor: bare docker exec `true`", _fmt(floor)))
        print(f"warm execs: {sum(results)}/{len(results)} ok")

        # 4. stage() + exec round trip (a 20 kB diff, read inside).
        payload = b"x" * 20_000
        counter = iter(range(10**9))

        def round_trip() -> None:
            path = box.stage(f"bench-{next(counter)}.diff", payload)
            result = box.exec(["cat", path], timeout=30)
            assert result.ok and len(result.stdout) == len(payload)

        rows.append(("stage() + exec round trip", _fmt(_timed(round_trip, args.execs))))
        print(f"stage round trips: {args.execs}")

        # 5. Per-candidate sandbox work: reset the candidate tree to the baseline and apply a
        # one-line patch inside the container (Trees.apply), on the example repository.
        if (ROOT / "examples" / "src" / "primes" / "__init__.py").is_file():
            from selfcode.sandbox.trees import Trees

            trees = Trees(box, timeout=60)
            trees.load_baseline(_tar_of(ROOT / "examples"))
            applied: list[bool] = []
            samples = _timed(lambda: applied.append(trees.apply(EXAMPLE_DIFF).ok), args.execs)
            rows.append(("candidate reset + apply (Trees.apply)", _fmt(samples)))
            print(f"candidate applies: {sum(applied)}/{len(applied)} ok")

            # 6. What a candidate costs beyond its own tests and benchmarks, as the verdict
            # reports it: total - tests - benchmarks, warm container (judged on tests only).
            from selfcode.gate.config import GateConfig
            from selfcode.gate.judge import Judge

            judge = Judge(trees, GateConfig(judge="fix"), {})
            judge.set_baseline(_tar_of(ROOT / "examples"))
            overhead = []
            for _ in range(max(5, args.execs // 2)):
                t = judge.judge(EXAMPLE_DIFF).timings
                overhead.append(t["total"] - t.get("tests", 0.0) - t.get("benchmarks", 0.0))
            rows.append(("per-candidate overhead (verdict total - tests - benchmarks)",
                         _fmt(overhead)))
            print(f"judged candidates: {len(overhead)}")

    shutil.rmtree(state, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"\ndocker sandbox, image {image}, base {args.base}", file=err)
    for name, figure in rows:
        print(f"{name:<{width}}  {figure}", file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
