"""history.py's m002 additions: run settings, per-candidate usage, reviews, dead runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from selfcode.history.db import History
from selfcode.history.rows import CandidateUsage, Exchange

RUN = {"repo": "/r", "base_commit": "a" * 40, "branch": "selfcode/r1", "goal": "faster",
       "model": "m", "sandbox": "local"}


@pytest.fixture
def hist(tmp_path: Path):
    with History(tmp_path / "history.db") as h:
        h.start_run("r1", **RUN)
        yield h


def test_settings_usage_and_candidate_commit(hist: History):
    hist.set_run_settings("r1", {"agent": {"iterations": 3}})
    assert hist.run_settings("r1") == {"agent": {"iterations": 3}}
    assert hist.run_settings("nope") is None
    hist.add_candidate("r1", 1, "b" * 40)
    hist.update_candidate("r1", 1, candidate_commit="c" * 40)
    for turn in (0, 1):
        hist.add_exchange(Exchange(
            run_id="r1", candidate_n=1, turn=turn, model="gpt",
            messages=[{"role": "user", "content": "x"}], reply="y", prompt_tokens=100,
            completion_tokens=10, cost_usd=0.5, latency_s=1.0))
    hist.add_exchange(Exchange(  # not a candidate's
        run_id="r1", candidate_n=None, turn=0, model="gpt", messages=[], reply="",
        prompt_tokens=1, completion_tokens=1, cost_usd=9.0, latency_s=0.1))
    assert hist.candidate_usage("r1") == {1: CandidateUsage(
        model="gpt", exchanges=2, prompt_tokens=200, completion_tokens=20,
        cost_usd=1.0, latency_s=2.0)}
    assert hist.candidates("r1")[0].candidate_commit == "c" * 40
    assert hist.running_runs() == ["r1"]
    hist.finish_run("r1", "finished", {})
    assert hist.running_runs() == []


def test_reviews_keep_every_decision_and_the_latest_wins(hist: History):
    hist.add_review("r1", 2, "rejected", "Ada <ada@example.com>", "too clever")
    hist.add_review("r1", 2, "approved", "Bob <bob@example.com>")
    hist.add_review("r1", 3, "approved", "Ada <ada@example.com>")
    assert [r.decision for r in hist.reviews("r1")] == ["rejected", "approved", "approved"]
    latest = hist.decisions("r1")
    assert latest[2].reviewer == "Bob <bob@example.com>" and latest[3].note == ""
    with pytest.raises(ValueError):
        hist.add_review("r1", 2, "maybe", "x")
    with pytest.raises(sqlite3.IntegrityError):
        hist._db.execute("INSERT INTO reviews (run_id, n, decision, reviewer, created_at)"
                         " VALUES ('r1', 1, 'meh', 'x', 'now')")
