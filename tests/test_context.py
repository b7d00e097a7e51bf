"""What the model sees: outlines, imports followed, a bounded and ranked map, targets' code."""

import time

import pytest

from selfcode.gate.config import GateConfig
from selfcode.prompt.context import (
    MAP_CHARS,
    editable_sources,
    exercised_files,
    function_at,
    imported_modules,
    outline,
    peripheral,
    repo_map,
)
from selfcode.prompt.focus import ContextBuilder
from selfcode.prompt.targets import Target


def test_outline_lists_signatures():
    source = "def f(a, b=1):\n    pass\n\nclass C:\n    def m(self, *xs):\n        pass\n"
    assert outline(source) == ["def f(a, b=1)", "class C", "    def m(self, *xs)"]
    assert outline("def broken(:\n") == []


def make(tmp_path, files):
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return sorted(files)


def test_benchmarks_lead_to_the_code_they_run(tmp_path):
    files = make(tmp_path, {
        "benchmarks/bench_x.py": "from pkg.core import work\nwork()\n",
        "src/pkg/__init__.py": "",
        "src/pkg/core.py": "from pkg import helpers\ndef work():\n    helpers.h()\n",
        "src/pkg/helpers.py": "def h():\n    pass\n",
        "src/pkg/unrelated.py": "X = 1\n",
        "tests/test_x.py": "def test():\n    pass\n",
    })
    reached = exercised_files(tmp_path, files, ["benchmarks/bench_x.py"])
    assert reached[:2] == ["benchmarks/bench_x.py", "src/pkg/core.py"]
    assert "src/pkg/helpers.py" in reached and "src/pkg/unrelated.py" not in reached

    sources = editable_sources(tmp_path, files, ["benchmarks/bench_x.py"],
                               GateConfig().protected, max_chars=10_000)
    assert list(sources)[:2] == ["benchmarks/bench_x.py", "src/pkg/core.py"]
    assert "tests/test_x.py" not in sources  # protected, and not an entry point
    assert "def work" in repo_map(tmp_path, files)


def test_size_budget_is_respected(tmp_path):
    files = make(tmp_path, {"run.py": "import a, b\n", "a.py": "x = 1\n" * 100,
                            "b.py": "y = 2\n", "c.py": "z = 3\n"})
    sources = editable_sources(tmp_path, files, ["run.py"], GateConfig().protected,
                               max_chars=100)
    assert list(sources) == ["run.py", "b.py"]  # a.py does not fit; c.py is never run


# --- issue 14: relative imports, a bounded map, a large hot file, thousands of modules -----


@pytest.mark.parametrize(("source", "package", "expected"), [
    ("from .deep import rows\n", "pkg", {"pkg.deep", "pkg.deep.rows"}),
    ("from . import util\n", "pkg.sub", {"pkg.sub", "pkg.sub.util"}),
    ("from ..core import f\n", "pkg.sub", {"pkg.core", "pkg.core.f"}),
    ("from ... import x\n", "pkg", set()),  # beyond the top: nothing
    ("import os, pkg.a\nfrom pkg import b\n", "", {"os", "pkg.a", "pkg", "pkg.b"}),
])
def test_relative_imports_are_followed(source, package, expected):
    assert imported_modules(source, package) == expected


def test_exercised_files_follow_relative_imports(tmp_path):
    files = make(tmp_path, {
        "benchmarks/bench_x.py": "from pkg import load\nload()\n",
        "src/pkg/__init__.py": "from .api import load\n",
        "src/pkg/api.py": "from .deep import rows\n",
        "src/pkg/deep/__init__.py": "",
        "src/pkg/deep/rows.py": "def parse_row(t):\n    return t\n",
    })
    assert "src/pkg/deep/rows.py" in exercised_files(tmp_path, files, ["benchmarks/bench_x.py"])


@pytest.mark.parametrize(("path", "expected"), [
    ("docs/conf.py", True), ("ci_tools/run.py", True), ("examples/a.py", True),
    ("setup.py", True), ("tests/test_a.py", True), ("src/pkg/tests/test_b.py", True),
    ("networkx/algorithms/tests/test_c.py", True), ("src/pkg/core.py", False),
    ("sympy/core/expr.py", False), ("pkg/testing_utils.py", False),
])
def test_peripheral_paths(path, expected):
    assert peripheral(path) is expected


def test_the_map_is_capped_ranked_and_leaves_tests_and_docs_out(tmp_path):
    modules = {f"src/pkg/m{i:03}.py": "".join(f"def f{j}(x):\n    return x\n" for j in range(9))
               for i in range(300)}
    files = make(tmp_path, {**modules, "docs/conf.py": "def setup(app):\n    pass\n",
                            "tests/test_m.py": "def test():\n    pass\n"})
    text = repo_map(tmp_path, files, first=["src/pkg/m299.py"], max_chars=2_000)
    assert len(text) <= 2_000 and text.startswith("src/pkg/m299.py\n  def f0(x)")
    assert "docs/conf.py" not in text and "tests/test_m.py" not in text
    assert "tests/test_m.py" in repo_map(tmp_path, files, include_peripheral=True,
                                         max_chars=10**6)


