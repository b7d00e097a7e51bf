"""The malformed-reply fixtures: each is caught, its error carries what the repair needs, and
the repair applies (benchmarks/bench_repair.py reports the same as a rate)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from selfcode.edits import EDIT_FORMATS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "malformed").glob("*.json"))


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_repair",
                                                  ROOT / "benchmarks" / "bench_repair.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_repair", module)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def test_there_are_fixtures_for_every_format() -> None:
    formats = {json.loads(path.read_text("utf-8"))["format"] for path in FIXTURES}
    assert formats == set(EDIT_FORMATS)
    assert len(FIXTURES) >= 20


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_fixture_is_caught_and_repaired(path: Path) -> None:
    outcome = BENCH.run_case(path)
    assert outcome.ok, f"{outcome.stage}: {outcome.error} {outcome.detail}"


def test_an_uninformative_error_counts_as_a_failed_repair(tmp_path: Path) -> None:
    data = json.loads(FIXTURES[0].read_text("utf-8"))
    data["turns"][1]["expect"] = ["a fact our message does not contain"]
    case = tmp_path / "case.json"
    case.write_text(json.dumps(data), "utf-8")
    outcome = BENCH.run_case(case)
    assert not outcome.ok and outcome.stage == "uninformative"


def test_a_reply_that_applies_is_not_counted_as_caught(tmp_path: Path) -> None:
    data = json.loads(FIXTURES[0].read_text("utf-8"))
    data["turns"][0]["reply"] = data["turns"][1]["reply"]
    case = tmp_path / "case.json"
    case.write_text(json.dumps(data), "utf-8")
    assert BENCH.run_case(case).stage == "not-caught"
