"""Typed rows of the history database: what `History` records and returns.

Each row is a frozen dataclass with one attribute per column (JSON columns decoded: a run's
`summary`, a candidate's `verdict`; an exchange's `messages` joined back from the texts its
`prompt_json` refers to), so a misspelt column is a type error, not a `KeyError` at run
time. Columns a row does not name (say, one added by a later migration) are left out rather
than refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Self


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _columns(cls: type[Any], row: sqlite3.Row) -> dict[str, Any]:
    """The row's values for the fields of `cls` that are columns."""
    names = {f.name for f in fields(cls)}
    return {key: row[key] for key in row.keys() if key in names}  # noqa: SIM118 (sqlite3.Row)


class _Columns:
    """A row whose fields are all plain columns: built from the columns it names."""

    @classmethod
    def from_db(cls, row: sqlite3.Row) -> Self:
        return cls(**_columns(cls, row))


@dataclass(frozen=True, kw_only=True)
class RunRow:
    """One run: where and how it ran, its status and, once finished, its summary."""

    id: str
    started_at: str
    finished_at: str | None
    repo: str
    base_commit: str
    branch: str
    goal: str
    model: str
    sandbox: str
    status: str
    summary: dict[str, Any] | None
    """`summary_json` decoded: what the run reported when it finished (or was swept)."""

    @classmethod
    def from_db(cls, row: sqlite3.Row) -> RunRow:
        return cls(**_columns(cls, row), summary=_loads(row["summary_json"]))


@dataclass(frozen=True, kw_only=True)
class CandidateRow:
    """One candidate of a run, numbered from 1: the change, its verdict and its commits."""

    run_id: str
    n: int
    parent_commit: str | None
    rationale: str | None
    diff: str | None
    status: str
    verdict: dict[str, Any] | None
    """`verdict_json` decoded: the gate's verdict as a dict (`Verdict.model_validate` it)."""
    commit_sha: str | None
    """The commit on the run's branch, when accepted."""
    candidate_commit: str | None
    """The commit kept under refs/selfcode/<run>/<n>, accepted or not."""
    created_at: str
    node_tests: dict[str, Any] | None = None
    """An accepted candidate's full-suite run (its re-check's): its children's baseline."""

    @classmethod
    def from_db(cls, row: sqlite3.Row) -> CandidateRow:
        return cls(**_columns(cls, row), verdict=_loads(row["verdict_json"]),
                   node_tests=_loads(row["node_tests_json"]))


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """One request to the model and its reply (or error), as `History.add_exchange` takes it."""

    run_id: str
    candidate_n: int | None
    """The candidate it was for; None for requests outside any candidate."""
    turn: int
    """0 for the first request of a candidate, then one more per repair."""
    model: str
    messages: Sequence[Mapping[str, Any]]
    reply: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float | None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExchangeRow(Exchange):
    """A recorded exchange: the `Exchange`, its id (in recording order) and when."""

    id: int
    created_at: str

    @classmethod
    def from_db(cls, row: sqlite3.Row, messages: list[dict[str, Any]]) -> ExchangeRow:
        """The row, with the messages its `prompt_json` stands for (History joins them)."""
        return cls(**_columns(cls, row), messages=messages)


@dataclass(frozen=True, kw_only=True)
class EventRow(_Columns):
    """Something a run did or noticed, as its observer reported it."""

    id: int
    run_id: str
    candidate_n: int | None
    kind: str
    message: str
    created_at: str


@dataclass(frozen=True, kw_only=True)
class ReviewRow(_Columns):
    """One reviewer's decision on a candidate; the latest per candidate wins."""

    id: int
    run_id: str
    n: int
    decision: str
    reviewer: str
    note: str
    created_at: str


@dataclass(frozen=True, kw_only=True)
class CandidateUsage(_Columns):
    """What one candidate's model calls took, summed over its exchanges."""

    model: str
    exchanges: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # of the priced replies
    latency_s: float
    unpriced: int = 0  # replies from a model without a price: their cost is unknown


@dataclass(frozen=True, kw_only=True)
class ModelUsage(_Columns):
    """What one model's calls took for one candidate (or outside any: `n` None)."""

    n: int | None
    model: str
    exchanges: int
    cost_usd: float  # of the priced replies
    unpriced: int  # replies without a price: their cost is unknown
    last_id: int  # the latest of these exchanges: a candidate's model is its last one's
