"""history/: named append-only migrations, and every record surviving a crash."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcode.errors import SelfcodeError
from selfcode.history import migrations
from selfcode.history.db import History, new_run_id
from selfcode.history.migrations import migrate
from selfcode.history.rows import Exchange, RunRow

RUN = {
    "repo": "/repo",
    "base_commit": "a" * 40,
    "branch": "selfcode/r1",
    "goal": "make it faster",
    "model": "gpt-test",
    "sandbox": "local",
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.db"


@pytest.fixture
def hist(db_path: Path) -> Iterator[History]:
    h = History(db_path)
    yield h
    h.close()


# The migrations selfcode ships, in order (m001_initial first; later ones are appended).
SHIPPED = [name for name, _ in migrations.MIGRATIONS]


def applied(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY applied_at")]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- migrations ---------------------------------------------------------------------------------


def test_first_open_creates_the_schema_in_wal_mode(db_path: Path) -> None:
    History(db_path).close()
    assert applied(db_path) == SHIPPED
    assert {"runs", "candidates", "exchanges", "events", "_migrations"} <= tables(db_path)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_are_idempotent(db_path: Path) -> None:
    History(db_path).close()
    History(db_path).close()
    db = sqlite3.connect(db_path)
    assert migrate(db) == []
    assert migrate(db) == []
    db.close()
    assert applied(db_path) == SHIPPED


def test_a_new_migration_applies_only_itself(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with History(db_path) as h:
        h.start_run("r1", **RUN)
    monkeypatch.setattr(migrations, "MIGRATIONS", list(migrations.MIGRATIONS))
    calls: list[str] = []
    real_initial = migrations.MIGRATIONS[0][1]

    def spy_initial(db: sqlite3.Connection) -> None:
        calls.append("m001_initial")
        real_initial(db)

    migrations.MIGRATIONS[0] = ("m001_initial", spy_initial)

    @migrations.migration
    def m002_run_labels(db: sqlite3.Connection) -> None:
        calls.append("m002_run_labels")
        db.execute("ALTER TABLE runs ADD COLUMN label TEXT")

    with History(db_path) as h:
        assert calls == ["m002_run_labels"]
        run = h.run("r1")
        assert run is not None and run.goal == "make it faster"
    with sqlite3.connect(db_path) as db:  # the new column is there; RunRow just skips it
        assert db.execute("SELECT label FROM runs WHERE id = 'r1'").fetchone() == (None,)
    with History(db_path):
        assert calls == ["m002_run_labels"]
    assert applied(db_path) == [*SHIPPED, "m002_run_labels"]


def test_migrate_returns_what_it_applied_in_order(tmp_path: Path) -> None:
    order: list[str] = []

    def m001_a(db: sqlite3.Connection) -> None:
        order.append("a")
        db.execute("CREATE TABLE a (x)")

    def m002_b(db: sqlite3.Connection) -> None:
        order.append("b")
        db.execute("CREATE TABLE b (x)")

    db = sqlite3.connect(tmp_path / "x.db")
    assert migrate(db, [("m001_a", m001_a)]) == ["m001_a"]
    assert migrate(db, [("m001_a", m001_a), ("m002_b", m002_b)]) == ["m002_b"]
    assert order == ["a", "b"]
    db.close()


def test_a_failing_migration_rolls_back_and_is_not_recorded(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    History(db_path).close()
    monkeypatch.setattr(migrations, "MIGRATIONS", list(migrations.MIGRATIONS))

    @migrations.migration
    def m002_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError, match="migration bug"):
        History(db_path)
    assert "half_done" not in tables(db_path)
    assert applied(db_path) == SHIPPED


def test_registering_a_name_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", list(migrations.MIGRATIONS))
    with pytest.raises(ValueError, match="already registered"):

        @migrations.migration
        def m001_initial(db: sqlite3.Connection) -> None:
            pass


def test_a_database_from_a_newer_selfcode_is_refused(db_path: Path) -> None:
    History(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT INTO _migrations VALUES ('m999_future', 'later')")
    with pytest.raises(SelfcodeError, match="newer selfcode"):
        History(db_path)


def test_a_file_that_is_not_a_database_is_one_clear_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SelfcodeError, match="Cannot use the history database"):
        History(db_path)


# -- round trips --------------------------------------------------------------------------------


def test_runs_round_trip(hist: History) -> None:
    assert hist.run("r1") is None
    hist.start_run("r1", **RUN)
    hist.start_run("r2", **{**RUN, "branch": "selfcode/r2"})
    run = hist.run("r1")
    assert run is not None
    assert {k: getattr(run, k) for k in RUN} == RUN
    assert run.status == "running" and run.finished_at is None and run.summary is None
    assert run.started_at

    hist.finish_run("r1", "finished", {"accepted": 2, "commits": ["abc"], "speedup": 1.5})
    run = hist.run("r1")
    assert run is not None
    assert run.status == "finished" and run.finished_at is not None
    assert run.finished_at >= run.started_at
    assert run.summary == {"accepted": 2, "commits": ["abc"], "speedup": 1.5}
    assert [r.id for r in hist.runs()] == ["r2", "r1"]  # newest first

    with pytest.raises(ValueError):
        hist.finish_run("r2", "running", {})
    with pytest.raises(KeyError):
        hist.finish_run("missing", "failed", {})
    hist.reopen_run("r1")
    reopened = hist.run("r1")
    assert reopened is not None and reopened.status == "running"
    assert reopened.finished_at is None
    with pytest.raises(sqlite3.IntegrityError):
        hist.start_run("r1", **RUN)


def test_rows_are_read_only_snapshots(hist: History) -> None:
    hist.start_run("r1", **RUN)
    run = hist.run("r1")
    assert isinstance(run, RunRow)
    with pytest.raises(dataclasses.FrozenInstanceError):  # changes go through History
        run.status = "finished"  # type: ignore[misc]
    hist.finish_run("r1", "finished", {})
    assert run.status == "running"  # what was read, not a live view of the database


def test_candidates_round_trip(hist: History) -> None:
    hist.start_run("r1", **RUN)
    hist.add_candidate("r1", 1, "a" * 40)
    hist.add_candidate("r1", 2, "b" * 40)
    first = hist.candidates("r1")[0]
    assert first.status == "proposed" and first.parent_commit == "a" * 40
    assert first.verdict is None and first.created_at

    verdict = {"accepted": True, "reasons": [], "benchmarks": [{"name": "x", "ratio": 0.8}]}
    hist.update_candidate("r1", 1, rationale="use sum", diff="--- a\n+++ b\n")
    hist.update_candidate("r1", 1, verdict=verdict, status="accepted", commit_sha="c" * 40)
    hist.update_candidate("r1", 2, status="malformed")
    one, two = hist.candidates("r1")
    assert (one.n, one.rationale, one.diff) == (1, "use sum", "--- a\n+++ b\n")
    assert one.verdict == verdict and one.status == "accepted"
    assert one.commit_sha == "c" * 40
    assert two.status == "malformed" and two.rationale is None
    assert hist.candidates("other") == []

    with pytest.raises(TypeError, match="unknown fields"):
        hist.update_candidate("r1", 1, colour="red")
    with pytest.raises(ValueError, match="status"):
        hist.update_candidate("r1", 1, status="great")
    with pytest.raises(KeyError):
        hist.update_candidate("r1", 9, status="rejected")
    with pytest.raises(sqlite3.IntegrityError):
        hist.add_candidate("r1", 1, None)  # numbers are unique within a run
    with pytest.raises(sqlite3.IntegrityError):
        hist.add_candidate("no-such-run", 1, None)


def test_exchanges_and_cost_round_trip(hist: History) -> None:
    hist.start_run("r1", **RUN)
    hist.start_run("r2", **RUN)
    messages = [{"role": "system", "content": "be fast"}, {"role": "user", "content": "ünïcode"}]
    first = hist.add_exchange(Exchange(
        run_id="r1", candidate_n=1, turn=0, model="gpt-test", messages=messages, reply="reply",
        prompt_tokens=100, completion_tokens=20, cost_usd=0.25, latency_s=1.5))
    second = hist.add_exchange(Exchange(
        run_id="r1", candidate_n=1, turn=1, model="gpt-test", messages=messages, reply=None,
        prompt_tokens=None, completion_tokens=None, cost_usd=None, latency_s=0.1,
        error="timeout"))
    hist.add_exchange(Exchange(
        run_id="r1", candidate_n=None, turn=0, model="gpt-test", messages=[], reply="x",
        prompt_tokens=1, completion_tokens=1, cost_usd=0.5, latency_s=0.2))
    hist.add_exchange(Exchange(
        run_id="r2", candidate_n=1, turn=0, model="gpt-test", messages=[], reply="x",
        prompt_tokens=1, completion_tokens=1, cost_usd=10.0, latency_s=0.2))
    assert second > first
    rows = hist.exchanges("r1")
    assert [r.id for r in rows] == [first, second, rows[2].id]
    assert rows[0].messages == messages
    assert (rows[0].reply, rows[0].prompt_tokens, rows[0].completion_tokens) == (
        "reply",
        100,
        20,
    )
    assert (rows[0].cost_usd, rows[0].latency_s, rows[0].error) == (0.25, 1.5, None)
    assert rows[1].error == "timeout" and rows[1].reply is None
    assert rows[2].candidate_n is None
    assert hist.total_cost("r1") == pytest.approx(0.75)
    assert hist.total_cost("r2") == pytest.approx(10.0)
    assert hist.total_cost("none") == 0.0


def test_events_round_trip(hist: History) -> None:
    hist.start_run("r1", **RUN)
    a = hist.add_event("r1", "note", "stale lock cleared")
    b = hist.add_event("r1", "edit-error", "no such file", candidate_n=2)
    events = hist.events("r1")
    assert [(e.id, e.kind, e.message, e.candidate_n) for e in events] == [
        (a, "note", "stale lock cleared", None),
        (b, "edit-error", "no such file", 2),
    ]


# -- durability ---------------------------------------------------------------------------------


def test_writes_are_visible_to_another_connection_at_once(hist: History, db_path: Path) -> None:
    hist.start_run("r1", **RUN)
    hist.add_candidate("r1", 1, None)
    hist.add_exchange(Exchange(
        run_id="r1", candidate_n=1, turn=0, model="m", messages=[], reply="r",
        prompt_tokens=1, completion_tokens=1, cost_usd=0.1, latency_s=0.1))
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 1
        assert other.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0] == 1


CRASHER = """
import os, sys
from pathlib import Path
from selfcode.history import Exchange, History
h = History(Path(sys.argv[1]))
h.start_run("r1", "/repo", "abc", "selfcode/r1", "goal", "model", "local")
h.add_candidate("r1", 1, "abc")
h.update_candidate("r1", 1, status="rejected", verdict={"accepted": False})
h.add_exchange(Exchange(run_id="r1", candidate_n=1, turn=0, model="model",
                        messages=[{"role": "user", "content": "hi"}], reply="hey",
                        prompt_tokens=1, completion_tokens=2, cost_usd=0.01, latency_s=0.5))
