"""Trees installed the way users install them, and precompiled, before they are judged.

sandbox/selfcode_install.py: the baseline and each candidate are `pip install`ed in the
sandbox (their metadata and console scripts kept, the tree's own code first on the path); a
candidate that does not install, or whose install is not the baseline's, is rejected; every
sealed tree is compiled by the judge with checked hashes, so a shipped .pyc never runs.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import py_compile
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge
from selfcode.resources import harness_dir
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.trees import Trees

from repos import make_repo

pytest_plugins = ["docker_util"]

PYPROJECT = '''[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "greet"
dynamic = ["version"]

[project.scripts]
greet = "greet.cli:main"

[tool.setuptools.dynamic]
version = {attr = "greet.__version__"}
'''
INIT = '__version__ = "1.2.3"\n\n\ndef hello():\n    return "hello"\n'
CLI = 'from greet import hello\n\n\ndef main():\n    print(hello())\n'
TESTS = '''import importlib.metadata
import subprocess


def test_the_console_script_runs():
    out = subprocess.run(["greet"], capture_output=True, text=True, check=True)
    assert out.stdout == "hello\\n"


def test_the_distribution_is_installed():
    assert importlib.metadata.version("greet") == "1.2.3"
'''
GREET = {"pyproject.toml": PYPROJECT, "src/greet/__init__.py": INIT, "src/greet/cli.py": CLI,
         "tests/test_greet.py": TESTS}
BOTH_PASS = {"tests/test_greet.py::test_the_console_script_runs": "passed",
             "tests/test_greet.py::test_the_distribution_is_installed": "passed"}


def tar_bytes(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def diff_of(path: str, old: str, new: str) -> str:
    """A one-hunk diff replacing all of `path` (small files only)."""
    before, after = old.splitlines(), new.splitlines()
    lines = [f"--- a/{path}", f"+++ b/{path}", f"@@ -1,{len(before)} +1,{len(after)} @@",
             *(f"-{line}" for line in before), *(f"+{line}" for line in after)]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["docker", "local"])
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The docker sandbox (the judge that matters) and the local one, which installs alike."""
    if request.param == "local":
        with LocalSandbox(harness_dir()) as local:
            yield local
        return
    request.applymarker(pytest.mark.docker)
    yield request.getfixturevalue("sandbox")


def test_console_scripts_and_metadata_work_at_baseline_and_for_a_candidate(box: Sandbox) -> None:
    trees = Trees(box, timeout=120)
    trees.load_baseline(tar_bytes(dict(GREET)))
    assert trees.install_seconds is not None and trees.install_seconds > 0
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("greet")  # nothing went into selfcode's environment
    assert trees.run_tests("a").outcomes == BOTH_PASS
    same = trees.apply(diff_of("src/greet/cli.py", CLI, CLI.replace("print(", "print(*[")
                               .replace("))", ")])")))
    assert same.ok and same.install_error is None and same.install_seconds
    assert trees.run_tests("b").outcomes == BOTH_PASS
    # The script runs the candidate's code, not an installed copy of the baseline's.
    louder = trees.apply(diff_of("src/greet/cli.py", CLI, CLI.replace("hello()", "hello() + '!'")))
    assert louder.ok and louder.install_error is None
    outcomes = trees.run_tests("b").outcomes or {}
    assert outcomes["tests/test_greet.py::test_the_console_script_runs"] == "failed"
    # No build artefact lands in the judged tree.
    listing = box.exec(["ls", f"{box.judge_dir}/trees/b", f"{box.judge_dir}/trees/b/src"],
                       timeout=10, judge=True).stdout.decode()
    assert "build" not in listing.split() and "egg-info" not in listing


def test_a_candidate_that_does_not_install_is_rejected_with_pips_reason(box: Sandbox) -> None:
    judge = Judge(Trees(box, timeout=120), GateConfig(), {})
    judge.set_baseline(tar_bytes(dict(GREET)))
    verdict = judge.judge(diff_of("src/greet/__init__.py", INIT,
                                  INIT.replace("def hello():", "def hello(:")))
    assert verdict.status == "rejected", verdict.reasons
    reason = " | ".join(verdict.reasons)
    assert reason.startswith("the candidate does not install: ")
    assert "SyntaxError" in reason and "src/greet/__init__.py" in reason
    assert verdict.timings["install"] > 0


def test_a_baseline_that_does_not_install_stops_the_run(box: Sandbox) -> None:
    from selfcode.errors import SandboxError

    broken = {**GREET, "src/greet/__init__.py": INIT.replace("def hello():", "def hello(:")}
    with pytest.raises(SandboxError, match=r"The baseline does not install .*SyntaxError") as err:
        Trees(box, timeout=120).load_baseline(tar_bytes(broken))
    assert "\n" not in str(err.value)


SETUP_PY = '''from setuptools import setup

setup(name="plain", version="1.0", packages=["plain"],
      entry_points={"console_scripts": ["plain = plain:main"]})
'''


