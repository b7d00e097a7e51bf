"""The history database's schema, as named, append-only migrations.

Each migration is a function registered with `@migration`, applied once, in order, and
remembered by name in the `_migrations` table, so an existing database only ever gains the
steps it has not seen. Never edit or reorder a migration that has shipped: databases out
there were built by its exact SQL. Change the schema by adding a new one at the end.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from selfcode.errors import SelfcodeError
from selfcode.history.texts import split

# The values the schema's CHECK constraints allow; shipped migrations build their SQL from
# them, so extending one needs a migration that rebuilds the table, not just a new value.
RUN_STATUSES = ("running", "finished", "interrupted", "failed")
# The statuses m001 allowed (a migration's effect never changes) and those allowed now: m004
# adds "infrastructure" (the machinery failed the candidate: neither accepted nor rejected).
_M001_CANDIDATE_STATUSES = ("proposed", "malformed", "rejected", "accepted", "abandoned")
CANDIDATE_STATUSES = (*_M001_CANDIDATE_STATUSES, "infrastructure")
REVIEW_DECISIONS = ("approved", "rejected")

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[tuple[str, Migration]] = []


def utc_now() -> str:
    """The current time as every `*_at` column stores it (ISO 8601, UTC, microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, under its function name."""
    name = fn.__name__
    if any(existing == name for existing, _ in MIGRATIONS):
        raise ValueError(f"migration {name} is already registered")
    MIGRATIONS.append((name, fn))
    return fn


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def migrate(
    db: sqlite3.Connection, migrations: Sequence[tuple[str, Migration]] | None = None
) -> list[str]:
    """Apply the migrations `db` has not seen yet, in order; return their names.

    Each migration runs in its own transaction together with the row that records it, so a
    failure leaves the database at the last good migration. Safe to call concurrently.
    """
    steps = list(MIGRATIONS if migrations is None else migrations)
    saved_isolation = db.isolation_level
    if db.in_transaction:
        db.commit()
    db.isolation_level = None  # explicit transactions: DDL must not be committed implicitly
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations"
            " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        unknown = applied - {name for name, _ in steps}
        if unknown:
            raise SelfcodeError(
                f"The history database was written by a newer selfcode (migration "
                f"{sorted(unknown)[0]} is unknown here); upgrade selfcode."
            )
        done: list[str] = []
        for name, fn in steps:
            if name in applied:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                seen = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone()
                if seen is None:  # another process may have applied it meanwhile
                    fn(db)
                    db.execute(
                        "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                        (name, utc_now()),
                    )
                    done.append(name)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return done
    finally:
        db.isolation_level = saved_isolation


# -- the shipped migrations, oldest first --------------------------------------------------------


# What m001 runs, in order: the four tables of a run's record and their indexes.
_M001_INITIAL = (
    f"""
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            repo TEXT NOT NULL,
            base_commit TEXT NOT NULL,
            branch TEXT NOT NULL,
            goal TEXT NOT NULL,
            model TEXT NOT NULL,
            sandbox TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'running' CHECK (status IN {_in(RUN_STATUSES)}),
            summary_json TEXT
        )
        """,
    f"""
        CREATE TABLE candidates (
            run_id TEXT NOT NULL REFERENCES runs(id),
            n INTEGER NOT NULL,
            parent_commit TEXT,
            rationale TEXT,
            diff TEXT,
            status TEXT NOT NULL DEFAULT 'proposed'
                CHECK (status IN {_in(_M001_CANDIDATE_STATUSES)}),
            verdict_json TEXT,
            commit_sha TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, n)
        )
        """,
    """
        CREATE TABLE exchanges (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            candidate_n INTEGER,
            turn INTEGER NOT NULL,
            model TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            reply TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            latency_s REAL,
            error TEXT,
            created_at TEXT NOT NULL
        )
        """,
    "CREATE INDEX exchanges_by_run ON exchanges (run_id, candidate_n)",
    """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            candidate_n INTEGER,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
    "CREATE INDEX events_by_run ON events (run_id)",
)


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    for statement in _M001_INITIAL:
        db.execute(statement)


