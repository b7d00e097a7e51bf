"""history.py's m003: prompt text stored once per distinct piece, every exchange exact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from rich.filesize import decimal
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.config import load_settings
from selfcode.git.store import GitStore
from selfcode.history import migrations, texts
from selfcode.history.db import History
from selfcode.history.migrations import migrate
from selfcode.history.rows import Exchange
from selfcode.run.workflows import improve
from selfcode.testing import FunctionLLM

from run_helpers import (
    NO_EDIT,
    REPLY_BAD_EVENS,
    isolated_run,  # noqa: F401 (an autouse fixture: importing it is using it)
    make_target,
)

RUN = {"repo": "/r", "base_commit": "a" * 40, "branch": "selfcode/r1", "goal": "faster",
       "model": "m", "sandbox": "local"}

MAP = "".join(f"pkg/mod{i}.py\n  def function_{i}(x)\n  class Thing{i}\n" for i in range(400))
SOURCE = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(300))


def prompt(attempts: int) -> str:
    """A user message shaped like propose.j2's: the same sections, a growing attempts list."""
    tried = "".join(f"- #{n} rejected: idea {n}\n" for n in range(attempts))
    return (f"## Goal\nfaster\n\n## Files\npkg/mod1.py\n```python\n{SOURCE}```\n\n"
            f"## Repository map\n{MAP}\n## Earlier attempts in this run\n{tried}"
            "Propose one improvement now.\n")


@pytest.mark.parametrize("text", [
    "", "x", "no newline at the end", "## Goal\n", "```python\n```", "\n\n\n",
    "a\r\nb\rc\x0bd\x0ce\u2028f\n## h\n", "ünïcödé ✓ " * 400 + "\n", MAP, prompt(3),
    "```\n" * 3000, "x" * 10_000,
])
def test_split_joins_back_exactly(text: str) -> None:
    pieces = texts.split(text)
    assert "".join(pieces) == text
    assert all(pieces)


def test_split_cuts_sections_files_and_long_stretches_apart() -> None:
    pieces = texts.split(prompt(2))
    assert pieces[0] == "## Goal\nfaster\n\n"
    # a file's source is cut alike whatever surrounds it
    assert set(texts.split(f"```python\n{SOURCE}")) <= set(pieces)
    assert set(texts.split(f"## Files\nother.py\n```python\n{SOURCE}```\n\n")) - set(pieces) \
        == {"## Files\nother.py\n"}
    # the map is cut where its content says, so a map with one more entry up front shares
    # all of its pieces but the first
    again = texts.split("## Repository map\nnew.py\n" + MAP[len("## Repository map\n"):])
    assert len(set(texts.split(MAP)) - set(again)) <= 1


def test_each_repeated_piece_is_stored_once_and_read_back_whole(tmp_path: Path) -> None:
    with History(tmp_path / "history.db") as hist:
        hist.start_run("r1", **RUN)
        sent = []
        for n in range(1, 21):
            messages = [{"role": "system", "content": "be fast"},
                        {"role": "user", "content": prompt(n)}]
            for turn in range(3):  # every repair turn repeats the conversation so far
                sent.append(messages)
                hist.add_exchange(Exchange(
                    run_id="r1", candidate_n=n, turn=turn, model="m", messages=messages,
                    reply="no edit", prompt_tokens=1, completion_tokens=1, cost_usd=0.0,
                    latency_s=0.1))
                messages = [*messages, {"role": "assistant", "content": "no edit"},
                            {"role": "user", "content": "Your last reply could not be applied"}]
        assert [e.messages for e in hist.exchanges("r1")] == sent
        raw = sum(len(m["content"].encode()) for messages in sent for m in messages)
        assert raw > 1_800_000
    assert (tmp_path / "history.db").stat().st_size * 10 < raw
    with sqlite3.connect(tmp_path / "history.db") as db:
        # the repository map's pieces once each, not 60 times
        stored = db.execute("SELECT COUNT(*) FROM texts WHERE instr(text, ?)",
                            ("class Thing7\n",))
        assert stored.fetchone()[0] == 1


