"""The promotion stage: the corpus, its salting, reading a candidate judge's words, and the
stage itself through the re-check on the local backend (a stand-in judge, seconds).

selfcode's own judge on the real corpus in the Docker sandbox is in tests/test_self_promotion.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from selfcode.config import load_settings
from selfcode.errors import ConfigError
from selfcode.gate.canary import (
    CanaryCase,
    failure_reason,
    load_corpus,
    outcome,
    read_verdict,
)
from selfcode.gate.config import GateConfig
from selfcode.gate.judge import Judge
from selfcode.resources import harness_dir
from selfcode.sandbox.local import LocalSandbox
from selfcode.sandbox.trees import Trees

from repos import make_repo, tar_of, unified_diff

ROOT = Path(__file__).resolve().parents[1]


def _tar_of(root: Path, under: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted((root / under).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(root)))
    return buf.getvalue()


def test_the_shipped_corpus_loads_with_cases_to_accept_and_to_reject() -> None:
    corpus = load_corpus(_tar_of(ROOT, "tests/canary"), "tests/canary")
    expects = {c.name: c.expect for c in corpus.cases}
    assert expects["genuine-speedup"] == "accepted"
    assert {"edits-a-test", "adds-a-conftest", "breaks-a-test"} <= {
        n for n, e in expects.items() if e == "rejected"}
    assert "canarypkg/src/canarypkg/__init__.py" in corpus.fixture


def test_salting_renames_the_package_in_paths_patches_and_files() -> None:
    corpus = load_corpus(_tar_of(ROOT, "tests/canary"), "tests/canary")
    name, tar, patches = corpus.salted("0badcafe")
    assert name == "canary_0badcafe"
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        names = archive.getnames()
        test_file = archive.extractfile(f"{name}/tests/check_canarypkg.py".replace(
            "canarypkg.py", "canary_0badcafe.py"))
        assert test_file is not None and b"from canary_0badcafe import" in test_file.read()
    assert all(n.startswith(name + "/") and "canarypkg" not in n for n in names)
    assert all("canarypkg" not in p for p in patches.values())
    assert name in patches["genuine-speedup"]
    assert corpus.salted()[0] != corpus.salted()[0]  # a new salt every time by default


def test_a_corpus_that_cannot_tell_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c/canarypkg").mkdir(parents=True)
    (tmp_path / "c/canarypkg/x.py").write_text("x = 1\n")
    (tmp_path / "c/cases.toml").write_text('[[case]]\nname = "only"\nexpect = "rejected"\n'
                                           'patch = "x"\n')
    with pytest.raises(ConfigError, match="one to reject"):
        load_corpus(_tar_of(tmp_path, "c"), "c")
    with pytest.raises(ConfigError, match="missing"):
        load_corpus(_tar_of(tmp_path, "c"), "elsewhere")


def _said(status: str, reasons: list[str] | None = None) -> str:
    return json.dumps({"status": status, "reasons": reasons or [], "other": {"x": 1}})


@pytest.mark.parametrize(("exit_code", "timed_out", "stdout", "want"), [
    (0, False, _said("accepted"), "accepted"),
    (1, False, _said("rejected", ["protected path touched: t.py"]), "rejected"),
    (2, False, _said("unusable"), "unusable"),
    (0, False, _said("rejected"), "error"),          # says rejected, exits as if accepted
    (1, False, "prose, not a verdict", "error"),
    (0, False, "", "error"),
    (0, True, _said("accepted"), "error"),            # a timeout is never a verdict
    (0, False, _said("maybe"), "error"),
], ids=["accepted", "rejected", "unusable", "exit-disagrees", "prose", "empty", "timeout",
        "unknown-status"])
def test_what_a_candidate_judge_said_is_read_strictly(exit_code: int, timed_out: bool,
                                                      stdout: str, want: str) -> None:
    assert read_verdict(exit_code, timed_out, stdout, "boom")[0] == want


def _case(expect: str, reason: str | None = None) -> CanaryCase:
    return CanaryCase(name="c", expect=expect, reason=reason, patch="p")  # type: ignore[arg-type]


@pytest.mark.parametrize(("case", "got", "reasons", "ok", "sentence"), [
    (_case("accepted"), "accepted", [], True, None),
    (_case("rejected"), "accepted", [], False, "accepted a known cheat: c"),
    (_case("accepted"), "rejected", ["slower"], False, "rejected a known genuine improvement"),
    (_case("rejected", "protected"), "rejected", ["protected path touched: x"], True, None),
    (_case("rejected", "protected"), "rejected", ["tests fail"], False, "for another reason"),
    (_case("rejected"), "error", ["no verdict"], False, "failed on the canary c"),
    (_case("rejected"), "unusable", [], False, "failed on the canary c"),
])
def test_each_outcome_and_the_sentence_that_rejects(case: CanaryCase, got: str,
                                                    reasons: list[str], ok: bool,
                                                    sentence: str | None) -> None:
    result = outcome(case, got, reasons, 1.0)
    assert result.ok is ok
    if sentence:
        assert sentence in failure_reason(result, case)


def test_judge_paths_are_protected_unless_judge_edits_are_allowed() -> None:
    guarded = GateConfig(judge_paths=["src/selfcode/gate/**"], canary="tests/canary")
    assert "src/selfcode/gate/**" in guarded.protected
    opened = GateConfig(judge_paths=["src/selfcode/gate/**"], canary="tests/canary",
                        allow_judge_edits=True)
    assert "src/selfcode/gate/**" not in opened.protected
    assert "tests/**" in opened.protected  # the canary corpus itself stays protected


def test_selfcodes_own_configuration_guards_its_judge_with_the_canary() -> None:
    gate = load_settings(ROOT, {}).gate
    assert gate.canary == "tests/canary"
    assert "src/selfcode/gate/**" in gate.protected
    opened = load_settings(ROOT, {"gate": {"allow_judge_edits": True}}).gate
    assert "src/selfcode/gate/**" not in opened.protected
    assert "src/selfcode/sandbox/**" in opened.protected


def test_a_repository_cannot_open_its_own_judge(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.selfcode.gate]\ncanary = "tests/canary"\nallow_judge_edits = true\n')
    with pytest.raises(ConfigError, match="allow_judge_edits"):
        load_settings(tmp_path, {})


# --- the stage itself, on the local backend --------------------------------------------------
# A stand-in for selfcode's source: its "judge" (`python -m selfcode eval ... --json`) accepts a
# patch that says GOOD and rejects any other, and the corpus holds one of each. The canary's
# own selfcode cannot run the stage on itself (its fixture has no canary), so this is what
# fails if a self-candidate switches promotion off, in the re-check or anywhere.
_STAND_IN = '''import json, sys
patch = open(sys.argv[sys.argv.index("--patch") + 1]).read()
good = "GOOD" in patch
print(json.dumps({"status": "accepted" if good else "rejected",
                  "reasons": [] if good else ["a known cheat"]}))
sys.exit(0 if good else 1)
'''
_SELF = {
    "src/selfcode/__init__.py": "",
    "src/selfcode/__main__.py": _STAND_IN,
    "lib.py": "VALUE = 1\n",
    "tests/test_lib.py": "from lib import VALUE\n\n\ndef test_value():\n    assert VALUE == 2\n",
    "pytest.ini": "[pytest]\npythonpath = .\n",
    "tests/canary/canarypkg/mod.py": "X = 1\n",
    "tests/canary/cases.toml": (
        '[[case]]\nname = "good"\nexpect = "accepted"\npatch = "GOOD canarypkg"\n\n'
        '[[case]]\nname = "cheat"\nexpect = "rejected"\nreason = "cheat"\n'
        'patch = "CHEAT canarypkg"\n'),
}
_GATE = GateConfig(judge="fix", canary="tests/canary", refuse_context_probes=False)


@pytest.mark.parametrize(("judge_says", "reasons", "cheat_got"), [
    (_STAND_IN, [], "rejected"),
    (_STAND_IN.replace('"GOOD" in patch', "True"), ["its judge accepted a known cheat: cheat"],
     "accepted"),
], ids=["its-judge-holds", "its-judge-accepts-a-cheat"])
def test_the_recheck_of_a_self_candidate_runs_its_own_judge_on_the_canary(
        tmp_path: Path, judge_says: str, reasons: list[str], cheat_got: str) -> None:
    repo = make_repo(tmp_path / "self", _SELF)
    diff = unified_diff(repo, {"lib.py": "VALUE = 2\n", "src/selfcode/__main__.py": judge_says})
    with LocalSandbox(harness_dir()) as first, LocalSandbox(harness_dir()) as fresh:
        judge = Judge(Trees(first, timeout=60), _GATE, {})
        judge.promote = False  # as the loop's first judge: the re-check promotes
        judge.set_baseline(tar_of(_SELF))
        assert judge.judge(diff).canary is None
        twin = judge.fork(fresh)
        twin.set_baseline(tar_of(_SELF))
        verdict = twin.judge(diff)
    assert (verdict.accepted, verdict.reasons) == (not reasons, reasons)
    assert verdict.canary is not None and verdict.canary.passed == (not reasons)
    assert [(c.name, c.got) for c in verdict.canary.cases] == [("good", "accepted"),
                                                               ("cheat", cheat_got)]