@migration
def m002_archive_resume_review(db: sqlite3.Connection) -> None:
    # The git archive, resumable runs and human review.
    #
    # The commit kept under refs/selfcode/<run>/<n> for a candidate (accepted or not).
    db.execute("ALTER TABLE candidates ADD COLUMN candidate_commit TEXT")
    # The settings a run started with, so `--resume` continues it the same way.
    db.execute("ALTER TABLE runs ADD COLUMN settings_json TEXT")
    db.execute(
        f"""
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            n INTEGER NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN {_in(REVIEW_DECISIONS)}),
            reviewer TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX reviews_by_run ON reviews (run_id, n)")


# What m003 runs: the exchanges table rebuilt with `prompt_json` (references into `texts`) in
# place of `messages_json` (the whole conversation, repeated in full by every exchange).
_M003_EXCHANGES = """
        CREATE TABLE exchanges_m003 (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            candidate_n INTEGER,
            turn INTEGER NOT NULL,
            model TEXT NOT NULL,
            prompt_json TEXT NOT NULL,
            reply TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            latency_s REAL,
            error TEXT,
            created_at TEXT NOT NULL
        )
        """
_M003_COLUMNS = ("id, run_id, candidate_n, turn, model, reply, prompt_tokens, completion_tokens,"
                 " cost_usd, latency_s, error, created_at")


def _m003_prompt(db: sqlite3.Connection, messages_json: str) -> str:
    """An m002 row's messages as m003's `prompt_json`: per message `[fields, ids]`, `fields`
    the message but its content, `ids` the texts its content joins back from (null, and the
    content left in `fields`, when it is not a string).

    The cut is `texts.split` as it is when this runs; any cut joins back to the same text, so
    a later change to it changes how small an old database gets, never what it reads back.
    """
    entries: list[list[object]] = []
    for message in json.loads(messages_json):
        content = message.get("content")
        if not isinstance(content, str):
            entries.append([message, None])
            continue
        ids: list[int] = []
        for piece in split(content):
            key = hashlib.sha256(piece.encode()).digest()
            db.execute("INSERT OR IGNORE INTO texts (sha256, text) VALUES (?, ?)", (key, piece))
            ids.append(db.execute("SELECT id FROM texts WHERE sha256 = ?", (key,)).fetchone()[0])
        entries.append([{k: v for k, v in message.items() if k != "content"}, ids])
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


@migration
def m003_prompt_texts(db: sqlite3.Connection) -> None:
    # Every distinct piece of prompt text once, under its sha256; an exchange lists, per
    # message, the ids of the pieces its content joins back from (history/texts.py).
    db.execute("CREATE TABLE texts (id INTEGER PRIMARY KEY, sha256 BLOB NOT NULL UNIQUE,"
               " text TEXT NOT NULL)")
    db.execute(_M003_EXCHANGES)
    for row in db.execute(f"SELECT {_M003_COLUMNS}, messages_json FROM exchanges ORDER BY id"):
        db.execute(f"INSERT INTO exchanges_m003 ({_M003_COLUMNS}, prompt_json)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*row[:-1], _m003_prompt(db, row[-1])))
    db.execute("DROP TABLE exchanges")
    db.execute("ALTER TABLE exchanges_m003 RENAME TO exchanges")
    db.execute("CREATE INDEX exchanges_by_run ON exchanges (run_id, candidate_n)")


_M004_COLUMNS = ("run_id, n, parent_commit, rationale, diff, status, verdict_json, commit_sha,"
                 " created_at, candidate_commit")


@migration
def m004_infrastructure_status(db: sqlite3.Connection) -> None:
    # A candidate the machinery failed (a cluster node died twice under it) is recorded as
    # such: SQLite cannot change a CHECK, so the candidates table is rebuilt with the new one.
    db.execute(f"""
        CREATE TABLE candidates_m004 (
            run_id TEXT NOT NULL REFERENCES runs(id),
            n INTEGER NOT NULL,
            parent_commit TEXT,
            rationale TEXT,
            diff TEXT,
            status TEXT NOT NULL DEFAULT 'proposed'
                CHECK (status IN {_in(CANDIDATE_STATUSES)}),
            verdict_json TEXT,
            commit_sha TEXT,
            created_at TEXT NOT NULL,
            candidate_commit TEXT,
            PRIMARY KEY (run_id, n)
        )
        """)
    db.execute(f"INSERT INTO candidates_m004 ({_M004_COLUMNS})"
               f" SELECT {_M004_COLUMNS} FROM candidates")
    db.execute("DROP TABLE candidates")
    db.execute("ALTER TABLE candidates_m004 RENAME TO candidates")


@migration
def m005_node_tests(db: sqlite3.Connection) -> None:
    # An accepted candidate's full-suite run from its re-check: what its children are judged
    # against, kept so that a resumed run never tests a node's code again as a baseline (a
    # node is a former candidate, and its code could tell it is the baseline).
    db.execute("ALTER TABLE candidates ADD COLUMN node_tests_json TEXT")