def test_function_at_finds_the_function_of_a_code_object():
    source = "import x\n\n\n@dec\n@dec2(1)\ndef f(a):\n    return a\n\n\nclass C:\n" \
             "    def f(self):\n        return 1\n"
    assert function_at(source, 4, "f") == (4, 7)  # a decorated function starts at @dec
    assert function_at(source, 11, "f") == (11, 12)  # the method, not the function
    assert function_at(source, 1, "missing") is None


def hot(file, line, name, share=0.5):
    return Target(file=file, line=line, name=name, bench="load", share=share, cum_share=share,
                  calls=1000)


def test_a_large_hot_file_contributes_its_hot_function(tmp_path):
    filler = "".join(f"def other{i}(x):\n    return x + {i}\n\n\n" for i in range(3000))
    big = filler + "def parse_row(text):\n    return text.split(',')\n"
    files = make(tmp_path, {"src/pkg/__init__.py": "", "src/pkg/rows.py": big})
    line = big.splitlines().index("def parse_row(text):") + 1
    target = hot("src/pkg/rows.py", line, "parse_row")
    builder = ContextBuilder(tmp_path, files, GateConfig().protected, 20_000, [])
    sections = builder.sections(target, [target], [])
    assert len(big) > 60_000 and sections.partial == {"src/pkg/rows.py"}
    assert sections.files["src/pkg/rows.py"] == "def parse_row(text):\n    return text.split(',')"
    assert sections.chars() <= 20_000


def generated_repo(root, modules):
    """A package of `modules` modules in 40 subpackages, importing each other relatively,
    with tests and docs beside it, as a large library has them."""
    files = {"src/big/__init__.py": "from .p00 import m0000\n"}
    for i in range(modules):
        package = f"p{i % 40:02}"
        files.setdefault(f"src/big/{package}/__init__.py", "")
        body = "".join(f"def f{j}(x, y=1):\n    return x * {j} + y\n\n\n" for j in range(12))
        files[f"src/big/{package}/m{i:04}.py"] = (
            f"from . import m{(i + 40) % modules:04}\nfrom ..p{(i + 1) % 40:02} import "
            f"m{(i + 1) % modules:04}\n\n\n{body}")
        if i % 10 == 0:
            files[f"tests/test_m{i:04}.py"] = "def test():\n    pass\n"
            files[f"docs/page{i:04}.py"] = "x = 1\n"
    files["benchmarks/bench_big.py"] = "import big\n"
    return make(root, files)


def test_thousands_of_modules_stay_within_budget_and_build_fast(tmp_path):
    files = generated_repo(tmp_path, 2_000)
    assert sum(f.endswith(".py") for f in files) > 2_000
    budget = 40_000
    started = time.perf_counter()
    builder = ContextBuilder(tmp_path, files, GateConfig().protected, budget,
                             ["benchmarks/bench_big.py"])
    fallback = builder.fallback([])
    target = hot("src/big/p07/m0007.py", 5, "f0")
    aimed = builder.sections(target, [target], [])
    elapsed = time.perf_counter() - started
    assert fallback.chars() <= budget and aimed.chars() <= budget
    assert len(aimed.repo_map) <= min(MAP_CHARS, budget // 5)
    assert next(iter(aimed.files)) == "src/big/p07/m0007.py"
    # What the target imports, through its relative imports, comes next and leads the map.
    assert "src/big/p07/m0047.py" in aimed.files
    assert aimed.repo_map.startswith("src/big/p07/m0007.py")
    assert "tests/" not in aimed.repo_map and "docs/" not in aimed.repo_map
    assert elapsed < 5, f"context building took {elapsed:.1f}s"


def test_whole_file_replies_never_get_an_excerpt(tmp_path):
    big = "".join(f"def other{i}(x):\n    return x + {i}\n\n\n" for i in range(300)) \
        + "def parse_row(text):\n    return text.split(',')\n"
    small = "def helper(x):\n    return x\n"
    files = make(tmp_path, {"src/pkg/rows.py": big, "src/pkg/small.py": small})
    line = big.splitlines().index("def parse_row(text):") + 1
    target, other = hot("src/pkg/rows.py", line, "parse_row"), hot("src/pkg/small.py", 1,
                                                                    "helper", 0.2)
    args = (tmp_path, files, GateConfig().protected, 40_000, [])
    whole = ContextBuilder(*args, excerpts=False).sections(target, [target, other], [])
    assert whole.files["src/pkg/rows.py"] == big and not whole.partial  # it fits: whole
    tight = ContextBuilder(*args[:3], 12_000, [], excerpts=False).sections(
        target, [target, other], [])
    assert "src/pkg/rows.py" not in tight.files and "src/pkg/small.py" in tight.files
    assert tight.chars() <= 12_000