h.add_event("r1", "note", "about to crash")
os._exit(3)  # no close(), no cleanup
"""


def test_nothing_is_lost_when_the_process_dies(db_path: Path) -> None:
    env_path = str(Path(__file__).parents[1] / "src")
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(db_path)],
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3, proc.stderr
    with History(db_path) as h:
        run = h.run("r1")
        assert run is not None and run.status == "running"
        (candidate,) = h.candidates("r1")
        assert candidate.status == "rejected" and candidate.verdict == {"accepted": False}
        assert h.exchanges("r1")[0].messages == [{"role": "user", "content": "hi"}]
        assert h.events("r1")[0].message == "about to crash"


def test_data_survives_reopening(db_path: Path) -> None:
    with History(db_path) as h:
        h.start_run("r1", **RUN)
        h.add_candidate("r1", 1, "p")
        h.finish_run("r1", "interrupted", {"why": "ctrl-c"})
    with History.in_state_dir(db_path.parent) as h:
        run = h.run("r1")
        assert run is not None and run.status == "interrupted"
        assert run.summary == {"why": "ctrl-c"}
        assert [c.n for c in h.candidates("r1")] == [1]


# -- run ids ------------------------------------------------------------------------------------


def test_run_ids_are_timestamped_and_sort_by_time() -> None:
    rid = new_run_id()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", rid)
    earlier = new_run_id(1_700_000_000)
    later = new_run_id(1_700_000_001)
    assert earlier.startswith("20231114-221320-")
    assert earlier < later < rid
    assert len({new_run_id(1_700_000_000) for _ in range(20)}) > 1  # a random part
