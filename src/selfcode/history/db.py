"""The record of every run: runs, candidates, LLM exchanges and events, in SQLite.

The database lives at `<state dir>/history.db` in WAL mode. Every write is committed before
the method returns, so a crash loses nothing that was recorded (invariant 5). The schema
and its evolution live in `migrations.py`; opening a database brings it up to date.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from selfcode.errors import SelfcodeError
from selfcode.history import texts
from selfcode.history.migrations import (
    CANDIDATE_STATUSES,
    REVIEW_DECISIONS,
    RUN_STATUSES,
    migrate,
)
from selfcode.history.migrations import utc_now as _now
from selfcode.history.rows import (
    CandidateRow,
    CandidateUsage,
    EventRow,
    Exchange,
    ExchangeRow,
    ModelUsage,
    ReviewRow,
    RunRow,
)

__all__ = ["CANDIDATE_STATUSES", "HISTORY_FILE", "REVIEW_DECISIONS", "RUN_STATUSES",
           "History", "migrate", "new_run_id"]

HISTORY_FILE = "history.db"


def new_run_id(now: float | None = None) -> str:
    """A new run id such as '20261123-191500-ab12': UTC time (so ids sort) and 16 random bits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(2)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


class History:
    """One repository's history database; every write is committed before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by the run's threads (several candidates in flight), each
            # use under `_lock`: sqlite3 allows that once check_same_thread is off.
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._lock = threading.RLock()
        except (OSError, sqlite3.Error) as exc:
            raise SelfcodeError(f"Cannot open the history database {self.path}: {exc}.") from exc
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if "m003_prompt_texts" in migrate(self._db):
                self._compact()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise SelfcodeError(
                f"Cannot use the history database {self.path}: {exc}; "
                "move it aside to start a new history."
            ) from exc
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> History:
        return cls(Path(state_dir) / HISTORY_FILE)

    def _compact(self) -> None:
        """Give the file back the space m003 freed (the old, repeated prompts), once."""
        try:
            self._db.execute("PRAGMA busy_timeout = 1000")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # VACUUM wrote it all there
        except sqlite3.OperationalError:
            pass  # another connection is reading: later writes reuse the free pages instead
        finally:
            self._db.execute("PRAGMA busy_timeout = 30000")

    def file_bytes(self) -> int:
        """What the history takes on disk: the database file and its write-ahead log."""
        files = (self.path, self.path.with_name(self.path.name + "-wal"))
        return sum(f.stat().st_size for f in files if f.exists())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> sqlite3.Cursor:
        # Autocommit connection: each statement is its own transaction, durable on return.
        with self._lock:
            return self._db.execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Several statements committed together, or not at all (no other thread's between)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params))

    # -- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        repo: str,
        base_commit: str,
        branch: str,
        goal: str,
        model: str,
        sandbox: str,
    ) -> None:
        self._write(
            "INSERT INTO runs (id, started_at, repo, base_commit, branch, goal, model, sandbox,"
            " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')",
            (run_id, _now(), str(repo), base_commit, branch, goal, model, sandbox),
        )

    def finish_run(self, run_id: str, status: str, summary: Mapping[str, Any]) -> None:
        if status not in RUN_STATUSES or status == "running":
            raise ValueError(f"a run cannot finish with status {status!r}")
        cur = self._write(
            "UPDATE runs SET status = ?, finished_at = ?, summary_json = ? WHERE id = ?",
            (status, _now(), _dumps(dict(summary)), run_id),
        )
        if cur.rowcount == 0:
            raise KeyError(f"no run {run_id!r} in the history")

    def reopen_run(self, run_id: str) -> None:
        """Mark a run as running again, for resuming it."""
        cur = self._write(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", (run_id,)
        )
        if cur.rowcount == 0:
            raise KeyError(f"no run {run_id!r} in the history")

    def runs(self) -> list[RunRow]:
        """Every run, newest first."""
        rows = self._rows("SELECT * FROM runs ORDER BY started_at DESC, id DESC")
        return [RunRow.from_db(row) for row in rows]

    def run(self, run_id: str) -> RunRow | None:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        return RunRow.from_db(rows[0]) if rows else None

    # -- candidates -------------------------------------------------------------------------

    _CANDIDATE_FIELDS = ("parent_commit", "rationale", "diff", "status", "verdict", "node_tests",
                         "commit_sha",
                         "candidate_commit")

    def add_candidate(self, run_id: str, n: int, parent_commit: str | None) -> None:
        self._write(
            "INSERT INTO candidates (run_id, n, parent_commit, status, created_at)"
            " VALUES (?, ?, ?, 'proposed', ?)",
            (run_id, n, parent_commit, _now()),
        )

    def update_candidate(self, run_id: str, n: int, **fields: Any) -> None:
        """Set any of parent_commit, rationale, diff, status, verdict (a dict), node_tests (a
        dict: an accepted candidate's full-suite run), commit_sha, candidate_commit."""
        unknown = set(fields) - set(self._CANDIDATE_FIELDS)
        if unknown:
            raise TypeError(f"update_candidate() got unknown fields: {', '.join(sorted(unknown))}")
        if not fields:
            return
        if "status" in fields and fields["status"] not in CANDIDATE_STATUSES:
            raise ValueError(f"unknown candidate status {fields['status']!r}")
        columns: dict[str, Any] = {}
        for key, value in fields.items():
            if key in ("verdict", "node_tests"):
                columns[f"{key}_json"] = None if value is None else _dumps(value)
            else:
                columns[key] = value
        assignments = ", ".join(f"{column} = :{column}" for column in columns)
        cur = self._write(
            f"UPDATE candidates SET {assignments} WHERE run_id = :_run_id AND n = :_n",
            {**columns, "_run_id": run_id, "_n": n},
        )
        if cur.rowcount == 0:
            raise KeyError(f"no candidate {n} of run {run_id!r} in the history")

    def candidates(self, run_id: str) -> list[CandidateRow]:
        """The run's candidates by number."""
        rows = self._rows("SELECT * FROM candidates WHERE run_id = ? ORDER BY n", (run_id,))
        return [CandidateRow.from_db(row) for row in rows]

    # -- exchanges and events ---------------------------------------------------------------

    def add_exchange(self, exchange: Exchange) -> int:
        """Record one request to the model and its reply (or error); return the exchange id.

        The messages' text goes into the texts table, each distinct piece once (texts.py),
        in the same transaction as the exchange that refers to it."""
        e = exchange
        with self._transaction():
            prompt = texts.encode(self._db, e.messages)
            cur = self._db.execute(
                "INSERT INTO exchanges (run_id, candidate_n, turn, model, prompt_json, reply,"
                " prompt_tokens, completion_tokens, cost_usd, latency_s, error, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.run_id, e.candidate_n, e.turn, e.model, prompt, e.reply, e.prompt_tokens,
                 e.completion_tokens, e.cost_usd, e.latency_s, e.error, _now()),
            )
        return int(cur.lastrowid or 0)

    def exchanges(self, run_id: str) -> list[ExchangeRow]:
        """The run's exchanges in the order they happened, each with its messages in full."""
        with self._lock:
            rows = self._rows("SELECT * FROM exchanges WHERE run_id = ? ORDER BY id",
                              (run_id,))
            pieces = texts.fetch(self._db, (i for row in rows for i in texts.ids_of(
                row["prompt_json"])))
        return [ExchangeRow.from_db(row, texts.decode(row["prompt_json"], pieces))
                for row in rows]

    def total_cost(self, run_id: str) -> float:
        """What the run's model calls cost, in USD (exchanges with unknown cost count as 0)."""
        row = self._rows(
            "SELECT COALESCE(SUM(cost_usd), 0.0) FROM exchanges WHERE run_id = ?", (run_id,))[0]
        return float(row[0])

    def add_event(
        self, run_id: str, kind: str, message: str, candidate_n: int | None = None
    ) -> int:
        cur = self._write(
            "INSERT INTO events (run_id, candidate_n, kind, message, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (run_id, candidate_n, kind, message, _now()),
        )
        return int(cur.lastrowid or 0)

    def events(self, run_id: str) -> list[EventRow]:
        rows = self._rows("SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,))
        return [EventRow.from_db(row) for row in rows]

    # -- resuming ---------------------------------------------------------------------------

    def set_run_settings(self, run_id: str, settings: Mapping[str, Any]) -> None:
        """Remember the settings a run uses, for `--resume`."""
        self._write("UPDATE runs SET settings_json = ? WHERE id = ?",
                    (_dumps(dict(settings)), run_id))

    def run_settings(self, run_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT settings_json FROM runs WHERE id = ?", (run_id,))
        row = rows[0] if rows else None
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def running_runs(self) -> list[str]:
        """Runs still marked as running (under the repository lock: runs that died)."""
        return [r["id"] for r in self._rows("SELECT id FROM runs WHERE status = 'running'")]

    def candidate_usage(self, run_id: str) -> dict[int, CandidateUsage]:
        """Per candidate: the model asked, tokens, cost and the number of exchanges, and how
        many replies had no price (their cost is NULL: unknown, not zero)."""
        rows = self._rows(
            "SELECT candidate_n AS n, MAX(model) AS model, COUNT(*) AS exchanges,"
            " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens), 0) AS completion_tokens,"
            " COALESCE(SUM(cost_usd), 0.0) AS cost_usd, COALESCE(SUM(latency_s), 0.0) AS latency_s,"
            " COUNT(*) - COUNT(cost_usd) AS unpriced"
            " FROM exchanges WHERE run_id = ? AND candidate_n IS NOT NULL GROUP BY candidate_n",
            (run_id,),
        )
        return {int(row["n"]): CandidateUsage.from_db(row) for row in rows}

    def model_usage(self, run_id: str) -> list[ModelUsage]:
        """Per candidate and model: the exchanges, their priced cost, how many had no price,
        and the id of the latest (a candidate belongs to the model of its last exchange)."""
        rows = self._rows(
            "SELECT candidate_n AS n, model, COUNT(*) AS exchanges,"
            " COALESCE(SUM(cost_usd), 0.0) AS cost_usd, COUNT(*) - COUNT(cost_usd) AS unpriced,"
            " MAX(id) AS last_id"
            " FROM exchanges WHERE run_id = ? GROUP BY candidate_n, model ORDER BY last_id",
            (run_id,),
        )
        return [ModelUsage.from_db(row) for row in rows]

    # -- review -----------------------------------------------------------------------------

    def add_review(self, run_id: str, n: int, decision: str, reviewer: str,
                   note: str = "") -> None:
        if decision not in REVIEW_DECISIONS:
            raise ValueError(f"unknown review decision {decision!r}")
        self._write(
            "INSERT INTO reviews (run_id, n, decision, reviewer, note, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, n, decision, reviewer, note, _now()),
        )

    def reviews(self, run_id: str) -> list[ReviewRow]:
        """Every decision on the run's candidates, oldest first."""
        rows = self._rows("SELECT * FROM reviews WHERE run_id = ? ORDER BY id", (run_id,))
        return [ReviewRow.from_db(row) for row in rows]

    def decisions(self, run_id: str) -> dict[int, ReviewRow]:
        """The latest decision on each reviewed candidate."""
        return {row.n: row for row in self.reviews(run_id)}

