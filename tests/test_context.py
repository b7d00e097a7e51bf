from selfcode.gate.config import GateConfig
from selfcode.prompt.context import editable_sources, exercised_files, outline, repo_map


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
    files = make(tmp_path, {"a.py": "x = 1\n" * 100, "b.py": "y = 2\n"})
    sources = editable_sources(tmp_path, files, [], GateConfig().protected, max_chars=100)
    assert list(sources) == ["b.py"]
