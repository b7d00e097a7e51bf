"""history's m004: the candidates table accepts the status "infrastructure" (a candidate the
machinery failed), and a history written before keeps every candidate as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from selfcode.history import migrations
from selfcode.history.db import History
from selfcode.history.migrations import migrate

RUN = ("r1", "2026-01-01", "/r", "a" * 40, "selfcode/r1", "faster", "m", "local")


def _history_before_m004(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    names = [name for name, _ in migrations.MIGRATIONS]
    before = migrations.MIGRATIONS[:names.index("m004_infrastructure_status")]
    migrate(db, before)
    db.execute("INSERT INTO runs (id, started_at, repo, base_commit, branch, goal, model,"
               " sandbox) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", RUN)
    for n, status in enumerate(("accepted", "rejected", "abandoned"), start=1):
        db.execute("INSERT INTO candidates (run_id, n, parent_commit, diff, status, commit_sha,"
                   " created_at, candidate_commit) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   ("r1", n, "p" * 40, f"diff {n}", status, "c" * 40 if n == 1 else None,
                    "2026-01-01", f"{n}" * 40))
    with pytest.raises(sqlite3.IntegrityError):  # the old table refuses the new status
        db.execute("UPDATE candidates SET status = 'infrastructure' WHERE n = 2")
    db.close()


def test_an_old_history_keeps_its_candidates_and_takes_the_new_status(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    _history_before_m004(path)
    with History(path) as history:
        rows = {row.n: row for row in history.candidates("r1")}
        assert [rows[n].status for n in (1, 2, 3)] == ["accepted", "rejected", "abandoned"]
        assert rows[1].commit_sha == "c" * 40 and rows[3].candidate_commit == "3" * 40
        assert rows[2].diff == "diff 2" and rows[2].parent_commit == "p" * 40
        history.update_candidate("r1", 2, status="infrastructure")
        assert history.candidates("r1")[1].status == "infrastructure"
        with pytest.raises(Exception, match="status"):
            history.update_candidate("r1", 3, status="nonsense")


def test_a_new_history_takes_the_new_status(tmp_path: Path) -> None:
    with History(tmp_path / "history.db") as history:
        history.start_run("r2", "/r", "a" * 40, "selfcode/r2", "faster", "m", "local")
        history.add_candidate("r2", 1, "a" * 40)
        history.update_candidate("r2", 1, status="infrastructure")
        assert history.candidates("r2")[0].status == "infrastructure"