@pytest.mark.parametrize(("setup_py", "why"), [
    # A new pytest plugin: pytest loads every distribution's `pytest11` entry points.
    (SETUP_PY.replace('"console_scripts"', '"pytest11": ["p = plain"], "console_scripts"'),
     "declares other entry points than the baseline's"),
    # A .pth at the top of site-packages runs in every Python that has it on its path.
    (SETUP_PY.replace("packages=", 'data_files=[("", ["data/boot.pth"])], packages='),
     "adds boot.pth to site-packages"),
    (SETUP_PY.replace('version="1.0"', 'version="1.1"'),
     r"makes the distributions \['plain-1.1.dist-info'\]"),
])
def test_an_install_unlike_the_baselines_is_refused(setup_py: str, why: str) -> None:
    """What only the build decides (here setup.py, protected from patches, stands in for an
    unprotected build hook) must match the baseline's; Trees.apply bypasses the path policy."""
    files = {"setup.py": SETUP_PY, "plain/__init__.py": "def main():\n    print(1)\n",
             "data/boot.pth": "import os\n", "tests/test_plain.py": "def test_x():\n    pass\n"}
    with LocalSandbox(harness_dir()) as local:
        trees = Trees(local, timeout=120)
        trees.load_baseline(tar_bytes(dict(files)))
        applied = trees.apply(diff_of("setup.py", SETUP_PY, setup_py))
    assert applied.ok and applied.install_error is not None
    assert re.search(why, applied.install_error), applied.install_error


FORGED_TESTS = "from calc import answer\n\n\ndef test_answer():\n    assert answer() == 1\n"


def forged_pyc(tmp_path: Path, tag: str) -> tuple[str, bytes]:
    """An unchecked-hash pyc of calc/__init__.py whose answer() is 2, not the source's 1:
    Python uses such a pyc without reading the source at all."""
    fake = tmp_path / "__init__.py"
    fake.write_text("def answer():\n    return 2\n")
    out = tmp_path / "forged.pyc"
    py_compile.compile(str(fake), cfile=str(out), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return f"src/calc/__pycache__/__init__.{tag}.pyc", out.read_bytes()


def test_a_shipped_forged_pyc_never_runs(box: Sandbox, tmp_path: Path) -> None:
    tag = sys.implementation.cache_tag  # cpython-311: the host's Python and the sandbox's
    probe = box.exec([box.python, "-c", "import sys; print(sys.implementation.cache_tag)"],
                     timeout=30)
    assert probe.stdout.decode().strip() == tag
    path, pyc = forged_pyc(tmp_path, tag)
    files: dict[str, str | bytes] = {"src/calc/__init__.py": "def answer():\n    return 1\n",
                                     "tests/test_calc.py": FORGED_TESTS, path: pyc}
    trees = Trees(box, timeout=60)
    trees.load_baseline(tar_bytes(files))
    assert trees.run_tests("a").outcomes == {"tests/test_calc.py::test_answer": "passed"}
    bench = {"answer": [box.python, "-c", "import calc; print(calc.answer())"]}
    run = trees.run_benchmarks(bench, pairs=1, seed=0, aa=True)
    assert run.benchmarks[0].output["a"].head == "1\n"


IMPORTS = 60  # modules of a few hundred lines each: compiling them is most of the run


def test_precompiled_trees_cut_a_short_import_heavy_benchmark(sandbox: Sandbox) -> None:
    """The same benchmark, counted with the judge's bytecode and with bytecode looked up
    elsewhere (`-X pycache_prefix`: every module compiled in memory, as before precompiling)."""
    body = "".join(f"def f{i}(x):\n    return [x + {i} for _ in range(3)]\n\n\n"
                   for i in range(150))
    files: dict[str, str | bytes] = {f"src/mods/m{i}.py": body for i in range(IMPORTS)}
    files["src/mods/__init__.py"] = ""
    files["benchmarks/bench_imports.py"] = (
        f"import importlib\nfor i in range({IMPORTS}):\n"
        "    importlib.import_module(f'mods.m{i}')\nprint('ok')\n")
    files["tests/test_ok.py"] = "def test_ok():\n    pass\n"
    trees = Trees(sandbox, timeout=120)
    trees.load_baseline(tar_bytes(files))
    python = sandbox.python
    spec = {"precompiled": [python, "benchmarks/bench_imports.py"],
            "compiled_in_memory": [python, "-X", "pycache_prefix=/tmp/nowhere",
                                   "benchmarks/bench_imports.py"]}
    run = trees.run_benchmarks(spec, pairs=1, seed=0, metric="instructions", aa=True)
    counts = {b.name: b.a[0] for b in run.benchmarks}
    ratio = counts["precompiled"] / counts["compiled_in_memory"]
    print(f"instructions: {counts}, precompiled/in-memory = {ratio:.3f}")
    assert ratio < 0.6, counts



def test_the_tests_see_the_repositorys_files_not_the_judges_bytecode(tmp_path: Path) -> None:
    """Sealed trees are precompiled for the benchmarks; a test that reads its own tree (as
    selfcode's own corpus tests do) must still meet only the repository's files."""
    repo = make_repo(tmp_path / "walk", {
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src"]\n',
        "src/walk/__init__.py": "def one():\n    return 1\n",
        "tests/test_walk.py": (
            "from pathlib import Path\n\nfrom walk import one\n\n\n"
            "def test_every_file_is_text():\n"
            "    root = Path(__file__).resolve().parents[1]\n"
            "    for path in root.rglob('*'):\n"
            "        assert '__pycache__' not in path.parts, path\n"
            "        if path.is_file():\n"
            "            path.read_text('utf-8')\n"
            "    assert one() == 1\n"),
    })
    patch = tmp_path / "neutral.diff"
    patch.write_text("--- a/src/walk/__init__.py\n+++ b/src/walk/__init__.py\n@@ -1,2 +1,3 @@\n"
                     "+# one\n def one():\n     return 1\n")
    proc = subprocess.run([sys.executable, "-m", "selfcode", "eval", str(repo), "--patch",
                           str(patch), "--sandbox", "local", "--json"],
                          capture_output=True, text=True, timeout=300)
    verdict = json.loads(proc.stdout)
    assert verdict["tests"]["baseline"]["failed"] == 0, verdict["reasons"]
    assert verdict["tests"]["candidate"]["failed"] == 0, verdict["reasons"]
