"""A/A sentinels during a run, and the loop's budgets, through the real loop and gate."""

from __future__ import annotations

from pathlib import Path

from selfcode.config import load_settings
from selfcode.run.workflows import improve, prepare_demo_repo
from selfcode.testing import ScriptedLLM


class Quiet:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(self, kind: str, message: str, **data: object) -> None:
        self.events.append((kind, message))


def test_sentinel_judges_the_unchanged_code_and_does_not_accept_it(tmp_path: Path) -> None:
    repo, _ = prepare_demo_repo(tmp_path / "demo")
    settings = load_settings(repo, {"sandbox": {"backend": "local"},
                                    "agent": {"iterations": 3},
                                    "gate": {"sentinel_every": 1}}, environ={})
    llm = ScriptedLLM(["no edit here"] * 9)
    observer = Quiet()
    summary = improve(repo, settings, observer, llm=llm)
    # Before candidates 2 and 3: the unchanged code measured against itself, never "faster".
    assert (summary.aa_sentinels, summary.aa_false_accepts) == (2, 0)
    assert ("phase", "A/A sentinel") in observer.events


def test_token_budget_stops_the_run(tmp_path: Path) -> None:
    from selfcode.llm import Usage

    repo, _ = prepare_demo_repo(tmp_path / "demo")
    settings = load_settings(repo, {"sandbox": {"backend": "local"},
                                    "agent": {"iterations": 5, "max_tokens_total": 1500,
                                              "repair_turns": 0}}, environ={})
    llm = ScriptedLLM(["prose only"] * 5, usage=Usage(prompt_tokens=900, completion_tokens=100))
    summary = improve(repo, settings, Quiet(), llm=llm)
    assert summary.candidates == 2 and "token" in summary.stop_reason
