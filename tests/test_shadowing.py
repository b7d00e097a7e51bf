"""New modules that would shadow what the judged processes import are refused (gate/shadowing.py)."""

import pytest

from selfcode.gate.shadowing import shadowing_violations, top_level_name

BASELINE = ["src/calc/__init__.py", "tests/test_calc.py", "pyproject.toml", "json_tools.py",
            "src/pytest_helpers/__init__.py"]


@pytest.mark.parametrize(("path", "root", "name"), [
    ("src/pytest.py", "src/", "pytest"),
    ("src/pluggy/__init__.py", "src/", "pluggy"),
    ("selfcode_pytest_plugin.py", "", "selfcode_pytest_plugin"),
    ("src/calc/fast.py", "src/", "calc"),
    ("src/calc/fast.py", "", "src"),
    ("README.md", "", None),
    ("src/json.cpython-311-x86_64-linux-gnu.so", "src/", "json"),
    ("tests/test_calc.py", "src/", None),
])
def test_top_level_name(path: str, root: str, name: str | None) -> None:
    assert top_level_name(path, root) == name


@pytest.mark.parametrize("path", [
    "selfcode_pytest_plugin.py",        # the harness's own plugin, loaded with -p by name
    "src/selfcode_evidence.py",
    "src/pytest.py",                    # `python -m pytest` would run it
    "_pytest/reports.py",
    "src/pluggy/__init__.py",
    "json.py",                          # stdlib
    "src/unittest/__init__.py",
    "src/hypothesis/__init__.py",
    "sitecustomize.pth",
    "src/sitecustomize/__init__.py",    # a package, not the protected sitecustomize.py
    "calc.py",                          # the package under test, from another import root
    "calc/__init__.py",
])
def test_a_new_reserved_top_level_name_is_refused(path: str) -> None:
    (reason,) = shadowing_violations([path], BASELINE)
    assert path in reason and "shadow" in reason


@pytest.mark.parametrize("path", [
    "src/calc/fast.py",                 # inside the target's own package
    "src/calc/json.py",                 # a submodule may be called json: it shadows nothing
    "src/fastcalc.py",
    "json_tools.py",                    # the baseline had it
    "src/pytest_helpers/more.py",       # the baseline had that package
    "docs/index.md",
])
def test_ordinary_new_files_pass(path: str) -> None:
    assert shadowing_violations([path], BASELINE) == []


def test_a_module_the_baseline_already_had_may_be_edited() -> None:
    assert shadowing_violations(["src/json.py"], [*BASELINE, "src/json.py"]) == []