def test_a_run_records_exactly_what_the_model_was_sent(tmp_path: Path) -> None:
    big = {f"src/fastlib/part{i}.py": f"# part {i}\n" + SOURCE for i in range(4)}
    repo = make_target(tmp_path / "target", big)
    seen: list[list[dict[str, str]]] = []
    replies = iter([NO_EDIT, NO_EDIT, REPLY_BAD_EVENS] * 10)

    def model(messages: list[Any]) -> str:
        seen.append([dict(m) for m in messages])
        return next(replies)

    settings = load_settings(repo, {"sandbox": {"backend": "local"},
                                    "agent": {"iterations": 6}}, environ={})
    summary = improve(repo, settings, Quiet(), llm=FunctionLLM(model))
    with History(GitStore(repo).state_dir() / "history.db") as hist:
        recorded = hist.exchanges(summary.run_id)
        assert [e.messages for e in recorded] == seen and len(seen) >= 12
    raw = sum(len(m["content"]) for messages in seen for m in messages)
    with sqlite3.connect(GitStore(repo).state_dir() / "history.db") as db:
        stored = db.execute("SELECT SUM(LENGTH(text)) FROM texts").fetchone()[0]
    assert stored * 4 < raw


class Quiet:
    def event(self, kind: str, message: str, **data: object) -> None:
        pass


# -- a database that m002 wrote --------------------------------------------------------------


def old_database(path: Path, exchanges: list[list[dict[str, Any]]]) -> None:
    """A history as selfcode wrote it before m003: the messages repeated in every row."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    assert migrate(db, migrations.MIGRATIONS[:2]) == ["m001_initial",
                                                      "m002_archive_resume_review"]
    db.execute("INSERT INTO runs (id, started_at, repo, base_commit, branch, goal, model,"
               " sandbox) VALUES ('r1', 'then', '/r', 'abc', 'selfcode/r1', 'g', 'm', 'local')")
    for i, messages in enumerate(exchanges):
        db.execute("INSERT INTO exchanges (id, run_id, candidate_n, turn, model, messages_json,"
                   " reply, prompt_tokens, completion_tokens, cost_usd, latency_s, error,"
                   " created_at) VALUES (?, 'r1', ?, 0, 'm', ?, 'r', 10, 2, 0.5, 1.0, NULL,"
                   " 'then')", (10 + 3 * i, i % 4, json.dumps(messages, ensure_ascii=False)))
    db.commit()
    db.close()


def test_an_m002_database_reads_the_same_after_m003(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    odd: list[dict[str, Any]] = [
        {"role": "user", "content": ""},
        {"content": "content first", "role": "user", "name": "ada"},
        {"role": "tool", "content": [{"type": "text", "text": "not a string"}]},
        {"role": "user"}]
    old: list[list[dict[str, Any]]] = [
        [{"role": "system", "content": "be fast ✓"}, {"role": "user", "content": prompt(n)}]
        for n in range(30)]
    old.append(odd)
    old_database(path, old)
    before = path.stat().st_size
    with History(path) as hist:
        rows = hist.exchanges("r1")
        assert [r.messages for r in rows] == old
        assert [r.id for r in rows] == [10 + 3 * i for i in range(len(old))]
        assert (rows[0].reply, rows[0].prompt_tokens, rows[0].cost_usd) == ("r", 10, 0.5)
        assert hist.total_cost("r1") == pytest.approx(0.5 * len(old))
        assert sum(u.exchanges for u in hist.candidate_usage("r1").values()) == len(old)
        new = hist.add_exchange(Exchange(
            run_id="r1", candidate_n=9, turn=0, model="m", messages=old[0], reply="x",
            prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_s=0.1))
        assert new > rows[-1].id and hist.exchanges("r1")[-1].messages == old[0]
        assert hist.file_bytes() * 5 < before  # the freed space went back to the disk
    with sqlite3.connect(path) as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(exchanges)")}
        assert "messages_json" not in columns and "prompt_json" in columns
        applied = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
        assert "m003_prompt_texts" in applied and applied[-1] == migrations.MIGRATIONS[-1][0]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


# -- selfcode runs ---------------------------------------------------------------------------


def test_runs_tells_how_big_the_history_is(tmp_path: Path) -> None:
    repo = make_target(tmp_path / "target")
    with History(GitStore(repo).state_dir() / "history.db") as hist:
        hist.start_run("20260101-000000-abcd", **RUN)
        hist.add_exchange(Exchange(
            run_id="20260101-000000-abcd", candidate_n=1, turn=0, model="m",
            messages=[{"role": "user", "content": "x" * 3_000_000}], reply="x",
            prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_s=0.1))
    listed = CliRunner().invoke(app, ["runs", str(repo), "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert 3_000_000 < entry["history_bytes"] < 3_500_000
    plain = CliRunner().invoke(app, ["runs", str(repo)])
    assert plain.exit_code == 0, plain.output
    where = GitStore(repo).state_dir() / "history.db"
    assert f"\nhistory: {decimal(entry['history_bytes'])} in {where}\n" in plain.stdout
